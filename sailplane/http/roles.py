"""`/api/v1/org/roles` and `/api/v1/org/team-roles`: the built-in roles (read-only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from litestar import Controller, get
from litestar.params import FromPath, QueryParameter

from sailplane.domain.access import ORGANIZATION_ROLES, TEAM_ROLES, Role
from sailplane.domain.errors import NotFoundError
from sailplane.http import shapes
from sailplane.http.auth import Caller, SystemDep, requires
from sailplane.http.identity_shapes import RoleDetailIncluded, RoleDetailItem, role_detail
from sailplane.http.pagination import (
    Described,
    Limit,
    Listing,
    Marker,
    PageNumber,
    SortDirection,
)
from sailplane.projections.query import decode_marker, encode_marker

RoleSortBy = Annotated[
    Literal["name"], QueryParameter(name="sortBy", description="The field to sort by.")
]
Search = Annotated[
    str,
    QueryParameter(description="Search term to filter results (names and descriptions)."),
]
T = TypeVar("T")


def page_roles(
    roles: list[Role],
    *,
    search: str,
    page: int,
    limit: int,
    descending: bool,
    marker: str | None,
    shape: Callable[[Role], T],
) -> Listing[T]:
    """Filter, sort and page the built-in roles (page or keyset marker, like every list)."""
    needle = search.strip().lower()
    found = sorted(
        (r for r in roles if needle in r.name.lower() or needle in r.description.lower()),
        key=lambda r: (r.name.lower(), r.id),
        reverse=descending,
    )
    if marker is not None:
        after = tuple(decode_marker(marker, 2))
        remaining = [
            r
            for r in found
            if ((r.name.lower(), r.id) < after if descending else (r.name.lower(), r.id) > after)
        ]
        chosen, more = remaining[:limit], len(remaining) > limit
    else:
        offset = (page - 1) * limit
        chosen = found[offset : offset + limit]
        more = offset + len(chosen) < len(found)
    next_marker = (
        encode_marker([chosen[-1].name.lower(), chosen[-1].id]) if chosen and more else None
    )
    return Listing(total=len(found), items=[shape(r) for r in chosen], marker=next_marker)


def _organization(system: Any, organization_id: str) -> dict[str, Any]:
    return system.directory.organization(organization_id) or {
        "id": organization_id,
        "created_at": None,
    }


class RoleController(Controller):
    path = "/org"
    tags = ["roles"]

    @get(
        "/roles",
        operation_id="ListOrganizationRoles",
        guards=[requires("CanViewMembers")],
        sync_to_thread=True,
    )
    def list_roles(
        self,
        system: SystemDep,
        principal: Caller,
        page: PageNumber = 1,
        limit: Limit = 100,
        search: Search = "",
        sort_by: RoleSortBy = "name",
        sort_direction: SortDirection = "asc",
        marker: Marker = None,
    ) -> Listing[shapes.OrganizationRoleWithCounts]:
        """The organization roles with their member and permission counts."""
        organization = _organization(system, principal.organization_id)
        counts = system.directory.role_member_counts(principal.organization_id)
        return page_roles(
            list(ORGANIZATION_ROLES.values()),
            search=search,
            page=page,
            limit=limit,
            descending=sort_direction == "desc",
            marker=marker,
            shape=lambda r: shapes.organization_role(r, organization, counts.get(r.id, 0)),
        )

    @get(
        "/roles/{role:str}",
        operation_id="DescribeOrganizationRole",
        guards=[requires("CanViewMembers")],
        sync_to_thread=True,
    )
    def describe_role(
        self, system: SystemDep, principal: Caller, role: FromPath[str]
    ) -> Described[RoleDetailItem, RoleDetailIncluded]:
        """An organization role with its permissions and permission bundles."""
        found = ORGANIZATION_ROLES.get(role)
        if found is None:
            raise NotFoundError.of("role", role)
        organization = _organization(system, principal.organization_id)
        counts = system.directory.role_member_counts(principal.organization_id)
        item, included = role_detail(
            found, organization, shapes.organization_role(found, organization, counts.get(role, 0))
        )
        return Described(item=item, included=included)

    @get(
        "/team-roles",
        operation_id="ListTeamRoles",
        guards=[requires("CanViewMembers")],
        sync_to_thread=True,
    )
    def list_team_roles(
        self,
        system: SystemDep,
        principal: Caller,
        page: PageNumber = 1,
        limit: Limit = 100,
        search: Search = "",
        sort_by: RoleSortBy = "name",
        sort_direction: SortDirection = "asc",
        marker: Marker = None,
    ) -> Listing[shapes.TeamRoleWithCounts]:
        """The team roles with their member and permission counts."""
        organization = _organization(system, principal.organization_id)
        counts = system.teams.team_role_member_counts(principal.organization_id)
        return page_roles(
            list(TEAM_ROLES.values()),
            search=search,
            page=page,
            limit=limit,
            descending=sort_direction == "desc",
            marker=marker,
            shape=lambda r: shapes.team_role(r, organization, counts.get(r.id, 0)),
        )

    @get(
        "/team-roles/{role:str}",
        operation_id="DescribeTeamRole",
        guards=[requires("CanViewMembers")],
        sync_to_thread=True,
    )
    def describe_team_role(
        self, system: SystemDep, principal: Caller, role: FromPath[str]
    ) -> Described[RoleDetailItem, RoleDetailIncluded]:
        """A team role with its permissions and permission bundles."""
        found = TEAM_ROLES.get(role)
        if found is None:
            raise NotFoundError.of("team_role", role)
        organization = _organization(system, principal.organization_id)
        counts = system.teams.team_role_member_counts(principal.organization_id)
        item, included = role_detail(
            found, organization, shapes.team_role(found, organization, counts.get(role, 0))
        )
        return Described(item=item, included=included)
