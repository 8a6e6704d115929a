"""Identity use cases: organizations, users, members, invitations, policies, service
accounts, API keys, and teams with their members.

Users are installation-wide (an email belongs to one user); a member is a user's
membership of one organization. Changes that could leave an organization without an
enabled Owner also change the Organization aggregate, so two concurrent demotions meet on
its version and one of them gets 409.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sailplane.commands.base import Clock, SailplaneApplication, utc_now
from sailplane.commands.credentials import (
    check_password,
    hash_password,
    hash_token,
    new_api_token,
    same_hash,
    temporary_password,
    verify_password,
)
from sailplane.commands.ports import EmailOutcome, Mail
from sailplane.domain.access import MEMBER, OWNER
from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import (
    ConflictError,
    InvalidValueError,
    NotFoundError,
    PermissionDeniedError,
)
from sailplane.domain.identity import (
    ApiKey,
    Installation,
    Member,
    Organization,
    ServiceAccount,
    Team,
    User,
    check_email,
)
from sailplane.domain.ids import new_id
from sailplane.domain.invitations import Invitation
from sailplane.domain.policies import Policy, check_permissions
from sailplane.domain.signin import Login, TrustedDevice
from sailplane.domain.uniqueness import GLOBAL_SCOPE, UniqueKey
from sailplane.storage import EventLog

__all__ = ["FoundedOrganization", "Identity", "hash_token", "new_api_token"]

INVITATION_TTL = timedelta(days=7)
ONE_TIME_CODE_TTL = timedelta(minutes=15)
EMAIL_VERIFICATION_TTL = timedelta(hours=24)
INVITATION_PREFIX = "inv_"
ONE_TIME_CODE_PREFIX = "ota_"
VERIFICATION_PREFIX = "vfy_"


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "organization"


def compound_token(prefix: str, aggregate_id: str) -> str:
    """A secret that names its aggregate: `<prefix><id>.<random>` (only its hash is stored)."""
    return f"{prefix}{aggregate_id}.{secrets.token_urlsafe(24)}"


def token_target(token: str, prefix: str) -> str | None:
    """The aggregate id a compound token names, or None when it is not one."""
    if not token.startswith(prefix):
        return None
    aggregate_id, dot, rest = token[len(prefix) :].partition(".")
    return aggregate_id if dot and rest and aggregate_id.isalnum() else None


class Lookup(Protocol):
    """What the write side asks the views: which aggregates a change must also touch."""

    def memberships_of_user(self, user_id: str) -> list[dict[str, Any]]: ...

    def live_login_ids(self, user_id: str, organization_id: str | None = None) -> list[str]: ...

    def trusted_device_ids(self, user_id: str) -> list[str]: ...

    def api_key_ids(self, principal_id: str) -> list[str]: ...

    def team_ids_of_member(self, organization_id: str, member_id: str) -> list[str]: ...


@dataclass(frozen=True)
class FoundedOrganization:
    organization_id: str
    owner_member_id: str
    owner_user_id: str
    token: str
    position: int


@dataclass(frozen=True)
class AcceptedInvitation:
    organization_id: str
    user_id: str
    member_id: str
    one_time_code: str | None  # only for a user the acceptance created
    next_step: str
    position: int


class Identity(SailplaneApplication):
    def __init__(
        self,
        log: EventLog,
        *,
        clock: Clock = utc_now,
        lookup: Lookup | None = None,
        mail: Mail | None = None,
    ) -> None:
        # The directory view and the mail port (the System passes both; a writer that
        # neither touches memberships nor sends email needs neither).
        self.lookup = lookup
        self.mail = mail
        super().__init__(log, clock=clock)

    def _views(self) -> Lookup:
        if self.lookup is None:
            raise RuntimeError("Identity needs its lookup (the System passes the directory view)")
        return self.lookup

    # --- organizations ---------------------------------------------------------------------

    def found_organization(
        self, *, name: str, owner_email: str, owner_name: str, token: str | None = None
    ) -> FoundedOrganization:
        """Create an organization with its owner and the owner's first API key."""
        organization_id = new_id()
        by = Actor.system("bootstrap", organization_id)
        return self._found(name, owner_email, owner_name, token, by, extra=())

    def bootstrap(
        self, *, name: str, owner_email: str, owner_name: str, token: str | None = None
    ) -> FoundedOrganization | None:
        """The first start: found the organization once, however many servers start at once."""
        if self._find(Installation, Installation.ID) is not None:
            return None
        organization_id = new_id()
        by = Actor.system("bootstrap", organization_id)
        installation = Installation.record(by=by, at=self.clock())
        try:
            return self._found(name, owner_email, owner_name, token, by, extra=(installation,))
        except ConflictError:
            return None  # another server recorded the installation first

    def _found(
        self,
        name: str,
        owner_email: str,
        owner_name: str,
        token: str | None,
        by: Actor,
        *,
        extra: tuple[Installation, ...],
    ) -> FoundedOrganization:
        at = self.clock()
        organization = Organization.found(
            id=by.organization_id, name=name, slug=slugify(name), by=by, at=at
        )
        user, keys = self._user_for(owner_email, owner_name, by)
        owner = Member.join(id=new_id(), user=user, role_ids=[OWNER.id], by=by, at=at)
        organization.set_owner(owner.id, True, by=by, at=at)
        membership = self._membership_key(user.id, owner.id, by)
        token = token or new_api_token()
        key = ApiKey.issue(
            id=new_id(),
            token_hash=hash_token(token),
            principal_kind="member",
            principal_id=owner.id,
            name="owner key",
            by=by,
            at=at,
        )
        position = self._commit(
            *extra,
            organization,
            user,
            *keys,
            owner,
            membership,
            key,
            conflict=_email_taken(user.email),
        )
        return FoundedOrganization(organization.id, owner.id, user.id, token, position)

    def _user_for(
        self,
        email: str,
        display_name: str,
        by: Actor,
        *,
        given_name: str = "",
        family_name: str = "",
    ) -> tuple[User, list[UniqueKey]]:
        """The user with this email, or a new one (with its email claimed)."""
        existing = self.user_by_email(email)
        if existing is not None:
            return existing, []
        user = User.register(
            id=new_id(),
            email=email,
            display_name=display_name,
            given_name=given_name,
            family_name=family_name,
            by=by,
            at=self.clock(),
        )
        return user, [self._email_key(user.email, user.id, by)]

    def user_by_email(self, email: str) -> User | None:
        key = self._find(
            UniqueKey, UniqueKey.id_for("user-email", GLOBAL_SCOPE, check_email(email))
        )
        if key is None or key.owner_id is None:
            return None
        user = self._find(User, key.owner_id)
        return None if user is None or user.deleted else user

    def _email_key(self, email: str, user_id: str, by: Actor) -> UniqueKey:
        return self._claim_key(
            "user-email", email, user_id, by=by, conflict=_email_taken(email), scope=GLOBAL_SCOPE
        )

    def _membership_key(self, user_id: str, member_id: str, by: Actor) -> UniqueKey:
        return self._claim_key(
            "membership",
            user_id,
            member_id,
            by=by,
            conflict=ConflictError(
                "This user is already a member of the organization.", code="already_member"
            ),
        )

    def member_id_of_user(self, organization_id: str, user_id: str) -> str | None:
        key = self._find(UniqueKey, UniqueKey.id_for("membership", organization_id, user_id))
        return None if key is None else key.owner_id

    def _organization(self, by: Actor) -> Organization:
        return self._load(
            Organization,
            by.organization_id,
            organization_id=by.organization_id,
            kind="organization",
        )

    def _owner_change(self, member: Member, was_owner: bool, by: Actor) -> list[Organization]:
        """The organization with its owner set updated when `member` gained or lost ownership."""
        if member.is_owner == was_owner:
            return []
        organization = self._organization(by)
        organization.set_owner(member.id, member.is_owner, by=by, at=self.clock())
        return [organization]

    def _require_owner_to_touch_owners(self, by: Actor, *, touches_owner: bool) -> None:
        if touches_owner and not self.caller_is_owner(by):
            raise PermissionDeniedError(
                "Only an Owner may grant, remove or change an Owner.", code="owner_required"
            )

    def caller_is_owner(self, by: Actor) -> bool:
        if by.kind == "system":
            return True
        found: Member | ServiceAccount | None
        if by.kind == "member":
            found = self._find(Member, by.id)
            return found is not None and found.is_owner
        found = self._find(ServiceAccount, by.id)
        return found is not None and OWNER.id in found.role_ids

    # --- members -------------------------------------------------------------------------

    def add_member(
        self, *, email: str, display_name: str, role_ids: list[str], by: Actor
    ) -> tuple[str, int]:
        """A user (new, or found by email) joins the actor's organization with these roles."""
        user, keys = self._user_for(email, display_name, by)
        member, others = self._join(user, role_ids, by)
        return member.id, self._commit(
            user, *keys, member, *others, conflict=_email_taken(user.email)
        )

    def _join(
        self, user: User, role_ids: list[str], by: Actor, *, account_type: str = "managed"
    ) -> tuple[Member, list[SailplaneAggregate]]:
        member = Member.join(
            id=new_id(),
            user=user,
            role_ids=role_ids,
            by=by,
            at=self.clock(),
            account_type=account_type,
        )
        others: list[SailplaneAggregate] = [self._membership_key(user.id, member.id, by)]
        others += self._owner_change(member, False, by)
        return member, others

    def _member(self, member_id: str, by: Actor) -> Member:
        member = self._load(Member, member_id, organization_id=by.organization_id, kind="member")
        if member.removed:
            raise NotFoundError.of("member", member_id)
        return member

    def update_member(
        self,
        member_id: str,
        *,
        by: Actor,
        name: str | None = None,
        email: str | None = None,
        preferences: dict[str, Any] | None = None,
        is_enabled: bool | None = None,
    ) -> int:
        member = self._member(member_id, by)
        was_owner = member.is_owner
        was_enabled = member.is_enabled
        self._require_owner_to_touch_owners(by, touches_owner=was_owner and is_enabled is False)
        member.update(
            by=by,
            at=self.clock(),
            name=name,
            email=email,
            preferences=preferences,
            is_enabled=is_enabled,
        )
        # Disabling ends the member's logins here, so enabling again does not revive them.
        logins = (
            self._revoke_logins(
                member.user_id, "member_disabled", by, organization_id=by.organization_id
            )
            if was_enabled and not member.is_enabled and member.user_id
            else []
        )
        return self._commit(member, *self._owner_change(member, was_owner, by), *logins)

    def replace_member_roles(self, member_id: str, role_ids: list[str], *, by: Actor) -> int:
        member = self._member(member_id, by)
        was_owner = member.is_owner
        self._require_owner_to_touch_owners(
            by, touches_owner=(OWNER.id in member.role_ids) != (OWNER.id in role_ids)
        )
        member.replace_roles(role_ids, by=by, at=self.clock())
        return self._commit(member, *self._owner_change(member, was_owner, by))

    def remove_member(self, member_id: str, *, by: Actor) -> int:
        member = self._member(member_id, by)
        self._require_owner_to_touch_owners(by, touches_owner=OWNER.id in member.role_ids)
        return self._commit(*self._removal(member, by))

    def _removal(self, member: Member, by: Actor) -> list[SailplaneAggregate | None]:
        """Everything that changes when a member leaves: ownership, teams, keys, logins."""
        at = self.clock()
        was_owner = member.is_owner
        member.remove(by=by, at=at)
        changed: list[SailplaneAggregate | None] = [
            member,
            *self._owner_change(member, was_owner, by),
        ]
        views = self._views()
        for team_id in views.team_ids_of_member(by.organization_id, member.id):
            team = self._find(Team, team_id)
            if team is not None and not team.deleted and member.id in team.members:
                team.remove_member(member.id, by=by, at=at)
                changed.append(team)
        changed.append(self._release_key("membership", member.user_id, member.id, by=by))
        changed.append(self._drop_policy(member.id, by))
        for key_id in views.api_key_ids(member.id):
            key = self._find(ApiKey, key_id)
            if key is not None and not key.revoked:
                key.revoke(by=by, at=at)
                changed.append(key)
        changed += self._revoke_logins(
            member.user_id, "member_removed", by, organization_id=by.organization_id
        )
        return changed

    def _revoke_logins(
        self,
        user_id: str,
        reason: str,
        by: Actor,
        *,
        organization_id: str | None = None,
        keep: str | None = None,
    ) -> list[SailplaneAggregate]:
        revoked: list[SailplaneAggregate] = []
        for login_id in self._views().live_login_ids(user_id, organization_id):
            login = self._find(Login, login_id)
            if login is not None and login.id != keep and login.status != "revoked":
                login.revoke(reason, by=by, at=self.clock())
                revoked.append(login)
        return revoked

    def _revoke_trusted_devices(self, user_id: str, by: Actor) -> list[SailplaneAggregate]:
        revoked: list[SailplaneAggregate] = []
        for device_id in self._views().trusted_device_ids(user_id):
            device = self._find(TrustedDevice, device_id)
            if device is not None and not device.revoked:
                device.revoke(by=by, at=self.clock())
                revoked.append(device)
        return revoked

    # --- users ---------------------------------------------------------------------------

    def create_user(
        self, *, email: str, given_name: str, family_name: str, display_name: str, by: Actor
    ) -> tuple[str, int]:
        """A new user account that joins the organization as a Member (no password yet)."""
        if self.user_by_email(email) is not None:
            raise _email_taken(check_email(email))
        user, keys = self._user_for(
            email, display_name, by, given_name=given_name, family_name=family_name
        )
        member, others = self._join(user, [MEMBER.id], by)
        return user.id, self._commit(
            user, *keys, member, *others, conflict=_email_taken(user.email)
        )

    def user_in_organization(self, user_id: str, by: Actor) -> tuple[User, Member]:
        """A user who is a member of the actor's organization (404 otherwise)."""
        member_id = self.member_id_of_user(by.organization_id, user_id)
        user = self._find(User, user_id)
        if member_id is None or user is None or user.deleted:
            raise NotFoundError.of("user", user_id)
        return user, self._member(member_id, by)

    def _require_credentials_managed_here(self, user: User, member: Member, by: Actor) -> None:
        """An organization's admins manage the sign-in of users who belong to it alone.

        A user who is also a member elsewhere keeps their email, password and MFA to
        themselves: another organization's admin changing them would open that account in
        every organization.
        """
        if by.kind == "system" or (by.kind == "member" and by.id == member.id):
            return
        elsewhere = [
            m
            for m in self._views().memberships_of_user(user.id)
            if m["organization_id"] != by.organization_id
        ]
        if elsewhere:
            raise PermissionDeniedError(
                "This user also belongs to other organizations; only they can change their "
                "email, password or MFA.",
                code="user_in_other_organizations",
            )

    def update_user(
        self,
        user_id: str,
        *,
        by: Actor,
        email: str | None = None,
        given_name: str | None = None,
        family_name: str | None = None,
        display_name: str | None = None,
    ) -> int:
        user, member = self.user_in_organization(user_id, by)
        if email is not None and check_email(email) != user.email:
            self._require_credentials_managed_here(user, member, by)
        old_email = user.email
        changes = user.update_profile(
            by=by,
            at=self.clock(),
            email=email,
            given_name=given_name,
            family_name=family_name,
            display_name=display_name,
        )
        keys: list[SailplaneAggregate | None] = []
        if "email" in changes:
            keys.append(self._email_key(user.email, user.id, by))
            if old_email not in user.verified_emails():
                keys.append(
                    self._release_key("user-email", old_email, user.id, by=by, scope=GLOBAL_SCOPE)
                )
        return self._commit(user, *keys, conflict=_email_taken(user.email))

    def delete_user(self, user_id: str, *, by: Actor) -> int:
        """Remove the user from this organization; the account goes when no membership is left."""
        user, member = self.user_in_organization(user_id, by)
        self._require_owner_to_touch_owners(by, touches_owner=OWNER.id in member.role_ids)
        changed = self._removal(member, by)
        elsewhere = [
            m
            for m in self._views().memberships_of_user(user.id)
            if m["organization_id"] != by.organization_id
        ]
        if not elsewhere:
            user.delete(by=by, at=self.clock())
            changed.append(user)
            for email in {user.email, *user.verified_emails()}:
                changed.append(
                    self._release_key("user-email", email, user.id, by=by, scope=GLOBAL_SCOPE)
                )
            changed += self._revoke_logins(user.id, "user_deleted", by)
            changed += self._revoke_trusted_devices(user.id, by)
        return self._commit(*changed)

    def change_password(
        self,
        user_id: str,
        *,
        current_password: str | None,
        new_password: str,
        by: Actor,
        keep_login: str | None = None,
    ) -> int:
        """Needs the current password when the user has one; ends the user's other logins."""
        user, member = self.user_in_organization(user_id, by)
        self._require_credentials_managed_here(user, member, by)
        check_password(new_password, field="newPassword")
        if user.password_hash is not None and not verify_password(
            user.password_hash, current_password or ""
        ):
            raise InvalidValueError("The current password is not correct.", field="currentPassword")
        user.set_password(hash_password(new_password), reason="changed", by=by, at=self.clock())
        others = self._revoke_logins(user.id, "password_changed", by, keep=keep_login)
        return self._commit(user, *others)

    def reset_password(self, user_id: str, *, by: Actor) -> tuple[str, int]:
        """A new temporary password (shown once); every login of the user ends."""
        user, member = self.user_in_organization(user_id, by)
        self._require_owner_to_touch_owners(by, touches_owner=OWNER.id in member.role_ids)
        self._require_credentials_managed_here(user, member, by)
        password = temporary_password()
        user.set_password(hash_password(password), reason="reset", by=by, at=self.clock())
        return password, self._commit(user, *self._revoke_logins(user.id, "password_reset", by))

    def reset_mfa(self, user_id: str, *, by: Actor, check_owner: bool = True) -> int:
        """Clear TOTP and recovery codes; end every login and forget every trusted device."""
        user, member = self.user_in_organization(user_id, by)
        if check_owner:
            self._require_owner_to_touch_owners(
                by, touches_owner=OWNER.id in member.role_ids and by.id != member.id
            )
        self._require_credentials_managed_here(user, member, by)
        user.reset_mfa(by=by, at=self.clock())
        return self._commit(
            user,
            *self._revoke_logins(user.id, "mfa_reset", by),
            *self._revoke_trusted_devices(user.id, by),
        )

    # --- own emails ------------------------------------------------------------------------

    def add_email(self, user_id: str, email: str, *, by: Actor) -> tuple[str, str, int]:
        """Record an unverified email; returns (email, verification token, position)."""
        user, _ = self.user_in_organization(user_id, by)
        cleaned = check_email(email)
        key = self._find(UniqueKey, UniqueKey.id_for("user-email", GLOBAL_SCOPE, cleaned))
        if key is not None and key.owner_id not in (None, user.id):
            raise _email_taken(cleaned)
        token = compound_token(VERIFICATION_PREFIX, user.id)
        at = self.clock()
        user.add_email(cleaned, hash_token(token), at + EMAIL_VERIFICATION_TTL, by=by, at=at)
        return cleaned, token, self._commit(user)

    def send_verification_email(self, user_id: str, email: str, link: str, *, by: Actor) -> int:
        """Send an address its verification link and record what became of the email."""
        user, _ = self.user_in_organization(user_id, by)
        outcome = self._send(
            email,
            "Verify your email address for Sailplane",
            f"Open this link to verify {email}:\n\n{link}\n\nThe link works for 24 hours.",
        )
        user.record_verification_email(
            email, outcome.status, outcome.message, by=by, at=self.clock()
        )
        return self._commit(user)

    def verify_email(self, token: str) -> tuple[str, str, int]:
        """Mark the email a verification token was sent to as verified: (user id, email, position)."""
        user_id = token_target(token, VERIFICATION_PREFIX)
        user = self._find(User, user_id) if user_id else None
        if user is None or user.deleted:
            raise NotFoundError(
                "The verification link is not valid.", code="verification_not_found"
            )
        email = next(
            (e for e, info in user.emails.items() if same_hash(token, info["token_hash"])), None
        )
        if email is None:
            raise NotFoundError(
                "The verification link is not valid.", code="verification_not_found"
            )
        by = Actor("system", "email-verification", user.organization_id)
        user.verify_email(email, hash_token(token), by=by, at=self.clock())
        key = self._email_key(email, user.id, by)
        return user.id, email, self._commit(user, key, conflict=_email_taken(email))

    # --- invitations -----------------------------------------------------------------------

    def create_invitation(
        self,
        *,
        email: str,
        name: str,
        organization_role_id: str,
        account_type: str,
        team_assignments: list[dict[str, str]],
        send_email: bool,
        by: Actor,
        expires_in: timedelta = INVITATION_TTL,
    ) -> tuple[str, str, int]:
        """A pending invitation: (id, token shown once, position)."""
        self._require_owner_to_touch_owners(by, touches_owner=organization_role_id == OWNER.id)
        if account_type not in ("managed", "external"):
            raise InvalidValueError(
                f"Unknown account type {account_type!r}; expected managed or external.",
                field="accountType",
            )
        existing = self.user_by_email(email)
        if existing is not None and self.member_id_of_user(by.organization_id, existing.id):
            raise ConflictError(
                f"{check_email(email)} is already a member of the organization.",
                code="already_member",
            )
        for assignment in team_assignments:
            team = self._find(Team, assignment["team_id"])
            if team is None or team.deleted or team.organization_id != by.organization_id:
                raise NotFoundError.of("team", assignment["team_id"])
        invitation_id = new_id()
        token = compound_token(INVITATION_PREFIX, invitation_id)
        at = self.clock()
        invitation = Invitation.create(
            id=invitation_id,
            email=email,
            name=name,
            organization_role_id=organization_role_id,
            account_type=account_type,
            team_assignments=team_assignments,
            token_hash=hash_token(token),
            expires_at=at + expires_in,
            send_email=send_email,
            by=by,
            at=at,
        )
        return invitation_id, token, self._commit(invitation)

    def send_invitation_email(
        self,
        invitation_id: str,
        *,
        organization_name: str,
        invite_url: str,
        expires_at: str,
        by: Actor,
    ) -> int:
        """Send the invitation to its email address and record what became of the email."""
        invitation = self._find(Invitation, invitation_id)
        if invitation is None or invitation.organization_id != by.organization_id:
            raise NotFoundError.of("invitation", invitation_id)
        outcome = self._send(
            invitation.email,
            f"You are invited to {organization_name} on Sailplane",
            f"Open this invitation to join {organization_name}:\n\n{invite_url}\n\n"
            f"Accept it with POST {invite_url}/accept before {expires_at}.",
        )
        invitation.record_email(outcome.status, outcome.message, by=by, at=self.clock())
        return self._commit(invitation)

    def _send(self, to: str, subject: str, body: str) -> EmailOutcome:
        if self.mail is None:
            raise TypeError("this Identity was built without a mail port")
        return self.mail.send(to, subject, body)

    def invitation_for(self, token: str) -> Invitation:
        """The invitation a token opens (404 for unknown or expired tokens, 409 once used)."""
        invitation_id = token_target(token, INVITATION_PREFIX)
        invitation = self._find(Invitation, invitation_id) if invitation_id else None
        if invitation is None or not same_hash(token, invitation.token_hash):
            raise NotFoundError("This invitation was not found.", code="invitation_not_found")
        invitation.check_open(self.clock())
        return invitation

    def accept_invitation(
        self,
        token: str,
        *,
        email: str | None = None,
        given_name: str = "",
        family_name: str = "",
        password: str | None = None,
    ) -> AcceptedInvitation:
        """Join the organization: links the user with the invited email, or creates them."""
        invitation = self.invitation_for(token)
        if email is not None and check_email(email) != invitation.email:
            raise InvalidValueError(
                "The email must be the one the invitation was sent to.", field="user.email"
            )
        member_id = new_id()
        by = Actor("member", member_id, invitation.organization_id)
        at = self.clock()
        user = self.user_by_email(invitation.email)
        changed: list[SailplaneAggregate | None] = []
        created = user is None
        if user is None:
            user = User.register(
                id=new_id(),
                email=invitation.email,
                display_name=invitation.name,
                given_name=given_name,
                family_name=family_name,
                by=by,
                at=at,
            )
            changed.append(self._email_key(user.email, user.id, by))
            if password:
                user.set_password(
                    hash_password(check_password(password, field="user.password")),
                    reason="initial",
                    by=by,
                    at=at,
                )
        member = Member.join(
            id=member_id,
            user=user,
            role_ids=[invitation.organization_role_id],
            by=by,
            at=at,
            account_type=invitation.account_type,
        )
        inviter = Actor.parse(invitation.invited_by, invitation.organization_id)
        member.record_invitation(
            invitation.id,
            invited_by_member_id=inviter.member_id,
            invite_expires_at=invitation.expires_at,
            by=by,
            at=at,
        )
        changed += [
            self._membership_key(user.id, member.id, by),
            *self._owner_change(member, False, by),
        ]
        for assignment in invitation.team_assignments:
            team = self._find(Team, assignment["team_id"])
            if team is not None and not team.deleted:
                team.add_member(
                    member.id,
                    membership_id=new_id(),
                    role_ids=[assignment["role_id"]],
                    by=by,
                    at=at,
                )
                changed.append(team)
        # A one-time code signs in as the user: only for one this acceptance created. An
        # existing account signs in with its own credentials (the token holder may not own it).
        code = compound_token(ONE_TIME_CODE_PREFIX, invitation.id) if created else None
        invitation.accept(
            user_id=user.id,
            member_id=member.id,
            ota_code_hash=hash_token(code) if code else None,
            ota_expires_at=at + ONE_TIME_CODE_TTL,
            by=by,
            at=at,
        )
        position = self._commit(
            invitation,
            user,
            member,
            *changed,
            conflict=ConflictError(
                "This invitation was accepted at the same time by another request.",
                code="invitation_used",
            ),
        )
        next_step = "sign_in" if user.password_hash else "set_password"
        return AcceptedInvitation(
            invitation.organization_id, user.id, member.id, code, next_step, position
        )

    # --- policies --------------------------------------------------------------------------

    def principal_type_of(self, principal_id: str, by: Actor) -> str:
        """member, team or service_account: what `principal_id` names in the organization."""
        for cls, kind in ((Member, "member"), (Team, "team"), (ServiceAccount, "service_account")):
            found = self._find(cls, principal_id)
            if (
                found is not None
                and found.organization_id == by.organization_id
                and not getattr(found, "removed", False)
                and not getattr(found, "deleted", False)
            ):
                return kind
        raise NotFoundError(
            f"No member, team or service account {principal_id} in this organization.",
            code="principal_not_found",
        )

    def set_policy(
        self,
        principal_id: str,
        permissions: list[str],
        *,
        by: Actor,
        caller_permissions: Iterable[str],
    ) -> int:
        """Replace a principal's organization-level permissions (only ones the caller holds)."""
        principal_type = self.principal_type_of(principal_id, by)
        check_permissions(permissions)
        held = set(caller_permissions)
        beyond = sorted(set(permissions) - held)
        if beyond and by.kind != "system":
            raise PermissionDeniedError(
                f"You cannot grant permissions you do not hold: {', '.join(beyond)}.",
                code="forbidden",
            )
        policy = self._find(Policy, Policy.id_for(by.organization_id, principal_id))
        if policy is None:
            policy = Policy.set_new(
                principal_type=principal_type,
                principal_id=principal_id,
                permissions=permissions,
                by=by,
                at=self.clock(),
            )
        else:
            policy.replace(permissions, by=by, at=self.clock())
        return self._commit(policy)

    def delete_policy(self, principal_id: str, *, by: Actor) -> int:
        policy = self._find(Policy, Policy.id_for(by.organization_id, principal_id))
        if policy is None or policy.organization_id != by.organization_id:
            raise NotFoundError.of("policy", principal_id)
        policy.delete(by=by, at=self.clock())
        return self._commit(policy)

    # --- service accounts and API keys -------------------------------------------------------

    def create_service_account(
        self, *, username: str, description: str, role_ids: list[str], by: Actor
    ) -> tuple[str, int]:
        account = ServiceAccount.create(
            id=new_id(),
            username=username,
            description=description,
            role_ids=role_ids,
            by=by,
            at=self.clock(),
        )
        conflict = ConflictError(
            f"A service account named {account.username!r} already exists.", code="username_taken"
        )
        key = self._claim_key(
            "service-account", account.username, account.id, by=by, conflict=conflict
        )
        return account.id, self._commit(account, key, conflict=conflict)

    def issue_api_key(self, *, member_id: str, name: str, by: Actor) -> tuple[str, int]:
        """A new API key for a member of the actor's organization; the token is shown once."""
        member = self._member(member_id, by)
        return self._issue_key("member", member.id, name, by)

    def issue_service_account_key(
        self, *, service_account_id: str, name: str, by: Actor
    ) -> tuple[str, int]:
        account = self._load(
            ServiceAccount,
            service_account_id,
            organization_id=by.organization_id,
            kind="service_account",
        )
        return self._issue_key("service_account", account.id, name, by)

    def _issue_key(self, kind: str, principal_id: str, name: str, by: Actor) -> tuple[str, int]:
        token = new_api_token()
        key = ApiKey.issue(
            id=new_id(),
            token_hash=hash_token(token),
            principal_kind=kind,
            principal_id=principal_id,
            name=name,
            by=by,
            at=self.clock(),
        )
        return token, self._commit(key)

    # --- teams ---------------------------------------------------------------------------

    def create_team(self, *, name: str, default_role_id: str | None, by: Actor) -> tuple[str, int]:
        team = Team.create(
            id=new_id(), name=name, default_role_id=default_role_id, by=by, at=self.clock()
        )
        name_key = self._claim_key(
            "team-name", team.name.lower(), team.id, by=by, conflict=_name_taken(team.name)
        )
        return team.id, self._commit(team, name_key, conflict=_name_taken(team.name))

    def update_team(
        self,
        team_id: str,
        *,
        name: str | None,
        default_role_id: str | None,
        by: Actor,
        expected_version: int | None = None,
    ) -> int:
        team = self._team(team_id, by)
        if expected_version is not None and expected_version != team.version:
            raise ConflictError(
                f"Team {team_id} is at version {team.version}, not {expected_version}.",
                code="stale_version",
            )
        old_name = team.name
        team.update(name=name, default_role_id=default_role_id, by=by, at=self.clock())
        keys = []
        if team.name.lower() != old_name.lower():
            keys.append(
                self._claim_key(
                    "team-name", team.name.lower(), team.id, by=by, conflict=_name_taken(team.name)
                )
            )
            keys.append(self._release_key("team-name", old_name.lower(), team.id, by=by))
        return self._commit(team, *keys, conflict=_name_taken(team.name) if keys else None)

    def delete_team(self, team_id: str, *, by: Actor) -> int:
        team = self._team(team_id, by)
        team.delete(by=by, at=self.clock())
        return self._commit(
            team,
            self._release_key("team-name", team.name.lower(), team.id, by=by),
            self._drop_policy(team.id, by),
        )

    def _drop_policy(self, principal_id: str, by: Actor) -> Policy | None:
        """A principal that goes takes its organization policy with it."""
        policy = self._find(Policy, Policy.id_for(by.organization_id, principal_id))
        if policy is None or policy.deleted:
            return None
        policy.delete(by=by, at=self.clock())
        return policy

    def add_team_member(
        self, team_id: str, member_id: str, *, role_ids: list[str] | None, by: Actor
    ) -> tuple[str, int]:
        team = self._team(team_id, by)
        self._member(member_id, by)
        membership_id = new_id()
        team.add_member(
            member_id, membership_id=membership_id, role_ids=role_ids, by=by, at=self.clock()
        )
        return membership_id, self._commit(team)

    def replace_team_member_roles(
        self, team_id: str, member_id: str, *, role_ids: list[str], by: Actor
    ) -> int:
        team = self._team(team_id, by)
        team.replace_member_roles(member_id, role_ids, by=by, at=self.clock())
        return self._commit(team)

    def remove_team_member(self, team_id: str, member_id: str, *, by: Actor) -> int:
        team = self._team(team_id, by)
        team.remove_member(member_id, by=by, at=self.clock())
        return self._commit(team)

    def _team(self, team_id: str, by: Actor) -> Team:
        return self._load(Team, team_id, organization_id=by.organization_id, kind="team")


def _email_taken(email: str) -> ConflictError:
    return ConflictError(f"A user with the email {email} already exists.", code="email_taken")


def _name_taken(name: str) -> ConflictError:
    return ConflictError(f"A team named {name!r} already exists.", code="team_name_taken")
