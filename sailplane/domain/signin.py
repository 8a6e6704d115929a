"""Sign-in: logins (bearer tokens of people) and trusted devices.

A login is created by a password, single sign-on or one-time-code sign-in. With MFA it is
first `pending_mfa` (it holds only the hash of a short-lived challenge token) and becomes
`active` with the hash of its bearer token when the second step succeeds. Revoking a login
takes its token out of the credentials view at once.
"""

from __future__ import annotations

from datetime import datetime

from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import ConflictError, NotAuthenticatedError

MAX_MFA_ATTEMPTS = 5


class Login(SailplaneAggregate):
    user_id: str
    member_id: str
    status: str  # "pending_mfa", "active" or "revoked"
    token_hash: str | None
    challenge_hash: str | None
    challenge_expires_at: datetime | None
    expires_at: datetime
    mfa_attempts: int

    class Created(SailplaneAggregate.Created):
        user_id: str
        member_id: str
        method: str  # "password", "sso", "one_time_code"
        token_hash: str | None
        challenge_hash: str | None
        challenge_expires_at: datetime | None
        device_id: str
        remote_ip: str
        user_agent: str
        expires_at: datetime

        def apply(self, aggregate: Login) -> None:
            super().apply(aggregate)
            aggregate.user_id = self.user_id
            aggregate.member_id = self.member_id
            aggregate.method = self.method
            aggregate.token_hash = self.token_hash
            aggregate.challenge_hash = self.challenge_hash
            aggregate.challenge_expires_at = self.challenge_expires_at
            aggregate.device_id = self.device_id
            aggregate.expires_at = self.expires_at
            aggregate.status = "active" if self.token_hash else "pending_mfa"
            aggregate.mfa_attempts = 0

    class MfaFailed(SailplaneAggregate.Event):
        attempts: int

        def apply(self, aggregate: Login) -> None:
            aggregate.mfa_attempts = self.attempts

    class MfaPassed(SailplaneAggregate.Event):
        token_hash: str
        expires_at: datetime
        factor: str  # "totp" or "recovery_code"

        def apply(self, aggregate: Login) -> None:
            aggregate.token_hash = self.token_hash
            aggregate.expires_at = self.expires_at
            aggregate.challenge_hash = None
            aggregate.status = "active"

    class Used(SailplaneAggregate.Event):
        def apply(self, aggregate: Login) -> None:
            aggregate.last_used_at = self.timestamp

    class Revoked(SailplaneAggregate.Event):
        reason: str

        def apply(self, aggregate: Login) -> None:
            aggregate.status = "revoked"
            aggregate.token_hash = None
            aggregate.challenge_hash = None

    @classmethod
    def start(
        cls,
        *,
        id: str,
        organization_id: str,
        user_id: str,
        member_id: str,
        method: str,
        token_hash: str | None,
        challenge_hash: str | None,
        challenge_expires_at: datetime | None,
        device_id: str,
        remote_ip: str,
        user_agent: str,
        expires_at: datetime,
        by: Actor,
        at: datetime,
    ) -> Login:
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            organization_id=organization_id,
            user_id=user_id,
            member_id=member_id,
            method=method,
            token_hash=token_hash,
            challenge_hash=challenge_hash,
            challenge_expires_at=challenge_expires_at,
            device_id=device_id,
            remote_ip=remote_ip,
            user_agent=user_agent,
            expires_at=expires_at,
        )

    def check_challenge(self, at: datetime) -> None:
        """The MFA step may still be taken (else 401: sign in again)."""
        if (
            self.status != "pending_mfa"
            or self.challenge_expires_at is None
            or self.challenge_expires_at <= at
            or self.mfa_attempts >= MAX_MFA_ATTEMPTS
        ):
            raise NotAuthenticatedError(
                "The sign-in challenge is not valid any more; sign in again.",
                code="invalid_mfa_token",
            )

    def fail_mfa(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.MfaFailed, by=by, at=at, attempts=self.mfa_attempts + 1)

    def pass_mfa(
        self, token_hash: str, expires_at: datetime, factor: str, *, by: Actor, at: datetime
    ) -> None:
        self.check_challenge(at)
        self._trigger(
            self.MfaPassed,
            by=by,
            at=at,
            token_hash=token_hash,
            expires_at=expires_at,
            factor=factor,
        )

    def mark_used(self, *, by: Actor, at: datetime) -> None:
        if self.status == "active":
            self._trigger(self.Used, by=by, at=at)

    def revoke(self, reason: str, *, by: Actor, at: datetime) -> None:
        if self.status == "revoked":
            raise ConflictError(f"Login {self.id} is already revoked.", code="login_revoked")
        self._trigger(self.Revoked, by=by, at=at, reason=reason)


class TrustedDevice(SailplaneAggregate):
    """A browser or machine that passed MFA and may skip it until it expires."""

    user_id: str
    device_id: str
    token_hash: str
    expires_at: datetime
    revoked: bool

    class Created(SailplaneAggregate.Created):
        user_id: str
        device_id: str
        token_hash: str
        expires_at: datetime
        remote_ip: str
        user_agent: str

        def apply(self, aggregate: TrustedDevice) -> None:
            super().apply(aggregate)
            aggregate.user_id = self.user_id
            aggregate.device_id = self.device_id
            aggregate.token_hash = self.token_hash
            aggregate.expires_at = self.expires_at
            aggregate.revoked = False

    class Revoked(SailplaneAggregate.Event):
        def apply(self, aggregate: TrustedDevice) -> None:
            aggregate.revoked = True

    @classmethod
    def trust(
        cls,
        *,
        id: str,
        organization_id: str,
        user_id: str,
        device_id: str,
        token_hash: str,
        expires_at: datetime,
        remote_ip: str,
        user_agent: str,
        by: Actor,
        at: datetime,
    ) -> TrustedDevice:
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            organization_id=organization_id,
            user_id=user_id,
            device_id=device_id,
            token_hash=token_hash,
            expires_at=expires_at,
            remote_ip=remote_ip,
            user_agent=user_agent,
        )

    def is_valid_for(self, user_id: str, at: datetime) -> bool:
        return not self.revoked and self.user_id == user_id and self.expires_at > at

    def revoke(self, *, by: Actor, at: datetime) -> None:
        if not self.revoked:
            self._trigger(self.Revoked, by=by, at=at)
