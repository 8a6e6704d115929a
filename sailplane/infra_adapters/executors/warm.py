"""Warm children: a bounded pool of attempt processes started before their attempts exist.

A child (`executors/child.py`) is started exactly as a cold attempt's is (its own
workspace, identity and sandbox from `Isolation`, the built environment, its own process
group); a warm one also imports the engine client and opens its Spark Connect session to
its cluster's endpoint, then waits for its one assignment on stdin. Each child takes
exactly one attempt and exits. An attempt takes an idle child started for its cluster's
Spark Connect URL, or none (it starts cold); a taken child is replaced in the background.

The pool keeps at most `size` idle children, all for the endpoint asked for last: an idle
child for another endpoint makes room when the pool is full. One long-lived thread starts
every warm child, because a child dies with the thread that started it (the Linux
parent-death signal); `close` stops the idle ones and that thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sailplane.infra_adapters.executors import Work
from sailplane.infra_adapters.isolation import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Child:
    """One attempt's process, started in its workspace, waiting for its assignment."""

    process: subprocess.Popen[bytes]
    workspace: Workspace
    spark_remote: str

    def assign(self, work: Work, variables: Mapping[str, str]) -> None:
        """Hand the child its one attempt: the work and the run's variables, one JSON line."""
        assert self.process.stdin is not None
        line = json.dumps({"work": work.to_dict(), "variables": dict(variables)}) + "\n"
        with contextlib.suppress(OSError):  # it is gone (stopped): its exit status says so
            self.process.stdin.write(line.encode("utf-8"))
        with contextlib.suppress(OSError):
            self.process.stdin.close()

    def kill(self) -> None:
        """Kill the child's process group and reap it (once reaped, its id is not ours)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class WarmChildren:
    """Idle warm children per Spark Connect endpoint, at most `size` (0: none, every attempt
    starts cold). `start(spark_remote)` starts one; `discard(child)` kills an unused one and
    releases its workspace."""

    def __init__(
        self,
        size: int,
        start: Callable[[str], Child],
        discard: Callable[[Child], None],
        *,
        retry_seconds: float = 5.0,
    ) -> None:
        self.size = size
        self._start = start
        self._discard = discard
        self._retry_seconds = retry_seconds
        self._idle: list[Child] = []  # oldest first
        self._wanted: str | None = None  # the endpoint the pool fills for: the last asked
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def take(self, spark_remote: str) -> Child | None:
        """An idle child for `spark_remote`, or None; either way the pool refills for it."""
        if self.size <= 0:
            return None
        taken: Child | None = None
        with self._changed:
            if self._closed:
                return None
            dead = [c for c in self._idle if c.process.poll() is not None]
            for child in self._idle:
                if child not in dead and child.spark_remote == spark_remote:
                    taken = child
                    break
            for child in [*dead, *([taken] if taken else [])]:
                self._idle.remove(child)
            self._wanted = spark_remote
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._fill, name="warm-children", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()
        for child in dead:
            self._discard(child)
        return taken

    def idle_pids(self) -> list[int]:
        """The process ids of the idle children, oldest first."""
        with self._changed:
            return [c.process.pid for c in self._idle]

    def close(self) -> None:
        """Stop filling and kill the idle children (taken ones belong to their attempts)."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._changed.notify_all()
        for child in idle:
            self._discard(child)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _fill(self) -> None:
        """Start children until `size` wait for the wanted endpoint (this thread outlives them)."""
        while True:
            with self._changed:
                while not self._closed and not self._short():
                    self._changed.wait()
                if self._closed:
                    return
                wanted = self._wanted
                assert wanted is not None
                surplus = None
                if len(self._idle) >= self.size:  # room for the wanted endpoint: drop another's
                    surplus = next(c for c in self._idle if c.spark_remote != wanted)
                    self._idle.remove(surplus)
            if surplus is not None:
                self._discard(surplus)
                continue
            try:
                child = self._start(wanted)
            except Exception:
                log.exception("could not start a warm child; retrying")
                with self._changed:
                    self._changed.wait(self._retry_seconds)
                continue
            with self._changed:
                if not self._closed:
                    self._idle.append(child)
                    continue
            self._discard(child)
            return

    def _short(self) -> bool:
        """Fewer than `size` idle children wait for the wanted endpoint."""
        wanted = self._wanted
        return wanted is not None and (
            sum(1 for c in self._idle if c.spark_remote == wanted) < self.size
        )
