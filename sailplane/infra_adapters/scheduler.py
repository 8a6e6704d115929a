"""The scheduler: `sailplane worker scheduler` (also in-process under `serve`).

Any number of instances may run against one database; one leads. Leadership is a
PostgreSQL session advisory lock held on a dedicated connection: when the leader's
process or connection dies, the server releases the lock and a standby, which retries
every tick, takes over within about one tick interval. Leadership saves work, it is not
what makes a slot fire once: the run of a slot has a deterministic id
(`scheduling.slot_run_id`), so two leaders for a moment, a restart part-way through a
tick or a replayed tick meet on the event store's version check and make one run.

Each tick the leader:
1. reads the schedules that changed since its last tick from the schedules view
   (all of them when it has just become leader) and keeps them in memory;
2. for each active schedule whose next slot is due (its `next_check`), asks the engine
   (`scheduling.due_slots`) which slots to fire, applying `missedSchedulePolicy` to the
   slots it missed (downtime or a pause), and creates one run per slot through the runs
   use case, trigger `schedule`, id `slot_run_id(job, slot)`;
3. remembers the latest fired slot as the job's cursor. The view's `last_scheduled_at`
   (from the runs' own events) is the durable cursor a new leader starts from.

The clock is injected: tests move time and call `step()` instead of waiting.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import psycopg

from sailplane.commands.base import Clock
from sailplane.commands.runs import Runs
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, InvalidValueError, NotFoundError
from sailplane.domain.scheduling import (
    DEFAULT_LATE_TOLERANCE,
    DEFAULT_MISSED_CAP,
    CronSchedule,
    MissedPolicy,
    due_slots,
    slot_run_id,
)
from sailplane.notices import advisory_key
from sailplane.settings import Settings
from sailplane.storage import Database

log = logging.getLogger(__name__)


class Leadership:
    """Leadership of a named role: a session advisory lock on a connection of its own."""

    def __init__(self, database: Database, role: str) -> None:
        self.database = database
        self.key = advisory_key("leader:" + role)
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def leading(self) -> bool:
        return self._conn is not None

    def try_lead(self) -> bool:
        """Whether this instance leads now: keeps the lock, or takes it if it is free."""
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")  # a dead connection has lost the lock
                return True
            except psycopg.Error:
                log.warning("lost the leader connection; standing down")
                self.step_down()
                return False
        try:
            conn = self.database.connect(autocommit=True)
        except psycopg.OperationalError as exc:
            log.warning("cannot reach the database to take leadership: %s", exc)
            return False
        if conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def execute_as_leader(self, query: str, params: tuple[Any, ...]) -> bool:
        """Run a write on the lock's own connection: it happens only while the lock is
        held (a lost connection has lost the lock, and the write with it). False, and
        no longer leading, when the connection is gone."""
        if self._conn is None:
            return False
        try:
            self._conn.execute(query, params)
        except psycopg.OperationalError:
            log.warning("lost the leader connection; standing down")
            self.step_down()
            return False
        return True

    def step_down(self) -> None:
        """Release leadership (closing the connection releases the lock)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):  # broken already: the lock is gone too
                conn.close()


class ScheduleSource(Protocol):
    def changed_schedules(self, after_position: int) -> list[dict[str, Any]]:
        """Schedule rows changed after the given log position, with their `changed_at`."""


class ScheduledRuns(Protocol):
    def create_scheduled_run(
        self, organization_id: str, job_id: str, *, run_id: str, slot: datetime
    ) -> bool:
        """Create the run of a slot; False when it already exists (or the job cannot run)."""


class RunsForScheduler:
    """`ScheduledRuns` through the runs context's one create use case (trigger `schedule`)."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs

    def create_scheduled_run(
        self, organization_id: str, job_id: str, *, run_id: str, slot: datetime
    ) -> bool:
        try:
            self.runs.create_run(
                job_id,
                by=Actor.system("scheduler", organization_id),
                trigger="schedule",
                run_id=run_id,
                scheduled_for=slot,
            )
        except ConflictError as exc:
            if exc.code != "run_exists":
                raise
            return False  # made already: by this scheduler before a restart, or another one
        except (NotFoundError, InvalidValueError) as exc:
            # Deleted meanwhile, or its version has nothing to run: this slot makes no run.
            log.warning("job %s: no run for the slot %s: %s", job_id, slot.isoformat(), exc)
            return False
        return True


@dataclass(frozen=True)
class SchedulerSettings:
    tick_interval: float = 1.0  # seconds between ticks (and between a standby's attempts to lead)
    parallel: int = 4  # runs of a burst of due slots created at once
    missed_cap: int = DEFAULT_MISSED_CAP  # `missedSchedulePolicy: all` fires at most this many
    late_tolerance: timedelta = DEFAULT_LATE_TOLERANCE  # older than this, a slot was missed


@dataclass
class _Job:
    organization_id: str
    schedule: CronSchedule | None  # None: no cron, the job runs only when asked
    policy: MissedPolicy
    active: bool
    cursor: datetime  # the latest slot handled (fired), or when the schedule took effect
    next_check: datetime | None = None

    @property
    def due_at(self) -> datetime | None:
        return self.next_check if self.active and self.schedule is not None else None


@dataclass
class Fired:
    job_id: str
    slot: datetime
    run_id: str
    created: bool


@dataclass
class Scheduler:
    """One tick's work, given the schedules, the runs use case and the clock."""

    source: ScheduleSource
    runs: ScheduledRuns
    clock: Clock
    settings: SchedulerSettings = field(default_factory=SchedulerSettings)
    jobs: dict[str, _Job] = field(default_factory=dict)
    seen_position: int = 0
    earliest: datetime | None = None  # the earliest due slot after the last tick

    def forget(self) -> None:
        """Drop what this instance knew (it is no longer the leader)."""
        self.jobs.clear()
        self.seen_position = 0
        self.earliest = None

    def refresh(self) -> None:
        rows = self.source.changed_schedules(self.seen_position)
        for row in rows:
            self._apply(row)
            self.seen_position = max(self.seen_position, int(row["changed_at"]))

    def _apply(self, row: dict[str, Any]) -> None:
        job_id = row["job_id"]
        if row["job_status"] == "deleted":
            self.jobs.pop(job_id, None)
            return
        known = self.jobs.get(job_id)
        cursor = max(
            c
            for c in (
                row["since"],
                row["last_scheduled_at"],
                known.cursor if known is not None else None,
            )
            if c is not None
        )
        schedule = (
            CronSchedule(row["cron_expression"], row["cron_timezone"] or "UTC")
            if row["cron_expression"]
            else None
        )
        job = _Job(
            organization_id=row["organization_id"],
            schedule=schedule,
            policy=MissedPolicy(row["missed_schedule_policy"], cap=self.settings.missed_cap),
            active=row["job_status"] == "active",
            cursor=cursor,
        )
        job.next_check = schedule.next_fire_time(cursor) if schedule is not None else None
        self.jobs[job_id] = job

    def tick(self) -> list[Fired]:
        """Fire every due slot; return what was fired (created, or found already made)."""
        self.refresh()
        now = self.clock()
        due: list[tuple[str, _Job, datetime]] = []
        earliest: datetime | None = None
        for job_id, job in self.jobs.items():
            due_at = job.due_at
            if due_at is not None and due_at <= now:
                assert job.schedule is not None
                plan = due_slots(
                    job.schedule,
                    cursor=job.cursor,
                    now=now,
                    missed=job.policy,
                    late_tolerance=self.settings.late_tolerance,
                )
                due.extend((job_id, job, slot) for slot in plan.fire)
                job.next_check = due_at = plan.next_check
            if due_at is not None and (earliest is None or due_at < earliest):
                earliest = due_at
        self.earliest = earliest
        fired = [
            Fired(job_id, slot, slot_run_id(job_id, slot), created)
            for (job_id, _, slot), created in zip(due, self._create(due), strict=True)
        ]
        for _, job, slot in due:
            job.cursor = max(job.cursor, slot)
        return fired

    def _create(self, due: list[tuple[str, _Job, datetime]]) -> list[bool]:
        """Create the runs; a burst (many jobs on one minute) in parallel saves."""

        def create(item: tuple[str, _Job, datetime]) -> bool:
            job_id, job, slot = item
            return self.runs.create_scheduled_run(
                job.organization_id, job_id, run_id=slot_run_id(job_id, slot), slot=slot
            )

        if len(due) <= 1 or self.settings.parallel <= 1:
            return [create(item) for item in due]
        with ThreadPoolExecutor(min(self.settings.parallel, len(due))) as pool:
            return list(pool.map(create, due))

    def seconds_to_next_slot(self) -> float | None:
        """How long until the earliest known slot is due (as of the last tick)."""
        if self.earliest is None:
            return None
        return max(0.0, (self.earliest - self.clock()).total_seconds())


class SchedulerWorker:
    """`sailplane worker scheduler`: tick while leading, stand by otherwise."""

    name = "scheduler"

    def __init__(self, scheduler: Scheduler, leadership: Leadership) -> None:
        self.scheduler = scheduler
        self.leadership = leadership

    def step(self) -> list[Fired] | None:
        """One tick if this instance leads (None if it does not)."""
        if not self.leadership.try_lead():
            self.scheduler.forget()
            return None
        return self.scheduler.tick()

    def stand_down(self) -> None:
        self.leadership.step_down()
        self.scheduler.forget()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self.step()
                except psycopg.OperationalError as exc:
                    # The database went away mid-tick: let go, and try again next tick. A run
                    # already created is found by its id when the slot is fired again.
                    log.warning("scheduler tick failed (%s); standing down", exc)
                    self.stand_down()
                # Tick again after the tick interval, or when the next slot is due if sooner.
                interval = self.scheduler.settings.tick_interval
                wait = self.scheduler.seconds_to_next_slot()
                stop.wait(interval if wait is None else min(interval, wait + 0.001))
        finally:
            self.stand_down()


def scheduler_settings(settings: Settings) -> SchedulerSettings:
    """The scheduler's part of the process settings."""
    return SchedulerSettings(
        tick_interval=settings.scheduler_tick,
        missed_cap=settings.scheduler_missed_cap,
        late_tolerance=timedelta(seconds=settings.scheduler_late_tolerance),
    )
