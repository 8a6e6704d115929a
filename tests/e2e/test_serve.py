"""`sailplane serve` as a user runs it: embedded PostgreSQL, first start, restart, CLI tools."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from tests.services import free_port, wait_for_port

TOKEN = "sp_bootstrap-token-for-tests"


def _env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"}
    }
    env["SAILPLANE_BOOTSTRAP_TOKEN"] = TOKEN
    env["SAILPLANE_OWNER_EMAIL"] = "first-owner@example.com"
    env["SAILPLANE_OWNER_PASSWORD"] = "first owner password"
    return env


def _sailplane(*args: str) -> list[str]:
    return [sys.executable, "-m", "sailplane.cli", "--log-level", "WARNING", *args]


@contextmanager
def started(
    data_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """`sailplane serve` and a client of it; stopped with SIGTERM at the end unless the
    caller stopped it already. Its output is printed then (shown when the test fails)."""
    port = free_port()
    # The server's output goes to a file: a pipe nobody reads fills up (the access log) and
    # then blocks the server.
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            _sailplane("serve", "--port", str(port), "--data-dir", str(data_dir)),
            env={**_env(), **(extra_env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, timeout=120, process=process)
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}/api/v1",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            ) as client:
                yield process, client
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
            finally:
                output.seek(0)
                print(output.read().decode(errors="replace")[-5000:])


@contextmanager
def serving(data_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[httpx.Client]:
    """`sailplane serve` and a client of it, stopped cleanly (SIGTERM, exit status 0) at the end."""
    with started(data_dir, extra_env) as (process, client):
        yield client
    assert process.returncode == 0, "the server did not stop cleanly (its output is above)"


def _postgres_running_in(data_dir: Path) -> bool:
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if proc.info.get("name") == "postgres" and str(data_dir) in cmdline:
            return True
    return False


def test_serve_keeps_data_across_restarts_and_stops_its_database(open_tmp_path: Path) -> None:
    data_dir = open_tmp_path / "data"
    with serving(data_dir) as client:
        created = client.post("/org/teams", json={"name": "Survives restarts"})
        assert created.status_code == 201
        team_id = created.json()["team"]["id"]
        # Read-your-writes: the very next request sees it, no sleep.
        assert client.get(f"/org/teams/{team_id}").json()["team"]["name"] == "Survives restarts"

        # The admin CLI works against the running server's embedded database.
        issued = subprocess.run(
            _sailplane("admin", "create-token", "--data-dir", str(data_dir)),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert issued.returncode == 0, issued.stderr
        new_token = issued.stdout.strip().splitlines()[-1]
        assert new_token.startswith("sp_") and new_token != TOKEN
        other = client.get("/org/teams", headers={"Authorization": f"Bearer {new_token}"})
        assert other.status_code == 200

        # The first owner signs in with the email and password of the first start.
        login = client.post(
            "/auth/login",
            json={"email": "first-owner@example.com", "password": "first owner password"},
            headers={"Authorization": ""},
        )
        assert login.status_code == 200, login.text
        assert login.json()["token"]

        # A service account for automation, with its own role.
        bot = subprocess.run(
            _sailplane(
                "admin",
                "create-token",
                "--data-dir",
                str(data_dir),
                "--service-account",
                "ci-bot",
                "--role",
                "ADMIN",
            ),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert bot.returncode == 0, bot.stderr
        bot_headers = {"Authorization": f"Bearer {bot.stdout.strip().splitlines()[-1]}"}
        assert (
            client.get("/me", headers=bot_headers).json()["serviceAccount"]["username"] == "ci-bot"
        )
        assert (
            client.post("/org/teams", json={"name": "Bots"}, headers=bot_headers).status_code == 201
        )

        # A rebuild while serving swaps fresh tables in; reads go on and see the same rows.
        rebuilt = subprocess.run(
            _sailplane("projections", "rebuild", "--data-dir", str(data_dir)),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "teams" in rebuilt.stderr
        assert client.get(f"/org/teams/{team_id}").json()["team"]["name"] == "Survives restarts"

    deadline = time.monotonic() + 30
    while _postgres_running_in(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _postgres_running_in(data_dir), "the embedded PostgreSQL stops with the server"

    with serving(data_dir) as client:
        teams = client.get("/org/teams").json()
        assert [i["team"]["name"] for i in teams["items"]] == ["Bots", "Survives restarts"]
        # First start happened only once: still one organization, the same owner key.
        events = client.get("/events").json()["items"]
        assert sum(1 for e in events if e["type"] == "sailplane.identity.Organization.Created") == 1
