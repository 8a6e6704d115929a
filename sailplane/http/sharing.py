"""What every resource shared with teams (catalogs, queries, later jobs) needs at the edge:
who reaches it, who may change it, and the `{teamIds}` request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Generic, TypeVar

import msgspec

from sailplane.contexts import IdentityContext
from sailplane.http import shapes
from sailplane.http.auth import Principal, require_access
from sailplane.http.errors import or_404
from sailplane.projections.workloads import SharedView

TeamId = Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
T = TypeVar("T")
L = TypeVar("L", bound=shapes.Shape)


class TeamIdsRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    team_ids: list[TeamId]


class ItemList(msgspec.Struct, Generic[T], kw_only=True):
    """`{items}`: a list the documents show without pagination."""

    items: list[T]


def require_manage(
    principal: Principal, view: SharedView, resource_id: str, permission: str
) -> None:
    """403 unless the caller holds `permission` in the organization or in a team the
    resource is granted to."""
    granted = view.team_ids_by_resource([resource_id])[resource_id]
    require_access(principal, permission, granted_team_ids=granted)


def require_team(identity: IdentityContext, principal: Principal, team_id: str) -> None:
    or_404(identity.teams.team(principal.organization_id, team_id), "team", team_id)


def included_teams(
    view: SharedView, organization_id: str, team_ids: Iterable[str]
) -> list[shapes.TeamWithMemberCount]:
    wanted = sorted(set(team_ids))
    return (
        [shapes.team_with_count(r) for r in view.teams(organization_id, wanted)] if wanted else []
    )


def team_links(
    view: SharedView,
    link: type[L],
    resource_field: str,
    resource_id: str,
    team_ids: Iterable[str] | None = None,
) -> ItemList[L]:
    """A resource's team grants as its link shape (`CatalogTeam`, `QueryTeam`, `JobTeam`:
    the resource's id under `resource_field`, the team and the grant's audit fields); only
    those of `team_ids` when given."""
    wanted = None if team_ids is None else set(team_ids)
    return ItemList(
        items=[
            shapes.from_row(link, row, **{resource_field: resource_id})
            for row in view.grants([resource_id])
            if wanted is None or row["team_id"] in wanted
        ]
    )
