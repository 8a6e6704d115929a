"""The identity views are a pure function of the log: after a varied history (users,
passwords, MFA, emails, logins, trusted devices, members, invitations, policies, identity
providers, service accounts), a rebuild equals the live views row for row."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pyotp
import pytest

from sailplane.commands.authentication import Client
from sailplane.domain.base import Actor
from sailplane.domain.errors import NotAuthenticatedError
from sailplane.projections.runner import rebuild
from sailplane.storage import Database
from sailplane.system import PROJECTIONS, System
from tests.conftest import found_org, running_system


def _snapshot(system: System) -> dict[str, list[dict[str, Any]]]:
    snapshot = {}
    with system.pool.connection() as conn, conn.cursor() as cur:
        for projection in PROJECTIONS:
            for table in projection.view_class.tables:
                snapshot[table] = sorted(cur.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    return snapshot


def _identity_history(system: System) -> None:
    org = found_org(system)
    owner = org.owner
    identity, auth = system.identity.commands, system.identity.authentication
    member_id, _ = identity.add_member(
        email="ada@example.com", display_name="Ada", role_ids=["ADMIN"], by=owner
    )
    system.wait_for_views(
        identity.add_member(
            email="bob@example.com", display_name="Bob", role_ids=["MEMBER"], by=owner
        )[1]
    )
    ada = identity.user_by_email("ada@example.com")
    bob_member = system.identity.directory.search_members(org.id, {"email": "bob@"}, *_page())[1][0]
    identity.change_password(ada.id, current_password=None, new_password="ada password", by=owner)
    identity.update_user(ada.id, display_name="Ada L.", email="ada.l@example.com", by=owner)
    identity.update_member(member_id, name="Ada (ops)", preferences={"theme": "dark"}, by=owner)
    identity.replace_member_roles(member_id, ["ADMIN", "MEMBER"], by=owner)
    team_id, _ = identity.create_team(name="Ops", default_role_id=None, by=owner)
    identity.add_team_member(team_id, member_id, role_ids=["TEAMADMIN"], by=owner)
    identity.set_policy(team_id, ["CanViewJobs"], by=owner, caller_permissions=["CanViewJobs"])
    identity.set_policy(
        member_id, ["CanViewAuditLog"], by=owner, caller_permissions=["CanViewAuditLog"]
    )
    identity.delete_policy(member_id, by=owner)
    identity.set_policy(member_id, ["CanViewJobs"], by=owner, caller_permissions=["CanViewJobs"])
    ada_actor = Actor("member", member_id, org.id)
    email, _token, position = identity.add_email(ada.id, "ada.second@example.com", by=ada_actor)
    system.wait_for_views(position)
    # Logins: one plain, one through MFA with a trusted device, one revoked.
    client = Client(remote_ip="10.0.0.1", user_agent="test", device_id="d1")
    plain = auth.login_with_password(
        "ada.l@example.com", "ada password", organization_id=None, client=client
    )
    auth.touch_login(plain.login_id)
    secret, _, _ = auth.start_totp_enrollment(ada.id, by=ada_actor)
    auth.verify_totp_enrollment(ada.id, pyotp.TOTP(secret).at(time.time() - 30), by=ada_actor)
    challenge = auth.login_with_password(
        "ada.l@example.com", "ada password", organization_id=None, client=client
    )
    auth.complete_mfa(
        challenge.mfa_token or "",
        code=pyotp.TOTP(secret).now(),
        recovery_code=None,
        trust_device=True,
        client=client,
    )
    auth.revoke_login(plain.login_id, user_id=ada.id, by=ada_actor)
    for _ in range(2):
        with pytest.raises(NotAuthenticatedError):
            auth.login_with_password(
                "ada.l@example.com", "wrong", organization_id=None, client=client
            )
    identity.reset_mfa(ada.id, by=owner)
    # Invitations: accepted with a team, and one left pending.
    _, token, _ = identity.create_invitation(
        email="carol@example.com",
        name="Carol",
        organization_role_id="MEMBER",
        account_type="managed",
        team_assignments=[{"team_id": team_id, "role_id": "TEAMMEMBER"}],
        send_email=False,
        by=owner,
    )
    identity.accept_invitation(token, given_name="Carol", password="carol password")
    identity.create_invitation(
        email="dan@example.com",
        name="Dan",
        organization_role_id="ADMIN",
        account_type="managed",
        team_assignments=[],
        send_email=False,
        by=owner,
        expires_in=timedelta(days=1),
    )
    # Identity providers and service accounts.
    idp, _ = system.identity.identity_providers.create(
        type_id="oidc",
        name="SSO",
        issuer="https://sso.example.com",
        client_id="c",
        client_secret=None,
        scopes=None,
        by=owner,
    )
    system.identity.identity_providers.update(
        idp, by=owner, name="SSO 2", scopes=["openid", "email"]
    )
    system.identity.identity_providers.rotate_secret(idp, "s", by=owner)
    other, _ = system.identity.identity_providers.create(
        type_id="google",
        name="G",
        issuer="https://accounts.google.com",
        client_id="g",
        client_secret="x",
        scopes=None,
        by=owner,
    )
    system.identity.identity_providers.delete(other, by=owner)
    account, _ = identity.create_service_account(
        username="ci", description="CI", role_ids=["MEMBER"], by=owner
    )
    identity.issue_service_account_key(service_account_id=account, name="ci", by=owner)
    # A member leaves; a user is deleted.
    position = identity.remove_member(bob_member["id"], by=owner)
    system.wait_for_views(position)
    position = identity.delete_team(team_id, by=owner)
    assert system.views_reached(position)
    assert email == "ada.second@example.com"


def _page() -> tuple[Any, Any]:
    from sailplane.projections.query import Page, Sort

    return Page(), Sort()


def test_rebuilt_identity_views_equal_the_live_ones(fresh_db: Database) -> None:
    with running_system(fresh_db) as system:
        _identity_history(system)
        live = _snapshot(system)
        for table in (
            "users",
            "user_emails",
            "members",
            "logins",
            "trusted_devices",
            "policies",
            "invitations",
            "identity_providers",
            "service_accounts",
            "api_keys",
        ):
            assert live[table], f"the history leaves rows in {table}"
        for projection in PROJECTIONS:
            rebuild(system.event_log, projection, system.pool, batch_size=5)
        assert _snapshot(system) == live
