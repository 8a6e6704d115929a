"""The member listing: one read of the directory and teams views for a page of members.

It returns typed rows: the members' users and emails, the roles and teams they hold (with
the organization's member counts) and the relation rows between them (organization roles,
team memberships, team roles), in the order the API lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sailplane.domain.access import ORGANIZATION_ROLES, TEAM_ROLES
from sailplane.projections.identity import DirectoryView, TeamsView


@dataclass(frozen=True, kw_only=True)
class Audited:
    created_at: datetime | None
    created_by: str | None
    updated_at: datetime | None
    updated_by: str | None


@dataclass(frozen=True, kw_only=True)
class OrganizationRoleRelation(Audited):
    """A member holds an organization role (the audit is the member's)."""

    member_id: str
    organization_role_id: str


@dataclass(frozen=True, kw_only=True)
class TeamMembershipRelation(Audited):
    id: str
    member_id: str
    team_id: str


@dataclass(frozen=True, kw_only=True)
class TeamRoleRelation(Audited):
    """A team membership holds a team role (the audit is the membership's)."""

    member_team_id: str
    team_role_id: str


Relation = OrganizationRoleRelation | TeamMembershipRelation | TeamRoleRelation


@dataclass(frozen=True, kw_only=True)
class MemberListing:
    members: list[dict[str, Any]]  # the member rows listed, in their order
    team_role_ids: dict[str, dict[str, list[str]]]  # member id -> team id -> team role ids
    users: list[dict[str, Any]]
    emails: dict[str, list[dict[str, Any]]]  # by user id
    organization: dict[str, Any]
    organization_role_ids: list[str]  # the built-in organization roles the members hold
    role_member_counts: dict[str, int]
    teams: list[dict[str, Any]]
    team_role_ids_held: list[str]  # the built-in team roles the members hold
    team_role_member_counts: dict[str, int]
    relations: list[Relation]


def _audit(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "created_at": row["created_at"],
        "created_by": row["created_by"],
        "updated_at": row["updated_at"],
        "updated_by": row["updated_by"],
    }


def member_listing(
    directory: DirectoryView, teams: TeamsView, organization_id: str, rows: list[dict[str, Any]]
) -> MemberListing:
    """What a list or describe of these member rows shows about them."""
    memberships = teams.memberships_of_members(organization_id, [r["id"] for r in rows])
    team_role_ids: dict[str, dict[str, list[str]]] = {}
    for m in memberships:
        team_role_ids.setdefault(m["member_id"], {})[m["team_id"]] = list(m["role_ids"])
    user_ids = sorted({r["user_id"] for r in rows})
    relations: list[Relation] = [
        OrganizationRoleRelation(member_id=r["id"], organization_role_id=role, **_audit(r))
        for r in rows
        for role in r["role_ids"]
    ]
    for m in memberships:
        relations.append(
            TeamMembershipRelation(
                id=m["membership_id"], member_id=m["member_id"], team_id=m["team_id"], **_audit(m)
            )
        )
        relations.extend(
            TeamRoleRelation(member_team_id=m["membership_id"], team_role_id=role, **_audit(m))
            for role in m["role_ids"]
        )
    return MemberListing(
        members=rows,
        team_role_ids=team_role_ids,
        users=directory.users_by_id(organization_id, user_ids),
        emails=directory.emails_of_users(user_ids),
        organization=directory.organization(organization_id)
        or {"id": organization_id, "created_at": None},
        organization_role_ids=[
            r
            for r in sorted({role for r in rows for role in r["role_ids"]})
            if r in ORGANIZATION_ROLES
        ],
        role_member_counts=directory.role_member_counts(organization_id),
        teams=teams.teams_by_id(organization_id, sorted({m["team_id"] for m in memberships})),
        team_role_ids_held=[
            r
            for r in sorted({role for m in memberships for role in m["role_ids"]})
            if r in TEAM_ROLES
        ],
        team_role_member_counts=teams.team_role_member_counts(organization_id),
        relations=relations,
    )
