"""The seed-003 run queue (`/v1/runs`) over HTTP on the embedded default: the same runs
as the seed-004 job-runs API, driven and shown in the seed-003 dialect.

One test per rule of docs/runs-v1.md: create and idempotency key (and its reset), both
dialects showing one run, delayed becoming queued, expiry, pause/resume/reschedule,
priority order under `maxConcurrentRuns: 1`, concurrency-key isolation, crash and the
dead-letter queue with its replay, replay lineage three deep, bulk cancel of 200 runs,
list filters, and the seed-003 error body.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sailplane.infra_adapters.executors.local import default_max_parallel
from sailplane.system import System
from tests.conftest import Org
from tests.e2e import test_job_runs as job_runs_tests
from tests.e2e.test_job_runs import Jobs
from tests.runs_support import UNTIL_STOPPED, until_opened, wait_until

# The job-runs tests' fixtures: a dispatcher, the local cluster, a team and its jobs.
dispatcher = job_runs_tests.dispatcher
local_cluster = job_runs_tests.local_cluster
team = job_runs_tests.team
jobs = job_runs_tests.jobs

pytestmark = pytest.mark.sail

CRASH = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"


@pytest.fixture
def queue(api: str, org: Org) -> Iterator[httpx.Client]:
    """A client of the `/v1` run queue, as the organization's owner."""
    with httpx.Client(
        base_url=api + "/v1", headers={"Authorization": f"Bearer {org.token}"}, timeout=30
    ) as c:
        yield c


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


class Queue:
    def __init__(self, client: httpx.Client, team: str) -> None:
        self.client, self.team = client, team

    def create(self, job: dict[str, Any], expect: int = 201, **body: Any) -> dict[str, Any]:
        created = self.client.post("/runs", json={"job_id": job["id"], **body})
        assert created.status_code == expect, created.text
        return created.json()

    def get(self, run_id: str) -> dict[str, Any]:
        found = self.client.get(f"/runs/{run_id}")
        assert found.status_code == 200, found.text
        return found.json()

    def until(self, run_id: str, *statuses: str, timeout: float = 90) -> dict[str, Any]:
        return wait_until(
            lambda: (r := self.get(run_id))["status"] in statuses and r,
            timeout=timeout,
            what=f"run {run_id} in {statuses}",
        )

    def act(self, run_id: str, name: str, body: Any = None, expect: int = 200) -> dict[str, Any]:
        done = self.client.post(f"/runs/{run_id}/{name}", json=body)
        assert done.status_code == expect, done.text
        return done.json()

    def list(self, **params: Any) -> list[dict[str, Any]]:
        listed = self.client.get("/runs", params={"project_id": self.team, **params})
        assert listed.status_code == 200, listed.text
        return listed.json()


@pytest.fixture
def runs(queue: httpx.Client, team: str, dispatcher: None) -> Queue:
    return Queue(queue, team)


def test_a_run_created_in_either_dialect_is_one_run_in_both(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(sql="SELECT 1")
    created = runs.create(
        job,
        payload={"customer": "acme", "n": 1},
        tags={"env": "test"},
        metadata={"who": "e2e"},
        priority=3,
        max_attempts_override=2,
        retry_backoff="fixed",
    )
    assert set(created) >= {"execution_trace", "job_version_id", "workflow_step_run_id"}
    assert len(created) == 37  # the seed's 36 fields and `usage` (docs/runs-v1.md)
    assert (created["payload"], created["tags"], created["priority"]) == (
        {"customer": "acme", "n": 1},
        {"env": "test"},
        3,
    )
    assert created["triggered_by"] == "manual"
    assert created["project_id"] == runs.team
    done = runs.until(created["id"], "completed")
    assert done["execution_trace"]["queue_wait_ms"] is not None
    assert jobs.get({"jobId": job["id"], "id": created["id"]})["status"] == "completed"
    # The seed-004 create takes the same options in camelCase.
    camel = jobs.run(job, priority=7, concurrencyKey="k1", tags={"a": "b"})
    shown = runs.get(camel["id"])
    assert (shown["priority"], shown["concurrency_key"], shown["tags"]) == (7, "k1", {"a": "b"})


def test_idempotency_key_answers_the_existing_run_until_reset(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(sql="SELECT 1")
    first = runs.create(job, idempotency_key="order-1", scheduled_at=at(3600))
    again = runs.create(job, expect=200, idempotency_key="order-1")
    assert again["id"] == first["id"]
    other_job = jobs.create(sql="SELECT 1")
    assert runs.create(other_job, idempotency_key="order-1")["id"] != first["id"]  # per job
    reset = runs.client.delete(f"/runs/{first['id']}/idempotency-key")
    assert reset.status_code == 200, reset.text
    assert reset.json() == {"status": "reset", "run_id": first["id"]}
    assert runs.get(first["id"])["idempotency_key"] is None
    fresh = runs.create(job, idempotency_key="order-1")
    assert fresh["id"] != first["id"]
    again_reset = runs.client.delete(f"/runs/{first['id']}/idempotency-key")
    assert again_reset.status_code == 409


def test_racing_creates_with_one_new_idempotency_key_answer_one_run(
    jobs: Jobs, runs: Queue, api: str, org: Org
) -> None:
    job = jobs.create(sql="SELECT 1")
    racers = 8
    for round_ in range(4):
        key, start = f"race-{round_}", threading.Barrier(racers)

        def create(_: int, key: str = key, start: threading.Barrier = start) -> httpx.Response:
            with httpx.Client(
                base_url=api + "/v1", headers={"Authorization": f"Bearer {org.token}"}, timeout=30
            ) as client:
                start.wait()
                body = {"job_id": job["id"], "idempotency_key": key, "scheduled_at": at(3600)}
                return client.post("/runs", json=body)

        with ThreadPoolExecutor(racers) as pool:
            answers = list(pool.map(create, range(racers)))
        assert sorted(a.status_code for a in answers) == [200] * (racers - 1) + [201], [
            (a.status_code, a.text) for a in answers
        ]
        assert len({a.json()["id"] for a in answers}) == 1
    assert len(runs.list(job_id=job["id"])) == 4


def test_racing_batches_with_the_same_new_idempotency_keys_answer_the_same_runs(
    jobs: Jobs, runs: Queue, api: str, org: Org
) -> None:
    """A batch that loses the race for one of its keys is made again, and its keys then
    answer the winner's runs: no batch fails, no key makes two runs."""
    job = jobs.create(sql="SELECT 1")
    racers = 6
    for round_ in range(3):
        keys, start = [f"batch-race-{round_}-{n}" for n in range(3)], threading.Barrier(racers)

        def create(n: int, keys: list[str] = keys, start: threading.Barrier = start) -> Any:
            # Each racer sends the keys in another order, with a run of its own besides.
            mine = keys[n % 3 :] + keys[: n % 3]
            body = {
                "runs": [
                    *(
                        {"job_id": job["id"], "idempotency_key": k, "scheduled_at": at(3600)}
                        for k in mine
                    ),
                    {"job_id": job["id"], "scheduled_at": at(3600)},
                ]
            }
            with httpx.Client(
                base_url=api + "/v1", headers={"Authorization": f"Bearer {org.token}"}, timeout=30
            ) as client:
                start.wait()
                answer = client.post("/runs/batch", json=body)
            assert answer.status_code in (200, 201), answer.text
            by_key = {r["idempotency_key"]: r["id"] for r in answer.json()["runs"][:3]}
            return by_key, answer.json()["runs"][3]["id"]

        with ThreadPoolExecutor(racers) as pool:
            answers = list(pool.map(create, range(racers)))
        assert all(by_key == answers[0][0] for by_key, _ in answers), answers
        assert sorted(answers[0][0]) == keys
        assert len({own for _, own in answers}) == racers
    assert len(runs.list(job_id=job["id"])) == 3 * (3 + racers)


def test_a_delayed_run_becomes_queued_at_its_time_and_runs(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(sql="SELECT 1")
    run = runs.create(job, scheduled_at=at(2))
    assert run["status"] == "delayed"
    assert jobs.get({"jobId": job["id"], "id": run["id"]})["status"] == "ready"
    done = runs.until(run["id"], "completed")
    assert done["started_at"] >= run["scheduled_at"]


def test_an_unstarted_run_expires(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(sql="SELECT 1")
    run = runs.create(job, scheduled_at=at(1), expires_at=at(2))
    runs.act(run["id"], "pause")  # a paused run is not started either
    expired = runs.until(run["id"], "expired", timeout=30)
    assert expired["finished_at"] is not None
    seed4 = jobs.get({"jobId": job["id"], "id": run["id"]})
    assert (seed4["status"], seed4["statusReason"]) == ("cancelled", "expired")
    assert [r["id"] for r in runs.list(status="expired", job_id=job["id"])] == [run["id"]]


def test_pause_resume_and_reschedule(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(sql="SELECT 1")
    run = runs.create(job, scheduled_at=at(3600))
    paused = runs.act(run["id"], "pause")
    assert paused["status"] == "waiting"
    assert jobs.get({"jobId": job["id"], "id": run["id"]})["status"] == "pending"
    assert runs.act(run["id"], "pause", expect=409)["error"]
    moved = runs.act(run["id"], "reschedule", {"scheduled_at": at(7200)})
    assert moved["status"] == "waiting"
    resumed = runs.act(run["id"], "resume")
    assert resumed["status"] == "delayed"
    runs.act(run["id"], "reschedule", {"scheduled_at": at(-1)})
    runs.until(run["id"], "completed")
    assert runs.act(run["id"], "reschedule", {"scheduled_at": at(60)}, expect=409)["error"]
    assert runs.act(run["id"], "pause", expect=409)["error"]


def test_priority_orders_the_queue_under_max_concurrent_runs_one(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(sql="SELECT 1", maxConcurrentRuns=1, concurrencyPolicy="queue")
    start = at(2)
    made = {p: runs.create(job, priority=p, scheduled_at=start)["id"] for p in (1, 5, 3, 9)}
    finished = [runs.until(made[p], "completed") for p in (1, 5, 3, 9)]
    order = [r["priority"] for r in sorted(finished, key=lambda r: r["started_at"])]
    assert order == [9, 5, 3, 1]


def test_concurrency_keys_queue_separately(jobs: Jobs, runs: Queue, gate: Path) -> None:
    job = jobs.create(python=until_opened(gate), maxConcurrentRuns=1, concurrencyPolicy="queue")
    acme = runs.create(job, concurrency_key="acme")
    runs.until(acme["id"], "executing")
    acme_next = runs.create(job, concurrency_key="acme")
    globex = runs.create(job, concurrency_key="globex")
    runs.until(globex["id"], "executing")
    assert jobs.get({"jobId": job["id"], "id": globex["id"]})["status"] == "running"
    assert runs.get(acme_next["id"])["status"] == "queued"
    seed4 = jobs.get({"jobId": job["id"], "id": acme_next["id"]})
    assert (seed4["status"], seed4["statusReason"]) == ("ready", "concurrency_limit")
    gate.touch()
    for run in (acme, globex, acme_next):
        runs.until(run["id"], "completed")


def test_crashes_spend_the_retries_into_the_dlq_and_dlq_replay_takes_it_out(
    jobs: Jobs, runs: Queue
) -> None:
    job = jobs.create(python=CRASH)
    crashed = runs.create(job)
    assert runs.until(crashed["id"], "crashed")["error"]
    seed4 = jobs.get({"jobId": job["id"], "id": crashed["id"]})
    assert (seed4["status"], seed4["statusReason"]) == ("failed", "crashed")
    dead = runs.create(job, max_attempts_override=2, retry_initial_delay_secs=0)
    shown = runs.until(dead["id"], "dead_letter")
    assert shown["attempt"] == 2
    assert jobs.get({"jobId": job["id"], "id": dead["id"]})["status"] == "dead_letter"
    dlq = runs.client.get("/runs/dlq", params={"project_id": runs.team})
    assert [r["id"] for r in dlq.json()] == [dead["id"]]
    assert runs.act(crashed["id"], "dlq-replay", expect=409)["error"]
    replay = runs.act(dead["id"], "dlq-replay", expect=201)
    assert (replay["continuation_of"], replay["lineage_depth"]) == (dead["id"], 1)
    assert runs.client.get("/runs/dlq", params={"project_id": runs.team}).json() == []
    assert runs.act(dead["id"], "dlq-replay", expect=409)["error"]


def test_a_command_that_does_not_exist_is_a_system_failure(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(container={"image": "alpine:3.20", "command": ["no-such-command-x"]})
    run = runs.create(job)
    failed = runs.until(run["id"], "system_failed", "failed", "completed")
    assert failed["status"] == "system_failed", failed
    assert failed["error"] == "command not found: no-such-command-x"
    seed4 = jobs.get({"jobId": job["id"], "id": run["id"]})
    assert (seed4["status"], seed4["statusReason"]) == ("failed", "command_not_found")
    assert [r["id"] for r in runs.list(status="system_failed", job_id=job["id"])] == [run["id"]]
    # A command that exists and fails on its own (127 from its shell) is the work's failure.
    own = runs.create(jobs.create(container={"image": "alpine:3.20", "command": "exit 127"}))
    assert runs.until(own["id"], "system_failed", "failed", "completed")["status"] == "failed"


def test_a_claimed_run_waiting_for_an_executor_slot_is_dequeued(
    jobs: Jobs, runs: Queue, gate: Path, system: System
) -> None:
    slots = system.executor_options.get("max_parallel") or default_max_parallel()
    job = jobs.create(python=until_opened(gate), maxConcurrentRuns=slots + 1)
    holding = [runs.create(job) for _ in range(slots)]
    for run in holding:  # every slot of the executor is taken until the gate opens
        runs.until(run["id"], "executing")
    claimed = runs.create(job)
    assert runs.until(claimed["id"], "dequeued")["started_at"] is None
    seed4 = jobs.get({"jobId": job["id"], "id": claimed["id"]})
    assert (seed4["status"], seed4["statusReason"]) == ("dispatched", "dispatching")
    assert [r["id"] for r in runs.list(status="dequeued", job_id=job["id"])] == [claimed["id"]]
    gate.touch()
    for run in (*holding, claimed):
        runs.until(run["id"], "completed")


def test_the_execution_trace_of_an_ended_attempt(jobs: Jobs, runs: Queue) -> None:
    sql = runs.create(jobs.create(sql="SELECT 1"))
    trace = runs.until(sql["id"], "completed")["execution_trace"]
    assert all(isinstance(v, int) and v >= 0 for v in trace.values()), trace
    assert trace["ttfb_ms"] >= trace["connect_ms"]  # it printed with its session open
    assert trace["total_ms"] >= trace["queue_wait_ms"]
    assert trace["dispatch_ms"] >= trace["dequeue_ms"]
    logs = jobs.logs({"jobId": sql["job_id"], "id": sql["id"]})
    assert logs == ["1", "1"]  # the attempt's own report before the work's output is not logged
    # A command opens no engine session and this one prints nothing: those stay unknown.
    silent = runs.create(jobs.create(container={"image": "alpine:3.20", "command": ["true"]}))
    quiet = runs.until(silent["id"], "completed")["execution_trace"]
    assert (quiet["connect_ms"], quiet["ttfb_ms"], quiet["transfer_ms"]) == (None, None, None)
    assert None not in (quiet["queue_wait_ms"], quiet["dequeue_ms"], quiet["total_ms"])
    # While an attempt waits for its start, nothing of it is measured yet.
    later = runs.create(jobs.create(sql="SELECT 1"), scheduled_at=at(3600))
    assert set(later["execution_trace"].values()) == {None}


def test_bulk_dlq_replay(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(python=CRASH)
    dead = [runs.create(job, max_attempts_override=2, retry_initial_delay_secs=0) for _ in range(2)]
    for run in dead:
        runs.until(run["id"], "dead_letter")
    replayed = runs.client.post(
        "/runs/bulk-dlq-replay", params={"project_id": runs.team}, json={"job_id": job["id"]}
    )
    assert replayed.status_code == 201, replayed.text
    body = replayed.json()
    assert body["count"] == 2
    assert {r["continuation_of"] for r in body["replayed"]} == {r["id"] for r in dead}
    assert len({r["batch_id"] for r in body["replayed"]}) == 1


def test_replay_lineage_three_deep(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(sql="SELEC nonsense")
    first = runs.create(job, payload={"k": 1}, tags={"t": "x"})
    chain = [first]
    for _ in range(2):
        runs.until(chain[-1]["id"], "failed")
        assert jobs.get({"jobId": job["id"], "id": chain[-1]["id"]})["status"] == "failed"
        chain.append(runs.act(chain[-1]["id"], "replay", expect=201))
    assert [r["lineage_depth"] for r in chain] == [0, 1, 2]
    assert chain[2]["payload"] == {"k": 1} and chain[2]["tags"] == {"t": "x"}
    assert chain[2]["triggered_by"] == "retry"
    middle = runs.client.get(f"/runs/{chain[1]['id']}/lineage")
    assert [r["id"] for r in middle.json()] == [r["id"] for r in chain]
    runs.until(chain[2]["id"], "failed")
    assert runs.act(
        runs.create(jobs.create(sql="SELECT 1"), scheduled_at=at(3600))["id"], "replay", expect=409
    )["error"]
    bulk = runs.client.post("/runs/bulk-replay", json={"run_ids": [chain[2]["id"], "NOPE"]})
    assert bulk.status_code == 201, bulk.text
    assert [r["continuation_of"] for r in bulk.json()] == [chain[2]["id"]]


def test_restart_a_failed_run_as_a_new_attempt_with_overrides(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(python=UNTIL_STOPPED, timeoutSeconds=1)
    run = runs.create(job)
    runs.until(run["id"], "timed_out")
    assert jobs.get({"jobId": job["id"], "id": run["id"]})["status"] == "timeout"
    restarted = runs.act(run["id"], "restart", {"timeout_secs_override": 2, "priority": 4})
    assert (restarted["attempt"], restarted["priority"]) == (2, 4)
    assert restarted["timeout_secs_override"] == 2
    assert runs.until(run["id"], "timed_out")["attempt"] == 2
    completed = runs.create(jobs.create(sql="SELECT 1"))
    runs.until(completed["id"], "completed")
    assert runs.act(completed["id"], "restart", expect=409)["error"]


def test_bulk_cancel_of_200_runs_in_one_call(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(sql="SELECT 1")
    batch = runs.client.post(
        "/runs/batch",
        json={"runs": [{"job_id": job["id"], "scheduled_at": at(3600)} for _ in range(200)]},
    )
    assert batch.status_code == 201, batch.text
    made = batch.json()
    ids = [r["id"] for r in made["runs"]]
    assert len(set(ids)) == 200 and {r["batch_id"] for r in made["runs"]} == {made["batch_id"]}
    listed = runs.list(batch_id=made["batch_id"], limit=500)
    assert len(listed) == 200
    cancel = runs.client.post("/runs/bulk-cancel", json={"run_ids": [*ids, "MISSING"]})
    assert cancel.status_code == 200, cancel.text
    result = cancel.json()
    assert (result["total"], result["canceled"], result["failed"]) == (201, 200, 1)
    assert result["results"][-1]["error"]
    assert {r["status"] for r in runs.list(batch_id=made["batch_id"], limit=500)} == {"canceled"}
    assert jobs.get({"jobId": job["id"], "id": ids[0]})["status"] == "cancelled"


def test_bulk_cancel_all_by_filters(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(sql="SELECT 1")
    tagged = [runs.create(job, payload={"tenant": "a"}, scheduled_at=at(3600)) for _ in range(2)]
    other = runs.create(job, payload={"tenant": "b"}, scheduled_at=at(3600))
    done = runs.client.post(
        "/runs/bulk-cancel-all",
        params={"project_id": runs.team},
        json={"job_id": job["id"], "payload": {"tenant": "a"}},
    )
    assert done.status_code == 200, done.text
    assert done.json()["canceled"] == 2
    assert {runs.get(r["id"])["status"] for r in tagged} == {"canceled"}
    assert runs.get(other["id"])["status"] == "delayed"


def test_list_filters(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(sql="SELECT 1")
    a = runs.create(job, payload={"tenant": "a", "n": 1}, scheduled_at=at(3600))
    b = runs.create(job, payload={"tenant": "b"}, scheduled_at=at(3600))
    listed = runs.list(job_id=job["id"], payload=json.dumps({"tenant": "a"}))
    assert [r["id"] for r in listed] == [a["id"]]
    both = runs.list(job_id=job["id"], status="delayed,queued")
    assert [r["id"] for r in both] == [b["id"], a["id"]]  # newest first
    assert [r["id"] for r in runs.list(job_id=job["id"], before=b["id"])] == [a["id"]]
    assert runs.list(job_id=job["id"], status="completed") == []
    assert len(runs.list(job_id=job["id"], triggered_by="manual", limit=1)) == 1
    assert runs.list(job_id=job["id"], triggered_by="cron") == []
    assert runs.list(job_id=job["id"], triggered_by="spawn,event") == []
    assert len(runs.list(job_id=job["id"], triggered_by="spawn,manual")) == 2
    unknown = runs.client.get("/runs", params={"project_id": runs.team, "triggered_by": "nope"})
    assert unknown.status_code == 400 and set(unknown.json()) == {"error", "request_id"}
    since = runs.list(job_id=job["id"], since=at(60))
    assert since == []


def test_events_stream_and_dependency_status(jobs: Jobs, runs: Queue) -> None:
    upstream = jobs.create(sql="SELECT 1")
    downstream = jobs.create(sql="SELECT 2", dependsOn=[{"jobKey": upstream["jobKey"]}])
    waiting = runs.create(downstream)
    status = runs.client.get(f"/runs/{waiting['id']}/dependency-status").json()
    assert status["status"] == "waiting" and status["dependencies_satisfied"] is False
    assert status["dependencies"][0]["depends_on_job_id"] == upstream["id"]
    runs.create(upstream)
    done = runs.until(waiting["id"], "completed")
    events = runs.client.get(f"/runs/{done['id']}/events").json()
    assert events[0]["type"] == "created" and events[-1]["type"] == "completed"
    with runs.client.stream(
        "GET", f"/runs/{done['id']}/stream", headers={"Last-Event-ID": events[0]["id"]}
    ) as stream:
        ids = [line[3:].strip() for line in stream.iter_lines() if line.startswith("id:")]
    assert ids == [e["id"] for e in events[1:]]


def test_errors_have_the_seed_003_body(runs: Queue, api: str, org: Org) -> None:
    missing = runs.client.get("/runs/NOSUCHRUN", headers={"X-Request-Id": "req-e2e-1"})
    assert missing.status_code == 404
    assert missing.json() == {"error": missing.json()["error"], "request_id": "req-e2e-1"}
    assert missing.headers["x-request-id"] == "req-e2e-1"
    no_project = runs.client.get("/runs")
    assert no_project.status_code == 400
    assert set(no_project.json()) == {"error", "request_id"}
    foreign = runs.client.get("/runs", params={"project_id": "NOSUCHTEAM"})
    assert foreign.status_code == 404
    bad_status = runs.client.get("/runs", params={"project_id": runs.team, "status": "nope"})
    assert bad_status.status_code == 400 and set(bad_status.json()) == {"error", "request_id"}
    anonymous = httpx.get(api + "/v1/runs", params={"project_id": runs.team})
    assert anonymous.status_code == 401 and set(anonymous.json()) == {"error", "request_id"}
    unknown = runs.client.post("/runs", json={"job_id": f"J{uuid.uuid4().hex[:9]}"})
    assert unknown.status_code == 404 and set(unknown.json()) == {"error", "request_id"}
    empty = runs.client.post("/runs/batch", json={"runs": []})
    assert empty.status_code == 400, empty.text
    assert set(empty.json()) == {"error", "request_id"} and "runs" in empty.json()["error"]
    not_a_list = runs.client.post("/runs/batch", json={"runs": "all of them"})
    assert not_a_list.status_code == 400, not_a_list.text
