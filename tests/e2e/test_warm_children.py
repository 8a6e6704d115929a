"""`sailplane serve` keeps warm children (SAILPLANE_WARM_CHILDREN, 2 here) once a run has
used its local cluster, and none outlives it: a clean stop stops them, and so does a
`kill -9` of the server (they die with it, as every attempt's child does)."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from tests.e2e.test_crash import _sail_pids
from tests.e2e.test_job_runs import Jobs
from tests.e2e.test_serve import _postgres_running_in, started
from tests.runs_support import process_alive, wait_until

pytestmark = pytest.mark.sail


@contextmanager
def server(data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], Jobs]]:
    with started(data_dir, {"SAILPLANE_WARM_CHILDREN": "2"}) as (process, client):
        (cluster,) = client.get("/me/clusters").json()["included"]["clusters"]
        team = client.post("/org/teams", json={"name": f"warm {uuid.uuid4().hex[:8]}"})
        assert team.status_code == 201, team.text
        yield process, Jobs(client, cluster["id"], team.json()["team"]["id"])


def warm_children(server_pid: int) -> set[int]:
    """The server's children that are warm children (their command line says so)."""
    found = set()
    for child in psutil.Process(server_pid).children(recursive=True):
        try:
            if "--warm-up" in child.cmdline():
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def two_idle(process: subprocess.Popen[bytes]) -> set[int]:
    return wait_until(
        lambda: len(found := warm_children(process.pid)) == 2 and found,
        what="two warm children",
    )


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["clean stop", "kill -9"])
def test_no_warm_child_outlives_the_server(open_tmp_path: Path, stop: signal.Signals) -> None:
    data_dir = open_tmp_path / "data"
    with server(data_dir) as (process, jobs):
        # The first run on the local cluster starts cold and has the pool filled for it.
        run = jobs.run(jobs.create(sql="SELECT 1"))
        assert jobs.until(run, "completed", "failed")["status"] == "completed"
        warm = two_idle(process)
        # The next takes a warm child, which is replaced.
        run = jobs.run(jobs.create(python="print('warm')"))
        assert jobs.until(run, "completed", "failed")["status"] == "completed"
        assert jobs.logs(run) == ["warm"]
        warm |= two_idle(process)
        assert len(warm) == 3
        process.send_signal(stop)
        process.wait(timeout=60)
    wait_until(
        lambda: not any(process_alive(pid) for pid in warm),
        timeout=60,
        what="no warm child left",
    )
    if stop == signal.SIGKILL:
        # The next start takes over the killed server's database and Sail server, runs work
        # again, and a clean stop leaves nothing running.
        with server(data_dir) as (process, jobs):
            run = jobs.run(jobs.create(sql="SELECT 1"))
            assert jobs.until(run, "completed", "failed")["status"] == "completed"
            sail = _sail_pids(data_dir)
        assert wait_until(
            lambda: (
                not _postgres_running_in(data_dir) and not any(process_alive(pid) for pid in sail)
            ),
            timeout=60,
            what="nothing left running",
        )
