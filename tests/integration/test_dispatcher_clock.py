"""The dispatcher's time comes from the system's clock: a test moves it to pass a backoff
or a timeout, with no waiting on the wall clock for either."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sailplane.domain.base import Actor
from sailplane.domain.ids import new_id
from sailplane.domain.runs import JobVersionSnapshot
from sailplane.infra_adapters.executors import FixedTarget
from sailplane.storage import Database
from sailplane.system import System, WorkerHost
from tests import services
from tests.conftest import running_system
from tests.runs_support import UNTIL_STOPPED, GivenJobVersions, executions, wait_until

pytestmark = pytest.mark.sail

ORG = "ORGCLOCK01"
MEMBER = Actor("member", "MEMBER0001", ORG)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, tzinfo=UTC)
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def system(pg_server: Database, sail: str, clock: Clock) -> Iterator[System]:
    with (
        services.fresh_database(pg_server) as database,
        running_system(
            database,
            clock=clock,
            job_versions=GivenJobVersions(),
            run_targets=FixedTarget(sail),
            executor_options={"grace_seconds": 1.0},
        ) as system,
    ):
        stop, host = threading.Event(), WorkerHost()
        host.start(system.worker("dispatcher"), stop)
        try:
            yield system
        finally:
            stop.set()
            host.join(timeout=20)


def start(system: System, **fields: Any) -> tuple[JobVersionSnapshot, str]:
    versions: GivenJobVersions = system.runs.commands.job_versions  # type: ignore[assignment]
    spec = versions.add(
        ORG, JobVersionSnapshot(**{"job_id": new_id(), "version": 1, "cluster_id": "L", **fields})
    )
    run_id, position = system.runs.commands.create_run(spec.job_id, by=MEMBER)
    system.wait_for_views(position)
    return spec, run_id


def row(system: System, spec: JobVersionSnapshot, run_id: str) -> dict[str, Any]:
    found = system.runs.view.run(ORG, spec.job_id, run_id)
    assert found is not None
    return found


def test_a_retry_waits_for_its_backoff_on_the_clock(system: System, clock: Clock) -> None:
    spec, run_id = start(system, sql_source="SELEC nonsense", max_retries=1)
    waiting = wait_until(
        lambda: (r := row(system, spec, run_id))["status_reason"] == "retry_backoff" and r,
        what="the retry waiting",
    )
    assert waiting["status"] == "ready" and waiting["attempt"] == 2
    # Time stands still: the second attempt is not started however long we wait here.
    for _ in range(20):
        assert executions(system.database, run_id) == {1: 1}
        threading.Event().wait(0.05)
    clock.advance(1.0)  # the first backoff
    failed = wait_until(
        lambda: (r := row(system, spec, run_id))["status"] == "failed" and r, what="failed"
    )
    assert failed["attempt"] == 2
    assert executions(system.database, run_id) == {1: 1, 2: 1}


def test_timeout_seconds_counts_on_the_clock(system: System, clock: Clock) -> None:
    spec, run_id = start(system, python={"source": UNTIL_STOPPED}, timeout_seconds=3600)
    wait_until(lambda: row(system, spec, run_id)["status"] == "running", what="running")
    clock.advance(3599)
    threading.Event().wait(0.5)
    assert row(system, spec, run_id)["status"] == "running"
    clock.advance(1)
    ended = wait_until(
        lambda: (r := row(system, spec, run_id))["status"] == "timeout" and r, what="timeout"
    )
    assert ended["status_reason"] == "timed_out"
    started = ended["runner_started_at"]
    assert ended["finished_at"] - started >= timedelta(seconds=3600)
