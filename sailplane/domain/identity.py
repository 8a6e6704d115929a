"""Identity: organizations, users, members, service accounts, API keys and teams."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any

from sailplane.domain.access import ORGANIZATION_ROLES, OWNER, TEAM_MEMBER, TEAM_ROLES
from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import ConflictError, InvalidValueError, NotFoundError

TEAM_NAME_MAX = 100


class Installation(SailplaneAggregate):
    """The singleton that records the first start, so a second start bootstraps nothing."""

    ID = "installation"

    class Created(SailplaneAggregate.Created):
        pass

    @classmethod
    def record(cls, *, by: Actor, at: datetime) -> Installation:
        return cls._create_as(id=cls.ID, by=by, at=at)


class Organization(SailplaneAggregate):
    """An organization; it keeps the set of its enabled owners so the last one stays."""

    name: str
    slug: str
    owner_ids: list[str]

    class Created(SailplaneAggregate.Created):
        name: str
        slug: str

        def apply(self, aggregate: Organization) -> None:
            super().apply(aggregate)
            aggregate.name = self.name
            aggregate.slug = self.slug
            aggregate.owner_ids = []

    class OwnerAdded(SailplaneAggregate.Event):
        member_id: str

        def apply(self, aggregate: Organization) -> None:
            aggregate.owner_ids = sorted({*aggregate.owner_ids, self.member_id})

    class OwnerRemoved(SailplaneAggregate.Event):
        member_id: str

        def apply(self, aggregate: Organization) -> None:
            aggregate.owner_ids = [m for m in aggregate.owner_ids if m != self.member_id]

    @classmethod
    def found(cls, *, id: str, name: str, slug: str, by: Actor, at: datetime) -> Organization:
        return cls._create_as(id=id, organization_id=id, by=by, at=at, name=name, slug=slug)

    def set_owner(self, member_id: str, is_owner: bool, *, by: Actor, at: datetime) -> None:
        """Record that a member is (or no longer is) an enabled owner; never the last one away."""
        owner_ids = getattr(self, "owner_ids", [])
        if is_owner and member_id not in owner_ids:
            self._trigger(self.OwnerAdded, by=by, at=at, member_id=member_id)
        elif not is_owner and member_id in owner_ids:
            if len(owner_ids) == 1:
                raise ConflictError(
                    "This is the organization's last Owner: make another member an Owner first.",
                    code="last_owner",
                )
            self._trigger(self.OwnerRemoved, by=by, at=at, member_id=member_id)


class User(SailplaneAggregate):
    """A person's account: profile, emails, password and MFA. It may join several organizations."""

    email: str
    display_name: str
    password_hash: str | None
    totp_secret: str | None
    pending_totp_secret: str | None
    last_totp_step: int
    recovery_code_hashes: list[str]
    emails: dict[str, dict[str, Any]]
    failed_logins: int
    locked_until: datetime | None
    deleted: bool

    class Created(SailplaneAggregate.Created):
        email: str
        given_name: str
        family_name: str
        display_name: str

        def apply(self, aggregate: User) -> None:
            super().apply(aggregate)
            aggregate.email = self.email
            aggregate.given_name = self.given_name
            aggregate.family_name = self.family_name
            aggregate.display_name = self.display_name
            aggregate.password_hash = None
            aggregate.totp_secret = None
            aggregate.pending_totp_secret = None
            aggregate.last_totp_step = 0
            aggregate.recovery_code_hashes = []
            aggregate.emails = {
                self.email: {"verified_at": None, "token_hash": None, "token_expires_at": None}
            }
            aggregate.failed_logins = 0
            aggregate.locked_until = None
            aggregate.deleted = False

    class ProfileUpdated(SailplaneAggregate.Event):
        changes: dict[str, Any]

        def apply(self, aggregate: User) -> None:
            for name, value in self.changes.items():
                setattr(aggregate, name, value)
            if "email" in self.changes:
                aggregate.emails.setdefault(
                    self.changes["email"],
                    {"verified_at": None, "token_hash": None, "token_expires_at": None},
                )

    class PasswordSet(SailplaneAggregate.Event):
        password_hash: str
        reason: str  # "initial", "changed" or "reset"

        def apply(self, aggregate: User) -> None:
            aggregate.password_hash = self.password_hash
            aggregate.failed_logins = 0
            aggregate.locked_until = None

    class LoginFailed(SailplaneAggregate.Event):
        failures: int
        locked_until: datetime | None

        def apply(self, aggregate: User) -> None:
            aggregate.failed_logins = self.failures
            aggregate.locked_until = self.locked_until

    class LoginSucceeded(SailplaneAggregate.Event):
        def apply(self, aggregate: User) -> None:
            aggregate.failed_logins = 0
            aggregate.locked_until = None

    class TotpEnrollmentStarted(SailplaneAggregate.Event):
        secret: str

        def apply(self, aggregate: User) -> None:
            aggregate.pending_totp_secret = self.secret

    class TotpEnabled(SailplaneAggregate.Event):
        step: int
        recovery_code_hashes: list[str]

        def apply(self, aggregate: User) -> None:
            aggregate.totp_secret = aggregate.pending_totp_secret
            aggregate.pending_totp_secret = None
            aggregate.last_totp_step = self.step
            aggregate.recovery_code_hashes = list(self.recovery_code_hashes)

    class TotpUsed(SailplaneAggregate.Event):
        step: int

        def apply(self, aggregate: User) -> None:
            aggregate.last_totp_step = self.step

    class RecoveryCodeUsed(SailplaneAggregate.Event):
        code_hash: str

        def apply(self, aggregate: User) -> None:
            aggregate.recovery_code_hashes = [
                h for h in aggregate.recovery_code_hashes if h != self.code_hash
            ]

    class MfaReset(SailplaneAggregate.Event):
        def apply(self, aggregate: User) -> None:
            aggregate.totp_secret = None
            aggregate.pending_totp_secret = None
            aggregate.recovery_code_hashes = []

    class EmailAdded(SailplaneAggregate.Event):
        email: str
        token_hash: str
        token_expires_at: datetime

        def apply(self, aggregate: User) -> None:
            aggregate.emails[self.email] = {
                "verified_at": None,
                "token_hash": self.token_hash,
                "token_expires_at": self.token_expires_at,
            }

    class EmailVerified(SailplaneAggregate.Event):
        email: str

        def apply(self, aggregate: User) -> None:
            aggregate.emails[self.email] = {
                "verified_at": self.timestamp,
                "token_hash": None,
                "token_expires_at": None,
            }

    class VerificationEmailRecorded(SailplaneAggregate.Event):
        """What became of the email with an address's verification link."""

        email: str
        status: str  # sent, failed or not_configured
        message: str | None

    class Deleted(SailplaneAggregate.Event):
        def apply(self, aggregate: User) -> None:
            aggregate.deleted = True

    @classmethod
    def register(
        cls,
        *,
        id: str,
        email: str,
        display_name: str,
        by: Actor,
        at: datetime,
        given_name: str = "",
        family_name: str = "",
    ) -> User:
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            email=check_email(email),
            given_name=given_name.strip(),
            family_name=family_name.strip(),
            display_name=display_name.strip()
            or " ".join(p for p in (given_name.strip(), family_name.strip()) if p)
            or check_email(email),
        )

    @property
    def has_mfa(self) -> bool:
        return self.totp_secret is not None

    def verified_emails(self) -> list[str]:
        return [e for e, info in self.emails.items() if info["verified_at"] is not None]

    def update_profile(self, *, by: Actor, at: datetime, **fields: str | None) -> dict[str, Any]:
        """Change the given profile fields; returns the changes (the old email under `_old_email`)."""
        changes: dict[str, Any] = {}
        for name in ("given_name", "family_name", "display_name"):
            value = fields.get(name)
            if value is not None and value.strip() != getattr(self, name):
                changes[name] = value.strip()
        if "display_name" in changes and not changes["display_name"]:
            raise InvalidValueError("The display name must not be empty.", field="displayName")
        email = fields.get("email")
        if email is not None and check_email(email) != self.email:
            changes["email"] = check_email(email)
        if changes:
            self._trigger(self.ProfileUpdated, by=by, at=at, changes=changes)
        return changes

    def set_password(self, password_hash: str, *, reason: str, by: Actor, at: datetime) -> None:
        self._trigger(self.PasswordSet, by=by, at=at, password_hash=password_hash, reason=reason)

    def throttled_for(self, at: datetime) -> int:
        """Seconds until a sign-in may be tried again (0: now)."""
        if self.locked_until is None or self.locked_until <= at:
            return 0
        return max(1, math.ceil((self.locked_until - at).total_seconds()))

    def record_failed_login(self, *, by: Actor, at: datetime) -> None:
        failures = self.failed_logins + 1
        locked_until = None
        if failures >= FREE_LOGIN_FAILURES:
            delay = min(
                LOGIN_BACKOFF_SECONDS * 2 ** (failures - FREE_LOGIN_FAILURES),
                LOGIN_BACKOFF_MAX_SECONDS,
            )
            locked_until = at + timedelta(seconds=delay)
        self._trigger(self.LoginFailed, by=by, at=at, failures=failures, locked_until=locked_until)

    def record_successful_login(self, *, by: Actor, at: datetime) -> None:
        if self.failed_logins or self.locked_until is not None:
            self._trigger(self.LoginSucceeded, by=by, at=at)

    def start_totp_enrollment(self, secret: str, *, by: Actor, at: datetime) -> None:
        if self.totp_secret is not None:
            raise ConflictError(
                "Two-factor authentication is already enabled; reset it before enrolling again.",
                code="mfa_already_enabled",
            )
        self._trigger(self.TotpEnrollmentStarted, by=by, at=at, secret=secret)

    def enable_totp(
        self, step: int, recovery_code_hashes: list[str], *, by: Actor, at: datetime
    ) -> None:
        if self.totp_secret is not None:
            raise ConflictError(
                "Two-factor authentication is already enabled.", code="mfa_already_enabled"
            )
        if self.pending_totp_secret is None:
            raise ConflictError(
                "Start a TOTP enrollment before verifying it.", code="mfa_enrollment_not_started"
            )
        self._trigger(
            self.TotpEnabled, by=by, at=at, step=step, recovery_code_hashes=recovery_code_hashes
        )

    def use_totp_step(self, step: int, *, by: Actor, at: datetime) -> None:
        if step <= self.last_totp_step:
            raise InvalidValueError(
                "This code was already used; wait for the next one.", field="code"
            )
        self._trigger(self.TotpUsed, by=by, at=at, step=step)

    def use_recovery_code(self, code_hash: str, *, by: Actor, at: datetime) -> None:
        if code_hash not in self.recovery_code_hashes:
            raise InvalidValueError("The recovery code is not valid.", field="recoveryCode")
        self._trigger(self.RecoveryCodeUsed, by=by, at=at, code_hash=code_hash)

    def reset_mfa(self, *, by: Actor, at: datetime) -> None:
        if self.totp_secret or self.pending_totp_secret or self.recovery_code_hashes:
            self._trigger(self.MfaReset, by=by, at=at)

    def add_email(
        self, email: str, token_hash: str, expires_at: datetime, *, by: Actor, at: datetime
    ) -> str:
        email = check_email(email)
        existing = self.emails.get(email)
        if existing is not None and existing["verified_at"] is not None:
            raise ConflictError(f"{email} is already verified.", code="email_already_verified")
        self._trigger(
            self.EmailAdded,
            by=by,
            at=at,
            email=email,
            token_hash=token_hash,
            token_expires_at=expires_at,
        )
        return email

    def record_verification_email(
        self, email: str, status: str, message: str | None, *, by: Actor, at: datetime
    ) -> None:
        self._trigger(
            self.VerificationEmailRecorded,
            by=by,
            at=at,
            email=email,
            status=status,
            message=message,
        )

    def verify_email(self, email: str, token_hash: str, *, by: Actor, at: datetime) -> None:
        info = self.emails.get(email)
        if info is None or info["token_hash"] != token_hash:
            raise NotFoundError(
                "The verification link is not valid.", code="verification_not_found"
            )
        if info["token_expires_at"] is not None and info["token_expires_at"] <= at:
            raise NotFoundError(
                "The verification link has expired; add the email again for a new one.",
                code="verification_expired",
            )
        self._trigger(self.EmailVerified, by=by, at=at, email=email)

    def mark_email_verified(self, email: str, *, by: Actor, at: datetime) -> None:
        """An email proven by other means (an identity provider's verified claim)."""
        info = self.emails.get(email)
        if info is not None and info["verified_at"] is None:
            self._trigger(self.EmailVerified, by=by, at=at, email=email)

    def delete(self, *, by: Actor, at: datetime) -> None:
        if not self.deleted:
            self._trigger(self.Deleted, by=by, at=at)


FREE_LOGIN_FAILURES = 5
LOGIN_BACKOFF_SECONDS = 30
LOGIN_BACKOFF_MAX_SECONDS = 900
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_email(email: str) -> str:
    cleaned = email.strip().lower()
    if not EMAIL_PATTERN.match(cleaned) or len(cleaned) > 254:
        raise InvalidValueError(f"{email!r} is not an email address.", field="email")
    return cleaned


ACCOUNT_TYPES = ("managed", "external")


class Member(SailplaneAggregate):
    """A user's membership of one organization, with organization roles."""

    user_id: str
    name: str
    email: str
    role_ids: list[str]
    is_enabled: bool
    preferences: dict[str, Any]
    removed: bool

    class Created(SailplaneAggregate.Created):
        user_id: str
        name: str
        email: str
        role_ids: list[str]
        account_type: str

        def apply(self, aggregate: Member) -> None:
            super().apply(aggregate)
            aggregate.user_id = self.user_id
            aggregate.name = self.name
            aggregate.email = self.email
            aggregate.role_ids = list(self.role_ids)
            aggregate.account_type = self.account_type
            aggregate.is_enabled = True
            aggregate.preferences = {}
            aggregate.removed = False

    class RolesReplaced(SailplaneAggregate.Event):
        role_ids: list[str]

        def apply(self, aggregate: Member) -> None:
            aggregate.role_ids = list(self.role_ids)

    class Updated(SailplaneAggregate.Event):
        changes: dict[str, Any]

        def apply(self, aggregate: Member) -> None:
            for name, value in self.changes.items():
                setattr(aggregate, name, dict(value) if isinstance(value, dict) else value)

    class InvitationAccepted(SailplaneAggregate.Event):
        invitation_id: str
        invited_by_member_id: str | None
        invite_expires_at: datetime

        def apply(self, aggregate: Member) -> None:
            aggregate.invitation_id = self.invitation_id

    class Removed(SailplaneAggregate.Event):
        def apply(self, aggregate: Member) -> None:
            aggregate.removed = True

    @classmethod
    def join(
        cls,
        *,
        id: str,
        user: User,
        role_ids: list[str],
        by: Actor,
        at: datetime,
        organization_id: str | None = None,
        account_type: str = "managed",
    ) -> Member:
        check_organization_roles(role_ids)
        if not role_ids:
            raise InvalidValueError("A member needs at least one role.", field="roleIds")
        if account_type not in ACCOUNT_TYPES:
            raise InvalidValueError(
                f"Unknown account type {account_type!r}; expected one of {', '.join(ACCOUNT_TYPES)}.",
                field="accountType",
            )
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            organization_id=organization_id,
            user_id=user.id,
            name=user.display_name,
            email=user.email,
            role_ids=sorted(set(role_ids)),
            account_type=account_type,
        )

    @property
    def is_owner(self) -> bool:
        """An enabled member holding the Owner role."""
        return not self.removed and self.is_enabled and OWNER.id in self.role_ids

    def replace_roles(self, role_ids: list[str], *, by: Actor, at: datetime) -> None:
        check_organization_roles(role_ids)
        if not role_ids:
            raise InvalidValueError(
                "At least one organization role is required; remove the member to take all roles away.",
                field="roleIds",
            )
        wanted = sorted(set(role_ids))
        if wanted != self.role_ids:
            self._trigger(self.RolesReplaced, by=by, at=at, role_ids=wanted)

    def update(
        self,
        *,
        by: Actor,
        at: datetime,
        name: str | None = None,
        email: str | None = None,
        preferences: dict[str, Any] | None = None,
        is_enabled: bool | None = None,
    ) -> None:
        changes: dict[str, Any] = {}
        if name is not None:
            if not name.strip():
                raise InvalidValueError("The member's name must not be empty.", field="name")
            if name.strip() != self.name:
                changes["name"] = name.strip()
        if email is not None and check_email(email) != self.email:
            changes["email"] = check_email(email)
        if preferences is not None and preferences != self.preferences:
            changes["preferences"] = dict(preferences)
        if is_enabled is not None and is_enabled != self.is_enabled:
            changes["is_enabled"] = is_enabled
        if changes:
            self._trigger(self.Updated, by=by, at=at, changes=changes)

    def record_invitation(
        self,
        invitation_id: str,
        *,
        invited_by_member_id: str | None,
        invite_expires_at: datetime,
        by: Actor,
        at: datetime,
    ) -> None:
        self._trigger(
            self.InvitationAccepted,
            by=by,
            at=at,
            invitation_id=invitation_id,
            invited_by_member_id=invited_by_member_id,
            invite_expires_at=invite_expires_at,
        )

    def remove(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Removed, by=by, at=at)


def check_organization_roles(role_ids: list[str]) -> None:
    unknown = [r for r in role_ids if r not in ORGANIZATION_ROLES]
    if unknown:
        raise InvalidValueError(
            f"Unknown organization role: {', '.join(unknown)}.", field="roleIds"
        )


class ServiceAccount(SailplaneAggregate):
    """A non-human principal (CI, automation) that holds API keys and organization roles."""

    username: str
    description: str
    role_ids: list[str]

    class Created(SailplaneAggregate.Created):
        username: str
        description: str
        role_ids: list[str]

        def apply(self, aggregate: ServiceAccount) -> None:
            super().apply(aggregate)
            aggregate.username = self.username
            aggregate.description = self.description
            aggregate.role_ids = list(self.role_ids)

    @classmethod
    def create(
        cls,
        *,
        id: str,
        username: str,
        description: str,
        role_ids: list[str],
        by: Actor,
        at: datetime,
    ) -> ServiceAccount:
        check_organization_roles(role_ids)
        cleaned = username.strip()
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", cleaned):
            raise InvalidValueError(
                "A service account's username is 1-63 lowercase letters, digits, '.', '_' or '-'.",
                field="username",
            )
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            username=cleaned,
            description=description,
            role_ids=sorted(set(role_ids)),
        )


class ApiKey(SailplaneAggregate):
    """A bearer credential held by a member or a service account; only its hash is kept."""

    token_hash: str
    principal_kind: str
    principal_id: str
    revoked: bool

    class Created(SailplaneAggregate.Created):
        token_hash: str
        principal_kind: str
        principal_id: str
        name: str
        expires_at: datetime | None

        def apply(self, aggregate: ApiKey) -> None:
            super().apply(aggregate)
            aggregate.token_hash = self.token_hash
            aggregate.principal_kind = self.principal_kind
            aggregate.principal_id = self.principal_id
            aggregate.name = self.name
            aggregate.expires_at = self.expires_at
            aggregate.revoked = False

    class Revoked(SailplaneAggregate.Event):
        def apply(self, aggregate: ApiKey) -> None:
            aggregate.revoked = True

    @classmethod
    def issue(
        cls,
        *,
        id: str,
        token_hash: str,
        principal_kind: str,
        principal_id: str,
        name: str,
        by: Actor,
        at: datetime,
        organization_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> ApiKey:
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            organization_id=organization_id,
            token_hash=token_hash,
            principal_kind=principal_kind,
            principal_id=principal_id,
            name=name,
            expires_at=expires_at,
        )

    def revoke(self, *, by: Actor, at: datetime) -> None:
        if not self.revoked:
            self._trigger(self.Revoked, by=by, at=at)


class Team(SailplaneAggregate):
    """A group of members; resources are shared with teams."""

    name: str
    default_role_id: str
    members: dict[str, dict[str, Any]]
    deleted: bool

    class Created(SailplaneAggregate.Created):
        name: str
        default_role_id: str

        def apply(self, aggregate: Team) -> None:
            super().apply(aggregate)
            aggregate.name = self.name
            aggregate.default_role_id = self.default_role_id
            aggregate.members = {}
            aggregate.deleted = False

    class Updated(SailplaneAggregate.Event):
        changes: dict[str, Any]

        def apply(self, aggregate: Team) -> None:
            if "name" in self.changes:
                aggregate.name = self.changes["name"]
            if "default_role_id" in self.changes:
                aggregate.default_role_id = self.changes["default_role_id"]

    class Deleted(SailplaneAggregate.Event):
        member_ids: list[str]

        def apply(self, aggregate: Team) -> None:
            aggregate.deleted = True
            aggregate.members = {}

    class MemberAdded(SailplaneAggregate.Event):
        membership_id: str
        member_id: str
        role_ids: list[str]

        def apply(self, aggregate: Team) -> None:
            aggregate.members[self.member_id] = {
                "membership_id": self.membership_id,
                "role_ids": list(self.role_ids),
            }

    class MemberRolesReplaced(SailplaneAggregate.Event):
        member_id: str
        role_ids: list[str]

        def apply(self, aggregate: Team) -> None:
            aggregate.members[self.member_id]["role_ids"] = list(self.role_ids)

    class MemberRemoved(SailplaneAggregate.Event):
        member_id: str

        def apply(self, aggregate: Team) -> None:
            aggregate.members.pop(self.member_id, None)

    @classmethod
    def create(
        cls, *, id: str, name: str, default_role_id: str | None, by: Actor, at: datetime
    ) -> Team:
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            name=check_team_name(name),
            default_role_id=check_team_role(
                default_role_id or TEAM_MEMBER.id, field="defaultRoleId"
            ),
        )

    def update(
        self, *, name: str | None, default_role_id: str | None, by: Actor, at: datetime
    ) -> None:
        changes: dict[str, Any] = {}
        if name is not None and check_team_name(name) != self.name:
            changes["name"] = check_team_name(name)
        if default_role_id is not None and default_role_id != self.default_role_id:
            changes["default_role_id"] = check_team_role(default_role_id, field="defaultRoleId")
        if changes:
            self._trigger(self.Updated, by=by, at=at, changes=changes)

    def delete(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Deleted, by=by, at=at, member_ids=sorted(self.members))

    def add_member(
        self,
        member_id: str,
        *,
        membership_id: str,
        role_ids: list[str] | None,
        by: Actor,
        at: datetime,
    ) -> None:
        if member_id in self.members:
            raise ConflictError(
                f"Member {member_id} is already in team {self.id}.", code="team_member_exists"
            )
        roles = sorted({check_team_role(r, field="roleIds") for r in role_ids or []}) or [
            self.default_role_id
        ]
        self._trigger(
            self.MemberAdded,
            by=by,
            at=at,
            membership_id=membership_id,
            member_id=member_id,
            role_ids=roles,
        )

    def replace_member_roles(
        self, member_id: str, role_ids: list[str], *, by: Actor, at: datetime
    ) -> None:
        self._require_member(member_id)
        if not role_ids:
            raise InvalidValueError(
                "At least one team role is required; remove the member to take all roles away.",
                field="roleIds",
            )
        roles = sorted({check_team_role(r, field="roleIds") for r in role_ids})
        if roles != self.members[member_id]["role_ids"]:
            self._trigger(
                self.MemberRolesReplaced, by=by, at=at, member_id=member_id, role_ids=roles
            )

    def remove_member(self, member_id: str, *, by: Actor, at: datetime) -> None:
        self._require_member(member_id)
        self._trigger(self.MemberRemoved, by=by, at=at, member_id=member_id)

    def _require_member(self, member_id: str) -> None:
        if member_id not in self.members:
            raise NotFoundError(
                f"Member {member_id} is not in team {self.id}.", code="team_member_not_found"
            )


def check_team_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise InvalidValueError("The team name must not be empty.", field="name")
    if len(cleaned) > TEAM_NAME_MAX:
        raise InvalidValueError(
            f"The team name is longer than {TEAM_NAME_MAX} characters.", field="name"
        )
    return cleaned


def check_team_role(role_id: str, *, field: str) -> str:
    if role_id not in TEAM_ROLES:
        raise InvalidValueError(
            f"Unknown team role {role_id!r}; expected one of {', '.join(sorted(TEAM_ROLES))}.",
            field=field,
        )
    return role_id
