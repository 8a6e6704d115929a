"""A container job (`config.container`) on the local cluster: no container runtime here, so
its command runs as a host process, contained like all user work, with only its own `env`,
`PATH`, `HOME` and the `SAILPLANE_*` variables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sailplane.system import System
from tests.e2e.test_job_runs import Jobs, dispatcher, jobs, local_cluster, team

__all__ = ["dispatcher", "jobs", "local_cluster", "team"]  # fixtures used below

pytestmark = pytest.mark.sail


def test_echo_succeeds_and_its_line_is_the_runs_log(jobs: Jobs) -> None:
    job = jobs.create(container={"image": "alpine:3.20", "command": ["echo", "hello"]})
    run = jobs.until(jobs.run(job), "completed", "failed")
    assert run["status"] == "completed", run
    assert jobs.logs(run) == ["hello"]
    versions = jobs.client.get(f"/workloads/jobs/{job['id']}/versions").json()["items"]
    assert [v["jobType"] for v in versions] == ["container"]


def test_a_shell_command_that_exits_3_fails_with_that_status(jobs: Jobs) -> None:
    job = jobs.create(container={"image": "alpine:3.20", "command": "echo before; exit 3"})
    run = jobs.until(jobs.run(job), "completed", "failed")
    assert run["status"] == "failed"
    assert "status 3" in run["statusMessage"], run
    assert jobs.logs(run) == ["before"]


def test_a_command_that_does_not_exist_fails_with_a_readable_reason(jobs: Jobs) -> None:
    job = jobs.create(container={"image": "alpine:3.20", "command": ["no-such-command-x", "-v"]})
    run = jobs.until(jobs.run(job), "completed", "failed")
    assert run["status"] == "failed"
    assert run["statusMessage"] == "command not found: no-such-command-x", run
    assert "Traceback" not in "\n".join(jobs.logs(run))


def test_the_command_sees_its_env_and_nothing_of_the_servers(jobs: Jobs) -> None:
    job = jobs.create(
        container={"image": "alpine:3.20", "command": ["env"], "env": {"STAGE": "prod"}}
    )
    run = jobs.until(jobs.run(job), "completed", "failed")
    assert run["status"] == "completed", run
    names = {line.split("=", 1)[0] for line in jobs.logs(run)}
    assert "STAGE=prod" in jobs.logs(run)
    assert names - {"STAGE", "PATH", "HOME"} <= {n for n in names if n.startswith("SAILPLANE_")}
    assert {"SAILPLANE_RUN_ID", "SAILPLANE_RUN_ATTEMPT"} <= names


def test_a_malformed_container_is_a_422_naming_its_field(jobs: Jobs) -> None:
    refused = jobs.client.post(
        "/workloads/jobs",
        json={
            "jobKey": "bad-container",
            "clusterId": jobs.cluster,
            "teamIds": [jobs.team],
            "config": {"container": {"image": "alpine", "command": [], "env": {}}},
        },
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "config.container.command"


def test_a_command_burning_a_core_is_sampled_near_one_core(jobs: Jobs, system: System) -> None:
    burn = "import time\nend = time.process_time() + 4\nwhile time.process_time() < end: pass"
    job = jobs.create(container={"image": "python:3.11", "command": ["python3", "-c", burn]})
    run = jobs.until(jobs.run(job), "completed", "failed")
    assert run["status"] == "completed", run
    cpu, memory = system.runs.metrics.series(
        ["cpu_usage", "memory_usage"],
        start=datetime.now(UTC) - timedelta(minutes=5),
        end=datetime.now(UTC),
        step_seconds=1,
        run_id=run["id"],
    )
    # Each sample is the CPU time the process used over the time between samples; on a
    # busy machine a burning process gets less than a whole core, never much more.
    assert cpu["points"] and 0.3 < max(p["value"] for p in cpu["points"]) < 1.5, cpu
    assert memory["points"] and min(p["value"] for p in memory["points"]) > 0, memory
