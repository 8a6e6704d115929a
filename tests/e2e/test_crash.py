"""`kill -9` of a serving Sailplane mid-write, three times, as an operator might.

Every write the server acknowledged is there afterwards, exactly once; a write the
client never heard back about, retried with its `Idempotency-Key`, is there at most once;
and a clean stop after the crashes leaves no process behind: not the embedded PostgreSQL
and not a Sail server, whichever run started them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from tests.e2e.test_serve import TOKEN, _env, _postgres_running_in, _sailplane, serving
from tests.services import free_port, wait_for_port

ROUNDS = 3
WRITES_PER_ROUND = 40


def _post_team(port: int, name: str) -> httpx.Response | None:
    """POST one team; None when the server died before it answered."""
    try:
        return httpx.post(
            f"http://127.0.0.1:{port}/api/v1/org/teams",
            json={"name": name},
            headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": name},
            timeout=30,
        )
    except httpx.TransportError:
        return None


def _sail_pids(data_dir: Path) -> set[int]:
    pids = set()
    for state in (data_dir / "sail").glob("*.json"):
        try:
            pids.add(int(json.loads(state.read_text())["pid"]))
        except (OSError, ValueError, KeyError):
            continue
    return pids


def _crash_mid_write(data_dir: Path, round_: int, acknowledged: set[str], unanswered: set[str]):
    port = free_port()
    process = subprocess.Popen(
        _sailplane("serve", "--port", str(port), "--data-dir", str(data_dir)),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=120, process=process)
        answered = threading.Semaphore(0)
        names = [f"crash {round_} {i:02d}" for i in range(WRITES_PER_ROUND)]

        def write(name: str) -> tuple[str, httpx.Response | None]:
            response = _post_team(port, name)
            answered.release()
            return name, response

        with ThreadPoolExecutor(max_workers=4) as writers:
            futures = [writers.submit(write, name) for name in names]
            for _ in range(WRITES_PER_ROUND // 4):  # a quarter answered: writes are in flight
                answered.acquire()
            process.send_signal(signal.SIGKILL)
            process.wait()
            for future in futures:
                name, response = future.result()
                if response is not None and response.status_code == 201:
                    acknowledged.add(name)
                else:
                    assert (
                        response is None
                        or response.status_code >= 500
                        or (response.status_code == 409)
                    ), response.text
                    unanswered.add(name)
        return _sail_pids(data_dir)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _all_team_names(client: httpx.Client) -> list[str]:
    names: list[str] = []
    params: dict[str, str | int] = {"limit": 100}
    while True:
        page = client.get("/org/teams", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        names += [item["team"]["name"] for item in body["items"]]
        marker = body.get("marker")
        if not marker:
            return names
        params = {"limit": 100, "marker": marker}


def test_kill_9_mid_write_three_times_loses_nothing_and_leaves_nothing_running(
    open_tmp_path: Path,
) -> None:
    data_dir = open_tmp_path / "data"
    acknowledged: set[str] = set()
    unanswered: set[str] = set()
    sail_pids: set[int] = set()
    for round_ in range(ROUNDS):
        sail_pids |= _crash_mid_write(data_dir, round_, acknowledged, unanswered)
    assert acknowledged, "some writes were acknowledged before each kill"

    with serving(data_dir) as client:
        for name in sorted(unanswered):
            retried = client.post(
                "/org/teams", json={"name": name}, headers={"Idempotency-Key": name}
            )
            # Created now, replayed, or the key still held by the killed request: never a 500.
            assert retried.status_code in (201, 409), retried.text
        names = _all_team_names(client)
        for name in acknowledged:
            assert names.count(name) == 1, f"acknowledged write {name!r} is not there exactly once"
        assert len(names) == len(set(names)), "a write was applied twice"
        sail_pids |= _sail_pids(data_dir)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        _postgres_running_in(data_dir) or any(psutil.pid_exists(pid) for pid in sail_pids)
    ):
        time.sleep(0.2)
    assert not _postgres_running_in(data_dir), "the embedded PostgreSQL outlived a clean stop"
    left = [pid for pid in sail_pids if psutil.pid_exists(pid)]
    assert not left, f"Sail servers outlived a clean stop: {left}"
