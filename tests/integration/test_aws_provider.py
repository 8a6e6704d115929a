"""The `aws` provider against a moto server over HTTP: every boto3 client the adapter builds
points at the server's endpoint, with credentials from STS AssumeRole into the role the
connection template created."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import msgspec
import pytest
import yaml

from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.infra_adapters.aws import (
    AwsProvider,
    cluster_stack_name,
    connection_role_name,
    eks_cluster_name,
    network_stack_name,
)
from sailplane.infra_adapters.aws_templates import network_subnets
from sailplane.infra_adapters.provider_types import (
    ClusterSpec,
    InstanceTypeFilter,
    NetworkSpec,
    NodeGroupSpec,
    StepStatus,
)

pytestmark = pytest.mark.timeout(120)

CUSTOMER = {"aws_access_key_id": "AKIACUSTOMER00000000", "aws_secret_access_key": "customer"}
PRINCIPAL = "arn:aws:iam::999988887777:root"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _customer(moto: str, service: str, region: str = "us-east-1"):
    return boto3.client(service, region_name=region, endpoint_url=moto, **CUSTOMER)


def _id() -> str:
    return uuid.uuid4().hex[:10].upper()


@pytest.fixture
def host_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sailplane's own AWS identity (the host's credential chain) assumes connection roles."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASAILPLANEHOST000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sailplane-host-secret")


@pytest.fixture
def connected(moto: str, host_identity: None) -> Iterator[AwsProvider]:
    """A connection whose template the customer deployed, verified with the role it made."""
    provider = AwsProvider(
        connection_id=_id(),
        region="us-east-1",
        external_id=f"ext-{uuid.uuid4().hex}",
        principal=PRINCIPAL,
        endpoint_url=moto,
        clock=lambda: NOW,
    )
    stack = _customer(moto, "cloudformation").create_stack(
        StackName=f"sailplane-connection-{provider.connection_id.lower()}",
        TemplateBody=provider.connection_template().body,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    outputs = _customer(moto, "cloudformation").describe_stacks(StackName=stack["StackId"])[
        "Stacks"
    ][0]["Outputs"]
    role_arn = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "RoleArn")
    provider.verify(role_arn)
    provider.stack_arn = stack["StackId"]
    yield provider


def _until_done(step, limit: int = 20) -> StepStatus:
    """Poll a step the way the provisioner does: call it again until it is no longer running."""
    for _ in range(limit):
        status = step()
        if status.done:
            return status
    raise AssertionError(f"step still running after {limit} polls: {status}")


def test_the_template_is_yaml_with_the_connection_defaults(moto: str, host_identity: None) -> None:
    provider = AwsProvider(
        connection_id="CONN00AB12",
        region="us-east-1",
        external_id="ext-4711",
        principal=PRINCIPAL,
        endpoint_url=moto,
    )
    template = provider.connection_template()
    document = yaml.safe_load(template.body)
    assert template.content_type == "text/yaml"
    assert template.parameters == {
        "ConnectionId": "CONN00AB12",
        "LakeSailPrincipal": PRINCIPAL,
        "ExternalId": "ext-4711",
    }
    assert {k: v["Default"] for k, v in document["Parameters"].items()} == template.parameters
    trust = document["Resources"]["ConnectionRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Condition"] == {
        "StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}
    }
    # CloudFormation itself accepts it (the `connected` fixture also deploys it).
    _customer(moto, "cloudformation").validate_template(TemplateBody=template.body)


def test_the_principal_defaults_to_the_hosts_account(moto: str, host_identity: None) -> None:
    provider = AwsProvider(
        connection_id=_id(), region="us-east-1", external_id="e", endpoint_url=moto
    )
    principal = provider.connection_template().parameters["LakeSailPrincipal"]
    assert principal.startswith("arn:aws:iam::") and principal.endswith(":root")


def test_verify_assumes_the_templates_role(connected: AwsProvider) -> None:
    check = connected.verify()
    assert check.provider == "aws"
    assert check.account_id == "123456789012"
    assert f"assumed-role/{connection_role_name(connected.connection_id)}/" in check.identity


def test_verify_refuses_what_is_not_a_role_arn(moto: str, host_identity: None) -> None:
    provider = AwsProvider(
        connection_id=_id(), region="us-east-1", external_id="e", endpoint_url=moto
    )
    with pytest.raises(InvalidValueError) as raised:
        provider.verify("LakeSailConnection")
    assert raised.value.field == "roleArn"


def test_calls_before_verification_are_conflicts(moto: str, host_identity: None) -> None:
    provider = AwsProvider(
        connection_id=_id(), region="us-east-1", external_id="e", endpoint_url=moto
    )
    with pytest.raises(ConflictError) as raised:
        provider.regions()
    assert raised.value.code == "connection_not_verified"


def test_regions_are_the_accounts_with_console_names(connected: AwsProvider) -> None:
    regions = {r.region_code: r for r in connected.regions()}
    assert len(regions) > 15
    assert regions["us-east-1"].region_name == "US East (N. Virginia)"
    assert regions["eu-west-1"].group == "Europe"


def test_instance_types_are_real_and_filtered(connected: AwsProvider) -> None:
    everything = connected.instance_types()
    names = {i.instance_type: i for i in everything.items}
    assert len(names) > 500
    m7g = names["m7g.large"]
    assert (m7g.v_cpus, m7g.memory_mib, m7g.architecture) == (2, 8192, "arm64")
    assert (m7g.instance_family, m7g.group, m7g.max_pods) == ("m7g", "general-purpose", 29)
    assert m7g.allocatable_milli_cpu == 1930  # 2000 less EKS' 60 + 10 millicores
    assert names["c7i.large"].group == "compute-optimized"
    assert everything.metadata.provider == "aws"

    wanted = InstanceTypeFilter(architecture="arm64", min_v_cpus=8, min_memory_mib=65536)
    filtered = connected.instance_types(wanted).items
    assert filtered and all(
        i.architecture == "arm64" and i.v_cpus >= 8 and i.memory_mib >= 65536 for i in filtered
    )
    assert [(i.v_cpus, i.memory_mib) for i in filtered] == sorted(
        (i.v_cpus, i.memory_mib) for i in filtered
    )
    encoded = msgspec.json.decode(msgspec.json.encode(filtered[0]))
    assert {"vCpus", "memoryMiB", "allocatableMilliCpu", "maxPods"} <= set(encoded)


def test_provider_networks_are_vpcs_with_subnets(moto: str, connected: AwsProvider) -> None:
    ec2 = _customer(moto, "ec2", "eu-central-1")
    vpc = ec2.create_vpc(
        CidrBlock="10.42.0.0/16",
        TagSpecifications=[
            {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "Production VPC"}]}
        ],
    )["Vpc"]["VpcId"]
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/20", AvailabilityZone="eu-central-1a")
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.16.0/20", AvailabilityZone="eu-central-1b")
    networks = {n.vpc_id: n for n in connected.provider_networks("eu-central-1")}
    ours = networks[vpc]
    assert (ours.name, ours.cidr, ours.az_count, ours.state) == (
        "Production VPC",
        "10.42.0.0/16",
        2,
        "available",
    )
    assert sorted(s.cidr for s in ours.subnets) == ["10.42.0.0/20", "10.42.16.0/20"]


def test_network_cidrs_are_checked() -> None:
    assert network_subnets("10.0.0.0/16") == (
        "10.0.0.0/18",
        "10.0.64.0/18",
        "10.0.128.0/18",
        "10.0.192.0/18",
    )
    for bad in ("10.0.0.0/8", "10.0.0.0/28", "not-a-cidr", "fd00::/48"):
        with pytest.raises(InvalidValueError):
            network_subnets(bad)


def test_a_network_and_a_cluster_from_provision_to_destroy(
    moto: str, connected: AwsProvider
) -> None:
    cloudformation = _customer(moto, "cloudformation")
    network = NetworkSpec(network_id=_id(), name="prod", region="us-east-1", cidr="10.8.0.0/16")
    operation = _id()

    # Provisioning twice (a redelivered message) leaves exactly one stack.
    first = connected.provision_network(network, operation_id=operation)
    again = connected.provision_network(network, operation_id=operation)
    assert first.state == again.state == "succeeded"
    assert first.outputs["VpcId"] == again.outputs["VpcId"]
    stacks = [
        s
        for s in cloudformation.list_stacks()["StackSummaries"]
        if s["StackName"] == network_stack_name(network.network_id)
    ]
    assert len(stacks) == 1
    vpc = _customer(moto, "ec2").describe_vpcs(VpcIds=[first.outputs["VpcId"]])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.8.0.0/16"
    private = first.outputs["PrivateSubnetIds"].split(",")
    assert len(private) == 2 and first.outputs["NatGatewayId"].startswith("nat-")
    assert {r.type for r in first.resources} >= {"AWS::EC2::VPC", "AWS::EC2::NatGateway"}
    updated = connected.update_network(network, operation_id=_id())
    assert updated.state == "succeeded" and updated.outputs["VpcId"] == first.outputs["VpcId"]

    cluster = ClusterSpec(
        cluster_id=_id(),
        name="Production Cluster",
        region="us-east-1",
        network_outputs=first.outputs,
        kubernetes_version="1.31",
        system_node_group=NodeGroupSpec(instance_types=("m7g.large",), desired_size=2),
    )
    provisioned = _until_done(lambda: connected.provision_cluster(cluster, operation_id=operation))
    assert provisioned.state == "succeeded", provisioned.message
    assert provisioned == connected.provision_cluster(cluster, operation_id=operation)
    eks = _customer(moto, "eks")
    assert eks.list_clusters()["clusters"].count(eks_cluster_name(cluster.cluster_id)) == 1
    described = eks.describe_cluster(name=eks_cluster_name(cluster.cluster_id))["cluster"]
    assert set(described["resourcesVpcConfig"]["subnetIds"]) >= set(private)
    group = eks.describe_nodegroup(
        clusterName=eks_cluster_name(cluster.cluster_id), nodegroupName="system"
    )["nodegroup"]
    assert group["amiType"] == "AL2023_ARM_64_STANDARD"
    assert group["nodeRole"] == provisioned.outputs["NodeRoleArn"]
    assert provisioned.outputs["JobRunnerRoleArn"].endswith(f"-{cluster.cluster_id.lower()}-jr")

    kubeconfig = connected.kubeconfig(cluster)
    document = yaml.safe_load(kubeconfig.kubeconfig)
    assert document["clusters"][0]["cluster"]["server"] == described["endpoint"]
    assert kubeconfig.cluster_certificate_authority == described["certificateAuthority"]["data"]
    assert "get-token" in document["users"][0]["user"]["exec"]["args"]

    health = connected.health(cluster)
    assert (health.status, health.total_nodes, health.ready_nodes) == ("healthy", 2, 2)
    assert health.node_groups[0].status == "ACTIVE"

    scaled = msgspec.structs.replace(
        cluster, system_node_group=NodeGroupSpec(desired_size=3, max_size=4)
    )
    assert connected.update_cluster(scaled, operation_id=_id()).state == "succeeded"
    assert connected.health(scaled).total_nodes == 3

    destroy = _id()
    destroyed = _until_done(lambda: connected.destroy_cluster(cluster, operation_id=destroy))
    assert destroyed.state == "succeeded", destroyed.message
    assert eks_cluster_name(cluster.cluster_id) not in eks.list_clusters()["clusters"]
    assert connected.destroy_cluster(cluster, operation_id=destroy).state == "succeeded"
    with pytest.raises(ConflictError):
        connected.kubeconfig(cluster)

    gone = _until_done(lambda: connected.destroy_network(network, operation_id=destroy))
    assert gone.state == "succeeded", gone.message
    live = [
        s
        for s in cloudformation.list_stacks()["StackSummaries"]
        if s["StackName"]
        in (network_stack_name(network.network_id), cluster_stack_name(cluster.cluster_id))
        and s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert live == []
    assert not _customer(moto, "ec2").describe_vpcs(
        Filters=[{"Name": "vpc-id", "Values": [first.outputs["VpcId"]]}]
    )["Vpcs"]


def test_a_network_with_a_bad_cidr_fails_its_step_before_any_stack(
    moto: str, connected: AwsProvider
) -> None:
    network = NetworkSpec(network_id=_id(), name="n", region="us-east-1", cidr="10.0.0.0/8")
    status = connected.provision_network(network, operation_id=_id())
    assert status.state == "failed" and "/16 and /24" in status.message
    names = [
        s["StackName"] for s in _customer(moto, "cloudformation").list_stacks()["StackSummaries"]
    ]
    assert network_stack_name(network.network_id) not in names


def test_a_cluster_without_network_subnets_fails_its_step(connected: AwsProvider) -> None:
    cluster = ClusterSpec(cluster_id=_id(), name="c", region="us-east-1")
    status = connected.provision_cluster(cluster, operation_id=_id())
    assert status.state == "failed" and "no subnets" in status.message


def test_template_sync_updates_the_connection_stack(moto: str, connected: AwsProvider) -> None:
    operation = _id()
    synced = connected.sync_template(operation_id=operation)
    assert synced.state == "succeeded", synced.message
    assert synced.outputs["RoleArn"] == connected.role_arn
    assert connected.sync_template(operation_id=operation).state == "succeeded"


def test_metrics_come_from_container_insights(moto: str, connected: AwsProvider) -> None:
    cluster = ClusterSpec(cluster_id=_id(), name="c", region="us-east-1")
    cloudwatch = _customer(moto, "cloudwatch")
    for minutes, cpu in ((50, 20.0), (30, 40.0), (10, 60.0)):
        cloudwatch.put_metric_data(
            Namespace="ContainerInsights",
            MetricData=[
                {
                    "MetricName": "node_cpu_utilization",
                    "Dimensions": [
                        {"Name": "ClusterName", "Value": eks_cluster_name(cluster.cluster_id)}
                    ],
                    "Timestamp": NOW - timedelta(minutes=minutes),
                    "Value": cpu,
                    "Unit": "Percent",
                }
            ],
        )
    hour = connected.metrics(cluster, start=NOW - timedelta(hours=1), end=NOW, period_seconds=60)
    assert [p.value for p in hour.cpu_utilization] == [20.0, 40.0, 60.0]
    assert hour.memory_utilization == ()
    recent = connected.metrics(
        cluster, start=NOW - timedelta(minutes=20), end=NOW, period_seconds=60
    )
    assert [p.value for p in recent.cpu_utilization] == [60.0]
    week = connected.metrics(cluster, start=NOW - timedelta(days=7), end=NOW, period_seconds=3600)
    assert [p.value for p in week.cpu_utilization] == [40.0]  # one hourly bucket: the average
