"""Dispatch through Kafka (a tansu broker of this module): every message delivered twice,
and the dispatcher killed with SIGKILL mid-run then restarted. Each attempt executes
exactly once, counted by the executor (its executions table), not by Sailplane's views."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sailplane.domain.base import Actor
from sailplane.domain.ids import new_id
from sailplane.domain.runs import JobVersionSnapshot
from sailplane.infra_adapters.executors.local import EXECUTIONS_TABLE
from sailplane.infra_adapters.kafka import KafkaSettings
from sailplane.storage import Database
from sailplane.system import System, WorkerHost
from tests import services
from tests.runs_support import (
    UNTIL_STOPPED,
    GivenJobVersions,
    executions,
    process_alive,
    until_opened,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.sail]

ORG = "ORGKAFKA01"
MEMBER = Actor("member", "MEMBER0001", ORG)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def broker() -> Iterator[services.Broker]:
    # A broker of its own: consumer inbox positions must come from this test's log only.
    with services.kafka_broker() as b:
        yield b


@pytest.fixture(scope="module")
def system(pg_server: Database, broker: services.Broker) -> Iterator[System]:
    """Projections and the relay in this process; dispatchers run as separate processes."""
    kafka = KafkaSettings(
        broker.bootstrap_servers, partitions=1, session_timeout_ms=2000, heartbeat_interval_ms=500
    )
    with services.fresh_database(pg_server) as database:
        system = System(database, kafka=kafka, job_versions=GivenJobVersions())
        system.prepare()
        stop = threading.Event()
        host = WorkerHost()
        host.start(system.worker("projections"), stop)
        host.start(system.worker("relay"), stop)
        try:
            yield system
        finally:
            stop.set()
            host.join(timeout=10)
            system.close()


@contextmanager
def dispatcher_process(
    system: System, broker: services.Broker, sail: str
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.dispatcher_process",
            system.database.conninfo,
            broker.bootstrap_servers,
            sail,
            "--twice",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def job(system: System, **fields: Any) -> JobVersionSnapshot:
    versions: GivenJobVersions = system.runs.commands.job_versions  # type: ignore[assignment]
    return versions.add(
        ORG,
        JobVersionSnapshot(
            **{"job_id": new_id(), "version": 1, "cluster_id": "LOCAL00001", **fields}
        ),
    )


def create(system: System, spec: JobVersionSnapshot) -> str:
    run_id, position = system.runs.commands.create_run(spec.job_id, by=MEMBER)
    system.wait_for_views(position)
    return run_id


def status(system: System, spec: JobVersionSnapshot, run_id: str) -> dict[str, Any]:
    row = system.runs.view.run(ORG, spec.job_id, run_id)
    assert row is not None
    return row


def test_duplicate_delivery_and_a_killed_dispatcher_execute_each_attempt_once(
    system: System, broker: services.Broker, sail: str, gate: Path
) -> None:
    # the slow run works until the dispatcher has been killed (the test opens the gate)
    quick = job(system, sql_source="SELECT 1")
    slow = job(
        system,
        python={"source": until_opened(gate)},
        max_retries=1,
    )
    with dispatcher_process(system, broker, sail) as first:
        quick_runs = [create(system, quick) for _ in range(3)]
        for run_id in quick_runs:
            wait_until(
                lambda r=run_id: status(system, quick, r)["status"] == "completed",
                what="quick run completed",
            )
        slow_run = create(system, slow)
        wait_until(
            lambda: status(system, slow, slow_run)["status"] == "running", what="slow run running"
        )
        with system.database.connect() as conn:
            pid = conn.execute(
                f"SELECT pid FROM {EXECUTIONS_TABLE} WHERE run_id = %s AND attempt = 1", (slow_run,)
            ).fetchone()[0]
        first.kill()  # SIGKILL, mid-run
        first.wait()
    gate.touch()
    wait_until(
        lambda: not process_alive(pid), timeout=60, what="the attempt's process gone with it"
    )
    with dispatcher_process(system, broker, sail):
        done = wait_until(
            lambda: (r := status(system, slow, slow_run))["status"] == "completed" and r,
            timeout=90,
            what="the slow run completed after the restart",
        )
    assert done["attempt"] == 2
    assert executions(system.database, slow_run) == {1: 1, 2: 1}
    for run_id in quick_runs:
        assert executions(system.database, run_id) == {1: 1}
        assert status(system, quick, run_id)["attempt"] == 1
    reasons = [e["reason"] for e in system.runs.view.events(ORG, slow_run, after=0, limit=100)]
    assert "retry_backoff" in reasons


def test_the_run_rules_through_kafka(
    system: System, broker: services.Broker, sail: str, gate: Path
) -> None:
    bad = job(system, sql_source="SELEC nonsense")
    held_job = job(system, sql_source="SELECT 1")
    long = job(system, python={"source": UNTIL_STOPPED})
    queued = job(
        system,
        python={"source": until_opened(gate)},
        max_concurrent_runs=1,
        concurrency_policy="queue",
    )
    with dispatcher_process(system, broker, sail):
        # Bad SQL fails; a retry runs it again under the same id.
        failed = create(system, bad)
        wait_until(lambda: status(system, bad, failed)["status"] == "failed", what="failed")
        system.wait_for_views(
            system.runs.commands.retry_run(bad.job_id, failed, hold=False, by=MEMBER)
        )
        wait_until(
            lambda: (r := status(system, bad, failed))["status"] == "failed" and r["attempt"] == 2,
            what="failed again",
        )
        # A held run waits until released.
        held, position = system.runs.commands.create_run(held_job.job_id, by=MEMBER, hold=True)
        system.wait_for_views(position)
        assert status(system, held_job, held)["status"] == "pending"
        system.wait_for_views(system.runs.commands.release_run(held_job.job_id, held, by=MEMBER))
        wait_until(lambda: status(system, held_job, held)["status"] == "completed", what="released")
        # Cancel stops a running entry point.
        cancelled = create(system, long)
        wait_until(lambda: status(system, long, cancelled)["status"] == "running", what="running")
        system.wait_for_views(system.runs.commands.cancel_run(long.job_id, cancelled, by=MEMBER))
        wait_until(
            lambda: (
                executions(system.database, cancelled) == {1: 1}
                and _state(system, cancelled) == "cancelled"
            ),
            what="the execution stopped",
        )
        # maxConcurrentRuns 1 with queue: the second run waits, then runs.
        first, second = create(system, queued), create(system, queued)
        wait_until(
            lambda: status(system, queued, second)["status_reason"] == "concurrency_limit",
            what="the second run waiting",
        )
        gate.touch()
        for run_id in (first, second):
            wait_until(
                lambda r=run_id: status(system, queued, r)["status"] == "completed", what="done"
            )
    for run_id, expected in (
        (failed, {1: 1, 2: 1}),
        (held, {1: 1}),
        (first, {1: 1}),
        (second, {1: 1}),
    ):
        assert executions(system.database, run_id) == expected


def _state(system: System, run_id: str) -> str | None:
    with system.database.connect() as conn:
        row = conn.execute(
            f"SELECT state FROM {EXECUTIONS_TABLE} WHERE run_id = %s AND attempt = 1", (run_id,)
        ).fetchone()
    return row[0] if row else None
