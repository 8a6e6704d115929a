"""`/api/v1/org/roles` and `/api/v1/org/team-roles`: the built-in roles (read-only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from litestar import Controller
from litestar.params import FromPath, QueryParameter

from sailplane.contexts import IdentityContext
from sailplane.domain.access import ORGANIZATION_ROLES, TEAM_ROLES, Role
from sailplane.http import shapes
from sailplane.http.auth import Caller, IdentityDep, requires
from sailplane.http.errors import or_404
from sailplane.http.identity_shapes import RoleDetailIncluded, RoleDetailItem, role_detail
from sailplane.http.pagination import (
    SORT_BY,
    Described,
    Limit,
    Listing,
    Marker,
    PageNumber,
    SortDirection,
    page_of,
    sort_of,
)
from sailplane.http.routes import get
from sailplane.projections.query import Page, Sort, decode_marker, encode_marker, invalid_marker

RoleSortBy = Annotated[Literal["name"], SORT_BY]
Search = Annotated[
    str,
    QueryParameter(description="Search term to filter results (names and descriptions)."),
]
T = TypeVar("T")


def page_roles(
    roles: list[Role],
    search: str,
    page: Page,
    sort: Sort,
    marker: str | None,
    shape: Callable[[Role], T],
) -> Listing[T]:
    """Filter, sort and page the built-in roles (page or keyset marker, like every list)."""
    needle = search.strip().lower()
    found = sorted(
        (r for r in roles if needle in r.name.lower() or needle in r.description.lower()),
        key=lambda r: (r.name.lower(), r.id),
        reverse=sort.descending,
    )
    if marker is not None:
        after = tuple(decode_marker(marker, 2))
        if not all(isinstance(value, str) for value in after):
            raise invalid_marker()
        remaining = [
            r
            for r in found
            if (
                (r.name.lower(), r.id) < after
                if sort.descending
                else (r.name.lower(), r.id) > after
            )
        ]
        chosen, more = remaining[: page.limit], len(remaining) > page.limit
    else:
        chosen = found[page.offset : page.offset + page.limit]
        more = page.offset + len(chosen) < len(found)
    next_marker = (
        encode_marker([chosen[-1].name.lower(), chosen[-1].id]) if chosen and more else None
    )
    return Listing(total=len(found), items=[shape(r) for r in chosen], marker=next_marker)


def _organization(identity: IdentityContext, organization_id: str) -> dict[str, Any]:
    return identity.directory.organization(organization_id) or {
        "id": organization_id,
        "created_at": None,
    }


@dataclass(frozen=True)
class RoleKind:
    """Organization roles or team roles: where they live and how they are shown."""

    roles: dict[str, Role]
    kind: str  # for "... was not found"
    counts: Callable[[IdentityContext, str], dict[str, int]]
    shape: Callable[[Role, dict[str, Any], int], Any]

    def listing(
        self,
        identity: IdentityContext,
        organization_id: str,
        search: str,
        page: Page,
        sort: Sort,
        marker: str | None,
    ) -> Listing[Any]:
        organization = _organization(identity, organization_id)
        counts = self.counts(identity, organization_id)
        return page_roles(
            list(self.roles.values()),
            search,
            page,
            sort,
            marker,
            lambda r: self.shape(r, organization, counts.get(r.id, 0)),
        )

    def detail(
        self, identity: IdentityContext, organization_id: str, role_id: str
    ) -> Described[RoleDetailItem, RoleDetailIncluded]:
        role = or_404(self.roles.get(role_id), self.kind, role_id)
        organization = _organization(identity, organization_id)
        counts = self.counts(identity, organization_id)
        item, included = role_detail(
            role, organization, self.shape(role, organization, counts.get(role_id, 0))
        )
        return Described(item=item, included=included)


ORGANIZATION = RoleKind(
    ORGANIZATION_ROLES,
    "role",
    lambda identity, org: identity.directory.role_member_counts(org),
    shapes.organization_role,
)
TEAM = RoleKind(
    TEAM_ROLES,
    "team_role",
    lambda identity, org: identity.teams.team_role_member_counts(org),
    shapes.team_role,
)


class RoleController(Controller):
    path = "/org"
    tags = ["roles"]

    @get(
        "/roles",
        operation_id="ListOrganizationRoles",
        guards=[requires("CanViewMembers")],
    )
    def list_roles(
        self,
        identity: IdentityDep,
        principal: Caller,
        page: PageNumber = 1,
        limit: Limit = 100,
        search: Search = "",
        sort_by: RoleSortBy = "name",
        sort_direction: SortDirection = "asc",
        marker: Marker = None,
    ) -> Listing[shapes.OrganizationRoleWithCounts]:
        """The organization roles with their member and permission counts."""
        return ORGANIZATION.listing(
            identity,
            principal.organization_id,
            search,
            page_of(page, limit),
            sort_of(sort_by, sort_direction),
            marker,
        )

    @get(
        "/roles/{role:str}",
        operation_id="DescribeOrganizationRole",
        guards=[requires("CanViewMembers")],
    )
    def describe_role(
        self, identity: IdentityDep, principal: Caller, role: FromPath[str]
    ) -> Described[RoleDetailItem, RoleDetailIncluded]:
        """An organization role with its permissions and permission bundles."""
        return ORGANIZATION.detail(identity, principal.organization_id, role)

    @get(
        "/team-roles",
        operation_id="ListTeamRoles",
        guards=[requires("CanViewMembers")],
    )
    def list_team_roles(
        self,
        identity: IdentityDep,
        principal: Caller,
        page: PageNumber = 1,
        limit: Limit = 100,
        search: Search = "",
        sort_by: RoleSortBy = "name",
        sort_direction: SortDirection = "asc",
        marker: Marker = None,
    ) -> Listing[shapes.TeamRoleWithCounts]:
        """The team roles with their member and permission counts."""
        return TEAM.listing(
            identity,
            principal.organization_id,
            search,
            page_of(page, limit),
            sort_of(sort_by, sort_direction),
            marker,
        )

    @get(
        "/team-roles/{role:str}",
        operation_id="DescribeTeamRole",
        guards=[requires("CanViewMembers")],
    )
    def describe_team_role(
        self, identity: IdentityDep, principal: Caller, role: FromPath[str]
    ) -> Described[RoleDetailItem, RoleDetailIncluded]:
        """A team role with its permissions and permission bundles."""
        return TEAM.detail(identity, principal.organization_id, role)
