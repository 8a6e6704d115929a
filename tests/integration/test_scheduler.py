"""The scheduler against real PostgreSQL: real job events and the schedules view.
The clock is simulated: tests move it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sailplane.projections.runner import rebuild
from sailplane.projections.schedules import SchedulesProjection
from sailplane.storage import Database
from sailplane.system import System
from tests.conftest import Org, found_org, local_cluster_id, running_system
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
    team, _ = system.identity.create_team(name=f"team-{key}", default_role_id=None, by=org.owner)
    job_id, position = system.workloads.create_job(
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
    assert system.wait_for_views(position)
    return job_id


def test_the_schedules_view_follows_versions_pauses_and_deletion(
    world: tuple[System, Org], clock: Clock
) -> None:
    system, org = world
    w = system.workloads
    job_id = make_job(system, org, "hourly", cron_expression="0 * * * *")
    row = system.schedules.schedule(org.id, job_id)
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
    assert system.wait_for_views(position)
    row = system.schedules.schedule(org.id, job_id)
    assert row is not None
    assert (row["version"], row["cron_expression"], row["cron_timezone"]) == (
        3,
        "*/5 * * * *",
        "Europe/Berlin",
    )
    assert (row["missed_schedule_policy"], row["since"]) == ("all", START + timedelta(hours=2))
    clock.now = START + timedelta(hours=3)
    assert system.wait_for_views(w.activate_job_version(job_id, 2, by=org.owner))
    row = system.schedules.schedule(org.id, job_id)
    assert row is not None and row["cron_expression"] == "0 * * * *"
    assert row["since"] == START + timedelta(hours=3)
    assert system.wait_for_views(
        w.update_job(job_id, {"status": "paused"}, expected_version=None, by=org.owner)
    )
    assert system.schedules.schedule(org.id, job_id)["job_status"] == "paused"  # type: ignore[index]
    before = system.schedules.changed_schedules(0)
    assert system.wait_for_views(w.delete_job(job_id, by=org.owner))
    assert system.schedules.schedule(org.id, job_id) is None
    # A scheduler that read the rows before learns of the deletion from the changed rows.
    seen = max(r["changed_at"] for r in before)
    assert [(r["job_id"], r["job_status"]) for r in system.schedules.changed_schedules(seen)] == [
        (job_id, "deleted")
    ]


def test_the_rebuilt_schedules_view_equals_the_live_one(world: tuple[System, Org]) -> None:
    system, org = world
    _history(
        system, org.owner, local_cluster_id(system, org.id), _pending_cluster(system, org.owner)
    )
    make_job(system, org, "hourly", cron_expression="0 * * * *")

    def snapshot() -> dict[str, list[dict[str, Any]]]:
        with system.pool.connection() as conn, conn.cursor() as cur:
            return {
                t: sorted(cur.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in SchedulesProjection.view_class.tables
            }

    live = snapshot()
    assert {r["job_status"] for r in live["schedules"]} == {"active", "paused", "deleted"}
    rebuild(system.event_log, SchedulesProjection, system.pool, batch_size=3)
    assert snapshot() == live
