"""The run runtime over HTTP on the embedded default: the work of a run talks back through
`sailplane.runtime` with its run token, and people read what it reported on `/v1/runs/{id}/...`.

The agent job below (inline Python source, a fake model, no network but Sailplane's own
API) reports 3 usage rows, 2 tool calls, 1 structured output with a schema, 20 chunks, a
checkpoint per step, spawns 2 children (the same job, with a child payload), waits for them
and returns a result; every endpoint shows exactly those figures. Then the token rules
(401 after its attempt, 403 on other routes and for people's tokens on runtime routes),
the size limit (413, the run goes on), pause at a checkpoint and resume exactly once, and a
hung work that stops heartbeating ending `crashed`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sailplane.system import System
from tests.conftest import Org
from tests.e2e import test_job_runs as job_runs_tests
from tests.e2e.test_job_runs import Jobs
from tests.e2e.test_runs_v1 import Queue, at
from tests.runs_support import wait_until

dispatcher = job_runs_tests.dispatcher
local_cluster = job_runs_tests.local_cluster
team = job_runs_tests.team
jobs = job_runs_tests.jobs

pytestmark = pytest.mark.sail

AGENT = '''
import os, time
from sailplane import runtime

def fake_model(prompt, step):
    """A model that answers from its prompt: no network, the same words every time."""
    words = [f"s{step}w{i}" for i in range([7, 7, 6][step])]
    return words, len(prompt.split()), len(words)

job = runtime.payload() or {}
if "child" in job:
    runtime.result({"child": job["child"], "square": job["child"] ** 2})
else:
    gate = job.get("gate")
    done = (runtime.last_checkpoint() or {"step": 0})["step"]
    for step in range(done, 3):
        if gate:
            while not os.path.exists(f"{gate}-{step}"):
                time.sleep(0.05)
        words, prompt_tokens, completion_tokens = fake_model(job["question"], step)
        runtime.usage("fake", "fake-1", prompt_tokens, completion_tokens, cost_microusd=100 + step)
        for word in words:
            runtime.chunk(word + " ")
        if step < 2:
            runtime.tool_call("search", {"q": step}, {"hits": [step]}, duration_ms=5)
        runtime.set_state("last_step", step)
        if job.get("effects"):
            with open(job["effects"], "a") as effects:
                effects.write(f"{step}\\n")
        runtime.checkpoint({"step": step + 1})
    schema = {"type": "object", "required": ["steps"], "properties": {"steps": {"type": "integer"}}}
    runtime.output("summary", {"steps": 3}, schema=schema)
    try:
        runtime.output("too-big", "x" * (2 << 20))
    except runtime.RuntimeRefused as refused:
        runtime.event("refused", refused.message, level="warning", data={"status": refused.status})
    try:
        runtime.output("bad", {"steps": "three"}, schema=schema)
    except runtime.RuntimeRefused as refused:
        runtime.event("refused", refused.message, level="warning", data={"status": refused.status})
    children = [runtime.spawn(job["child_job"], {"child": n}) for n in (2, 3)]
    finished = runtime.wait_for(children, timeout_s=120)
    runtime.result(
        {"answer": "done", "squares": sorted(r["result"]["square"] for r in finished.values())}
    )
'''


@pytest.fixture
def queue(api: str, org: Org) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api + "/v1", headers={"Authorization": f"Bearer {org.token}"}, timeout=30
    ) as c:
        yield c


@pytest.fixture
def runs(queue: httpx.Client, team: str, dispatcher: None) -> Queue:
    return Queue(queue, team)


def read_chunks(api: str, token: str, run_id: str, into: list[dict[str, Any]]) -> None:
    """Read the run's chunk stream to its end (the run finished)."""
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=api, headers=headers, timeout=120) as client,
        client.stream("GET", f"/v1/runs/{run_id}/stream/chunks") as stream,
    ):
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data:"):
                into.append(json.loads(line[5:]))


def get(runs: Queue, path: str) -> Any:
    answer = runs.client.get(path)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_an_agent_job_reports_everything_and_every_endpoint_shows_it(
    api: str, org: Org, jobs: Jobs, runs: Queue, system: System
) -> None:
    job = jobs.create(python=AGENT)
    run = runs.create(job, payload={"question": "what is two squared", "child_job": job["id"]})
    # A client reads the chunk stream while the run executes.
    streamed: list[dict[str, Any]] = []
    reader = threading.Thread(target=read_chunks, args=(api, org.token, run["id"], streamed))
    reader.start()
    done = runs.until(run["id"], "completed", "failed", "crashed", timeout=180)
    reader.join(timeout=60)
    assert done["status"] == "completed", done["error"]
    assert done["result"] == {"answer": "done", "squares": [4, 9]}
    assert done["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 20,
        "total_tokens": 32,
        "cost_microusd": 303,
    }
    rid = run["id"]
    usage = get(runs, f"/runs/{rid}/usage")
    assert [(u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) for u in usage] == [
        (4, 7, 11),
        (4, 7, 11),
        (4, 6, 10),
    ]
    assert {u["provider"] for u in usage} == {"fake"} and usage[0]["run_id"] == rid
    tools = get(runs, f"/runs/{rid}/tool-calls")
    assert [(t["tool_name"], t["input"], t["output"], t["status"]) for t in tools] == [
        ("search", {"q": 0}, {"hits": [0]}, "succeeded"),
        ("search", {"q": 1}, {"hits": [1]}, "succeeded"),
    ]
    outputs = get(runs, f"/runs/{rid}/outputs")
    assert [(o["output_key"], o["value"]) for o in outputs] == [("summary", {"steps": 3})]
    assert outputs[0]["schema"]["required"] == ["steps"]
    checkpoints = get(runs, f"/runs/{rid}/checkpoints")
    assert [(c["sequence"], c["state"]) for c in checkpoints] == [
        (1, {"step": 1}),
        (2, {"step": 2}),
        (3, {"step": 3}),
    ]
    state = get(runs, f"/runs/{rid}/state")
    assert [(s["key"], s["value"]) for s in state] == [("last_step", 2)]
    assert state[0]["updated_at"] is not None
    children = get(runs, f"/runs/{rid}/children")
    assert len(children) == 2
    assert {c["triggered_by"] for c in children} == {"spawn"}
    assert {c["parent_run_id"] for c in children} == {rid}
    assert sorted(c["result"]["square"] for c in children) == [4, 9]
    assert {c["status"] for c in children} == {"completed"}
    # The stream, read during the run, got all 20 chunks in order, and ended.
    assert not reader.is_alive()
    texts = [c["text"] for c in streamed]
    expected = [f"s{s}w{i} " for s, n in enumerate((7, 7, 6)) for i in range(n)]
    assert texts == expected
    # Resuming after the 5th chunk sends the other 15.
    fifth = streamed[4]["id"]
    with httpx.Client(base_url=api, timeout=30) as client:
        resumed = client.get(
            f"/v1/runs/{rid}/stream/chunks",
            headers={"Authorization": f"Bearer {org.token}", "Last-Event-ID": fifth},
        )
    assert resumed.text.count("event: chunk") == 15
    # The refusals: one output over the size limit (413), one not matching its schema (422);
    # the run went on.
    bundle = get(runs, f"/runs/{rid}/debug-bundle")
    refused = [e for e in bundle["events"] if e["type"] == "refused"]
    assert [e["data"]["status"] for e in refused] == [413, 422]
    assert "over the limit" in refused[0]["message"]
    assert "does not match its schema" in refused[1]["message"]
    assert (len(bundle["usage"]), len(bundle["tool_calls"]), len(bundle["outputs"])) == (3, 2, 1)
    assert len(bundle["checkpoints"]) == 3 and len(bundle["chunks"]) == 20
    assert bundle["run"]["id"] == rid and bundle["run"]["result"] == done["result"]
    types = [e["type"] for e in bundle["events"]]
    assert "awaiting_children" in types and "continued" in types
    assert get(runs, f"/runs/{rid}/debug") == {"enabled": False}
    # The job's describe (seed 004) sums the usage of its runs (the children reported none).
    described = jobs.client.get(f"/workloads/jobs/{job['id']}")
    assert described.status_code == 200, described.text
    assert described.json()["item"]["usage"] == {
        "promptTokens": 12,
        "completionTokens": 20,
        "totalTokens": 32,
        "costMicrousd": 303,
    }


def runtime_call(api: str, token: str, method: str, path: str, body: Any = None) -> httpx.Response:
    with httpx.Client(base_url=api, timeout=30) as client:
        return client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})


def test_a_run_token_acts_only_on_its_own_runtime_routes_while_its_attempt_runs(
    api: str, org: Org, system: System, jobs: Jobs, runs: Queue, gate: Path
) -> None:
    job = jobs.create(python=f"from sailplane import runtime\n{until_opened_source(gate)}")
    run = runs.create(job, payload={"n": 1})
    runs.until(run["id"], "executing")
    # The token the dispatcher handed the work (stateless: minting it again gives it).
    token = system.runs.tokens.mint(org.id, run["id"], 1)
    context = runtime_call(api, token, "GET", "/v1/runtime/context")
    assert context.status_code == 200, context.text
    assert (context.json()["payload"], context.json()["attempt"]) == ({"n": 1}, 1)
    # A run token anywhere else is 403, on the run's own API as on any other.
    for path in (f"/v1/runs/{run['id']}", "/api/v1/workloads/jobs", f"/v1/runs/{run['id']}/usage"):
        refused = runtime_call(api, token, "GET", path)
        assert refused.status_code == 403, (path, refused.text)
    # A person's token on a runtime route is 403.
    person = runtime_call(api, org.token, "GET", "/v1/runtime/context")
    assert person.status_code == 403
    assert "run token" in person.json()["error"]
    # A forged token, or one for another attempt, is 401.
    assert runtime_call(api, token[:-4] + "AAAA", "GET", "/v1/runtime/context").status_code == 401
    other = system.runs.tokens.mint(org.id, run["id"], 2)
    assert runtime_call(api, other, "GET", "/v1/runtime/context").status_code == 401
    # An item over the size limit is 413 and nothing of its batch is stored.
    big = {"items": [{"kind": "chunk", "text": "ok"}, {"kind": "chunk", "text": "x" * (1 << 20)}]}
    too_big = runtime_call(api, token, "POST", "/v1/runtime/batch", big)
    assert too_big.status_code == 413
    assert "over the limit of 1048576 bytes" in too_big.json()["error"]
    assert get(runs, f"/runs/{run['id']}/debug-bundle")["chunks"] == []
    # A spawn's keys and priority have the bounds of any run create.
    for bad in ({"concurrency_key": "k" * 300}, {"idempotency_key": ""}, {"priority": 10**9}):
        body = {"job_id": job["id"], **bad}
        refused = runtime_call(api, token, "POST", "/v1/runtime/spawn", body)
        assert refused.status_code == 400, (bad, refused.text)
    # A result is an event, so it is kept small: over 64 KiB is 413 and no result is stored.
    large = runtime_call(api, token, "POST", "/v1/runtime/result", {"value": "x" * (64 << 10)})
    assert large.status_code == 413 and "over the limit of 65536 bytes" in large.json()["error"]
    assert runs.get(run["id"])["result"] is None
    # Once its attempt has ended, the token is 401.
    gate.touch()
    runs.until(run["id"], "completed")
    after = runtime_call(api, token, "POST", "/v1/runtime/heartbeat")
    assert after.status_code == 401
    assert "no longer executing" in after.json()["error"]
    # The run shows when its work last heartbeated (the batch and heartbeat above did).
    beat = runs.get(run["id"])["heartbeat_at"]
    assert beat is not None
    # Lists show it too (one read for all their runs).
    [listed] = [r for r in runs.list(job_id=job["id"]) if r["id"] == run["id"]]
    assert listed["heartbeat_at"] == beat


def test_a_write_sent_again_after_its_answer_was_lost_is_stored_once(
    api: str, org: Org, system: System, jobs: Jobs, runs: Queue, gate: Path
) -> None:
    """`sailplane.runtime` sends a call again when it got no answer; the server may have
    stored it. Each write carries an id, and the second time stores nothing."""
    job = jobs.create(python=f"from sailplane import runtime\n{until_opened_source(gate)}")
    run = runs.create(job)
    rid = run["id"]
    runs.until(rid, "executing")
    token = system.runs.tokens.mint(org.id, rid, 1)

    def twice(path: str, body: Any) -> list[Any]:
        answers = [runtime_call(api, token, "POST", f"/v1/runtime/{path}", body) for _ in "12"]
        assert [a.status_code for a in answers] == [answers[0].status_code] * 2, answers[1].text
        assert answers[0].status_code in (200, 201), answers[0].text
        return [a.json() for a in answers]

    # A batch: its items and state once, and the same answer.
    batch = {
        "batch_id": "b1",
        "items": [
            {"kind": "chunk", "text": "once"},
            {
                "kind": "usage",
                "provider": "fake",
                "model": "m",
                "prompt_tokens": 1,
                "completion_tokens": 2,
            },
        ],
        "state": {"step": 1},
    }
    assert twice("batch", batch) == [{"count": 3}] * 2
    assert [c["text"] for c in get(runs, f"/runs/{rid}/debug-bundle")["chunks"]] == ["once"]
    assert len(get(runs, f"/runs/{rid}/usage")) == 1
    # An executing run shows its usage so far, on its own and in a list.
    so_far = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "cost_microusd": 0}
    assert runs.get(rid)["usage"] == so_far
    assert [r["usage"] for r in runs.list(job_id=job["id"]) if r["id"] == rid] == [so_far]
    # A batch without an id (an older client) is stored each time.
    twice("batch", {"items": [{"kind": "chunk", "text": "twice"}]})
    assert len(get(runs, f"/runs/{rid}/debug-bundle")["chunks"]) == 3
    # A checkpoint: one row, and the first one's sequence.
    checkpoint = {"checkpoint_id": "c1", "state": {"step": 1}}
    assert twice("checkpoint", checkpoint) == [{"sequence": 1, "stop": False}] * 2
    assert len(get(runs, f"/runs/{rid}/checkpoints")) == 1
    # A spawn: the same child, made once; its idempotency key tells where it came from.
    spawned = twice("spawn", {"job_id": job["id"], "payload": {"n": 1}, "request_id": "s1"})
    assert spawned[0] == spawned[1]
    child_id = spawned[0]["run_id"]
    assert [c["id"] for c in get(runs, f"/runs/{rid}/children")] == [child_id]
    assert runs.get(child_id)["idempotency_key"] == f"spawn:{rid}:1:s1"
    # Another request id is another child; a key of the work's own names its run.
    other = twice("spawn", {"job_id": job["id"], "request_id": "s2", "idempotency_key": "mine"})
    assert other[0] == other[1] and other[0]["run_id"] != child_id
    assert runs.get(other[0]["run_id"])["idempotency_key"] == "mine"
    # A key that names a run this one did not spawn is refused, never that run as a child.
    theirs = runs.create(job, idempotency_key="theirs", scheduled_at=at(3600))
    taken = runtime_call(
        api, token, "POST", "/v1/runtime/spawn", {"job_id": job["id"], "idempotency_key": "theirs"}
    )
    assert taken.status_code == 409 and theirs["id"] in taken.json()["error"], taken.text
    assert len(get(runs, f"/runs/{rid}/children")) == 2
    # Waiting and continuing again change nothing and are never refused.
    waited = twice("wait", {"run_ids": [child_id], "timeout_s": 0})
    assert [w["done"] for w in waited] == [False, False]
    assert runs.get(rid)["status"] == "waiting"
    assert twice("continue", None) == [{"count": 0}] * 2
    assert runs.get(rid)["status"] == "executing"
    # The result sent again is the same value.
    assert twice("result", {"value": {"answer": 42}}) == [{"count": 1}] * 2
    assert runs.get(rid)["result"] == {"answer": 42}
    # A checkpoint that ended the attempt (a pause was asked) sent again: the attempt is
    # over, yet the answer is the first one's, so the work stops as it should.
    runs.act(rid, "pause")
    pausing = {"checkpoint_id": "c2", "state": {"step": 2}}
    assert twice("checkpoint", pausing) == [{"sequence": 2, "stop": True}] * 2
    assert len(get(runs, f"/runs/{rid}/checkpoints")) == 2
    paused = runs.until(rid, "waiting")
    assert paused["attempt"] == 2
    # Another checkpoint of the ended attempt is refused.
    late = runtime_call(
        api, token, "POST", "/v1/runtime/checkpoint", {"checkpoint_id": "c3", "state": 3}
    )
    assert late.status_code == 401
    gate.touch()
    runs.act(rid, "resume")
    done = runs.until(rid, "completed", "failed", timeout=120)
    assert done["status"] == "completed", done["error"]


def until_opened_source(gate: Path) -> str:
    return f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n"


def test_pause_at_a_checkpoint_then_resume_does_each_step_exactly_once(
    jobs: Jobs, runs: Queue, open_tmp_path: Path
) -> None:
    effects = open_tmp_path / "effects"
    effects.touch(mode=0o666)
    effects.chmod(0o666)
    gate = open_tmp_path / "step"
    job = jobs.create(python=AGENT)
    run = runs.create(
        job,
        payload={
            "question": "pause me",
            "child_job": job["id"],
            "gate": str(gate),
            "effects": str(effects),
        },
    )
    runs.until(run["id"], "executing")
    # No checkpoint yet: the run cannot be paused while it executes.
    early = runs.client.post(f"/runs/{run['id']}/pause")
    assert early.status_code == 409
    assert "never called checkpoint()" in early.json()["error"]
    Path(f"{gate}-0").touch()
    wait_until(lambda: len(get(runs, f"/runs/{run['id']}/checkpoints")) == 1, what="checkpoint 1")
    paused = runs.act(run["id"], "pause")
    assert paused["status"] == "executing"  # it stops at its next checkpoint
    Path(f"{gate}-1").touch()
    waiting = runs.until(run["id"], "waiting")
    assert waiting["attempt"] == 2  # the next attempt starts from the checkpoint
    assert effects.read_text().split() == ["0", "1"]
    Path(f"{gate}-2").touch()
    runs.act(run["id"], "resume")
    done = runs.until(run["id"], "completed", "failed", "crashed", timeout=120)
    assert done["status"] == "completed", done["error"]
    assert done["result"] == {"answer": "done", "squares": [4, 9]}
    # Every step's side effect happened exactly once, over the two attempts.
    assert effects.read_text().split() == ["0", "1", "2"]
    checkpoints = get(runs, f"/runs/{run['id']}/checkpoints")
    assert [(c["state"]["step"], c["source"]) for c in checkpoints] == [
        (1, "attempt 1"),
        (2, "attempt 1"),
        (3, "attempt 2"),
    ]
    assert len(get(runs, f"/runs/{run['id']}/usage")) == 3


HANGS_IN_ITS_FIRST_ATTEMPT = """
import os, signal, time
from sailplane import runtime
runtime.event("started", "attempt " + os.environ["SAILPLANE_ATTEMPT"])
if os.environ["SAILPLANE_ATTEMPT"] == "1":
    time.sleep(1)  # heartbeats go out
    os.kill(os.getpid(), signal.SIGSTOP)  # hung: no thread of it runs any more
runtime.result({"attempt": int(os.environ["SAILPLANE_ATTEMPT"])})
"""


def test_work_that_stops_heartbeating_is_crashed_and_retried(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(python=HANGS_IN_ITS_FIRST_ATTEMPT, max_retries=1)
    run = runs.create(job)
    done = runs.until(run["id"], "completed", "failed", "crashed", "dead_letter", timeout=120)
    assert done["status"] == "completed", done["error"]
    assert (done["attempt"], done["result"]) == (2, {"attempt": 2})
    events = get(runs, f"/runs/{run['id']}/events")
    retried = [e for e in events if e["type"] == "retry_scheduled"]
    assert len(retried) == 1 and "crashed" in retried[0]["message"]
    assert "no heartbeat" in retried[0]["message"]


def test_a_hung_work_without_retries_ends_crashed(jobs: Jobs, runs: Queue) -> None:
    job = jobs.create(python=HANGS_IN_ITS_FIRST_ATTEMPT)
    run = runs.create(job)
    done = runs.until(run["id"], "completed", "failed", "crashed", "dead_letter", timeout=120)
    assert done["status"] == "crashed"
    assert "no heartbeat" in done["error"]


def test_a_sql_runs_result_is_its_first_rows(jobs: Jobs, runs: Queue) -> None:
    # ORDER BY: a union's rows come in no set order (the engine may run its parts at once).
    job = jobs.create(
        sql="SELECT 1 AS one, 'a' AS two UNION ALL SELECT 2, 'b' ORDER BY one; SELECT 3 AS three"
    )
    done = runs.until(runs.create(job)["id"], "completed", "failed", timeout=120)
    assert done["status"] == "completed", done["error"]
    logs = jobs.logs({"jobId": job["id"], "id": done["id"]})
    assert done["result"] == {"columns": ["one", "two"], "rows": [[1, "a"], [2, "b"]]}, logs


DEBUGGED = """
import os
from sailplane import runtime
runtime.result(
    {
        "debug": runtime.debug_mode(),
        "env": os.environ.get("SAILPLANE_DEBUG"),
        "payload": runtime.payload(),
    }
)
"""


def test_debug_mode_reaches_the_work_and_its_runtime_records_every_call(
    jobs: Jobs, runs: Queue
) -> None:
    job = jobs.create(python=DEBUGGED)
    run = runs.create(job, payload={"x": 1}, scheduled_at=at(3600))
    assert get(runs, f"/runs/{run['id']}/debug") == {"enabled": False}
    turned = runs.client.post(f"/runs/{run['id']}/debug", json={"enabled": True})
    assert turned.status_code == 200 and turned.json() == {"enabled": True}
    assert runs.get(run["id"])["debug_mode"] is True
    runs.act(run["id"], "reschedule", {"scheduled_at": at(0)})
    done = runs.until(run["id"], "completed", "failed", timeout=120)
    assert done["result"] == {"debug": True, "env": "1", "payload": {"x": 1}}, done["error"]
    events = get(runs, f"/runs/{run['id']}/debug-bundle")["events"]
    calls = [e["message"] for e in events if e["level"] == "debug"]
    assert any(c.startswith("payload(") for c in calls)
    assert any(c.startswith("result(") for c in calls)
    assert "debug_mode_set" in [e["type"] for e in events]
