"""`/api/v1/me`: the caller's own profile, emails, logins, trusted devices, teams and MFA."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request
from litestar.params import FromPath, JSONBody

from sailplane.contexts import IdentityContext
from sailplane.domain.errors import PermissionDeniedError
from sailplane.http import shapes
from sailplane.http.auth import Caller, IdentityDep, Principal, requires
from sailplane.http.authentication import public_base
from sailplane.http.errors import or_404
from sailplane.http.identity_shapes import (
    CurrentIdentity,
    LoginOut,
    ServiceAccountOut,
    TrustedDeviceOut,
    user,
    user_email,
)
from sailplane.http.pagination import Limit, Marker, MarkerListing
from sailplane.http.routes import delete, get, patch, post
from sailplane.http.shapes import Shape, from_row, iso

OWN = [requires("CanUseOwnAccount")]


class ProfileUpdateRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    email: str | None = None
    given_name: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    family_name: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    display_name: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class AddEmailRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    email: str


class TotpVerifyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]


class LoginList(Shape):
    items: list[LoginOut]


class TrustedDeviceList(Shape):
    items: list[TrustedDeviceOut]


class TeamList(Shape):
    items: list[shapes.Team]


class TotpEnrollment(Shape):
    """A TOTP secret to add to an authenticator app; verify a code to enable it."""

    secret: str
    otpauth_uri: str


class RecoveryCodes(Shape):
    """Single-use codes for when the authenticator is lost; shown only now."""

    recovery_codes: list[str]


def user_id_of(principal: Principal) -> str:
    if principal.user_id is None:
        raise PermissionDeniedError(
            "A service account has no user profile, emails, logins or MFA.", code="not_a_user"
        )
    return principal.user_id


def _own_rows(
    identity: IdentityContext,
    principal: Principal,
    rows_of_user: Callable[[str, datetime], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """The caller's rows of a per-user view query, current now (a service account has none)."""
    if principal.user_id is None:
        return []
    return rows_of_user(principal.user_id, identity.clock())


def current_identity(identity: IdentityContext, principal: Principal) -> CurrentIdentity:
    if principal.kind == "service_account":
        row = identity.directory.service_account(principal.organization_id, principal.id)
        account = from_row(ServiceAccountOut, row) if row else None
        return CurrentIdentity(root=None, user=None, service_account=account)
    user_id = user_id_of(principal)
    row = or_404(identity.directory.user(principal.organization_id, user_id), "user", user_id)
    return CurrentIdentity(root=None, user=user(row), service_account=None)


class MeController(Controller):
    path = "/me"
    tags = ["me"]

    @get("/", operation_id="GetCurrentIdentity", guards=OWN)
    def get_me(self, identity: IdentityDep, principal: Caller) -> CurrentIdentity:
        """The caller: a user (signed in or with an API key) or a service account."""
        return current_identity(identity, principal)

    @patch("/", operation_id="UpdateCurrentIdentity", guards=OWN)
    def update_me(
        self, identity: IdentityDep, principal: Caller, data: JSONBody[ProfileUpdateRequest]
    ) -> CurrentIdentity:
        """Change the caller's own profile (names, primary email)."""
        position = identity.commands.update_user(
            user_id_of(principal),
            by=principal.actor,
            email=data.email,
            given_name=data.given_name,
            family_name=data.family_name,
            display_name=data.display_name,
        )
        identity.wait_for_views(position)
        return current_identity(identity, principal)

    @get("/emails", operation_id="ListMyEmails", guards=OWN)
    def list_emails(
        self, identity: IdentityDep, principal: Caller, limit: Limit = 100, marker: Marker = None
    ) -> MarkerListing[shapes.UserEmail]:
        """The caller's email addresses with their verification status."""
        if principal.user_id is None:
            return MarkerListing(items=[], marker=None)
        rows, next_marker = identity.directory.emails(principal.user_id, limit, marker)
        return MarkerListing(items=[user_email(r) for r in rows], marker=next_marker)

    @post("/emails", operation_id="AddMyEmail", guards=OWN)
    def add_email(
        self,
        identity: IdentityDep,
        principal: Caller,
        request: Request[Any, Any, Any],
        data: JSONBody[AddEmailRequest],
    ) -> shapes.UserEmail:
        """Add an unverified email and send it a verification link (when SMTP is configured)."""
        user_id = user_id_of(principal)
        email, token, position = identity.commands.add_email(
            user_id, data.email, by=principal.actor
        )
        identity.wait_for_views(position)
        link = f"{public_base(identity, request)}/api/v1/auth/verify-email?token={token}"
        # Recorded and shown with the address (`verificationEmailStatus`), never dropped.
        identity.wait_for_views(
            identity.commands.send_verification_email(user_id, email, link, by=principal.actor)
        )
        row = next(
            r for r in identity.directory.emails_of_users([user_id])[user_id] if r["email"] == email
        )
        return user_email(row)

    @get("/logins", operation_id="ListMyLogins", guards=OWN)
    def list_logins(self, identity: IdentityDep, principal: Caller) -> LoginList:
        """The caller's active logins; `isCurrent` marks the one of this request."""
        rows = _own_rows(identity, principal, identity.directory.logins_of_user)
        return LoginList(
            items=[
                from_row(
                    LoginOut,
                    r,
                    last_used_at=iso(r["last_used_at"] or r["auth_time"]),
                    is_current=r["id"] == principal.credential_id,
                )
                for r in rows
            ]
        )

    @delete("/logins/{loginId:str}", operation_id="RevokeMyLogin", guards=OWN)
    def revoke_login(
        self, identity: IdentityDep, principal: Caller, loginId: FromPath[str]
    ) -> None:
        """Revoke one of the caller's logins; its token stops working at once."""
        position = identity.authentication.revoke_login(
            loginId, user_id=user_id_of(principal), by=principal.actor
        )
        identity.wait_for_views(position)

    @get("/trusted-devices", operation_id="ListMyTrustedDevices", guards=OWN)
    def list_trusted_devices(self, identity: IdentityDep, principal: Caller) -> TrustedDeviceList:
        """The caller's trusted devices (they skip the MFA step until they expire)."""
        rows = _own_rows(identity, principal, identity.directory.trusted_devices_of_user)
        return TrustedDeviceList(items=[from_row(TrustedDeviceOut, r) for r in rows])

    @delete(
        "/trusted-devices/{trustedDeviceId:str}",
        operation_id="RevokeMyTrustedDevice",
        guards=OWN,
    )
    def revoke_trusted_device(
        self, identity: IdentityDep, principal: Caller, trustedDeviceId: FromPath[str]
    ) -> None:
        """Forget a trusted device: its next sign-in asks for the MFA code again."""
        position = identity.authentication.revoke_trusted_device(
            trustedDeviceId, user_id=user_id_of(principal), by=principal.actor
        )
        identity.wait_for_views(position)

    @get("/teams", operation_id="ListMyTeams", guards=OWN)
    def list_teams(self, identity: IdentityDep, principal: Caller) -> TeamList:
        """The teams the caller belongs to."""
        if principal.kind != "member":
            return TeamList(items=[])
        rows = identity.teams.teams_of_member(principal.organization_id, principal.id)
        return TeamList(items=[shapes.team(r) for r in rows])

    @delete("/mfa", operation_id="ResetMyMfa", guards=OWN)
    def reset_mfa(self, identity: IdentityDep, principal: Caller) -> None:
        """Delete the caller's TOTP and recovery codes and end all their logins."""
        position = identity.commands.reset_mfa(
            user_id_of(principal), by=principal.actor, check_owner=False
        )
        identity.wait_for_views(position)

    @post("/mfa/totp", operation_id="EnrollMyTotp", guards=OWN)
    def enroll_totp(self, identity: IdentityDep, principal: Caller) -> TotpEnrollment:
        """Start TOTP enrollment: a secret for the authenticator app (not active until verified)."""
        secret, uri, position = identity.authentication.start_totp_enrollment(
            user_id_of(principal), by=principal.actor
        )
        identity.wait_for_views(position)
        return TotpEnrollment(secret=secret, otpauth_uri=uri)

    @post(
        "/mfa/totp/verify",
        operation_id="VerifyMyTotp",
        status_code=200,
        guards=OWN,
    )
    def verify_totp(
        self, identity: IdentityDep, principal: Caller, data: JSONBody[TotpVerifyRequest]
    ) -> RecoveryCodes:
        """Enable TOTP with a current code; returns the recovery codes once."""
        codes, position = identity.authentication.verify_totp_enrollment(
            user_id_of(principal), data.code, by=principal.actor
        )
        identity.wait_for_views(position)
        return RecoveryCodes(recovery_codes=codes)
