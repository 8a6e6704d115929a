"""Identity: organizations, users, members, API keys and teams."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sailplane.domain.access import ORGANIZATION_ROLES, TEAM_MEMBER, TEAM_ROLES
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
    name: str
    slug: str

    class Created(SailplaneAggregate.Created):
        name: str
        slug: str

        def apply(self, aggregate: Organization) -> None:
            super().apply(aggregate)
            aggregate.name = self.name
            aggregate.slug = self.slug

    @classmethod
    def found(cls, *, id: str, name: str, slug: str, by: Actor, at: datetime) -> Organization:
        return cls._create_as(id=id, organization_id=id, by=by, at=at, name=name, slug=slug)


class User(SailplaneAggregate):
    email: str
    display_name: str

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
            email=email.strip().lower(),
            given_name=given_name,
            family_name=family_name,
            display_name=display_name,
        )


class Member(SailplaneAggregate):
    """A user's membership of one organization, with organization roles."""

    user_id: str
    name: str
    email: str
    role_ids: list[str]
    is_enabled: bool
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
            aggregate.removed = False

    class RolesReplaced(SailplaneAggregate.Event):
        role_ids: list[str]

        def apply(self, aggregate: Member) -> None:
            aggregate.role_ids = list(self.role_ids)

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

    def replace_roles(self, role_ids: list[str], *, by: Actor, at: datetime) -> None:
        check_organization_roles(role_ids)
        wanted = sorted(set(role_ids))
        if wanted != self.role_ids:
            self._trigger(self.RolesReplaced, by=by, at=at, role_ids=wanted)


def check_organization_roles(role_ids: list[str]) -> None:
    unknown = [r for r in role_ids if r not in ORGANIZATION_ROLES]
    if unknown:
        raise InvalidValueError(
            f"Unknown organization role: {', '.join(unknown)}.", field="roleIds"
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
