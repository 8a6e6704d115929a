"""The `aws` and `kubernetes` adapters as the provider port calls them: connection, network
and cluster snapshots in, steps driven to their end with progress, camelCase dicts out.

The snapshots here carry the same attributes as the port's ConnectionSpec, NetworkSpec and
ClusterSpec (the adapters read nothing else)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import yaml

from sailplane.commands.ports import InstanceTypeQuery, ProviderError
from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.infra_adapters.aws import network_stack_name
from sailplane.infra_adapters.cloud_providers import (
    AwsAdapter,
    KubernetesAdapter,
    drive,
    external_id_of,
)
from sailplane.infra_adapters.provider_types import ProviderUnavailableError, StepStatus
from sailplane.settings import Settings
from sailplane.system import System
from tests.k8s_double import KubernetesDouble, kubernetes_double

pytestmark = pytest.mark.timeout(120)

CUSTOMER = {"aws_access_key_id": "AKIACUSTOMER00000000", "aws_secret_access_key": "customer"}
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Connection:
    id: str
    provider: str
    config: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)
    organization_id: str = "ORG0000001"


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    region: str
    config: dict[str, Any]
    connection_id: str = ""
    organization_id: str = "ORG0000001"
    provider_network_id: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str
    region: str
    config: dict[str, Any]
    network_outputs: dict[str, Any]
    organization_id: str = "ORG0000001"
    connection_id: str = ""
    network_id: str = ""
    cluster_id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)


class Recorder:
    def __init__(self) -> None:
        self.reports: list[tuple[str, str, list[dict[str, Any]]]] = []

    def __call__(self, stage: str, message: str, resources: list[dict[str, Any]]) -> None:
        self.reports.append((stage, message, resources))


def _id() -> str:
    return uuid.uuid4().hex[:10].upper()


# --------------------------------------------------------------------------- the driver


def test_drive_polls_until_done_and_reports_each_change() -> None:
    answers = iter(
        [
            StepStatus(state="running", stage="a", message="creating"),
            StepStatus(state="running", stage="a", message="creating"),
            StepStatus(state="succeeded", stage="b", message="done", outputs={"x": "1"}),
        ]
    )
    waits: list[float] = []
    seen = Recorder()
    outputs = drive(
        lambda: next(answers), seen, poll_seconds=3, timeout_seconds=60, sleep=waits.append
    )
    assert outputs == {"x": "1"}
    assert [(s, m) for s, m, _ in seen.reports] == [("a", "creating"), ("b", "done")]
    assert waits == [3, 3]


def test_drive_raises_a_failed_step_with_its_message() -> None:
    failed = StepStatus(state="failed", stage="stack", message="Stack is ROLLBACK_COMPLETE: x")
    with pytest.raises(ProviderError) as raised:
        drive(lambda: failed, Recorder(), poll_seconds=0, timeout_seconds=60, sleep=lambda s: None)
    assert raised.value.message == failed.message and raised.value.retryable


def test_drive_gives_up_after_its_timeout_and_repeated_outages() -> None:
    ticks = iter(range(0, 1000, 10))
    running = StepStatus(state="running", stage="eks", message="CREATING.")
    with pytest.raises(ProviderError) as timed_out:
        drive(
            lambda: running,
            Recorder(),
            poll_seconds=0,
            timeout_seconds=30,
            sleep=lambda s: None,
            monotonic=lambda: next(ticks),
        )
    assert timed_out.value.code == "provider_step_timeout"

    def outage() -> StepStatus:
        raise ProviderUnavailableError("AWS did not answer: Throttling")

    with pytest.raises(ProviderError) as unreachable:
        drive(outage, Recorder(), poll_seconds=0, timeout_seconds=60, sleep=lambda s: None)
    assert "Throttling" in unreachable.value.message


# --------------------------------------------------------------------------- aws


@pytest.fixture
def aws(moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsAdapter]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASAILPLANEHOST000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sailplane-host-secret")
    adapter = AwsAdapter(endpoint_url=moto, poll_seconds=0, timeout_seconds=60, clock=lambda: NOW)
    yield adapter
    adapter.close()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "providerConfig.region"),
        ({"region": "mars-1"}, "providerConfig.region"),
        ({"region": "us-east-1", "externalId": "mine"}, "providerConfig.externalId"),
        ({"region": "us-east-1", "roleArn": "LakeSail"}, "providerConfig.roleArn"),
        ({"region": "us-east-1", "accountId": "12"}, "providerConfig.accountId"),
    ],
)
def test_aws_settings_are_checked(aws: AwsAdapter, config: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidValueError) as raised:
        aws.check_config(config, connection_id="C1")
    assert raised.value.field == field


def test_an_aws_connection_from_template_to_destroyed_cluster(moto: str, aws: AwsAdapter) -> None:
    plain, secrets = aws.check_config({"region": "us-east-1"}, connection_id="X")
    assert (plain, secrets, aws.initial_status()) == ({"region": "us-east-1"}, {}, "pending")
    connection = Connection(id=_id(), provider="aws", config=plain)

    template = aws.template(
        connection, download_url="/api/v1/infra/connections/X/template/download"
    )
    document = yaml.safe_load(template.body)
    assert document["Parameters"]["ExternalId"]["Default"] == external_id_of(connection.id)
    assert template.parameters["ExternalId"] == external_id_of(connection.id)
    assert template.template_url.endswith("/template/download")

    cloudformation = boto3.client(
        "cloudformation", region_name="us-east-1", endpoint_url=moto, **CUSTOMER
    )
    stack = cloudformation.create_stack(
        StackName=f"sailplane-connection-{connection.id.lower()}",
        TemplateBody=template.body,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )["StackId"]
    outputs = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    role = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "RoleArn")
    verified = aws.verify(connection, role_arn=role)
    assert verified.ok, verified.message
    assert verified.provider_config == {"roleArn": role, "accountId": "123456789012"}
    connection = Connection(
        id=connection.id,
        provider="aws",
        config={**plain, **verified.provider_config, "stackArn": stack},
    )

    regions = aws.regions(connection)
    assert {"provider", "regionCode", "regionName", "group"} == set(regions[0])
    arm = aws.instance_types(
        connection, InstanceTypeQuery(region="us-east-1", architecture="arm64", min_vcpus=64)
    )
    assert arm and all(t["architecture"] == "arm64" and t["vCpus"] >= 64 for t in arm)
    networks = aws.provider_networks(connection, region=None)  # moto's default VPC at least
    assert networks and all({"vpcId", "cidr", "azCount", "subnets"} <= set(n) for n in networks)

    network = Network(id=_id(), name="prod", region="us-east-1", config={"cidr": "10.20.0.0/16"})
    progress = Recorder()
    net_outputs = aws.provision_network(connection, network, token="OPNET00001", progress=progress)
    assert net_outputs["providerNetworkId"] == net_outputs["VpcId"]
    assert progress.reports and progress.reports[-1][0] == "network-stack"
    assert any(r["type"] == "AWS::EC2::VPC" for r in progress.reports[-1][2])
    # A redelivered provision message: the same outputs, still one stack.
    again = aws.provision_network(connection, network, token="OPNET00001", progress=Recorder())
    assert again["VpcId"] == net_outputs["VpcId"]
    names = [s["StackName"] for s in cloudformation.list_stacks()["StackSummaries"]]
    assert names.count(network_stack_name(network.id)) == 1

    cluster = Cluster(
        id=_id(),
        name="Production Cluster",
        region="us-east-1",
        config={
            "kubernetesVersion": "1.31",
            "systemNodeGroup": {
                "name": "system",
                "instanceTypes": [["m7g.large", "m7g.xlarge"]],
                "minSize": 1,
                "maxSize": 3,
                "desiredSize": 2,
                "diskSizeGb": 100,
            },
        },
        network_outputs=net_outputs,
    )
    stages = Recorder()
    cluster_outputs = aws.provision_cluster(
        connection, cluster, token="OPCLU00001", progress=stages
    )
    assert cluster_outputs["providerMetadata"]["clusterName"] == f"sailplane-{cluster.id.lower()}"
    assert [s for s, _, _ in stages.reports][-1] == "node-group"
    kubeconfig = yaml.safe_load(aws.kubeconfig(connection, cluster))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == cluster_outputs["clusterEndpoint"]
    health = aws.health(connection, cluster)
    assert health.status == "healthy"
    assert {"check": "nodes", "totalNodes": 2, "readyNodes": 2} in health.checks
    metrics = aws.metrics(
        connection, cluster, start=NOW - timedelta(hours=1), end=NOW, period_seconds=60
    )
    assert set(metrics) == {
        "cpuUtilization",
        "memoryUtilization",
        "estimatedCost",
        "activeJobCount",
    }

    assert aws.sync_template(connection, token="OPSYNC0001", progress=Recorder())["RoleArn"] == role
    with pytest.raises(ConflictError):
        aws.spark_endpoint(connection, cluster)

    aws.destroy_cluster(connection, cluster, token="OPDEL00001", progress=Recorder())
    aws.destroy_network(connection, network, token="OPDEL00002", progress=Recorder())
    ours = (cluster.id.lower(), network.id.lower())
    live = [
        s["StackName"]
        for s in cloudformation.list_stacks()["StackSummaries"]
        if s["StackStatus"] != "DELETE_COMPLETE" and any(i in s["StackName"] for i in ours)
    ]
    assert live == []


def test_a_refused_role_is_a_failed_verification_not_an_error(aws: AwsAdapter) -> None:
    connection = Connection(id=_id(), provider="aws", config={"region": "us-east-1"})
    with pytest.raises(InvalidValueError):
        aws.verify(connection, role_arn="not-an-arn")
    broken = AwsAdapter(endpoint_url="http://127.0.0.1:9", poll_seconds=0, timeout_seconds=1)
    result = broken.verify(connection, role_arn="arn:aws:iam::123456789012:role/sailplane-x")
    assert not result.ok and "could not assume" in result.message


# --------------------------------------------------------------------------- kubernetes


@pytest.fixture
def double() -> Iterator[KubernetesDouble]:
    with kubernetes_double() as served:
        yield served


def _kubernetes(adapter: KubernetesAdapter, double: KubernetesDouble) -> Connection:
    plain, secrets = adapter.check_config(
        {"kubeconfig": yaml.safe_dump(double.kubeconfig())}, connection_id="K"
    )
    return Connection(id=_id(), provider="kubernetes", config=plain, secrets=secrets)


def test_a_kubeconfig_is_checked_and_kept_as_a_secret(double: KubernetesDouble) -> None:
    adapter = KubernetesAdapter(poll_seconds=0)
    connection = _kubernetes(adapter, double)
    assert connection.config == {"context": "double", "server": double.url}
    assert double.token in connection.secrets["kubeconfig"]
    assert double.token not in str(connection.config)
    with pytest.raises(InvalidValueError) as raised:
        adapter.check_config({"kubeconfig": "clusters: [oops"}, connection_id="K")
    assert raised.value.code == "invalid_kubeconfig" and "not valid YAML" in raised.value.message
    with pytest.raises(InvalidValueError):
        adapter.check_config({}, connection_id="K")
    with pytest.raises(InvalidValueError):
        adapter.check_config(
            {"kubeconfig": double.kubeconfig(), "context": "other"}, connection_id="K"
        )


def test_a_kubernetes_connection_from_verify_to_destroyed_cluster(
    double: KubernetesDouble,
) -> None:
    adapter = KubernetesAdapter(poll_seconds=0, clock=lambda: NOW)
    connection = _kubernetes(adapter, double)
    double.add_node("n1")
    verified = adapter.verify(connection, role_arn=None)
    assert verified.ok and verified.message == "Kubernetes v1.31.0; 1 of 1 nodes ready."
    assert adapter.regions(connection)[0]["regionCode"] == "default"
    assert adapter.provider_networks(connection, region=None) == []
    with pytest.raises(ConflictError) as unsupported:
        adapter.template(connection, download_url="")
    assert unsupported.value.code == "unsupported_by_provider"

    cluster = Cluster(id=_id(), name="c", region="default", config={}, network_outputs={})
    outputs = adapter.provision_cluster(connection, cluster, token="OP1", progress=Recorder())
    assert outputs["providerMetadata"] == {"namespace": f"sailplane-{cluster.id.lower()}"}
    assert adapter.health(connection, cluster).status == "healthy"
    text = adapter.kubeconfig(connection, cluster)
    assert yaml.safe_load(text)["contexts"][0]["context"]["namespace"] == outputs["namespace"]
    adapter.destroy_cluster(connection, cluster, token="OP2", progress=Recorder())
    assert double.get("namespaces", "", outputs["namespace"]) is None


def test_an_unreachable_cluster_fails_verification(double: KubernetesDouble) -> None:
    adapter = KubernetesAdapter(poll_seconds=0)
    config = double.kubeconfig()
    config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"
    plain, secrets = adapter.check_config({"kubeconfig": config}, connection_id="K")
    connection = Connection(id=_id(), provider="kubernetes", config=plain, secrets=secrets)
    result = adapter.verify(connection, role_arn=None)
    assert not result.ok and "did not answer" in result.message


# --------------------------------------------------------------------------- wiring


def test_the_system_builds_both_adapters_from_the_settings(fresh_db: Any, tmp_path: Any) -> None:
    settings = Settings.from_env(
        {
            "SAILPLANE_AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
            "SAILPLANE_AWS_PRINCIPAL": "arn:aws:iam::111122223333:role/sailplane",
        },
        data_dir=tmp_path,
    )
    system = System.from_settings(settings, fresh_db)
    try:
        aws = system.infra.providers.get("aws")
        assert isinstance(aws, AwsAdapter)
        assert (aws.endpoint_url, aws.principal) == (
            "http://127.0.0.1:5000",
            "arn:aws:iam::111122223333:role/sailplane",
        )
        assert aws.poll_seconds == 15.0  # production default: no poll interval given
        assert isinstance(system.infra.providers.get("kubernetes"), KubernetesAdapter)
    finally:
        system.close()
    unset = Settings.from_env({})
    assert (unset.aws_endpoint_url, unset.aws_principal) == (None, None)
