"""The runs view under the run-queue use cases, on real PostgreSQL without a dispatcher:
the seed-003 status filters, payload containment, the priority order of the sweep, the
expiry sweep, lineage, idempotency keys, and a rebuilt view equal to the live one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sailplane.commands.runs import RunRequest
from sailplane.domain.base import Actor
from sailplane.domain.ids import new_id
from sailplane.domain.runs import JobVersionSnapshot, RunOptions
from sailplane.projections.runner import rebuild
from sailplane.projections.runs import RunFilter, RunsProjection
from sailplane.storage import Database
from sailplane.system import System
from tests.conftest import running_system
from tests.runs_support import GivenJobVersions

ORG = "ORGQUEUE01"
TEAM = "TEAMQUEUE1"
MEMBER = Actor("member", "MEMBER0001", ORG)
FAR = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture(scope="module")
def system(pg_server: Database) -> Iterator[System]:
    from tests import services

    with (
        services.fresh_database(pg_server) as database,
        running_system(database, job_versions=GivenJobVersions()) as system,
    ):
        yield system


def job(system: System) -> JobVersionSnapshot:
    versions: GivenJobVersions = system.runs.commands.job_versions  # type: ignore[assignment]
    return versions.add(
        ORG,
        JobVersionSnapshot(
            job_id=new_id(),
            version=1,
            cluster_id="LOCAL00001",
            job_key=new_id().lower(),
            sql_source="SELECT 1",
            team_ids=(TEAM,),
        ),
    )


def create(system: System, spec: JobVersionSnapshot, **options: Any) -> tuple[str, int]:
    not_before = options.pop("not_before", FAR)
    run_id, position = system.runs.commands.create_run(
        spec.job_id, by=MEMBER, options=RunOptions(**options), not_before=not_before
    )
    system.wait_for_views(position)
    return run_id, position


def listed(system: System, **where: Any) -> list[str]:
    rows = system.runs.view.filtered_runs(
        ORG, RunFilter(team_ids=[TEAM], **where), now=datetime.now(UTC), limit=500
    )
    return [r["id"] for r in rows]


def test_payload_containment_and_queue_status_filters(system: System) -> None:
    spec = job(system)
    a, _ = create(system, spec, payload={"tenant": "a", "n": [1, 2]})
    b, _ = create(system, spec, payload={"tenant": "b"})
    assert listed(system, job_id=spec.job_id, payload={"tenant": "a"}) == [a]
    assert listed(system, job_id=spec.job_id, payload={"n": [2]}) == [a]
    assert listed(system, job_id=spec.job_id, queue_statuses=("delayed",)) == [b, a]
    system.wait_for_views(system.runs.commands.pause_run(spec.job_id, a, by=MEMBER))
    assert listed(system, job_id=spec.job_id, queue_statuses=("waiting",)) == [a]
    system.wait_for_views(system.runs.commands.cancel_run(spec.job_id, b, by=MEMBER))
    assert listed(system, job_id=spec.job_id, queue_statuses=("canceled",)) == [b]
    assert listed(system, job_id=spec.job_id, queue_statuses=("queued", "expired")) == []


def test_the_sweep_takes_the_highest_priority_first_and_expiry_finds_late_runs(
    system: System,
) -> None:
    spec = job(system)
    now = datetime.now(UTC)
    low, _ = create(system, spec, priority=1, not_before=now)
    high, _ = create(system, spec, priority=8, not_before=now)
    due = [i for i in system.runs.view.due_run_ids(now + timedelta(seconds=1)) if i in (low, high)]
    assert due == [high, low]
    late, position = system.runs.commands.create_run(
        spec.job_id, by=MEMBER, not_before=FAR, expires_at=FAR + timedelta(seconds=1)
    )
    system.wait_for_views(position)
    expiring = [r["id"] for r in system.runs.view.expirable_runs(FAR + timedelta(seconds=2))]
    assert late in expiring and low not in expiring


def test_idempotency_keys_are_per_job_and_a_batch_shares_one(system: System) -> None:
    spec, other = job(system), job(system)
    first, _ = create(system, spec, idempotency_key="k")
    again, position = create(system, spec, idempotency_key="k")
    assert (again, position) == (first, 0)
    assert create(system, other, idempotency_key="k")[0] != first
    created, position = system.runs.commands.create_runs(
        [RunRequest(spec.job_id, RunOptions(idempotency_key="b"))] * 2
        + [RunRequest(spec.job_id, RunOptions(idempotency_key="k"))],
        batch_id="BATCH00001",
        trigger="api",
        by=MEMBER,
    )
    system.wait_for_views(position)
    assert created[0][1] and created[1] == (created[0][0], False)
    assert created[2] == (first, False)
    assert listed(system, batch_id="BATCH00001") == [created[0][0]]


def test_lineage_and_a_rebuilt_view_equal_to_the_live_one(system: System) -> None:
    spec = job(system)
    first, _ = create(system, spec, payload={"x": 1}, idempotency_key="lineage")
    chain = [first]
    for _ in range(2):
        system.wait_for_views(system.runs.commands.cancel_run(spec.job_id, chain[-1], by=MEMBER))
        replay, position = system.runs.commands.replay_run(spec.job_id, chain[-1], by=MEMBER)
        system.wait_for_views(position)
        chain.append(replay)
    assert [r["id"] for r in system.runs.view.lineage(ORG, chain[1])] == chain
    rows = [system.runs.view.run_by_id(ORG, i) for i in chain]
    assert [r["lineage_depth"] for r in rows if r] == [0, 1, 2]
    last = chain[-1]
    for change in (
        lambda: system.runs.commands.pause_run(spec.job_id, last, by=MEMBER),
        lambda: system.runs.commands.reschedule_run(spec.job_id, last, FAR, by=MEMBER),
        lambda: system.runs.commands.resume_run(spec.job_id, last, by=MEMBER),
        lambda: system.runs.commands.restart_run(spec.job_id, last, priority=5, by=MEMBER),
        lambda: system.runs.commands.reset_idempotency_key(spec.job_id, first, by=MEMBER),
    ):
        system.wait_for_views(change())

    def snapshot() -> dict[str, list[Any]]:
        with system.pool.connection() as conn:
            return {
                table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
                for table in RunsProjection.view_class.tables
            }

    live = snapshot()
    rebuild(system.event_log, RunsProjection, system.pool, batch_size=3)
    assert snapshot() == live
