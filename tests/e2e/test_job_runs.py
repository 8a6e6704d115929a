"""Job runs over HTTP on the embedded default: a job on the organization's `local`
cluster runs on a real Sail server, dispatched by the dispatcher worker.

Each test narrates one documented rule: completion with logs and events, failure and
retry under the same id, hold and release, the 409 rules, cancel and timeout stopping the
work, the concurrency policies, dependencies, the event stream, and pagination.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sailplane.infra_adapters.executors.local import EXECUTIONS_TABLE
from sailplane.system import System, WorkerHost
from tests.conftest import Org, local_cluster_id
from tests.runs_support import UNTIL_STOPPED, process_alive, until_opened, wait_until

pytestmark = pytest.mark.sail


@pytest.fixture(scope="module")
def dispatcher(system: System) -> Iterator[None]:
    stop = threading.Event()
    host = WorkerHost()
    host.start(system.worker("dispatcher"), stop)
    try:
        yield
    finally:
        stop.set()
        host.join(timeout=20)


@pytest.fixture
def local_cluster(system: System, org: Org) -> str:
    """The organization's built-in `local` cluster (its Sail server starts on first use)."""
    return local_cluster_id(system, org.id)


@pytest.fixture
def team(client: httpx.Client) -> str:
    created = client.post("/org/teams", json={"name": f"team-{uuid.uuid4().hex[:8]}"})
    assert created.status_code == 201, created.text
    return created.json()["team"]["id"]


class Jobs:
    def __init__(self, client: httpx.Client, cluster: str, team: str) -> None:
        self.client, self.cluster, self.team = client, cluster, team

    def create(
        self,
        *,
        sql: str | None = None,
        python: str | None = None,
        container: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        config: dict[str, Any] = {"lakesail": {"maxRetries": fields.pop("max_retries", 0)}}
        if sql is not None:
            config["sql"] = {"source": sql}
        if python is not None:
            config["python"] = {"source": python}
        if container is not None:
            config["container"] = container
        created = self.client.post(
            "/workloads/jobs",
            json={
                "jobKey": f"job-{uuid.uuid4().hex[:8]}",
                "clusterId": self.cluster,
                "teamIds": [self.team],
                "config": config,
                **fields,
            },
        )
        assert created.status_code == 201, created.text
        return created.json()

    def run(self, job: dict[str, Any], **body: Any) -> dict[str, Any]:
        created = self.client.post(f"/workloads/jobs/{job['id']}/runs", json=body)
        assert created.status_code == 201, created.text
        return created.json()

    def get(self, run: dict[str, Any]) -> dict[str, Any]:
        found = self.client.get(f"/workloads/jobs/{run['jobId']}/runs/{run['id']}")
        assert found.status_code == 200, found.text
        return found.json()

    def until(self, run: dict[str, Any], *statuses: str, timeout: float = 90) -> dict[str, Any]:
        return wait_until(
            lambda: (r := self.get(run))["status"] in statuses and r,
            timeout=timeout,
            what=f"run {run['id']} in {statuses}",
        )

    def action(self, run: dict[str, Any], name: str, body: Any = None) -> httpx.Response:
        return self.client.post(
            f"/workloads/jobs/{run['jobId']}/runs/{run['id']}/{name}", json=body
        )

    def events(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        return self.client.get(f"/workloads/jobs/{run['jobId']}/runs/{run['id']}/events").json()[
            "items"
        ]

    def logs(self, run: dict[str, Any]) -> list[str]:
        page = self.client.get(f"/workloads/jobs/{run['jobId']}/runs/{run['id']}/logs")
        return [line["line"] for line in page.json()["items"]]


@pytest.fixture
def jobs(dispatcher: None, client: httpx.Client, local_cluster: str, team: str) -> Jobs:
    return Jobs(client, local_cluster, team)


def pid_of(system: System, run_id: str, attempt: int = 1) -> int:
    def pid() -> int | None:
        with system.database.connect() as conn:
            row = conn.execute(
                f"SELECT pid FROM {EXECUTIONS_TABLE} WHERE run_id = %s AND attempt = %s",
                (run_id, attempt),
            ).fetchone()
        return row[0] if row else None

    return wait_until(pid, what="the attempt's process")


def test_select_1_completes_with_logs_and_events(jobs: Jobs) -> None:
    job = jobs.create(sql="SELECT 1 AS one")
    run = jobs.run(job)
    # A new run of a job that is not held is ready at once, with the job's active version.
    assert (run["status"], run["jobVersion"], run["trigger"]) in {
        ("ready", 1, "manual"),
        ("dispatched", 1, "manual"),
        ("running", 1, "manual"),
        ("completed", 1, "manual"),
    }
    done = jobs.until(run, "completed")
    assert done["statusReason"] == "succeeded" and done["runnerExecutionTimeUs"] >= 0
    assert jobs.logs(run)[:2] == ["one", "1"]
    events = jobs.events(run)
    assert [e["type"] for e in events] == ["created", "dispatched", "started", "completed"]
    assert events[0]["cause"].startswith("member:")
    assert events[1]["cause"] == "system:dispatcher" and events[-1]["cause"] == "system:executor"


def test_bad_sql_fails_and_a_retry_runs_again_under_the_same_id(jobs: Jobs) -> None:
    job = jobs.create(sql="SELEC nonsense")
    run = jobs.run(job)
    failed = jobs.until(run, "failed")
    assert failed["statusReason"] == "execution_failed" and "SELEC" in failed["statusMessage"]
    retried = jobs.action(run, "retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["id"] == run["id"] and retried.json()["trigger"] == "retry"
    again = jobs.until(run, "failed")
    assert again["attempt"] == 2
    assert [e["type"] for e in jobs.events(run)].count("dispatched") == 2


def test_a_held_run_waits_until_released(jobs: Jobs) -> None:
    job = jobs.create(sql="SELECT 1")
    run = jobs.run(job, hold=True)
    assert (run["status"], run["statusReason"], run["hold"]) == ("pending", "held", True)
    assert jobs.get(run)["status"] == "pending"  # nothing dispatches a held run
    released = jobs.action(run, "ready")
    assert released.status_code == 200 and released.json()["status"] in (
        "ready",
        "dispatched",
        "running",
        "completed",
    )
    jobs.until(run, "completed")


def test_release_is_409_unless_pending(jobs: Jobs) -> None:
    run = jobs.run(jobs.create(sql="SELECT 1"))
    jobs.until(run, "completed")
    response = jobs.action(run, "ready")
    assert response.status_code == 409 and response.json()["code"] == "run_not_pending"


def test_retry_is_409_unless_failed_timeout_cancelled_or_dead_letter(jobs: Jobs) -> None:
    held = jobs.run(jobs.create(sql="SELECT 1"), hold=True)
    response = jobs.action(held, "retry", {"hold": False})
    assert response.status_code == 409 and response.json()["code"] == "run_not_retryable"


def test_cancel_is_409_once_finished(jobs: Jobs) -> None:
    run = jobs.run(jobs.create(sql="SELECT 1"))
    jobs.until(run, "completed")
    response = jobs.action(run, "cancel")
    assert response.status_code == 409 and response.json()["code"] == "run_finished"


def test_delete_is_409_unless_finished(jobs: Jobs) -> None:
    run = jobs.run(jobs.create(sql="SELECT 1"), hold=True)
    path = f"/workloads/jobs/{run['jobId']}/runs/{run['id']}"
    response = jobs.client.delete(path)
    assert response.status_code == 409 and response.json()["code"] == "run_not_finished"
    assert jobs.action(run, "cancel").status_code == 200
    assert jobs.client.delete(path).status_code == 204
    assert jobs.client.get(path).status_code == 404


def test_retry_with_hold_goes_back_to_pending(jobs: Jobs) -> None:
    run = jobs.run(jobs.create(sql="SELECT 1"), hold=True)
    jobs.action(run, "cancel")
    retried = jobs.action(run, "retry", {"hold": True}).json()
    assert (retried["status"], retried["statusReason"], retried["attempt"]) == (
        "pending",
        "held",
        2,
    )


def test_cancel_stops_a_long_python_entry_point(jobs: Jobs, system: System) -> None:
    run = jobs.run(jobs.create(python=UNTIL_STOPPED))
    jobs.until(run, "running")
    pid = pid_of(system, run["id"])
    assert process_alive(pid)
    cancelled = jobs.action(run, "cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    wait_until(lambda: not process_alive(pid), timeout=60, what="the process gone")
    assert jobs.get(run)["status"] == "cancelled"


def test_timeout_seconds_ends_a_long_run_in_timeout(jobs: Jobs, system: System) -> None:
    run = jobs.run(jobs.create(python=UNTIL_STOPPED, timeoutSeconds=2))
    pid = pid_of(system, run["id"])
    ended = jobs.until(run, "timeout", timeout=60)
    assert ended["statusReason"] == "timed_out"
    wait_until(lambda: not process_alive(pid), timeout=60, what="the process gone")


def test_max_concurrent_runs_with_queue_waits_for_a_slot(jobs: Jobs, gate: Path) -> None:
    job = jobs.create(python=until_opened(gate), maxConcurrentRuns=1, concurrencyPolicy="queue")
    first = jobs.run(job)
    jobs.until(first, "running")
    second = jobs.run(job)
    waiting = wait_until(
        lambda: (r := jobs.get(second))["statusReason"] == "concurrency_limit" and r
    )
    assert waiting["status"] == "ready"
    gate.touch()
    jobs.until(first, "completed")
    jobs.until(second, "completed")


def test_a_run_waits_for_the_jobs_it_depends_on(jobs: Jobs) -> None:
    upstream = jobs.create(sql="SELECT 1")
    downstream = jobs.create(sql="SELECT 2", dependsOn=[{"jobKey": upstream["jobKey"]}])
    waiting = jobs.run(downstream)
    assert (waiting["status"], waiting["statusReason"]) == ("pending", "waiting_for_dependencies")
    assert upstream["jobKey"] in waiting["statusMessage"]
    jobs.until(jobs.run(upstream), "completed")
    jobs.until(waiting, "completed")


def test_the_stream_sends_status_and_log_lines_and_resumes(jobs: Jobs) -> None:
    run = jobs.run(jobs.create(sql="SELECT 1 AS one"))
    jobs.until(run, "completed")
    path = f"/workloads/jobs/{run['jobId']}/runs/{run['id']}/stream"

    def read(headers: dict[str, str] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        messages, current = [], {}
        with jobs.client.stream("GET", path, headers=headers or {}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if not line:
                    if current:
                        messages.append(
                            (current["event"], current["id"], json.loads(current["data"]))
                        )
                    current = {}
                    continue
                field, _, value = line.partition(": ")
                current[field] = value
        return messages

    messages = read()
    statuses = [m[2]["status"] for m in messages if m[0] == "status"]
    assert statuses == ["ready", "dispatched", "running", "completed"]
    assert [m[2]["line"] for m in messages if m[0] == "log"][:2] == ["one", "1"]
    resumed = read({"Last-Event-ID": messages[1][1]})
    assert resumed == messages[2:]


def test_runs_are_listed_newest_first_with_a_marker(jobs: Jobs) -> None:
    job = jobs.create(sql="SELECT 1")
    made = [jobs.run(job, hold=True)["id"] for _ in range(3)]
    first = jobs.client.get(f"/workloads/jobs/{job['id']}/runs", params={"limit": 2}).json()
    assert first["total"] == 3 and [r["id"] for r in first["items"]] == made[::-1][:2]
    rest = jobs.client.get(
        f"/workloads/jobs/{job['id']}/runs", params={"limit": 2, "marker": first["marker"]}
    ).json()
    assert [r["id"] for r in rest["items"]] == made[:1] and rest["marker"] is None
    mine = jobs.client.get("/me/jobs/runs", params={"limit": 100}).json()
    assert set(made) <= {r["id"] for r in mine["items"]}


def test_deleting_a_job_cancels_its_unfinished_runs_and_deletes_them(
    jobs: Jobs, system: System
) -> None:
    job = jobs.create(python=UNTIL_STOPPED)
    running = jobs.run(job)
    jobs.until(running, "running")
    pid = pid_of(system, running["id"])
    held = jobs.run(job, hold=True)
    assert jobs.client.delete(f"/workloads/jobs/{job['id']}").status_code == 204
    for run in (running, held):
        # The run was cancelled (the notifier sees job_run.cancelled), then deleted with the job.
        ended = wait_until(
            lambda r=run: (
                (x := system.runs.commands.run_state(r["id"])) is not None and x.deleted and x
            ),
            what="the run cancelled and deleted",
        )
        assert (ended.status, ended.status_reason) == ("cancelled", "job_deleted")
    wait_until(lambda: not process_alive(pid), timeout=60, what="the process gone")
    assert jobs.client.get(f"/workloads/jobs/{job['id']}/runs/{held['id']}").status_code == 404


def test_job_lists_name_each_jobs_latest_run(jobs: Jobs) -> None:
    job = jobs.create(sql="SELECT 1")
    jobs.run(job, hold=True)
    latest = jobs.run(job, hold=True)
    listing = jobs.client.get("/workloads/jobs", params={"limit": 100}).json()
    item = next(i for i in listing["items"] if i["jobId"] == job["id"])
    assert item["latestJobRunId"] == latest["id"]
    included = {r["id"]: r for r in listing["included"]["jobRuns"]}
    assert included[latest["id"]]["status"] == "pending"
