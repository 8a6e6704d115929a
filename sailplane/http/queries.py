"""`/api/v1/workloads/queries`, `/me/queries`, `/workloads/teams/{team}/queries`, and the
queries of a catalog (`/workloads/catalogs/{catalog}/queries`).

Every endpoint needs `CanViewQueries` from an organization role; changing a saved query
needs `CanManageQueries` from an organization role or from a team role in a team the
query is granted to (for a create: one of the teams in `teamIds`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller
from litestar.params import FromPath, JSONBody
from msgspec import UNSET, UnsetType

from sailplane.contexts import WorkloadsContext
from sailplane.domain.errors import NotFoundError
from sailplane.domain.workloads import QUERY_FIELDS
from sailplane.http import catalogs, jobs, shapes
from sailplane.http.auth import (
    Caller,
    IdentityDep,
    Principal,
    WorkloadsDep,
    can_access,
    reachable_team_ids,
    require_access,
    requires,
)
from sailplane.http.errors import or_404
from sailplane.http.pagination import (
    SORT_BY,
    Described,
    Limit,
    Listing,
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

VIEW, MANAGE = "CanViewQueries", "CanManageQueries"

QuerySortBy = Annotated[Literal["name", "updatedAt"], SORT_BY]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
QueryText = Annotated[str, msgspec.Meta(min_length=1)]


class QueryCreateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Name
    query_text: QueryText
    description: str | None = None
    catalog_schema: str | None = msgspec.field(default=None, name="catalog_schema")
    catalog_id: str | None = None
    tags: list[str] = []
    team_ids: list[TeamId] = []


class QueryUpdateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Only the fields sent change; `null` clears description, catalog_schema, catalogId."""

    name: Name | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    catalog_schema: str | UnsetType | None = msgspec.field(default=UNSET, name="catalog_schema")
    catalog_id: str | UnsetType | None = UNSET
    query_text: QueryText | UnsetType = UNSET
    tags: list[str] | UnsetType = UNSET


class Query(Shape):
    id: str
    member_id: str
    name: str
    description: str | None
    catalog_schema: str | None = msgspec.field(name="catalog_schema")
    catalog_id: str | None
    query_text: str
    tags: list[str]
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class QueryListItem(Shape):
    query_id: str
    team_ids: list[str]
    catalog_id: str | None
    job_ids: list[str]


class QueriesIncluded(Shape):
    queries: list[Query]
    catalogs: list[catalogs.CatalogSummary]
    teams: list[shapes.TeamWithMemberCount]
    jobs: list[jobs.Job]  # the jobs whose active version runs one of these queries


class QueryTeam(Shape):
    query_id: str
    team_id: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


QueryListing = NormalizedListing[QueryListItem, QueriesIncluded]


def query_shape(row: dict[str, Any]) -> Query:
    return from_row(Query, row, tags=list(row["tags"]))


def _normalized(
    workloads: WorkloadsContext, organization_id: str, rows: list[dict[str, Any]]
) -> tuple[list[QueryListItem], QueriesIncluded]:
    ids = [r["id"] for r in rows]
    team_ids = workloads.queries.team_ids_by_resource(ids)
    job_ids = workloads.queries.job_ids_by_query(ids)
    catalog_ids = sorted({r["catalog_id"] for r in rows if r["catalog_id"]})
    items = [
        QueryListItem(
            query_id=r["id"],
            team_ids=team_ids[r["id"]],
            catalog_id=r["catalog_id"],
            job_ids=job_ids[r["id"]],
        )
        for r in rows
    ]
    included = QueriesIncluded(
        queries=[query_shape(r) for r in rows],
        catalogs=[
            catalogs.catalog_summary(c)
            for c in workloads.catalogs.catalogs_by_id(organization_id, catalog_ids)
        ],
        teams=included_teams(
            workloads.queries, organization_id, [t for ts in team_ids.values() for t in ts]
        ),
        jobs=jobs.jobs_by_id(
            workloads, organization_id, sorted({j for js in job_ids.values() for j in js})
        ),
    )
    return items, included


def query_listing(
    workloads: WorkloadsContext,
    organization_id: str,
    page: Page,
    sort: Sort,
    marker: str | None,
    *,
    team_ids: list[str] | None,
    catalog_id: str | None = None,
) -> QueryListing:
    """A page of the saved queries granted to `team_ids` (None: every query), with what
    they name."""
    total, rows, marker = workloads.queries.queries(
        organization_id, page, sort, marker, team_ids=team_ids, catalog_id=catalog_id
    )
    items, included = _normalized(workloads, organization_id, rows)
    return QueryListing(total=total, items=items, included=included, marker=marker)


def query_row(workloads: WorkloadsContext, principal: Principal, query_id: str) -> dict[str, Any]:
    return or_404(workloads.queries.query(principal.organization_id, query_id), "query", query_id)


def _manage(workloads: WorkloadsContext, principal: Principal, query_id: str) -> None:
    """404 unless it exists, 403 unless the caller may change it (organization or team role)."""
    query_row(workloads, principal, query_id)
    require_manage(principal, workloads.queries, query_id, MANAGE)


def _check_catalog(
    workloads: WorkloadsContext, principal: Principal, catalog_id: str | None
) -> None:
    """A query may name only a catalog the caller can see (404 otherwise)."""
    if catalog_id is None:
        return
    catalogs.catalog_row(workloads, principal, catalog_id)
    granted = workloads.catalogs.team_ids_by_resource([catalog_id])[catalog_id]
    if not can_access(principal, catalogs.VIEW, granted_team_ids=granted):
        raise NotFoundError.of("catalog", catalog_id)


class QueryController(Controller):
    path = "/workloads/queries"
    tags = ["queries"]

    @get("/", operation_id="ListQueries", guards=[requires(VIEW)])
    def list_queries(
        self, workloads: WorkloadsDep, principal: Caller, limit: Limit = 100, marker: Marker = None
    ) -> QueryListing:
        """List the saved queries the caller may view, by name."""
        org = principal.organization_id
        return query_listing(
            workloads,
            org,
            Page(limit=limit),
            Sort("name"),
            marker,
            team_ids=reachable_team_ids(principal, VIEW),
        )

    @post("/", operation_id="CreateQuery", guards=[requires(VIEW)])
    def create_query(
        self, workloads: WorkloadsDep, principal: Caller, data: JSONBody[QueryCreateRequest]
    ) -> Query:
        """Save a reusable SQL query, optionally with its catalog and schema."""
        require_access(principal, MANAGE, granted_team_ids=data.team_ids)
        _check_catalog(workloads, principal, data.catalog_id)
        query_id, position = workloads.commands.create_query(
            name=data.name,
            description=data.description,
            catalog_schema=data.catalog_schema,
            catalog_id=data.catalog_id,
            query_text=data.query_text,
            tags=data.tags,
            team_ids=data.team_ids,
            by=principal.actor,
        )
        workloads.wait_for_views(position)
        return query_shape(query_row(workloads, principal, query_id))

    @get(
        "/{query_id:str}",
        operation_id="DescribeQuery",
        guards=[requires(VIEW)],
    )
    def describe_query(
        self, workloads: WorkloadsDep, principal: Caller, query_id: FromPath[str]
    ) -> Described[QueryListItem, QueriesIncluded]:
        """Describe a saved query with its catalog, teams and jobs."""
        items, included = _normalized(
            workloads, principal.organization_id, [query_row(workloads, principal, query_id)]
        )
        return Described(item=items[0], included=included)

    @patch("/{query_id:str}", operation_id="UpdateQuery", guards=[requires(VIEW)])
    def update_query(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        query_id: FromPath[str],
        data: JSONBody[QueryUpdateRequest],
    ) -> Query:
        """Change the fields sent of a saved query."""
        _manage(workloads, principal, query_id)
        fields = {f: getattr(data, f) for f in QUERY_FIELDS if getattr(data, f) is not UNSET}
        _check_catalog(workloads, principal, fields.get("catalog_id"))
        position = workloads.commands.update_query(query_id, fields, by=principal.actor)
        workloads.wait_for_views(position)
        return query_shape(query_row(workloads, principal, query_id))

    @delete("/{query_id:str}", operation_id="DeleteQuery", guards=[requires(VIEW)])
    def delete_query(
        self, workloads: WorkloadsDep, principal: Caller, query_id: FromPath[str]
    ) -> None:
        """Delete a saved query unless an active job version runs it (409)."""
        _manage(workloads, principal, query_id)
        workloads.wait_for_views(workloads.commands.delete_query(query_id, by=principal.actor))

    @get(
        "/{query_id:str}/teams",
        operation_id="ListQueryTeams",
        guards=[requires(VIEW)],
    )
    def list_query_teams(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        query_id: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> Listing[shapes.TeamWithMemberCount]:
        """List the teams a saved query is granted to, with their member counts."""
        query_row(workloads, principal, query_id)
        total, rows, next_marker = workloads.queries.granted_teams(
            principal.organization_id, query_id, limit=limit, marker=marker
        )
        return Listing(
            total=total, items=[shapes.team_with_count(r) for r in rows], marker=next_marker
        )

    @post(
        "/{query_id:str}/teams",
        operation_id="AddQueryTeams",
        guards=[requires(VIEW)],
    )
    def add_query_teams(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        query_id: FromPath[str],
        data: JSONBody[TeamIdsRequest],
    ) -> ItemList[QueryTeam]:
        """Grant teams access to a saved query; returns the grants of the teams named."""
        _manage(workloads, principal, query_id)
        position = workloads.commands.grant_query_teams(query_id, data.team_ids, by=principal.actor)
        workloads.wait_for_views(position)
        return team_links(workloads.queries, QueryTeam, "query_id", query_id, data.team_ids)

    @delete(
        "/{query_id:str}/teams/{team:str}",
        operation_id="RemoveQueryTeam",
        guards=[requires(VIEW)],
    )
    def remove_query_team(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        query_id: FromPath[str],
        team: FromPath[str],
    ) -> None:
        """Revoke a team's access to a saved query."""
        _manage(workloads, principal, query_id)
        position = workloads.commands.revoke_query_team(query_id, team, by=principal.actor)
        workloads.wait_for_views(position)


class QueryListsController(Controller):
    """Saved-query lists under other resources: the caller's, a team's, a catalog's."""

    path = "/"
    tags = ["queries"]

    @get("/me/queries", operation_id="ListMyQueries", guards=[requires(VIEW)])
    def list_my_queries(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        page: PageNumber = 1,
        limit: Limit = 100,
        sort_by: QuerySortBy = "updatedAt",
        sort_direction: SortDirection = "asc",
        marker: Marker = None,
    ) -> QueryListing:
        """List the saved queries the caller reaches, through an organization role or a team."""
        org = principal.organization_id
        return query_listing(
            workloads,
            org,
            page_of(page, limit),
            sort_of(sort_by, sort_direction),
            marker,
            team_ids=reachable_team_ids(principal, VIEW),
        )

    @get(
        "/workloads/teams/{team:str}/queries",
        operation_id="ListTeamQueries",
        guards=[requires(VIEW)],
    )
    def list_team_queries(
        self,
        identity: IdentityDep,
        workloads: WorkloadsDep,
        principal: Caller,
        team: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> QueryListing:
        """List the saved queries granted to a team, by name."""
        org = principal.organization_id
        require_team(identity, principal, team)
        return query_listing(
            workloads, org, Page(limit=limit), Sort("name"), marker, team_ids=[team]
        )

    @get(
        "/workloads/catalogs/{catalog:str}/queries",
        operation_id="ListCatalogQueries",
        tags=["catalogs"],
        guards=[requires(VIEW)],
    )
    def list_catalog_queries(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        catalog: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> QueryListing:
        """List the saved queries that use a catalog, by name."""
        org = principal.organization_id
        catalogs.catalog_row(workloads, principal, catalog)
        return query_listing(
            workloads,
            org,
            Page(limit=limit),
            Sort("name"),
            marker,
            team_ids=reachable_team_ids(principal, VIEW),
            catalog_id=catalog,
        )
