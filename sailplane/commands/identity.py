"""Identity use cases: the first start, API keys, and teams with their members."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sailplane.commands.base import SailplaneApplication
from sailplane.domain.access import OWNER
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, NotFoundError
from sailplane.domain.identity import ApiKey, Installation, Member, Organization, Team, User
from sailplane.domain.ids import new_id

TOKEN_PREFIX = "sp_"


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


def hash_token(token: str) -> str:
    """Bearer tokens are high-entropy secrets: a SHA-256 digest is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "organization"


@dataclass(frozen=True)
class FoundedOrganization:
    organization_id: str
    owner_member_id: str
    owner_user_id: str
    token: str
    position: int


class Identity(SailplaneApplication):
    # --- organizations and credentials -------------------------------------------------

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
        user = User.register(id=new_id(), email=owner_email, display_name=owner_name, by=by, at=at)
        owner = Member.join(id=new_id(), user=user, role_ids=[OWNER.id], by=by, at=at)
        email_key = self._claim_key(
            "user-email", user.email, user.id, by=by, conflict=_email_taken(user.email)
        )
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
        position = self._commit(*extra, organization, user, owner, email_key, key)
        return FoundedOrganization(organization.id, owner.id, user.id, token, position)

    def add_member(
        self, *, email: str, display_name: str, role_ids: list[str], by: Actor
    ) -> tuple[str, int]:
        """A new user and their membership of the actor's organization."""
        at = self.clock()
        user = User.register(id=new_id(), email=email, display_name=display_name, by=by, at=at)
        member = Member.join(id=new_id(), user=user, role_ids=role_ids, by=by, at=at)
        email_key = self._claim_key(
            "user-email", user.email, user.id, by=by, conflict=_email_taken(user.email)
        )
        return member.id, self._commit(user, member, email_key, conflict=_email_taken(user.email))

    def issue_api_key(self, *, member_id: str, name: str, by: Actor) -> tuple[str, int]:
        """A new API key for a member of the actor's organization; the token is shown once."""
        member = self._load(Member, member_id, organization_id=by.organization_id, kind="member")
        token = new_api_token()
        key = ApiKey.issue(
            id=new_id(),
            token_hash=hash_token(token),
            principal_kind="member",
            principal_id=member.id,
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
        return self._commit(team, self._release_key("team-name", team.name.lower(), team.id, by=by))

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

    def _member(self, member_id: str, by: Actor) -> Member:
        member = self._load(Member, member_id, organization_id=by.organization_id, kind="member")
        if member.removed:
            raise NotFoundError.of("member", member_id)
        return member


def _email_taken(email: str) -> ConflictError:
    return ConflictError(f"A user with the email {email} already exists.", code="email_taken")


def _name_taken(name: str) -> ConflictError:
    return ConflictError(f"A team named {name!r} already exists.", code="team_name_taken")
