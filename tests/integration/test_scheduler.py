"""The scheduler against real PostgreSQL: real job events, the schedules view, the runs
use case and the dispatcher's concurrency rule. The clock is simulated: tests move it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sailplane.domain.base import Actor
from sailplane.domain.scheduling import CronSchedule, slot_run_id
from sailplane.http.app import create_app
from sailplane.infra_adapters.scheduler import (
    Leadership,
    RunsForScheduler,
    Scheduler,
    SchedulerWorker,
)
from sailplane.projections.runner import rebuild
from sailplane.projections.schedules import SchedulesProjection
from sailplane.storage import Database
from sailplane.system import System
from tests import services
from tests.conftest import Org, found_org, http_client, local_cluster_id, running_system
from tests.integration.test_jobs_projections import _history, _pending_cluster

START = datetime(2026, 3, 7, 12, tzinfo=UTC)  # the day New York springs forward


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def world(fresh_db: Database, clock: Clock) -> Iterator[tuple[System, Org]]:
    with running_system(fresh_db, clock=clock) as system:
        yield system, found_org(system)


def make_job(system: System, org: Org, key: str, **spec: Any) -> str:
    team, _ = system.identity.commands.create_team(
        name=f"team-{key}", default_role_id=None, by=org.owner
    )
    job_id, position = system.workloads.commands.create_job(
        job_key=key,
        description=None,
        status="active",
        spec={
            "cluster_id": local_cluster_id(system, org.id),
            "config": {"sql": {"source": "SELECT 1"}},
            **spec,
        },
        team_ids=[team],
        by=org.owner,
    )
    assert system.views_reached(position)
    return job_id


def instance(system: System) -> SchedulerWorker:
    scheduler = Scheduler(
        system.workloads.schedules, RunsForScheduler(system.runs.commands), system.clock
    )
    return SchedulerWorker(scheduler, Leadership(system.database, "scheduler"))


def runs_of(system: System, job_id: str) -> list[dict[str, Any]]:
    return system.runs.view.fetch_all(
        "SELECT * FROM {job_runs} WHERE job_id = %s ORDER BY created_at, id", (job_id,)
    )


def catch_up(system: System) -> None:
    assert system.views_reached(system.event_log.head())


def test_two_instances_over_a_simulated_day_with_leader_changes_make_one_run_per_slot(
    world: tuple[System, Org], clock: Clock, fresh_db: Database
) -> None:
    system, org = world
    every_20 = make_job(
        system, org, "ny", cron_expression="*/20 * * * *", cron_timezone="America/New_York"
    )
    nightly = make_job(
        system, org, "berlin", cron_expression="30 2 * * *", cron_timezone="Europe/Berlin"
    )
    # A second instance with its own System (pools, memory, leader connection): another process.
    other_system = System(fresh_db, clock=clock)
    a, b = instance(system), instance(other_system)
    leaders: list[str] = []
    step, steps = timedelta(seconds=45), 0  # under the 60 s after which a slot is missed
    try:
        while clock.now < START + timedelta(days=1):
            clock.now += step
            steps += 1
            # The standby tries first: a leader that let go has been replaced before it returns.
            for worker in sorted((a, b), key=lambda w: w.leadership.leading):
                if worker.step() is not None:
                    name = "a" if worker is a else "b"
                    if not leaders or leaders[-1] != name:
                        leaders.append(name)
            catch_up(system)  # the runs reach the views, as they would between real ticks
            if steps % 240 == 0:  # every three hours the leader goes away
                leader = a if a.leadership.leading else b
                if steps % 480:
                    leader.stand_down()  # a clean shutdown
                else:  # a crash: the server ends the leader's session, and its lock with it
                    backend = leader.leadership._conn.info.backend_pid  # type: ignore[union-attr]
                    with fresh_db.connect(autocommit=True) as admin:
                        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    finally:
        a.stand_down()
        b.stand_down()
        other_system.close()

    # The lead changed hands every three hours (after a crash the server may take a moment
    # to end the session, and the old leader can win the lock back once).
    assert len(leaders) >= 6, leaders
    for job_id, schedule in (
        (every_20, CronSchedule("*/20 * * * *", "America/New_York")),
        (nightly, CronSchedule("30 2 * * *", "Europe/Berlin")),
    ):
        expected = schedule.fire_times_between(START, clock.now)
        runs = runs_of(system, job_id)
        assert sorted(r["id"] for r in runs) == sorted(slot_run_id(job_id, s) for s in expected)
        assert {r["trigger"] for r in runs} == {"schedule"}
        assert (
            system.workloads.schedules.schedule(org.id, job_id)["last_scheduled_at"] == expected[-1]
        )
    # New York skipped 02:00-02:40 that night: one run at 03:00 EDT stands for them.
    assert len(runs_of(system, every_20)) == 72
    # A replayed slot (a restart part-way through a tick) makes no second run.
    slot = CronSchedule("30 2 * * *", "Europe/Berlin").next_fire_time(START)
    assert slot is not None
    again = RunsForScheduler(system.runs.commands).create_scheduled_run(
        org.id, nightly, run_id=slot_run_id(nightly, slot), slot=slot
    )
    assert again is False
    catch_up(system)
    assert len(runs_of(system, nightly)) == 1


def test_missed_slots_after_downtime_follow_each_policy(
    world: tuple[System, Org], clock: Clock
) -> None:
    system, org = world
    jobs = {
        policy: make_job(
            system,
            org,
            f"hourly-{policy}",
            cron_expression="0 * * * *",
            missed_schedule_policy=policy,
        )
        for policy in ("skip", "latest", "all")
    }
    worker = instance(system)
    try:
        clock.now = START + timedelta(hours=1, seconds=5)
        worker.step()  # 13:00 fires on time for all three
        catch_up(system)
        worker.stand_down()  # the scheduler is down from 13:00 to 16:30
        clock.now = START + timedelta(hours=4, minutes=30)
        worker.step()
        catch_up(system)
    finally:
        worker.stand_down()
    hours = {p: sorted(r["id"] for r in runs_of(system, j)) for p, j in jobs.items()}

    def ids(job_id: str, *hs: int) -> list[str]:
        return sorted(slot_run_id(job_id, START.replace(hour=h)) for h in hs)

    assert hours["skip"] == ids(jobs["skip"], 13)
    assert hours["latest"] == ids(jobs["latest"], 13, 16)
    assert hours["all"] == ids(jobs["all"], 13, 14, 15, 16)


def test_a_scheduled_run_read_over_http_carries_its_slot_and_a_manual_run_none(
    world: tuple[System, Org], clock: Clock
) -> None:
    system, org = world
    job_id = make_job(system, org, "hourly-slot", cron_expression="0 * * * *")
    slot = START.replace(hour=13)
    worker = instance(system)
    try:
        clock.now = slot + timedelta(seconds=5)
        worker.step()
        catch_up(system)
    finally:
        worker.stand_down()
    run_id = slot_run_id(job_id, slot)
    with (
        services.api_server(create_app(system)) as base_url,
        http_client(base_url, org.token) as client,
    ):
        scheduled = client.get(f"/workloads/jobs/{job_id}/runs/{run_id}")
        assert scheduled.status_code == 200, scheduled.text
        assert scheduled.json()["trigger"] == "schedule"
        assert datetime.fromisoformat(scheduled.json()["scheduledFor"]) == slot
        manual = client.post(f"/workloads/jobs/{job_id}/runs", json={"hold": True})
        assert manual.status_code == 201, manual.text
        assert manual.json()["scheduledFor"] is None
        listed = client.get(f"/workloads/jobs/{job_id}/runs").json()["items"]
        by_id = {r["id"]: r["scheduledFor"] for r in listed}
        assert by_id == {run_id: scheduled.json()["scheduledFor"], manual.json()["id"]: None}


def test_a_paused_job_fires_nothing_and_resuming_applies_its_policy(
    world: tuple[System, Org], clock: Clock
) -> None:
    system, org = world
    job_id = make_job(
        system, org, "paused", cron_expression="0 * * * *", missed_schedule_policy="latest"
    )
    worker = instance(system)
    try:
        assert system.views_reached(
            system.workloads.commands.update_job(
                job_id, {"status": "paused"}, expected_version=None, by=org.owner
            )
        )
        for hour in (13, 14, 15):
            clock.now = START.replace(hour=hour, second=5)
            worker.step()
        assert runs_of(system, job_id) == []
        clock.now = START.replace(hour=15, minute=40)
        assert system.views_reached(
            system.workloads.commands.update_job(
                job_id, {"status": "active"}, expected_version=None, by=org.owner
            )
        )
        fired = worker.step()
        catch_up(system)
    finally:
        worker.stand_down()
    assert fired is not None and [f.slot for f in fired] == [START.replace(hour=15)]
    assert [r["id"] for r in runs_of(system, job_id)] == [
        slot_run_id(job_id, START.replace(hour=15))
    ]


@pytest.mark.parametrize(
    ("policy", "second_status", "first_status"),
    [
        ("skip", "skipped", "running"),  # RunSkipped: the slot is recorded, nothing starts
        ("replace", "dispatched", "cancelled"),  # the old run is cancelled for the new one
        ("queue", "ready", "running"),  # the new run waits for the old one
    ],
)
def test_a_slot_while_the_previous_run_is_running_follows_the_concurrency_policy(
    world: tuple[System, Org], clock: Clock, policy: str, second_status: str, first_status: str
) -> None:
    system, org = world
    job_id = make_job(
        system,
        org,
        f"busy-{policy}",
        cron_expression="*/10 * * * *",
        concurrency_policy=policy,
        max_concurrent_runs=1,
    )
    dispatcher = Actor.system("dispatcher", org.id)
    worker = instance(system)
    try:
        clock.now = START + timedelta(minutes=10, seconds=1)
        (first,) = worker.step() or []
        catch_up(system)
        claim = system.runs.commands.dispatch_run(first.run_id, executor="local", by=dispatcher)
        assert claim.action == "submit"
        system.runs.commands.record_started(first.run_id, claim.attempt, by=dispatcher)
        catch_up(system)
        clock.now = START + timedelta(minutes=20, seconds=1)
        (second,) = worker.step() or []
        catch_up(system)
        system.runs.commands.dispatch_run(second.run_id, executor="local", by=dispatcher)
        catch_up(system)
    finally:
        worker.stand_down()
    status = {r["id"]: r for r in runs_of(system, job_id)}
    assert status[second.run_id]["status"] == second_status
    assert status[first.run_id]["status"] == first_status
    if policy == "skip":
        assert status[second.run_id]["status_reason"] == "concurrency_skip"
    if policy == "queue":
        assert status[second.run_id]["status_reason"] == "concurrency_limit"


def test_a_scheduled_run_waits_for_its_dependencies(
    world: tuple[System, Org], clock: Clock
) -> None:
    system, org = world
    upstream = make_job(system, org, "upstream")
    downstream = make_job(
        system,
        org,
        "downstream",
        cron_expression="0 * * * *",
        depends_on=[{"jobKey": "upstream"}],
    )
    worker = instance(system)
    try:
        clock.now = START + timedelta(hours=1, seconds=1)
        (fired,) = worker.step() or []
        catch_up(system)
    finally:
        worker.stand_down()
    (waiting,) = runs_of(system, downstream)
    assert (waiting["id"], waiting["status"], waiting["status_reason"]) == (
        fired.run_id,
        "pending",
        "waiting_for_dependencies",
    )
    dispatcher = Actor.system("dispatcher", org.id)
    clock.now += timedelta(minutes=5)  # the upstream job completes a run after that
    run_id, _ = system.runs.commands.create_run(upstream, by=org.owner)
    catch_up(system)
    claim = system.runs.commands.dispatch_run(run_id, executor="local", by=dispatcher)
    system.runs.commands.record_completed(run_id, claim.attempt, by=dispatcher)
    catch_up(system)
    # What the dispatcher does when a run completes: release the runs waiting for its job.
    waiting_ids = system.runs.view.waiting_run_ids(org.id, "upstream")
    assert waiting_ids == [fired.run_id]
    system.runs.commands.release_waiting_runs(org.id, waiting_ids, by=dispatcher, tracking=None)
    catch_up(system)
    (released,) = runs_of(system, downstream)
    assert (released["status"], released["status_reason"]) == ("ready", "dependencies_completed")


def test_the_schedules_view_follows_versions_pauses_and_deletion(
    world: tuple[System, Org], clock: Clock
) -> None:
    system, org = world
    w = system.workloads.commands
    job_id = make_job(system, org, "hourly", cron_expression="0 * * * *")
    row = system.workloads.schedules.schedule(org.id, job_id)
    assert row is not None
    assert (row["cron_expression"], row["job_status"], row["since"]) == (
        "0 * * * *",
        "active",
        START,
    )
    clock.now = START + timedelta(hours=1)
    # A version that changes only the missed-slot policy keeps the schedule's start...
    w.create_job_version(job_id, {"missed_schedule_policy": "all"}, by=org.owner)
    clock.now = START + timedelta(hours=2)
    # ...one that changes the expression starts a new schedule now.
    w.create_job_draft(job_id, {"cron_expression": "*/5 * * * *"}, by=org.owner)
    w.update_job_draft(job_id, {"cron_timezone": "Europe/Berlin"}, by=org.owner)
    position = w.publish_job_draft(job_id, by=org.owner)
    assert system.views_reached(position)
    row = system.workloads.schedules.schedule(org.id, job_id)
    assert row is not None
    assert (row["version"], row["cron_expression"], row["cron_timezone"]) == (
        3,
        "*/5 * * * *",
        "Europe/Berlin",
    )
    assert (row["missed_schedule_policy"], row["since"]) == ("all", START + timedelta(hours=2))
    clock.now = START + timedelta(hours=3)
    assert system.views_reached(w.activate_job_version(job_id, 2, by=org.owner))
    row = system.workloads.schedules.schedule(org.id, job_id)
    assert row is not None and row["cron_expression"] == "0 * * * *"
    assert row["since"] == START + timedelta(hours=3)
    assert system.views_reached(
        w.update_job(job_id, {"status": "paused"}, expected_version=None, by=org.owner)
    )
    assert system.workloads.schedules.schedule(org.id, job_id)["job_status"] == "paused"  # type: ignore[index]
    before = system.workloads.schedules.changed_schedules(0)
    assert system.views_reached(w.delete_job(job_id, by=org.owner))
    assert system.workloads.schedules.schedule(org.id, job_id) is None
    # A scheduler that read the rows before learns of the deletion from the changed rows.
    seen = max(r["changed_at"] for r in before)
    assert [
        (r["job_id"], r["job_status"]) for r in system.workloads.schedules.changed_schedules(seen)
    ] == [(job_id, "deleted")]


def test_the_rebuilt_schedules_view_equals_the_live_one(
    world: tuple[System, Org], clock: Clock
) -> None:
    system, org = world
    _history(
        system, org.owner, local_cluster_id(system, org.id), _pending_cluster(system, org.owner)
    )
    hourly = make_job(system, org, "hourly", cron_expression="0 * * * *")
    worker = instance(system)
    try:
        for hours in (1, 2):
            clock.now = START + timedelta(hours=hours, seconds=3)
            worker.step()
        catch_up(system)
    finally:
        worker.stand_down()

    def snapshot() -> dict[str, list[dict[str, Any]]]:
        with system.pool.connection() as conn, conn.cursor() as cur:
            return {
                t: sorted(cur.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in SchedulesProjection.view_class.tables
            }

    live = snapshot()
    statuses = {r["job_status"] for r in live["schedules"]}
    assert statuses == {"active", "paused", "deleted"}
    assert system.workloads.schedules.schedule(org.id, hourly)[
        "last_scheduled_at"
    ] == START + timedelta(hours=2)
    rebuild(system.event_log, SchedulesProjection, system.pool, batch_size=3)
    assert snapshot() == live
