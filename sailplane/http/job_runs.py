"""`/api/v1/workloads/jobs/{job}/runs...` and `/me/jobs/runs`: job runs.

Reading a run needs `CanViewJobs`; creating, releasing, retrying and cancelling one need
`CanRunJobs`, deleting one `CanManageJobs`, each from an organization role or from a
team role in a team the job is granted to. Runs are listed newest first with marker
pagination. Logs, events and the live stream are this project's additions
(docs/api.md, "Job runs").
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Annotated, Any, Literal

import anyio
import msgspec
from litestar import Controller, Request
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage

from sailplane.contexts import RunsContext
from sailplane.domain.errors import InvalidRequestError, InvalidValueError, NotFoundError
from sailplane.domain.runs import TERMINAL
from sailplane.http.auth import (
    Caller,
    Principal,
    RunsDep,
    can_access,
    reachable_team_ids,
    require_access,
    requires,
)
from sailplane.http.errors import or_404
from sailplane.http.pagination import Limit, Marker, MarkerListing
from sailplane.http.routes import delete, get, post
from sailplane.http.run_options import queue_options, run_create_body
from sailplane.http.shapes import JobRunEvent, JobRunLogLine, Shape, from_row, iso

VIEW, RUN, MANAGE = "CanViewJobs", "CanRunJobs", "CanManageJobs"
STREAM_POLL_SECONDS = 0.25


JobRunCreateRequest = run_create_body(
    "JobRunCreateRequest",
    [
        ("job_id", str | None, None),
        ("job_version", Annotated[int, msgspec.Meta(ge=1)] | None, None),
        ("hold", bool, False),
        ("resource_cleanup_mode", Literal["always", "never", "on_success"], "always"),
    ],
    rename="camel",
    doc="`jobId`, `jobVersion`, `hold`, `resourceCleanupMode`, and the queue options "
    "(docs/runs-v1.md) in camelCase.",
)


class JobRunRetryRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    hold: bool = False


class JobRunResults(Shape):
    output_path: str | None = None


class JobRun(Shape):
    id: str
    job_id: str
    job_version: int
    status: str
    status_reason: str | None
    status_message: str | None
    hold: bool
    resource_cleanup_mode: str
    dispatched_at: str | None
    finished_at: str | None
    runner_started_at: str | None
    runner_completed_at: str | None
    runner_execution_time_us: int | None
    trigger: str
    scheduled_for: str | None  # the slot of a run the scheduler made; null otherwise
    attempt: int
    created_at: str | None
    created_by: str
    updated_at: str | None
    results: JobRunResults | None
    updated_by: str
    cleaned_at: str | None


class JobRunListing(Shape):
    """`{total, items, marker}`: runs newest first; `marker` continues (null at the end)."""

    total: int
    items: list[JobRun]
    marker: str | None


# What `run_shape` computes rather than reads.
COMPUTED = {"runner_execution_time_us", "results", "cleaned_at"}
# What a run's answer is made of, and the teams its access is checked against: a describe or
# a list does not read (nor decode) the run's spec, options, payload, tags and metadata.
RUN_COLUMNS = ", ".join([*(f for f in JobRun.__struct_fields__ if f not in COMPUTED), "team_ids"])


def run_shape(row: dict[str, Any]) -> JobRun:
    started, completed = row["runner_started_at"], row["runner_completed_at"]
    took = (
        int((completed - started).total_seconds() * 1_000_000)
        if started is not None and completed is not None and completed >= started
        else None
    )
    return from_row(
        JobRun,
        row,
        status_reason=None if row["status"] == "running" else row["status_reason"],
        runner_execution_time_us=took,
        results=None,
        cleaned_at=None,
    )


def event_shape(row: dict[str, Any]) -> JobRunEvent:
    return from_row(JobRunEvent, row, cause=row["actor"], time=iso(row["at"]))


def log_shape(row: dict[str, Any]) -> JobRunLogLine:
    return JobRunLogLine(
        seq=row["seq"], attempt=row["attempt"], time=iso(row["at"]), line=row["line"]
    )


# --- access ---------------------------------------------------------------------------------


def _job_team_ids(runs: RunsContext, principal: Principal, job_id: str) -> list[str]:
    """The teams the job is granted to (404 when the organization has no such job)."""
    snapshot = runs.commands.job_versions.snapshot(principal.organization_id, job_id)
    return list(or_404(snapshot, "job", job_id).team_ids)


def _visible_run(
    runs: RunsContext, principal: Principal, job_id: str, run_id: str
) -> dict[str, Any]:
    row = runs.view.run(principal.organization_id, job_id, run_id, columns=RUN_COLUMNS)
    if row is None or not can_access(principal, VIEW, granted_team_ids=row["team_ids"]):
        raise NotFoundError.of("job_run", run_id)
    return row


def _changeable_run(
    runs: RunsContext, principal: Principal, job_id: str, run_id: str, permission: str
) -> dict[str, Any]:
    row = _visible_run(runs, principal, job_id, run_id)
    require_access(principal, permission, granted_team_ids=row["team_ids"])
    return row


def _act_on_run(
    runs: RunsContext, principal: Principal, job_id: str, run_id: str, use_case: Callable[..., int]
) -> JobRun:
    """A `CanRunJobs` action on a run: check, call the use case, read the run back."""
    _changeable_run(runs, principal, job_id, run_id, RUN)
    runs.wait_for_views(use_case(job_id, run_id, by=principal.actor))
    return run_shape(_visible_run(runs, principal, job_id, run_id))


def _after(marker: str | None) -> int:
    if marker is None:
        return 0
    try:
        return max(int(marker), 0)
    except ValueError:
        raise InvalidRequestError(
            "The marker is not one this list returned.", code="invalid_marker"
        ) from None


def _listing(page: tuple[int, list[dict[str, Any]], str | None]) -> JobRunListing:
    total, rows, marker = page
    return JobRunListing(total=total, items=[run_shape(r) for r in rows], marker=marker)


class JobRunController(Controller):
    path = "/workloads/jobs/{job:str}/runs"
    tags = ["job-runs"]

    @get("/", operation_id="ListJobRuns", guards=[requires(VIEW)])
    def list_runs(
        self,
        runs: RunsDep,
        principal: Caller,
        job: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> JobRunListing:
        """List a job's runs, newest first."""
        teams = _job_team_ids(runs, principal, job)
        if not can_access(principal, VIEW, granted_team_ids=teams):
            raise NotFoundError.of("job", job)
        return _listing(
            runs.view.runs(
                principal.organization_id,
                job_id=job,
                limit=limit,
                marker=marker,
                columns=RUN_COLUMNS,
            )
        )

    @post("/", operation_id="CreateJobRun", guards=[requires(VIEW)])
    def create_run(
        self,
        runs: RunsDep,
        principal: Caller,
        job: FromPath[str],
        data: JSONBody[JobRunCreateRequest | None] = None,
    ) -> JobRun:
        """Run the job's active version (or `jobVersion`): `ready`, or `pending` when held."""
        data = data or JobRunCreateRequest()
        if data.job_id is not None and data.job_id != job:
            raise InvalidValueError(
                "jobId must be the job of the path.", field="jobId", code="job_id_mismatch"
            )
        # One read of the version to run; when there is none, the create below reads again
        # to say why (after the access check, so a hidden job stays a 404).
        spec = runs.commands.job_versions.snapshot(principal.organization_id, job, data.job_version)
        teams = list(spec.team_ids) if spec else _job_team_ids(runs, principal, job)
        if not can_access(principal, VIEW, granted_team_ids=teams):
            raise NotFoundError.of("job", job)
        require_access(principal, RUN, granted_team_ids=teams)
        request = queue_options(job, data)
        run_id, position = runs.commands.create_run(
            job,
            options=request.options,
            not_before=request.not_before,
            expires_at=request.expires_at,
            spec=spec,
            by=principal.actor,
            trigger="manual" if principal.kind == "member" else "api",
            hold=data.hold,
            job_version=data.job_version,
            resource_cleanup_mode=data.resource_cleanup_mode,
        )
        runs.wait_for_created(position)
        return run_shape(_visible_run(runs, principal, job, run_id))

    @get("/{jobRun:str}", operation_id="DescribeJobRun", guards=[requires(VIEW)])
    def describe_run(
        self, runs: RunsDep, principal: Caller, job: FromPath[str], jobRun: FromPath[str]
    ) -> JobRun:
        """Describe a run: status, why it is not running, timing, attempt."""
        return run_shape(_visible_run(runs, principal, job, jobRun))

    @delete("/{jobRun:str}", operation_id="DeleteJobRun", guards=[requires(VIEW)])
    def delete_run(
        self, runs: RunsDep, principal: Caller, job: FromPath[str], jobRun: FromPath[str]
    ) -> None:
        """Delete a finished run (409 while it is pending, ready, dispatched or running)."""
        _changeable_run(runs, principal, job, jobRun, MANAGE)
        runs.wait_for_views(runs.commands.delete_run(job, jobRun, by=principal.actor))
        runs.forget_outputs(jobRun)

    @post(
        "/{jobRun:str}/ready",
        operation_id="ReleaseJobRun",
        status_code=200,
        guards=[requires(VIEW)],
    )
    def release_run(
        self, runs: RunsDep, principal: Caller, job: FromPath[str], jobRun: FromPath[str]
    ) -> JobRun:
        """Release a pending run: it becomes ready (409 unless pending)."""
        return _act_on_run(runs, principal, job, jobRun, runs.commands.release_run)

    @post(
        "/{jobRun:str}/retry",
        operation_id="RetryJobRun",
        status_code=200,
        guards=[requires(VIEW)],
    )
    def retry_run(
        self,
        runs: RunsDep,
        principal: Caller,
        job: FromPath[str],
        jobRun: FromPath[str],
        data: JSONBody[JobRunRetryRequest | None] = None,
    ) -> JobRun:
        """Run a failed, timed-out, cancelled or dead-lettered run again under its id."""
        hold = data.hold if data is not None else False
        return _act_on_run(
            runs, principal, job, jobRun, partial(runs.commands.retry_run, hold=hold)
        )

    @post(
        "/{jobRun:str}/cancel",
        operation_id="CancelJobRun",
        status_code=200,
        guards=[requires(VIEW)],
    )
    def cancel_run(
        self, runs: RunsDep, principal: Caller, job: FromPath[str], jobRun: FromPath[str]
    ) -> JobRun:
        """Cancel an unfinished run; its running work is stopped (409 when finished)."""
        return _act_on_run(runs, principal, job, jobRun, runs.commands.cancel_run)

    @get(
        "/{jobRun:str}/logs",
        operation_id="ListJobRunLogs",
        guards=[requires(VIEW)],
    )
    def list_logs(
        self,
        runs: RunsDep,
        principal: Caller,
        job: FromPath[str],
        jobRun: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> MarkerListing[JobRunLogLine]:
        """The run's log lines in order; pass `marker` back for the lines after these."""
        _visible_run(runs, principal, job, jobRun)
        rows = runs.logs.page(jobRun, after=_after(marker), limit=limit)
        return MarkerListing(
            items=[log_shape(r) for r in rows], marker=str(rows[-1]["seq"]) if rows else marker
        )

    @get(
        "/{jobRun:str}/events",
        operation_id="ListJobRunEvents",
        guards=[requires(VIEW)],
    )
    def list_events(
        self,
        runs: RunsDep,
        principal: Caller,
        job: FromPath[str],
        jobRun: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> MarkerListing[JobRunEvent]:
        """Every transition of the run with its time, cause and reason code."""
        _visible_run(runs, principal, job, jobRun)
        rows = runs.view.events(
            principal.organization_id, jobRun, after=_after(marker), limit=limit
        )
        return MarkerListing(
            items=[event_shape(r) for r in rows],
            marker=str(rows[-1]["version"]) if len(rows) == limit and rows else None,
        )

    @get("/{jobRun:str}/stream", operation_id="StreamJobRun", guards=[requires(VIEW)])
    async def stream(
        self,
        runs: RunsDep,
        principal: Caller,
        request: Request[Any, Any, Any],
        job: FromPath[str],
        jobRun: FromPath[str],
    ) -> ServerSentEvent:
        """Server-Sent Events of the run's transitions (`status`) and log lines (`log`),
        resumable with `Last-Event-ID`; the stream ends once the run has finished."""
        await anyio.to_thread.run_sync(_visible_run, runs, principal, job, jobRun)
        cursor = _parse_cursor(request.headers.get("last-event-id"))
        return ServerSentEvent(_follow(runs, principal.organization_id, job, jobRun, cursor))


def _parse_cursor(value: str | None) -> tuple[int, int]:
    """`Last-Event-ID` is `<event version>.<log seq>`: what the client has seen."""
    if not value:
        return 0, 0
    events, _, logs = value.partition(".")
    try:
        return max(int(events), 0), max(int(logs or 0), 0)
    except ValueError:
        return 0, 0


def _log_message(row: dict[str, Any], seen_event: int) -> ServerSentEventMessage:
    return ServerSentEventMessage(
        event="log",
        id=f"{seen_event}.{row['seq']}",
        data=msgspec.json.encode(log_shape(row)).decode(),
    )


async def _follow(
    runs: RunsContext, organization_id: str, job_id: str, run_id: str, cursor: tuple[int, int]
) -> AsyncIterator[ServerSentEventMessage]:
    seen_event, seen_log = cursor
    while True:
        events = await anyio.to_thread.run_sync(
            partial(runs.view.events, organization_id, run_id, after=seen_event, limit=100)
        )
        lines = await anyio.to_thread.run_sync(
            partial(runs.logs.page, run_id, after=seen_log, limit=500)
        )
        # In the order things happened: a line the work wrote before the run finished comes
        # before the `completed` event, though both were read in the same pass. Each kind
        # keeps its own order, so the `id` cursor resumes either one exactly.
        happened = heapq.merge(
            [(row["at"], 0, row) for row in lines],
            [(row["at"], 1, row) for row in events],
            key=lambda item: (item[0], item[1]),
        )
        for _, is_event, row in happened:
            if is_event:
                seen_event = row["version"]
                yield ServerSentEventMessage(
                    event="status",
                    id=f"{seen_event}.{seen_log}",
                    data=msgspec.json.encode(event_shape(row)).decode(),
                )
            else:
                seen_log = row["seq"]
                yield _log_message(row, seen_event)
        if not events and not lines:
            run = await anyio.to_thread.run_sync(
                lambda: runs.view.run(organization_id, job_id, run_id)
            )
            if run is None or (run["status"] in TERMINAL and run["version"] <= seen_event):
                # Lines written just before the end are read once more before closing.
                tail = await anyio.to_thread.run_sync(
                    partial(runs.logs.page, run_id, after=seen_log, limit=500)
                )
                for row in tail:
                    yield _log_message(row, seen_event)
                return
            await asyncio.sleep(STREAM_POLL_SECONDS)


class JobRunListsController(Controller):
    path = "/me/jobs/runs"
    tags = ["job-runs"]

    @get("/", operation_id="ListMyJobRuns", guards=[requires(VIEW)])
    def list_my_runs(
        self, runs: RunsDep, principal: Caller, limit: Limit = 100, marker: Marker = None
    ) -> JobRunListing:
        """List the runs of every job the caller can view, newest first."""
        return _listing(
            runs.view.runs(
                principal.organization_id,
                limit=limit,
                marker=marker,
                team_ids=reachable_team_ids(principal, VIEW),
                columns=RUN_COLUMNS,
            )
        )
