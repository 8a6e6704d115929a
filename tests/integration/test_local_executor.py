"""The local executor against a real Sail server: SQL and Python entry points run in a
child process, each (run, attempt) executes at most once, cancel stops the process, and an
attempt whose owner stopped heart-beating reads as lost."""

from __future__ import annotations

from collections.abc import Iterator

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


def test_cancel_stops_the_process_then_kills_it(executor: LocalExecutor, sail: str) -> None:
    # The child ignores SIGTERM: the grace period passes and SIGKILL ends it.
    source = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\nsignal.pause()\n"
    executor.submit(submission(sail, "RUNCANCEL1", Work(python={"source": source})))
    wait_until(lambda: executor.pid("RUNCANCEL1", 1) is not None)
    pid = executor.pid("RUNCANCEL1", 1)
    assert pid is not None
    executor.cancel("RUNCANCEL1", 1)
    assert finished(executor, "RUNCANCEL1").state == CANCELLED
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
