"""User work is kept away from the server, on the embedded default (`sailplane serve`, run as
root here as in CI): a Python job and a SQL job (Sail's file reader) cannot read the data
directory or see the server's environment, the work's environment holds only the variables
built for it, attempts cannot read each other's directories, and the embedded PostgreSQL
needs its password behind a private socket directory."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import enterable_tmpdir
from tests.e2e.test_job_runs import Jobs
from tests.e2e.test_serve import TOKEN, serving
from tests.runs_support import until_opened, wait_until

pytestmark = pytest.mark.sail

ROOT = Path(__file__).resolve().parents[2]

CANARY, CANARY_VALUE = "SAILPLANE_TEST_CANARY", "canary-3f9a0c-server-only"
# Everything a job attempt's environment holds: built for it, nothing inherited.
BUILT = {
    "PATH",
    "LANG",
    "HOME",
    "TMPDIR",
    "USER",
    "SPARK_REMOTE",
    "SPARK_CONNECT_MODE_ENABLED",
    "SAILPLANE_RUN_ID",
    "SAILPLANE_RUN_ATTEMPT",
    # The run runtime's: where and how the work talks back, with its attempt's own token.
    "SAILPLANE_API_URL",
    "SAILPLANE_RUN_TOKEN",
    "SAILPLANE_ATTEMPT",
    "SAILPLANE_HEARTBEAT_SECONDS",
    "PYTHONPATH",
    "PYTHONUNBUFFERED",
}


@dataclass
class Served:
    base: Path  # a directory anyone may enter: only the server's own care protects data_dir
    data_dir: Path
    jobs: Jobs

    def postgres_socket_dir(self) -> Path:
        # postmaster.pid: line 5 is the socket directory.
        return Path((self.data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[4])


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with enterable_tmpdir("sailplane-isolation-") as base:
        data_dir = base / "data"
        with serving(data_dir, extra_env={CANARY: CANARY_VALUE}) as client:
            (cluster,) = client.get("/me/clusters").json()["included"]["clusters"]
            team = client.post("/org/teams", json={"name": "isolation"})
            assert team.status_code == 201, team.text
            yield Served(base, data_dir, Jobs(client, cluster["id"], team.json()["team"]["id"]))


def _finished(served: Served, job_fields: dict[str, str]) -> tuple[dict, list[str]]:
    job = served.jobs.create(**job_fields)
    run = served.jobs.until(served.jobs.run(job), "completed", "failed")
    return run, served.jobs.logs(run)


def _secrets(served: Served) -> list[str]:
    """What must never show in a run's logs: the owner's key, a server variable, the keys."""
    return [
        TOKEN,
        CANARY_VALUE,
        (served.data_dir / "secrets.key").read_text().strip(),
        (served.data_dir / "postgres.password").read_text().strip(),
    ]


def test_a_python_job_sees_only_its_built_environment_and_none_of_the_servers_files(
    served: Served,
) -> None:
    socket_dir = served.postgres_socket_dir()
    probe = f"""
import json, os, socket
print("ENV " + json.dumps(dict(os.environ)), flush=True)
print("CMD " + json.dumps(open("/proc/self/cmdline").read().split("\\0")), flush=True)
for path in [{str(served.data_dir / "secrets.key")!r}, {str(served.data_dir / "postgres.password")!r},
             "/proc/%d/environ" % os.getppid()]:
    try:
        with open(path, "rb") as handle:
            print("READ", path, handle.read().decode("utf-8", "replace"), flush=True)
    except OSError as error:
        print("DENIED", path, type(error).__name__, flush=True)
try:
    print("LISTED", os.listdir({str(served.data_dir)!r}), flush=True)
except OSError as error:
    print("DENIED-LIST", type(error).__name__, flush=True)
try:
    socket.socket(socket.AF_UNIX).connect({str(socket_dir / ".s.PGSQL.5432")!r})
    print("CONNECTED", flush=True)
except OSError as error:
    print("DENIED-SOCKET", type(error).__name__, flush=True)
"""
    # The server keeps warm children (SAILPLANE_WARM_CHILDREN, default 2): the first run on
    # the cluster (this module's first) starts cold and has the pool filled, the next takes
    # a warm child, started before its attempt existed. Both see the same.
    started = []
    for _ in range(2):
        run, logs = _finished(served, {"python": probe})
        text = "\n".join(logs)
        assert run["status"] == "completed", text
        for secret in _secrets(served):
            assert secret not in text
        (env_line,) = [line for line in logs if line.startswith("ENV ")]
        env = json.loads(env_line[len("ENV ") :])
        assert set(env) == BUILT
        assert env["SAILPLANE_RUN_ID"] == run["id"]
        assert env["SPARK_REMOTE"].startswith("sc://127.0.0.1:")
        assert env["HOME"] != os.environ.get("HOME")
        assert [
            line.split()[0] for line in logs if line.split()[0].startswith(("READ", "DENIED"))
        ] == ["DENIED", "DENIED", "DENIED", "DENIED-LIST", "DENIED-SOCKET"], text
        (command_line,) = [line for line in logs if line.startswith("CMD ")]
        started.append("warm" if "--warm-up" in json.loads(command_line[4:]) else "cold")
    assert started == ["cold", "warm"]


def test_the_readiness_report_says_how_work_is_isolated(served: Served) -> None:
    root_url = str(served.jobs.client.base_url).rstrip("/").removesuffix("/api/v1")
    ready = httpx.get(f"{root_url}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    isolation = ready.json()["isolation"]
    assert (isolation["mode"], isolation["isolated"], isolation["attemptsSeparated"]) == (
        "user",
        True,
        True,
    )


def test_a_sql_job_cannot_read_the_data_directory_through_sails_file_reader(
    served: Served,
) -> None:
    run, logs = _finished(
        served, {"sql": f"SELECT * FROM text.`{served.data_dir / 'secrets.key'}`"}
    )
    text = "\n".join(logs)
    assert run["status"] == "failed", text
    for secret in _secrets(served):
        assert secret not in text
    # The same reader works on a file the work may read: the refusal is the isolation.
    readable = served.base / "public.txt"
    readable.write_text("anyone may read this\n")
    readable.chmod(0o644)
    run, logs = _finished(served, {"sql": f"SELECT * FROM text.`{readable}`"})
    assert run["status"] == "completed", logs
    assert "anyone may read this" in logs


def test_attempts_cannot_read_each_others_directories(served: Served) -> None:
    gate = served.base / "gate"
    first_source = (
        "import os\n"
        "open(os.path.join(os.environ['HOME'], 'mine.txt'), 'w').write('first attempt only')\n"
        "print('HOME', os.environ['HOME'], flush=True)\n" + until_opened(gate)
    )
    jobs = served.jobs
    first = jobs.run(jobs.create(python=first_source))
    try:
        jobs.until(first, "running")
        # The second attempt looks where the first one's directory is (next to its own).
        first_home = wait_until(
            lambda: next((x[5:] for x in jobs.logs(first) if x.startswith("HOME ")), None),
            what="the first attempt's directory in its logs",
        )
        probe = f"""
import os
home = {first_home!r}
print("HOME", home, flush=True)
for what, look in (("list", lambda: os.listdir(home)),
                   ("read", lambda: open(os.path.join(home, "mine.txt")).read())):
    try:
        print(what.upper(), look(), flush=True)
    except OSError as error:
        print("DENIED-" + what.upper(), type(error).__name__, flush=True)
"""
        run, logs = _finished(served, {"python": probe})
        assert run["status"] == "completed", logs
        assert "first attempt only" not in "\n".join(logs)
        assert logs[1:] == ["DENIED-LIST PermissionError", "DENIED-READ PermissionError"], logs
        # The first attempt's file is there all the while: the refusal is the isolation.
        first_file = Path(logs[0].split(" ", 1)[1]) / "mine.txt"
        assert wait_until(first_file.exists, what="the first attempt's file")
        assert first_file.read_text() == "first attempt only"
    finally:
        gate.touch()
    assert jobs.until(first, "completed", "failed")["status"] == "completed"


def test_the_embedded_database_needs_its_password_behind_a_private_socket(served: Served) -> None:
    socket_dir = served.postgres_socket_dir()
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(
            host=str(socket_dir), user="postgres", dbname="postgres", passfile="/nonexistent"
        )
    password = (served.data_dir / "postgres.password").read_text().strip()
    with psycopg.connect(
        host=str(socket_dir), user="postgres", dbname="postgres", password=password
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # The data directory is the server's alone (its database's user may pass through it).
    assert stat.S_IMODE(served.data_dir.stat().st_mode) & 0o007 == 0


def test_without_root_the_server_says_loudly_that_work_is_not_isolated() -> None:
    """The fallback: a server that can neither switch users nor sandbox says so (the log at
    start and the readiness report). Here it runs as the unprivileged work user."""
    from sailplane.infra_adapters.isolation import WORK_USER, ensure_work_user

    script = (
        "import json, logging\n"
        "from sailplane.infra_adapters.isolation import Isolation\n"
        "logging.basicConfig()\n"
        "isolation = Isolation.detect()\n"
        "isolation.warn_if_not_isolated()\n"
        "print(json.dumps(isolation.describe()))\n"
        "isolation.close()\n"
    )
    nobody = subprocess.run(
        [sys.executable, "-c", script],
        user=WORK_USER,
        group=ensure_work_user().pw_gid,
        extra_groups=[],
        # No `bwrap` on its PATH: neither switching users nor a sandbox is possible.
        env={"PATH": "/nonexistent", "HOME": "/tmp", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nobody.returncode == 0, nobody.stderr
    described = json.loads(nobody.stdout)
    assert described["mode"] == "none" and described["isolated"] is False
    assert "USER WORK IS NOT ISOLATED" in nobody.stderr
