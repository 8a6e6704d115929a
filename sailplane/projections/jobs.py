"""The jobs view: jobs, their versions (published and draft) and their team grants.

`jobs` holds one row per live job with its metadata, its version pointers and the
cluster of its active version (for `/workloads/clusters/{cluster}/jobs`); `job_versions`
holds every version's configuration and history (who created and published it, which
version it was based on). A deleted job's rows are removed.

Readers of a job's active configuration (the runs context, the scheduler) use
`active_version(organization_id, job_id)`.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from psycopg.types.json import Jsonb

from sailplane.domain.identity import Team
from sailplane.domain.jobs import VERSION_FIELDS, Job
from sailplane.projections.identity import actor_ref
from sailplane.projections.query import Page, Sort, paginate
from sailplane.projections.workloads import _GRANTS_DDL, SharedProjection, SharedView

_JSON_COLUMNS = frozenset({"config", "source_config", "depends_on"})


def _column(name: str, value: Any) -> Any:
    return Jsonb(value) if name in _JSON_COLUMNS and value is not None else value


class JobsView(SharedView):
    name = "jobs"
    resource_table = "jobs"
    grants_table = "job_teams"
    grant_key = "job_id"
    tables = {
        "jobs": """
            CREATE TABLE {jobs} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                job_key text NOT NULL,
                description text,
                status text NOT NULL,
                member_id text NOT NULL,
                current_version integer NOT NULL,
                draft_version integer,
                cluster_id text NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL,
                revision integer NOT NULL
            )""",
        "job_versions": """
            CREATE TABLE {job_versions} (
                job_id text NOT NULL,
                version integer NOT NULL,
                organization_id text NOT NULL,
                status text NOT NULL,
                based_on_version integer,
                cluster_id text NOT NULL,
                description text,
                config jsonb NOT NULL,
                timeout_seconds integer,
                source_config jsonb,
                depends_on jsonb NOT NULL,
                cron_expression text,
                cron_timezone text,
                concurrency_policy text NOT NULL,
                max_concurrent_runs integer NOT NULL,
                missed_schedule_policy text NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL,
                published_at timestamptz,
                published_by text,
                PRIMARY KEY (job_id, version)
            )""",
        "job_teams": _GRANTS_DDL.format(table="job_teams", key="job_id"),
    }
    indexes = (
        "CREATE INDEX ON {jobs} (organization_id, job_key, id)",
        "CREATE INDEX ON {jobs} (organization_id, created_at, id)",
        "CREATE INDEX ON {jobs} (organization_id, cluster_id)",
        "CREATE INDEX ON {job_teams} (team_id)",
    )
    SORTS = {"jobKey": "r.job_key", "createdAt": "r.created_at"}

    # --- one job ---------------------------------------------------------------------------

    def job(self, organization_id: str, job_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {jobs} WHERE organization_id = %s AND id = %s",
            (organization_id, job_id),
        )

    def version(self, organization_id: str, job_id: str, version: int) -> dict[str, Any] | None:
        """One version of a job (draft or published)."""
        return self.fetch_one(
            "SELECT * FROM {job_versions} WHERE organization_id = %s AND job_id = %s "
            "AND version = %s",
            (organization_id, job_id, version),
        )

    def active_version(self, organization_id: str, job_id: str) -> dict[str, Any] | None:
        """The active version's row of a live job: `cluster_id`, `config` (with
        `config["lakesail"]["maxRetries"]`), `timeout_seconds`, `concurrency_policy`,
        `max_concurrent_runs`, `depends_on` ([{"jobKey": ...}]), the schedule fields and
        the job's own `status` (as `job_status`) and `job_key`."""
        return self.fetch_one(
            "SELECT v.*, j.status AS job_status, j.job_key FROM {jobs} j "
            "JOIN {job_versions} v ON v.job_id = j.id AND v.version = j.current_version "
            "WHERE j.organization_id = %s AND j.id = %s",
            (organization_id, job_id),
        )

    def team_jobs_running(
        self, organization_id: str, team_id: str, work: str, job_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The live jobs granted to `team_id` whose active version's work is of kind `work`
        (a key of `config`, such as `container`), newest first (or the one `job_id`): each
        the job's row with its active version's `config`, `cluster_id`, `cron_expression`
        and `cron_timezone`, and when that version was published (`version_published_at`)."""
        return self.fetch_all(
            "SELECT j.*, v.config, v.cluster_id, v.cron_expression, v.cron_timezone, "
            "v.published_at AS version_published_at FROM {jobs} j "
            "JOIN {job_versions} v ON v.job_id = j.id AND v.version = j.current_version "
            "JOIN {job_teams} g ON g.job_id = j.id AND g.team_id = %s "
            "WHERE j.organization_id = %s AND v.config ? %s "
            "AND (%s::text IS NULL OR j.id = %s::text) ORDER BY j.created_at DESC, j.id DESC",
            (team_id, organization_id, work, job_id, job_id),
        )

    def runnable_version(
        self, organization_id: str, job_id: str, version: int | None = None
    ) -> dict[str, Any] | None:
        """In one read, what a run copies: the active version's row (or the given version's
        when published) of a live job, with the job's `job_key` and its grants' `team_ids`."""
        return self.fetch_one(
            "SELECT v.*, j.job_key, ARRAY(SELECT g.team_id FROM {job_teams} g "
            "WHERE g.job_id = j.id ORDER BY g.created_at, g.team_id) AS team_ids "
            "FROM {jobs} j JOIN {job_versions} v ON v.job_id = j.id "
            # numeric: a client may ask for any version number, even past 2^63 (no match).
            "AND v.version = COALESCE(%s::numeric, j.current_version) "
            "WHERE j.organization_id = %s AND j.id = %s "
            "AND (%s::numeric IS NULL OR v.status = 'published')",
            (version, organization_id, job_id, version),
        )

    def draft(self, organization_id: str, job_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT v.* FROM {jobs} j "
            "JOIN {job_versions} v ON v.job_id = j.id AND v.version = j.draft_version "
            "WHERE j.organization_id = %s AND j.id = %s",
            (organization_id, job_id),
        )

    def job_by_key(self, organization_id: str, job_key: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {jobs} WHERE organization_id = %s AND job_key = %s",
            (organization_id, job_key),
        )

    # --- lists -----------------------------------------------------------------------------

    def versions_of(
        self, organization_id: str, job_ids_and_versions: list[tuple[str, int]]
    ) -> dict[tuple[str, int], dict[str, Any]]:
        """Version rows by (job id, version)."""
        if not job_ids_and_versions:
            return {}
        rows = self.fetch_all(
            "SELECT v.* FROM {job_versions} v JOIN unnest(%s::text[], %s::integer[]) "
            "AS w(job_id, version) ON v.job_id = w.job_id AND v.version = w.version "
            "WHERE v.organization_id = %s",
            (
                [j for j, _ in job_ids_and_versions],
                [v for _, v in job_ids_and_versions],
                organization_id,
            ),
        )
        return {(r["job_id"], r["version"]): r for r in rows}

    def published_versions(
        self, organization_id: str, job_id: str, page: Page, marker: str | None = None
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        """A page of the published versions of a job, by number."""
        return paginate(
            self,
            "FROM {job_versions} v WHERE v.organization_id = %s AND v.job_id = %s "
            "AND v.status = 'published'",
            (organization_id, job_id),
            select="v.*",
            keys=["v.version"],
            page=page,
            marker=marker,
        )

    def jobs(
        self,
        organization_id: str,
        page: Page,
        sort: Sort,
        marker: str | None = None,
        *,
        team_ids: list[str] | None = None,
        cluster_id: str | None = None,
        job_ids: list[str] | None = None,
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        """A page of the organization's jobs; `team_ids` keeps those granted to one of these
        teams, `cluster_id` those whose active version runs there."""
        where, params = "", ()
        if cluster_id is not None:
            where, params = " AND r.cluster_id = %s", (cluster_id,)
        if job_ids is not None:
            where, params = f"{where} AND r.id = ANY(%s)", (*params, job_ids)
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


class JobsProjection(SharedProjection):
    view_class = JobsView
    view: JobsView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events change nothing here."""

    @process_event.register
    def _(self, event: Job.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {jobs} VALUES (%s, %s, %s, %s, %s, %s, 1, NULL, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.job_key,
                event.description,
                event.status,
                event.member_id,
                event.spec["cluster_id"],
                event.timestamp,
                by,
                event.timestamp,
                by,
                event.originator_version,
            ),
        )
        self._insert_version(event, 1, "published", None, event.spec)
        for team_id in event.team_ids:
            self._insert_grant(event, team_id, by)

    @process_event.register
    def _(self, event: Job.MetadataUpdated, tracking: Tracking) -> None:
        for column, value in event.changes.items():
            if column not in ("job_key", "description", "status"):
                raise ValueError(f"Job.MetadataUpdated changes unknown field {column!r}")
            self.view.execute(
                f"UPDATE {{jobs}} SET {column} = %s WHERE id = %s", (value, event.originator_id)
            )
        self._touch(event)

    @process_event.register
    def _(self, event: Job.DraftCreated, tracking: Tracking) -> None:
        self._insert_version(event, event.version, "draft", event.based_on_version, event.spec)
        self.view.execute(
            "UPDATE {jobs} SET draft_version = %s WHERE id = %s",
            (event.version, event.originator_id),
        )
        self._touch(event)

    @process_event.register
    def _(self, event: Job.DraftUpdated, tracking: Tracking) -> None:
        for column, value in event.changes.items():
            if column not in VERSION_FIELDS:
                raise ValueError(f"Job.DraftUpdated changes unknown field {column!r}")
            self.view.execute(
                f"UPDATE {{job_versions}} SET {column} = %s WHERE job_id = %s AND version = %s",
                (_column(column, value), event.originator_id, event.version),
            )
        self._touch_version(event, event.version)
        self._touch(event)

    @process_event.register
    def _(self, event: Job.DraftDiscarded, tracking: Tracking) -> None:
        self.view.execute(
            "DELETE FROM {job_versions} WHERE job_id = %s AND version = %s",
            (event.originator_id, event.version),
        )
        self.view.execute(
            "UPDATE {jobs} SET draft_version = NULL WHERE id = %s", (event.originator_id,)
        )
        self._touch(event)

    @process_event.register
    def _(self, event: Job.DraftPublished, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "UPDATE {job_versions} SET status = 'published', published_at = %s, "
            "published_by = %s WHERE job_id = %s AND version = %s",
            (event.timestamp, by, event.originator_id, event.version),
        )
        self._touch_version(event, event.version)
        self.view.execute(
            "UPDATE {jobs} SET draft_version = NULL WHERE id = %s", (event.originator_id,)
        )
        self._activate(event, event.version)

    @process_event.register
    def _(self, event: Job.VersionCreated, tracking: Tracking) -> None:
        self._insert_version(event, event.version, "published", event.based_on_version, event.spec)
        self._activate(event, event.version)

    @process_event.register
    def _(self, event: Job.VersionActivated, tracking: Tracking) -> None:
        self._activate(event, event.version)

    @process_event.register
    def _(self, event: Job.TeamsGranted, tracking: Tracking) -> None:
        self._granted(event)

    @process_event.register
    def _(self, event: Job.TeamRevoked, tracking: Tracking) -> None:
        self._revoked(event)

    @process_event.register
    def _(self, event: Job.Deleted, tracking: Tracking) -> None:
        self.view.execute("DELETE FROM {job_versions} WHERE job_id = %s", (event.originator_id,))
        self._deleted(event)

    @process_event.register
    def _(self, event: Team.Deleted, tracking: Tracking) -> None:
        self._team_deleted(event)

    # --- helpers ---------------------------------------------------------------------------

    def _insert_version(
        self, event: Any, version: int, status: str, based_on: int | None, spec: dict[str, Any]
    ) -> None:
        by = actor_ref(event.actor)
        published = status == "published"
        columns = list(VERSION_FIELDS)
        self.view.execute(
            f"INSERT INTO {{job_versions}} (job_id, version, organization_id, status, "
            f"based_on_version, {', '.join(columns)}, created_at, created_by, updated_at, "
            f"updated_by, published_at, published_by) VALUES "
            f"({', '.join(['%s'] * (len(columns) + 11))})",
            (
                event.originator_id,
                version,
                event.organization_id,
                status,
                based_on,
                *[_column(c, spec.get(c)) for c in columns],
                event.timestamp,
                by,
                event.timestamp,
                by,
                event.timestamp if published else None,
                by if published else None,
            ),
        )

    def _touch(self, event: Any) -> None:
        """Every change to a job moves its revision (the `version` a PATCH must name)."""
        self.view.execute(
            "UPDATE {jobs} SET updated_at = %s, updated_by = %s, revision = %s WHERE id = %s",
            (
                event.timestamp,
                actor_ref(event.actor),
                event.originator_version,
                event.originator_id,
            ),
        )

    def _touch_version(self, event: Any, version: int) -> None:
        self.view.execute(
            "UPDATE {job_versions} SET updated_at = %s, updated_by = %s "
            "WHERE job_id = %s AND version = %s",
            (event.timestamp, actor_ref(event.actor), event.originator_id, version),
        )

    def _activate(self, event: Any, version: int) -> None:
        self.view.execute(
            "UPDATE {jobs} SET current_version = %s, cluster_id = (SELECT cluster_id FROM "
            "{job_versions} WHERE job_id = %s AND version = %s) WHERE id = %s",
            (version, event.originator_id, version, event.originator_id),
        )
        self._touch(event)
