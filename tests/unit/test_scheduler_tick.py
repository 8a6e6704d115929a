"""The scheduler's tick over schedule rows and a run store, with a simulated clock.

The rows and the store here are plain dicts (the tick's logic alone); the integration
test drives the same tick against the real schedules view and runs use case.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sailplane.domain.scheduling import CronSchedule, slot_run_id
from sailplane.infra_adapters.scheduler import Scheduler


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@dataclass
class Rows:
    """Schedule rows as the view holds them; the run store moves `last_scheduled_at`."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    position: int = 0

    def put(self, job_id: str, **changes: Any) -> None:
        self.position += 1
        row = self.rows.setdefault(
            job_id,
            {
                "job_id": job_id,
                "organization_id": "ORG",
                "job_status": "active",
                "cron_expression": None,
                "cron_timezone": "UTC",
                "missed_schedule_policy": "skip",
                "since": None,
                "last_scheduled_at": None,
            },
        )
        row.update(changes, changed_at=self.position)

    def changed_schedules(self, after_position: int) -> list[dict[str, Any]]:
        return sorted(
            (dict(r) for r in self.rows.values() if r["changed_at"] > after_position),
            key=lambda r: r["changed_at"],
        )


@dataclass
class Store:
    """Runs by id: a second create of an id is refused, like the event store's version check."""

    rows: Rows
    runs: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create_scheduled_run(
        self, organization_id: str, job_id: str, *, run_id: str, slot: datetime
    ) -> bool:
        with self.lock:  # the scheduler creates a burst's runs from several threads
            return self._create(job_id, run_id, slot)

    def _create(self, job_id: str, run_id: str, slot: datetime) -> bool:
        if run_id in self.runs:
            return False
        self.runs[run_id] = (job_id, slot)
        last = self.rows.rows[job_id]["last_scheduled_at"]
        self.rows.put(job_id, last_scheduled_at=slot if last is None else max(last, slot))
        return True


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_two_schedulers_taking_turns_over_a_day_make_one_run_per_slot() -> None:
    start = utc(2026, 3, 7, 12)  # across New York's spring-forward night
    rows = Rows()
    rows.put("NY", cron_expression="*/20 * * * *", cron_timezone="America/New_York", since=start)
    rows.put("BER", cron_expression="30 2 * * *", cron_timezone="Europe/Berlin", since=start)
    store, clock = Store(rows), Clock(start)
    a, b = Scheduler(rows, store, clock), Scheduler(rows, store, clock)
    leader, standby = a, b
    step = timedelta(seconds=7)
    while clock.now < start + timedelta(days=1):
        clock.now += step
        leader.tick()
        if clock.now.minute == 0 and clock.now.second < 7:  # a leader change every hour
            leader.forget()
            leader, standby = standby, leader
        if clock.now.hour == 5 and clock.now.minute == 0 and clock.now.second < 7:
            standby.tick()  # two leaders for a moment

    end = clock.now
    for job_id, schedule in (
        ("NY", CronSchedule("*/20 * * * *", "America/New_York")),
        ("BER", CronSchedule("30 2 * * *", "Europe/Berlin")),
    ):
        expected = schedule.fire_times_between(start, end)
        made = sorted(slot for job, slot in store.runs.values() if job == job_id)
        assert made == expected
        assert set(store.runs) >= {slot_run_id(job_id, s) for s in expected}
    # 24 hours of New York slots (02:00-02:40 did not exist: one slot at 03:00), one in Berlin.
    assert len(store.runs) == 3 * 24 + 1


def test_a_paused_job_fires_nothing_and_resuming_applies_its_policy() -> None:
    start = utc(2026, 5, 1, 8, 0, 30)
    rows = Rows()
    rows.put("J", cron_expression="0 * * * *", missed_schedule_policy="latest", since=start)
    store, clock = Store(rows), Clock(start)
    scheduler = Scheduler(rows, store, clock)
    clock.now = utc(2026, 5, 1, 9, 0, 10)
    assert [f.slot for f in scheduler.tick()] == [utc(2026, 5, 1, 9)]
    rows.put("J", job_status="paused")
    for hour in (10, 11, 12):
        clock.now = utc(2026, 5, 1, hour, 0, 5)
        assert scheduler.tick() == []
    clock.now = utc(2026, 5, 1, 12, 20)
    rows.put("J", job_status="active")
    assert [f.slot for f in scheduler.tick()] == [utc(2026, 5, 1, 12)]  # latest of 10, 11, 12


def test_a_new_schedule_starts_when_its_version_is_activated() -> None:
    start = utc(2026, 5, 1, 8)
    rows = Rows()
    rows.put("J", cron_expression="0 * * * *", missed_schedule_policy="all", since=start)
    store, clock = Store(rows), Clock(utc(2026, 5, 1, 9, 0, 5))
    scheduler = Scheduler(rows, store, clock)
    scheduler.tick()
    clock.now = utc(2026, 5, 1, 9, 40)
    rows.put("J", cron_expression="*/15 * * * *", since=clock.now)  # 9:15 and 9:30 never fire
    assert scheduler.tick() == []
    clock.now = utc(2026, 5, 1, 9, 45, 1)
    assert [f.slot for f in scheduler.tick()] == [utc(2026, 5, 1, 9, 45)]
    rows.put("J", job_status="deleted")
    clock.now = utc(2026, 5, 1, 11)
    assert scheduler.tick() == []
    assert scheduler.jobs == {}


def test_the_worker_wakes_for_the_next_slot_before_the_tick_interval() -> None:
    rows = Rows()
    rows.put("J", cron_expression="*/5 * * * *", since=utc(2026, 5, 1))
    scheduler = Scheduler(rows, Store(rows), Clock(utc(2026, 5, 1, 0, 4, 59, 600000)))
    scheduler.tick()
    assert scheduler.seconds_to_next_slot() == 0.4


def test_a_burst_of_due_slots_is_created_in_parallel_once_each() -> None:
    start = utc(2026, 5, 1)
    rows = Rows()
    for i in range(50):
        rows.put(f"J{i}", cron_expression="0 * * * *", since=start)
    stale = copy.deepcopy(rows)  # what a second leader read a moment before
    store, clock = Store(rows), Clock(utc(2026, 5, 1, 1, 0, 1))
    fired = Scheduler(rows, store, clock).tick()
    assert len(fired) == 50 and all(f.created for f in fired)
    again = Scheduler(stale, store, clock).tick()
    assert len(again) == 50 and not any(f.created for f in again)
    assert len(store.runs) == 50


def test_a_job_without_a_cron_expression_never_fires() -> None:
    rows = Rows()
    rows.put("J", since=utc(2026, 5, 1))
    scheduler = Scheduler(rows, Store(rows), Clock(utc(2026, 6, 1)))
    assert scheduler.tick() == [] and scheduler.seconds_to_next_slot() is None
