"""The `kubernetes` provider against the HTTP double of the API server, through the official
client built from the connection's kubeconfig."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import yaml

from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.infra_adapters.kubernetes_cluster import KubernetesProvider, namespace_name
from sailplane.infra_adapters.provider_types import (
    ClusterMetrics,
    ClusterSpec,
    InstanceTypeFilter,
    NetworkSpec,
    ProviderUnavailableError,
)
from tests.k8s_double import KubernetesDouble, kubernetes_double

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CLUSTER = ClusterSpec(cluster_id="CLUS000001", name="existing", region="default")


@pytest.fixture
def double() -> Iterator[KubernetesDouble]:
    with kubernetes_double() as served:
        yield served


def _provider(double: KubernetesDouble, **kwargs) -> KubernetesProvider:
    return KubernetesProvider(
        connection_id="CONN000001", kubeconfig=double.kubeconfig(), clock=lambda: NOW, **kwargs
    )


def _node(double: KubernetesDouble, name: str, *, ready: bool = True, **labels: str) -> None:
    double.add_node(name, ready=ready, cpu="4", memory="16Gi")
    node = double.nodes[-1]
    node["metadata"]["labels"].update(labels)
    node["status"]["capacity"]["pods"] = "110"
    node["status"]["allocatable"]["cpu"] = "3920m"


def test_verify_reports_the_version_and_ready_nodes(double: KubernetesDouble) -> None:
    _node(double, "n1")
    _node(double, "n2", ready=False)
    check = _provider(double).verify()
    assert check.provider == "kubernetes"
    assert check.message == "Kubernetes v1.31.0; 1 of 2 nodes ready."
    assert double.calls("GET", "^/version$") and double.calls("GET", "^/api/v1/nodes$")


def test_a_yaml_kubeconfig_text_works_like_a_dict(double: KubernetesDouble) -> None:
    provider = KubernetesProvider(
        connection_id="CONN000001", kubeconfig=yaml.safe_dump(double.kubeconfig())
    )
    assert provider.verify().provider == "kubernetes"


def test_wrong_credentials_are_refused_as_invalid(double: KubernetesDouble) -> None:
    config = double.kubeconfig()
    config["users"][0]["user"]["token"] = "not-the-token"
    with pytest.raises(InvalidValueError) as raised:
        KubernetesProvider(connection_id="C", kubeconfig=config).verify()
    assert raised.value.code == "provider_refused" and "401" in raised.value.message


def test_an_unreachable_server_is_unavailable_not_invalid() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with kubernetes_double() as double:
        config = double.kubeconfig()
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{port}"
    provider = KubernetesProvider(connection_id="C", kubeconfig=config)
    with pytest.raises(ProviderUnavailableError):
        provider.verify()
    health = provider.health(CLUSTER)
    assert health.status == "unhealthy" and "did not answer" in health.message


@pytest.mark.parametrize(
    ("mangle", "says"),
    [
        (lambda c: "clusters: [unclosed", "not valid YAML (line 1"),
        (lambda c: "- just\n- a list\n", "must be a mapping"),
        (lambda c: {**c, "clusters": []}, "`clusters` must be a non-empty list"),
        (lambda c: {**c, "current-context": "elsewhere"}, "context 'elsewhere' is not among"),
        (lambda c: {k: v for k, v in c.items() if k != "current-context"}, "no `current-context`"),
        (
            lambda c: {**c, "clusters": [{"name": "double", "cluster": {"server": "localhost"}}]},
            "is not an http(s) URL",
        ),
        (
            lambda c: {
                **c,
                "users": [{"name": "double", "user": {"exec": {"command": "/bin/sh"}}}],
            },
            "`exec` runs a program",
        ),
        (
            lambda c: {
                **c,
                "users": [{"name": "double", "user": {"tokenFile": "/etc/shadow"}}],
            },
            "`tokenFile` reads a file",
        ),
        (
            lambda c: {
                **c,
                "contexts": [{"name": "double", "context": {"cluster": "nope", "user": "double"}}],
            },
            "names no cluster",
        ),
    ],
)
def test_a_malformed_kubeconfig_is_a_clear_422(double: KubernetesDouble, mangle, says: str) -> None:
    with pytest.raises(InvalidValueError) as raised:
        KubernetesProvider(connection_id="C", kubeconfig=mangle(double.kubeconfig()))
    assert raised.value.field == "providerConfig.kubeconfig"
    assert raised.value.code == "invalid_kubeconfig"
    assert raised.value.message.startswith("The kubeconfig is not usable: ")
    assert says in raised.value.message
    assert double.requests == []  # nothing was sent with a bad kubeconfig


def test_there_is_no_template_for_an_existing_cluster(double: KubernetesDouble) -> None:
    provider = _provider(double)
    with pytest.raises(ConflictError) as raised:
        provider.connection_template()
    assert raised.value.code == "unsupported_by_provider"
    with pytest.raises(ConflictError):
        provider.sync_template(operation_id="OP1")


def test_regions_and_instance_types_describe_the_nodes(double: KubernetesDouble) -> None:
    provider = _provider(double)
    assert [r.region_code for r in provider.regions()] == ["default"]

    region = "topology.kubernetes.io/region"
    kind = "node.kubernetes.io/instance-type"
    _node(double, "a", **{region: "eu-west-1", kind: "m7g.xlarge", "kubernetes.io/arch": "arm64"})
    _node(double, "b", **{region: "eu-west-1", kind: "m7g.xlarge", "kubernetes.io/arch": "arm64"})
    _node(double, "c", **{region: "eu-west-2"})
    assert [r.region_code for r in provider.regions()] == ["eu-west-1", "eu-west-2"]

    shapes = {i.instance_type: i for i in provider.instance_types().items}
    assert set(shapes) == {"m7g.xlarge", "custom-4vcpu-16gib"}
    m7g = shapes["m7g.xlarge"]
    assert (m7g.v_cpus, m7g.memory_mib, m7g.architecture, m7g.max_pods) == (4, 16384, "arm64", 110)
    assert (m7g.allocatable_milli_cpu, m7g.instance_family) == (3920, "m7g")
    assert [
        i.instance_type
        for i in provider.instance_types(InstanceTypeFilter(architecture="x86_64")).items
    ] == ["custom-4vcpu-16gib"]
    assert [
        i.instance_type
        for i in provider.instance_types(InstanceTypeFilter(region="eu-west-1")).items
    ] == ["m7g.xlarge"]
    assert provider.instance_types(InstanceTypeFilter(min_v_cpus=8)).items == ()
    assert provider.provider_networks() == ()


def test_a_cluster_is_a_namespace_from_provision_to_destroy(double: KubernetesDouble) -> None:
    provider = _provider(double)
    network = NetworkSpec(network_id="NET0000001", name="n", region="default")
    assert provider.provision_network(network, operation_id="OP1").state == "succeeded"

    waiting = provider.provision_cluster(CLUSTER, operation_id="OP1")
    assert waiting.state == "running" and waiting.stage == "nodes"  # no ready node yet
    _node(double, "n1")
    first = provider.provision_cluster(CLUSTER, operation_id="OP1")
    again = provider.provision_cluster(CLUSTER, operation_id="OP1")
    assert first.state == again.state == "succeeded"
    assert first.outputs == {
        "namespace": "sailplane-clus000001",
        "clusterEndpoint": double.url,
        "clusterCertificateAuthority": "",
        "serverVersion": "v1.31.0",
    }
    namespaces = [k for k in double.objects if k[0] == "namespaces"]
    assert namespaces == [("namespaces", "", "sailplane-clus000001")]  # one, after three calls
    labels = double.get("namespaces", "", namespace_name(CLUSTER.cluster_id))["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "sailplane"

    kubeconfig = yaml.safe_load(provider.kubeconfig(CLUSTER).kubeconfig)
    assert kubeconfig["contexts"][0]["context"]["namespace"] == "sailplane-clus000001"
    assert provider.kubeconfig(CLUSTER).cluster_endpoint == double.url
    # The connection's own kubeconfig is left as it was.
    assert "namespace" not in provider.document["contexts"][0]["context"] or (
        provider.document["contexts"][0]["context"]["namespace"] == "default"
    )

    assert provider.destroy_cluster(CLUSTER, operation_id="OP2").state == "succeeded"
    assert provider.destroy_cluster(CLUSTER, operation_id="OP2").state == "succeeded"
    assert not [k for k in double.objects if k[0] == "namespaces"]
    assert provider.destroy_network(network, operation_id="OP2").state == "succeeded"


def test_health_counts_ready_nodes_and_system_pods(double: KubernetesDouble) -> None:
    provider = _provider(double)
    _node(double, "a", **{"eks.amazonaws.com/nodegroup": "system"})
    _node(double, "b", **{"eks.amazonaws.com/nodegroup": "system"})
    double.add_pod("kube-system", "coredns-1")
    healthy = provider.health(CLUSTER)
    assert (healthy.status, healthy.total_nodes, healthy.ready_nodes) == ("healthy", 2, 2)
    assert healthy.node_groups[0].name == "system"
    assert healthy.system_pods[0].name == "coredns-1" and healthy.system_pods[0].ready

    double.add_pod("kube-system", "kube-proxy-x", ready=False, phase="Pending", restarts=4)
    degraded = provider.health(CLUSTER)
    assert degraded.status == "degraded"
    assert [(p.name, p.ready, p.restart_count) for p in degraded.system_pods] == [
        ("coredns-1", True, 0),
        ("kube-proxy-x", False, 4),
    ]
    encoded = msgspec.json.decode(msgspec.json.encode(degraded))
    assert {"totalNodes", "readyNodes", "nodeGroups", "systemPods"} <= set(encoded)

    for node in double.nodes:
        node["status"]["conditions"][0]["status"] = "False"
    assert provider.health(CLUSTER).status == "unhealthy"


def test_metrics_come_from_metrics_server_when_it_runs(double: KubernetesDouble) -> None:
    provider = _provider(double)
    _node(double, "a")
    _node(double, "b")
    window = {"start": NOW - timedelta(hours=24), "end": NOW, "period_seconds": 1440}
    assert provider.metrics(CLUSTER, **window).cpu_utilization == ()  # no metrics-server
    double.set_node_usage("a", cpu="1960m", memory="4Gi")
    double.set_node_usage("b", cpu="0", memory="4Gi")
    metrics = provider.metrics(CLUSTER, **window)
    assert [(p.timestamp, p.value) for p in metrics.cpu_utilization] == [(NOW, 25.0)]
    assert [p.value for p in metrics.memory_utilization] == [25.0]
    past = {"start": NOW - timedelta(days=9), "end": NOW - timedelta(days=8), "period_seconds": 60}
    assert provider.metrics(CLUSTER, **past) == ClusterMetrics()  # now is not in that window
