"""Fixtures of the jobs tests: a usable cluster of the test's organization, a team, a job."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sailplane.domain.ids import new_id
from sailplane.system import System
from tests.conftest import Org


class _ClustersDouble:
    """TEMPORARY, until the infrastructure context lands: clusters the tests declare."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, organization_id: str, status: str = "active") -> str:
        cluster_id = new_id()
        self.rows[(organization_id, cluster_id)] = {
            "id": cluster_id,
            "name": f"c-{cluster_id}",
            "provider": "local",
            "external_status": status,
        }
        return cluster_id

    def cluster(self, organization_id: str, cluster_id: str) -> dict[str, Any] | None:
        return self.rows.get((organization_id, cluster_id))

    def usable_cluster(self, organization_id: str, cluster_id: str) -> dict[str, Any] | None:
        row = self.cluster(organization_id, cluster_id)
        return row if row and row["external_status"] == "active" else None


@pytest.fixture(scope="session")
def clusters(system: System) -> Iterator[_ClustersDouble]:
    double = _ClustersDouble()
    saved = system.workloads.clusters
    system.workloads.clusters = double
    yield double
    system.workloads.clusters = saved


@pytest.fixture
def cluster(clusters: _ClustersDouble, org: Org) -> str:
    """The id of a usable (active) cluster of the test's organization."""
    return clusters.add(org.id)


@pytest.fixture
def inactive_cluster(clusters: _ClustersDouble, org: Org) -> str:
    return clusters.add(org.id, status="pending")


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
