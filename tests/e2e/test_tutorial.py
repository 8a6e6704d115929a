"""docs/tutorial.md, run as a user runs it: the `sh server` block starts the server (in a
fresh directory, embedded database, JSON logs), then every `sh` and `python` block runs in
order in one bash session with `sailplane` (this interpreter's) first on PATH. The only change
made to the commands: ports 8000 and 9000 become free ones.

Also checked on that fresh server: the first start prints the owner's key with how to use
it, a request without a key logs how to get one, and each request's log line is JSON with
its request id.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.services import free_port, wait_for_port

pytestmark = pytest.mark.sail

TUTORIAL = Path(__file__).parents[2] / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(\w+)( server)?\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    """(kind, code) of every code block: `server`, `sh` or `python`."""
    found = []
    for language, server, code in BLOCK.findall(TUTORIAL.read_text()):
        assert language in ("sh", "python"), f"a block the test cannot run: {language}"
        found.append(("server" if server else language, code))
    return found


def script(found: list[tuple[str, str]]) -> str:
    """The user's shell session: the `sh` blocks as they are, `python` ones through python3."""
    parts = ["set -euxo pipefail"]  # -x: a failure shows the command it stopped at
    for kind, code in found:
        if kind == "sh":
            parts.append(code)
        elif kind == "python":
            parts.append(f"python3 - <<'PYTHON'\n{code}PYTHON")
    return "\n".join(parts) + "\n"


@pytest.mark.timeout(900)
def test_every_command_of_the_tutorial_works(open_tmp_path: Path) -> None:
    found = blocks()
    [server_command] = [code for kind, code in found if kind == "server"]
    api_port, hook_port = free_port(), free_port()

    def ported(text: str) -> str:
        return text.replace("8000", str(api_port)).replace("9000", str(hook_port))

    # `sailplane` and `python3` as this test's interpreter has them (a venv or the user site).
    bin_dir = open_tmp_path / "bin"
    bin_dir.mkdir()
    for name, command in (("sailplane", "-m sailplane.cli "), ("python3", "")):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {command}"$@"\n')
        (bin_dir / name).chmod(0o755)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SAILPLANE_BOOTSTRAP_TOKEN"}
        and not k.startswith("SAILPLANE_")
    }
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "SAILPLANE_CONFIG": str(open_tmp_path / "profiles.json"),
        "HOME": str(open_tmp_path),
    }
    work = open_tmp_path / "work"
    work.mkdir()
    server_log = open_tmp_path / "server.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen(
            ["bash", "-c", ported(server_command)],
            cwd=work,
            env=env | {"SAILPLANE_LOG_FORMAT": "json"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(api_port, timeout=180, process=server)
        # A request without a key at a fresh install is refused, and the log says what to do.
        refused = httpx.get(f"http://127.0.0.1:{api_port}/api/v1/me")
        assert refused.status_code == 401 and refused.json()["code"] == "missing_token"

        session = subprocess.run(
            ["bash", "-c", ported(script(found))],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert session.returncode == 0, session.stdout + session.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    out = session.stdout
    assert "hello from Sailplane at" in out
    notified = (work / "notifications.log").read_text().split()
    assert notified.count("sailplane.notification.job_run.completed") >= 2
    assert "409 run_finished" in out
    # The agent job (step 8): its chunks streamed, its result, usage and what it reported.
    assert "Two children will square 2 and 3." in out
    assert "agent completed {'squares': [4, 9]} 15 tokens" in out
    assert "usage 1\ntool-calls 1\noutputs 1\ncheckpoints 1\nchildren 2" in out
    assert stat_mode(open_tmp_path / "profiles.json") == 0o600

    logged = server_log.read_text()
    assert f"sailplane login http://127.0.0.1:{api_port} --token sp_" in logged
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    [hint] = [line for line in lines if "sailplane admin create-token" in line["message"]]
    assert "missing_token" in hint["message"]
    requests = [line for line in lines if line["logger"] == "sailplane.http"]
    assert requests and all(len(line["request_id"]) == 32 for line in requests)
    assert {"method", "route", "status"} <= set(requests[0])


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
