"""`/workspaces/{workspace_id}/projects/{project_id}/jobs...`: container jobs (seed 002).

A third way to define and run the same jobs: a container job is a Sailplane job whose
work is `config.container` (image, command, env), granted to the project's team, with
versions, grants, schedule, runs and notifications as every job has. This module is only
the dialect: the seed's paths and snake_case shapes in the `{status, message, data}`
envelope, over the jobs and runs use cases and views the other dialects use.

`workspace_id` is the caller's organization and `project_id` a team of it (anything else
is 404). Reading needs `CanViewJobs`, creating, changing and deleting a job
`CanManageJobs`, triggering and cancelling a run `CanRunJobs`, each from an organization
role or a team role in the project's team. Decisions: docs/api.md, "Container jobs".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, TypeAlias, TypeVar

import msgspec
from litestar import Request, Router
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from msgspec import UNSET, UnsetType

from sailplane.commands.infra import local_ids
from sailplane.contexts import RunsContext
from sailplane.domain.errors import InvalidRequestError, NotFoundError
from sailplane.domain.runs import COMPLETED, RUNNING, TERMINAL
from sailplane.domain.schedule import next_fire
from sailplane.http.auth import (
    Caller,
    IdentityDep,
    InfraDep,
    RunsDep,
    WorkloadsDep,
    require_access,
    requires,
)
from sailplane.http.errors import exception_handlers
from sailplane.http.routes import delete, get, patch, post
from sailplane.http.shapes import iso
from sailplane.http.sharing import require_team

VIEW, RUN, MANAGE = "CanViewJobs", "CanRunJobs", "CanManageJobs"
WORK = "container"  # the kind of work (`config` key) a job of this API has
T = TypeVar("T")

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Command = list[str] | str
StringMap = dict[str, str]
LogLimit = Annotated[
    int, QueryParameter(ge=1, le=1000, description="Lines at most: the newest of the window.")
]
Step = Annotated[int | None, QueryParameter(ge=1, le=86_400, description="Bucket, in seconds.")]
Contains = Annotated[
    str | None,
    QueryParameter(name="filter", max_length=1000, description="Only lines holding this text."),
]
Duration = Annotated[
    str | None, QueryParameter(max_length=32, description="A duration back from now: 15m, 2h.")
]
Instant = Annotated[str | None, QueryParameter(max_length=64, description="An RFC 3339 time.")]
_DURATION = re.compile(r"(\d{1,9})([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_WINDOW = timedelta(days=400)
MAX_POINTS = 10_000


# --- shapes ---------------------------------------------------------------------------------


class Envelope(msgspec.Struct, Generic[T], kw_only=True):
    """Every answer: `status` is `success` (or `error`, with `data: null`)."""

    status: str = "success"
    message: str
    data: T


class ContainerJob(msgspec.Struct, kw_only=True):
    id: str
    project_id: str
    name: str
    image: str
    command: Command
    env: StringMap
    schedule: str | None
    schedule_timezone: str
    tags: StringMap
    cluster_id: str | None
    created_at: str | None
    updated_at: str | None
    next_run_at: str | None


class ContainerRun(msgspec.Struct, kw_only=True):
    id: str
    job_id: str
    status: str  # pending, running, succeeded, failed, cancelled
    trigger: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    error: str | None


class EnvelopeError(msgspec.Struct, kw_only=True):
    """Every error: why, in `message`."""

    status: str = "error"
    message: str
    data: None = None


class Deleted(msgspec.Struct, kw_only=True):
    id: str
    deleted: bool = True


class LogLine(msgspec.Struct, kw_only=True):
    timestamp: str | None
    run_id: str
    stream: str
    line: str


class MetricPoint(msgspec.Struct, kw_only=True):
    timestamp: str | None
    value: float


class Metric(msgspec.Struct, kw_only=True):
    name: str
    status: str  # success or error
    unit: str | None
    points: list[MetricPoint]
    error: str | None


class Metrics(msgspec.Struct, kw_only=True):
    metrics: list[Metric]


class RunCounts(msgspec.Struct, kw_only=True):
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


class Schedule(msgspec.Struct, kw_only=True):
    cron: str
    timezone: str
    next_run_at: str | None


class JobStatus(msgspec.Struct, kw_only=True):
    job_id: str
    last_run: ContainerRun | None
    counts: RunCounts
    schedule: Schedule | None


class ContainerJobCreateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    image: str
    command: Command
    env: StringMap = {}
    schedule: str | None = None
    schedule_timezone: str | None = None
    tags: StringMap = {}
    cluster_id: str | None = None


class ContainerJobUpdateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the fields sent change; `schedule: null` makes the job on demand."""

    name: Name | UnsetType = UNSET
    image: str | UnsetType = UNSET
    command: Command | UnsetType = UNSET
    env: StringMap | UnsetType = UNSET
    schedule: str | UnsetType | None = UNSET
    schedule_timezone: str | UnsetType | None = UNSET
    tags: StringMap | UnsetType = UNSET
    cluster_id: str | UnsetType = UNSET


# --- the seed's statuses and shapes ---------------------------------------------------------

_FINISHED_AS = {COMPLETED: "succeeded", "cancelled": "cancelled", "skipped": "cancelled"}


def run_status(status: str, started: bool) -> str:
    """The seed's five statuses of a run: a projection of the one run machine."""
    if status in TERMINAL:
        return _FINISHED_AS.get(status, "failed")  # failed, timeout, dead_letter
    if status == RUNNING or started:
        return "running"  # also between attempts once one has begun
    return "pending"  # pending, ready, dispatched


def run_shape(row: dict[str, Any]) -> ContainerRun:
    started = row["runner_started_at"] is not None or row["attempt"] > 1
    status = run_status(row["status"], started)
    return ContainerRun(
        id=row["id"],
        job_id=row["job_id"],
        status=status,
        trigger=row["trigger"],
        created_at=iso(row["created_at"]),
        started_at=iso(row["runner_started_at"]),
        finished_at=iso(row["finished_at"]),
        exit_code=row["exit_code"],
        error=row["status_message"] if status in ("failed", "cancelled") else None,
    )


def job_shape(row: dict[str, Any], project_id: str, now: datetime) -> ContainerJob:
    config = row["config"] or {}
    container = config.get(WORK) or {}
    cron, timezone = row["cron_expression"], row["cron_timezone"]
    return ContainerJob(
        id=row["id"],
        project_id=project_id,
        name=row["job_key"],
        image=container.get("image", ""),
        command=container.get("command", []),
        env=container.get("env") or {},
        schedule=cron,
        schedule_timezone=timezone,
        tags=config.get("tags") or {},
        cluster_id=row["cluster_id"],
        created_at=iso(row["created_at"]),
        updated_at=iso(max(row["updated_at"], row["version_published_at"] or row["updated_at"])),
        next_run_at=iso(next_fire(cron, timezone, now))
        if cron and row["status"] == "active"
        else None,
    )


def _envelope_error(
    request: Request[Any, Any, Any], message: str, code: str, extra: dict[str, Any]
) -> EnvelopeError:
    return EnvelopeError(message=message)


# --- access and lookups: Litestar dependencies of the router --------------------------------


@dataclass(frozen=True)
class Project:
    """The project of the path: a team of the caller's organization."""

    organization_id: str
    team_id: str


ProjectDep: TypeAlias = NamedDependency[Project]
JobDep: TypeAlias = NamedDependency[dict[str, Any]]
RunDep: TypeAlias = NamedDependency[dict[str, Any]]


def provide_project(
    identity: IdentityDep,
    principal: Caller,
    workspace_id: FromPath[str],
    project_id: FromPath[str],
) -> Project:
    """404 unless the workspace is the caller's organization and the project a team of it."""
    if workspace_id != principal.organization_id:
        raise NotFoundError(f"No workspace {workspace_id}.", code="workspace_not_found")
    try:
        require_team(identity, principal, project_id)
    except NotFoundError:
        raise NotFoundError(f"No project {project_id}.", code="project_not_found") from None
    return Project(principal.organization_id, project_id)


def provide_job(
    workloads: WorkloadsDep, project: ProjectDep, job_id: FromPath[str]
) -> dict[str, Any]:
    """The path's job, when it is a container job of the project (else 404)."""
    rows = workloads.jobs.team_jobs_running(project.organization_id, project.team_id, WORK, job_id)
    if not rows:
        raise NotFoundError(f"No job {job_id} in project {project.team_id}.", code="job_not_found")
    return rows[0]


def provide_run(runs: RunsDep, job: JobDep, run_id: FromPath[str]) -> dict[str, Any]:
    """The path's run of the path's job (else 404)."""
    row = runs.view.run(job["organization_id"], job["id"], run_id)
    if row is None:
        raise NotFoundError(f"No run {run_id} of job {job['id']}.", code="run_not_found")
    return row


def _container(sent: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """`config.container` from the fields sent over the current one."""
    container = dict(current or {})
    container.update({k: sent[k] for k in ("image", "command", "env") if k in sent})
    return container


def _window(
    since: str | None,
    start: str | None,
    end: str | None,
    now: datetime,
    default: timedelta | None,
) -> tuple[datetime, datetime]:
    """[start, end) from `since` (a duration such as `15m`) or `start`/`end` (RFC 3339)."""
    if since is not None and (start is not None or end is not None):
        raise InvalidRequestError("Send since, or start and end; not both.", code="invalid_window")
    if since is not None:
        match = _DURATION.fullmatch(since.strip())
        if match is None:
            raise InvalidRequestError(
                f"since must be a duration such as 30s, 15m, 2h or 7d; not {since!r}.",
                code="invalid_since",
            )
        length = timedelta(seconds=int(match[1]) * _SECONDS[match[2]])
        if length > MAX_WINDOW:
            raise InvalidRequestError(
                "since may reach back 400 days at most.", code="invalid_since"
            )
        return now - length, now
    upper = _instant(end, "end") if end is not None else now
    if start is not None:
        lower = _instant(start, "start")
    else:
        lower = upper - default if default is not None else datetime(1970, 1, 1, tzinfo=UTC)
    if lower >= upper:
        raise InvalidRequestError("start must be before end.", code="invalid_window")
    return lower, upper


def _instant(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(
            f"{name} must be an RFC 3339 time such as 2026-01-31T12:00:00Z; not {value[:40]!r}.",
            code=f"invalid_{name}",
        ) from None
    if parsed.tzinfo is None:
        raise InvalidRequestError(
            f"{name} needs its UTC offset (such as Z or +02:00).", code=f"invalid_{name}"
        )
    return parsed


@dataclass(frozen=True)
class LogWindow:
    """What a logs request asks for: a time window, how many lines, which text."""

    start: datetime
    end: datetime
    limit: int
    contains: str | None

    def read(self, runs: RunsContext, run_ids: list[str]) -> Envelope[list[LogLine]]:
        rows = runs.logs.window(
            run_ids, start=self.start, end=self.end, limit=self.limit, contains=self.contains
        )
        lines = [
            LogLine(timestamp=iso(r["at"]), run_id=r["run_id"], stream=r["stream"], line=r["line"])
            for r in rows
        ]
        return Envelope(message=f"{len(lines)} lines.", data=lines)


LogWindowDep: TypeAlias = NamedDependency[LogWindow]


def provide_log_window(
    runs: RunsDep,
    since: Duration = None,
    start: Instant = None,
    end: Instant = None,
    limit: LogLimit = 100,
    contains: Contains = None,
) -> LogWindow:
    lower, upper = _window(since, start, end, runs.clock(), None)
    return LogWindow(lower, upper, limit, contains)


# --- the endpoints --------------------------------------------------------------------------
# Every handler has the path's project (`project: ProjectDep`); those under a job its row
# (`job: JobDep`) and under a run the run's (`run: RunDep`), or the 404 that says which.

PATH = "/workspaces/{workspace_id:str}/projects/{project_id:str}/jobs"
OPTIONS: dict[str, Any] = {"guards": [requires(VIEW, or_in_team="project_id")]}


@get("/", operation_id="ListContainerJobs", **OPTIONS)
def list_jobs(workloads: WorkloadsDep, project: ProjectDep) -> Envelope[list[ContainerJob]]:
    """The project's container jobs, newest first."""
    rows = workloads.jobs.team_jobs_running(project.organization_id, project.team_id, WORK)
    now = workloads.clock()
    jobs = [job_shape(r, project.team_id, now) for r in rows]
    return Envelope(message=f"{len(jobs)} jobs.", data=jobs)


@post("/", operation_id="CreateContainerJob", **OPTIONS)
def create_job(
    infra: InfraDep,
    workloads: WorkloadsDep,
    principal: Caller,
    project: ProjectDep,
    data: JSONBody[ContainerJobCreateRequest],
) -> Envelope[ContainerJob]:
    """Create a container job, on demand or on a cron `schedule`; `name` is its jobKey."""
    require_access(principal, MANAGE, granted_team_ids=[project.team_id])
    organization_id = project.organization_id
    cluster_id = (
        infra.clusters.workload_cluster_id(organization_id, data.cluster_id)
        if data.cluster_id
        else local_ids(organization_id)[3]
    )
    config: dict[str, Any] = {WORK: _container(msgspec.structs.asdict(data)), "tags": data.tags}
    job_id, position = workloads.commands.create_job(
        job_key=data.name,
        description=None,
        status="active",
        spec={
            "cluster_id": cluster_id,
            "config": config,
            "cron_expression": data.schedule,
            "cron_timezone": data.schedule_timezone,
        },
        team_ids=[project.team_id],
        by=principal.actor,
    )
    workloads.wait_for_views(position)
    job = job_shape(provide_job(workloads, project, job_id), project.team_id, workloads.clock())
    return Envelope(message=f"Job {data.name} created.", data=job)


@get("/{job_id:str}", operation_id="DescribeContainerJob", **OPTIONS)
def describe_job(
    workloads: WorkloadsDep, project: ProjectDep, job: JobDep
) -> Envelope[ContainerJob]:
    return Envelope(message="Job found.", data=job_shape(job, project.team_id, workloads.clock()))


@patch("/{job_id:str}", operation_id="UpdateContainerJob", **OPTIONS)
def update_job(
    infra: InfraDep,
    workloads: WorkloadsDep,
    principal: Caller,
    project: ProjectDep,
    job: JobDep,
    data: JSONBody[ContainerJobUpdateRequest],
) -> Envelope[ContainerJob]:
    """Change only the fields sent: a new job version (the next run uses it), and the
    name, in one write."""
    require_access(principal, MANAGE, granted_team_ids=[project.team_id])
    sent = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not UNSET}
    overrides: dict[str, Any] = {}
    if sent.keys() & {"image", "command", "env", "tags"}:
        config = dict(job["config"] or {})
        config[WORK] = _container(sent, config.get(WORK))
        if "tags" in sent:
            config["tags"] = sent["tags"]
        overrides["config"] = config
    if "schedule" in sent:
        overrides["cron_expression"] = sent["schedule"]
    if "schedule_timezone" in sent:
        overrides["cron_timezone"] = sent["schedule_timezone"]
    if "cluster_id" in sent:
        overrides["cluster_id"] = infra.clusters.workload_cluster_id(
            project.organization_id, sent["cluster_id"]
        )
    metadata = {"job_key": sent["name"]} if "name" in sent else {}
    if metadata or overrides:
        workloads.wait_for_views(
            workloads.commands.revise_job(job["id"], metadata, overrides, by=principal.actor)
        )
    row = provide_job(workloads, project, job["id"])
    changed = job_shape(row, project.team_id, workloads.clock())
    return Envelope(message=f"Job {changed.name} updated.", data=changed)


@delete("/{job_id:str}", operation_id="DeleteContainerJob", status_code=200, **OPTIONS)
def delete_job(
    workloads: WorkloadsDep, principal: Caller, project: ProjectDep, job: JobDep
) -> Envelope[Deleted]:
    """Delete the job: its unfinished runs are stopped, then its runs, logs, metrics and
    schedule go with it."""
    require_access(principal, MANAGE, granted_team_ids=[project.team_id])
    workloads.wait_for_views(workloads.commands.delete_job(job["id"], by=principal.actor))
    return Envelope(message=f"Job {job['id']} deleted.", data=Deleted(id=job["id"]))


@get("/{job_id:str}/logs", operation_id="ListContainerJobLogs", **OPTIONS)
def job_logs(runs: RunsDep, job: JobDep, window: LogWindowDep) -> Envelope[list[LogLine]]:
    """The newest lines of all the job's runs in the window, oldest first."""
    run_ids = runs.view.run_ids_of_job(job["organization_id"], job["id"])
    return window.read(runs, run_ids)


@get("/{job_id:str}/metrics", operation_id="ListContainerJobMetrics", **OPTIONS)
def job_metrics(
    runs: RunsDep,
    job: JobDep,
    names: Annotated[str, QueryParameter(max_length=1000)] = "cpu_usage,memory_usage",
    since: Duration = None,
    start: Instant = None,
    end: Instant = None,
    step: Step = None,
) -> Envelope[Metrics]:
    """CPU (cores) and memory (bytes) of the job's runs over time, in the order asked; a
    name that cannot be answered is that entry's error."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted or len(wanted) > 20:
        raise InvalidRequestError("names lists 1 to 20 metric names.", code="invalid_names")
    lower, upper = _window(since, start, end, runs.clock(), timedelta(hours=1))
    seconds = (upper - lower).total_seconds()
    step = step or max(5, math.ceil(seconds / 300))
    if seconds / step > MAX_POINTS:
        raise InvalidRequestError(
            f"The window holds more than {MAX_POINTS} steps of {step} s; ask for a larger step.",
            code="invalid_step",
        )
    series = runs.metrics.series(
        wanted, start=lower, end=upper, step_seconds=step, job_id=job["id"]
    )
    metrics = [
        Metric(
            name=s["name"],
            status=s["status"],
            unit=s["unit"],
            points=[
                MetricPoint(timestamp=iso(p["timestamp"]), value=p["value"]) for p in s["points"]
            ],
            error=s["error"],
        )
        for s in series
    ]
    return Envelope(message=f"{len(metrics)} metrics.", data=Metrics(metrics=metrics))


@get("/{job_id:str}/runs", operation_id="ListContainerJobRuns", **OPTIONS)
def list_runs(
    runs: RunsDep,
    job: JobDep,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> Envelope[list[ContainerRun]]:
    """The job's newest runs, newest first."""
    _, rows, _ = runs.view.runs(job["organization_id"], job_id=job["id"], limit=limit, marker=None)
    return Envelope(message=f"{len(rows)} runs.", data=[run_shape(r) for r in rows])


@post("/{job_id:str}/runs", operation_id="TriggerContainerJobRun", **OPTIONS)
def trigger_run(
    runs: RunsDep, principal: Caller, project: ProjectDep, job: JobDep
) -> Envelope[ContainerRun]:
    """Run the job now: the run starts `pending`."""
    require_access(principal, RUN, granted_team_ids=[project.team_id])
    run_id, position = runs.commands.create_run(
        job["id"], by=principal.actor, trigger="manual" if principal.kind == "member" else "api"
    )
    runs.wait_for_views(position)
    run = run_shape(provide_run(runs, job, run_id))
    return Envelope(message=f"Run {run_id} triggered.", data=run)


@get("/{job_id:str}/runs/{run_id:str}", operation_id="DescribeContainerJobRun", **OPTIONS)
def describe_run(run: RunDep) -> Envelope[ContainerRun]:
    return Envelope(message="Run found.", data=run_shape(run))


@post(
    "/{job_id:str}/runs/{run_id:str}/cancel",
    operation_id="CancelContainerJobRun",
    status_code=200,
    **OPTIONS,
)
def cancel_run(
    runs: RunsDep, principal: Caller, project: ProjectDep, job: JobDep, run: RunDep
) -> Envelope[ContainerRun]:
    """Cancel a pending or running run; its command is stopped (409 once it has finished)."""
    require_access(principal, RUN, granted_team_ids=[project.team_id])
    runs.wait_for_views(runs.commands.cancel_run(job["id"], run["id"], by=principal.actor))
    cancelled = run_shape(provide_run(runs, job, run["id"]))
    return Envelope(message=f"Run {run['id']} cancelled.", data=cancelled)


@get("/{job_id:str}/runs/{run_id:str}/logs", operation_id="ListContainerJobRunLogs", **OPTIONS)
def run_logs(runs: RunsDep, run: RunDep, window: LogWindowDep) -> Envelope[list[LogLine]]:
    """The newest lines of the run in the window, oldest first."""
    return window.read(runs, [run["id"]])


@get("/{job_id:str}/status", operation_id="DescribeContainerJobStatus", **OPTIONS)
def job_status(
    workloads: WorkloadsDep, runs: RunsDep, project: ProjectDep, job: JobDep
) -> Envelope[JobStatus]:
    """The newest run, how many runs are in each status, and the schedule."""
    counts: dict[str, int] = {}
    for group in runs.view.status_counts(project.organization_id, job["id"]):
        status = run_status(group["status"], group["started"])
        counts[status] = counts.get(status, 0) + group["runs"]
    latest = runs.view.latest_runs(project.organization_id, [job["id"]]).get(job["id"])
    shown = job_shape(job, project.team_id, workloads.clock())
    schedule = (
        Schedule(
            cron=shown.schedule, timezone=shown.schedule_timezone, next_run_at=shown.next_run_at
        )
        if shown.schedule
        else None
    )
    return Envelope(
        message="Job status.",
        data=JobStatus(
            job_id=job["id"],
            last_run=run_shape(latest) if latest else None,
            counts=RunCounts(**counts, total=sum(counts.values())),
            schedule=schedule,
        ),
    )


def workspaces_router() -> Router:
    """The container-jobs API at the root, its errors in the seed's envelope."""
    return Router(
        path=PATH,
        route_handlers=[
            list_jobs,
            create_job,
            describe_job,
            update_job,
            delete_job,
            job_logs,
            job_metrics,
            list_runs,
            trigger_run,
            describe_run,
            cancel_run,
            run_logs,
            job_status,
        ],
        tags=["container-jobs"],
        dependencies={
            "project": Provide(provide_project, sync_to_thread=True),
            "job": Provide(provide_job, sync_to_thread=True),
            "run": Provide(provide_run, sync_to_thread=True),
            "window": Provide(provide_log_window, sync_to_thread=False),
        },
        exception_handlers=exception_handlers(_envelope_error),
        opt={"error_shape": EnvelopeError},
    )
