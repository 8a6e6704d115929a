"""Authorization-matrix cases of the job-runs group.

Reading runs needs `CanViewJobs`; creating, releasing, retrying and cancelling need
`CanRunJobs` (a plain Member has it, so a service account without roles is the one
denied); deleting needs `CanManageJobs` (a plain Member is denied). Runs are made held
(or cancelled) so that nothing is dispatched while a case runs.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.authz import Case, World
from tests.e2e.authz.jobs import cluster_and_team, new_job


def job(world: World) -> dict[str, Any]:
    """A job whose active version runs `SELECT 1`."""
    values = cluster_and_team(world)
    body = {**new_job(world, values), "config": {"sql": {"source": "SELECT 1"}}}
    created = world.owner.post("/workloads/jobs", json=body)
    assert created.status_code == 201, created.text
    return {**values, "job": created.json()["id"]}


def held_run(world: World) -> dict[str, Any]:
    values = job(world)
    created = world.owner.post(f"/workloads/jobs/{values['job']}/runs", json={"hold": True})
    assert created.status_code == 201, created.text
    return {**values, "jobRun": created.json()["id"]}


def cancelled_run(world: World) -> dict[str, Any]:
    values = held_run(world)
    cancelled = world.owner.post(f"/workloads/jobs/{values['job']}/runs/{values['jobRun']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    return values


RUNS = "/workloads/jobs/{job}/runs"
RUN = RUNS + "/{jobRun}"

CASES: list[Case] = [
    Case("GET", RUNS, "CanViewJobs", 200, setup=job),
    Case("POST", RUNS, "CanRunJobs", 201, setup=job, body={"hold": True}),
    Case("GET", RUN, "CanViewJobs", 200, setup=held_run),
    Case("DELETE", RUN, "CanManageJobs", 204, setup=cancelled_run),
    Case("POST", RUN + "/ready", "CanRunJobs", 200, setup=held_run),
    Case("POST", RUN + "/retry", "CanRunJobs", 200, setup=cancelled_run, body={"hold": True}),
    Case("POST", RUN + "/cancel", "CanRunJobs", 200, setup=held_run),
    Case("GET", RUN + "/logs", "CanViewJobs", 200, setup=held_run),
    Case("GET", RUN + "/events", "CanViewJobs", 200, setup=held_run),
    Case("GET", RUN + "/stream", "CanViewJobs", 200, setup=cancelled_run),
    Case("GET", "/me/jobs/runs", "CanViewJobs", 200),
]
