"""The Kubernetes executor: one batch/v1 Job per attempt, through the official client.

The Job is named from the run id and the attempt (`sailplane-run-<id>-<attempt>`), so a
second submission of one attempt meets `409 AlreadyExists` and executes nothing. For SQL
and Python work its single container runs `executors/child.py` (passed as `python -c`,
so the image needs only Python and the Spark Connect client) with the work in
`SAILPLANE_WORK` and `SPARK_REMOTE` pointing at the cluster's Sail server; a container
job's container is its own image, command and `env`. The pod's container states say how
it ended: its exit code, `OOMKilled`, or an image that cannot be pulled (`ErrImagePull`,
`ImagePullBackOff`, `InvalidImageName`: the Job is deleted and the attempt fails). Retries are Sailplane's own, so the
Job has `backoffLimit: 0`; `timeoutSeconds` becomes `activeDeadlineSeconds` as a second
fence. Status is read back from the Job; cancel deletes it (foreground, with a grace
period for its pod). When an attempt finishes its pod's log becomes the run's logs.

Target settings: `kubeconfig` (a dict), `namespace` (default `default`), `image`
(default `python:3.11-slim`), `service_account` (optional), `resources` (the container's
requests and limits; default `DEFAULT_RESOURCES`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

from sailplane.infra_adapters.executors import (
    COMMAND_NOT_FOUND,
    FAILED,
    IMAGE_PULL_FAILED,
    OUT_OF_MEMORY,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
    Status,
    Submission,
    Target,
)
from sailplane.infra_adapters.executors.logs import RunLogs
from sailplane.infra_adapters.executors.metrics import Usage

log = logging.getLogger(__name__)

CHILD_SOURCE = (Path(__file__).parent / "child.py").read_text(encoding="utf-8")
DEFAULT_IMAGE = "python:3.11-slim"
LABEL_RUN, LABEL_ATTEMPT = "sailplane.io/run-id", "sailplane.io/attempt"
DEFAULT_RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}}
# Waiting reasons of a container whose image will not come: the attempt fails at once.
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
# The runtime could not start the container's process: containerd reports a terminated
# `StartError`, Docker `ContainerCannotRun`, CRI-O a waiting `CreateContainerError` or
# `RunContainerError`; the message says when the command is missing.
START_FAILED_REASONS = frozenset(
    {"StartError", "ContainerCannotRun", "CreateContainerError", "RunContainerError"}
)
MISSING_COMMAND = ("executable file not found", "no such file or directory")


def command_missing(state: Any) -> bool:
    """Whether a container `state` (terminated or waiting) says its command was not found."""
    if state is None or state.reason not in START_FAILED_REASONS:
        return False
    message = (state.message or "").lower()
    return any(words in message for words in MISSING_COMMAND)


def job_name(run_id: str, attempt: int) -> str:
    """A DNS-1123 name unique to (run, attempt)."""
    return f"sailplane-run-{re.sub(r'[^a-z0-9]', '', run_id.lower())}-{attempt}"[:63]


def job_manifest(submission: Submission) -> dict[str, Any]:
    settings = submission.target.settings
    labels = {
        "app.kubernetes.io/managed-by": "sailplane",
        LABEL_RUN: submission.run_id,
        LABEL_ATTEMPT: str(submission.attempt),
    }
    run_variables = [
        {"name": "SAILPLANE_RUN_ID", "value": submission.run_id},
        {"name": "SAILPLANE_RUN_ATTEMPT", "value": str(submission.attempt)},
        *runtime_variables(submission),
    ]
    work = submission.work.container
    container: dict[str, Any] = {
        "name": "run",
        "resources": settings.get("resources", DEFAULT_RESOURCES),
    }
    if work is not None:
        container.update(
            image=work["image"],
            command=list(work["argv"]),
            env=[{"name": k, "value": v} for k, v in (work.get("env") or {}).items()]
            + run_variables,
        )
    else:
        container.update(
            image=settings.get("image", DEFAULT_IMAGE),
            command=["python", "-c", CHILD_SOURCE],
            env=[
                {"name": "SPARK_REMOTE", "value": submission.target.spark_remote or ""},
                {"name": "SAILPLANE_WORK", "value": json.dumps(submission.work.to_dict())},
                *run_variables,
                {"name": "PYTHONUNBUFFERED", "value": "1"},
            ],
        )
    # The work gets no Kubernetes API credentials: no service-account token in the pod.
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "containers": [container],
    }
    if settings.get("service_account"):
        pod_spec["serviceAccountName"] = settings["service_account"]
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 86_400,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if submission.timeout_seconds:
        spec["activeDeadlineSeconds"] = int(submission.timeout_seconds)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(submission.run_id, submission.attempt), "labels": labels},
        "spec": spec,
    }


# The run runtime's credential goes through the attempt's Secret, never plain in the Job.
SECRET_VARIABLES = frozenset({"SAILPLANE_RUN_TOKEN"})
RUNTIME_SOURCE = (Path(__file__).parents[2] / "runtime.py").read_text(encoding="utf-8")


def runtime_variables(submission: Submission) -> list[dict[str, Any]]:
    """The run runtime's variables of the container: the run token from the attempt's Secret
    (`run_secret_manifest`), the others as values, and for Python work the source of
    `sailplane.runtime` (the pod's image need not have Sailplane)."""
    env: list[dict[str, Any]] = []
    for name, value in sorted(submission.variables.items()):
        if name in ("SAILPLANE_RUN_ID", "SAILPLANE_RUN_ATTEMPT"):
            continue
        if name in SECRET_VARIABLES:
            ref = {"name": job_name(submission.run_id, submission.attempt), "key": name}
            env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
        else:
            env.append({"name": name, "value": value})
    if submission.variables and submission.work.container is None:
        env.append({"name": "SAILPLANE_RUNTIME_SOURCE", "value": RUNTIME_SOURCE})
    return env


def run_secret_manifest(submission: Submission) -> dict[str, Any] | None:
    """The attempt's Secret (named like its Job) holding its run token; None without one."""
    secret = {k: v for k, v in submission.variables.items() if k in SECRET_VARIABLES}
    if not secret:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": job_name(submission.run_id, submission.attempt),
            "labels": {
                "app.kubernetes.io/managed-by": "sailplane",
                LABEL_RUN: submission.run_id,
                LABEL_ATTEMPT: str(submission.attempt),
            },
        },
        "stringData": secret,
    }


def _timed_line(line: str) -> tuple[datetime | None, str]:
    """A pod log line read with `timestamps=true`: the RFC 3339 time it was written (to the
    microsecond), then the line."""
    stamp, _, rest = line.partition(" ")
    try:
        return datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00"), rest
    except ValueError:
        return None, line


class KubernetesExecutor:
    kind = "kubernetes"

    def __init__(self, logs: RunLogs, *, grace_seconds: int = 30) -> None:
        self.logs = logs
        self.grace_seconds = grace_seconds
        self._where: dict[tuple[str, int], Target] = {}  # attempts submitted or looked up here
        self._logged: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def remember(self, run_id: str, attempt: int, target: Target) -> None:
        with self._lock:
            self._where[(run_id, attempt)] = target

    def _client(self, target: Target) -> client.ApiClient:
        return config.new_client_from_config_dict(target.settings["kubeconfig"])

    def _api(self, target: Target) -> client.BatchV1Api:
        return client.BatchV1Api(self._client(target))

    def _core(self, target: Target) -> client.CoreV1Api:
        return client.CoreV1Api(self._client(target))

    def _namespace(self, target: Target) -> str:
        return str(target.settings.get("namespace", "default"))

    def submit(self, submission: Submission) -> bool:
        target = submission.target
        self.remember(submission.run_id, submission.attempt, target)
        secret = run_secret_manifest(submission)
        if secret is not None:
            try:
                self._core(target).create_namespaced_secret(self._namespace(target), secret)
            except ApiException as error:
                if error.status != 409:  # made by an earlier submission of this attempt
                    raise
        try:
            self._api(target).create_namespaced_job(
                self._namespace(target),
                job_manifest(submission),
            )
        except ApiException as error:
            if error.status == 409:
                return False  # this attempt was submitted before
            raise
        return True

    def status(self, run_id: str, attempt: int, target: Target | None = None) -> Status:
        target = target or self._where.get((run_id, attempt))
        if target is None:
            return Status(UNKNOWN)
        try:
            job = self._api(target).read_namespaced_job(
                job_name(run_id, attempt), self._namespace(target)
            )
        except ApiException as error:
            if error.status == 404:
                return Status(UNKNOWN)
            raise
        status = job.status
        if status is None:
            return Status(SUBMITTED)
        if status.succeeded:
            self._collect_logs(target, run_id, attempt)
            return Status(SUCCEEDED, exit_code=0)
        if status.failed:
            self._collect_logs(target, run_id, attempt)
            ended = self._container_state(target, run_id, attempt, "terminated")
            code = ended.exit_code if ended is not None else None
            if ended is not None and ended.reason == "OOMKilled":
                message = "The container ran out of memory (OOMKilled)."
                return Status(FAILED, message, exit_code=code, cause=OUT_OF_MEMORY)
            if command_missing(ended):
                return self._command_not_found(ended, code)
            reasons = [c.message or c.reason for c in status.conditions or [] if c.type == "Failed"]
            if not reasons and code is not None:
                reasons = [f"Exited with status {code}."]
            message = "; ".join(r for r in reasons if r) or "The Job's pod failed."
            return Status(FAILED, message, exit_code=code)
        if status.active:
            waiting = self._container_state(target, run_id, attempt, "waiting")
            if waiting is not None and waiting.reason in IMAGE_PULL_REASONS:
                self.cancel(run_id, attempt, target)  # it would wait for the image for ever
                detail = f": {waiting.message}" if waiting.message else ""
                message = f"The image could not be pulled ({waiting.reason}){detail}"
                return Status(FAILED, message, cause=IMAGE_PULL_FAILED)
            if command_missing(waiting):
                self.cancel(run_id, attempt, target)  # it would try to start it for ever
                return self._command_not_found(waiting, None)
            return Status(RUNNING)
        return Status(SUBMITTED)

    @staticmethod
    def _command_not_found(state: Any, code: int | None) -> Status:
        message = f"The container's command was not found ({state.reason}): {state.message}"
        return Status(FAILED, message, exit_code=code, cause=COMMAND_NOT_FOUND)

    def _container_state(self, target: Target, run_id: str, attempt: int, state: str) -> Any:
        """The `terminated` or `waiting` state of the attempt's container, if it is in it."""
        core = self._core(target)
        try:
            pods = core.list_namespaced_pod(
                self._namespace(target), label_selector=f"job-name={job_name(run_id, attempt)}"
            )
        except ApiException:
            log.warning("could not read the pods of %s attempt %s", run_id, attempt)
            return None
        for pod in pods.items:
            for container in (pod.status and pod.status.container_statuses) or []:
                found = getattr(container.state, state, None) if container.state else None
                if found is not None:
                    return found
        return None

    def cancel(self, run_id: str, attempt: int, target: Target | None = None) -> None:
        target = target or self._where.get((run_id, attempt))
        if target is None:
            return
        try:
            self._api(target).delete_namespaced_job(
                job_name(run_id, attempt),
                self._namespace(target),
                grace_period_seconds=self.grace_seconds,
                propagation_policy="Foreground",
            )
        except ApiException as error:
            if error.status != 404:
                raise

    def executions(self, run_id: str, attempt: int) -> int:
        return 1 if self.status(run_id, attempt).state != UNKNOWN else 0

    def usage(self, run_id: str, attempt: int, target: Target | None = None) -> list[Usage]:
        """The attempt's pods as `metrics.k8s.io` (metrics-server) reports them; none when
        the cluster serves no metrics."""
        target = target or self._where.get((run_id, attempt))
        if target is None:
            return []
        metrics = client.CustomObjectsApi(self._client(target))
        try:
            pods = metrics.list_namespaced_custom_object(
                "metrics.k8s.io",
                "v1beta1",
                self._namespace(target),
                "pods",
                label_selector=f"job-name={job_name(run_id, attempt)}",
            )
        except ApiException as error:
            log.debug("no pod metrics for %s attempt %s: %s", run_id, attempt, error.status)
            return []
        return [
            Usage(
                instance=pod["metadata"]["name"],
                cpu_cores=float(sum(parse_quantity(c["usage"]["cpu"]) for c in pod["containers"])),
                memory_bytes=int(
                    sum(parse_quantity(c["usage"]["memory"]) for c in pod["containers"])
                ),
            )
            for pod in pods.get("items", [])
        ]

    def close(self) -> None:
        """Jobs run on in the cluster; nothing to release here."""

    def _collect_logs(self, target: Target, run_id: str, attempt: int) -> None:
        key = (run_id, attempt)
        if key in self._logged:
            return
        self._logged.add(key)
        core = self._core(target)
        namespace = self._namespace(target)
        try:
            pods = core.list_namespaced_pod(
                namespace, label_selector=f"job-name={job_name(run_id, attempt)}"
            )
            for pod in pods.items:
                text = core.read_namespaced_pod_log(pod.metadata.name, namespace, timestamps=True)
                timed = [_timed_line(line) for line in (text or "").splitlines()]
                lines, times = [line for _, line in timed], [at for at, _ in timed]
                self.logs.append(run_id, attempt, lines, times=times)
        except ApiException:
            log.warning("could not read the log of %s attempt %s", run_id, attempt)
