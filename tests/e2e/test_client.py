"""`sailplane.client` and the `sailplane` client commands against the real app: a job on the
organization's `local` cluster runs on a real Sail server, dispatched by the dispatcher.

Each test narrates what a user does: log in (the profile is private to its owner), create a
job from a YAML file, run it and follow its logs, list, describe, retry and cancel runs,
read errors as typed values, and rely on the documented exit codes in scripts.
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sailplane.cli import main
from sailplane.client import ApiError, Client, ConnectionFailed, LogLine, RunEvent, load_profile
from sailplane.client_cli import API_ERROR, OK, RUN_NOT_COMPLETED, UNREACHABLE, USAGE_ERROR
from tests.conftest import Org
from tests.e2e.test_job_runs import dispatcher, local_cluster, team
from tests.runs_support import UNTIL_STOPPED, wait_until
from tests.services import free_port

__all__ = ["dispatcher", "local_cluster", "team"]  # fixtures used below

pytestmark = pytest.mark.sail


@pytest.fixture
def sp(api: str, org: Org, dispatcher: None) -> Client:
    with Client(api, org.token) as client:
        yield client


@pytest.fixture
def logged_in(api: str, org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`sailplane login` into a profile file of the test's own (SAILPLANE_CONFIG)."""
    config = tmp_path / "config" / "profiles.json"
    monkeypatch.setenv("SAILPLANE_CONFIG", str(config))
    for name in ("SAILPLANE_URL", "SAILPLANE_TOKEN", "SAILPLANE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["login", api, "--token", org.token]) == OK
    return config


def sailplane(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Runs `sailplane ARGS` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def python_job(sp: Client, team: str, cluster: str, source: str) -> dict[str, Any]:
    return {
        "jobKey": f"client-{free_port()}",
        "clusterId": cluster,
        "teamIds": [team],
        "config": {"lakesail": {"maxRetries": 0}, "python": {"source": source}},
    }


def test_the_client_runs_a_job_and_follows_its_logs(
    sp: Client, team: str, local_cluster: str
) -> None:
    job = sp.jobs.create(python_job(sp, team, local_cluster, "print('hello from a run')"))
    assert sp.jobs.get(job.job_key).id == job.id  # a job by its key as well as its id
    run = sp.jobs.run(job.job_key)
    # The stream gives the run's transitions and its log lines until it finishes.
    seen = list(sp.runs.watch(job.id, run.id))
    assert "hello from a run" in [i.line for i in seen if isinstance(i, LogLine)]
    assert [i.status for i in seen if isinstance(i, RunEvent)][-1] == "completed"
    assert sp.runs.get(job.id, run.id).status == "completed"
    assert [line.line for line in sp.runs.logs(job.id, run.id)] == ["hello from a run"]
    assert [r.id for r in sp.runs.list(job.id)] == [run.id]
    assert run.id in [r.id for r in sp.runs.list()]
    assert job.id in [j.id for j in sp.jobs.list()]


def test_errors_come_back_typed(sp: Client, team: str, local_cluster: str) -> None:
    with pytest.raises(ApiError) as missing:
        sp.jobs.get("NOSUCHJOB0")
    assert (missing.value.status, missing.value.code) == (404, "job_not_found")
    spec = python_job(sp, team, local_cluster, "print(1)")
    sp.jobs.create(spec)
    with pytest.raises(ApiError) as taken:
        sp.jobs.create(spec)
    assert taken.value.status == 409 and taken.value.message
    with pytest.raises(ConnectionFailed), Client(f"http://127.0.0.1:{free_port()}", "x") as down:
        down.jobs.list()


def test_cancel_and_retry_a_run(sp: Client, team: str, local_cluster: str) -> None:
    job = sp.jobs.create(python_job(sp, team, local_cluster, UNTIL_STOPPED))
    run = sp.jobs.run(job.id)
    wait_until(lambda: sp.runs.get(job.id, run.id).status == "running", what="running")
    assert sp.runs.cancel(job.id, run.id).id == run.id
    wait_until(lambda: sp.runs.get(job.id, run.id).status == "cancelled", what="cancelled")
    retried = sp.runs.retry(job.id, run.id, hold=True)
    assert (retried.status, retried.attempt) == ("pending", 2)
    with pytest.raises(ApiError) as finished:
        sp.runs.retry(job.id, run.id)
    assert finished.value.status == 409


def test_login_keeps_the_token_in_a_private_file(logged_in: Path, api: str, org: Org) -> None:
    assert stat.S_IMODE(logged_in.stat().st_mode) == 0o600
    assert load_profile().url == api and load_profile().token == org.token


def test_login_with_a_wrong_key_saves_nothing(
    api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "profiles.json"
    monkeypatch.setenv("SAILPLANE_CONFIG", str(config))
    code, _, err = sailplane(capsys, "login", api, "--token", "sp_not-a-key")
    assert code == API_ERROR and "HTTP 401" in err and not config.exists()


def test_the_cli_creates_runs_and_follows_a_job(
    logged_in: Path,
    dispatcher: None,
    team: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = f"cli-{free_port()}"
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        f"jobKey: {key}\n"
        f"teamIds: [{team}]\n"
        "config:\n  python:\n    source: |\n      print('line one')\n      print('line two')\n"
    )
    # No clusterId in the file: the caller's only active cluster is used.
    code, out, err = sailplane(capsys, "jobs", "create", "-f", str(job_file), "-o", "json")
    assert code == OK, err
    job = json.loads(out)
    assert job["jobKey"] == key and job["clusterId"]

    code, out, err = sailplane(capsys, "jobs", "run", key, "--follow")
    assert code == OK, err
    assert "line one\nline two" in out and err.strip().endswith("completed")

    code, out, _ = sailplane(capsys, "runs", "list", key, "-o", "id")
    [run_id] = out.split()
    code, out, _ = sailplane(capsys, "runs", "get", key, run_id)
    assert code == OK and out.splitlines()[0].split()[:3] == ["id", "jobId", "status"]
    assert out.splitlines()[1].split()[:3] == [run_id, job["id"], "completed"]
    code, out, _ = sailplane(capsys, "jobs", "logs", key)
    assert (code, out) == (OK, "line one\nline two\n")
    code, out, _ = sailplane(capsys, "jobs", "list")
    assert key in out

    # Scripts can tell an API refusal from a usage error from an unfinished run.
    code, _, err = sailplane(capsys, "runs", "cancel", key, run_id)
    assert code == API_ERROR and "run_finished" in err and "HTTP 409" in err
    code, _, err = sailplane(capsys, "jobs", "get", "no-such-job")
    assert code == API_ERROR and "HTTP 404" in err
    code, _, err = sailplane(capsys, "jobs", "create", "-f", str(tmp_path / "missing.yaml"))
    assert code == USAGE_ERROR and err.startswith("error: -f:")


def test_following_a_failing_run_exits_4(
    logged_in: Path,
    dispatcher: None,
    team: str,
    local_cluster: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_file = tmp_path / "bad.json"
    job_file.write_text(
        json.dumps(
            {
                "jobKey": f"bad-{free_port()}",
                "teamIds": [team],
                "config": {"lakesail": {"maxRetries": 0}, "sql": {"source": "SELEC nonsense"}},
            }
        )
    )
    code, out, _ = sailplane(
        capsys, "jobs", "create", "-f", str(job_file), "--cluster", local_cluster, "-o", "id"
    )
    job_id = out.strip()
    code, out, err = sailplane(capsys, "jobs", "run", job_id, "--follow", "-o", "json")
    assert code == RUN_NOT_COMPLETED and err.strip().endswith("failed")
    statuses = [json.loads(line).get("status") for line in out.splitlines()]
    assert statuses[-1] == "failed"
    code, out, _ = sailplane(capsys, "runs", "list", job_id, "-o", "json")
    [run] = json.loads(out)
    code, out, err = sailplane(capsys, "runs", "retry", job_id, run["id"], "--hold")
    assert code == OK and "pending" in out


def test_exit_codes_without_a_server_or_a_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAILPLANE_CONFIG", str(tmp_path / "none.json"))
    for name in ("SAILPLANE_URL", "SAILPLANE_TOKEN", "SAILPLANE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = sailplane(capsys, "jobs", "list")
    assert code == USAGE_ERROR and "sailplane login" in err
    monkeypatch.setenv("SAILPLANE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("SAILPLANE_TOKEN", "sp_x")
    code, _, err = sailplane(capsys, "runs", "list")
    assert code == UNREACHABLE and "cannot reach" in err
    with pytest.raises(SystemExit) as usage:
        main(["runs", "get"])
    assert usage.value.code == USAGE_ERROR


def test_bash_completion_knows_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, script, _ = sailplane(capsys, "completion", "bash")
    assert code == OK
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    completed = subprocess.run(
        [
            "bash",
            "-c",
            script + '\nCOMP_WORDS=(sailplane runs ""); COMP_CWORD=2; _sailplane; '
            'echo "${COMPREPLY[*]}"\n'
            "COMP_WORDS=(sailplane jobs create --f); COMP_CWORD=3; _sailplane; "
            'echo "${COMPREPLY[*]}"',
        ],
        capture_output=True,
        text=True,
    )
    runs_words, create_words = completed.stdout.splitlines()
    assert set(runs_words.split()) >= {"list", "get", "cancel", "retry", "watch"}
    assert create_words.split() == ["--file"]
