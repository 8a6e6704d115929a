"""`/api/v1/org/teams`: teams and team membership."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller
from litestar.params import FromPath, JSONBody

from sailplane.contexts import IdentityContext
from sailplane.domain.access import ORGANIZATION_ROLES, TEAM_ROLES
from sailplane.domain.errors import NotFoundError
from sailplane.http import shapes
from sailplane.http.auth import Caller, IdentityDep, Principal, requires
from sailplane.http.errors import or_404
from sailplane.http.identity_shapes import user_info
from sailplane.http.pagination import (
    SORT_BY,
    Limit,
    Listing,
    Marker,
    NormalizedListing,
    PageNumber,
    SortDirection,
    page_of,
    sort_of,
)
from sailplane.http.routes import delete, get, patch, post, put
from sailplane.http.shapes import Shape, from_row

TeamSortBy = Annotated[Literal["name", "email"], SORT_BY]


class TeamCreateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    organization_id: str | None = None
    default_role_id: str | None = None


class TeamUpdateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    default_role_id: str | None = None


class TeamMemberRolesRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    role_ids: list[str] | None = None


class TeamMembership(Shape):
    id: str
    member_id: str
    team_id: str
    is_automatic: bool
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class TeamMemberListItem(Shape):
    member_id: str
    user_id: str
    role_ids: list[str]
    team_role_ids: list[str]
    is_automatic: bool


class TeamMembersIncluded(Shape):
    members: list[shapes.Member]
    users: list[shapes.UserInfo]
    roles: list[shapes.OrganizationRoleWithCounts]
    team_roles: list[shapes.TeamRoleWithCounts]


class TeamController(Controller):
    path = "/org/teams"
    tags = ["teams"]

    @get("/", operation_id="ListTeams", guards=[requires("CanViewTeams")])
    def list_teams(
        self,
        identity: IdentityDep,
        principal: Caller,
        page: PageNumber = 1,
        limit: Limit = 100,
        sort_by: TeamSortBy = "name",
        sort_direction: SortDirection = "asc",
        marker: Marker = None,
    ) -> Listing[shapes.TeamWithMemberCount]:
        """List the organization's teams with their member counts (page or marker pagination)."""
        total, rows, next_marker = identity.teams.teams(
            principal.organization_id,
            page_of(page, limit),
            sort_of(sort_by, sort_direction),
            marker,
        )
        return Listing(
            total=total, items=[shapes.team_with_count(r) for r in rows], marker=next_marker
        )

    @post("/", operation_id="CreateTeam", guards=[requires("CanManageTeams")])
    def create_team(
        self, identity: IdentityDep, principal: Caller, data: JSONBody[TeamCreateRequest]
    ) -> shapes.TeamWithMemberCount:
        """Create a team; its name is unique in the organization."""
        if data.organization_id is not None and data.organization_id != principal.organization_id:
            raise NotFoundError.of("organization", data.organization_id)
        team_id, position = identity.commands.create_team(
            name=data.name, default_role_id=data.default_role_id, by=principal.actor
        )
        identity.wait_for_views(position)
        return _describe(identity, principal, team_id)

    @get(
        "/{team:str}",
        operation_id="DescribeTeam",
        guards=[requires("CanViewTeams")],
    )
    def describe_team(
        self, identity: IdentityDep, principal: Caller, team: FromPath[str]
    ) -> shapes.TeamWithMemberCount:
        """Describe a team and its member count."""
        return _describe(identity, principal, team)

    @patch(
        "/{team:str}",
        operation_id="UpdateTeam",
        guards=[requires("CanManageTeams")],
    )
    def update_team(
        self,
        identity: IdentityDep,
        principal: Caller,
        team: FromPath[str],
        data: JSONBody[TeamUpdateRequest],
    ) -> shapes.TeamWithMemberCount:
        """Change a team's name or default role."""
        position = identity.commands.update_team(
            team, name=data.name, default_role_id=data.default_role_id, by=principal.actor
        )
        identity.wait_for_views(position)
        return _describe(identity, principal, team)

    @delete(
        "/{team:str}",
        operation_id="DeleteTeam",
        guards=[requires("CanManageTeams")],
    )
    def delete_team(self, identity: IdentityDep, principal: Caller, team: FromPath[str]) -> None:
        """Delete a team and its member assignments."""
        identity.wait_for_views(identity.commands.delete_team(team, by=principal.actor))

    @get(
        "/{team:str}/members",
        operation_id="ListTeamMembers",
        guards=[requires("CanViewTeams")],
    )
    def list_team_members(
        self,
        identity: IdentityDep,
        principal: Caller,
        team: FromPath[str],
        page: PageNumber = 1,
        limit: Limit = 100,
        sort_by: TeamSortBy = "name",
        sort_direction: SortDirection = "asc",
        marker: Marker = None,
    ) -> NormalizedListing[TeamMemberListItem, TeamMembersIncluded]:
        """List a team's members with their organization and team roles."""
        org = principal.organization_id
        _describe(identity, principal, team)
        total, rows, next_marker = identity.teams.team_members(
            org, team, page_of(page, limit), sort_of(sort_by, sort_direction), marker
        )
        member_ids = [r["member_id"] for r in rows]
        members = identity.directory.members_by_id(org, member_ids)
        users = identity.directory.users_by_id(org, sorted({m["user_id"] for m in members}))
        emails = identity.directory.emails_of_users([u["id"] for u in users])
        organization = identity.directory.organization(org) or {"id": org, "created_at": None}
        role_counts = identity.directory.role_member_counts(org)
        team_role_counts = identity.teams.team_role_member_counts(org)
        org_role_ids = sorted({role for r in rows for role in r["role_ids"]})
        team_role_ids = sorted({role for r in rows for role in r["team_role_ids"]})
        return NormalizedListing(
            total=total,
            items=[
                TeamMemberListItem(
                    member_id=r["member_id"],
                    user_id=r["user_id"],
                    role_ids=list(r["role_ids"]),
                    team_role_ids=list(r["team_role_ids"]),
                    is_automatic=False,
                )
                for r in rows
            ],
            included=TeamMembersIncluded(
                members=[shapes.member(m) for m in members],
                users=[user_info(u, emails.get(u["id"], [])) for u in users],
                roles=[
                    shapes.organization_role(
                        ORGANIZATION_ROLES[r], organization, role_counts.get(r, 0)
                    )
                    for r in org_role_ids
                    if r in ORGANIZATION_ROLES
                ],
                team_roles=[
                    shapes.team_role(TEAM_ROLES[r], organization, team_role_counts.get(r, 0))
                    for r in team_role_ids
                    if r in TEAM_ROLES
                ],
            ),
            marker=next_marker,
        )

    @post(
        "/{team:str}/members/{member:str}",
        operation_id="AddTeamMember",
        guards=[requires("CanManageTeamMembers", or_in_team="team")],
    )
    def add_team_member(
        self,
        identity: IdentityDep,
        principal: Caller,
        team: FromPath[str],
        member: FromPath[str],
        data: JSONBody[TeamMemberRolesRequest | None] = None,
    ) -> TeamMembership:
        """Add an organization member to the team (with the team's default role when none is given)."""
        _, position = identity.commands.add_team_member(
            team, member, role_ids=data.role_ids if data else None, by=principal.actor
        )
        identity.wait_for_views(position)
        row = or_404(identity.teams.membership(team, member), "team_member", member)
        return from_row(TeamMembership, row, id=row["membership_id"], is_automatic=False)

    @delete(
        "/{team:str}/members/{member:str}",
        operation_id="RemoveTeamMember",
        guards=[requires("CanManageTeamMembers", or_in_team="team")],
    )
    def remove_team_member(
        self, identity: IdentityDep, principal: Caller, team: FromPath[str], member: FromPath[str]
    ) -> None:
        """Remove a member from the team."""
        identity.wait_for_views(
            identity.commands.remove_team_member(team, member, by=principal.actor)
        )

    @put(
        "/{team:str}/members/{member:str}/roles",
        operation_id="UpdateTeamMemberRoles",
        guards=[requires("CanManageTeamMembers", or_in_team="team")],
        status_code=204,
    )
    def replace_team_member_roles(
        self,
        identity: IdentityDep,
        principal: Caller,
        team: FromPath[str],
        member: FromPath[str],
        data: JSONBody[TeamMemberRolesRequest],
    ) -> None:
        """Replace all of a member's team roles (at least one)."""
        position = identity.commands.replace_team_member_roles(
            team, member, role_ids=data.role_ids or [], by=principal.actor
        )
        identity.wait_for_views(position)


def _describe(
    identity: IdentityContext, principal: Principal, team_id: str
) -> shapes.TeamWithMemberCount:
    return shapes.team_with_count(
        or_404(identity.teams.team(principal.organization_id, team_id), "team", team_id)
    )
