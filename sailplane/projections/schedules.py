"""The schedules view: what the scheduler needs of each job, and where it stands.

One row per job (a deleted job keeps a `deleted` row, so a scheduler that reads only the
rows changed since its last tick learns of the deletion): the job's status, its active
version's schedule fields, `since` (when the current schedule took effect: the job's
creation, or the activation of a version whose `cronExpression` or `cronTimezone`
differs), `last_scheduled_at` (the latest slot a run was created for, from the runs' own
creation events) and `changed_at` (the log position of the row's last change).
`schedule_versions` keeps each version's schedule fields so that activating a version
needs no other view.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from sailplane.domain.jobs import Job
from sailplane.domain.runs import JobRun
from sailplane.projections.base import Projection, View

SCHEDULE_FIELDS = ("cron_expression", "cron_timezone", "missed_schedule_policy")


class SchedulesView(View):
    name = "schedules"
    tables = {
        "schedules": """
            CREATE TABLE {schedules} (
                job_id text PRIMARY KEY,
                organization_id text NOT NULL,
                job_status text NOT NULL,
                version integer NOT NULL,
                cron_expression text,
                cron_timezone text,
                missed_schedule_policy text NOT NULL,
                since timestamptz NOT NULL,
                last_scheduled_at timestamptz,
                changed_at bigint NOT NULL
            )""",
        "schedule_versions": """
            CREATE TABLE {schedule_versions} (
                job_id text NOT NULL,
                version integer NOT NULL,
                cron_expression text,
                cron_timezone text,
                missed_schedule_policy text NOT NULL,
                PRIMARY KEY (job_id, version)
            )""",
    }
    indexes = ("CREATE INDEX ON {schedules} (changed_at)",)

    def changed_schedules(self, after_position: int) -> list[dict[str, Any]]:
        """Rows changed after a log position, oldest change first (the scheduler's refresh)."""
        return self.fetch_all(
            "SELECT * FROM {schedules} WHERE changed_at > %s ORDER BY changed_at",
            (after_position,),
        )

    def schedule(self, organization_id: str, job_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {schedules} WHERE organization_id = %s AND job_id = %s "
            "AND job_status <> 'deleted'",
            (organization_id, job_id),
        )

    def last_scheduled(self, organization_id: str, job_ids: list[str]) -> dict[str, datetime]:
        rows = self.fetch_all(
            "SELECT job_id, last_scheduled_at FROM {schedules} WHERE organization_id = %s "
            "AND job_id = ANY(%s) AND last_scheduled_at IS NOT NULL",
            (organization_id, job_ids),
        )
        return {r["job_id"]: r["last_scheduled_at"] for r in rows}


class SchedulesProjection(Projection[SchedulesView]):
    view_class = SchedulesView
    view: SchedulesView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events change nothing here."""

    @process_event.register
    def _(self, event: Job.Created, tracking: Tracking) -> None:
        self._insert_version(event.originator_id, 1, event.spec)
        self.view.execute(
            "INSERT INTO {schedules} VALUES (%s, %s, %s, 1, %s, %s, %s, %s, NULL, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.status,
                *(event.spec.get(f) for f in SCHEDULE_FIELDS),
                event.timestamp,
                tracking.notification_id,
            ),
        )

    @process_event.register
    def _(self, event: Job.MetadataUpdated, tracking: Tracking) -> None:
        if "status" in event.changes:
            self.view.execute(
                "UPDATE {schedules} SET job_status = %s, changed_at = %s WHERE job_id = %s",
                (event.changes["status"], tracking.notification_id, event.originator_id),
            )

    @process_event.register
    def _(self, event: Job.DraftCreated, tracking: Tracking) -> None:
        self._insert_version(event.originator_id, event.version, event.spec)

    @process_event.register
    def _(self, event: Job.DraftUpdated, tracking: Tracking) -> None:
        for column in SCHEDULE_FIELDS:
            if column in event.changes:
                self.view.execute(
                    f"UPDATE {{schedule_versions}} SET {column} = %s "
                    "WHERE job_id = %s AND version = %s",
                    (event.changes[column], event.originator_id, event.version),
                )

    @process_event.register
    def _(self, event: Job.DraftDiscarded, tracking: Tracking) -> None:
        self.view.execute(
            "DELETE FROM {schedule_versions} WHERE job_id = %s AND version = %s",
            (event.originator_id, event.version),
        )

    @process_event.register
    def _(self, event: Job.DraftPublished, tracking: Tracking) -> None:
        self._activate(event, event.version, tracking)

    @process_event.register
    def _(self, event: Job.VersionCreated, tracking: Tracking) -> None:
        self._insert_version(event.originator_id, event.version, event.spec)
        self._activate(event, event.version, tracking)

    @process_event.register
    def _(self, event: Job.VersionActivated, tracking: Tracking) -> None:
        self._activate(event, event.version, tracking)

    @process_event.register
    def _(self, event: Job.Deleted, tracking: Tracking) -> None:
        self.view.execute(
            "DELETE FROM {schedule_versions} WHERE job_id = %s", (event.originator_id,)
        )
        self.view.execute(
            "UPDATE {schedules} SET job_status = 'deleted', changed_at = %s WHERE job_id = %s",
            (tracking.notification_id, event.originator_id),
        )

    @process_event.register
    def _(self, event: JobRun.Created, tracking: Tracking) -> None:
        slot = getattr(event, "scheduled_for", None)
        if event.trigger != "schedule" or slot is None:
            return
        self.view.execute(
            "UPDATE {schedules} SET last_scheduled_at = GREATEST(last_scheduled_at, %s), "
            "changed_at = %s WHERE job_id = %s",
            (slot, tracking.notification_id, event.job_id),
        )

    # --- helpers ---------------------------------------------------------------------------

    def _insert_version(self, job_id: str, version: int, spec: dict[str, Any]) -> None:
        self.view.execute(
            "INSERT INTO {schedule_versions} VALUES (%s, %s, %s, %s, %s)",
            (job_id, version, *(spec.get(f) for f in SCHEDULE_FIELDS)),
        )

    def _activate(self, event: Any, version: int, tracking: Tracking) -> None:
        """The version becomes active; a different cron or zone starts a new schedule now."""
        self.view.execute(
            "UPDATE {schedules} s SET version = v.version, "
            "since = CASE WHEN s.cron_expression IS DISTINCT FROM v.cron_expression "
            "OR s.cron_timezone IS DISTINCT FROM v.cron_timezone THEN %s ELSE s.since END, "
            "cron_expression = v.cron_expression, cron_timezone = v.cron_timezone, "
            "missed_schedule_policy = v.missed_schedule_policy, changed_at = %s "
            "FROM {schedule_versions} v "
            "WHERE s.job_id = %s AND v.job_id = s.job_id AND v.version = %s",
            (event.timestamp, tracking.notification_id, event.originator_id, version),
        )
