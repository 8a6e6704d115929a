"""Fixtures of the jobs tests: clusters of the test's organization (the built-in active
`local` one, or new ones through the infrastructure API), a team, a job."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from sailplane.commands.infra import local_ids
from sailplane.system import System
from tests.conftest import Org, local_cluster_id


@pytest.fixture
def cluster(system: System, org: Org) -> str:
    """The id of the organization's built-in `local` cluster, active from the start."""
    return local_cluster_id(system, org.id)


def _new_cluster(client: httpx.Client, org: Org) -> dict[str, Any]:
    """A new provisioned cluster record on the local connection (pending until provisioned)."""
    connection, network, _, _ = local_ids(org.id)
    created = client.post(
        f"/infra/connections/{connection}/clusters",
        json={"networkId": network, "name": unique("cluster")},
    )
    assert created.status_code == 201, created.text
    return created.json()


def pending_cluster(client: httpx.Client, org: Org) -> str:
    """The workload cluster of a new, unprovisioned cluster: it exists but is not usable."""
    return _new_cluster(client, org)["clusterId"]


def active_cluster(client: httpx.Client, org: Org) -> str:
    """A second active cluster, created and provisioned (needs the `provisioner` fixture)."""
    external = _new_cluster(client, org)
    connection = external["connectionId"]
    operation = client.post(
        f"/infra/connections/{connection}/clusters/{external['id']}/provision"
    ).json()
    deadline = time.monotonic() + 60
    while client.get(f"/operations/{operation['id']}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the cluster was not provisioned"
        time.sleep(0.05)
    return external["clusterId"]


@pytest.fixture
def inactive_cluster(client: httpx.Client, org: Org) -> str:
    return pending_cluster(client, org)


def unique(prefix: str = "job") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_team(client: httpx.Client) -> str:
    response = client.post("/org/teams", json={"name": unique("team")})
    assert response.status_code == 201, response.text
    return response.json()["team"]["id"]


@pytest.fixture
def team(client: httpx.Client) -> str:
    return new_team(client)


def create_job(client: httpx.Client, cluster: str, team: str, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/workloads/jobs",
        json={"jobKey": unique(), "clusterId": cluster, "teamIds": [team], **body},
    )
    assert response.status_code == 201, response.text
    return response.json()
