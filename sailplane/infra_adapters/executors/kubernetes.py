"""The Kubernetes executor: one batch/v1 Job per attempt, through the official client.

The Job is named from the run id and the attempt (`sailplane-run-<id>-<attempt>`), so a
second submission of one attempt meets `409 AlreadyExists` and executes nothing. Its
single container runs `executors/child.py` (passed as `python -c`, so the image needs
only Python and the Spark Connect client) with the work in `SAILPLANE_WORK` and
`SPARK_REMOTE` pointing at the cluster's Sail server. Retries are Sailplane's own, so the
Job has `backoffLimit: 0`; `timeoutSeconds` becomes `activeDeadlineSeconds` as a second
fence. Status is read back from the Job; cancel deletes it (foreground, with a grace
period for its pod). When an attempt finishes its pod's log becomes the run's logs.

Target settings: `kubeconfig` (a dict), `namespace` (default `default`), `image`
(default `python:3.11-slim`), `service_account` (optional).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from sailplane.infra_adapters.executors import (
    FAILED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
    Status,
    Submission,
    Target,
)
from sailplane.infra_adapters.executors.logs import RunLogs

log = logging.getLogger(__name__)

CHILD_SOURCE = (Path(__file__).parent / "child.py").read_text(encoding="utf-8")
DEFAULT_IMAGE = "python:3.11-slim"
LABEL_RUN, LABEL_ATTEMPT = "sailplane.io/run-id", "sailplane.io/attempt"


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
    container: dict[str, Any] = {
        "name": "run",
        "image": settings.get("image", DEFAULT_IMAGE),
        "command": ["python", "-c", CHILD_SOURCE],
        "env": [
            {"name": "SPARK_REMOTE", "value": submission.target.spark_remote or ""},
            {"name": "SAILPLANE_WORK", "value": json.dumps(submission.work.to_dict())},
            {"name": "SAILPLANE_RUN_ID", "value": submission.run_id},
            {"name": "SAILPLANE_RUN_ATTEMPT", "value": str(submission.attempt)},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
    }
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

    def _api(self, target: Target) -> client.BatchV1Api:
        return client.BatchV1Api(config.new_client_from_config_dict(target.settings["kubeconfig"]))

    def _namespace(self, target: Target) -> str:
        return str(target.settings.get("namespace", "default"))

    def submit(self, submission: Submission) -> bool:
        target = submission.target
        self.remember(submission.run_id, submission.attempt, target)
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
            return Status(SUCCEEDED)
        if status.failed:
            self._collect_logs(target, run_id, attempt)
            reasons = [c.message or c.reason for c in status.conditions or [] if c.type == "Failed"]
            return Status(FAILED, "; ".join(r for r in reasons if r) or "The Job's pod failed.")
        if status.active:
            return Status(RUNNING)
        return Status(SUBMITTED)

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

    def close(self) -> None:
        """Jobs run on in the cluster; nothing to release here."""

    def _collect_logs(self, target: Target, run_id: str, attempt: int) -> None:
        key = (run_id, attempt)
        if key in self._logged:
            return
        self._logged.add(key)
        core = client.CoreV1Api(config.new_client_from_config_dict(target.settings["kubeconfig"]))
        namespace = self._namespace(target)
        try:
            pods = core.list_namespaced_pod(
                namespace, label_selector=f"job-name={job_name(run_id, attempt)}"
            )
            for pod in pods.items:
                text = core.read_namespaced_pod_log(pod.metadata.name, namespace)
                self.logs.append(run_id, attempt, (text or "").splitlines())
        except ApiException:
            log.warning("could not read the log of %s attempt %s", run_id, attempt)
