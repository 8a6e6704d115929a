"""Job-run views: the runs (one row each) and every transition of every run.

`job_runs` answers the run lists (marker pagination, newest first), describes, the
dispatcher's questions (which runs of a job are active, which are due) and the
dependency check (has a job completed since another job's last run). `job_run_events`
holds one row per transition with its time, cause (actor) and reason code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from psycopg.types.json import Jsonb

from sailplane.domain.runs import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    CRASHED,
    DEAD_LETTER,
    DISPATCHED,
    EXPIRED,
    FAILED,
    PENDING,
    PLATFORM_FAILURES,
    READY,
    RUNNING,
    SKIPPED,
    TERMINAL,
    TIMEOUT,
    UNSTARTED,
    WAITING_FOR_CHILDREN,
    JobRun,
    JobVersionSnapshot,
    RunOptions,
)
from sailplane.projections.base import Projection, View
from sailplane.projections.identity import actor_ref
from sailplane.projections.query import keyset_page


def _is(status: str) -> str:
    return f"status = '{status}'"


_DUE = "(not_before IS NULL OR not_before <= %(now)s)"
_PLATFORM = ", ".join(f"'{r}'" for r in sorted(PLATFORM_FAILURES))
# The seed-003 statuses (domain.runs.queue_status) as SQL predicates over a run row.
QUEUE_STATUS_SQL = {
    "delayed": f"{_is(READY)} AND NOT {_DUE}",
    "queued": f"{_is(READY)} AND {_DUE}",
    "dequeued": _is(DISPATCHED),
    "waiting": f"({_is(PENDING)} OR ({_is(RUNNING)} AND status_reason = '{WAITING_FOR_CHILDREN}'))",
    "executing": f"{_is(RUNNING)} AND status_reason <> '{WAITING_FOR_CHILDREN}'",
    "completed": _is(COMPLETED),
    "failed": f"{_is(FAILED)} AND status_reason NOT IN ('{CRASHED}', {_PLATFORM})",
    "crashed": f"{_is(FAILED)} AND status_reason = '{CRASHED}'",
    "system_failed": f"{_is(FAILED)} AND status_reason IN ({_PLATFORM})",
    "timed_out": _is(TIMEOUT),
    "canceled": f"(({_is(CANCELLED)} AND status_reason <> '{EXPIRED}') OR {_is(SKIPPED)})",
    "expired": f"{_is(CANCELLED)} AND status_reason = '{EXPIRED}'",
    "dead_letter": _is(DEAD_LETTER),
}


@dataclass(frozen=True)
class RunFilter:
    """Which runs a run-queue list or bulk action covers (None: no condition)."""

    team_ids: list[str]
    queue_statuses: tuple[str, ...] = ()
    since: datetime | None = None
    triggers: tuple[str, ...] = ()
    batch_id: str | None = None
    job_id: str | None = None
    payload: dict[str, Any] | None = None
    dead_letter_queue: bool = False  # dead-lettered and not replayed since


class RunsView(View):
    name = "job_runs"
    tables = {
        "job_runs": """
            CREATE TABLE {job_runs} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                job_id text NOT NULL,
                job_key text NOT NULL,
                job_version integer NOT NULL,
                cluster_id text,
                team_ids text[] NOT NULL,
                depends_on text[] NOT NULL,
                spec jsonb NOT NULL,
                status text NOT NULL,
                status_reason text NOT NULL,
                status_message text,
                hold boolean NOT NULL,
                resource_cleanup_mode text NOT NULL,
                trigger text NOT NULL,
                attempt integer NOT NULL,
                executor text,
                not_before timestamptz,
                scheduled_for timestamptz,
                dispatched_at timestamptz,
                runner_started_at timestamptz,
                runner_completed_at timestamptz,
                exit_code integer,
                finished_at timestamptz,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL,
                version integer NOT NULL,
                options jsonb NOT NULL,
                payload jsonb,
                tags jsonb NOT NULL,
                metadata jsonb NOT NULL,
                priority integer NOT NULL,
                concurrency_key text,
                idempotency_key text,
                idempotency_key_held boolean NOT NULL,
                scheduled_at timestamptz,
                expires_at timestamptz,
                ready_at timestamptz,
                batch_id text,
                continuation_of text,
                lineage_depth integer NOT NULL,
                replayed_by text,
                trace jsonb,
                parent_run_id text,
                result jsonb,
                usage jsonb
            )""",
        "job_run_events": """
            CREATE TABLE {job_run_events} (
                run_id text NOT NULL,
                version integer NOT NULL,
                organization_id text NOT NULL,
                type text NOT NULL,
                status text,
                reason text,
                message text,
                attempt integer NOT NULL,
                actor text NOT NULL,
                at timestamptz NOT NULL,
                PRIMARY KEY (run_id, version)
            )""",
    }
    indexes = (
        "CREATE INDEX ON {job_runs} (organization_id, job_id, created_at DESC, id DESC)",
        "CREATE INDEX ON {job_runs} (organization_id, created_at DESC, id DESC)",
        "CREATE INDEX ON {job_runs} (status) WHERE status IN ('ready', 'dispatched', 'running', 'pending')",
        "CREATE INDEX ON {job_runs} (organization_id, job_key, finished_at) WHERE status = 'completed'",
        "CREATE INDEX ON {job_runs} (priority DESC, created_at, id) WHERE status = 'ready'",
        "CREATE INDEX ON {job_runs} (job_id, concurrency_key, priority DESC, created_at, id) "
        "WHERE status = 'ready'",
        "CREATE INDEX ON {job_runs} (expires_at) WHERE status IN ('pending', 'ready')",
        "CREATE INDEX ON {job_runs} USING gin (payload jsonb_path_ops)",
        "CREATE INDEX ON {job_runs} (organization_id, batch_id) WHERE batch_id IS NOT NULL",
        "CREATE INDEX ON {job_runs} (continuation_of) WHERE continuation_of IS NOT NULL",
        "CREATE INDEX ON {job_runs} (parent_run_id, created_at) WHERE parent_run_id IS NOT NULL",
    )

    # --- the HTTP layer's queries -------------------------------------------------------

    def counts_by_status(self) -> dict[str, int]:
        """How many runs each status has, over every organization (for `/metrics`)."""
        rows = self.fetch_all("SELECT status, count(*) AS n FROM {job_runs} GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}

    def run(
        self, organization_id: str, job_id: str, run_id: str, *, columns: str = "*"
    ) -> dict[str, Any] | None:
        """The run's row (`columns`: a select list, when the caller needs only those)."""
        return self.fetch_one(
            f"SELECT {columns} FROM {{job_runs}} "
            "WHERE organization_id = %s AND job_id = %s AND id = %s",
            (organization_id, job_id, run_id),
        )

    def runs(
        self,
        organization_id: str,
        *,
        limit: int,
        marker: str | None,
        job_id: str | None = None,
        team_ids: list[str] | None = None,
        columns: str = "*",
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        """(total, a page of runs newest first, the next marker); `team_ids` limits the runs
        to jobs granted to those teams (None: every job of the organization); `columns` as
        in `run`."""
        where, params = "WHERE organization_id = %s", [organization_id]
        if job_id is not None:
            where += " AND job_id = %s"
            params.append(job_id)
        if team_ids is not None:
            where += " AND team_ids && %s"
            params.append(team_ids)
        from_where = "FROM {job_runs} " + where
        total_row = self.fetch_one(f"SELECT count(*) AS total {from_where}", params)
        rows, next_marker = keyset_page(
            self,
            from_where,
            params,
            select=columns,
            keys=["created_at", "id"],
            limit=limit,
            marker=marker,
            descending=True,
        )
        return int(total_row["total"]) if total_row else 0, rows, next_marker

    def run_by_id(self, organization_id: str, run_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {job_runs} WHERE organization_id = %s AND id = %s",
            (organization_id, run_id),
        )

    def runs_by_ids(self, organization_id: str, run_ids: list[str]) -> list[dict[str, Any]]:
        """The runs of these ids that exist, once each, in no particular order."""
        return self.fetch_all(
            "SELECT * FROM {job_runs} WHERE organization_id = %s AND id = ANY(%s)",
            (organization_id, run_ids),
        )

    def filtered_runs(
        self,
        organization_id: str,
        where: RunFilter,
        *,
        now: datetime,
        limit: int,
        before: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs matching `where`, newest first, older than run `before` when given."""
        sql = ["organization_id = %(org)s", "team_ids && %(teams)s"]
        params: dict[str, Any] = {"org": organization_id, "teams": where.team_ids, "now": now}
        if where.queue_statuses:
            sql.append(
                "(" + " OR ".join(f"({QUEUE_STATUS_SQL[s]})" for s in where.queue_statuses) + ")"
            )
        if where.since is not None:
            sql.append("created_at >= %(since)s")
            params["since"] = where.since
        if where.triggers:
            sql.append("trigger = ANY(%(triggers)s)")
            params["triggers"] = list(where.triggers)
        if where.batch_id is not None:
            sql.append("batch_id = %(batch)s")
            params["batch"] = where.batch_id
        if where.job_id is not None:
            sql.append("job_id = %(job)s")
            params["job"] = where.job_id
        if where.payload is not None:
            sql.append("payload @> %(payload)s")
            params["payload"] = Jsonb(where.payload)
        if where.dead_letter_queue:
            sql.append(f"{_is(DEAD_LETTER)} AND replayed_by IS NULL")
        if before is not None:
            sql.append(
                "(created_at, id) < (SELECT created_at, id FROM {job_runs} "
                "WHERE organization_id = %(org)s AND id = %(before)s)"
            )
            params["before"] = before
        params["limit"] = limit
        return self.fetch_all(
            "SELECT * FROM {job_runs} WHERE "
            + " AND ".join(sql)
            + " ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
            params,
        )

    def children(self, organization_id: str, run_id: str) -> list[dict[str, Any]]:
        """The runs `run_id` spawned, oldest first."""
        return self.fetch_all(
            "SELECT * FROM {job_runs} WHERE organization_id = %s AND parent_run_id = %s "
            "ORDER BY created_at, id",
            (organization_id, run_id),
        )

    def lineage(self, organization_id: str, run_id: str) -> list[dict[str, Any]]:
        """The replay chain through `run_id`: its first ancestor first, then each run that
        continued the previous one, up to the newest descendant."""
        return self.fetch_all(
            "WITH RECURSIVE up(id, continuation_of, depth) AS ("
            " SELECT id, continuation_of, 0 FROM {job_runs} WHERE organization_id = %(org)s "
            " AND id = %(id)s"
            " UNION ALL SELECT r.id, r.continuation_of, up.depth + 1 FROM {job_runs} r "
            " JOIN up ON r.id = up.continuation_of WHERE r.organization_id = %(org)s),"
            " down(id, replayed_by, depth) AS ("
            " SELECT id, replayed_by, 0 FROM {job_runs} WHERE organization_id = %(org)s "
            " AND id = %(id)s"
            " UNION ALL SELECT r.id, r.replayed_by, down.depth + 1 FROM {job_runs} r "
            " JOIN down ON r.id = down.replayed_by WHERE r.organization_id = %(org)s)"
            " SELECT r.* FROM {job_runs} r JOIN ("
            " SELECT id, -depth AS o FROM up UNION SELECT id, depth FROM down) c ON c.id = r.id"
            " ORDER BY c.o",
            {"org": organization_id, "id": run_id},
        )

    def expirable_runs(self, now: datetime, *, limit: int = 500) -> list[dict[str, Any]]:
        """(id, organization_id) of the runs not started whose expires_at has passed (the
        monitor's expiry sweep)."""
        return self.fetch_all(
            "SELECT id, organization_id FROM {job_runs} WHERE status = ANY(%s) "
            "AND expires_at <= %s ORDER BY expires_at, id LIMIT %s",
            (sorted(UNSTARTED), now, limit),
        )

    def events(
        self, organization_id: str, run_id: str, *, after: int, limit: int
    ) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {job_run_events} WHERE organization_id = %s AND run_id = %s "
            "AND version > %s ORDER BY version LIMIT %s",
            (organization_id, run_id, after, limit),
        )

    # --- RunHistory, for the use cases and the dispatcher --------------------------------

    def active_run_ids(
        self, organization_id: str, job_id: str, concurrency_key: str | None = None
    ) -> list[str]:
        # A run waiting for the children it spawned holds no slot: its children (often of
        # the same job) could never start otherwise.
        rows = self.fetch_all(
            "SELECT id FROM {job_runs} WHERE organization_id = %s AND job_id = %s "
            "AND concurrency_key IS NOT DISTINCT FROM %s "
            "AND status = ANY(%s) AND status_reason <> %s ORDER BY dispatched_at, id",
            (organization_id, job_id, concurrency_key, sorted(ACTIVE), WAITING_FOR_CHILDREN),
        )
        return [r["id"] for r in rows]

    def unmet_dependencies(
        self, organization_id: str, job_id: str, depends_on: Sequence[str]
    ) -> list[str]:
        last = self.fetch_one(
            "SELECT max(greatest(created_at, dispatched_at)) AS at FROM {job_runs} "
            "WHERE organization_id = %s AND job_id = %s",
            (organization_id, job_id),
        )
        since = last["at"] if last else None
        rows = self.fetch_all(
            "SELECT DISTINCT job_key FROM {job_runs} WHERE organization_id = %s "
            "AND status = 'completed' AND job_key = ANY(%s) "
            "AND (%s::timestamptz IS NULL OR finished_at > %s::timestamptz)",
            (organization_id, list(depends_on), since, since),
        )
        done = {r["job_key"] for r in rows}
        return [k for k in depends_on if k not in done]

    def due_run_ids(self, now: datetime, *, limit: int = 500) -> list[str]:
        return [r["id"] for r in self.due_runs(now, limit=limit)]

    def due_runs(self, now: datetime, *, limit: int = 500) -> list[dict[str, Any]]:
        """(id, job_id, concurrency_key) of the ready runs whose start time or backoff has
        passed, the highest priority first, then the oldest (the dispatcher's sweep)."""
        return self.fetch_all(
            "SELECT id, job_id, concurrency_key FROM {job_runs} WHERE status = 'ready' "
            "AND (not_before IS NULL OR not_before <= %s) "
            "ORDER BY priority DESC, created_at, id LIMIT %s",
            (now, limit),
        )

    def queue_head(
        self, organization_id: str, job_id: str, concurrency_key: str | None, now: datetime
    ) -> str | None:
        """The run a (job, concurrency key) queue starts next: its due ready run of the
        highest priority, then the oldest."""
        row = self.fetch_one(
            "SELECT id FROM {job_runs} WHERE job_id = %(job)s AND organization_id = %(org)s "
            "AND concurrency_key IS NOT DISTINCT FROM %(key)s AND status = 'ready' "
            "AND (not_before IS NULL OR not_before <= %(now)s) "
            "AND (expires_at IS NULL OR expires_at > %(now)s) "
            "ORDER BY priority DESC, created_at, id LIMIT 1",
            {"job": job_id, "org": organization_id, "key": concurrency_key, "now": now},
        )
        return row["id"] if row else None

    def status_counts(self, organization_id: str, job_id: str) -> list[dict[str, Any]]:
        """How many of a job's runs are in each (status, ever started) pair: `status`,
        `started` (an attempt of the run has begun executing) and `runs`."""
        return self.fetch_all(
            "SELECT status, (runner_started_at IS NOT NULL OR attempt > 1) AS started, "
            "count(*) AS runs FROM {job_runs} WHERE organization_id = %s AND job_id = %s "
            "GROUP BY 1, 2",
            (organization_id, job_id),
        )

    def runs_in(self, statuses: Sequence[str], *, limit: int = 1000) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {job_runs} WHERE status = ANY(%s) ORDER BY created_at, id LIMIT %s",
            (list(statuses), limit),
        )

    def waiting_run_ids(self, organization_id: str, job_key: str) -> list[str]:
        """Runs waiting for dependencies that include `job_key`."""
        rows = self.fetch_all(
            "SELECT id FROM {job_runs} WHERE organization_id = %s AND status = 'pending' "
            "AND status_reason = 'waiting_for_dependencies' AND %s = ANY(depends_on)",
            (organization_id, job_key),
        )
        return [r["id"] for r in rows]

    def latest_runs(
        self, organization_id: str, job_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Each job's newest run (for `latestJobRunId` and `included.jobRuns` of job lists)."""
        rows = self.fetch_all(
            "SELECT DISTINCT ON (job_id) * FROM {job_runs} WHERE organization_id = %s "
            "AND job_id = ANY(%s) ORDER BY job_id, created_at DESC, id DESC",
            (organization_id, list(job_ids)),
        )
        return {r["job_id"]: r for r in rows}

    def run_ids_of_job(self, organization_id: str, job_id: str) -> list[str]:
        rows = self.fetch_all(
            "SELECT id FROM {job_runs} WHERE organization_id = %s AND job_id = %s",
            (organization_id, job_id),
        )
        return [r["id"] for r in rows]


# The option columns, in the order `_option_values` gives them.
_OPTION_NAMES = (
    "options",
    "payload",
    "tags",
    "metadata",
    "priority",
    "concurrency_key",
    "idempotency_key",
    "batch_id",
    "continuation_of",
    "lineage_depth",
    "parent_run_id",
)
_OPTION_COLUMNS = ", ".join(_OPTION_NAMES)
_OPTION_VALUES = ", ".join(["%s"] * len(_OPTION_NAMES))
# Transitions that make a run ready anew: its queue wait starts again.
_READYING = (
    JobRun.Released,
    JobRun.Resumed,
    JobRun.Retried,
    JobRun.Restarted,
    JobRun.RetryScheduled,
    JobRun.Rescheduled,
)


def _option_values(options: RunOptions) -> tuple[Any, ...]:
    return (
        Jsonb(options.to_dict()),
        None if options.payload is None else Jsonb(options.payload),
        Jsonb(options.tags),
        Jsonb(options.metadata),
        options.priority,
        options.concurrency_key,
        options.idempotency_key,
        options.batch_id,
        options.continuation_of,
        options.lineage_depth,
        options.parent_run_id,
    )


def _ready_at(e: Any, not_before: datetime | None) -> datetime | None:
    """When a run that became ready may start: now, or its start time if later."""
    if e.status != READY:
        return None
    return not_before if not_before is not None and not_before > e.timestamp else e.timestamp


# Columns a transition sets besides status, reason and message: event class -> column.
_STAMPS = {
    JobRun.Dispatched: "dispatched_at",
    JobRun.Started: "runner_started_at",
    JobRun.Finished: "runner_completed_at",
    JobRun.RetryScheduled: "runner_completed_at",
}


class RunsProjection(Projection[RunsView]):
    view_class = RunsView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events change nothing here."""

    def _event_row(
        self,
        e: Any,
        type_: str,
        status: str | None,
        reason: str | None,
        message: str | None,
        attempt: int | None,
    ) -> None:
        """One row of the run's history; without an attempt, the run's current one."""
        self.view.execute(
            "INSERT INTO {job_run_events} SELECT %s, %s, %s, %s, %s, %s, %s, "
            "COALESCE(%s::integer, (SELECT attempt FROM {job_runs} WHERE id = %s), 0), %s, %s "
            "ON CONFLICT DO NOTHING",
            (
                e.originator_id,
                e.originator_version,
                e.organization_id,
                type_,
                status,
                reason,
                message,
                attempt,
                e.originator_id,
                e.actor,
                e.timestamp,
            ),
        )

    @process_event.register
    def _(self, e: JobRun.Created, tracking: Tracking) -> None:
        spec = e.job_version
        options = RunOptions.from_dict(e.options)
        self.view.execute(
            "INSERT INTO {job_runs} (id, organization_id, job_id, job_key, job_version, cluster_id, "
            "team_ids, depends_on, spec, status, status_reason, status_message, hold, "
            "resource_cleanup_mode, trigger, attempt, scheduled_for, created_at, created_by, "
            "updated_at, updated_by, version, not_before, scheduled_at, expires_at, ready_at, "
            "idempotency_key_held, " + _OPTION_COLUMNS + ") VALUES (%s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            + _OPTION_VALUES
            + ") ON CONFLICT (id) DO NOTHING",
            (
                e.originator_id,
                e.organization_id,
                e.job_id,
                spec.get("job_key") or "",
                spec["version"],
                spec.get("cluster_id"),
                list(spec.get("team_ids") or []),
                list(spec.get("depends_on") or []),
                Jsonb(spec),
                e.status,
                e.reason,
                e.message,
                e.hold,
                e.resource_cleanup_mode,
                e.trigger,
                e.scheduled_for,
                e.timestamp,
                actor_ref(e.actor),
                e.timestamp,
                actor_ref(e.actor),
                e.originator_version,
                e.not_before,
                e.not_before,
                e.expires_at,
                _ready_at(e, e.not_before),
                options.idempotency_key is not None,
                *_option_values(options),
            ),
        )
        self._event_row(e, "created", e.status, e.reason, e.message, 1)

    @process_event.register
    def _(self, e: JobRun.Transition, tracking: Tracking) -> None:
        sets = [
            "status = %(status)s",
            "status_reason = %(reason)s",
            "status_message = %(message)s",
            "updated_at = %(at)s",
            "updated_by = %(by)s",
            "version = %(version)s",
        ]
        values: dict[str, Any] = {
            "status": e.status,
            "reason": e.reason,
            "message": e.message,
            "at": e.timestamp,
            "by": actor_ref(e.actor),
            "version": e.originator_version,
            "id": e.originator_id,
        }
        stamp = next((c for k, c in _STAMPS.items() if isinstance(e, k)), None)
        if stamp:
            sets.append(f"{stamp} = %(at)s")
        if isinstance(e, JobRun.Dispatched):
            sets += [
                "executor = %(executor)s",
                "not_before = NULL",
                "runner_started_at = NULL",
                "runner_completed_at = NULL",
                "exit_code = NULL",
                "trace = NULL",
            ]
            values["executor"] = e.executor
        if isinstance(e, JobRun.Finished):
            sets += [
                "exit_code = %(exit_code)s",
                "trace = %(trace)s",
                "usage = %(usage)s",
            ]
            values["exit_code"] = e.exit_code
            values["trace"] = None if e.trace is None else Jsonb(e.trace)
            values["usage"] = None if e.usage is None else Jsonb(e.usage)
        if isinstance(e, JobRun.Suspended):
            sets += [
                "not_before = NULL",
                "dispatched_at = NULL",
                "runner_started_at = NULL",
                "runner_completed_at = NULL",
            ]
        if isinstance(e, (JobRun.RetryScheduled, JobRun.Retried, JobRun.Suspended)):
            sets.append("attempt = %(attempt)s")
            values["attempt"] = e.attempt
        if isinstance(e, JobRun.RetryScheduled):
            sets.append("not_before = %(not_before)s")
            values["not_before"] = e.not_before
        if isinstance(e, JobRun.Rescheduled):
            sets += ["not_before = %(not_before)s", "scheduled_at = %(not_before)s"]
            values["not_before"] = e.not_before
        if isinstance(e, _READYING) and e.status == READY:
            sets.append("ready_at = %(ready_at)s")
            values["ready_at"] = _ready_at(e, getattr(e, "not_before", None))
        if isinstance(e, JobRun.Restarted):
            options = RunOptions.from_dict(e.options)
            sets += [
                "attempt = %(attempt)s",
                "hold = false",
                "not_before = NULL",
                "finished_at = NULL",
                "dispatched_at = NULL",
                "runner_started_at = NULL",
                "runner_completed_at = NULL",
                "trace = NULL",
                *(f"{name} = %(option_{name})s" for name in _OPTION_NAMES),
            ]
            values["attempt"] = e.attempt
            values.update(
                {
                    f"option_{n}": v
                    for n, v in zip(_OPTION_NAMES, _option_values(options), strict=True)
                }
            )
        if isinstance(e, JobRun.Retried):
            sets += [
                "hold = %(hold)s",
                "trigger = 'retry'",
                "not_before = NULL",
                "finished_at = NULL",
                "dispatched_at = NULL",
                "runner_started_at = NULL",
                "runner_completed_at = NULL",
                "exit_code = NULL",
                "trace = NULL",
            ]
            values["hold"] = e.hold
        if e.status in TERMINAL:
            sets.append("finished_at = %(at)s")
        self.view.execute("UPDATE {job_runs} SET " + ", ".join(sets) + " WHERE id = %(id)s", values)
        self._event_row(
            e, _event_type(e), e.status, e.reason, e.message, getattr(e, "attempt", None)
        )

    @process_event.register
    def _(self, e: JobRun.Replayed, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {job_runs} SET replayed_by = %s, updated_at = %s, updated_by = %s, "
            "version = %s WHERE id = %s",
            (e.by_run_id, e.timestamp, actor_ref(e.actor), e.originator_version, e.originator_id),
        )
        self._event_row(e, "replayed", None, None, f"Replayed by job run {e.by_run_id}.", None)

    @process_event.register
    def _(self, e: JobRun.IdempotencyKeyReset, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {job_runs} SET idempotency_key_held = false, updated_at = %s, "
            "updated_by = %s, version = %s WHERE id = %s",
            (e.timestamp, actor_ref(e.actor), e.originator_version, e.originator_id),
        )
        self._event_row(e, "idempotency_key_reset", None, None, None, None)

    @process_event.register
    def _(self, e: JobRun.ResultReported, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {job_runs} SET result = %s, updated_at = %s, updated_by = %s, version = %s "
            "WHERE id = %s",
            (
                Jsonb(e.value),
                e.timestamp,
                actor_ref(e.actor),
                e.originator_version,
                e.originator_id,
            ),
        )

    @process_event.register
    def _(self, e: JobRun.DebugModeSet, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {job_runs} SET options = jsonb_set(options, ARRAY['debug_mode'], %s), "
            "updated_at = %s, updated_by = %s, version = %s WHERE id = %s",
            (
                Jsonb(e.enabled),
                e.timestamp,
                actor_ref(e.actor),
                e.originator_version,
                e.originator_id,
            ),
        )
        self._event_row(
            e, "debug_mode_set", None, None, f"Debug mode {'on' if e.enabled else 'off'}.", None
        )

    @process_event.register
    def _(self, e: JobRun.Deleted, tracking: Tracking) -> None:
        self.view.execute("DELETE FROM {job_runs} WHERE id = %s", (e.originator_id,))
        self.view.execute("DELETE FROM {job_run_events} WHERE run_id = %s", (e.originator_id,))


def _event_type(e: Any) -> str:
    """`RetryScheduled` -> `retry_scheduled`."""
    name = type(e).__name__
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


class JobVersionsFromView:
    """`JobVersions` read from the jobs view: a run's snapshot of the version it uses.

    `jobs` is the jobs context's view (`runnable_version`, one read); only published
    versions of live jobs are runnable.
    """

    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs

    def snapshot(
        self, organization_id: str, job_id: str, version: int | None = None
    ) -> JobVersionSnapshot | None:
        row = self.jobs.runnable_version(organization_id, job_id, version)
        if row is None:
            return None
        config = row.get("config") or {}
        sql = config.get("sql") or {}
        lakesail = config.get("lakesail") or {}
        depends_on = [
            d["jobKey"] if isinstance(d, dict) else str(d) for d in (row.get("depends_on") or [])
        ]
        return JobVersionSnapshot(
            job_id=job_id,
            version=int(row["version"]),
            cluster_id=row.get("cluster_id"),
            job_key=row["job_key"],
            sql_source=sql.get("source") or None,
            sql_query_id=sql.get("queryId") or None,
            python=config.get("python") or None,
            container=config.get("container") or None,
            timeout_seconds=row.get("timeout_seconds"),
            max_retries=int(lakesail.get("maxRetries") or 0),
            concurrency_policy=row.get("concurrency_policy") or "allow",
            max_concurrent_runs=row.get("max_concurrent_runs"),
            depends_on=tuple(depends_on),
            team_ids=tuple(row["team_ids"]),
        )
