"""`/api/v1/workloads/jobs` (jobs, drafts, versions, team grants), `/me/jobs`,
`/workloads/teams/{team}/jobs` and `/workloads/clusters/{cluster}/jobs`.

Every endpoint needs `CanViewJobs` from an organization role; changing a job needs
`CanManageJobs` from an organization role or from a team role in a team the job is
granted to (for a create: one of the teams in `teamIds`).

A Job response shows the job's metadata with its active version's configuration;
its `version` is the job's revision, which every change to the job moves (the optimistic
check of a PATCH), and `currentVersion` the active configuration's number; a JobVersion
response is one version. `nextRunAt` is the
next time the active version's schedule fires (null for a paused or unscheduled job).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from msgspec import UNSET, UnsetType

from sailplane.contexts import InfraContext, RunsContext, WorkloadsContext
from sailplane.domain.errors import InvalidRequestError, NotFoundError
from sailplane.domain.jobs import VERSION_FIELDS, diff_specs, spec_of
from sailplane.domain.schedule import next_fire
from sailplane.http import shapes
from sailplane.http.auth import (
    Caller,
    IdentityDep,
    InfraDep,
    Principal,
    RunsDep,
    WorkloadsDep,
    reachable_team_ids,
    require_access,
    requires,
)
from sailplane.http.errors import or_404
from sailplane.http.job_config import JobConfig
from sailplane.http.job_runs import run_shape
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
from sailplane.http.shapes import Shape, iso
from sailplane.http.sharing import (
    ItemList,
    TeamId,
    TeamIdsRequest,
    require_manage,
    require_team,
    team_links,
)
from sailplane.projections.query import Page, Sort

VIEW, MANAGE = "CanViewJobs", "CanManageJobs"

JobSortBy = Annotated[Literal["jobKey", "createdAt"], SORT_BY]
VersionNumber = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
VersionInPath = Annotated[
    int, PathParameter(ge=1, le=2**31 - 1, description="A LakeSail job version.")
]
JobKey = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ClusterId = Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
ConcurrencyPolicy = Literal["allow", "skip", "queue", "replace"]
MissedSchedulePolicy = Literal["skip", "latest", "all"]
JobStatus = Literal["active", "paused"]


class DependsOn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    job_key: JobKey


class JobVersionWriteRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    """A version's configuration; only the fields sent are written (a new draft or version
    copies the active version first)."""

    cluster_id: ClusterId | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    config: JobConfig | UnsetType = UNSET
    timeout_seconds: Positive | UnsetType | None = UNSET
    source_config: dict[str, Any] | UnsetType | None = UNSET
    depends_on: list[DependsOn] | UnsetType = UNSET
    cron_expression: str | UnsetType | None = UNSET
    cron_timezone: str | UnsetType | None = UNSET
    concurrency_policy: ConcurrencyPolicy | UnsetType = UNSET
    max_concurrent_runs: Positive | UnsetType = UNSET
    missed_schedule_policy: MissedSchedulePolicy | UnsetType = UNSET

    def fields(self, infra: InfraContext, principal: Principal) -> dict[str, Any]:
        """The fields sent; a provisioned cluster's `id` stands for its workload cluster."""
        sent = _sent(self, VERSION_FIELDS)
        if "cluster_id" in sent:
            sent["cluster_id"] = infra.clusters.workload_cluster_id(
                principal.organization_id, sent["cluster_id"]
            )
        return sent


class JobCreateRequest(JobVersionWriteRequest, kw_only=True, forbid_unknown_fields=True):
    """Version 1's configuration, the job's key and status, and its teams."""

    job_key: JobKey
    cluster_id: ClusterId  # type: ignore[assignment]
    status: JobStatus = "active"
    team_ids: list[TeamId] = []


class JobUpdateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Metadata only; `version`, when sent, must be the job's `version` (its revision, 409 if not)."""

    job_key: JobKey | UnsetType = UNSET
    status: JobStatus | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    version: VersionNumber | UnsetType = UNSET


class ActivateVersionRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    version: VersionNumber


def _sent(data: msgspec.Struct, names: Any) -> dict[str, Any]:
    sent = {}
    for name in names:
        value = getattr(data, name, UNSET)
        if value is UNSET:
            continue
        if name == "depends_on":
            value = [{"jobKey": d.job_key} for d in value]
        sent[name] = value
    return sent


class _VersionFields(Shape):
    cluster_id: str
    description: str | None
    config: JobConfig
    timeout_seconds: int | None
    source_config: dict[str, Any] | None
    depends_on: list[dict[str, str]]
    cron_expression: str | None
    cron_timezone: str | None
    concurrency_policy: str
    max_concurrent_runs: int
    missed_schedule_policy: str


class Job(_VersionFields):
    id: str
    member_id: str
    job_key: str
    version: int
    current_version: int
    draft_version: int | None
    based_on_version: int | None
    status: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    next_run_at: str | None
    last_scheduled_at: str | None
    updated_by: str


class JobVersion(_VersionFields):
    job_id: str
    version: int
    based_on_version: int | None
    status: str
    job_type: str
    member_id: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str
    published_at: str | None
    published_by: str | None


class JobUsage(Shape):
    """The model usage the job's runs reported through the run runtime, summed."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_microusd: int


class JobListItem(Shape):
    job_id: str
    latest_job_run_id: str | None
    team_ids: list[str]
    usage: JobUsage | UnsetType = UNSET  # on describe only: the sums over the job's runs


class JobsIncluded(Shape):
    jobs: list[Job]
    job_runs: list[dict[str, Any]]  # the latest run of each job, as the job-runs group shows it
    teams: list[shapes.Team]


class JobTeam(Shape):
    job_id: str
    team_id: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class FieldChange(msgspec.Struct, kw_only=True):
    field: str
    from_: Any = msgspec.field(name="from")
    to: Any


class JobVersionDiff(Shape):
    job_id: str
    version: int
    against: int
    changes: list[FieldChange]


JobListing = NormalizedListing[JobListItem, JobsIncluded]


def _version_fields(version: dict[str, Any]) -> dict[str, Any]:
    return {name: version[name] for name in VERSION_FIELDS} | {
        "config": version["config"] or {},
        "depends_on": version["depends_on"] or [],
    }


def _job_usage(runs: RunsContext, principal: Principal, job_id: str) -> JobUsage:
    """The usage totals of every run of the job (what their work reported, live)."""
    run_ids = runs.view.run_ids_of_job(principal.organization_id, job_id)
    totals = dict.fromkeys(JobUsage.__struct_fields__, 0)
    for run in runs.telemetry.usage_totals(run_ids).values():
        for name in totals:
            totals[name] += run[name]
    return JobUsage(**totals)


def job_shape(
    workloads: WorkloadsContext,
    job: dict[str, Any],
    version: dict[str, Any],
    last_scheduled: dict[str, datetime] | None = None,
) -> Job:
    """The job with the configuration of `version` (its active one unless told).

    `last_scheduled`: the jobs' `lastScheduledAt` by id, when the caller read them for many.
    """
    if last_scheduled is None:
        last_scheduled = workloads.schedules.last_scheduled(job["organization_id"], [job["id"]])
    cron = version["cron_expression"]
    next_run = (
        next_fire(cron, version["cron_timezone"], workloads.clock())
        if cron and job["status"] == "active" and version["version"] == job["current_version"]
        else None
    )
    return Job(
        id=job["id"],
        member_id=job["member_id"],
        job_key=job["job_key"],
        version=job["revision"],
        current_version=job["current_version"],
        draft_version=job["draft_version"],
        based_on_version=version["based_on_version"],
        status=job["status"],
        description=job["description"],
        created_at=iso(job["created_at"]),
        created_by=job["created_by"],
        updated_at=iso(job["updated_at"]),
        next_run_at=iso(next_run),
        last_scheduled_at=iso(last_scheduled.get(job["id"])),
        updated_by=job["updated_by"],
        **{k: v for k, v in _version_fields(version).items() if k != "description"},
    )


def version_shape(version: dict[str, Any]) -> JobVersion:
    config = version["config"] or {}
    return JobVersion(
        job_id=version["job_id"],
        version=version["version"],
        based_on_version=version["based_on_version"],
        status=version["status"],
        job_type=next((kind for kind in ("python", "container") if config.get(kind)), "sql"),
        member_id=version["created_by"],
        created_at=iso(version["created_at"]),
        created_by=version["created_by"],
        updated_at=iso(version["updated_at"]),
        updated_by=version["updated_by"],
        published_at=iso(version["published_at"]),
        published_by=version["published_by"],
        **_version_fields(version),
    )


def job_entities(
    workloads: WorkloadsContext, organization_id: str, rows: list[dict[str, Any]]
) -> list[Job]:
    """Job shapes of job rows, each with its active version."""
    versions = workloads.jobs.versions_of(
        organization_id, [(r["id"], r["current_version"]) for r in rows]
    )
    last_scheduled = workloads.schedules.last_scheduled(organization_id, [r["id"] for r in rows])
    return [
        job_shape(workloads, r, versions[(r["id"], r["current_version"])], last_scheduled)
        for r in rows
    ]


def jobs_by_id(workloads: WorkloadsContext, organization_id: str, job_ids: list[str]) -> list[Job]:
    """For other groups' `included.jobs` (saved queries)."""
    if not job_ids:
        return []
    _, rows, _ = workloads.jobs.jobs(
        organization_id, Page(limit=len(job_ids)), Sort("jobKey"), job_ids=job_ids
    )
    return job_entities(workloads, organization_id, rows)


def _included(
    workloads: WorkloadsContext,
    runs: RunsContext,
    organization_id: str,
    jobs: list[Job],
    team_ids: dict[str, list[str]],
) -> tuple[list[JobListItem], JobsIncluded]:
    wanted = sorted({t for ts in team_ids.values() for t in ts})
    teams = workloads.jobs.teams(organization_id, wanted) if wanted else []
    latest = runs.view.latest_runs(organization_id, [j.id for j in jobs])
    items = [
        JobListItem(
            job_id=j.id,
            latest_job_run_id=latest[j.id]["id"] if j.id in latest else None,
            team_ids=team_ids[j.id],
        )
        for j in jobs
    ]
    latest_runs = [msgspec.to_builtins(run_shape(latest[j.id])) for j in jobs if j.id in latest]
    return items, JobsIncluded(
        jobs=jobs, job_runs=latest_runs, teams=[shapes.team(t) for t in teams]
    )


def job_listing(
    workloads: WorkloadsContext,
    runs: RunsContext,
    organization_id: str,
    page: Page,
    sort: Sort,
    marker: str | None,
    *,
    team_ids: list[str] | None,
    cluster_id: str | None = None,
) -> JobListing:
    """A page of the jobs granted to `team_ids` (None: every job), with their latest runs."""
    total, rows, marker = workloads.jobs.jobs(
        organization_id, page, sort, marker, team_ids=team_ids, cluster_id=cluster_id
    )
    jobs = job_entities(workloads, organization_id, rows)
    items, included = _included(
        workloads,
        runs,
        organization_id,
        jobs,
        workloads.jobs.team_ids_by_resource([r["id"] for r in rows]),
    )
    return JobListing(total=total, items=items, included=included, marker=marker)


def job_row(workloads: WorkloadsContext, principal: Principal, job_id: str) -> dict[str, Any]:
    return or_404(workloads.jobs.job(principal.organization_id, job_id), "job", job_id)


def _job(workloads: WorkloadsContext, principal: Principal, job_id: str) -> Job:
    row = job_row(workloads, principal, job_id)
    version = workloads.jobs.version(principal.organization_id, job_id, row["current_version"])
    assert version is not None, f"job {job_id} without its active version"
    return job_shape(workloads, row, version)


def _published(
    workloads: WorkloadsContext, principal: Principal, job_id: str, number: int
) -> dict[str, Any]:
    version = workloads.jobs.version(principal.organization_id, job_id, number)
    if version is None or version["status"] != "published":
        raise NotFoundError(
            f"Job {job_id} has no published version {number}.", code="job_version_not_found"
        )
    return version


def _draft(workloads: WorkloadsContext, principal: Principal, job_id: str) -> JobVersion:
    job_row(workloads, principal, job_id)
    draft = workloads.jobs.draft(principal.organization_id, job_id)
    if draft is None:
        raise NotFoundError(f"Job {job_id} has no draft.", code="job_draft_not_found")
    return version_shape(draft)


def _write_draft(
    workloads: WorkloadsContext,
    principal: Principal,
    job_id: str,
    write: Callable[..., int],
    data: JobVersionWriteRequest,
    infra: InfraContext,
) -> JobVersion:
    """Create or change the draft through `write` (the use case) with the fields sent."""
    _manage(workloads, principal, job_id)
    workloads.wait_for_views(write(job_id, data.fields(infra, principal), by=principal.actor))
    return _draft(workloads, principal, job_id)


def _my_team_ids(principal: Principal) -> list[str]:
    """The teams in which the caller's team roles let them view jobs."""
    return principal.teams_granting(VIEW)


def _manage(workloads: WorkloadsContext, principal: Principal, job_id: str) -> None:
    job_row(workloads, principal, job_id)
    require_manage(principal, workloads.jobs, job_id, MANAGE)


class JobController(Controller):
    path = "/workloads/jobs"
    tags = ["jobs"]

    @get("/", operation_id="ListJobs", guards=[requires(VIEW)])
    def list_jobs(
        self,
        workloads: WorkloadsDep,
        runs: RunsDep,
        principal: Caller,
        limit: Limit = 100,
        marker: Marker = None,
    ) -> JobListing:
        """List the jobs the caller may view, by jobKey, with their active versions."""
        org = principal.organization_id
        return job_listing(
            workloads,
            runs,
            org,
            Page(limit=limit),
            Sort("jobKey"),
            marker,
            team_ids=reachable_team_ids(principal, VIEW),
        )

    @post("/", operation_id="CreateJob", guards=[requires(VIEW)])
    def create_job(
        self,
        infra: InfraDep,
        workloads: WorkloadsDep,
        principal: Caller,
        data: JSONBody[JobCreateRequest],
    ) -> Job:
        """Create a job with version 1 published and active; needs an active cluster and a team."""
        require_access(principal, MANAGE, granted_team_ids=data.team_ids)
        spec = data.fields(infra, principal)
        job_id, position = workloads.commands.create_job(
            job_key=data.job_key,
            description=spec.pop("description", None),
            status=data.status,
            spec=spec,
            team_ids=data.team_ids,
            by=principal.actor,
        )
        workloads.wait_for_views(position)
        return _job(workloads, principal, job_id)

    @get("/{job:str}", operation_id="DescribeJob", guards=[requires(VIEW)])
    def describe_job(
        self, workloads: WorkloadsDep, runs: RunsDep, principal: Caller, job: FromPath[str]
    ) -> Described[JobListItem, JobsIncluded]:
        """Describe a job with its active version, teams, latest run and usage totals."""
        found = _job(workloads, principal, job)
        items, included = _included(
            workloads,
            runs,
            principal.organization_id,
            [found],
            workloads.jobs.team_ids_by_resource([job]),
        )
        item = msgspec.structs.replace(items[0], usage=_job_usage(runs, principal, job))
        return Described(item=item, included=included)

    @patch("/{job:str}", operation_id="UpdateJob", guards=[requires(VIEW)])
    def update_job(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        job: FromPath[str],
        data: JSONBody[JobUpdateRequest],
    ) -> Job:
        """Change a job's jobKey, description or status; never its version."""
        _manage(workloads, principal, job)
        position = workloads.commands.update_job(
            job,
            _sent(data, ("job_key", "description", "status")),
            expected_version=None if data.version is UNSET else data.version,
            by=principal.actor,
        )
        workloads.wait_for_views(position)
        return _job(workloads, principal, job)

    @delete("/{job:str}", operation_id="DeleteJob", guards=[requires(VIEW)])
    def delete_job(self, workloads: WorkloadsDep, principal: Caller, job: FromPath[str]) -> None:
        """Delete a job with its versions and grants; its pending and active runs are cancelled."""
        _manage(workloads, principal, job)
        workloads.wait_for_views(workloads.commands.delete_job(job, by=principal.actor))

    @post(
        "/{job:str}/activate-version",
        operation_id="ActivateJobVersion",
        guards=[requires(VIEW)],
        status_code=200,
    )
    def activate_version(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        job: FromPath[str],
        data: JSONBody[ActivateVersionRequest],
    ) -> Job:
        """Make a published version the active one (409 while a draft exists)."""
        _manage(workloads, principal, job)
        position = workloads.commands.activate_job_version(job, data.version, by=principal.actor)
        workloads.wait_for_views(position)
        return _job(workloads, principal, job)

    @get(
        "/{job:str}/draft",
        operation_id="DescribeJobDraft",
        guards=[requires(VIEW)],
    )
    def describe_draft(
        self, workloads: WorkloadsDep, principal: Caller, job: FromPath[str]
    ) -> JobVersion:
        """Describe the job's draft version (404 when it has none)."""
        return _draft(workloads, principal, job)

    @post(
        "/{job:str}/draft",
        operation_id="CreateJobDraft",
        guards=[requires(VIEW)],
    )
    def create_draft(
        self,
        infra: InfraDep,
        workloads: WorkloadsDep,
        principal: Caller,
        job: FromPath[str],
        data: JSONBody[JobVersionWriteRequest],
    ) -> JobVersion:
        """Create the draft: a copy of the active version with the fields sent (409 if one exists)."""
        return _write_draft(
            workloads, principal, job, workloads.commands.create_job_draft, data, infra
        )

    @patch(
        "/{job:str}/draft",
        operation_id="UpdateJobDraft",
        guards=[requires(VIEW)],
    )
    def update_draft(
        self,
        infra: InfraDep,
        workloads: WorkloadsDep,
        principal: Caller,
        job: FromPath[str],
        data: JSONBody[JobVersionWriteRequest],
    ) -> JobVersion:
        """Change the fields sent of the draft (404 when there is none)."""
        return _write_draft(
            workloads, principal, job, workloads.commands.update_job_draft, data, infra
        )

    @delete(
        "/{job:str}/draft",
        operation_id="DiscardJobDraft",
        guards=[requires(VIEW)],
    )
    def discard_draft(self, workloads: WorkloadsDep, principal: Caller, job: FromPath[str]) -> None:
        """Discard the draft; the active version is unchanged (404 when there is none)."""
        _manage(workloads, principal, job)
        workloads.wait_for_views(workloads.commands.discard_job_draft(job, by=principal.actor))

    @post(
        "/{job:str}/draft/publish",
        operation_id="PublishJobDraft",
        guards=[requires(VIEW)],
        status_code=200,
    )
    def publish_draft(self, workloads: WorkloadsDep, principal: Caller, job: FromPath[str]) -> Job:
        """Publish the draft as the active version (400 when there is none)."""
        _manage(workloads, principal, job)
        workloads.wait_for_views(workloads.commands.publish_job_draft(job, by=principal.actor))
        return _job(workloads, principal, job)

    @get(
        "/{job:str}/teams",
        operation_id="ListJobTeams",
        guards=[requires(VIEW)],
    )
    def list_teams(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        job: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> Listing[shapes.TeamWithMemberCount]:
        """List the teams a job is granted to, with their member counts."""
        job_row(workloads, principal, job)
        total, rows, next_marker = workloads.jobs.granted_teams(
            principal.organization_id, job, limit=limit, marker=marker
        )
        return Listing(
            total=total, items=[shapes.team_with_count(r) for r in rows], marker=next_marker
        )

    @post(
        "/{job:str}/teams",
        operation_id="AddJobTeams",
        guards=[requires(VIEW)],
    )
    def add_teams(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        job: FromPath[str],
        data: JSONBody[TeamIdsRequest],
    ) -> ItemList[JobTeam]:
        """Grant teams access to a job; returns the grants of the teams named."""
        _manage(workloads, principal, job)
        position = workloads.commands.grant_job_teams(job, data.team_ids, by=principal.actor)
        workloads.wait_for_views(position)
        return team_links(workloads.jobs, JobTeam, "job_id", job, data.team_ids)

    @delete(
        "/{job:str}/teams/{team:str}",
        operation_id="RemoveJobTeam",
        guards=[requires(VIEW)],
    )
    def remove_team(
        self, workloads: WorkloadsDep, principal: Caller, job: FromPath[str], team: FromPath[str]
    ) -> None:
        """Revoke a team's access to a job."""
        _manage(workloads, principal, job)
        workloads.wait_for_views(workloads.commands.revoke_job_team(job, team, by=principal.actor))

    @get(
        "/{job:str}/versions",
        operation_id="ListJobVersions",
        guards=[requires(VIEW)],
    )
    def list_versions(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        job: FromPath[str],
        limit: Limit = 100,
        page: PageNumber = 1,
        marker: Marker = None,
    ) -> Listing[JobVersion]:
        """List the published versions of a job by number (drafts are not listed)."""
        job_row(workloads, principal, job)
        total, rows, next_marker = workloads.jobs.published_versions(
            principal.organization_id, job, page_of(page, limit), marker
        )
        return Listing(total=total, items=[version_shape(r) for r in rows], marker=next_marker)

    @post(
        "/{job:str}/versions",
        operation_id="CreateJobVersion",
        guards=[requires(VIEW)],
    )
    def create_version(
        self,
        infra: InfraDep,
        workloads: WorkloadsDep,
        principal: Caller,
        job: FromPath[str],
        data: JSONBody[JobVersionWriteRequest],
    ) -> JobVersion:
        """Create and publish a version in one step (409 while a draft exists)."""
        _manage(workloads, principal, job)
        number, position = workloads.commands.create_job_version(
            job, data.fields(infra, principal), by=principal.actor
        )
        workloads.wait_for_views(position)
        return version_shape(_published(workloads, principal, job, number))

    @get(
        "/{job:str}/versions/{jobVersionNumber:int}",
        operation_id="DescribeJobVersion",
        guards=[requires(VIEW)],
    )
    def describe_version(
        self,
        workloads: WorkloadsDep,
        runs: RunsDep,
        principal: Caller,
        job: FromPath[str],
        jobVersionNumber: VersionInPath,
    ) -> Described[JobListItem, JobsIncluded]:
        """Describe a job as one of its published versions configures it."""
        row = job_row(workloads, principal, job)
        version = _published(workloads, principal, job, jobVersionNumber)
        items, included = _included(
            workloads,
            runs,
            principal.organization_id,
            [job_shape(workloads, row, version)],
            workloads.jobs.team_ids_by_resource([job]),
        )
        return Described(item=items[0], included=included)

    @get(
        "/{job:str}/versions/{jobVersionNumber:int}/diff",
        operation_id="DiffJobVersions",
        guards=[requires(VIEW)],
    )
    def diff_versions(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        job: FromPath[str],
        jobVersionNumber: VersionInPath,
        against: Annotated[
            int | None,
            QueryParameter(
                ge=1,
                le=2**31 - 1,
                description="The version to compare with (default: the one it was based on).",
            ),
        ] = None,
    ) -> JobVersionDiff:
        """The fields a version changes compared with another one (drafts included)."""
        job_row(workloads, principal, job)
        org = principal.organization_id
        version = workloads.jobs.version(org, job, jobVersionNumber)
        if version is None:
            raise NotFoundError(
                f"Job {job} has no version {jobVersionNumber}.", code="job_version_not_found"
            )
        base = version["based_on_version"] if against is None else against
        if base is None:
            raise InvalidRequestError(
                f"Version {jobVersionNumber} was based on no other version; name one with "
                "`against`.",
                code="diff_needs_against",
            )
        other = workloads.jobs.version(org, job, base)
        if other is None:
            raise NotFoundError(f"Job {job} has no version {base}.", code="job_version_not_found")
        return JobVersionDiff(
            job_id=job,
            version=jobVersionNumber,
            against=base,
            changes=[
                FieldChange(field=c["field"], from_=c["from"], to=c["to"])
                for c in diff_specs(_spec(other), _spec(version))
            ],
        )


def _spec(version: dict[str, Any]) -> dict[str, Any]:
    return spec_of(_version_fields(version))


class JobListsController(Controller):
    """Job lists under other resources: the caller's, a team's, a cluster's."""

    path = "/"
    tags = ["jobs"]

    @get("/me/jobs", operation_id="ListMyJobs", guards=[requires(VIEW)])
    def list_my_jobs(
        self,
        workloads: WorkloadsDep,
        runs: RunsDep,
        principal: Caller,
        page: PageNumber = 1,
        limit: Limit = 100,
        sort_by: JobSortBy = "createdAt",
        sort_direction: SortDirection = "asc",
        marker: Marker = None,
    ) -> JobListing:
        """List the jobs granted to the caller's teams (whatever their organization role)."""
        org = principal.organization_id
        return job_listing(
            workloads,
            runs,
            org,
            page_of(page, limit),
            sort_of(sort_by, sort_direction),
            marker,
            team_ids=_my_team_ids(principal),
        )

    @get(
        "/workloads/teams/{team:str}/jobs",
        operation_id="ListTeamJobs",
        guards=[requires(VIEW)],
    )
    def list_team_jobs(
        self,
        identity: IdentityDep,
        workloads: WorkloadsDep,
        runs: RunsDep,
        principal: Caller,
        team: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> JobListing:
        """List the jobs granted to a team, by jobKey."""
        org = principal.organization_id
        require_team(identity, principal, team)
        return job_listing(
            workloads, runs, org, Page(limit=limit), Sort("jobKey"), marker, team_ids=[team]
        )

    @get(
        "/workloads/clusters/{cluster:str}/jobs",
        operation_id="ListClusterJobs",
        guards=[requires(VIEW)],
    )
    def list_cluster_jobs(
        self,
        workloads: WorkloadsDep,
        runs: RunsDep,
        principal: Caller,
        cluster: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> JobListing:
        """List the jobs whose active version runs on a cluster, by jobKey."""
        org = principal.organization_id
        or_404(workloads.commands.clusters.cluster(org, cluster), "cluster", cluster)
        return job_listing(
            workloads,
            runs,
            org,
            Page(limit=limit),
            Sort("jobKey"),
            marker,
            team_ids=reachable_team_ids(principal, VIEW),
            cluster_id=cluster,
        )
