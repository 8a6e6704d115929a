"""`/api/v1/workloads/catalogs`, `/me/catalogs`, `/workloads/teams/{team}/catalogs`
(the queries of a catalog, `/workloads/catalogs/{catalog}/queries`, are in `queries.py`).

Every endpoint needs `CanViewCatalogs` from an organization role; changing a catalog
needs `CanManageCatalogs` from an organization role or from a team role in a team the
catalog is granted to (for a create: one of the teams in `teamIds`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Controller
from litestar.params import FromPath, JSONBody

from sailplane.contexts import WorkloadsContext
from sailplane.domain.workloads import provider_of
from sailplane.http import shapes
from sailplane.http.auth import (
    Caller,
    IdentityDep,
    Principal,
    WorkloadsDep,
    reachable_team_ids,
    require_access,
    requires,
)
from sailplane.http.errors import or_404
from sailplane.http.pagination import (
    SORT_BY,
    Limit,
    Marker,
    NormalizedListing,
    PageNumber,
    SortDirection,
    page_of,
    sort_of,
)
from sailplane.http.routes import delete, get, patch, post
from sailplane.http.shapes import Shape, from_row
from sailplane.http.sharing import (
    ItemList,
    TeamId,
    TeamIdsRequest,
    included_teams,
    require_manage,
    require_team,
    team_links,
)
from sailplane.projections.query import Page, Sort

VIEW, MANAGE = "CanViewCatalogs", "CanManageCatalogs"

CatalogSortBy = Annotated[Literal["name", "updatedAt"], SORT_BY]


class CatalogCreateRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    provider: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    config_write: dict[str, Any] = {}
    team_ids: list[TeamId] = []


class CatalogUpdateRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    config_write: dict[str, Any] | None = None


class CatalogSummary(Shape):
    id: str
    name: str
    provider: str
    config: dict[str, Any]
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class CatalogDetails(Shape):
    id: str
    name: str
    provider: str
    config: dict[str, Any]
    config_write: dict[str, Any]
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class CatalogListItem(Shape):
    catalog_id: str
    team_ids: list[str]
    external_catalog_ids: list[str]


class CatalogsIncluded(Shape):
    catalogs: list[CatalogSummary]
    teams: list[shapes.TeamWithMemberCount]
    external_catalogs: list[dict[str, Any]]


class CatalogTeam(Shape):
    catalog_id: str
    team_id: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


CatalogListing = NormalizedListing[CatalogListItem, CatalogsIncluded]
C = TypeVar("C", CatalogSummary, CatalogDetails)


def _catalog(shape: type[C], row: dict[str, Any], **fields: Any) -> C:
    """A catalog as a list (`CatalogSummary`) or a describe (`CatalogDetails`) shows it: its
    settings with the secret ones hidden."""
    displayed = provider_of(row["provider"]).displayed(row["config"], row["secret_names"])
    return from_row(shape, row, config=displayed, **fields)


def catalog_summary(row: dict[str, Any]) -> CatalogSummary:
    return _catalog(CatalogSummary, row)


def catalog_listing(
    workloads: WorkloadsContext,
    organization_id: str,
    page: Page,
    sort: Sort,
    marker: str | None,
    *,
    team_ids: list[str] | None,
) -> CatalogListing:
    """A page of the catalogs granted to `team_ids` (None: every catalog), with their teams."""
    total, rows, marker = workloads.catalogs.catalogs(
        organization_id, page, sort, marker, team_ids=team_ids
    )
    team_ids = workloads.catalogs.team_ids_by_resource([r["id"] for r in rows])
    return CatalogListing(
        total=total,
        items=[
            CatalogListItem(catalog_id=r["id"], team_ids=team_ids[r["id"]], external_catalog_ids=[])
            for r in rows
        ],
        included=CatalogsIncluded(
            catalogs=[catalog_summary(r) for r in rows],
            teams=included_teams(
                workloads.catalogs, organization_id, [t for ts in team_ids.values() for t in ts]
            ),
            external_catalogs=[],
        ),
        marker=marker,
    )


def catalog_row(
    workloads: WorkloadsContext, principal: Principal, catalog_id: str
) -> dict[str, Any]:
    return or_404(
        workloads.catalogs.catalog(principal.organization_id, catalog_id), "catalog", catalog_id
    )


def _manage(workloads: WorkloadsContext, principal: Principal, catalog_id: str) -> None:
    """404 unless it exists, 403 unless the caller may change it (organization or team role)."""
    catalog_row(workloads, principal, catalog_id)
    require_manage(principal, workloads.catalogs, catalog_id, MANAGE)


class CatalogController(Controller):
    path = "/workloads/catalogs"
    tags = ["catalogs"]

    @get("/", operation_id="ListCatalogs", guards=[requires(VIEW)])
    def list_catalogs(
        self, workloads: WorkloadsDep, principal: Caller, limit: Limit = 100, marker: Marker = None
    ) -> CatalogListing:
        """List the catalogs the caller may view, by name."""
        org = principal.organization_id
        return catalog_listing(
            workloads,
            org,
            Page(limit=limit),
            Sort("name"),
            marker,
            team_ids=reachable_team_ids(principal, VIEW),
        )

    @post("/", operation_id="CreateCatalog", guards=[requires(VIEW)])
    def create_catalog(
        self, workloads: WorkloadsDep, principal: Caller, data: JSONBody[CatalogCreateRequest]
    ) -> CatalogSummary:
        """Create a catalog; its name is unique in the organization (409)."""
        require_access(principal, MANAGE, granted_team_ids=data.team_ids)
        catalog_id, position = workloads.commands.create_catalog(
            name=data.name,
            provider=data.provider,
            config_write=data.config_write,
            team_ids=data.team_ids,
            by=principal.actor,
        )
        workloads.wait_for_views(position)
        return catalog_summary(catalog_row(workloads, principal, catalog_id))

    @get(
        "/{catalog:str}",
        operation_id="DescribeCatalog",
        guards=[requires(VIEW)],
    )
    def describe_catalog(
        self, workloads: WorkloadsDep, principal: Caller, catalog: FromPath[str]
    ) -> CatalogDetails:
        """Describe a catalog; secret settings show only as `<name>Configured`."""
        row = catalog_row(workloads, principal, catalog)
        return _catalog(CatalogDetails, row, config_write=dict(row["config"]))

    @patch(
        "/{catalog:str}",
        operation_id="UpdateCatalog",
        guards=[requires(VIEW)],
    )
    def update_catalog(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        catalog: FromPath[str],
        data: JSONBody[CatalogUpdateRequest],
    ) -> CatalogSummary:
        """Rename a catalog or change its settings (`configWrite` is a JSON merge patch)."""
        _manage(workloads, principal, catalog)
        position = workloads.commands.update_catalog(
            catalog, name=data.name, config_patch=data.config_write, by=principal.actor
        )
        workloads.wait_for_views(position)
        return catalog_summary(catalog_row(workloads, principal, catalog))

    @delete(
        "/{catalog:str}",
        operation_id="DeleteCatalog",
        guards=[requires(VIEW)],
    )
    def delete_catalog(
        self, workloads: WorkloadsDep, principal: Caller, catalog: FromPath[str]
    ) -> None:
        """Delete a catalog and its team grants; queries keep their catalogId."""
        _manage(workloads, principal, catalog)
        workloads.wait_for_views(workloads.commands.delete_catalog(catalog, by=principal.actor))

    @get(
        "/{catalog:str}/teams",
        operation_id="ListCatalogTeams",
        guards=[requires(VIEW)],
    )
    def list_catalog_teams(
        self, workloads: WorkloadsDep, principal: Caller, catalog: FromPath[str]
    ) -> ItemList[CatalogTeam]:
        """List the teams a catalog is granted to."""
        catalog_row(workloads, principal, catalog)
        return team_links(workloads.catalogs, CatalogTeam, "catalog_id", catalog)

    @post(
        "/{catalog:str}/teams",
        operation_id="AddCatalogTeams",
        guards=[requires(VIEW)],
    )
    def add_catalog_teams(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        catalog: FromPath[str],
        data: JSONBody[TeamIdsRequest],
    ) -> ItemList[CatalogTeam]:
        """Grant teams access to a catalog; returns the grants of the teams named."""
        _manage(workloads, principal, catalog)
        position = workloads.commands.grant_catalog_teams(
            catalog, data.team_ids, by=principal.actor
        )
        workloads.wait_for_views(position)
        return team_links(workloads.catalogs, CatalogTeam, "catalog_id", catalog, data.team_ids)

    @delete(
        "/{catalog:str}/teams/{team:str}",
        operation_id="RemoveCatalogTeam",
        guards=[requires(VIEW)],
    )
    def remove_catalog_team(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        catalog: FromPath[str],
        team: FromPath[str],
    ) -> None:
        """Revoke a team's access to a catalog."""
        _manage(workloads, principal, catalog)
        position = workloads.commands.revoke_catalog_team(catalog, team, by=principal.actor)
        workloads.wait_for_views(position)


class CatalogListsController(Controller):
    """Catalog lists under other resources: the caller's and a team's."""

    path = "/"
    tags = ["catalogs"]

    @get("/me/catalogs", operation_id="ListMyCatalogs", guards=[requires(VIEW)])
    def list_my_catalogs(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        page: PageNumber = 1,
        limit: Limit = 100,
        sort_by: CatalogSortBy = "name",
        sort_direction: SortDirection = "asc",
        marker: Marker = None,
    ) -> CatalogListing:
        """List the catalogs the caller reaches, through an organization role or a team."""
        org = principal.organization_id
        return catalog_listing(
            workloads,
            org,
            page_of(page, limit),
            sort_of(sort_by, sort_direction),
            marker,
            team_ids=reachable_team_ids(principal, VIEW),
        )

    @get(
        "/workloads/teams/{team:str}/catalogs",
        operation_id="ListTeamCatalogs",
        guards=[requires(VIEW)],
    )
    def list_team_catalogs(
        self,
        identity: IdentityDep,
        workloads: WorkloadsDep,
        principal: Caller,
        team: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> CatalogListing:
        """List the catalogs granted to a team, by name."""
        org = principal.organization_id
        require_team(identity, principal, team)
        return catalog_listing(
            workloads, org, Page(limit=limit), Sort("name"), marker, team_ids=[team]
        )
