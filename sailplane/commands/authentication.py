"""Sign-in use cases: password and one-time-code logins, the MFA step, trusted devices,
TOTP enrollment, logout, and single sign-on through an OpenID Connect provider.

A login is a bearer token stored as a digest; the credentials view answers every request,
so a revoked login stops working on the very next request. Wrong email and wrong password
fail alike (same status, message and work); repeated failures for one account lock it for
a growing while (429 with Retry-After).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sailplane.commands.base import Clock, utc_now
from sailplane.commands.credentials import (
    hash_recovery_code,
    hash_token,
    new_recovery_codes,
    new_totp_secret,
    same_hash,
    totp_step,
    totp_uri,
    verify_password,
)
from sailplane.commands.identity import (
    ONE_TIME_CODE_PREFIX,
    Identity,
    Lookup,
    compound_token,
    token_target,
)
from sailplane.commands.ports import ExpectedIdToken, IdentityProviderClient, OidcError, Pkce
from sailplane.commands.workloads import SecretBox
from sailplane.domain.access import MEMBER
from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import (
    ConflictError,
    DomainError,
    InvalidRequestError,
    InvalidValueError,
    NotAuthenticatedError,
    NotFoundError,
    PermissionDeniedError,
    TooManyRequestsError,
)
from sailplane.domain.identity import Member, User, check_email
from sailplane.domain.ids import new_id
from sailplane.domain.invitations import Invitation
from sailplane.domain.signin import Login, TrustedDevice
from sailplane.domain.sso import IdentityProvider, SsoAttempt
from sailplane.storage import EventLog

LOGIN_TTL = timedelta(days=7)
CHALLENGE_TTL = timedelta(minutes=5)
TRUSTED_DEVICE_TTL = timedelta(days=30)
SSO_ATTEMPT_TTL = timedelta(minutes=10)
LOGIN_PREFIX = "spl_"
CHALLENGE_PREFIX = "spc_"
DEVICE_PREFIX = "spd_"
BAD_CREDENTIALS = "The email or password is not correct."


@dataclass(frozen=True)
class Client:
    """Where a sign-in comes from, as the HTTP layer saw it."""

    remote_ip: str = ""
    user_agent: str = ""
    device_id: str | None = None
    trusted_device_token: str | None = None


@dataclass(frozen=True)
class LoginOutcome:
    login_id: str
    organization_id: str
    member_id: str
    user_id: str
    device_id: str
    position: int
    expires_at: Any
    token: str | None = None  # the bearer token; None while the MFA step is due
    mfa_token: str | None = None
    trusted_device_token: str | None = None

    @property
    def mfa_required(self) -> bool:
        return self.token is None


class Authentication(Identity):
    """Sign-in shares the identity aggregates (users, members) and their helpers.

    TOTP secrets and identity-provider client secrets are kept sealed by `secret_box`;
    they are opened only to check a code or sign in. `oidc` signs users in at their
    identity providers.
    """

    def __init__(
        self,
        log: EventLog,
        *,
        clock: Clock = utc_now,
        lookup: Lookup,
        secret_box: SecretBox,
        oidc: IdentityProviderClient,
    ) -> None:
        self.secret_box = secret_box
        self.oidc = oidc
        super().__init__(log, clock=clock, lookup=lookup)

    # --- password and one-time code --------------------------------------------------------

    def login_with_password(
        self, email: str, password: str, *, organization_id: str | None, client: Client
    ) -> LoginOutcome:
        try:
            user = self.user_by_email(email)
        except InvalidValueError:
            user = None
        if user is None:
            verify_password(None, password)  # the same work as a real check
            raise NotAuthenticatedError(BAD_CREDENTIALS, code="invalid_credentials")
        at = self.clock()
        wait = user.throttled_for(at)
        if wait:
            raise TooManyRequestsError(
                f"Too many failed sign-ins for this account; try again in {wait} seconds.",
                retry_after=wait,
                code="too_many_failed_logins",
            )
        by = Actor.system("sign-in", user.organization_id)
        if not verify_password(user.password_hash, password):
            user.record_failed_login(by=by, at=at)
            self._commit(user)
            raise NotAuthenticatedError(BAD_CREDENTIALS, code="invalid_credentials")
        member = self._membership_for_sign_in(user, organization_id)
        user.record_successful_login(by=by, at=at)
        return self._open_login(user, member, "password", client, extra=[user])

    def login_with_code(
        self, code: str, *, organization_id: str | None, client: Client
    ) -> LoginOutcome:
        """The one-time code an accepted invitation returned: once, within minutes."""
        invitation_id = token_target(code, ONE_TIME_CODE_PREFIX)
        invitation = self._find(Invitation, invitation_id) if invitation_id else None
        if invitation is None or invitation.status != "accepted":
            raise NotAuthenticatedError(
                "The one-time code is not valid.", code="invalid_credentials"
            )
        if organization_id not in (None, invitation.organization_id):
            raise NotAuthenticatedError(
                "The one-time code is not valid.", code="invalid_credentials"
            )
        at = self.clock()
        by = Actor("member", invitation.member_id, invitation.organization_id)
        invitation.redeem_code(hash_token(code), by=by, at=at)
        user = self._find(User, invitation.user_id)
        member = self._find(Member, invitation.member_id)
        if (
            user is None
            or user.deleted
            or member is None
            or member.removed
            or not member.is_enabled
        ):
            raise NotAuthenticatedError(
                "The one-time code is not valid.", code="invalid_credentials"
            )
        return self._open_login(user, member, "one_time_code", client, extra=[invitation])

    def _membership_for_sign_in(self, user: User, organization_id: str | None) -> Member:
        """The membership a sign-in acts in: the one asked for, else the user's first."""
        rows = [
            r
            for r in self._views().memberships_of_user(user.id)
            if organization_id in (None, r["organization_id"])
        ]
        for row in sorted(rows, key=lambda r: r["created_at"]):
            member = self._find(Member, row["id"])
            if member is not None and not member.removed and member.is_enabled:
                return member
        raise PermissionDeniedError(
            "This account is not an enabled member of "
            + ("that organization." if organization_id else "any organization."),
            code="no_membership",
        )

    def _open_login(
        self,
        user: User,
        member: Member,
        method: str,
        client: Client,
        *,
        extra: list[SailplaneAggregate],
        skip_mfa: bool = False,
        login_id: str | None = None,
    ) -> LoginOutcome:
        at = self.clock()
        login_id = login_id or new_id()
        by = Actor("member", member.id, member.organization_id)
        mfa_due = user.has_mfa and not skip_mfa and not self._trusted(user, client)
        token = None if mfa_due else compound_token(LOGIN_PREFIX, login_id)
        challenge = compound_token(CHALLENGE_PREFIX, login_id) if mfa_due else None
        device_id = (client.device_id or "").strip()[:200] or new_id()
        login = Login.start(
            id=login_id,
            organization_id=member.organization_id,
            user_id=user.id,
            member_id=member.id,
            method=method,
            token_hash=hash_token(token) if token else None,
            challenge_hash=hash_token(challenge) if challenge else None,
            challenge_expires_at=at + CHALLENGE_TTL if challenge else None,
            device_id=device_id,
            remote_ip=client.remote_ip,
            user_agent=client.user_agent[:500],
            expires_at=at + LOGIN_TTL,
            by=by,
            at=at,
        )
        position = self._commit(*extra, login)
        return LoginOutcome(
            login_id=login.id,
            organization_id=member.organization_id,
            member_id=member.id,
            user_id=user.id,
            device_id=device_id,
            position=position,
            expires_at=(challenge and login.challenge_expires_at) or login.expires_at,
            token=token,
            mfa_token=challenge,
        )

    def _trusted(self, user: User, client: Client) -> bool:
        if not client.trusted_device_token:
            return False
        device_id = token_target(client.trusted_device_token, DEVICE_PREFIX)
        device = self._find(TrustedDevice, device_id) if device_id else None
        return (
            device is not None
            and device.is_valid_for(user.id, self.clock())
            and same_hash(client.trusted_device_token, device.token_hash)
        )

    # --- the MFA step ------------------------------------------------------------------------

    def complete_mfa(
        self,
        mfa_token: str,
        *,
        code: str | None,
        recovery_code: str | None,
        trust_device: bool,
        client: Client,
    ) -> LoginOutcome:
        login_id = token_target(mfa_token, CHALLENGE_PREFIX)
        login = self._find(Login, login_id) if login_id else None
        if login is None or not same_hash(mfa_token, login.challenge_hash):
            raise NotAuthenticatedError(
                "The sign-in challenge is not valid any more; sign in again.",
                code="invalid_mfa_token",
            )
        at = self.clock()
        login.check_challenge(at)
        if bool(code) == bool(recovery_code):
            raise InvalidValueError(
                "Send either the authenticator code or a recovery code.", field="code"
            )
        user = self._find(User, login.user_id)
        if user is None or user.deleted or user.totp_secret is None:
            raise NotAuthenticatedError(
                "The sign-in challenge is not valid any more; sign in again.",
                code="invalid_mfa_token",
            )
        by = Actor("member", login.member_id, login.organization_id)
        factor = "totp" if code else "recovery_code"
        try:
            if code:
                step = totp_step(self.secret_box.open(user.totp_secret), code, at.timestamp())
                if step is None:
                    raise InvalidValueError("The code is not correct.", field="code")
                user.use_totp_step(step, by=by, at=at)
            else:
                user.use_recovery_code(hash_recovery_code(recovery_code or ""), by=by, at=at)
        except InvalidValueError as exc:
            login.fail_mfa(by=by, at=at)
            self._commit(login)
            raise NotAuthenticatedError(exc.message, code="invalid_mfa_code") from None
        token = compound_token(LOGIN_PREFIX, login.id)
        login.pass_mfa(hash_token(token), at + LOGIN_TTL, factor, by=by, at=at)
        changed: list[SailplaneAggregate] = [user, login]
        device_token = None
        if trust_device:
            device_id = new_id()
            device_token = compound_token(DEVICE_PREFIX, device_id)
            changed.append(
                TrustedDevice.trust(
                    id=device_id,
                    organization_id=login.organization_id,
                    user_id=user.id,
                    device_id=login.device_id,
                    token_hash=hash_token(device_token),
                    expires_at=at + TRUSTED_DEVICE_TTL,
                    remote_ip=client.remote_ip,
                    user_agent=client.user_agent[:500],
                    by=by,
                    at=at,
                )
            )
        position = self._commit(*changed)
        return LoginOutcome(
            login_id=login.id,
            organization_id=login.organization_id,
            member_id=login.member_id,
            user_id=user.id,
            device_id=login.device_id,
            position=position,
            expires_at=login.expires_at,
            token=token,
            trusted_device_token=device_token,
        )

    # --- logins and trusted devices of the caller ---------------------------------------------

    def logout(self, credential_id: str, *, by: Actor) -> int:
        login = self._find(Login, credential_id)
        if login is None or login.member_id != by.id:
            raise InvalidRequestError(
                "This request is authenticated with an API key, not a login; API keys are not "
                "ended by logging out.",
                code="not_a_login",
            )
        login.revoke("logout", by=by, at=self.clock())
        return self._commit(login)

    def revoke_login(self, login_id: str, *, user_id: str, by: Actor) -> int:
        login = self._find(Login, login_id)
        if login is None or login.user_id != user_id or login.status == "revoked":
            raise NotFoundError.of("login", login_id)
        login.revoke("revoked_by_user", by=by, at=self.clock())
        return self._commit(login)

    def revoke_trusted_device(self, trusted_device_id: str, *, user_id: str, by: Actor) -> int:
        device = self._find(TrustedDevice, trusted_device_id)
        if device is None or device.user_id != user_id or device.revoked:
            raise NotFoundError.of("trusted_device", trusted_device_id)
        device.revoke(by=by, at=self.clock())
        return self._commit(device)

    def touch_login(self, login_id: str) -> None:
        """Record that a login was used (the HTTP layer calls this at most once a minute)."""
        login = self._find(Login, login_id)
        if login is None or login.status != "active":
            return
        login.mark_used(by=Actor("member", login.member_id, login.organization_id), at=self.clock())
        self._commit(login)

    # --- TOTP enrollment -------------------------------------------------------------------

    def start_totp_enrollment(self, user_id: str, *, by: Actor) -> tuple[str, str, int]:
        """A new TOTP secret (pending until verified): (secret, otpauth URI, position)."""
        user, _ = self.user_in_organization(user_id, by)
        secret = new_totp_secret()
        user.start_totp_enrollment(self.secret_box.seal(secret), by=by, at=self.clock())
        return secret, totp_uri(secret, user.email), self._commit(user)

    def verify_totp_enrollment(
        self, user_id: str, code: str, *, by: Actor
    ) -> tuple[list[str], int]:
        """Enable TOTP with a code from the authenticator; returns the recovery codes (once)."""
        user, _ = self.user_in_organization(user_id, by)
        if user.totp_secret is not None:
            raise ConflictError(
                "Two-factor authentication is already enabled.", code="mfa_already_enabled"
            )
        if user.pending_totp_secret is None:
            raise ConflictError(
                "Start a TOTP enrollment before verifying it.", code="mfa_enrollment_not_started"
            )
        step = totp_step(
            self.secret_box.open(user.pending_totp_secret), code, self.clock().timestamp()
        )
        if step is None:
            raise InvalidValueError("The code is not correct.", field="code")
        codes = new_recovery_codes()
        user.enable_totp(step, [hash_recovery_code(c) for c in codes], by=by, at=self.clock())
        return codes, self._commit(user)

    # --- single sign-on -------------------------------------------------------------------

    def begin_sso(self, identity_provider_id: str, *, redirect_uri: str) -> str:
        """The provider's authorization URL for a new attempt (code flow with PKCE and nonce)."""
        provider = self._find(IdentityProvider, identity_provider_id)
        if provider is None or provider.deleted:
            raise NotFoundError.of("identity_provider", identity_provider_id)
        try:
            configuration = self.oidc.discover(provider.issuer)
        except OidcError as exc:
            raise InvalidRequestError(
                f"The identity provider cannot be reached: {exc.message}", code="sso_unavailable"
            ) from None
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(24)
        pkce = Pkce.new()
        at = self.clock()
        attempt = SsoAttempt.begin(
            state=state,
            identity_provider_id=provider.id,
            code_verifier=pkce.verifier,
            nonce=nonce,
            redirect_uri=redirect_uri,
            expires_at=at + SSO_ATTEMPT_TTL,
            by=Actor.system("sign-in", provider.organization_id),
            at=at,
        )
        self._commit(attempt)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": provider.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(provider.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": pkce.challenge,
                "code_challenge_method": "S256",
            }
        )
        endpoint = str(configuration["authorization_endpoint"])
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def finish_sso(
        self, *, state: str, code: str | None, error: str | None, client: Client
    ) -> LoginOutcome:
        """Redeem the provider's code, verify the ID token, match or create the user, sign in."""
        attempt = self._find(SsoAttempt, SsoAttempt.id_for(state)) if state else None
        if attempt is None:
            raise NotAuthenticatedError(
                "This sign-in attempt is not known; start a new one.", code="sso_state_invalid"
            )
        at = self.clock()
        attempt.check_usable(at)
        by = Actor.system("sign-in", attempt.organization_id)
        provider = self._find(IdentityProvider, attempt.identity_provider_id)
        try:
            if error or not code:
                raise OidcError(
                    f"The identity provider refused the sign-in ({error or 'no code'})."
                )
            if provider is None or provider.deleted:
                raise OidcError("The identity provider was deleted.")
            claims = self._verified_claims(provider, attempt, code)
            email = str(claims.get("email") or "")
            if not email or claims.get("email_verified") is not True:
                raise OidcError("The identity provider did not vouch for a verified email.")
        except OidcError as exc:
            attempt.fail(exc.message, by=by, at=at)
            self._commit(attempt)
            raise NotAuthenticatedError(exc.message, code="sso_failed") from None
        assert provider is not None
        try:
            user, member, changed = self._sso_account(provider, claims, email, by)
        except DomainError as exc:
            attempt.fail(exc.message, by=by, at=at)
            self._commit(attempt)
            raise
        login_id = new_id()
        attempt.complete(login_id=login_id, user_id=user.id, by=by, at=self.clock())
        return self._open_login(
            user, member, "sso", client, extra=[*changed, attempt], skip_mfa=True, login_id=login_id
        )

    def _verified_claims(
        self, provider: IdentityProvider, attempt: SsoAttempt, code: str
    ) -> dict[str, Any]:
        configuration = self.oidc.discover(provider.issuer)
        tokens = self.oidc.exchange_code(
            str(configuration["token_endpoint"]),
            code=code,
            redirect_uri=attempt.redirect_uri,
            client_id=provider.client_id,
            client_secret=self.secret_box.open(provider.client_secret)
            if provider.client_secret
            else None,
            code_verifier=attempt.code_verifier,
        )
        return self.oidc.verify_id_token(
            str(tokens["id_token"]),
            ExpectedIdToken(
                jwks=self.oidc.jwks(str(configuration["jwks_uri"])),
                issuer=str(configuration["issuer"]),
                client_id=provider.client_id,
                nonce=attempt.nonce,
                now=self.clock(),
            ),
        )

    def _sso_account(
        self, provider: IdentityProvider, claims: dict[str, Any], email: str, by: Actor
    ) -> tuple[User, Member, list[SailplaneAggregate]]:
        """The user with the provider-verified email (created if new) and their membership."""
        at = self.clock()
        changed: list[SailplaneAggregate] = []
        user = self.user_by_email(email)
        created = user is None
        if user is None:
            given = str(claims.get("given_name") or "")
            family = str(claims.get("family_name") or "")
            user = User.register(
                id=new_id(),
                email=email,
                display_name=str(claims.get("name") or ""),
                given_name=given,
                family_name=family,
                by=by,
                at=at,
            )
            changed.append(self._email_key(user.email, user.id, by))
        member_id = self.member_id_of_user(provider.organization_id, user.id)
        member = self._find(Member, member_id) if member_id else None
        if member is None and not created:
            # An organization's provider speaks for its own members and for new people only:
            # it must not open an account that exists elsewhere.
            raise PermissionDeniedError(
                "An account with this email already exists; sign in to it and accept an "
                "invitation to join this organization.",
                code="sso_account_exists",
            )
        user.mark_email_verified(check_email(email), by=by, at=at)
        if member is None:
            member, others = self._join(user, [MEMBER.id], by, account_type="external")
            changed += others
        elif not member.is_enabled:
            raise PermissionDeniedError(
                "This member is disabled in the organization.", code="member_disabled"
            )
        return user, member, [user, member, *changed]
