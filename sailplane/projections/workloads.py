"""Workloads views: catalogs and saved queries with their team grants.

Both views read the `teams` table of the teams view for `included.teams`, and follow
`Team.Deleted` so a deleted team's grants disappear with it.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from psycopg.types.json import Jsonb

from sailplane.domain.identity import Team
from sailplane.domain.jobs import Job, query_id_of
from sailplane.domain.workloads import (
    QUERY_FIELDS,
    Catalog,
    DeletedEvent,
    SavedQuery,
    TeamRevokedEvent,
    TeamsGrantedEvent,
)
from sailplane.projections.base import Projection, View
from sailplane.projections.identity import actor_ref
from sailplane.projections.query import Page, Sort, paginate

_GRANTS_DDL = """
    CREATE TABLE {{{table}}} (
        {key} text NOT NULL,
        team_id text NOT NULL,
        organization_id text NOT NULL,
        created_at timestamptz NOT NULL,
        created_by text NOT NULL,
        updated_at timestamptz NOT NULL,
        updated_by text NOT NULL,
        PRIMARY KEY ({key}, team_id)
    )"""


class SharedView(View):
    """A view of resources granted to teams: the resource table plus a grants table."""

    resource_table: str
    grants_table: str
    grant_key: str  # the grants table's column naming the resource

    def grants(self, resource_ids: list[str]) -> list[dict[str, Any]]:
        """Grant rows of these resources, in the order they were granted."""
        return self.fetch_all(
            f"SELECT * FROM {{{self.grants_table}}} WHERE {self.grant_key} = ANY(%s) "
            "ORDER BY created_at, team_id",
            (resource_ids,),
        )

    def team_ids_by_resource(self, resource_ids: list[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {r: [] for r in resource_ids}
        for row in self.grants(resource_ids):
            found[row[self.grant_key]].append(row["team_id"])
        return found

    def teams(self, organization_id: str, team_ids: list[str]) -> list[dict[str, Any]]:
        """Rows of the teams view, for `included.teams`."""
        return self.fetch_all(
            "SELECT * FROM teams WHERE organization_id = %s AND id = ANY(%s) "
            "ORDER BY lower(name), id",
            (organization_id, team_ids),
        )

    def granted_teams(
        self, organization_id: str, resource_id: str, *, limit: int, marker: str | None
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        """A page of the teams-view rows of the teams this resource is granted to, by name."""
        return paginate(
            self,
            f"FROM {{{self.grants_table}}} g JOIN teams t ON t.id = g.team_id "
            f"WHERE g.organization_id = %s AND g.{self.grant_key} = %s",
            (organization_id, resource_id),
            select="t.*",
            keys=["lower(t.name)", "t.id"],
            page=Page(limit=limit),
            marker=marker,
        )

    def _list(
        self,
        organization_id: str,
        *,
        where: str = "",
        params: tuple[Any, ...] = (),
        team_ids: list[str] | None,
        sorts: dict[str, str],
        page: Page,
        sort: Sort,
        marker: str | None,
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        """A page of the organization's resources; `team_ids` (None: all) keeps only those
        granted to one of these teams."""
        clause = f"FROM {{{self.resource_table}}} r WHERE r.organization_id = %s{where}"
        args: tuple[Any, ...] = (organization_id, *params)
        if team_ids is not None:
            clause += (
                f" AND EXISTS (SELECT 1 FROM {{{self.grants_table}}} g "
                f"WHERE g.{self.grant_key} = r.id AND g.team_id = ANY(%s))"
            )
            args += (team_ids,)
        return paginate(
            self,
            clause,
            args,
            select="r.*",
            keys=sort.keys(sorts, tiebreak="r.id"),
            descending=sort.descending,
            page=page,
            marker=marker,
        )


class CatalogsView(SharedView):
    name = "catalogs"
    resource_table = "catalogs"
    grants_table = "catalog_teams"
    grant_key = "catalog_id"
    tables = {
        "catalogs": """
            CREATE TABLE {catalogs} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                name text NOT NULL,
                provider text NOT NULL,
                config jsonb NOT NULL,
                secret_names text[] NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL
            )""",
        "catalog_teams": _GRANTS_DDL.format(table="catalog_teams", key="catalog_id"),
    }
    indexes = (
        "CREATE INDEX ON {catalogs} (organization_id, lower(name), id)",
        "CREATE INDEX ON {catalogs} (organization_id, updated_at, id)",
        "CREATE INDEX ON {catalog_teams} (team_id)",
    )
    SORTS = {"name": "lower(r.name)", "updatedAt": "r.updated_at"}

    def catalog(self, organization_id: str, catalog_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {catalogs} WHERE organization_id = %s AND id = %s",
            (organization_id, catalog_id),
        )

    def catalogs_by_id(self, organization_id: str, catalog_ids: list[str]) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {catalogs} WHERE organization_id = %s AND id = ANY(%s) "
            "ORDER BY lower(name), id",
            (organization_id, catalog_ids),
        )

    def catalogs(
        self,
        organization_id: str,
        page: Page,
        sort: Sort,
        marker: str | None = None,
        *,
        team_ids: list[str] | None = None,
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        return self._list(
            organization_id,
            team_ids=team_ids,
            sorts=self.SORTS,
            page=page,
            sort=sort,
            marker=marker,
        )


class QueriesView(SharedView):
    """Saved queries, their team grants, and `query_jobs`.

    `query_jobs` holds, for each saved query, the jobs whose *active* version runs it
    (`config.sql.queryId`). The jobs projection handlers fill it (a row when a version that
    uses the query becomes active, removed when another version is activated or the job
    is deleted); deleting a query that still has rows here is refused.
    """

    name = "queries"
    resource_table = "queries"
    grants_table = "query_teams"
    grant_key = "query_id"
    tables = {
        "queries": """
            CREATE TABLE {queries} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                member_id text NOT NULL,
                name text NOT NULL,
                description text,
                catalog_schema text,
                catalog_id text,
                query_text text NOT NULL,
                tags text[] NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL
            )""",
        "query_teams": _GRANTS_DDL.format(table="query_teams", key="query_id"),
        "query_jobs": """
            CREATE TABLE {query_jobs} (
                query_id text NOT NULL,
                job_id text NOT NULL,
                organization_id text NOT NULL,
                PRIMARY KEY (query_id, job_id)
            )""",
    }
    indexes = (
        "CREATE INDEX ON {queries} (organization_id, lower(name), id)",
        "CREATE INDEX ON {queries} (organization_id, updated_at, id)",
        "CREATE INDEX ON {queries} (catalog_id)",
        "CREATE INDEX ON {query_teams} (team_id)",
    )
    SORTS = {"name": "lower(r.name)", "updatedAt": "r.updated_at"}

    def query(self, organization_id: str, query_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {queries} WHERE organization_id = %s AND id = %s",
            (organization_id, query_id),
        )

    def queries(
        self,
        organization_id: str,
        page: Page,
        sort: Sort,
        marker: str | None = None,
        *,
        team_ids: list[str] | None = None,
        catalog_id: str | None = None,
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        where, params = (
            ("", ()) if catalog_id is None else (" AND r.catalog_id = %s", (catalog_id,))
        )
        return self._list(
            organization_id,
            where=where,
            params=params,
            team_ids=team_ids,
            sorts=self.SORTS,
            page=page,
            sort=sort,
            marker=marker,
        )

    def job_ids_by_query(self, query_ids: list[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {q: [] for q in query_ids}
        for row in self.fetch_all(
            "SELECT query_id, job_id FROM {query_jobs} WHERE query_id = ANY(%s) ORDER BY job_id",
            (query_ids,),
        ):
            found[row["query_id"]].append(row["job_id"])
        return found

    def active_job_ids(self, organization_id: str, query_id: str) -> list[str]:
        rows = self.fetch_all(
            "SELECT job_id FROM {query_jobs} WHERE organization_id = %s AND query_id = %s "
            "ORDER BY job_id",
            (organization_id, query_id),
        )
        return [r["job_id"] for r in rows]


class SharedProjection(Projection[Any]):
    """Team grants and deletion, the same for every resource shared with teams."""

    view: SharedView

    def _granted(self, event: TeamsGrantedEvent) -> None:
        by = actor_ref(event.actor)
        for team_id in event.team_ids:
            self._insert_grant(event, team_id, by)
        self._touch(event)

    def _insert_grant(self, event: Any, team_id: str, by: str) -> None:
        self.view.execute(
            f"INSERT INTO {{{self.view.grants_table}}} VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                team_id,
                event.organization_id,
                event.timestamp,
                by,
                event.timestamp,
                by,
            ),
        )

    def _revoked(self, event: TeamRevokedEvent) -> None:
        self.view.execute(
            f"DELETE FROM {{{self.view.grants_table}}} WHERE {self.view.grant_key} = %s "
            "AND team_id = %s",
            (event.originator_id, event.team_id),
        )
        self._touch(event)

    def _deleted(self, event: DeletedEvent) -> None:
        self.view.execute(
            f"DELETE FROM {{{self.view.grants_table}}} WHERE {self.view.grant_key} = %s",
            (event.originator_id,),
        )
        self.view.execute(
            f"DELETE FROM {{{self.view.resource_table}}} WHERE id = %s", (event.originator_id,)
        )

    def _team_deleted(self, event: Team.Deleted) -> None:
        self.view.execute(
            f"DELETE FROM {{{self.view.grants_table}}} WHERE team_id = %s", (event.originator_id,)
        )

    def _touch(self, event: Any) -> None:
        self.view.execute(
            f"UPDATE {{{self.view.resource_table}}} SET updated_at = %s, updated_by = %s "
            "WHERE id = %s",
            (event.timestamp, actor_ref(event.actor), event.originator_id),
        )


class CatalogsProjection(SharedProjection):
    view_class = CatalogsView
    view: CatalogsView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events change nothing here."""

    @process_event.register
    def _(self, event: Catalog.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {catalogs} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.name,
                event.provider,
                Jsonb(event.config),
                sorted(event.secrets),
                event.timestamp,
                by,
                event.timestamp,
                by,
            ),
        )
        for team_id in event.team_ids:
            self._insert_grant(event, team_id, by)

    @process_event.register
    def _(self, event: Catalog.Updated, tracking: Tracking) -> None:
        changes = event.changes
        if "name" in changes:
            self.view.execute(
                "UPDATE {catalogs} SET name = %s WHERE id = %s",
                (changes["name"], event.originator_id),
            )
        if "config" in changes:
            self.view.execute(
                "UPDATE {catalogs} SET config = %s WHERE id = %s",
                (Jsonb(changes["config"]), event.originator_id),
            )
        if "secrets" in changes:
            self.view.execute(
                "UPDATE {catalogs} SET secret_names = %s WHERE id = %s",
                (sorted(changes["secrets"]), event.originator_id),
            )
        self._touch(event)

    @process_event.register
    def _(self, event: Catalog.TeamsGranted, tracking: Tracking) -> None:
        self._granted(event)

    @process_event.register
    def _(self, event: Catalog.TeamRevoked, tracking: Tracking) -> None:
        self._revoked(event)

    @process_event.register
    def _(self, event: Catalog.Deleted, tracking: Tracking) -> None:
        self._deleted(event)

    @process_event.register
    def _(self, event: Team.Deleted, tracking: Tracking) -> None:
        self._team_deleted(event)


class QueriesProjection(SharedProjection):
    view_class = QueriesView
    view: QueriesView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events change nothing here."""

    @process_event.register
    def _(self, event: SavedQuery.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {queries} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.member_id,
                event.name,
                event.description,
                event.catalog_schema,
                event.catalog_id,
                event.query_text,
                list(event.tags),
                event.timestamp,
                by,
                event.timestamp,
                by,
            ),
        )
        for team_id in event.team_ids:
            self._insert_grant(event, team_id, by)

    @process_event.register
    def _(self, event: SavedQuery.Updated, tracking: Tracking) -> None:
        for column, value in event.changes.items():
            if column not in QUERY_FIELDS:
                raise ValueError(f"SavedQuery.Updated changes unknown field {column!r}")
            self.view.execute(
                f"UPDATE {{queries}} SET {column} = %s WHERE id = %s",
                (list(value) if column == "tags" else value, event.originator_id),
            )
        self._touch(event)

    @process_event.register
    def _(self, event: SavedQuery.TeamsGranted, tracking: Tracking) -> None:
        self._granted(event)

    @process_event.register
    def _(self, event: SavedQuery.TeamRevoked, tracking: Tracking) -> None:
        self._revoked(event)

    @process_event.register
    def _(self, event: SavedQuery.Deleted, tracking: Tracking) -> None:
        self.view.execute("DELETE FROM {query_jobs} WHERE query_id = %s", (event.originator_id,))
        self._deleted(event)

    @process_event.register
    def _(self, event: Team.Deleted, tracking: Tracking) -> None:
        self._team_deleted(event)

    # `query_jobs`: which saved query each job's active version runs.

    @process_event.register
    def _(self, event: Job.Created, tracking: Tracking) -> None:
        self._job_runs_query(event, query_id_of(event.spec))

    @process_event.register
    def _(self, event: Job.VersionCreated, tracking: Tracking) -> None:
        self._job_runs_query(event, query_id_of(event.spec))

    @process_event.register
    def _(self, event: Job.DraftPublished, tracking: Tracking) -> None:
        self._job_runs_query(event, event.query_id)

    @process_event.register
    def _(self, event: Job.VersionActivated, tracking: Tracking) -> None:
        self._job_runs_query(event, event.query_id)

    @process_event.register
    def _(self, event: Job.Deleted, tracking: Tracking) -> None:
        self._job_runs_query(event, None)

    def _job_runs_query(self, event: Any, query_id: str | None) -> None:
        self.view.execute("DELETE FROM {query_jobs} WHERE job_id = %s", (event.originator_id,))
        if query_id is not None:
            self.view.execute(
                "INSERT INTO {query_jobs} VALUES (%s, %s, %s)",
                (query_id, event.originator_id, event.organization_id),
            )
