"""The local executor against a real Sail server: SQL and Python entry points run in a
child process, each (run, attempt) executes at most once, cancel stops the process, and an
attempt whose owner stopped heart-beating reads as lost. Warm children: each takes exactly
one attempt with its session already open, only on its own endpoint, is cancelled as a
cold one (the cancel test runs both ways), and stops with the executor; with none, nothing idle is kept."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sailplane.infra_adapters.executors import (
    CANCELLED,
    FAILED,
    FINISHED,
    LOST,
    SUCCEEDED,
    Status,
    Submission,
    Target,
    Work,
)
from sailplane.infra_adapters.executors.local import LocalExecutor
from sailplane.infra_adapters.executors.logs import RunLogs
from sailplane.storage import Database
from tests.runs_support import UNTIL_STOPPED, process_alive, wait_until
from tests.services import sail_server

pytestmark = pytest.mark.sail


@pytest.fixture
def logs(fresh_db: Database) -> RunLogs:
    run_logs = RunLogs(fresh_db)
    run_logs.create_table()
    return run_logs


@pytest.fixture
def executor(fresh_db: Database, logs: RunLogs) -> Iterator[LocalExecutor]:
    local = LocalExecutor(
        fresh_db, logs, grace_seconds=1.0, lease_seconds=2.0, heartbeat_seconds=0.2
    )
    local.create_table()
    yield local
    local.close()


def submission(sail: str, run_id: str, work: Work, attempt: int = 1) -> Submission:
    return Submission(
        run_id=run_id,
        attempt=attempt,
        organization_id="ORG0000001",
        job_id="JOB0000001",
        work=work,
        target=Target(executor="local", spark_remote=sail),
    )


def finished(executor: LocalExecutor, run_id: str, attempt: int = 1) -> Status:
    wait_until(lambda: executor.status(run_id, attempt).state in FINISHED)
    return executor.status(run_id, attempt)


def test_sql_runs_on_sail_with_its_rows_in_the_logs(
    executor: LocalExecutor, logs: RunLogs, sail: str
) -> None:
    assert executor.submit(submission(sail, "RUNSQL0001", Work(sql="SELECT 1 AS one")))
    assert finished(executor, "RUNSQL0001").state == SUCCEEDED
    lines = [r["line"] for r in logs.page("RUNSQL0001")]
    assert lines[:2] == ["one", "1"]


def test_bad_sql_fails_with_the_engine_message(executor: LocalExecutor, sail: str) -> None:
    executor.submit(submission(sail, "RUNBAD0001", Work(sql="SELEC nonsense")))
    status = finished(executor, "RUNBAD0001")
    assert status.state == FAILED
    assert "SELEC" in (status.message or "")


def test_a_resubmitted_attempt_executes_once(executor: LocalExecutor, sail: str) -> None:
    work = Work(python={"source": "print('hello')"})
    assert executor.submit(submission(sail, "RUNONCE001", work))
    assert not executor.submit(submission(sail, "RUNONCE001", work))
    assert finished(executor, "RUNONCE001").state == SUCCEEDED
    assert not executor.submit(submission(sail, "RUNONCE001", work))
    assert executor.executions("RUNONCE001", 1) == 1
    assert executor.submit(submission(sail, "RUNONCE001", work, attempt=2))
    assert finished(executor, "RUNONCE001", 2).state == SUCCEEDED
    assert executor.executions("RUNONCE001", 2) == 1


def test_python_sees_spark_remote_and_parameters(
    executor: LocalExecutor, logs: RunLogs, sail: str
) -> None:
    source = (
        "import os, sys\n"
        "from pyspark.sql.connect.session import SparkSession\n"
        "spark = SparkSession.builder.remote(os.environ['SPARK_REMOTE']).getOrCreate()\n"
        "print('sum', spark.sql('SELECT 40 + 2 AS x').collect()[0].x, sys.argv[1:])\n"
    )
    work = Work(python={"source": source, "parameters": ["a"], "namedParameters": {"n": "1"}})
    executor.submit(submission(sail, "RUNPY00001", work))
    assert finished(executor, "RUNPY00001").state == SUCCEEDED
    assert any("sum 42 ['a', '--n=1']" in r["line"] for r in logs.page("RUNPY00001"))


@pytest.mark.parametrize("start", ["cold", "warm"])
def test_cancel_stops_the_process_then_kills_it(
    executor: LocalExecutor, warm_executor: LocalExecutor, sail: str, start: str
) -> None:
    # The child ignores SIGTERM: the grace period passes and SIGKILL ends it. A warm child,
    # started before its attempt existed, is stopped the same way.
    local = warm_executor if start == "warm" else executor
    waiting = filled(local, sail) if start == "warm" else set()
    source = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\nsignal.pause()\n"
    local.submit(submission(sail, "RUNCANCEL1", Work(python={"source": source})))
    wait_until(lambda: local.pid("RUNCANCEL1", 1) is not None)
    pid = local.pid("RUNCANCEL1", 1)
    assert pid is not None and (pid in waiting) == (start == "warm")
    local.cancel("RUNCANCEL1", 1)
    assert finished(local, "RUNCANCEL1").state == CANCELLED
    wait_until(lambda: not process_alive(pid), timeout=60)


def test_an_attempt_whose_owner_stopped_reads_as_lost(
    fresh_db: Database, logs: RunLogs, sail: str
) -> None:
    first = LocalExecutor(fresh_db, logs, lease_seconds=1.0, heartbeat_seconds=0.2)
    first.create_table()
    first.submit(submission(sail, "RUNLOST001", Work(python={"source": UNTIL_STOPPED})))
    wait_until(lambda: first.pid("RUNLOST001", 1) is not None)
    pid = first.pid("RUNLOST001", 1)
    first.close()  # as if the dispatcher died: no more heartbeats, the child is gone
    second = LocalExecutor(fresh_db, logs, lease_seconds=1.0)
    try:
        wait_until(lambda: second.status("RUNLOST001", 1).state == LOST, timeout=60)
        assert pid is not None and not process_alive(pid)
        assert not second.submit(submission(sail, "RUNLOST001", Work(python={"source": "pass"})))
    finally:
        second.close()


# --- warm children ------------------------------------------------------------------------


@pytest.fixture
def warm_executor(fresh_db: Database, logs: RunLogs) -> Iterator[LocalExecutor]:
    local = LocalExecutor(
        fresh_db, logs, grace_seconds=1.0, lease_seconds=2.0, heartbeat_seconds=0.2, warm_children=2
    )
    local.create_table()
    yield local
    local.close()


def warm_children_of_this_process() -> set[int]:
    """Children of the test process started as warm children (their command line says so)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "--warm-up" in child.cmdline():
                found.add(child.pid)
    return found


def filled(executor: LocalExecutor, sail: str) -> set[int]:
    """The pool asked for `sail` (by a first attempt, which starts cold) and full: its pids."""
    executor.submit(
        submission(sail, f"RUNFILL{uuid.uuid4().hex[:4].upper()}", Work(sql="SELECT 1"))
    )
    wait_until(lambda: len(executor.warm.idle_pids()) == 2, what="two idle warm children")
    return set(executor.warm.idle_pids())


def test_a_warm_child_takes_exactly_one_attempt_with_its_session_open(
    warm_executor: LocalExecutor, logs: RunLogs, sail: str
) -> None:
    warm = filled(warm_executor, sail)
    assert warm <= warm_children_of_this_process()
    source = (
        "import os\n"
        "from pyspark.sql.connect.session import SparkSession\n"
        "opened = SparkSession.getActiveSession() is not None\n"
        "spark = SparkSession.builder.remote(os.environ['SPARK_REMOTE']).getOrCreate()\n"
        "x = spark.sql('SELECT 40 + 2 AS x').collect()[0].x\n"
        "print(os.environ['SAILPLANE_RUN_ID'], os.environ['SAILPLANE_RUN_ATTEMPT'], opened, x)\n"
    )
    pids = []
    for run_id in ("RUNWARM001", "RUNWARM002"):
        assert warm_executor.submit(submission(sail, run_id, Work(python={"source": source})))
        assert finished(warm_executor, run_id).state == SUCCEEDED
        pid = warm_executor.pid(run_id, 1)
        assert pid is not None and pid in warm
        # Its logs are the work's alone (the warm-up printed nothing), its variables its own.
        assert [r["line"] for r in logs.page(run_id)] == [f"{run_id} 1 True 42"]
        assert warm_executor.executions(run_id, 1) == 1
        # One attempt, then it is gone; the pool starts another in its place.
        wait_until(lambda p=pid: not process_alive(p), what="the warm child gone")
        assert pid not in warm_executor.warm.idle_pids()
        pids.append(pid)
        warm |= set(warm_executor.warm.idle_pids())
    assert pids[0] != pids[1]


def test_an_attempt_on_another_endpoint_starts_cold(
    warm_executor: LocalExecutor, logs: RunLogs, sail: str
) -> None:
    warm = filled(warm_executor, sail)
    elsewhere = "sc://127.0.0.1:9"
    work = Work(python={"source": "import os\nprint(os.environ['SPARK_REMOTE'])\n"})
    warm_executor.submit(submission(elsewhere, "RUNWOTHER1", work))
    assert finished(warm_executor, "RUNWOTHER1").state == SUCCEEDED
    assert warm_executor.pid("RUNWOTHER1", 1) not in warm
    assert [r["line"] for r in logs.page("RUNWOTHER1")] == [elsewhere]


def test_idle_warm_children_stop_with_the_executor(
    fresh_db: Database, logs: RunLogs, sail: str
) -> None:
    local = LocalExecutor(fresh_db, logs, warm_children=2)
    local.create_table()
    try:
        warm = filled(local, sail)
    finally:
        local.close()
    wait_until(lambda: not any(process_alive(pid) for pid in warm), what="idle children gone")
    assert not warm & warm_children_of_this_process()


def test_with_no_warm_children_every_attempt_starts_its_own(
    executor: LocalExecutor, logs: RunLogs, sail: str
) -> None:
    for run_id in ("RUNCOLD001", "RUNCOLD002"):
        executor.submit(submission(sail, run_id, Work(sql="SELECT 1 AS one")))
        assert finished(executor, run_id).state == SUCCEEDED
        assert [r["line"] for r in logs.page(run_id)][:2] == ["one", "1"]
    assert executor.warm.idle_pids() == []
    assert warm_children_of_this_process() == set()


@pytest.fixture
def forgetful_sail(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Sail server that drops a session idle for 3 seconds (its default: 15 minutes), and
    its log."""
    log = tmp_path / "sail.log"
    with sail_server({"SAIL_SPARK__SESSION_TIMEOUT_SECS": "3", "RUST_LOG": "info"}, log) as url:
        yield url, log


def sessions_dropped(log: Path, opened: int) -> bool:
    """Whether the Sail server has opened `opened` sessions and removed every one of them
    (its log names each session it creates and each it removes, idle or released)."""
    text = log.read_text(errors="replace")
    created = set(re.findall(r"creating session (\S+)", text))
    removed = set(re.findall(r"removing (?:idle )?session (\S+)", text))
    return len(created) >= opened and created <= removed


def test_a_warm_child_whose_session_the_server_dropped_opens_a_new_one(
    fresh_db: Database, logs: RunLogs, forgetful_sail: tuple[str, Path]
) -> None:
    sail, sail_log = forgetful_sail
    local = LocalExecutor(fresh_db, logs, warm_children=1)
    local.create_table()
    try:
        local.submit(submission(sail, "RUNFORGET0", Work(sql="SELECT 1")))
        wait_until(lambda: len(local.warm.idle_pids()) == 1, what="a warm child")
        (warm,) = local.warm.idle_pids()
        assert finished(local, "RUNFORGET0").state == SUCCEEDED
        # The first attempt's session and the warm child's, both idle past the server's
        # timeout: the server has dropped the session the warm child holds.
        wait_until(lambda: sessions_dropped(sail_log, opened=2), what="both sessions dropped")
        local.submit(submission(sail, "RUNFORGET1", Work(sql="SELECT 2 AS two")))
        assert finished(local, "RUNFORGET1").state == SUCCEEDED, logs.page("RUNFORGET1")
        assert local.pid("RUNFORGET1", 1) == warm
        assert [r["line"] for r in logs.page("RUNFORGET1")] == ["two", "2"]
    finally:
        local.close()
