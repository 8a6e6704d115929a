"""Identity rules in pure domain code: roles and bundles, the last Owner, sign-in throttling,
MFA codes, invitations, policies, and secrets kept out of the published log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from sailplane.commands.credentials import hash_password, totp_step, verify_password
from sailplane.domain.access import (
    ADMIN,
    BUNDLES,
    MEMBER,
    ORGANIZATION_ROLES,
    OWNER,
    PERMISSION_NAMES,
    PERMISSIONS,
    TEAM_ROLES,
    bundles_of,
)
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, InvalidValueError, NotFoundError
from sailplane.domain.identity import Organization, User
from sailplane.domain.invitations import Invitation
from sailplane.domain.policies import check_permissions
from sailplane.projections.event_log import REDACTED, redact

BY = Actor("member", "MEMBER0001", "ORG0000001")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_owner_holds_every_grantable_permission_and_admin_all_but_settings_and_sso() -> None:
    grantable = {p.relation for p in PERMISSIONS if not p.system_only}
    assert OWNER.permissions == grantable
    assert grantable - ADMIN.permissions == {"CanManageOrganization", "CanManageIdentityProviders"}
    assert "CanManageUsers" not in MEMBER.permissions
    assert "CanUseOwnAccount" in MEMBER.permissions


def test_bundles_name_only_catalog_permissions_and_describe_roles() -> None:
    for bundle in BUNDLES:
        assert bundle.permissions <= PERMISSION_NAMES
    for role in [*ORGANIZATION_ROLES.values(), *TEAM_ROLES.values()]:
        assert role.permissions <= PERMISSION_NAMES
        for bundle in bundles_of(role):
            assert bundle.permissions <= role.permissions
    assert {b.id for b in bundles_of(OWNER)} == {b.id for b in BUNDLES}


def test_the_last_owner_cannot_go() -> None:
    organization = Organization.found(id="ORG0000001", name="O", slug="o", by=BY, at=T0)
    organization.set_owner("A", True, by=BY, at=T0)
    with pytest.raises(ConflictError) as caught:
        organization.set_owner("A", False, by=BY, at=T0)
    assert caught.value.code == "last_owner"
    organization.set_owner("B", True, by=BY, at=T0)
    organization.set_owner("A", False, by=BY, at=T0)
    assert organization.owner_ids == ["B"]


def test_failed_sign_ins_lock_an_account_for_a_growing_while() -> None:
    user = User.register(id="USER000001", email="A@Example.com", display_name="A", by=BY, at=T0)
    assert user.email == "a@example.com"
    for _ in range(4):
        user.record_failed_login(by=BY, at=T0)
    assert user.throttled_for(T0) == 0
    user.record_failed_login(by=BY, at=T0)
    assert user.throttled_for(T0) == 30
    assert user.throttled_for(T0 + timedelta(seconds=31)) == 0
    user.record_failed_login(by=BY, at=T0 + timedelta(seconds=31))
    assert user.throttled_for(T0 + timedelta(seconds=31)) == 60
    user.record_successful_login(by=BY, at=T0 + timedelta(seconds=100))
    assert user.failed_logins == 0 and user.throttled_for(T0 + timedelta(seconds=100)) == 0


def test_totp_codes_are_checked_with_drift_and_used_once() -> None:
    secret = pyotp.random_base32()
    now = T0.timestamp()
    step = totp_step(secret, pyotp.TOTP(secret).at(now), now)
    assert step == int(now // 30)
    assert totp_step(secret, pyotp.TOTP(secret).at(now - 30), now) == step - 1
    assert totp_step(secret, pyotp.TOTP(secret).at(now - 90), now) is None
    assert totp_step(secret, "abcdef", now) is None
    user = User.register(id="USER000001", email="a@example.com", display_name="A", by=BY, at=T0)
    user.start_totp_enrollment(secret, by=BY, at=T0)
    user.enable_totp(step, ["h1"], by=BY, at=T0)
    with pytest.raises(InvalidValueError):
        user.use_totp_step(step, by=BY, at=T0)
    user.use_totp_step(step + 1, by=BY, at=T0)
    user.use_recovery_code("h1", by=BY, at=T0)
    with pytest.raises(InvalidValueError):
        user.use_recovery_code("h1", by=BY, at=T0)


def test_passwords_are_argon2_hashes() -> None:
    digest = hash_password("correct horse")
    assert digest.startswith("$argon2id$")
    assert verify_password(digest, "correct horse")
    assert not verify_password(digest, "wrong")
    assert not verify_password(None, "anything")


def test_an_invitation_is_404_when_expired_and_409_once_used() -> None:
    invitation = Invitation.create(
        id="INVITE0001",
        email="x@example.com",
        name="X",
        organization_role_id="MEMBER",
        account_type="managed",
        team_assignments=[{"team_id": "T1", "role_id": "TEAMADMIN"}],
        token_hash="h",
        expires_at=T0 + timedelta(days=1),
        send_email=False,
        by=BY,
        at=T0,
    )
    with pytest.raises(NotFoundError):
        invitation.check_open(T0 + timedelta(days=2))
    invitation.accept(
        user_id="U", member_id="M", ota_code_hash="c", ota_expires_at=T0, by=BY, at=T0
    )
    with pytest.raises(ConflictError):
        invitation.check_open(T0)
    with pytest.raises(InvalidValueError):
        Invitation.create(
            id="INVITE0002",
            email="x@example.com",
            name="X",
            organization_role_id="MEMBER",
            account_type="managed",
            team_assignments=[{"team_id": "T1", "role_id": "OWNER"}],
            token_hash="h",
            expires_at=T0,
            send_email=False,
            by=BY,
            at=T0,
        )


def test_policies_grant_only_known_non_system_permissions() -> None:
    assert check_permissions(["CanViewJobs", "CanViewJobs", "CanManageTeams"]) == [
        "CanManageTeams",
        "CanViewJobs",
    ]
    with pytest.raises(InvalidValueError):
        check_permissions(["CanFly"])
    with pytest.raises(InvalidValueError):
        check_permissions(["CanActAsSystem"])


def test_secrets_are_redacted_at_any_depth_in_the_published_log() -> None:
    data = {
        "password_hash": "$argon2id$...",
        "changes": {"client_secret": "s3cret", "name": "SSO"},
        "token_hash": None,
        "recovery_code_hashes": ["h1", "h2"],
        "email": "a@example.com",
    }
    assert redact(data) == {
        "password_hash": REDACTED,
        "changes": {"client_secret": REDACTED, "name": "SSO"},
        "token_hash": None,
        "recovery_code_hashes": [REDACTED, REDACTED],
        "email": "a@example.com",
    }
