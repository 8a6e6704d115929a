"""`/v1/runs...`: the seed-003 run queue, a second dialect over the same runs.

The runs, use cases and views are the seed-004 job runs' (`http/job_runs.py`); this
module translates paths, snake_case fields and statuses (`domain.runs.queue_status`).
`project_id` is a team of the caller's organization: a run belongs to project P when its
job is granted to team P. Reading needs `CanViewJobs`, acting on a run `CanRunJobs` (per
run in bulk actions), both through an organization role or a team role in a team the
job is granted to; a run the caller cannot view is a 404. Errors are
`{"error", "request_id"}` (the one error table, rendered by `_queue_error`). docs/runs-v1.md
has the rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

import anyio
import msgspec
from litestar import Controller, Request, Response, Router
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from sailplane.contexts import IdentityContext, RunsContext
from sailplane.domain.errors import (
    DomainError,
    InvalidRequestError,
    NotFoundError,
)
from sailplane.domain.ids import new_id
from sailplane.domain.runs import (
    FAILED,
    QUEUE_STATUSES,
    QUEUE_TRIGGERS,
    RETRY_BACKOFF,
    TERMINAL,
    TIMEOUT,
    queue_status,
)
from sailplane.http.auth import (
    Caller,
    IdentityDep,
    Principal,
    RunsDep,
    WorkloadsDep,
    can_access,
    reachable_team_ids,
    require_access,
    requires,
)
from sailplane.http.errors import exception_handlers, or_404
from sailplane.http.routes import delete, get, post
from sailplane.http.run_options import (
    Positive,
    Priority,
    aware_utc,
    queue_options,
    run_create_body,
)
from sailplane.http.shapes import iso
from sailplane.observability import request_id
from sailplane.projections.runs import RunFilter

RUN_QUEUE_PREFIX = "/v1/"
VIEW, RUN = "CanViewJobs", "CanRunJobs"
MAX_BULK = 1000
MAX_LIMIT = 500
STREAM_POLL_SECONDS = 0.25
UNFINISHED = ("delayed", "queued", "dequeued", "executing", "waiting")
# Reasons and statuses whose transition events read as errors in `/events`.
ERROR_STATUSES = frozenset({FAILED, TIMEOUT, "dead_letter"})

RunId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ProjectId = Annotated[str, QueryParameter(description="A team id of the caller's organization.")]

RunCreate = run_create_body(
    "RunCreate",
    [("job_id", Annotated[str, msgspec.Meta(min_length=1, max_length=64)], msgspec.NODEFAULT)],
    rename=None,
    doc="A run of `job_id`'s active version with the queue options (docs/runs-v1.md).",
)


class RunBatchCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    runs: Annotated[list[RunCreate], msgspec.Meta(min_length=1, max_length=MAX_BULK)]  # type: ignore[valid-type]


class RunIds(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    run_ids: Annotated[list[RunId], msgspec.Meta(min_length=1, max_length=MAX_BULK)]


class RunFilters(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The list filters as a body (bulk-cancel-all); `limit` caps how many runs it covers."""

    status: list[Literal[QUEUE_STATUSES]] | None = None  # type: ignore[valid-type]
    since: datetime | None = None
    triggered_by: list[str] | None = None
    batch_id: str | None = None
    job_id: str | None = None
    payload: dict[str, Any] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_BULK)] = MAX_BULK


class DlqReplayFilters(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    run_ids: Annotated[list[RunId], msgspec.Meta(max_length=MAX_BULK)] | None = None
    job_id: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_BULK)] = 100


class Reschedule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    scheduled_at: datetime


class Restart(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Values that replace the run's own for the new attempt and after."""

    priority: Priority | None = None
    payload: dict[str, Any] | None = None
    timeout_secs_override: Positive | None = None
    max_attempts_override: Positive | None = None
    debug_mode: bool | None = None


# --- shapes -------------------------------------------------------------------------------


class ExecutionTrace(msgspec.Struct, kw_only=True):
    queue_wait_ms: int | None
    dequeue_ms: int | None
    connect_ms: int | None
    ttfb_ms: int | None
    transfer_ms: int | None
    total_ms: int | None
    dispatch_ms: int | None


class UsageTotals(msgspec.Struct, kw_only=True):
    """The sums of the model usage a run reported (`sailplane.runtime.usage`)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_microusd: int


class QueueRun(msgspec.Struct, kw_only=True):
    """The seed-003 run: every field of the seed's example; null when not known."""

    id: str
    job_id: str
    project_id: str | None
    status: str
    attempt: int
    payload: dict[str, Any] | None
    result: dict[str, Any] | None
    metadata: dict[str, str]
    error: str | None
    triggered_by: str
    scheduled_at: str | None
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None
    next_retry_at: str | None
    expires_at: str | None
    parent_run_id: str | None
    priority: int
    idempotency_key: str | None
    job_version: int
    workflow_step_run_id: str | None
    max_attempts_override: int | None
    timeout_secs_override: int | None
    retry_backoff: str | None
    retry_initial_delay_secs: float | None
    retry_max_delay_secs: float | None
    execution_trace: ExecutionTrace
    debug_mode: bool
    continuation_of: str | None
    lineage_depth: int
    tags: dict[str, str]
    job_version_id: str | None
    created_by: str
    batch_id: str | None
    concurrency_key: str | None
    created_at: str | None
    # Beyond the seed's 36 fields: the usage totals, on the run's last event once it has
    # finished, the sums of its usage rows so far before (null when it reported none).
    usage: UsageTotals | None = None


class RunBatch(msgspec.Struct, kw_only=True):
    batch_id: str
    runs: list[QueueRun]


class BulkItem(msgspec.Struct, kw_only=True):
    id: str
    status: str
    error: str | None


class BulkResult(msgspec.Struct, kw_only=True):
    results: list[BulkItem]
    total: int
    canceled: int
    failed: int


class DlqReplayResult(msgspec.Struct, kw_only=True):
    replayed: list[QueueRun]
    count: int


class KeyReset(msgspec.Struct, kw_only=True):
    status: str
    run_id: str


class RunEvent(msgspec.Struct, kw_only=True):
    id: str
    run_id: str
    type: str
    level: str
    message: str | None
    data: dict[str, Any]
    created_at: str | None


class Dependency(msgspec.Struct, kw_only=True):
    id: str
    job_id: str
    depends_on_job_id: str | None
    condition: str
    created_at: str | None


class DependencyStatus(msgspec.Struct, kw_only=True):
    run_id: str
    job_id: str
    status: str
    dependencies: list[Dependency]
    dependencies_satisfied: bool


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None or end < start:
        return None
    return int((end - start).total_seconds() * 1000)


def _trace_time(trace: dict[str, Any], name: str) -> datetime | None:
    value = trace.get(name)
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def execution_trace(row: dict[str, Any]) -> ExecutionTrace:
    """The current attempt's trace (docs/runs-v1.md): the run's own times, and what the
    executor measured (`trace`, once the attempt ended)."""
    measured = row["trace"] or {}
    started = _trace_time(measured, "started_at")
    first_output = _trace_time(measured, "first_output_at")
    return ExecutionTrace(
        queue_wait_ms=_ms(row["ready_at"], row["dispatched_at"]),
        dequeue_ms=_ms(row["dispatched_at"], _trace_time(measured, "submitted_at")),
        connect_ms=measured.get("connect_ms"),
        ttfb_ms=_ms(started, first_output),
        transfer_ms=_ms(first_output, _trace_time(measured, "last_output_at")),
        total_ms=_ms(row["ready_at"], row["runner_completed_at"]),
        dispatch_ms=_ms(row["dispatched_at"], row["runner_started_at"]),
    )


def _now(runs: RunsContext) -> datetime:
    return runs.clock()


def run_shape(row: dict[str, Any], now: datetime, project_id: str | None = None) -> QueueRun:
    options = row["options"]
    status = queue_status(row["status"], row["status_reason"], row["not_before"], now)
    finished = row["status"] in TERMINAL
    return QueueRun(
        id=row["id"],
        job_id=row["job_id"],
        project_id=project_id or (row["team_ids"][0] if row["team_ids"] else None),
        status=status,
        attempt=row["attempt"],
        payload=row["payload"],
        result=row["result"],
        metadata=row["metadata"],
        error=row["status_message"] if finished and row["status"] != "completed" else None,
        triggered_by=QUEUE_TRIGGERS.get(row["trigger"], row["trigger"]),
        scheduled_at=iso(row["scheduled_at"] or row["scheduled_for"]),
        started_at=iso(row["runner_started_at"]),
        finished_at=iso(row["finished_at"]),
        heartbeat_at=None,
        next_retry_at=iso(row["not_before"]) if row["status_reason"] == RETRY_BACKOFF else None,
        expires_at=iso(row["expires_at"]),
        parent_run_id=row["parent_run_id"],
        priority=row["priority"],
        idempotency_key=row["idempotency_key"] if row["idempotency_key_held"] else None,
        job_version=row["job_version"],
        workflow_step_run_id=None,
        max_attempts_override=options.get("max_attempts_override"),
        timeout_secs_override=options.get("timeout_secs_override"),
        retry_backoff=options.get("retry_backoff"),
        retry_initial_delay_secs=options.get("retry_initial_delay_secs"),
        retry_max_delay_secs=options.get("retry_max_delay_secs"),
        execution_trace=execution_trace(row),
        debug_mode=bool(options.get("debug_mode")),
        continuation_of=row["continuation_of"],
        lineage_depth=row["lineage_depth"],
        tags=row["tags"],
        job_version_id=None,
        created_by=row["created_by"],
        batch_id=row["batch_id"],
        concurrency_key=row["concurrency_key"],
        created_at=iso(row["created_at"]),
        usage=None if row["usage"] is None else UsageTotals(**row["usage"]),
    )


def event_shape(row: dict[str, Any]) -> RunEvent:
    return RunEvent(
        id=str(row["version"]),
        run_id=row["run_id"],
        type=row["type"],
        level="error" if row["status"] in ERROR_STATUSES else "info",
        message=row["message"],
        data={
            "reason": row["reason"],
            "attempt": row["attempt"],
            "cause": row["actor"],
        },
        created_at=iso(row["at"]),
    )


# --- access ---------------------------------------------------------------------------------


def _project(identity: IdentityContext, principal: Principal, project_id: str) -> list[str]:
    """The team ids a project names (404 unless a team the caller can view jobs of)."""
    team = identity.teams.team(principal.organization_id, project_id)
    if team is None or not can_access(principal, VIEW, granted_team_ids=[project_id]):
        raise NotFoundError.of("project", project_id)
    return [project_id]


def _acting_project(identity: IdentityContext, principal: Principal, project_id: str) -> list[str]:
    """A project whose runs the caller acts on in bulk: it needs `CanRunJobs` there."""
    teams = _project(identity, principal, project_id)
    require_access(principal, RUN, granted_team_ids=teams)
    return teams


def _require_some_run_access(principal: Principal) -> None:
    """A bulk action by run ids needs `CanRunJobs` somewhere (each run is checked too)."""
    if reachable_team_ids(principal, RUN) == []:
        require_access(principal, RUN, granted_team_ids=())  # the one 403


def _visible(runs: RunsContext, principal: Principal, run_id: str) -> dict[str, Any]:
    row = runs.view.run_by_id(principal.organization_id, run_id)
    if row is None or not can_access(principal, VIEW, granted_team_ids=row["team_ids"]):
        raise NotFoundError.of("run", run_id)
    return row


def _shown(runs: RunsContext, principal: Principal, run_id: str) -> QueueRun:
    (shown,) = run_shapes(runs, [_visible(runs, principal, run_id)])
    return shown


def run_shapes(
    runs: RunsContext, rows: list[dict[str, Any]], project_id: str | None = None
) -> list[QueueRun]:
    """Runs in their seed-003 shape, with what the run runtime knows and the runs view does
    not: the last heartbeat each one's work sent, and an unfinished run's usage totals so
    far (a finished run's are on its last event). One read of each for all the rows."""
    now = _now(runs)
    ids = [r["id"] for r in rows]
    beats = runs.telemetry.heartbeats(ids) if ids else {}
    running = [r["id"] for r in rows if r["usage"] is None and r["finished_at"] is None]
    so_far = runs.telemetry.usage_totals(running) if running else {}
    shown = []
    for row in rows:
        run = run_shape(row, now, project_id)
        if (beat := beats.get(row["id"])) is not None:
            run = msgspec.structs.replace(run, heartbeat_at=iso(beat))
        if (usage := so_far.get(row["id"])) is not None:
            run = msgspec.structs.replace(run, usage=UsageTotals(**usage))
        shown.append(run)
    return shown


def _act(
    runs: RunsContext, principal: Principal, run_id: str, use_case: Callable[..., int]
) -> QueueRun:
    """A `CanRunJobs` action on one run: check, call the use case, read the run back."""
    row = _visible(runs, principal, run_id)
    require_access(principal, RUN, granted_team_ids=row["team_ids"])
    runs.wait_for_views(use_case(row["job_id"], run_id, by=principal.actor))
    return _shown(runs, principal, run_id)


def _replay(
    runs: RunsContext,
    principal: Principal,
    run_id: str,
    *,
    dead_letter_only: bool,
    batch_id: str | None = None,
) -> QueueRun:
    row = _visible(runs, principal, run_id)
    require_access(principal, RUN, granted_team_ids=row["team_ids"])
    new_run_id, position = runs.commands.replay_run(
        row["job_id"],
        run_id,
        by=principal.actor,
        dead_letter_only=dead_letter_only,
        batch_id=batch_id,
    )
    runs.wait_for_views(position)
    return _shown(runs, principal, new_run_id)


def _cancel_each(runs: RunsContext, principal: Principal, run_ids: list[str]) -> BulkResult:
    """Cancel each run on its own: one that is missing, hidden or finished fails alone."""
    results = []
    for run_id in run_ids:
        try:
            shown = _act(runs, principal, run_id, runs.commands.cancel_run)
            results.append(BulkItem(id=run_id, status=shown.status, error=None))
        except DomainError as error:
            results.append(BulkItem(id=run_id, status="error", error=error.message))
    canceled = sum(1 for r in results if r.error is None)
    return BulkResult(
        results=results, total=len(results), canceled=canceled, failed=len(results) - canceled
    )


def _triggers(names: list[str] | None) -> tuple[str, ...] | None:
    """The internal triggers that show as the given seed-003 `triggered_by` values: () when
    none is asked for, None when those asked for match no run (`spawn`, `event`: no run is
    made that way yet)."""
    wanted = set(names or ())
    unknown = wanted - set(QUEUE_TRIGGERS.values()) - {"spawn", "event"}
    if unknown:
        raise InvalidRequestError(
            f"Unknown triggered_by {', '.join(sorted(unknown))}.", code="invalid_triggered_by"
        )
    internal = tuple(k for k, v in QUEUE_TRIGGERS.items() if v in wanted)
    return None if wanted and not internal else internal


def _statuses(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    names = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = [s for s in names if s not in QUEUE_STATUSES]
    if unknown:
        raise InvalidRequestError(
            f"Unknown status {', '.join(unknown)}; one of {', '.join(QUEUE_STATUSES)}.",
            code="invalid_status",
        )
    return names


def _payload(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        decoded = msgspec.json.decode(value)
    except msgspec.DecodeError:
        decoded = None
    if not isinstance(decoded, dict):
        raise InvalidRequestError("payload must be a JSON object.", code="invalid_payload")
    return decoded


def _since(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class RunQueueError(msgspec.Struct, kw_only=True):
    """The seed-003 error body: the message and the request's id (`X-Request-Id`)."""

    error: str
    request_id: str | None


def _queue_error(
    request: Request[Any, Any, Any], message: str, code: str, extra: dict[str, Any]
) -> RunQueueError:
    return RunQueueError(error=message, request_id=request_id.get())


class RunQueueController(Controller):
    path = "/runs"
    tags = ["runs-v1"]

    @post("/", operation_id="CreateQueueRun", guards=[requires(VIEW)])
    def create_run(
        self,
        runs: RunsDep,
        principal: Caller,
        data: JSONBody[RunCreate],  # type: ignore[valid-type]
    ) -> Response[QueueRun]:
        """Create a run (201), or answer the job's run holding the idempotency key (200)."""
        job_id = data.job_id
        spec = runs.commands.job_versions.snapshot(principal.organization_id, job_id)
        teams = list(or_404(spec, "job", job_id).team_ids)
        if not can_access(principal, VIEW, granted_team_ids=teams):
            raise NotFoundError.of("job", job_id)
        require_access(principal, RUN, granted_team_ids=teams)
        request = queue_options(job_id, data)
        run_id, position = runs.commands.create_run(
            job_id,
            spec=spec,
            by=principal.actor,
            trigger="manual" if principal.kind == "member" else "api",
            options=request.options,
            not_before=request.not_before,
            expires_at=request.expires_at,
        )
        runs.wait_for_created(position)
        return Response(_shown(runs, principal, run_id), status_code=201 if position else 200)

    @post("/batch", operation_id="CreateQueueRunBatch", guards=[requires(VIEW)])
    def create_batch(
        self, runs: RunsDep, principal: Caller, data: JSONBody[RunBatchCreate]
    ) -> RunBatch:
        """Create up to 1,000 runs in one transaction under one batch_id."""
        for job_id in sorted({r.job_id for r in data.runs}):
            spec = runs.commands.job_versions.snapshot(principal.organization_id, job_id)
            teams = list(or_404(spec, "job", job_id).team_ids)
            if not can_access(principal, VIEW, granted_team_ids=teams):
                raise NotFoundError.of("job", job_id)
            require_access(principal, RUN, granted_team_ids=teams)
        batch_id = new_id()
        created, position = runs.commands.create_runs(
            [queue_options(r.job_id, r) for r in data.runs],
            batch_id=batch_id,
            trigger="manual" if principal.kind == "member" else "api",
            by=principal.actor,
        )
        runs.wait_for_created(position)
        # One read for the whole batch (a key may answer the same run twice).
        ids = [run_id for run_id, _ in created]
        shown = {
            s.id: s for s in run_shapes(runs, runs.view.runs_by_ids(principal.organization_id, ids))
        }
        return RunBatch(batch_id=batch_id, runs=[or_404(shown.get(i), "run", i) for i in ids])

    @get("/", operation_id="ListQueueRuns", guards=[requires(VIEW)])
    def list_runs(
        self,
        runs: RunsDep,
        identity: IdentityDep,
        principal: Caller,
        project_id: ProjectId,
        status: Annotated[
            str | None, QueryParameter(description="Seed-003 statuses, comma-separated.")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 50,
        since: Annotated[
            datetime | None, QueryParameter(description="Runs created at or after this time.")
        ] = None,
        triggered_by: Annotated[
            str | None, QueryParameter(description="manual, cron, spawn, workflow, retry, event.")
        ] = None,
        batch_id: Annotated[str | None, QueryParameter(description="Runs of this batch.")] = None,
        job_id: Annotated[str | None, QueryParameter(description="Runs of this job.")] = None,
        payload: Annotated[
            str | None, QueryParameter(description="A JSON object the payload contains.")
        ] = None,
        before: Annotated[
            str | None, QueryParameter(description="A run id: the runs created before it.")
        ] = None,
    ) -> list[QueueRun]:
        """List a project's runs, newest first, by status, time, trigger, batch, job or payload."""
        teams = _project(identity, principal, project_id)
        triggers = _triggers(triggered_by.split(",") if triggered_by else None)
        if triggers is None:
            return []
        where = RunFilter(
            team_ids=teams,
            queue_statuses=_statuses(status),
            since=_since(since),
            triggers=triggers,
            batch_id=batch_id,
            job_id=job_id,
            payload=_payload(payload),
        )
        rows = runs.view.filtered_runs(
            principal.organization_id, where, now=_now(runs), limit=limit, before=before
        )
        return run_shapes(runs, rows, project_id)

    @get("/dlq", operation_id="ListDeadLetteredRuns", guards=[requires(VIEW)])
    def list_dlq(
        self,
        runs: RunsDep,
        identity: IdentityDep,
        principal: Caller,
        project_id: ProjectId,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 50,
        before: Annotated[
            str | None, QueryParameter(description="A run id: the runs created before it.")
        ] = None,
    ) -> list[QueueRun]:
        """The project's dead-lettered runs not replayed since, newest first."""
        where = RunFilter(
            team_ids=_project(identity, principal, project_id), dead_letter_queue=True
        )
        rows = runs.view.filtered_runs(
            principal.organization_id, where, now=_now(runs), limit=limit, before=before
        )
        return run_shapes(runs, rows, project_id)

    @post("/bulk-cancel", operation_id="BulkCancelRuns", status_code=200, guards=[requires(VIEW)])
    def bulk_cancel(self, runs: RunsDep, principal: Caller, data: JSONBody[RunIds]) -> BulkResult:
        """Cancel up to 1,000 runs by id; each succeeds or fails on its own."""
        _require_some_run_access(principal)
        return _cancel_each(runs, principal, list(dict.fromkeys(data.run_ids)))

    @post(
        "/bulk-cancel-all",
        operation_id="BulkCancelMatchingRuns",
        status_code=200,
        guards=[requires(VIEW)],
    )
    def bulk_cancel_all(
        self,
        runs: RunsDep,
        identity: IdentityDep,
        principal: Caller,
        project_id: ProjectId,
        data: JSONBody[RunFilters | None] = None,
    ) -> BulkResult:
        """Cancel the project's unfinished runs matching the filters (at most `limit`)."""
        filters = data or RunFilters()
        teams = _acting_project(identity, principal, project_id)
        statuses = tuple(s for s in (filters.status or UNFINISHED) if s in UNFINISHED)
        triggers = _triggers(filters.triggered_by)
        if triggers is None or not statuses:
            return _cancel_each(runs, principal, [])
        where = RunFilter(
            team_ids=teams,
            queue_statuses=statuses,
            since=_since(filters.since),
            triggers=triggers,
            batch_id=filters.batch_id,
            job_id=filters.job_id,
            payload=filters.payload,
        )
        rows = runs.view.filtered_runs(
            principal.organization_id, where, now=_now(runs), limit=filters.limit
        )
        return _cancel_each(runs, principal, [r["id"] for r in rows])

    @post("/bulk-replay", operation_id="BulkReplayRuns", status_code=201, guards=[requires(VIEW)])
    def bulk_replay(
        self, runs: RunsDep, principal: Caller, data: JSONBody[RunIds]
    ) -> list[QueueRun]:
        """Replay each run that may be replayed, under one batch_id; the others are left out."""
        _require_some_run_access(principal)
        batch_id = new_id()
        replayed = []
        for run_id in dict.fromkeys(data.run_ids):
            try:
                replayed.append(
                    _replay(runs, principal, run_id, dead_letter_only=False, batch_id=batch_id)
                )
            except DomainError:
                continue
        return replayed

    @post(
        "/bulk-dlq-replay",
        operation_id="BulkReplayDeadLetteredRuns",
        status_code=201,
        guards=[requires(VIEW)],
    )
    def bulk_dlq_replay(
        self,
        runs: RunsDep,
        identity: IdentityDep,
        principal: Caller,
        project_id: ProjectId,
        data: JSONBody[DlqReplayFilters | None] = None,
    ) -> DlqReplayResult:
        """Replay the project's dead-lettered runs (given ids, or by job, at most `limit`)."""
        filters = data or DlqReplayFilters()
        where = RunFilter(
            team_ids=_acting_project(identity, principal, project_id),
            job_id=filters.job_id,
            dead_letter_queue=True,
        )
        rows = runs.view.filtered_runs(
            principal.organization_id, where, now=_now(runs), limit=MAX_BULK
        )
        chosen = [r["id"] for r in rows]
        if filters.run_ids is not None:
            wanted = set(filters.run_ids)
            chosen = [i for i in chosen if i in wanted]
        batch_id = new_id()
        replayed = []
        for run_id in chosen[: filters.limit]:
            try:
                replayed.append(
                    _replay(runs, principal, run_id, dead_letter_only=True, batch_id=batch_id)
                )
            except DomainError:
                continue
        return DlqReplayResult(replayed=replayed, count=len(replayed))

    @get("/{run_id:str}", operation_id="DescribeQueueRun", guards=[requires(VIEW)])
    def describe_run(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> QueueRun:
        """Describe a run."""
        return _shown(runs, principal, run_id)

    @delete(
        "/{run_id:str}", operation_id="CancelQueueRun", status_code=200, guards=[requires(VIEW)]
    )
    def cancel_run(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> QueueRun:
        """Cancel an unfinished run; executing work is stopped (409 when finished)."""
        return _act(runs, principal, run_id, runs.commands.cancel_run)

    @post(
        "/{run_id:str}/replay", operation_id="ReplayRun", status_code=201, guards=[requires(VIEW)]
    )
    def replay(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> QueueRun:
        """A new run continuing a finished run that did not complete (409 otherwise)."""
        return _replay(runs, principal, run_id, dead_letter_only=False)

    @post(
        "/{run_id:str}/dlq-replay",
        operation_id="ReplayDeadLetteredRun",
        status_code=201,
        guards=[requires(VIEW)],
    )
    def dlq_replay(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> QueueRun:
        """Replay a dead-lettered run, which leaves the dead-letter queue (409 otherwise)."""
        return _replay(runs, principal, run_id, dead_letter_only=True)

    @get("/{run_id:str}/lineage", operation_id="ListRunLineage", guards=[requires(VIEW)])
    def lineage(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> list[QueueRun]:
        """The replay chain through the run, from its first ancestor to its newest descendant."""
        _visible(runs, principal, run_id)
        chain = runs.view.lineage(principal.organization_id, run_id)
        return run_shapes(
            runs, [r for r in chain if can_access(principal, VIEW, granted_team_ids=r["team_ids"])]
        )

    @post(
        "/{run_id:str}/restart", operation_id="RestartRun", status_code=200, guards=[requires(VIEW)]
    )
    def restart(
        self,
        runs: RunsDep,
        principal: Caller,
        run_id: FromPath[str],
        data: JSONBody[Restart | None] = None,
    ) -> QueueRun:
        """A new attempt of the run from any unfinished or failed state, with overrides."""
        body = data or Restart()
        return _act(
            runs,
            principal,
            run_id,
            partial(
                runs.commands.restart_run,
                priority=body.priority,
                payload=body.payload,
                timeout_secs_override=body.timeout_secs_override,
                max_attempts_override=body.max_attempts_override,
                debug_mode=body.debug_mode,
            ),
        )

    @post(
        "/{run_id:str}/reschedule",
        operation_id="RescheduleRun",
        status_code=200,
        guards=[requires(VIEW)],
    )
    def reschedule(
        self,
        runs: RunsDep,
        principal: Caller,
        run_id: FromPath[str],
        data: JSONBody[Reschedule],
    ) -> QueueRun:
        """Move the start time of a delayed, queued or waiting run (409 otherwise)."""
        at = aware_utc(data.scheduled_at, "scheduled_at")
        return _act(
            runs,
            principal,
            run_id,
            lambda job_id, rid, by: runs.commands.reschedule_run(job_id, rid, at, by=by),
        )

    @post("/{run_id:str}/pause", operation_id="PauseRun", status_code=200, guards=[requires(VIEW)])
    def pause(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> QueueRun:
        """Hold a delayed, queued or waiting run until resumed; an executing run whose work
        has checkpointed stops at its next checkpoint (409 `run_not_pausable` otherwise)."""
        checkpointed = runs.telemetry.last(run_id, "checkpoint") is not None
        return _act(
            runs, principal, run_id, partial(runs.commands.pause_run, checkpointed=checkpointed)
        )

    @post(
        "/{run_id:str}/resume", operation_id="ResumeRun", status_code=200, guards=[requires(VIEW)]
    )
    def resume(self, runs: RunsDep, principal: Caller, run_id: FromPath[str]) -> QueueRun:
        """A paused run returns to where it was (409 unless paused)."""
        return _act(runs, principal, run_id, runs.commands.resume_run)

    @delete(
        "/{run_id:str}/idempotency-key",
        operation_id="ResetRunIdempotencyKey",
        status_code=200,
        guards=[requires(VIEW)],
    )
    def reset_idempotency_key(
        self, runs: RunsDep, principal: Caller, run_id: FromPath[str]
    ) -> KeyReset:
        """Free the run's idempotency key: the next create with it makes a new run."""
        _act(runs, principal, run_id, runs.commands.reset_idempotency_key)
        return KeyReset(status="reset", run_id=run_id)

    @get("/{run_id:str}/events", operation_id="ListQueueRunEvents", guards=[requires(VIEW)])
    def list_events(
        self,
        runs: RunsDep,
        principal: Caller,
        run_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 100,
        after: Annotated[int, QueryParameter(ge=0, description="An event id: those after it.")] = 0,
    ) -> list[RunEvent]:
        """The run's events in order: every transition with its reason, attempt and cause."""
        _visible(runs, principal, run_id)
        rows = runs.view.events(principal.organization_id, run_id, after=after, limit=limit)
        return [event_shape(r) for r in rows]

    @get("/{run_id:str}/stream", operation_id="StreamQueueRun", guards=[requires(VIEW)])
    async def stream(
        self,
        runs: RunsDep,
        principal: Caller,
        request: Request[Any, Any, Any],
        run_id: FromPath[str],
    ) -> ServerSentEvent:
        """Server-Sent Events of the run's events, resumable with `Last-Event-ID` (an event
        id); the stream ends once the run has finished."""
        await anyio.to_thread.run_sync(_visible, runs, principal, run_id)
        seen = request.headers.get("last-event-id") or "0"
        after = int(seen) if seen.isdigit() else 0
        return ServerSentEvent(
            _events_until_finished(runs, principal.organization_id, run_id, after)
        )

    @get(
        "/{run_id:str}/dependency-status",
        operation_id="DescribeRunDependencies",
        guards=[requires(VIEW)],
    )
    def dependency_status(
        self, runs: RunsDep, workloads: WorkloadsDep, principal: Caller, run_id: FromPath[str]
    ) -> DependencyStatus:
        """The jobs the run's job depends on and whether each has completed since its last run."""
        row = _visible(runs, principal, run_id)
        org, keys = principal.organization_id, list(row["depends_on"])
        unmet = set(runs.view.unmet_dependencies(org, row["job_id"], keys) if keys else ())
        dependencies = []
        for key in keys:
            job = workloads.jobs.job_by_key(org, key)
            dependencies.append(
                Dependency(
                    id=f"{row['job_id']}:{key}",
                    job_id=row["job_id"],
                    depends_on_job_id=job["id"] if job else None,
                    condition="completed",
                    created_at=None,
                )
            )
        return DependencyStatus(
            run_id=run_id,
            job_id=row["job_id"],
            status=run_shape(row, _now(runs)).status,
            dependencies=dependencies,
            dependencies_satisfied=not unmet,
        )


async def _events_until_finished(
    runs: RunsContext, organization_id: str, run_id: str, after: int
) -> AsyncIterator[ServerSentEventMessage]:
    while True:
        rows = await anyio.to_thread.run_sync(
            partial(runs.view.events, organization_id, run_id, after=after, limit=100)
        )
        for row in rows:
            after = row["version"]
            yield ServerSentEventMessage(
                event=row["type"],
                id=str(after),
                data=msgspec.json.encode(event_shape(row)).decode(),
            )
        if rows:
            continue
        run = await anyio.to_thread.run_sync(partial(runs.view.run_by_id, organization_id, run_id))
        if run is None or (run["status"] in TERMINAL and run["version"] <= after):
            return
        await asyncio.sleep(STREAM_POLL_SECONDS)


def run_queue_router() -> Router:
    """The run queue at `/v1`, its errors in the seed's `{error, request_id}` body."""
    return Router(
        path=RUN_QUEUE_PREFIX.rstrip("/"),
        route_handlers=[RunQueueController],
        exception_handlers=exception_handlers(_queue_error),
        opt={"error_shape": RunQueueError},
    )
