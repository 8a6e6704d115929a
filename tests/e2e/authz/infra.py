"""Authorization-matrix cases of connections, networks, clusters, operations, sessions and
compute configs.

Setups use the organization's built-in `local` connection, network and cluster (active
from the start) and create what must be fresh through the API; operations complete in the
provisioner the matrix test runs.
"""

from __future__ import annotations

import time
from typing import Any

from sailplane.commands.infra import local_ids
from tests.e2e.authz import Case, World

VIEW, MANAGE = "CanViewInfrastructure", "CanManageInfrastructure"


def _finish(world: World, operation_id: str) -> None:
    deadline = time.monotonic() + 60
    while world.owner.get(f"/operations/{operation_id}").json()["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, f"operation {operation_id} did not finish"
        time.sleep(0.1)


def builtin(world: World) -> dict[str, Any]:
    connection, network, external, cluster = local_ids(world.org.id)
    return {"connection": connection, "network": network, "cluster": external, "workload": cluster}


def new_connection(world: World) -> dict[str, Any]:
    created = world.owner.post(
        "/infra/connections", json={"name": world.unique("c"), "provider": "local"}
    )
    return {"connection": created.json()["id"]}


def pending_network(world: World) -> dict[str, Any]:
    values = builtin(world)
    created = world.owner.post(
        f"/infra/connections/{values['connection']}/networks", json={"name": world.unique("n")}
    )
    return {**values, "network": created.json()["id"]}


def active_network(world: World) -> dict[str, Any]:
    values = pending_network(world)
    operation = world.owner.post(
        f"/infra/connections/{values['connection']}/networks/{values['network']}/provision"
    ).json()
    _finish(world, operation["id"])
    return {**values, "operationId": operation["id"]}


def pending_cluster(world: World) -> dict[str, Any]:
    values = builtin(world)
    created = world.owner.post(
        f"/infra/connections/{values['connection']}/clusters",
        json={"networkId": values["network"], "name": world.unique("k")},
    )
    return {**values, "cluster": created.json()["id"]}


def active_cluster(world: World) -> dict[str, Any]:
    values = pending_cluster(world)
    operation = world.owner.post(
        f"/infra/connections/{values['connection']}/clusters/{values['cluster']}/provision"
    ).json()
    _finish(world, operation["id"])
    return values


def team(world: World) -> dict[str, Any]:
    created = world.owner.post("/org/teams", json={"name": world.unique("team")})
    return {"team": created.json()["team"]["id"]}


def compute_config(world: World) -> dict[str, Any]:
    values = {**team(world), **builtin(world)}
    created = world.owner.post(
        "/workloads/compute-configs",
        json={
            "name": world.unique("cc"),
            "clusterId": values["workload"],
            "teamId": values["team"],
        },
    )
    return {**values, "workloadConfig": created.json()["id"]}


def session(world: World) -> dict[str, Any]:
    created = world.owner.post("/workloads/sessions", json={"name": world.unique("s")})
    return {"session": created.json()["id"]}


def closed_session(world: World) -> dict[str, Any]:
    values = session(world)
    world.owner.delete(f"/workloads/sessions/{values['session']}")
    return values


CONNECTION = "/infra/connections/{connection}"
NETWORK = CONNECTION + "/networks/{network}"
CLUSTER = CONNECTION + "/clusters/{cluster}"

CASES: list[Case] = [
    # connections
    Case("GET", "/infra/connections", VIEW, 200, foreign_404=False),
    Case("POST", "/infra/connections", MANAGE, 201, body={"name": "c", "provider": "local"}),
    Case("GET", CONNECTION, VIEW, 200, setup=builtin),
    Case("PATCH", CONNECTION, MANAGE, 200, setup=builtin, body={"name": "renamed"}),
    Case("DELETE", CONNECTION, MANAGE, 204, setup=new_connection),
    Case("POST", CONNECTION + "/verify", MANAGE, 200, setup=builtin, body={}),
    Case("GET", CONNECTION + "/regions", VIEW, 200, setup=builtin),
    Case("GET", CONNECTION + "/instance-types", VIEW, 200, setup=builtin),
    Case("GET", CONNECTION + "/provider-networks", VIEW, 200, setup=builtin),
    # A local connection has no template: the Owner gets 409 (the aws adapter serves one).
    Case("GET", CONNECTION + "/template", MANAGE, 409, setup=builtin),
    Case("GET", CONNECTION + "/template/download", MANAGE, 409, setup=builtin),
    Case("POST", CONNECTION + "/sync-template", MANAGE, 409, setup=builtin),
    # networks
    Case("GET", "/infra/networks", VIEW, 200, foreign_404=False),
    Case("DELETE", "/infra/networks/{network}", MANAGE, 204, setup=pending_network),
    Case("GET", CONNECTION + "/networks", VIEW, 200, setup=builtin),
    Case("POST", CONNECTION + "/networks", MANAGE, 201, setup=builtin, body={"name": "n"}),
    Case("GET", NETWORK, VIEW, 200, setup=builtin),
    Case("PATCH", NETWORK, MANAGE, 200, setup=pending_network, body={"name": "renamed"}),
    Case("DELETE", NETWORK, MANAGE, 202, setup=active_network),
    Case("POST", NETWORK + "/provision", MANAGE, 202, setup=pending_network),
    # clusters
    Case("GET", "/infra/clusters", VIEW, 200, foreign_404=False),
    Case("GET", "/infra/clusters/{cluster}", VIEW, 200, setup=builtin),
    Case("DELETE", "/infra/clusters/{cluster}", MANAGE, 204, setup=pending_cluster),
    Case("GET", CONNECTION + "/clusters", VIEW, 200, setup=builtin),
    Case(
        "POST",
        CONNECTION + "/clusters",
        MANAGE,
        201,
        setup=builtin,
        body=lambda _, values: {"networkId": values["network"], "name": "k"},
    ),
    Case("GET", CLUSTER, VIEW, 200, setup=builtin),
    Case("POST", CLUSTER, MANAGE, 202, setup=pending_cluster, body={"name": "renamed"}),
    Case("DELETE", CLUSTER, MANAGE, 202, setup=active_cluster),
    Case("POST", CLUSTER + "/provision", MANAGE, 202, setup=pending_cluster),
    Case("GET", CLUSTER + "/health", VIEW, 200, setup=builtin),
    Case("GET", CLUSTER + "/kubeconfig", MANAGE, 409, setup=builtin),
    Case("GET", CLUSTER + "/metrics", VIEW, 200, setup=builtin),
    Case("GET", "/me/clusters", VIEW, 200, foreign_404=False),
    Case(
        "GET",
        "/me/clusters/{workload}",
        VIEW,
        200,
        setup=builtin,
    ),
    # operations
    Case("GET", "/operations/{operationId}", VIEW, 200, setup=active_network),
    # sessions
    Case("GET", "/workloads/sessions", "CanManageSessions", 200, foreign_404=False),
    Case("POST", "/workloads/sessions", "CanManageSessions", 201, body={"name": "s"}),
    Case("GET", "/workloads/sessions/{session}", "CanManageSessions", 200, setup=session),
    Case("DELETE", "/workloads/sessions/{session}", "CanManageSessions", 204, setup=session),
    Case(
        "POST",
        "/workloads/sessions/{session}/token",
        "CanManageSessions",
        201,
        setup=session,
        body={},
    ),
    Case(
        "POST",
        "/workloads/sessions/{session}/relaunch",
        "CanManageSessions",
        201,
        setup=closed_session,
    ),
    # compute configs
    Case("GET", "/workloads/compute-configs", "CanUseClusters", 200, foreign_404=False),
    Case(
        "POST",
        "/workloads/compute-configs",
        "CanUseClusters",
        201,
        setup=lambda world: {**team(world), **builtin(world)},
        body=lambda _, values: {
            "name": "cc",
            "clusterId": values["workload"],
            "teamId": values["team"],
        },
    ),
    Case(
        "GET",
        "/workloads/compute-configs/{workloadConfig}",
        "CanUseClusters",
        200,
        setup=compute_config,
    ),
]
