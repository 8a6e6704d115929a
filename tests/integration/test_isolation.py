"""How user work is started (`infra_adapters/isolation.py`), as root here as in CI: an
attempt's workspace is its own, its environment is built, what it leaves running dies with
it; and the server forgets the bootstrap token once it has used it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sailplane.infra_adapters.isolation import (
    ATTEMPT_UIDS,
    BUBBLEWRAP,
    USER,
    WORK_USER,
    Isolation,
    Workspace,
    ensure_work_user,
)
from sailplane.settings import Settings
from sailplane.storage import Database
from sailplane.system import bootstrap_organization
from tests.conftest import running_system
from tests.runs_support import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def isolation() -> Iterator[Isolation]:
    detected = Isolation.detect()
    yield detected
    detected.close()


def _with_uid(uid: int) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == uid]


def _python(
    isolation: Isolation,
    workspace: Workspace,
    code: str,
    variables: dict[str, str] | None = None,
) -> str:
    """Run `code` as work in `workspace`; what it printed (it must succeed)."""
    process = isolation.spawn(
        [sys.executable, "-c", code], workspace, variables or {}, stdout=subprocess.PIPE
    )
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    return out.decode()


def test_an_attempt_runs_as_its_own_uid_in_a_private_directory(isolation: Isolation) -> None:
    assert isolation.mode == USER and isolation.describe()["isolated"] is True
    first = isolation.workspace("attempt-one", attempt=True)
    second = isolation.workspace("attempt-two", attempt=True)
    work_group = ensure_work_user().pw_gid
    for workspace in (first, second):
        status = workspace.path.stat()
        assert stat.S_IMODE(status.st_mode) == 0o700
        assert status.st_uid == workspace.uid and workspace.uid in ATTEMPT_UIDS
        assert status.st_gid == workspace.gid == work_group
    assert first.uid != second.uid
    assert stat.S_IMODE(isolation.root.stat().st_mode) == 0o711  # pass through, not list
    isolation.release(first)
    isolation.release(second)
    assert not first.path.exists() and not second.path.exists()


def test_what_an_attempt_leaves_running_dies_when_it_ends(isolation: Isolation) -> None:
    workspace = isolation.workspace("attempt-leaves", attempt=True)
    # The work starts a process in a session of its own (out of reach of the process-group
    # signal) and exits.
    _python(
        isolation,
        workspace,
        "import subprocess\n"
        "subprocess.Popen(['sleep', '300'], start_new_session=True, stdout=subprocess.DEVNULL)",
    )
    assert [p.name() for p in _with_uid(workspace.uid)] == ["sleep"]
    isolation.release(workspace)
    wait_until(lambda: not _with_uid(workspace.uid), what="the leftover process killed")


def test_a_long_lived_server_runs_as_the_work_user_with_a_built_environment(
    isolation: Isolation,
) -> None:
    workspace = isolation.workspace("sail-x", attempt=False)
    printed = _python(
        isolation,
        workspace,
        "import json, os; print(os.getuid(), json.dumps(sorted(os.environ)))",
        {"SPARK_REMOTE": "sc://127.0.0.1:1"},
    )
    uid, names = printed.split(" ", 1)
    assert int(uid) == ensure_work_user(WORK_USER).pw_uid
    assert names.strip() == '["HOME", "LANG", "PATH", "SPARK_REMOTE", "TMPDIR", "USER"]'


def test_the_server_forgets_the_bootstrap_token_once_used(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAILPLANE_BOOTSTRAP_TOKEN", "sp_bootstrap-forgotten")
    settings = Settings.from_env()
    assert settings.bootstrap_token == "sp_bootstrap-forgotten"
    with running_system(fresh_db) as system:
        bootstrap_organization(system.identity, settings)
        assert "SAILPLANE_BOOTSTRAP_TOKEN" not in os.environ
        # It was used: the organization and its owner exist.
        assert system.identity.directory.first_owner() is not None


# Run by an unprivileged server: the sandbox hides `secret_dir` and the first workspace
# from work in the second one.
SANDBOXED = """
import json, subprocess, sys
from pathlib import Path
from sailplane.infra_adapters.isolation import Isolation
secret_dir = Path(sys.argv[1])
isolation = Isolation.detect(hidden=[secret_dir])
first = isolation.workspace("attempt-first", attempt=True)
(first.path / "mine.txt").write_text("first attempt only")
second = isolation.workspace("attempt-second", attempt=True)
probe = (
    "import json, os\\n"
    "seen = {}\\n"
    f"for name, path in (('secret', {str(secret_dir / 'secret.txt')!r}),"
    f" ('first', {str(first.path / 'mine.txt')!r})):\\n"
    "    try:\\n"
    "        seen[name] = open(path).read()\\n"
    "    except OSError as error:\\n"
    "        seen[name] = type(error).__name__\\n"
    "seen['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\\n"
    "print(json.dumps(seen))\\n"
)
work = isolation.spawn([sys.executable, "-c", probe], second, {}, stdout=subprocess.PIPE)
out, _ = work.communicate(timeout=60)
print(json.dumps({"mode": isolation.mode, "work": json.loads(out)}))
isolation.close()
"""


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (`bwrap`)")
def test_an_unprivileged_server_sandboxes_work_with_bubblewrap() -> None:
    user = ensure_work_user()
    secret_dir = Path(tempfile.mkdtemp(prefix="sailplane-secret-"))
    try:
        (secret_dir / "secret.txt").write_text("the server's own secret")
        for path in (secret_dir, secret_dir / "secret.txt"):
            os.chown(path, user.pw_uid, user.pw_gid)  # the (unprivileged) server's own files
        secret_dir.chmod(0o755)  # even readable by anyone: the sandbox hides it
        server = subprocess.run(
            [sys.executable, "-c", SANDBOXED, str(secret_dir)],
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(secret_dir, ignore_errors=True)
    assert server.returncode == 0, server.stderr
    report = json.loads(server.stdout)
    assert report["mode"] == BUBBLEWRAP
    assert report["work"]["secret"] == "FileNotFoundError"
    assert report["work"]["first"] == "FileNotFoundError"
    assert len(report["work"]["pids"]) <= 3  # its own process table, not the host's
