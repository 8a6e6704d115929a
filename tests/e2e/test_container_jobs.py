"""Container jobs over HTTP (seed 002): `/workspaces/{org}/projects/{team}/jobs...` on the
embedded default's local cluster, in the `{status, message, data}` envelope, over the same
jobs and runs as the seed-004 API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sailplane.infra_adapters.scheduler import RunsForScheduler, Scheduler
from sailplane.system import System
from tests.conftest import Org
from tests.e2e.test_job_runs import dispatcher, local_cluster, pid_of
from tests.runs_support import process_alive, wait_until

__all__ = ["dispatcher", "local_cluster"]  # fixtures used below

pytestmark = pytest.mark.sail


class Project:
    """One project's container jobs API, as a client of the root URL."""

    def __init__(self, client: httpx.Client, org: Org, team: str) -> None:
        self.client, self.org, self.team = client, org, team
        self.base = f"/workspaces/{org.id}/projects/{team}/jobs"

    def create(self, **fields: Any) -> dict[str, Any]:
        body = {"name": f"c-{uuid.uuid4().hex[:8]}", "image": "alpine:3.20", **fields}
        created = self.client.post(self.base, json=body)
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "success"
        return created.json()["data"]

    def trigger(self, job: dict[str, Any]) -> dict[str, Any]:
        triggered = self.client.post(f"{self.base}/{job['id']}/runs")
        assert triggered.status_code == 201, triggered.text
        return triggered.json()["data"]

    def run(self, job: dict[str, Any], run: dict[str, Any]) -> httpx.Response:
        return self.client.get(f"{self.base}/{job['id']}/runs/{run['id']}")

    def until(self, job: dict[str, Any], run: dict[str, Any], *statuses: str) -> dict[str, Any]:
        return wait_until(
            lambda: (r := self.run(job, run).json()["data"])["status"] in statuses and r,
            timeout=90,
            what=f"run {run['id']} in {statuses}",
        )

    def logs(self, path: str, **params: Any) -> list[dict[str, Any]]:
        answered = self.client.get(f"{self.base}/{path}", params=params)
        assert answered.status_code == 200, answered.text
        return answered.json()["data"]


@pytest.fixture
def root(api: str, org: Org) -> Iterator[httpx.Client]:
    """A client of the server's root: the container-jobs API is not under /api/v1."""
    headers = {"Authorization": f"Bearer {org.token}"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def project(dispatcher: None, root: httpx.Client, org: Org, local_cluster: str) -> Project:
    team = root.post("/api/v1/org/teams", json={"name": f"p-{uuid.uuid4().hex[:6]}"})
    assert team.status_code == 201, team.text
    return Project(root, org, team.json()["team"]["id"])


def test_echo_succeeds_with_exit_code_0_and_its_line_in_both_log_endpoints(
    project: Project,
) -> None:
    job = project.create(command=["echo", "hello"], env={"STAGE": "prod"}, tags={"team": "data"})
    assert (job["image"], job["command"], job["env"], job["tags"]) == (
        "alpine:3.20",
        ["echo", "hello"],
        {"STAGE": "prod"},
        {"team": "data"},
    )
    assert (job["schedule"], job["schedule_timezone"], job["next_run_at"]) == (None, "UTC", None)
    run = project.trigger(job)
    assert (run["status"], run["trigger"], run["exit_code"]) == ("pending", "manual", None)
    done = project.until(job, run, "succeeded", "failed")
    assert (done["status"], done["exit_code"], done["error"]) == ("succeeded", 0, None)
    assert done["started_at"] and done["finished_at"]
    for path in (f"{job['id']}/logs", f"{job['id']}/runs/{run['id']}/logs"):
        (line,) = project.logs(path)
        assert (line["line"], line["stream"], line["run_id"]) == ("hello", "stdout", run["id"])
        # Written during the run: after it was created (the dispatcher may record that the
        # run started only after a command this short has already printed and ended).
        assert done["created_at"] <= line["timestamp"] <= done["finished_at"]
    assert project.logs(f"{job['id']}/logs", since="15m", filter="hell")[0]["line"] == "hello"
    assert project.logs(f"{job['id']}/logs", filter="absent") == []


def test_exit_3_fails_with_exit_code_3_and_stderr_is_its_own_stream(project: Project) -> None:
    job = project.create(command="echo out; echo oops >&2; exit 3")
    run = project.trigger(job)
    done = project.until(job, run, "succeeded", "failed")
    assert (done["status"], done["exit_code"]) == ("failed", 3)
    assert "3" in done["error"]
    lines = project.logs(f"{job['id']}/runs/{run['id']}/logs")
    assert sorted((line["stream"], line["line"]) for line in lines) == [
        ("stderr", "oops"),
        ("stdout", "out"),
    ]


def test_a_missing_command_fails_with_a_readable_reason(project: Project) -> None:
    job = project.create(command=["no-such-command-here"])
    done = project.until(job, project.trigger(job), "succeeded", "failed")
    assert done["status"] == "failed"
    assert done["error"] == "command not found: no-such-command-here"
    assert done["exit_code"] == 127


def test_a_sleeping_run_is_cancelled_its_process_is_gone_and_a_second_cancel_is_409(
    project: Project, system: System
) -> None:
    job = project.create(command=["sleep", "300"])
    run = project.trigger(job)
    project.until(job, run, "running")
    pid = wait_until(lambda: pid_of(system, run["id"]), timeout=30, what="the run's process")
    cancel = f"{project.base}/{job['id']}/runs/{run['id']}/cancel"
    cancelled = project.client.post(cancel)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["data"]["status"] == "cancelled"
    wait_until(lambda: not process_alive(pid), timeout=30, what=f"process {pid} gone")
    again = project.client.post(cancel)
    assert again.status_code == 409, again.text
    assert again.json()["status"] == "error" and again.json()["data"] is None
    assert again.json()["message"]


def test_a_job_scheduled_every_minute_gets_a_schedule_run(project: Project, system: System) -> None:
    job = project.create(command=["true"], schedule="* * * * *", schedule_timezone="Europe/Paris")
    assert job["next_run_at"] is not None
    status = project.client.get(f"{project.base}/{job['id']}/status").json()["data"]
    assert status["schedule"] == {
        "cron": "* * * * *",
        "timezone": "Europe/Paris",
        "next_run_at": job["next_run_at"],
    }
    # The scheduler's next tick as it will be a minute from now.
    later = system.clock() + timedelta(seconds=61)
    scheduler = Scheduler(
        system.workloads.schedules, RunsForScheduler(system.runs.commands), lambda: later
    )
    assert system.views_reached(system.event_log.head())
    fired = [f for f in scheduler.tick() if f.job_id == job["id"]]
    assert fired, "the job's next minute fired"
    assert system.views_reached(system.event_log.head())
    runs = project.client.get(f"{project.base}/{job['id']}/runs").json()["data"]
    assert [r["trigger"] for r in runs] == ["schedule"]


def test_a_command_burning_a_core_shows_cpu_near_one_and_memory(project: Project) -> None:
    burn = "import time\nend = time.process_time() + 5\nwhile time.process_time() < end: pass"
    job = project.create(command=["python3", "-c", burn])
    done = project.until(job, project.trigger(job), "succeeded", "failed")
    assert done["status"] == "succeeded", done
    answered = project.client.get(
        f"{project.base}/{job['id']}/metrics",
        params={"names": "cpu_usage,memory_usage", "since": "10m", "step": 1},
    )
    assert answered.status_code == 200, answered.text
    cpu, memory = answered.json()["data"]["metrics"]
    assert (cpu["name"], cpu["status"], cpu["unit"]) == ("cpu_usage", "success", "cores")
    # A burning process gets at most one core; on a busy machine somewhat less.
    assert 0.3 < max(p["value"] for p in cpu["points"]) < 1.5, cpu
    assert memory["unit"] == "bytes" and min(p["value"] for p in memory["points"]) > 0
    mixed = project.client.get(
        f"{project.base}/{job['id']}/metrics", params={"names": "cpu_usage,bogus"}
    )
    assert mixed.status_code == 200
    first, bogus = mixed.json()["data"]["metrics"]
    assert first["status"] == "success"
    assert (bogus["name"], bogus["status"], bogus["points"]) == ("bogus", "error", [])
    assert "bogus" in bogus["error"]


def test_patching_the_command_alone_keeps_the_rest_and_the_next_run_uses_it(
    project: Project, api: str
) -> None:
    job = project.create(command=["echo", "one"], env={"A": "1"}, tags={"t": "x"})
    changed = project.client.patch(f"{project.base}/{job['id']}", json={"command": "echo two $A"})
    assert changed.status_code == 200, changed.text
    after = changed.json()["data"]
    assert after["command"] == "echo two $A"
    assert {k: after[k] for k in ("name", "image", "env", "tags", "schedule", "cluster_id")} == {
        k: job[k] for k in ("name", "image", "env", "tags", "schedule", "cluster_id")
    }
    run = project.trigger(job)
    project.until(job, run, "succeeded")
    assert [line["line"] for line in project.logs(f"{job['id']}/runs/{run['id']}/logs")] == [
        "two 1"
    ]
    # The same job in the seed-004 API, with both versions.
    versions = project.client.get(f"/api/v1/workloads/jobs/{job['id']}/versions").json()
    assert [v["version"] for v in versions["items"]] == [1, 2]
    assert all(v["jobType"] == "container" for v in versions["items"])
    listed = project.client.get("/api/v1/workloads/jobs", params={"limit": 100}).json()
    assert job["id"] in {j["id"] for j in listed["included"]["jobs"]}


def test_a_taken_name_is_409_and_bad_fields_are_errors_in_the_envelope(project: Project) -> None:
    job = project.create(command=["true"])
    taken = project.client.post(
        project.base, json={"name": job["name"], "image": "x", "command": ["true"]}
    )
    assert taken.status_code == 409 and taken.json()["status"] == "error", taken.text
    empty = project.client.post(project.base, json={"name": "ok", "image": "x", "command": []})
    assert empty.status_code == 422, empty.text
    assert empty.json() == {"status": "error", "message": empty.json()["message"], "data": None}
    cron = project.client.post(
        project.base, json={"name": "c2", "image": "x", "command": ["true"], "schedule": "nope"}
    )
    assert cron.status_code == 400 and "five fields" in cron.json()["message"], cron.text
    window = project.client.get(f"{project.base}/{job['id']}/logs", params={"since": "soon"})
    assert window.status_code == 400 and "since" in window.json()["message"]


def test_delete_stops_and_removes_runs_and_logs(project: Project) -> None:
    job = project.create(command=["echo", "bye"])
    run = project.trigger(job)
    project.until(job, run, "succeeded")
    deleted = project.client.delete(f"{project.base}/{job['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"] == {"id": job["id"], "deleted": True}
    for path in ("", "/runs", f"/runs/{run['id']}", f"/runs/{run['id']}/logs", "/logs"):
        gone = project.client.get(f"{project.base}/{job['id']}{path}")
        assert gone.status_code == 404, (path, gone.text)
        assert gone.json()["status"] == "error"


def test_status_counts_runs_by_status(project: Project) -> None:
    job = project.create(command="exit 1")
    first = project.trigger(job)
    project.until(job, first, "failed")
    second = project.trigger(job)
    project.until(job, second, "failed")
    status = project.client.get(f"{project.base}/{job['id']}/status").json()["data"]
    assert status["counts"] == {
        "pending": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 2,
        "cancelled": 0,
        "total": 2,
    }
    assert status["last_run"]["id"] == second["id"]
    assert status["schedule"] is None


def test_a_foreign_workspace_or_project_is_404(
    project: Project, root: httpx.Client, org: Org, api: str
) -> None:
    job = project.create(command=["true"])
    for path in (
        f"/workspaces/ORGNOTMINE1/projects/{project.team}/jobs",
        f"/workspaces/{org.id}/projects/TEAMNOTMINE/jobs",
        f"/workspaces/{org.id}/projects/TEAMNOTMINE/jobs/{job['id']}",
    ):
        answered = root.get(path)
        assert answered.status_code == 404, (path, answered.text)
        assert answered.json()["status"] == "error"
    other = root.post("/api/v1/org/teams", json={"name": f"o-{uuid.uuid4().hex[:6]}"}).json()
    elsewhere = f"/workspaces/{org.id}/projects/{other['team']['id']}/jobs/{job['id']}"
    assert root.get(elsewhere).status_code == 404  # a job of another project
    refused = httpx.get(f"{api}{project.base}")
    assert refused.status_code == 401 and refused.json()["status"] == "error"


def test_every_documented_operation_is_declared(root: httpx.Client) -> None:
    document = root.get("/schema/openapi.json").json()
    paths = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if path.startswith("/workspaces/")
    }
    assert len(paths) == 13, sorted(paths)
    errors = document["paths"]["/workspaces/{workspace_id}/projects/{project_id}/jobs"]["post"]
    assert "EnvelopeError" in str(errors["responses"]["404"])
