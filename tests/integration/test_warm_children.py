"""The warm children pool on its own (processes that wait on stdin stand in for children):
it fills to its size for the endpoint asked last, hands each child out once, gives an
attempt on another endpoint none and then makes room for that endpoint, never hands out a
child that died, stops its idle children when closed, and with size 0 starts nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sailplane.infra_adapters.executors.warm import Child, WarmChildren
from sailplane.infra_adapters.isolation import Workspace
from tests.runs_support import process_alive, wait_until


class Started:
    """Starts stand-in children and records what the pool started and discarded."""

    def __init__(self) -> None:
        self.started: list[Child] = []
        self.discarded: list[Child] = []

    def start(self, spark_remote: str) -> Child:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.readline()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        child = Child(process, Workspace(Path("/nonexistent")), spark_remote)
        self.started.append(child)
        return child

    def discard(self, child: Child) -> None:
        child.kill()
        self.discarded.append(child)


@pytest.fixture
def started() -> Iterator[Started]:
    record = Started()
    yield record
    for child in record.started:
        if child.process.returncode is None:
            child.kill()


def remotes(pool: WarmChildren, started: Started) -> list[str]:
    idle = set(pool.idle_pids())
    return sorted(c.spark_remote for c in started.started if c.process.pid in idle)


def test_each_child_is_handed_out_once_and_replaced(started: Started) -> None:
    pool = WarmChildren(2, started.start, started.discard)
    try:
        assert pool.take("sc://a") is None  # nothing waits yet: this attempt starts cold
        wait_until(lambda: remotes(pool, started) == ["sc://a", "sc://a"])
        first, second = pool.take("sc://a"), pool.take("sc://a")
        assert first is not None and second is not None and first != second
        assert first.process.pid not in pool.idle_pids()
        wait_until(lambda: len(pool.idle_pids()) == 2, what="the pool refilled")
        assert {first.process.pid, second.process.pid}.isdisjoint(pool.idle_pids())
        assert len(started.started) == 4 and started.discarded == []
    finally:
        pool.close()


def test_another_endpoint_gets_none_then_the_pool_fills_for_it(started: Started) -> None:
    pool = WarmChildren(2, started.start, started.discard)
    try:
        pool.take("sc://a")
        wait_until(lambda: remotes(pool, started) == ["sc://a", "sc://a"])
        assert pool.take("sc://b") is None
        wait_until(lambda: remotes(pool, started) == ["sc://b", "sc://b"])
        assert sorted(c.spark_remote for c in started.discarded) == ["sc://a", "sc://a"]
        taken = pool.take("sc://b")
        assert taken is not None and taken.spark_remote == "sc://b"
    finally:
        pool.close()


def test_a_child_that_died_idle_is_never_handed_out(started: Started) -> None:
    pool = WarmChildren(1, started.start, started.discard)
    try:
        pool.take("sc://a")
        wait_until(lambda: len(pool.idle_pids()) == 1)
        (dead,) = started.started
        dead.process.stdin.close()  # type: ignore[union-attr]  # it reads EOF and exits
        dead.process.wait()
        assert pool.take("sc://a") is None
        assert started.discarded == [dead]
    finally:
        pool.close()


def test_closing_stops_the_idle_children(started: Started) -> None:
    pool = WarmChildren(2, started.start, started.discard)
    pool.take("sc://a")
    wait_until(lambda: len(pool.idle_pids()) == 2)
    idle = pool.idle_pids()
    pool.close()
    assert pool.idle_pids() == [] and pool.take("sc://a") is None
    assert not any(process_alive(pid) for pid in idle)


def test_size_zero_starts_nothing(started: Started) -> None:
    pool = WarmChildren(0, started.start, started.discard)
    assert pool.take("sc://a") is None
    pool.close()
    assert started.started == [] and pool.idle_pids() == []
