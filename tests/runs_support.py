"""Helpers shared by the job-run tests: job versions given directly (the jobs context's
port, for tests that do not go through jobs), waiting on the runs view, process checks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from sailplane.domain.runs import JobVersionSnapshot

# A Python entry point that works until something stops it (cancel, timeout, a kill).
UNTIL_STOPPED = "import signal\nprint('started', flush=True)\nsignal.pause()\n"


def until_opened(gate: os.PathLike[str] | str) -> str:
    """A Python entry point that works until the test creates the file `gate`, so a run
    stays running exactly as long as the test needs it to."""
    return (
        "import os, time\nprint('working', flush=True)\n"
        f"while not os.path.exists({os.fspath(gate)!r}):\n    time.sleep(0.05)\n"
        "print('done')\n"
    )


class GivenJobVersions:
    """`JobVersions` from snapshots a test registers."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], JobVersionSnapshot] = {}

    def add(self, organization_id: str, snapshot: JobVersionSnapshot) -> JobVersionSnapshot:
        self.versions[(organization_id, snapshot.job_id)] = snapshot
        return snapshot

    def snapshot(
        self, organization_id: str, job_id: str, version: int | None = None
    ) -> JobVersionSnapshot | None:
        found = self.versions.get((organization_id, job_id))
        if found is None or (version is not None and version != found.version):
            return None
        return found


def wait_until(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        time.sleep(0.05)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may hold spaces; the state follows its ")".
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        # A process that exits between the two looks is gone either way.
        return False


def executions(database: Any, run_id: str) -> dict[int, int]:
    """How often the local executor started each attempt of the run (its own count)."""
    from sailplane.infra_adapters.executors.local import EXECUTIONS_TABLE

    with database.connect() as conn:
        rows = conn.execute(
            f"SELECT attempt, executions FROM {EXECUTIONS_TABLE} WHERE run_id = %s", (run_id,)
        ).fetchall()
    return dict(rows)
