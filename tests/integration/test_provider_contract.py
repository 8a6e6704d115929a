"""The provider port's contract, checked against each adapter (`local` here; the `aws` and
`kubernetes` adapters add their case to `ADAPTER_CASES`).

A case yields an adapter, a connection and the specs of a network and a cluster it may
create. Steps must be idempotent (a second call converges on the same resource), destroys
must accept what is already gone, progress reports must be well formed, and the read calls
must answer the documented item shapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sailplane.commands.ports import (
    ClusterSpec,
    ConnectionSpec,
    InstanceTypeQuery,
    NetworkSpec,
    Provider,
    Unsupported,
)
from sailplane.infra_adapters.cloud_providers import KubernetesAdapter
from sailplane.infra_adapters.providers.local import LocalProvider, SailServers
from tests.k8s_double import kubernetes_double

Case = tuple[Provider, ConnectionSpec, NetworkSpec, ClusterSpec]


def _specs(
    provider: str, region: str, config: dict[str, Any], secrets: dict[str, str]
) -> tuple[ConnectionSpec, NetworkSpec, ClusterSpec]:
    connection = ConnectionSpec(
        id="CONN000001",
        organization_id="ORG0000001",
        provider=provider,
        config=config,
        secrets=secrets,
    )
    network = NetworkSpec(
        id="NET0000001",
        organization_id="ORG0000001",
        connection_id=connection.id,
        name="n",
        region=region,
        config={},
        provider_network_id=None,
        outputs={},
    )
    cluster = ClusterSpec(
        id="EXT0000001",
        organization_id="ORG0000001",
        connection_id=connection.id,
        network_id=network.id,
        cluster_id="CLU0000001",
        name="k",
        region=region,
        config={},
        outputs={},
        network_outputs={},
    )
    return connection, network, cluster


@contextlib.contextmanager
def local_case(tmp_path: Path) -> Iterator[Case]:
    adapter = LocalProvider(SailServers(tmp_path / "sail"))
    try:
        yield adapter, *_specs("local", "local", {}, {})
    finally:
        adapter.close()


@contextlib.contextmanager
def kubernetes_case(tmp_path: Path) -> Iterator[Case]:
    """An existing cluster (the HTTP double of the Kubernetes API) through a kubeconfig."""
    adapter = KubernetesAdapter(poll_seconds=0.01, timeout_seconds=30)
    with kubernetes_double() as double:
        double.add_node("node-1")
        config, secrets = adapter.check_config(
            {"kubeconfig": yaml.safe_dump(double.kubeconfig())}, connection_id="CONN000001"
        )
        try:
            yield adapter, *_specs("kubernetes", "default", config, secrets)
        finally:
            adapter.close()


ADAPTER_CASES: dict[str, Callable[[Path], contextlib.AbstractContextManager[Case]]] = {
    "local": local_case,
    "kubernetes": kubernetes_case,
}

RESOURCE_KEYS = {"urn", "type", "name", "operation", "status"}


@pytest.fixture(params=sorted(ADAPTER_CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    with ADAPTER_CASES[request.param](tmp_path) as values:
        yield values


def _recorder() -> tuple[list[tuple[str, str, list[dict[str, Any]]]], Any]:
    reports: list[tuple[str, str, list[dict[str, Any]]]] = []
    return reports, lambda stage, message, resources: reports.append((stage, message, resources))


def test_network_steps_are_idempotent(case: Case) -> None:
    adapter, connection, network, _ = case
    reports, progress = _recorder()
    first = adapter.provision_network(connection, network, token="OP1", progress=progress)
    again = adapter.provision_network(connection, network, token="OP1", progress=progress)
    assert first == again
    adapter.destroy_network(connection, network, token="OP2", progress=progress)
    adapter.destroy_network(connection, network, token="OP2", progress=progress)  # already gone
    assert reports and all(
        isinstance(stage, str)
        and isinstance(message, str)
        and all(set(r) >= RESOURCE_KEYS for r in resources)
        for stage, message, resources in reports
    )


def test_cluster_steps_converge_on_one_resource(case: Case) -> None:
    adapter, connection, _, cluster = case
    reports, progress = _recorder()
    first = adapter.provision_cluster(connection, cluster, token="OP1", progress=progress)
    again = adapter.provision_cluster(connection, cluster, token="OP1", progress=progress)
    assert first == again  # the same resource, not a second one
    assert adapter.health(connection, cluster).status == "healthy"
    # A provider that deploys no Sail says so (409 Unsupported), never half-answers.
    with contextlib.suppress(Unsupported):
        assert adapter.spark_endpoint(connection, cluster).startswith("sc://")
    adapter.destroy_cluster(connection, cluster, token="OP2", progress=progress)
    adapter.destroy_cluster(connection, cluster, token="OP2", progress=progress)
    assert all(set(r) >= RESOURCE_KEYS for _, _, resources in reports for r in resources)


def test_read_calls_answer_the_documented_shapes(case: Case) -> None:
    adapter, connection, _, _ = case
    assert isinstance(adapter, Provider)
    regions = adapter.regions(connection)
    assert regions and all(
        {"provider", "regionCode", "regionName", "group"} <= set(r) for r in regions
    )
    types = adapter.instance_types(connection, InstanceTypeQuery())
    keys = {"provider", "instanceType", "vCpus", "memoryMiB", "architecture", "gpuCount"}
    assert types and all(keys <= set(t) for t in types)
    most = max(t["vCpus"] for t in types)
    assert adapter.instance_types(connection, InstanceTypeQuery(min_vcpus=most + 1)) == []
    assert isinstance(adapter.provider_networks(connection, region=None), list)
    assert adapter.verify(connection, role_arn=None).ok
