"""The local executor: Sail on this machine, reached through Spark Connect.

Each attempt runs in a child process (`executors/child.py`) with `SPARK_REMOTE` set to
the cluster's Spark Connect URL: SQL through a Spark Connect session, a Python entry
point as it is. The child's output lines become the run's logs. The child is user work:
it runs in a private workspace, as the identity and with the environment `Isolation`
gives it (never the server's), and what it leaves running is killed when it ends.

Exactly once per attempt: `submit` first inserts the row `(run_id, attempt)` into
`sailplane_executions`; only the caller whose insert wins starts the process, so a
redelivered or resubmitted attempt never executes twice, across processes and restarts.
The row records the owner (this executor instance), the process id, the state, and a
heartbeat the owner refreshes; an attempt whose owner stopped heart-beating (the
dispatcher died) reads as `lost`. The child dies with the thread that supervises it
(Linux parent-death signal), so a lost attempt leaves no process behind.

Cancel: a request row flag any replica can set; the owner sends SIGTERM to the child's
process group, waits `grace_seconds`, then SIGKILL. At most `max_parallel` attempts
execute at once per executor (default twice the CPU count); the others wait `submitted`.

Warm starts (`warm_children`, `executors/warm.py`): up to that many children wait, started
and contained as above, with the engine client imported and a session open to the
cluster's endpoint; an attempt on that endpoint takes one instead of starting its own.
Either way the child gets its attempt (the work and the run's variables) on stdin and is
supervised, cancelled, logged and reaped by the same code below.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from sailplane.domain.ids import new_id
from sailplane.infra_adapters.executors import (
    CANCELLED,
    COMMAND_NOT_FOUND,
    FAILED,
    KILLED_BY_SIGNAL,
    LOST,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
    Status,
    Submission,
    Target,
)
from sailplane.infra_adapters.executors.child import (
    COMMAND_NOT_FOUND_STATUS,
    PREAMBLE,
    command_not_found,
)
from sailplane.infra_adapters.executors.logs import RunLogs
from sailplane.infra_adapters.executors.metrics import Usage
from sailplane.infra_adapters.executors.warm import Child, WarmChildren
from sailplane.infra_adapters.isolation import Isolation
from sailplane.storage import Database

log = logging.getLogger(__name__)

EXECUTIONS_TABLE = "sailplane_executions"
_PR_SET_PDEATHSIG = 1
LOG_FLUSH_SECONDS = 0.2
_PROJECT_ROOT = str(Path(__file__).resolve().parents[3])


def _now() -> datetime:
    return datetime.now(UTC)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _process_tree(pid: int) -> tuple[float, int] | None:
    """CPU seconds and resident bytes of the process `pid` and its descendants; None when it
    is gone."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    cpu_seconds, memory = 0.0, 0
    for member in tree:
        try:
            times = member.cpu_times()
            cpu_seconds += times.user + times.system + times.children_user + times.children_system
            memory += member.memory_info().rss
        except psutil.Error:
            continue  # it ended between the listing and the reading
    return cpu_seconds, memory


_ADDED_COLUMNS = (
    "cause text",
    "connect_ms integer",
    "first_output_at timestamptz",
    "last_output_at timestamptz",
)


@dataclass
class Output:
    """What reading an attempt's output learnt: the last `error: ` line's message, the
    preamble's connect_ms, and when the last line was read."""

    last_error: str | None = None
    connect_ms: int | None = None
    last_at: datetime | None = None


def _preamble_connect_ms(line: str) -> int | None:
    with contextlib.suppress(ValueError, AttributeError):
        value = json.loads(line[len(PREAMBLE) :]).get("connect_ms")
        return value if isinstance(value, int) and value >= 0 else None
    return None


def _trace(row: dict[str, Any]) -> dict[str, Any]:
    """`Status.trace` from an executions row: times as ISO 8601, null when not seen."""
    trace: dict[str, Any] = {"connect_ms": row["connect_ms"]}
    for name in ("submitted_at", "started_at", "first_output_at", "last_output_at"):
        trace[name] = row[name].isoformat() if row[name] is not None else None
    return trace


def default_max_parallel() -> int:
    """How many attempts execute at once on an executor not told otherwise: twice the CPUs."""
    return max(2, 2 * (os.cpu_count() or 1))


def _command_not_found(submission: Submission, code: int, last_error: str | None) -> bool:
    """The container's command could not be started: the child says so, as the last thing
    it wrote, before the command would have replaced it (`executors/child.py`)."""
    container = submission.work.container
    return (
        container is not None
        and code == COMMAND_NOT_FOUND_STATUS
        and last_error == command_not_found(str(container["argv"][0]))
    )


class LocalExecutor:
    kind = "local"

    def __init__(
        self,
        database: Database,
        logs: RunLogs,
        *,
        grace_seconds: float = 5.0,
        lease_seconds: float = 15.0,
        heartbeat_seconds: float = 1.0,
        max_parallel: int | None = None,
        python: str = sys.executable,
        isolation: Isolation | None = None,
        warm_children: int = 0,
    ) -> None:
        self.pool = database.pool(name="executor-local", min_size=1, max_size=6)
        self.logs = logs
        self.owner = new_id()  # this instance; a restarted dispatcher is a new owner
        self.grace_seconds = grace_seconds
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.python = python
        self._own_isolation = isolation is None
        self.isolation = isolation or Isolation.detect()
        self._processes: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None
        self._stopping: set[int] = set()  # pids being stopped
        self._cpu_seen: dict[tuple[str, int], tuple[float, float]] = {}  # cpu s, at (monotonic)
        # At most this many attempts execute at once here; the others wait, `submitted`.
        self._slots = threading.BoundedSemaphore(max_parallel or default_max_parallel())
        # Children started ahead of their attempts (0: each attempt starts its own).
        self.warm = WarmChildren(
            warm_children,
            lambda remote: self._start_child(remote, f"warm-{new_id()}", warm_up=True),
            self._discard_child,
        )

    def create_table(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {EXECUTIONS_TABLE} ("
                "run_id text NOT NULL, attempt integer NOT NULL, organization_id text NOT NULL, "
                "job_id text NOT NULL, owner text NOT NULL, state text NOT NULL, pid integer, "
                "executions integer NOT NULL DEFAULT 0, exit_code integer, message text, "
                "submitted_at timestamptz NOT NULL DEFAULT now(), started_at timestamptz, "
                "finished_at timestamptz, heartbeat_at timestamptz NOT NULL DEFAULT now(), "
                "cancel_requested_at timestamptz, PRIMARY KEY (run_id, attempt))"
            )
            # Added since (tables made before them get them here): `cause`, why an attempt
            # failed when it was not the work; the attempt's trace (`Status.trace`).
            for column in _ADDED_COLUMNS:
                conn.execute(f"ALTER TABLE {EXECUTIONS_TABLE} ADD COLUMN IF NOT EXISTS {column}")

    # --- the port --------------------------------------------------------------------------

    def submit(self, submission: Submission) -> bool:
        with self.pool.connection() as conn:
            won = conn.execute(
                f"INSERT INTO {EXECUTIONS_TABLE} (run_id, attempt, organization_id, job_id, owner, "
                "state, submitted_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING run_id",
                (
                    submission.run_id,
                    submission.attempt,
                    submission.organization_id,
                    submission.job_id,
                    self.owner,
                    SUBMITTED,
                    _now(),
                ),
            ).fetchone()
        if won is None:
            return False
        self._ensure_heartbeat()
        threading.Thread(
            target=self._supervise, args=(submission,), name=f"run-{submission.key}", daemon=True
        ).start()
        return True

    def status(self, run_id: str, attempt: int, target: Target | None = None) -> Status:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT state, message, exit_code, cause, submitted_at, started_at, connect_ms, "
                "first_output_at, last_output_at, "
                "heartbeat_at < now() - make_interval(secs => %s) AS stale "
                f"FROM {EXECUTIONS_TABLE} WHERE run_id = %s AND attempt = %s",
                (self.lease_seconds, run_id, attempt),
            ).fetchone()
            if row is None:
                return Status(UNKNOWN)
            if row["state"] in (SUBMITTED, RUNNING) and row["stale"]:
                lost = conn.execute(
                    f"UPDATE {EXECUTIONS_TABLE} SET state = %s, finished_at = now(), message = %s "
                    "WHERE run_id = %s AND attempt = %s AND state IN (%s, %s) "
                    "AND heartbeat_at < now() - make_interval(secs => %s) RETURNING state",
                    (
                        LOST,
                        "The worker that ran this attempt stopped.",
                        run_id,
                        attempt,
                        SUBMITTED,
                        RUNNING,
                        self.lease_seconds,
                    ),
                ).fetchone()
                if lost is not None:
                    return Status(LOST, "The worker that ran this attempt stopped.")
                return self.status(run_id, attempt)
            code = row["exit_code"]
            killed = row["state"] == FAILED and code is not None and code < 0
            return Status(
                row["state"],
                row["message"],
                exit_code=code,
                cause=row["cause"] or (KILLED_BY_SIGNAL if killed else None),
                trace=_trace(row),
            )

    def cancel(self, run_id: str, attempt: int, target: Target | None = None) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                f"UPDATE {EXECUTIONS_TABLE} SET cancel_requested_at = coalesce(cancel_requested_at, now()) "
                "WHERE run_id = %s AND attempt = %s",
                (run_id, attempt),
            )
        with self._lock:
            process = self._processes.get((run_id, attempt))
        if process is not None:
            self._stop_process(process)

    def executions(self, run_id: str, attempt: int) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(
                f"SELECT executions FROM {EXECUTIONS_TABLE} WHERE run_id = %s AND attempt = %s",
                (run_id, attempt),
            ).fetchone()
        return int(row["executions"]) if row else 0

    def pid(self, run_id: str, attempt: int) -> int | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                f"SELECT pid FROM {EXECUTIONS_TABLE} WHERE run_id = %s AND attempt = %s",
                (run_id, attempt),
            ).fetchone()
        return row["pid"] if row else None

    def usage(self, run_id: str, attempt: int, target: Target | None = None) -> list[Usage]:
        """The attempt's process tree, if this executor runs it: cores used since the last
        sample (the first time: since its child was given the attempt) and resident bytes."""
        key = (run_id, attempt)
        with self._lock:
            process = self._processes.get(key)
            seen = self._cpu_seen.get(key)
        if process is None or process.poll() is not None:
            self._cpu_seen.pop(key, None)
            return []
        measured = _process_tree(process.pid) if seen is not None else None
        if seen is None or measured is None:  # not yet handed its attempt, or gone
            return []
        (cpu_seconds, memory), now = measured, time.monotonic()
        seen_cpu, seen_at = seen
        self._cpu_seen[key] = (cpu_seconds, now)
        cores = max(0.0, cpu_seconds - seen_cpu) / max(now - seen_at, 1e-3)
        return [Usage(instance="local", cpu_cores=cores, memory_bytes=memory)]

    def close(self) -> None:
        """Stop heart-beating and stop the children: their attempts read as lost and retry."""
        self._stop.set()
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self.warm.close()
        if self._heart is not None:
            self._heart.join(timeout=5)
        self.pool.close()
        if self._own_isolation:
            self.isolation.close()

    # --- the supervising thread of one attempt ------------------------------------------------

    def _supervise(self, submission: Submission) -> None:
        key = (submission.run_id, submission.attempt)
        with self._slots:
            self._execute(submission, key)

    def _execute(self, submission: Submission, key: tuple[str, int]) -> None:
        try:
            if self._stop.is_set():
                return
            if self._cancel_requested(*key):
                self._finish(key, CANCELLED, None, "Cancelled before it started.")
                return
            remote = submission.target.spark_remote or ""
            child = self.warm.take(remote) or self._start_child(
                remote, f"attempt-{submission.key}", warm_up=False
            )
            try:
                self._run(submission, key, child)
            finally:
                child.kill()  # one that did not run to its end (an error above) stops here
                self.isolation.release(child.workspace)
        except Exception as error:  # the attempt fails; the dispatcher keeps running
            if self._stop.is_set():
                return  # shutting down (the pool is closed): the attempt reads as lost later
            log.exception("local execution %s-%s failed to run", *key)
            with contextlib.suppress(Exception):
                self._finish(key, FAILED, None, f"The local executor could not run it: {error}")

    def _start_child(self, spark_remote: str, name: str, *, warm_up: bool) -> Child:
        """A child in a fresh workspace of its own, contained by `Isolation`, with the built
        environment; it waits on stdin for its attempt (warming up first when asked)."""
        workspace = self.isolation.workspace(name, attempt=True)
        try:
            process = self.isolation.spawn(
                [
                    *(self.python, "-m", "sailplane.infra_adapters.executors.child"),
                    "--assignment-on-stdin",
                    *(["--warm-up"] if warm_up else []),
                ],
                workspace,
                {
                    "SPARK_REMOTE": spark_remote,
                    "SPARK_CONNECT_MODE_ENABLED": "1",
                    "PYTHONPATH": _PROJECT_ROOT,
                    "PYTHONUNBUFFERED": "1",
                },
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except BaseException:
            self.isolation.release(workspace)
            raise
        return Child(process, workspace, spark_remote)

    def _discard_child(self, child: Child) -> None:
        """An unused child: killed, its workspace released."""
        child.kill()
        self.isolation.release(child.workspace)

    def _run(self, submission: Submission, key: tuple[str, int], child: Child) -> None:
        process = child.process
        with self._lock:
            self._processes[key] = process
        with self.pool.connection() as conn:
            conn.execute(
                f"UPDATE {EXECUTIONS_TABLE} SET state = %s, pid = %s, started_at = %s, "
                "executions = executions + 1 WHERE run_id = %s AND attempt = %s",
                (RUNNING, process.pid, _now(), *key),
            )
        child.assign(
            submission.work,
            {
                "SAILPLANE_RUN_ID": submission.run_id,
                "SAILPLANE_RUN_ATTEMPT": str(submission.attempt),
                "SAILPLANE_ATTEMPT": str(submission.attempt),
                **submission.variables,
            },
        )
        # Its usage counts from here: a warm child's start, before it had this attempt, is
        # not the attempt's (measured after the hand-over, off the attempt's path).
        measured = _process_tree(process.pid)
        with self._lock:
            self._cpu_seen[key] = (measured[0] if measured else 0.0, time.monotonic())
        output = self._pump_output(submission, process)
        last_error = output.last_error
        code = process.wait()
        with self._lock:
            self._processes.pop(key, None)
        if self._stop.is_set():
            return  # shutting down: the attempt reads as lost once the lease runs out
        seen = {"connect_ms": output.connect_ms, "last_output_at": output.last_at}
        if code == 0:
            self._finish(key, SUCCEEDED, code, None, **seen)
        elif self._cancel_requested(*key):
            self._finish(key, CANCELLED, code, "Stopped on request.", **seen)
        elif code < 0:
            self._finish(key, FAILED, code, last_error or f"Killed by signal {-code}.", **seen)
        elif _command_not_found(submission, code, last_error):
            self._finish(key, FAILED, code, last_error, cause=COMMAND_NOT_FOUND, **seen)
        else:
            self._finish(key, FAILED, code, last_error or f"Exited with status {code}.", **seen)

    def _pump_output(self, submission: Submission, process: subprocess.Popen[bytes]) -> Output:
        """The child's output lines into the run's logs, each with its stream and the time it
        was read, in batches: at most 100 lines, and a line waits at most
        `LOG_FLUSH_SECONDS` for others to join it (also when the child then goes quiet).
        The child's preamble (its first stdout line, `child.PREAMBLE`) is read, not logged;
        the first line of the work's output is recorded when it is read."""
        assert process.stdout is not None and process.stderr is not None
        streams = {process.stdout.fileno(): "stdout", process.stderr.fileno(): "stderr"}
        pending = dict.fromkeys(streams, b"")
        output = Output()
        preamble = process.stdout.fileno()  # the stream whose first line may be the preamble
        batch: list[tuple[str, datetime, str]] = []
        deadline = 0.0  # when the oldest line of `batch` must be written
        while streams:
            wait = max(0.0, deadline - time.monotonic()) if batch else None
            for fd in select.select(list(streams), [], [], wait)[0]:
                chunk, stream = os.read(fd, 65536), streams[fd]
                if chunk:
                    *raws, pending[fd] = (pending[fd] + chunk).split(b"\n")
                else:  # the stream ended: its unterminated last line is a line too
                    raws, pending[fd] = [pending[fd]] if pending[fd] else [], b""
                    del streams[fd]
                if raws and not batch:
                    deadline = time.monotonic() + LOG_FLUSH_SECONDS
                read_at = _now()
                for raw in raws:
                    line = raw.decode("utf-8", "replace")
                    if fd == preamble:
                        preamble = -1
                        if line.startswith(PREAMBLE):
                            output.connect_ms = _preamble_connect_ms(line)
                            continue
                    if output.last_at is None:
                        self._first_output(submission, read_at)
                    output.last_at = read_at
                    if line.startswith("error: "):
                        output.last_error = line[len("error: ") :]
                    batch.append((stream, read_at, line))
            if not batch:
                continue
            if len(batch) >= 100 or time.monotonic() >= deadline or not streams:
                self._write_lines(submission, batch)
                batch = []
        return output

    def _first_output(self, submission: Submission, at: datetime) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                f"UPDATE {EXECUTIONS_TABLE} SET first_output_at = %s "
                "WHERE run_id = %s AND attempt = %s",
                (at, submission.run_id, submission.attempt),
            )

    def _write_lines(self, submission: Submission, batch: list[tuple[str, datetime, str]]) -> None:
        for stream in ("stdout", "stderr"):
            lines = [(at, line) for kind, at, line in batch if kind == stream]
            if lines:
                self.logs.append(
                    submission.run_id,
                    submission.attempt,
                    [line for _, line in lines],
                    stream=stream,
                    times=[at for at, _ in lines],
                )

    def _finish(
        self,
        key: tuple[str, int],
        state: str,
        code: int | None,
        message: str | None,
        *,
        cause: str | None = None,
        connect_ms: int | None = None,
        last_output_at: datetime | None = None,
    ) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                f"UPDATE {EXECUTIONS_TABLE} SET state = %s, exit_code = %s, message = %s, "
                "cause = %s, connect_ms = %s, last_output_at = %s, finished_at = now() "
                "WHERE run_id = %s AND attempt = %s AND state IN (%s, %s)",
                (state, code, message, cause, connect_ms, last_output_at, *key, SUBMITTED, RUNNING),
            )

    def _cancel_requested(self, run_id: str, attempt: int) -> bool:
        with self.pool.connection() as conn:
            row = conn.execute(
                f"SELECT cancel_requested_at IS NOT NULL AS asked FROM {EXECUTIONS_TABLE} "
                "WHERE run_id = %s AND attempt = %s",
                (run_id, attempt),
            ).fetchone()
        return bool(row and row["asked"])

    def _stop_process(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the process group, then SIGKILL after the grace period (in the background)."""
        with self._lock:
            if process.pid in self._stopping:
                return
            self._stopping.add(process.pid)

        def stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self.grace_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

        threading.Thread(target=stop, name=f"stop-{process.pid}", daemon=True).start()

    # --- heartbeats, and cancels asked by other replicas -------------------------------------

    def _ensure_heartbeat(self) -> None:
        with self._lock:
            if self._heart is None:
                self._heart = threading.Thread(
                    target=self._beat, name="executor-heartbeat", daemon=True
                )
                self._heart.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                with self.pool.connection() as conn:
                    conn.execute(
                        f"UPDATE {EXECUTIONS_TABLE} SET heartbeat_at = now() "
                        "WHERE owner = %s AND state IN (%s, %s)",
                        (self.owner, SUBMITTED, RUNNING),
                    )
                    asked = conn.execute(
                        f"SELECT run_id, attempt FROM {EXECUTIONS_TABLE} WHERE owner = %s "
                        "AND state = %s AND cancel_requested_at IS NOT NULL",
                        (self.owner, RUNNING),
                    ).fetchall()
                for row in asked:
                    with self._lock:
                        process = self._processes.get((row["run_id"], row["attempt"]))
                    if process is not None and process.poll() is None:
                        self._stop_process(process)
            except Exception:
                log.exception("executor heartbeat failed; retrying")
