"""`GET /api/v1/workloads/jobs/{job}/schedule/preview`: the next fire times of a job.

The times come from the same engine the scheduler fires with (`domain/scheduling.py`),
so a preview shows exactly the slots that will get runs, DST changes included.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller
from litestar.params import FromPath, QueryParameter

from sailplane.domain.scheduling import CronSchedule
from sailplane.http.auth import Caller, WorkloadsDep, requires
from sailplane.http.jobs import VIEW, job_row
from sailplane.http.routes import get
from sailplane.http.shapes import Shape, iso

PreviewCount = Annotated[
    int,
    QueryParameter(
        ge=1, le=100, required=False, description="How many fire times to list (1 to 100)."
    ),
]


class FireTime(Shape):
    utc: str  # ISO 8601 with Z
    local: str  # ISO 8601 with the zone's offset at that instant


class SchedulePreview(Shape):
    job_id: str
    status: str  # the job's status: a paused job fires nothing until resumed
    cron_expression: str | None
    cron_timezone: str | None
    fire_times: list[FireTime]


class SchedulePreviewController(Controller):
    path = "/workloads/jobs"
    tags = ["jobs"]

    @get(
        "/{job:str}/schedule/preview",
        operation_id="PreviewJobSchedule",
        guards=[requires(VIEW)],
    )
    def preview(
        self,
        workloads: WorkloadsDep,
        principal: Caller,
        job: FromPath[str],
        count: PreviewCount = 10,
    ) -> SchedulePreview:
        """List the next fire times of the job's active schedule, in UTC and local time."""
        row = job_row(workloads, principal, job)
        version = workloads.jobs.version(principal.organization_id, job, row["current_version"])
        assert version is not None, f"job {job} without its active version"
        cron, zone = version["cron_expression"], version["cron_timezone"] or "UTC"
        schedule = CronSchedule(cron, zone) if cron else None
        slots = schedule.fire_times_after(workloads.clock(), count) if schedule else []
        return SchedulePreview(
            job_id=job,
            status=row["status"],
            cron_expression=cron,
            cron_timezone=zone if cron else version["cron_timezone"],
            fire_times=[
                FireTime(
                    utc=iso(slot) or "",
                    local=slot.astimezone(schedule.zone).isoformat(),  # type: ignore[union-attr]
                )
                for slot in slots
            ],
        )
