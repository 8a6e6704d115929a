"""Authorization-matrix cases of the jobs group.

Every jobs endpoint declares `CanViewJobs`; changing a job needs `CanManageJobs` in the
organization or in a team the job is granted to (a plain Member has neither: 403).
"""

from __future__ import annotations

from typing import Any

from tests.conftest import local_cluster_id
from tests.e2e.authz import Case, World
from tests.e2e.authz.workloads import team


def cluster(world: World) -> dict[str, Any]:
    """The organization's built-in `local` cluster, active from the start."""
    return {"cluster": local_cluster_id(world.system, world.org.id)}


def new_job(world: World, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "jobKey": world.unique("job"),
        "clusterId": values["cluster"],
        "teamIds": [values["team"]],
    }


def cluster_and_team(world: World) -> dict[str, Any]:
    return {**cluster(world), **team(world)}


def job(world: World) -> dict[str, Any]:
    values = cluster_and_team(world)
    created = world.owner.post("/workloads/jobs", json=new_job(world, values))
    assert created.status_code == 201, created.text
    return {**values, "job": created.json()["id"], "version": 1}


def job_with_draft(world: World) -> dict[str, Any]:
    values = job(world)
    world.owner.post(f"/workloads/jobs/{values['job']}/draft", json={})
    return values


def job_with_two_versions(world: World) -> dict[str, Any]:
    values = job(world)
    world.owner.post(f"/workloads/jobs/{values['job']}/versions", json={})
    return {**values, "version": 2}


def job_and_other_team(world: World) -> dict[str, Any]:
    values = job(world)
    return {**values, "other": team(world)["team"]}


JOB = "/workloads/jobs/{job}"

CASES: list[Case] = [
    Case("GET", "/workloads/jobs", "CanViewJobs", 200, foreign_404=False),
    Case("POST", "/workloads/jobs", "CanManageJobs", 201, setup=cluster_and_team, body=new_job),
    Case("GET", JOB, "CanViewJobs", 200, setup=job),
    Case("PATCH", JOB, "CanManageJobs", 200, setup=job, body={"description": "x"}),
    Case("DELETE", JOB, "CanManageJobs", 204, setup=job),
    Case(
        "POST",
        JOB + "/activate-version",
        "CanManageJobs",
        200,
        setup=job_with_two_versions,
        body={"version": 1},
    ),
    Case("GET", JOB + "/draft", "CanViewJobs", 200, setup=job_with_draft),
    Case("POST", JOB + "/draft", "CanManageJobs", 201, setup=job, body={}),
    Case("PATCH", JOB + "/draft", "CanManageJobs", 200, setup=job_with_draft, body={}),
    Case("DELETE", JOB + "/draft", "CanManageJobs", 204, setup=job_with_draft),
    Case("POST", JOB + "/draft/publish", "CanManageJobs", 200, setup=job_with_draft),
    Case("GET", JOB + "/teams", "CanViewJobs", 200, setup=job),
    Case(
        "POST",
        JOB + "/teams",
        "CanManageJobs",
        201,
        setup=job_and_other_team,
        body=lambda _, values: {"teamIds": [values["other"]]},
    ),
    Case("DELETE", JOB + "/teams/{team}", "CanManageJobs", 204, setup=job),
    Case("GET", JOB + "/versions", "CanViewJobs", 200, setup=job),
    Case("POST", JOB + "/versions", "CanManageJobs", 201, setup=job, body={}),
    Case("GET", JOB + "/versions/{version}", "CanViewJobs", 200, setup=job),
    Case("GET", JOB + "/versions/{version}/diff", "CanViewJobs", 200, setup=job_with_two_versions),
    Case("GET", "/me/jobs", "CanViewJobs", 200),
    Case("GET", "/workloads/teams/{team}/jobs", "CanViewJobs", 200, setup=team),
    Case("GET", "/workloads/clusters/{cluster}/jobs", "CanViewJobs", 200, setup=cluster),
]
