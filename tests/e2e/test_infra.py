"""Infrastructure over HTTP with the local provider: connections, networks, clusters,
operations, sessions and compute configs, with every wrong-state call answered 409."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sailplane.system import System
from tests.conftest import Org, local_cluster_id

pytestmark = pytest.mark.usefixtures("provisioner")


def eventually(
    read: Callable[[], Any], done: Callable[[Any], bool], *, timeout: float = 60.0
) -> Any:
    """Poll `read` until `done` holds for its value (the provisioner works asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def finished(client: httpx.Client, operation: dict[str, Any]) -> dict[str, Any]:
    return eventually(
        lambda: client.get(f"/operations/{operation['id']}").json(),
        lambda op: op["status"] in ("succeeded", "failed"),
    )


def expect_conflict(response: httpx.Response, status: str) -> None:
    assert response.status_code == 409, response.text
    assert status in response.json()["message"]


def spark_select_one(url: str) -> list[int]:
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(url).create()
    try:
        return [row["one"] for row in spark.sql("SELECT 1 AS one").collect()]
    finally:
        spark.stop()


def test_every_member_reaches_the_active_local_cluster(
    system: System, org: Org, client: httpx.Client, member_client: httpx.Client
) -> None:
    cluster_id = local_cluster_id(system, org.id)
    for caller in (client, member_client):
        listed = caller.get("/me/clusters")
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert [item["id"] for item in body["items"]] == [cluster_id]
        (cluster,) = body["included"]["clusters"]
        assert (cluster["name"], cluster["externalStatus"]) == ("local", "active")
        assert body["included"]["connections"][0]["provider"] == "local"
        described = caller.get(f"/me/clusters/{cluster_id}")
        assert described.status_code == 200
        assert described.json()["item"]["externalClusterId"] == cluster["externalClusterId"]
    # The built-in local cluster stays: it cannot be destroyed or deleted.
    external_id = client.get(f"/me/clusters/{cluster_id}").json()["item"]["externalClusterId"]
    expect_conflict(client.delete(f"/infra/clusters/{external_id}"), "local")


def test_a_local_cluster_from_connection_to_deletion(client: httpx.Client, org: Org) -> None:
    # A local connection is active at once: this host needs no verification.
    connection = client.post("/infra/connections", json={"name": "Laptop", "provider": "local"})
    assert connection.status_code == 201, connection.text
    connection_id = connection.json()["id"]
    assert connection.json()["status"] == "active"
    verified = client.post(f"/infra/connections/{connection_id}/verify", json={})
    assert verified.status_code == 200 and verified.json()["status"] == "active"
    regions = client.get(f"/infra/connections/{connection_id}/regions").json()["items"]
    assert [r["regionCode"] for r in regions] == ["local"]
    types = client.get(f"/infra/connections/{connection_id}/instance-types").json()["items"]
    assert types[0]["instanceType"] == "local" and types[0]["vCpus"] >= 1
    assert (
        client.get(
            f"/infra/connections/{connection_id}/instance-types", params={"minVCpus": 100000}
        ).json()["items"]
        == []
    )
    expect_conflict(client.post(f"/infra/connections/{connection_id}/sync-template"), "template")

    # A network: pending, then provisioned by the provisioner through an operation.
    network = client.post(
        f"/infra/connections/{connection_id}/networks", json={"name": "loop", "config": {}}
    )
    assert network.status_code == 201, network.text
    network_id = network.json()["id"]
    assert network.json()["status"] == "pending"
    expect_conflict(
        client.delete(f"/infra/connections/{connection_id}/networks/{network_id}"), "pending"
    )
    operation = client.post(f"/infra/connections/{connection_id}/networks/{network_id}/provision")
    assert operation.status_code == 202, operation.text
    assert operation.json()["resourceId"] == network_id
    assert finished(client, operation.json())["status"] == "succeeded"
    described = client.get(f"/infra/connections/{connection_id}/networks/{network_id}").json()
    assert described["included"]["networks"][0]["status"] == "active"
    assert described["included"]["networks"][0]["providerNetworkId"] == "loopback"
    expect_conflict(
        client.post(f"/infra/connections/{connection_id}/networks/{network_id}/provision"), "active"
    )

    # A cluster on it: pending with its workload cluster, then provisioned.
    cluster = client.post(
        f"/infra/connections/{connection_id}/clusters",
        json={"networkId": network_id, "name": "sail-1"},
    )
    assert cluster.status_code == 201, cluster.text
    external_id, cluster_id = cluster.json()["id"], cluster.json()["clusterId"]
    assert cluster.json()["status"] == "pending"
    expect_conflict(
        client.delete(f"/infra/connections/{connection_id}/clusters/{external_id}"), "pending"
    )
    provision = client.post(f"/infra/connections/{connection_id}/clusters/{external_id}/provision")
    assert provision.status_code == 202
    done = finished(client, provision.json())
    assert done["status"] == "succeeded", done
    assert done["progress"]["summary"]["succeeded"] >= 1
    external = client.get(f"/infra/clusters/{external_id}").json()["included"]["clusters"][0]
    assert external["status"] == "active"
    assert external["iacOutputs"]["endpoint"].startswith("sc://127.0.0.1:")
    mine = client.get(f"/me/clusters/{cluster_id}").json()
    assert mine["included"]["clusters"][0]["externalStatus"] == "active"
    expect_conflict(
        client.post(f"/infra/connections/{connection_id}/clusters/{external_id}/provision"),
        "active",
    )
    health = client.get(f"/infra/connections/{connection_id}/clusters/{external_id}/health")
    assert health.status_code == 200 and health.json()["status"] == "healthy", health.text
    metrics = client.get(
        f"/infra/connections/{connection_id}/clusters/{external_id}/metrics"
    ).json()
    assert len(metrics["memoryUtilization"]) == 1
    assert (
        client.get(
            f"/infra/connections/{connection_id}/clusters/{external_id}/kubeconfig"
        ).status_code
        == 409
    )
    # The network holds an active cluster: it cannot be destroyed yet, nor the connection deleted.
    expect_conflict(
        client.delete(f"/infra/connections/{connection_id}/networks/{network_id}"), "active"
    )
    expect_conflict(client.delete(f"/infra/connections/{connection_id}"), "active")
    expect_conflict(client.delete(f"/infra/clusters/{external_id}"), "active")

    # A session on the new cluster: a real Spark Connect client runs SELECT 1 through it.
    team = client.post("/org/teams", json={"name": "Data"}).json()["team"]["id"]
    config = client.post(
        "/workloads/compute-configs",
        json={
            "name": "small",
            "clusterId": cluster_id,
            "teamId": team,
            "config": {"sail": {"compute": {"driver": {"instanceType": "local"}}}},
        },
    )
    assert config.status_code == 201, config.text
    # The provisioned cluster's id names the same cluster (its one workload cluster).
    by_external_id = client.post(
        "/workloads/compute-configs",
        json={
            "name": "small too",
            "clusterId": external_id,
            "teamId": team,
            "config": {"sail": {"compute": {"driver": {"instanceType": "local"}}}},
        },
    )
    assert by_external_id.status_code == 201, by_external_id.text
    assert by_external_id.json()["clusterId"] == cluster_id != external_id
    wrong_type = client.post(
        "/workloads/compute-configs",
        json={
            "name": "big",
            "clusterId": cluster_id,
            "teamId": team,
            "config": {"sail": {"compute": {"driver": {"instanceType": "c8g.2xlarge"}}}},
        },
    )
    assert wrong_type.status_code == 422
    assert wrong_type.json()["field"] == "config.sail.compute.driver.instanceType"
    session = client.post(
        "/workloads/sessions",
        json={"name": "explore", "teamId": team, "workloadConfigId": config.json()["id"]},
    )
    assert session.status_code == 201, session.text
    session_id = session.json()["id"]
    opened = eventually(
        lambda: client.get(f"/workloads/sessions/{session_id}").json(),
        lambda s: s["status"] != "pending",
    )
    assert opened["status"] == "active", opened
    assert opened["workloadId"] == cluster_id
    assert spark_select_one(opened["connectionInfo"]["grpcEndpoint"]) == [1]
    token = client.post(f"/workloads/sessions/{session_id}/token", json={"durationSeconds": 600})
    assert token.status_code == 201 and token.json()["token"].count(".") == 2
    expect_conflict(client.post(f"/workloads/sessions/{session_id}/relaunch"), "active")
    assert client.delete(f"/workloads/sessions/{session_id}").status_code == 204
    expect_conflict(client.delete(f"/workloads/sessions/{session_id}"), "closed")
    expect_conflict(client.post(f"/workloads/sessions/{session_id}/token", json={}), "closed")
    relaunched = client.post(f"/workloads/sessions/{session_id}/relaunch")
    assert relaunched.status_code == 201 and relaunched.json()["id"] != session_id
    relaunched_id = relaunched.json()["id"]
    eventually(
        lambda: client.get(f"/workloads/sessions/{relaunched_id}").json(),
        lambda s: s["status"] == "active",
    )
    listed = client.get("/workloads/sessions", params={"status": "closed"}).json()
    assert [item["id"] for item in listed["items"]] == [session_id]

    # Destroy the cluster, then delete its record (and its workload cluster).
    destroy = client.delete(f"/infra/connections/{connection_id}/clusters/{external_id}")
    assert destroy.status_code == 202
    assert finished(client, destroy.json())["status"] == "succeeded"
    gone = client.get(f"/infra/clusters/{external_id}").json()["included"]["clusters"][0]
    assert gone["status"] == "destroyed"
    # The session still open on it ended with its cluster.
    ended = eventually(
        lambda: client.get(f"/workloads/sessions/{relaunched_id}").json(),
        lambda s: s["status"] == "closed",
    )
    assert (ended["status"], ended["terminationReason"]) == ("closed", "cluster_destroyed")
    expect_conflict(
        client.delete(f"/infra/connections/{connection_id}/clusters/{external_id}"), "destroyed"
    )
    assert (
        client.post(
            "/workloads/sessions",
            json={"name": "late", "teamId": team, "workloadConfigId": config.json()["id"]},
        ).status_code
        == 409
    )
    assert client.delete(f"/infra/clusters/{external_id}").status_code == 204
    assert client.get(f"/infra/clusters/{external_id}").status_code == 404
    assert client.get(f"/me/clusters/{cluster_id}").status_code == 404

    # Then the network and the connection.
    destroy = client.delete(f"/infra/connections/{connection_id}/networks/{network_id}")
    assert finished(client, destroy.json())["status"] == "succeeded"
    assert client.delete(f"/infra/networks/{network_id}").status_code == 204
    assert client.delete(f"/infra/connections/{connection_id}").status_code == 204
    assert client.get(f"/infra/connections/{connection_id}").status_code == 404


def test_a_cluster_needs_an_active_network(client: httpx.Client) -> None:
    connection_id = client.post(
        "/infra/connections", json={"name": "c", "provider": "local"}
    ).json()["id"]
    network_id = client.post(
        f"/infra/connections/{connection_id}/networks", json={"name": "n"}
    ).json()["id"]
    created = client.post(
        f"/infra/connections/{connection_id}/clusters", json={"networkId": network_id, "name": "x"}
    )
    expect_conflict(created, "pending")
    # A never-provisioned network record can be deleted at once.
    assert client.delete(f"/infra/networks/{network_id}").status_code == 204
    unknown = client.post("/infra/connections", json={"name": "c", "provider": "azure"})
    assert unknown.status_code == 422
    bad = client.post(
        "/infra/connections", json={"name": "c", "provider": "local", "providerConfig": {"x": 1}}
    )
    assert bad.status_code == 422
