"""The dispatcher and its monitor on real PostgreSQL and a real Sail server, driven
through the run use cases: runs complete, fail and retry, time out, are cancelled, wait
for a concurrency slot, and survive the dispatcher's death with each attempt executed once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql.connect.session import SparkSession

from sailplane.domain.base import Actor
from sailplane.domain.ids import new_id
from sailplane.domain.runs import JobVersionSnapshot, RunOptions
from sailplane.infra_adapters.executors import FixedTarget
from sailplane.infra_adapters.executors.local import EXECUTIONS_TABLE
from sailplane.infra_adapters.executors.targets import InfraRunTargets
from sailplane.projections.runner import rebuild
from sailplane.projections.runs import RunsProjection
from sailplane.storage import Database
from sailplane.system import System, WorkerHost
from tests.conftest import found_org, local_cluster_id, running_system
from tests.runs_support import (
    UNTIL_STOPPED,
    GivenJobVersions,
    executions,
    process_alive,
    until_opened,
    wait_until,
)

pytestmark = pytest.mark.sail

ORG = "ORGRUNS001"
MEMBER = Actor("member", "MEMBER0001", ORG)


@pytest.fixture(scope="module")
def runs_db(pg_server: Database) -> Iterator[Database]:
    from tests import services

    with services.fresh_database(pg_server) as database:
        yield database


@pytest.fixture(scope="module")
def system(runs_db: Database, sail: str) -> Iterator[System]:
    with running_system(
        runs_db,
        job_versions=GivenJobVersions(),
        run_targets=FixedTarget(sail),
        executor_options={"grace_seconds": 1.0, "lease_seconds": 2.0, "heartbeat_seconds": 0.2},
    ) as system:
        yield system


@contextmanager
def dispatcher(system: System) -> Iterator[Any]:
    stop = threading.Event()
    host = WorkerHost()
    worker = system.worker("dispatcher")
    host.start(worker, stop)
    try:
        yield worker
    finally:
        stop.set()
        host.join(timeout=15)


@pytest.fixture
def running(system: System) -> Iterator[Any]:
    with dispatcher(system) as worker:
        yield worker


def job(system: System, **fields: Any) -> JobVersionSnapshot:
    versions: GivenJobVersions = system.runs.commands.job_versions  # type: ignore[assignment]
    return versions.add(
        ORG,
        JobVersionSnapshot(
            **{
                "job_id": new_id(),
                "version": 1,
                "cluster_id": "LOCAL00001",
                "job_key": new_id().lower(),
                **fields,
            }
        ),
    )


def create(system: System, spec: JobVersionSnapshot, **kwargs: Any) -> str:
    run_id, position = system.runs.commands.create_run(spec.job_id, by=MEMBER, **kwargs)
    system.wait_for_views(position)
    return run_id


def row(system: System, spec: JobVersionSnapshot, run_id: str) -> dict[str, Any]:
    found = system.runs.view.run(ORG, spec.job_id, run_id)
    assert found is not None
    return found


def until_status(
    system: System, spec: JobVersionSnapshot, run_id: str, *statuses: str, timeout: float = 60
) -> dict[str, Any]:
    return wait_until(
        lambda: (r := row(system, spec, run_id))["status"] in statuses and r,
        timeout=timeout,
        what=f"run {run_id} in {statuses}",
    )


def pid_of(system: System, run_id: str, attempt: int = 1) -> int:
    def pid() -> int | None:
        with system.database.connect() as conn:
            found = conn.execute(
                f"SELECT pid FROM {EXECUTIONS_TABLE} WHERE run_id = %s AND attempt = %s",
                (run_id, attempt),
            ).fetchone()
        return found[0] if found else None

    return wait_until(pid, what="a process")


def test_select_1_completes_with_logs_and_events(system: System, running: Any) -> None:
    spec = job(system, sql_source="SELECT 1 AS one")
    run_id = create(system, spec)
    done = until_status(system, spec, run_id, "completed")
    assert done["runner_started_at"] and done["runner_completed_at"] and done["finished_at"]
    assert [r["line"] for r in system.runs.logs.page(run_id)][:2] == ["one", "1"]
    types = [e["type"] for e in system.runs.view.events(ORG, run_id, after=0, limit=100)]
    assert types == ["created", "dispatched", "started", "completed"]
    assert executions(system.database, run_id) == {1: 1}


def test_bad_sql_retries_with_backoff_then_fails(system: System, running: Any) -> None:
    spec = job(system, sql_source="SELEC nonsense", max_retries=1)
    run_id = create(system, spec)
    failed = until_status(system, spec, run_id, "failed")
    assert failed["attempt"] == 2 and failed["status_reason"] == "execution_failed"
    assert "SELEC" in failed["status_message"]
    reasons = [e["reason"] for e in system.runs.view.events(ORG, run_id, after=0, limit=100)]
    assert "retry_backoff" in reasons
    assert executions(system.database, run_id) == {1: 1, 2: 1}
    # A manual retry runs it again under the same id.
    system.wait_for_views(
        system.runs.commands.retry_run(spec.job_id, run_id, hold=False, by=MEMBER)
    )
    again = until_status(system, spec, run_id, "failed")
    # Automatic retries are counted afresh after a manual one: attempts 3 and 4.
    assert again["attempt"] == 4 and again["trigger"] == "retry"


def test_held_run_waits_until_released(system: System, running: Any) -> None:
    spec = job(system, sql_source="SELECT 1")
    run_id = create(system, spec, hold=True)
    assert (row(system, spec, run_id)["status"], row(system, spec, run_id)["status_reason"]) == (
        "pending",
        "held",
    )
    system.wait_for_views(system.runs.commands.release_run(spec.job_id, run_id, by=MEMBER))
    until_status(system, spec, run_id, "completed")


def test_timeout_stops_the_work(system: System, running: Any) -> None:
    spec = job(system, python={"source": UNTIL_STOPPED}, timeout_seconds=2)
    run_id = create(system, spec)
    pid = pid_of(system, run_id)
    ended = until_status(system, spec, run_id, "timeout", timeout=30)
    assert ended["status_reason"] == "timed_out"
    wait_until(lambda: not process_alive(pid), timeout=60, what="the process gone")


def test_cancel_stops_a_running_entry_point(system: System, running: Any) -> None:
    spec = job(system, python={"source": UNTIL_STOPPED})
    run_id = create(system, spec)
    until_status(system, spec, run_id, "running")
    pid = pid_of(system, run_id)
    system.wait_for_views(system.runs.commands.cancel_run(spec.job_id, run_id, by=MEMBER))
    assert row(system, spec, run_id)["status"] == "cancelled"
    wait_until(lambda: not process_alive(pid), timeout=60, what="the process gone")


@pytest.fixture
def warm(system: System) -> Iterator[Any]:
    """A dispatcher whose local executor keeps two warm children, filled by a first run."""
    options = system.executor_options
    system.executor_options = {**options, "warm_children": 2}
    try:
        with dispatcher(system) as worker:
            local = worker.dispatcher.executors["local"]
            spec = job(system, sql_source="SELECT 1")
            until_status(system, spec, create(system, spec), "completed")
            wait_until(lambda: len(local.warm.idle_pids()) == 2, what="two warm children")
            yield local
    finally:
        system.executor_options = options


def test_a_warm_started_run_times_out_and_is_cancelled_as_before(system: System, warm: Any) -> None:
    timed = job(system, python={"source": UNTIL_STOPPED}, timeout_seconds=2)
    idle = set(warm.warm.idle_pids())
    run_id = create(system, timed)
    pid = pid_of(system, run_id)
    assert pid in idle
    ended = until_status(system, timed, run_id, "timeout", timeout=30)
    assert ended["status_reason"] == "timed_out"
    wait_until(lambda: not process_alive(pid), timeout=60, what="the process gone")

    wait_until(lambda: len(warm.warm.idle_pids()) == 2, what="the pool refilled")
    idle = set(warm.warm.idle_pids())
    cancelled = job(system, python={"source": UNTIL_STOPPED})
    run_id = create(system, cancelled)
    until_status(system, cancelled, run_id, "running")
    pid = pid_of(system, run_id)
    assert pid in idle
    system.wait_for_views(system.runs.commands.cancel_run(cancelled.job_id, run_id, by=MEMBER))
    assert row(system, cancelled, run_id)["status"] == "cancelled"
    wait_until(lambda: not process_alive(pid), timeout=60, what="the process gone")
    assert executions(system.database, run_id) == {1: 1}


def test_queue_policy_waits_for_a_slot(system: System, running: Any, gate: Path) -> None:
    spec = job(
        system,
        python={"source": until_opened(gate)},
        max_concurrent_runs=1,
        concurrency_policy="queue",
    )
    first = create(system, spec)
    until_status(system, spec, first, "running")
    second = create(system, spec)
    waiting = wait_until(
        lambda: (r := row(system, spec, second))["status_reason"] == "concurrency_limit" and r
    )
    assert waiting["status"] == "ready"
    gate.touch()
    until_status(system, spec, first, "completed")
    until_status(system, spec, second, "completed")


def test_a_backlog_starts_each_queue_by_priority_then_age(system: System) -> None:
    """Runs made while no dispatcher runs: its event loop meets their creations oldest
    first, yet each (job, key) queue starts its highest priority first, then its oldest."""
    spec = job(system, sql_source="SELECT 1", concurrency_policy="queue", max_concurrent_runs=1)
    made = [
        (
            key,
            priority,
            create(system, spec, options=RunOptions(priority=priority, concurrency_key=key)),
        )
        for key, priority in (("a", 1), ("b", 2), ("a", 5), ("a", 3), ("b", 2), ("b", 7))
    ]
    with dispatcher(system):
        done = {run_id: until_status(system, spec, run_id, "completed") for _, _, run_id in made}
    for key in ("a", "b"):
        ours = [(p, run_id) for k, p, run_id in made if k == key]
        started = sorted(ours, key=lambda pr: done[pr[1]]["dispatched_at"])
        expected = sorted(ours, key=lambda pr: -pr[0])  # stable: the older first on a tie
        assert started == expected, (key, started)


class SlotFreedAfterTheHeadWaits:
    """The run use cases, where the monitor records the active run's completion (outside
    the claim lock) right after the queue's head was told to wait: the interleaving a fast
    drain met, forced here."""

    def __init__(self, system: System, head: str, active: str) -> None:
        self.system, self.head, self.active = system, head, active
        self.commands = system.runs.commands

    def __getattr__(self, name: str) -> Any:
        return getattr(self.commands, name)

    def dispatch_run(self, run_id: str, **kwargs: Any) -> Any:
        outcome = self.commands.dispatch_run(run_id, **kwargs)
        if run_id == self.head and outcome.action == "wait":
            by = Actor.system("executor", ORG)
            self.commands.record_started(self.active, 1, by=by)
            self.system.wait_for_views(self.commands.record_completed(self.active, 1, by=by))
        return outcome


def test_a_run_behind_a_waiting_head_is_not_claimed_when_a_slot_frees_meanwhile(
    system: System,
) -> None:
    """The event loop meets a later, lower-priority run while the queue's head waits for
    the one slot; the active run completes between the head's decision and this one's:
    the slot stays for the head (a 2,000-run drain claimed such a run out of order)."""
    spec = job(system, sql_source="SELECT 1", concurrency_policy="queue", max_concurrent_runs=1)
    keyed = RunOptions(concurrency_key="k")
    active = create(system, spec, options=keyed)
    system.wait_for_views(
        system.runs.commands.dispatch_run(
            active, executor="local", by=Actor.system("dispatcher", ORG)
        ).position
    )
    head = create(system, spec, options=RunOptions(priority=5, concurrency_key="k"))
    later = create(system, spec, options=RunOptions(priority=1, concurrency_key="k"))
    claims = system.worker("dispatcher").dispatcher
    claims.runs = SlotFreedAfterTheHeadWaits(system, head, active)  # type: ignore[assignment]

    assert claims.claim(later) == "wait"
    assert row(system, spec, later)["status"] == "ready"
    with dispatcher(system):
        done = {r: until_status(system, spec, r, "completed") for r in (head, later)}
    assert done[head]["dispatched_at"] < done[later]["dispatched_at"]


class StaleHeadFirst:
    """The runs view, answering a queue's head read before that run was cancelled once:
    the head another claim changed between the view's read and this claim."""

    def __init__(self, view: Any, stale: str) -> None:
        self.view, self.stale = view, [stale]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.view, name)

    def queue_head(self, *args: Any) -> str | None:
        return self.stale.pop() if self.stale else self.view.queue_head(*args)


def test_a_head_no_longer_claimable_is_passed_over_for_the_next_head(system: System) -> None:
    """The claim of a later run finds the queue's head gone: the next head starts, not the
    later run (it fell back to the run whose event it was handling)."""
    spec = job(system, sql_source="SELECT 1", concurrency_policy="queue", max_concurrent_runs=1)
    gone = create(system, spec, options=RunOptions(priority=9))
    head = create(system, spec, options=RunOptions(priority=5))
    later = create(system, spec, options=RunOptions(priority=1))
    by = Actor.system("test", ORG)
    system.wait_for_views(system.runs.commands.cancel_run(spec.job_id, gone, by=by))
    claims = system.worker("dispatcher").dispatcher
    claims.view = StaleHeadFirst(claims.view, gone)  # type: ignore[assignment]

    assert claims.claim(later) == "submit"
    system.wait_for_views(system.event_log.head())
    assert row(system, spec, head)["status"] in ("dispatched", "running", "completed")
    assert row(system, spec, later)["status"] == "ready"
    with dispatcher(system):
        done = {r: until_status(system, spec, r, "completed") for r in (head, later)}
    assert done[head]["dispatched_at"] < done[later]["dispatched_at"]


def test_skip_and_replace_policies(system: System, running: Any) -> None:
    skip = job(
        system, python={"source": UNTIL_STOPPED}, max_concurrent_runs=1, concurrency_policy="skip"
    )
    first = create(system, skip)
    until_status(system, skip, first, "running")
    second = create(system, skip)
    assert until_status(system, skip, second, "skipped")["status_reason"] == "concurrency_skip"
    replace = job(
        system,
        python={"source": UNTIL_STOPPED},
        max_concurrent_runs=1,
        concurrency_policy="replace",
    )
    old = create(system, replace)
    until_status(system, replace, old, "running")
    new = create(system, replace)
    assert until_status(system, replace, old, "cancelled")["status_reason"] == "replaced"
    until_status(system, replace, new, "running")
    for spec, run_id in ((skip, first), (replace, new)):
        system.wait_for_views(system.runs.commands.cancel_run(spec.job_id, run_id, by=MEMBER))


def test_a_dead_dispatcher_s_attempt_is_retried_once(system: System) -> None:
    spec = job(system, python={"source": UNTIL_STOPPED}, max_retries=1)
    with dispatcher(system):
        run_id = create(system, spec)
        until_status(system, spec, run_id, "running")
        pid = pid_of(system, run_id)
    # The worker stopped and took its child with it; a new one finds the attempt lost.
    wait_until(lambda: not process_alive(pid), timeout=60, what="the process gone")
    with dispatcher(system):
        retried = wait_until(
            lambda: (
                (r := row(system, spec, run_id))["attempt"] == 2 and r["status"] == "running" and r
            ),
            what="attempt 2 running",
        )
        assert retried["trigger"] == "manual"
        system.wait_for_views(system.runs.commands.cancel_run(spec.job_id, run_id, by=MEMBER))
    assert executions(system.database, run_id) == {1: 1, 2: 1}
    reasons = [e["reason"] for e in system.runs.view.events(ORG, run_id, after=0, limit=100)]
    assert "retry_backoff" in reasons


def test_an_organizations_local_cluster_runs_work_on_its_own_sail_server(system: System) -> None:
    org = found_org(system, "Runs Targets")
    targets = InfraRunTargets(system.infra.commands)
    target = targets.target(org.id, local_cluster_id(system, org.id))
    assert target is not None and target.executor == "local"
    assert target.spark_remote is not None and target.spark_remote.startswith("sc://127.0.0.1:")
    assert targets.target(org.id, "NOSUCHCLUS") is None
    assert targets.target("OTHERORG01", local_cluster_id(system, org.id)) is None

    session = SparkSession.builder.remote(target.spark_remote).create()
    try:
        assert session.sql("SELECT 1 AS one").collect()[0].one == 1
    finally:
        session.stop()


def test_a_run_waits_for_its_dependencies_then_runs(system: System, running: Any) -> None:
    upstream = job(system, sql_source="SELECT 1")
    downstream = job(system, sql_source="SELECT 2", depends_on=(upstream.job_key,))
    waiting = create(system, downstream)
    first = row(system, downstream, waiting)
    assert (first["status"], first["status_reason"]) == ("pending", "waiting_for_dependencies")
    until_status(system, upstream, create(system, upstream), "completed")
    released = until_status(system, downstream, waiting, "completed")
    reasons = [e["reason"] for e in system.runs.view.events(ORG, waiting, after=0, limit=100)]
    assert reasons[:2] == ["waiting_for_dependencies", "dependencies_completed"]
    assert released["status_reason"] == "succeeded"
    # Completed since the downstream job's last run: a new downstream run waits again.
    again = create(system, downstream)
    assert row(system, downstream, again)["status"] == "pending"
    system.wait_for_views(system.runs.commands.cancel_run(downstream.job_id, again, by=MEMBER))


def test_the_rebuilt_runs_view_equals_the_live_one(system: System, running: Any) -> None:
    spec = job(system, sql_source="SELECT 1")
    done = create(system, spec)
    held = create(system, spec, hold=True)
    until_status(system, spec, done, "completed")
    system.wait_for_views(system.runs.commands.cancel_run(spec.job_id, held, by=MEMBER))
    system.wait_for_views(system.runs.commands.retry_run(spec.job_id, held, hold=True, by=MEMBER))

    def snapshot() -> dict[str, list[dict[str, Any]]]:
        with system.pool.connection() as conn, conn.cursor() as cur:
            return {
                table: sorted(cur.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
                for table in RunsProjection.view_class.tables
            }

    live = snapshot()
    assert len(live["job_runs"]) >= 2 and len(live["job_run_events"]) >= 6
    rebuild(system.event_log, RunsProjection, system.pool, batch_size=3)
    assert snapshot() == live


def test_the_works_report_is_applied_again_when_it_loses_a_race_with_the_dispatcher(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The work's first call and the dispatcher both record that a dispatched attempt
    started: the work's result, saved second, is applied again to the newer run rather than
    failing the work (a child run failed this way under load, and its parent with it)."""
    spec = job(system, sql_source="SELECT 1")
    run_id = create(system, spec)
    commands = system.runs.commands
    dispatcher_actor = Actor.system("dispatcher", ORG)
    dispatched = commands.dispatch_run(run_id, executor="local", by=dispatcher_actor)
    system.wait_for_views(dispatched.position)
    loaded, raced = commands._executing, []

    def loaded_then_the_dispatcher_records_the_start(*args: Any, **kwargs: Any) -> Any:
        run = loaded(*args, **kwargs)
        if not raced:
            raced.append(commands.record_started(run_id, dispatched.attempt, by=dispatcher_actor))
        return run

    monkeypatch.setattr(commands, "_executing", loaded_then_the_dispatcher_records_the_start)
    work = Actor(kind="run", id=run_id, organization_id=ORG)
    system.wait_for_views(commands.report_result(run_id, dispatched.attempt, {"n": 42}, by=work))
    assert raced[0] > 0  # the dispatcher's start was saved first
    assert row(system, spec, run_id)["result"] == {"n": 42}
