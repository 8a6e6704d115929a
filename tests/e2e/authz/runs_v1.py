"""Authorization-matrix cases of the seed-003 run queue (`/v1/runs`, outside `/api/v1`).

Reading needs `CanViewJobs`, acting on runs `CanRunJobs` (a plain Member has both, so a
service account without roles is the one denied). Runs are made delayed a day ahead,
paused or cancelled so that nothing is dispatched while a case runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.authz import Case, World
from tests.e2e.authz.runs import job

LATER = (datetime.now(UTC) + timedelta(days=1)).isoformat()


def _run(world: World, **fields: Any) -> dict[str, Any]:
    values = job(world)
    created = world.owner.post(
        world.api + "/v1/runs", json={"job_id": values["job"], "scheduled_at": LATER, **fields}
    )
    assert created.status_code == 201, created.text
    return {**values, "run": created.json()["id"]}


def delayed_run(world: World) -> dict[str, Any]:
    return _run(world)


def keyed_run(world: World) -> dict[str, Any]:
    return _run(world, idempotency_key=world.unique("key"))


def paused_run(world: World) -> dict[str, Any]:
    values = _run(world)
    paused = world.owner.post(world.api + f"/v1/runs/{values['run']}/pause")
    assert paused.status_code == 200, paused.text
    return values


def cancelled_run(world: World) -> dict[str, Any]:
    values = _run(world)
    cancelled = world.owner.delete(world.api + f"/v1/runs/{values['run']}")
    assert cancelled.status_code == 200, cancelled.text
    return values


RUNS = "/v1/runs"
RUN = RUNS + "/{run}"
PROJECT = "?project_id={team}"

CASES: list[Case] = [
    Case(
        "POST",
        RUNS,
        "CanRunJobs",
        201,
        setup=job,
        body=lambda w, v: {"job_id": v["job"], "scheduled_at": LATER},
        foreign_404=True,
    ),
    Case(
        "POST",
        RUNS + "/batch",
        "CanRunJobs",
        201,
        setup=job,
        body=lambda w, v: {"runs": [{"job_id": v["job"], "scheduled_at": LATER}]},
        foreign_404=True,
    ),
    Case("GET", RUNS + PROJECT, "CanViewJobs", 200, setup=job),
    Case("GET", RUNS + "/dlq" + PROJECT, "CanViewJobs", 200, setup=job),
    Case(
        "POST",
        RUNS + "/bulk-cancel",
        "CanRunJobs",
        200,
        setup=delayed_run,
        body=lambda w, v: {"run_ids": [v["run"]]},
        foreign_404=False,
    ),
    Case(
        "POST", RUNS + "/bulk-cancel-all" + PROJECT, "CanRunJobs", 200, setup=delayed_run, body={}
    ),
    Case(
        "POST",
        RUNS + "/bulk-replay",
        "CanRunJobs",
        201,
        setup=cancelled_run,
        body=lambda w, v: {"run_ids": [v["run"]]},
        foreign_404=False,
    ),
    Case("POST", RUNS + "/bulk-dlq-replay" + PROJECT, "CanRunJobs", 201, setup=job, body={}),
    Case("GET", RUN, "CanViewJobs", 200, setup=delayed_run),
    Case("DELETE", RUN, "CanRunJobs", 200, setup=delayed_run),
    Case("POST", RUN + "/replay", "CanRunJobs", 201, setup=cancelled_run),
    Case("POST", RUN + "/dlq-replay", "CanRunJobs", 409, setup=cancelled_run),
    Case("GET", RUN + "/lineage", "CanViewJobs", 200, setup=delayed_run),
    Case("POST", RUN + "/restart", "CanRunJobs", 409, setup=cancelled_run, body={}),
    Case(
        "POST",
        RUN + "/reschedule",
        "CanRunJobs",
        200,
        setup=delayed_run,
        body={"scheduled_at": LATER},
    ),
    Case("POST", RUN + "/pause", "CanRunJobs", 200, setup=delayed_run),
    Case("POST", RUN + "/resume", "CanRunJobs", 200, setup=paused_run),
    Case("DELETE", RUN + "/idempotency-key", "CanRunJobs", 200, setup=keyed_run),
    Case("GET", RUN + "/events", "CanViewJobs", 200, setup=delayed_run),
    Case("GET", RUN + "/stream", "CanViewJobs", 200, setup=cancelled_run),
    Case("GET", RUN + "/dependency-status", "CanViewJobs", 200, setup=delayed_run),
    # What the work of a run reported (the runtime): a delayed run has none of it yet.
    *(
        Case("GET", RUN + f"/{part}", "CanViewJobs", 200, setup=delayed_run)
        for part in (
            "children",
            "checkpoints",
            "usage",
            "tool-calls",
            "outputs",
            "state",
            "debug",
            "debug-bundle",
        )
    ),
    Case("GET", RUN + "/stream/chunks", "CanViewJobs", 200, setup=cancelled_run),
    Case("POST", RUN + "/debug", "CanRunJobs", 200, setup=delayed_run, body={"enabled": True}),
]
