"""The `kubernetes` provider over HTTP: a connection to an existing cluster through its
kubeconfig, here pointing the official client at the HTTP double of the API paths Sailplane
calls (no API server runs on the test machines). A cluster is a namespace."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.e2e.test_infra import expect_conflict, finished
from tests.k8s_double import KubernetesDouble, kubernetes_double

pytestmark = [pytest.mark.usefixtures("provisioner"), pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def double() -> Iterator[KubernetesDouble]:
    with kubernetes_double() as served:
        served.add_node("node-1")
        yield served


def test_a_kubernetes_connection_from_kubeconfig_to_deleted_records(
    client: httpx.Client, double: KubernetesDouble
) -> None:
    # The kubeconfig is sealed as a secret: the connection shows its context and server only.
    created = client.post(
        "/infra/connections",
        json={
            "name": "Existing cluster",
            "provider": "kubernetes",
            "providerConfig": {"kubeconfig": yaml.safe_dump(double.kubeconfig())},
        },
    )
    assert created.status_code == 201, created.text
    connection_id = created.json()["id"]
    base = f"/infra/connections/{connection_id}"
    assert created.json()["status"] == "pending"
    assert created.json()["providerConfig"] == {"context": "double", "server": double.url}
    assert double.token not in created.text
    expect_conflict(client.post(f"{base}/networks", json={"name": "n"}), "pending")

    # Verify asks the API server for its version and the nodes' readiness.
    verified = client.post(f"{base}/verify", json={})
    assert verified.status_code == 200, verified.text
    assert verified.json()["status"] == "active"
    assert verified.json()["statusMessage"] == "Kubernetes v1.31.0; 1 of 1 nodes ready."
    assert double.calls("GET", "/version")

    # Choosing the context again keeps the sealed kubeconfig: the client need not re-send it.
    updated = client.patch(base, json={"providerConfig": {"context": "double"}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["providerConfig"] == {"context": "double", "server": double.url}
    regions = client.get(f"{base}/regions").json()["items"]
    assert [r["regionCode"] for r in regions] == ["default"]
    expect_conflict(client.get(f"{base}/template"), "template")

    # The network is the cluster's own: the operation succeeds without creating anything.
    network_id = client.post(f"{base}/networks", json={"name": "cluster network"}).json()["id"]
    started = client.post(f"{base}/networks/{network_id}/provision")
    assert started.status_code == 202, started.text
    assert finished(client, started.json())["status"] == "succeeded"

    # A cluster is a namespace on the existing cluster.
    cluster = client.post(f"{base}/clusters", json={"networkId": network_id, "name": "team-a"})
    assert cluster.status_code == 201, cluster.text
    external_id = cluster.json()["id"]
    cluster_path = f"{base}/clusters/{external_id}"
    started = client.post(f"{cluster_path}/provision")
    assert started.status_code == 202, started.text
    done = finished(client, started.json())
    assert done["status"] == "succeeded", done
    external = client.get(f"/infra/clusters/{external_id}").json()["included"]["clusters"][0]
    assert external["status"] == "active"
    namespace = external["iacOutputs"]["namespace"]
    assert namespace == f"sailplane-{external_id.lower()}"
    assert double.get("namespaces", "", namespace) is not None
    expect_conflict(client.post(f"{cluster_path}/provision"), "active")

    health = client.get(f"{cluster_path}/health")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "healthy"
    kubeconfig = client.get(f"{cluster_path}/kubeconfig")
    assert kubeconfig.status_code == 200, kubeconfig.text
    document = yaml.safe_load(kubeconfig.json()["kubeconfig"])
    assert document["contexts"][0]["context"]["namespace"] == namespace
    expect_conflict(client.delete(base), "active")
    expect_conflict(client.delete(f"/infra/clusters/{external_id}"), "active")

    # Destroy removes the namespace; then the records go.
    destroy = client.delete(cluster_path)
    assert destroy.status_code == 202, destroy.text
    assert finished(client, destroy.json())["status"] == "succeeded"
    assert double.get("namespaces", "", namespace) is None
    expect_conflict(client.delete(cluster_path), "destroyed")
    expect_conflict(client.get(f"{cluster_path}/kubeconfig"), "destroyed")
    destroy = client.delete(f"{base}/networks/{network_id}")
    assert finished(client, destroy.json())["status"] == "succeeded"
    assert client.delete(f"/infra/clusters/{external_id}").status_code == 204
    assert client.delete(f"/infra/networks/{network_id}").status_code == 204
    assert client.delete(base).status_code == 204


@pytest.mark.parametrize(
    ("kubeconfig", "message"),
    [
        ("clusters: [oops", "not valid YAML"),
        ("just text", "kubeconfig"),
        ({"apiVersion": "v1", "kind": "Config", "clusters": []}, "kubeconfig"),
    ],
)
def test_a_malformed_kubeconfig_is_422_with_a_clear_message(
    client: httpx.Client, double: KubernetesDouble, kubeconfig: object, message: str
) -> None:
    created = client.post(
        "/infra/connections",
        json={
            "name": "Broken",
            "provider": "kubernetes",
            "providerConfig": {"kubeconfig": kubeconfig},
        },
    )
    assert created.status_code == 422, created.text
    body = created.json()
    assert body["field"] == "providerConfig.kubeconfig"
    assert message in body["message"]

    # The same on an update of a working connection, which keeps its kubeconfig.
    good = client.post(
        "/infra/connections",
        json={
            "name": "Working",
            "provider": "kubernetes",
            "providerConfig": {"kubeconfig": double.kubeconfig()},
        },
    ).json()
    refused = client.patch(
        f"/infra/connections/{good['id']}", json={"providerConfig": {"kubeconfig": kubeconfig}}
    )
    assert refused.status_code == 422 and message in refused.json()["message"]
    assert client.post(f"/infra/connections/{good['id']}/verify", json={}).json()["status"] == (
        "active"
    )
