"""The Kubernetes executor with the official client against the API double: one Job per
attempt named from run id and attempt, manifests valid offline, status read back, logs
collected, cancel deletes the Job, a resubmitted attempt creates nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import kubernetes_validate
import pytest

from sailplane.infra_adapters.executors import (
    COMMAND_NOT_FOUND,
    FAILED,
    IMAGE_PULL_FAILED,
    OUT_OF_MEMORY,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
    Submission,
    Target,
    Work,
)
from sailplane.infra_adapters.executors.kubernetes import (
    CHILD_SOURCE,
    DEFAULT_RESOURCES,
    RUNTIME_SOURCE,
    KubernetesExecutor,
    job_manifest,
    job_name,
    run_secret_manifest,
)
from sailplane.infra_adapters.executors.logs import RunLogs
from sailplane.storage import Database
from tests.k8s_double import KUBERNETES_VERSION, KubernetesDouble, kubernetes_double

NS = "runs"


@pytest.fixture
def double() -> Iterator[KubernetesDouble]:
    with kubernetes_double() as d:
        yield d


@pytest.fixture
def logs(fresh_db: Database) -> RunLogs:
    run_logs = RunLogs(fresh_db)
    run_logs.create_table()
    return run_logs


def submission(
    double: KubernetesDouble, run_id: str = "RUNK8S0001", attempt: int = 1, **kw: object
) -> Submission:
    return Submission(
        run_id=run_id,
        attempt=attempt,
        organization_id="ORG0000001",
        job_id="JOB0000001",
        work=kw.pop("work", Work(sql="SELECT 1")),  # type: ignore[arg-type]
        target=Target(
            executor="kubernetes",
            spark_remote="sc://sail.runs.svc:50051",
            settings={
                "kubeconfig": double.kubeconfig(namespace=NS),
                "namespace": NS,
                "image": "lakesail/job:1",
            },
        ),
        **kw,  # type: ignore[arg-type]
    )


def test_manifests_are_valid_and_named_from_run_and_attempt(double: KubernetesDouble) -> None:
    manifest = job_manifest(submission(double, attempt=3, timeout_seconds=2))
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert manifest["metadata"]["name"] == job_name("RUNK8S0001", 3) == "sailplane-run-runk8s0001-3"
    assert manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["activeDeadlineSeconds"] == 2
    # The work's pod holds no Kubernetes API credentials.
    assert manifest["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    env = {
        e["name"]: e["value"] for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["SPARK_REMOTE"] == "sc://sail.runs.svc:50051"
    assert '"sql": "SELECT 1"' in env["SAILPLANE_WORK"]


def test_submit_once_read_status_collect_logs(double: KubernetesDouble, logs: RunLogs) -> None:
    executor = KubernetesExecutor(logs)
    sub = submission(double)
    assert executor.submit(sub)
    assert not executor.submit(sub)  # 409 AlreadyExists: nothing executes twice
    assert len([c for c in double.calls("POST", r"/jobs$")]) == 2
    assert len([k for k in double.objects if k[0] == "jobs"]) == 1
    name = job_name(sub.run_id, 1)
    assert executor.status(sub.run_id, 1, sub.target).state == SUBMITTED
    double.set_status("jobs", NS, name, {"active": 1})
    assert executor.status(sub.run_id, 1, sub.target).state == RUNNING
    pod = double.pods_of_job(NS, name)[0]["metadata"]["name"]
    double.set_log(NS, pod, "one\n1\n")
    double.set_status("jobs", NS, name, {"succeeded": 1})
    assert executor.status(sub.run_id, 1, sub.target).state == SUCCEEDED
    assert [r["line"] for r in logs.page(sub.run_id)] == ["one", "1"]
    assert executor.executions(sub.run_id, 1) == 1
    assert executor.executions(sub.run_id, 2) == 0


def test_failed_job_reports_its_condition(double: KubernetesDouble, logs: RunLogs) -> None:
    executor = KubernetesExecutor(logs)
    sub = submission(double, run_id="RUNK8SFAIL")
    executor.submit(sub)
    double.set_status(
        "jobs",
        NS,
        job_name(sub.run_id, 1),
        {
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "message": "Job was active longer than specified deadline",
                }
            ],
        },
    )
    status = executor.status(sub.run_id, 1, sub.target)
    assert status.state == FAILED and "deadline" in (status.message or "")


def test_cancel_deletes_the_job(double: KubernetesDouble, logs: RunLogs) -> None:
    executor = KubernetesExecutor(logs)
    sub = submission(double, run_id="RUNK8SCANC")
    executor.submit(sub)
    executor.cancel(sub.run_id, 1, sub.target)
    assert double.get("jobs", NS, job_name(sub.run_id, 1)) is None
    assert executor.status(sub.run_id, 1, sub.target).state == UNKNOWN
    executor.cancel(sub.run_id, 1, sub.target)  # already gone: nothing to do


CONTAINER = Work(
    container={
        "image": "registry.example.com/etl:2",
        "argv": ["/bin/sh", "-c", "echo hello"],
        "env": {"STAGE": "prod"},
    }
)


def test_a_container_jobs_pod_is_its_image_command_and_env(double: KubernetesDouble) -> None:
    manifest = job_manifest(submission(double, run_id="RUNK8SCONT", work=CONTAINER))
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/etl:2"
    assert container["command"] == ["/bin/sh", "-c", "echo hello"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"STAGE": "prod", "SAILPLANE_RUN_ID": "RUNK8SCONT", "SAILPLANE_RUN_ATTEMPT": "1"}
    assert container["resources"] == DEFAULT_RESOURCES
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert labels["sailplane.io/run-id"] == "RUNK8SCONT" and labels["sailplane.io/attempt"] == "1"


def _container_ends(double: KubernetesDouble, sub: Submission, state: dict) -> None:
    name = job_name(sub.run_id, sub.attempt)
    (pod,) = double.pods_of_job(NS, name)
    double.set_status(
        "pods",
        NS,
        pod["metadata"]["name"],
        {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "run",
                    "ready": False,
                    "restartCount": 0,
                    "image": "x",
                    "imageID": "",
                    "state": state,
                }
            ],
        },
    )


@pytest.mark.parametrize(
    ("terminated", "message", "cause"),
    [
        ({"exitCode": 3, "reason": "Error"}, "Exited with status 3.", None),
        ({"exitCode": 137, "reason": "OOMKilled"}, "ran out of memory", OUT_OF_MEMORY),
        # containerd could not start the command: the platform's failure, not the work's.
        (
            {
                "exitCode": 128,
                "reason": "StartError",
                "message": 'exec: "nope": executable file not found in $PATH: unknown',
            },
            "command was not found (StartError)",
            COMMAND_NOT_FOUND,
        ),
        # Another start error is the work's own failure, with the runtime's message.
        ({"exitCode": 128, "reason": "StartError", "message": "permission denied"}, "128", None),
    ],
)
def test_a_failed_container_reports_its_exit_code_and_an_out_of_memory_kill(
    double: KubernetesDouble, logs: RunLogs, terminated: dict, message: str, cause: str | None
) -> None:
    executor = KubernetesExecutor(logs)
    sub = submission(double, run_id=f"RUNK8SX{terminated['exitCode']}", work=CONTAINER)
    executor.submit(sub)
    _container_ends(double, sub, {"terminated": terminated})
    double.set_status("jobs", NS, job_name(sub.run_id, 1), {"failed": 1})
    status = executor.status(sub.run_id, 1, sub.target)
    assert (status.state, status.exit_code, status.cause) == (FAILED, terminated["exitCode"], cause)
    assert message in (status.message or "")


NO_COMMAND = 'container create failed: exec: "nope": executable file not found in $PATH'


@pytest.mark.parametrize(
    ("reason", "message", "cause"),
    [
        ("ErrImagePull", "manifest unknown", IMAGE_PULL_FAILED),
        ("ImagePullBackOff", "manifest unknown", IMAGE_PULL_FAILED),
        # CRI-O keeps a container whose command is missing waiting, and would retry it for ever.
        ("CreateContainerError", NO_COMMAND, COMMAND_NOT_FOUND),
    ],
)
def test_a_container_that_cannot_start_fails_the_attempt_and_removes_its_job(
    double: KubernetesDouble, logs: RunLogs, reason: str, message: str, cause: str
) -> None:
    """An image that cannot be pulled, or a command the runtime cannot find."""
    executor = KubernetesExecutor(logs)
    sub = submission(double, run_id=f"RUNK8S{reason.upper()[:6]}", work=CONTAINER)
    executor.submit(sub)
    _container_ends(double, sub, {"waiting": {"reason": reason, "message": message}})
    double.set_status("jobs", NS, job_name(sub.run_id, 1), {"active": 1})
    status = executor.status(sub.run_id, 1, sub.target)
    assert (status.state, status.cause) == (FAILED, cause)
    assert reason in (status.message or "") and message in (status.message or "")
    assert double.get("jobs", NS, job_name(sub.run_id, 1)) is None


def test_a_succeeded_container_exits_zero(double: KubernetesDouble, logs: RunLogs) -> None:
    executor = KubernetesExecutor(logs)
    sub = submission(double, run_id="RUNK8SZERO", work=CONTAINER)
    executor.submit(sub)
    double.set_status("jobs", NS, job_name(sub.run_id, 1), {"succeeded": 1})
    status = executor.status(sub.run_id, 1, sub.target)
    assert (status.state, status.exit_code) == (SUCCEEDED, 0)


def test_pod_log_lines_keep_the_time_the_pod_wrote_them(
    double: KubernetesDouble, logs: RunLogs
) -> None:
    executor = KubernetesExecutor(logs)
    sub = submission(double, run_id="RUNK8STIME", work=CONTAINER)
    executor.submit(sub)
    (pod,) = double.pods_of_job(NS, job_name(sub.run_id, 1))
    double.set_log(NS, pod["metadata"]["name"], "hello world\n")
    double.set_status("jobs", NS, job_name(sub.run_id, 1), {"succeeded": 1})
    executor.status(sub.run_id, 1, sub.target)
    (line,) = logs.page(sub.run_id)
    assert line["line"] == "hello world"
    assert line["at"] == datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)


RUNTIME_VARIABLES = {
    "SAILPLANE_RUN_ID": "RUNK8SRT01",
    "SAILPLANE_ATTEMPT": "1",
    "SAILPLANE_RUN_TOKEN": "spr_e30.c2lnbmF0dXJl",
    "SAILPLANE_API_URL": "https://sailplane.example",
    "SAILPLANE_HEARTBEAT_SECONDS": "10.0",
}


def test_the_run_token_reaches_the_pod_through_the_attempts_secret(
    double: KubernetesDouble, logs: RunLogs
) -> None:
    sub = submission(
        double,
        run_id="RUNK8SRT01",
        work=Work(python={"source": "from sailplane import runtime"}),
        variables=RUNTIME_VARIABLES,
    )
    manifest = job_manifest(sub)
    secret = run_secret_manifest(sub)
    assert secret is not None
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    # The token is in the Secret only; the Job names it.
    assert "spr_e30.c2lnbmF0dXJl" not in json.dumps(manifest)
    assert secret["stringData"] == {"SAILPLANE_RUN_TOKEN": "spr_e30.c2lnbmF0dXJl"}
    env = {e["name"]: e for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SAILPLANE_RUN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": job_name("RUNK8SRT01", 1),
        "key": "SAILPLANE_RUN_TOKEN",
    }
    assert env["SAILPLANE_API_URL"]["value"] == "https://sailplane.example"
    assert env["SAILPLANE_ATTEMPT"]["value"] == "1"
    assert "def checkpoint(" in env["SAILPLANE_RUNTIME_SOURCE"]["value"]
    executor = KubernetesExecutor(logs)
    assert executor.submit(sub)
    assert not executor.submit(sub)  # the Secret and the Job exist: nothing twice
    assert ("secrets", NS, job_name("RUNK8SRT01", 1)) in double.objects
    assert len(double.calls("POST", r"/secrets$")) == 2


def test_a_pod_without_sailplane_imports_the_runtime_from_its_source() -> None:
    """The child's source as a pod runs it (`python -c`, isolated: no Sailplane on the
    path), with the runtime's source in the environment."""
    work = {
        "python": {"source": "from sailplane import runtime\nprint(runtime.debug_mode.__doc__)"}
    }
    env = {
        "PATH": os.environ["PATH"],
        "SAILPLANE_WORK": json.dumps(work),
        "SAILPLANE_RUNTIME_SOURCE": RUNTIME_SOURCE,
        "SAILPLANE_DEBUG": "1",
    }
    ran = subprocess.run(
        [sys.executable, "-I", "-c", CHILD_SOURCE], env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "Whether the run is in debug mode."
