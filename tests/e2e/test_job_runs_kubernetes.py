"""A job run on a `kubernetes` cluster over HTTP: the dispatcher creates one batch/v1 Job
per attempt in the cluster's namespace through the official client (here against the HTTP
double of the Kubernetes API), reads its status back, and collects the pod's log."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from sailplane.infra_adapters.executors.kubernetes import job_name
from sailplane.system import System, WorkerHost
from tests.e2e.test_infra import finished
from tests.e2e.test_run_runtime import AGENT
from tests.k8s_double import KubernetesDouble, kubernetes_double
from tests.runs_support import wait_until

pytestmark = [pytest.mark.usefixtures("provisioner"), pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def double() -> Iterator[KubernetesDouble]:
    with kubernetes_double() as served:
        served.add_node("node-1")
        yield served


@pytest.fixture(scope="module")
def dispatcher(system: System) -> Iterator[None]:
    stop, host = threading.Event(), WorkerHost()
    host.start(system.worker("dispatcher"), stop)
    try:
        yield
    finally:
        stop.set()
        host.join(timeout=20)


def kubernetes_cluster(client: httpx.Client, double: KubernetesDouble) -> tuple[str, str]:
    """An active cluster (a namespace) on a kubernetes connection: (cluster id, namespace)."""
    connection = client.post(
        "/infra/connections",
        json={
            "name": "k8s",
            "provider": "kubernetes",
            "providerConfig": {"kubeconfig": yaml.safe_dump(double.kubeconfig())},
        },
    ).json()["id"]
    base = f"/infra/connections/{connection}"
    assert client.post(f"{base}/verify", json={}).json()["status"] == "active"
    network = client.post(f"{base}/networks", json={"name": "n"}).json()["id"]
    assert (
        finished(client, client.post(f"{base}/networks/{network}/provision").json())["status"]
        == "succeeded"
    )
    cluster = client.post(f"{base}/clusters", json={"networkId": network, "name": "runs"}).json()
    done = finished(client, client.post(f"{base}/clusters/{cluster['id']}/provision").json())
    assert done["status"] == "succeeded", done
    external = client.get(f"/infra/clusters/{cluster['id']}").json()["included"]["clusters"][0]
    return cluster["clusterId"], external["iacOutputs"]["namespace"]


def test_a_run_on_a_kubernetes_cluster_is_one_job_per_attempt(
    client: httpx.Client, double: KubernetesDouble, dispatcher: None
) -> None:
    cluster_id, namespace = kubernetes_cluster(client, double)
    team = client.post("/org/teams", json={"name": f"t-{uuid.uuid4().hex[:6]}"}).json()["team"]
    job = client.post(
        "/workloads/jobs",
        json={
            "jobKey": f"k8s-{uuid.uuid4().hex[:6]}",
            "clusterId": cluster_id,
            "teamIds": [team["id"]],
            "config": {"sql": {"source": "SELECT 1 AS one"}, "lakesail": {"maxRetries": 1}},
            "timeoutSeconds": 600,
        },
    )
    assert job.status_code == 201, job.text
    run = client.post(f"/workloads/jobs/{job.json()['id']}/runs", json={}).json()
    path = f"/workloads/jobs/{run['jobId']}/runs/{run['id']}"

    def get() -> dict[str, Any]:
        return client.get(path).json()

    name = job_name(run["id"], 1)
    manifest = wait_until(lambda: double.get("jobs", namespace, name), what="the Job created")
    assert manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["activeDeadlineSeconds"] == 600
    assert manifest["metadata"]["labels"]["sailplane.io/run-id"] == run["id"]
    double.set_status("jobs", namespace, name, {"active": 1})
    wait_until(lambda: get()["status"] == "running", what="running")

    # The attempt fails: a second Job for attempt 2, the first left as it was.
    double.set_status(
        "jobs",
        namespace,
        name,
        {
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "boom",
                }
            ],
        },
    )
    second = job_name(run["id"], 2)
    wait_until(lambda: double.get("jobs", namespace, second), timeout=30, what="attempt 2's Job")
    pod = double.pods_of_job(namespace, second)[0]["metadata"]["name"]
    double.set_log(namespace, pod, "one\n1\n")
    double.set_status("jobs", namespace, second, {"succeeded": 1})
    done = wait_until(lambda: (r := get())["status"] == "completed" and r, what="completed")
    assert done["attempt"] == 2
    lines = [line["line"] for line in client.get(f"{path}/logs").json()["items"]]
    assert lines == ["one", "1"]
    assert len(double.calls("POST", f"/namespaces/{namespace}/jobs$")) == 2


def test_the_agent_job_on_kubernetes_gets_its_run_token_through_a_secret(
    client: httpx.Client, double: KubernetesDouble, dispatcher: None, system: System, api: str
) -> None:
    """The run runtime's agent job on the Kubernetes executor: the Secret and the Job (both
    validated offline by the double, as a server would) carry the attempt's credential and
    the runtime's variables, and the token acts for that attempt."""
    cluster_id, namespace = kubernetes_cluster(client, double)
    team = client.post("/org/teams", json={"name": f"t-{uuid.uuid4().hex[:6]}"}).json()["team"]
    job = client.post(
        "/workloads/jobs",
        json={
            "jobKey": f"agent-{uuid.uuid4().hex[:6]}",
            "clusterId": cluster_id,
            "teamIds": [team["id"]],
            "config": {"python": {"source": AGENT}},
        },
    )
    assert job.status_code == 201, job.text
    run = client.post(f"/workloads/jobs/{job.json()['id']}/runs", json={}).json()
    name = job_name(run["id"], 1)
    manifest = wait_until(lambda: double.get("jobs", namespace, name), what="the Job created")
    secret = double.get("secrets", namespace, name)
    assert secret is not None
    token = secret["stringData"]["SAILPLANE_RUN_TOKEN"]
    claims = system.runs.tokens.verify(token)
    assert claims is not None and (claims.run_id, claims.attempt) == (run["id"], 1)
    assert token not in str(manifest)
    env = {e["name"]: e for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SAILPLANE_RUN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == name
    assert env["SAILPLANE_API_URL"]["value"] == api
    assert env["SAILPLANE_ATTEMPT"]["value"] == "1"
    assert "def wait_for(" in env["SAILPLANE_RUNTIME_SOURCE"]["value"]
    # The pod's work talks back with it while its attempt runs.
    double.set_status("jobs", namespace, name, {"active": 1})
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}) as work:
        context = work.get("/v1/runtime/context")
        assert context.status_code == 200, context.text
        assert context.json()["attempt"] == 1
    client.post(f"/workloads/jobs/{run['jobId']}/runs/{run['id']}/cancel")
