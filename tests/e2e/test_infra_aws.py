"""The `aws` provider over HTTP against a moto server: every call the adapter makes goes over
HTTP to moto (server mode, shared by the session), none is mocked in-process.

The module runs its own System (fresh database) whose AWS endpoint is the moto server, with
a short provider poll interval, behind a real HTTP server; the provisioner worker runs only
while a test asks for it, so the kill-and-restart test can play a dying worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
import yaml

from sailplane.commands.ports import ClusterSpec, ConnectionSpec, Progress
from sailplane.http.app import create_app
from sailplane.infra_adapters.aws import cluster_stack_name, eks_cluster_name, network_stack_name
from sailplane.infra_adapters.cloud_providers import AwsAdapter, external_id_of
from sailplane.system import System
from tests import services
from tests.conftest import Org, found_org, http_client, running_system
from tests.e2e.test_infra import eventually, expect_conflict, finished
from tests.integration.test_provisioner import (
    DiesAfterProvisioning,
    WorkerDied,
    run_provisioner,
)

pytestmark = pytest.mark.timeout(180)

PRINCIPAL = "arn:aws:iam::123456789012:role/sailplane-control-plane"
REGION = "us-east-1"
# The customer deploys the connection template with their own credentials.
CUSTOMER = {"aws_access_key_id": "AKIACUSTOMER00000000", "aws_secret_access_key": "customer"}
# The system node group's instance types, the rest left to the defaults.
CLUSTER_CONFIG = {"systemNodeGroup": {"instanceTypes": ["m7g.large"], "desiredSize": 2}}


@pytest.fixture(scope="module")
def aws_system(pg_server: Any, moto: str) -> Iterator[System]:
    """A System whose aws adapter talks to the moto server, with Sailplane's own (host)
    credentials in the environment as a deployment would have them."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "AKIASAILPLANEHOST000")
        env.setenv("AWS_SECRET_ACCESS_KEY", "sailplane-host-secret")
        with (
            services.fresh_database(pg_server) as database,
            running_system(
                database,
                aws_endpoint_url=moto,
                aws_principal=PRINCIPAL,
                provider_poll_seconds=0.05,
            ) as system,
        ):
            yield system


@pytest.fixture(scope="module")
def aws_api(aws_system: System) -> Iterator[str]:
    with services.api_server(create_app(aws_system)) as base_url:
        yield base_url


@pytest.fixture
def aws_org(aws_system: System) -> Org:
    return found_org(aws_system)


@pytest.fixture
def aws_client(aws_api: str, aws_org: Org) -> Iterator[httpx.Client]:
    with http_client(aws_api, aws_org.token) as c:
        yield c


@pytest.fixture
def provisioner_on_aws(aws_system: System) -> Iterator[None]:
    host, stop = run_provisioner(aws_system)
    try:
        yield
    finally:
        stop.set()
        host.join(timeout=30)


def cloudformation(moto: str) -> Any:
    return boto3.client("cloudformation", region_name=REGION, endpoint_url=moto, **CUSTOMER)


def live_stacks(moto: str, name: str) -> int:
    """How many stacks of this name moto holds that are not deleted."""
    paginator = cloudformation(moto).get_paginator("list_stacks")
    return sum(
        1
        for page in paginator.paginate()
        for stack in page["StackSummaries"]
        if stack["StackName"] == name and stack["StackStatus"] != "DELETE_COMPLETE"
    )


def verified_connection(client: httpx.Client, moto: str) -> tuple[str, str]:
    """An aws connection whose template the customer deployed and that verified with the
    template's role: (connection id, role ARN)."""
    created = client.post(
        "/infra/connections",
        json={"name": "Production AWS", "provider": "aws", "providerConfig": {"region": REGION}},
    )
    assert created.status_code == 201, created.text
    connection_id = created.json()["id"]
    body = client.get(f"/infra/connections/{connection_id}/template/download").text
    stack = cloudformation(moto).create_stack(
        StackName=f"sailplane-connection-{connection_id.lower()}",
        TemplateBody=body,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )["StackId"]
    outputs = cloudformation(moto).describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    role = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "RoleArn")
    verified = client.post(f"/infra/connections/{connection_id}/verify", json={"roleArn": role})
    assert verified.status_code == 200, verified.text
    assert verified.json()["status"] == "active", verified.json()
    return connection_id, role


def provisioned(client: httpx.Client, path: str) -> dict[str, Any]:
    """Start the provision operation at `path` and wait for its outcome."""
    started = client.post(f"{path}/provision")
    assert started.status_code == 202, started.text
    return finished(client, started.json())


@pytest.mark.usefixtures("provisioner_on_aws")
def test_an_aws_connection_from_template_to_deleted_records(
    aws_client: httpx.Client, moto: str
) -> None:
    client = aws_client
    # A new aws connection waits for its role: pending, and nothing that needs the role works.
    created = client.post(
        "/infra/connections",
        json={"name": "Production AWS", "provider": "aws", "providerConfig": {"region": REGION}},
    )
    assert created.status_code == 201, created.text
    connection_id = created.json()["id"]
    assert created.json()["status"] == "pending"
    base = f"/infra/connections/{connection_id}"
    expect_conflict(client.post(f"{base}/networks", json={"name": "prod"}), "pending")
    expect_conflict(client.post(f"{base}/sync-template"), "pending")
    not_verified = client.get(f"{base}/regions")
    assert not_verified.status_code == 409 and "verify" in not_verified.json()["message"]

    # The template: its parameters (the principal Sailplane runs as, the external id fixed
    # by the connection id), and the YAML itself.
    template = client.get(f"{base}/template")
    assert template.status_code == 200, template.text
    external_id = external_id_of(connection_id)
    assert template.json()["parameters"] == {
        "ConnectionId": connection_id,
        "LakeSailPrincipal": PRINCIPAL,
        "ExternalId": external_id,
    }
    assert template.json()["downloadUrl"] == f"/api/v1{base}/template/download"
    download = client.get(f"{base}/template/download")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/yaml")
    document = yaml.safe_load(download.text)
    assert document["Parameters"]["ExternalId"]["Default"] == external_id
    assert document["Parameters"]["LakeSailPrincipal"]["Default"] == PRINCIPAL
    assert external_id in download.text

    # The customer deploys it; verify assumes its role with the external id (STS on moto).
    stack = cloudformation(moto).create_stack(
        StackName=f"sailplane-connection-{connection_id.lower()}",
        TemplateBody=download.text,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )["StackId"]
    outputs = cloudformation(moto).describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    role = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "RoleArn")
    assert client.post(f"{base}/verify", json={"roleArn": "LakeSail"}).status_code == 422
    verified = client.post(f"{base}/verify", json={"roleArn": role})
    assert verified.status_code == 200, verified.text
    assert verified.json()["status"] == "active"
    assert verified.json()["providerConfig"] == {
        "region": REGION,
        "roleArn": role,
        "accountId": "123456789012",
    }

    # An update that does not name the verified settings keeps them (the client need not
    # re-send what verification wrote); naming the role replaces both.
    updated = client.patch(base, json={"providerConfig": {"region": REGION, "stackArn": stack}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["providerConfig"] == {
        "region": REGION,
        "stackArn": stack,
        "roleArn": role,
        "accountId": "123456789012",
    }

    # Regions and instance types are EC2's, with the documented filters.
    regions = client.get(f"{base}/regions")
    assert regions.status_code == 200, regions.text
    codes = {r["regionCode"] for r in regions.json()["items"]}
    assert {"us-east-1", "eu-west-1", "ap-southeast-2"} <= codes
    us_east = next(r for r in regions.json()["items"] if r["regionCode"] == REGION)
    assert us_east["provider"] == "aws" and us_east["regionName"]
    arm = client.get(
        f"{base}/instance-types",
        params={"architecture": "arm64", "minVCpus": 64, "minMemoryMiB": 131072, "limit": 100},
    )
    assert arm.status_code == 200, arm.text
    items = arm.json()["items"]
    assert items and all(
        t["architecture"] == "arm64" and t["vCpus"] >= 64 and t["memoryMiB"] >= 131072
        for t in items
    )
    assert {"m7g.16xlarge", "c7g.16xlarge"} <= {t["instanceType"] for t in items}
    assert len(client.get(f"{base}/instance-types", params={"limit": 3}).json()["items"]) == 3
    bad_filter = client.get(f"{base}/instance-types", params={"architecture": "sparc"})
    assert bad_filter.status_code == 400
    vpcs = client.get(f"{base}/provider-networks").json()["items"]
    assert vpcs and all(v["vpcId"].startswith("vpc-") for v in vpcs)  # moto's default VPC

    # A managed network: a CloudFormation stack (VPC, subnets, NAT) through an operation.
    network = client.post(
        f"{base}/networks", json={"name": "prod", "config": {"cidr": "10.20.0.0/16"}}
    )
    assert network.status_code == 201, network.text
    network_id = network.json()["id"]
    done = provisioned(client, f"{base}/networks/{network_id}")
    assert done["status"] == "succeeded", done
    described = client.get(f"{base}/networks/{network_id}").json()["included"]["networks"][0]
    assert described["status"] == "active"
    assert described["providerNetworkId"].startswith("vpc-")
    assert live_stacks(moto, network_stack_name(network_id)) == 1
    expect_conflict(client.post(f"{base}/networks/{network_id}/provision"), "active")

    # A cluster on it: the roles stack, the EKS cluster and its node group.
    cluster = client.post(
        f"{base}/clusters",
        json={"networkId": network_id, "name": "Production Cluster", "config": CLUSTER_CONFIG},
    )
    assert cluster.status_code == 201, cluster.text
    external_id_ = cluster.json()["id"]
    cluster_path = f"{base}/clusters/{external_id_}"
    expect_conflict(client.get(f"{cluster_path}/kubeconfig"), "pending")
    done = provisioned(client, cluster_path)
    assert done["status"] == "succeeded", done
    assert done["resourceId"] == external_id_
    external = client.get(f"/infra/clusters/{external_id_}").json()["included"]["clusters"][0]
    assert external["status"] == "active"
    assert external["iacOutputs"]["clusterName"] == eks_cluster_name(external_id_)
    expect_conflict(client.post(f"{cluster_path}/provision"), "active")
    kubeconfig = client.get(f"{cluster_path}/kubeconfig")
    assert kubeconfig.status_code == 200, kubeconfig.text
    document = yaml.safe_load(kubeconfig.json()["kubeconfig"])
    assert document["clusters"][0]["cluster"]["server"] == kubeconfig.json()["clusterEndpoint"]
    health = client.get(f"{cluster_path}/health")
    assert health.status_code == 200 and health.json()["status"] == "healthy", health.text
    eks = boto3.client("eks", region_name=REGION, endpoint_url=moto, **CUSTOMER)
    assert eks.describe_cluster(name=eks_cluster_name(external_id_))["cluster"]["status"] == (
        "ACTIVE"
    )

    # What holds something live cannot go: 409 with the status in the message.
    expect_conflict(client.delete(f"{base}/networks/{network_id}"), "active")
    expect_conflict(client.delete(base), "active")
    expect_conflict(client.delete(f"/infra/clusters/{external_id_}"), "active")

    # Destroy the cluster, then the network; then delete the records.
    destroy = client.delete(cluster_path)
    assert destroy.status_code == 202, destroy.text
    assert finished(client, destroy.json())["status"] == "succeeded"
    assert client.get(f"/infra/clusters/{external_id_}").json()["included"]["clusters"][0][
        "status"
    ] == ("destroyed")
    expect_conflict(client.delete(cluster_path), "destroyed")
    assert live_stacks(moto, cluster_stack_name(external_id_)) == 0
    assert eks_cluster_name(external_id_) not in eks.list_clusters()["clusters"]
    destroy = client.delete(f"{base}/networks/{network_id}")
    assert destroy.status_code == 202, destroy.text
    assert finished(client, destroy.json())["status"] == "succeeded"
    expect_conflict(client.delete(f"{base}/networks/{network_id}"), "destroyed")
    assert live_stacks(moto, network_stack_name(network_id)) == 0

    assert client.delete(f"/infra/clusters/{external_id_}").status_code == 204
    assert client.delete(f"/infra/networks/{network_id}").status_code == 204
    assert client.delete(base).status_code == 204
    assert client.get(base).status_code == 404


class DiesMidStep(DiesAfterProvisioning):
    """The real aws adapter, except that the worker dies at the cluster step's first progress
    report: the step has called AWS, its outcome is not recorded."""

    def provision_cluster(
        self, connection: ConnectionSpec, cluster: ClusterSpec, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        def dying(stage: str, message: str, resources: list[dict[str, Any]]) -> None:
            progress(stage, message, resources)
            raise WorkerDied

        return self.real.provision_cluster(connection, cluster, token=token, progress=dying)


def test_a_provisioner_killed_mid_operation_leaves_one_stack_per_resource(
    aws_system: System, aws_client: httpx.Client, moto: str
) -> None:
    system, client = aws_system, aws_client
    connection_id, _ = verified_connection(client, moto)
    base = f"/infra/connections/{connection_id}"
    network_id = client.post(f"{base}/networks", json={"name": "net"}).json()["id"]
    host, stop = run_provisioner(system)
    try:
        assert provisioned(client, f"{base}/networks/{network_id}")["status"] == "succeeded"
    finally:
        stop.set()
        host.join(timeout=30)

    external_id_ = client.post(
        f"{base}/clusters", json={"networkId": network_id, "name": "c", "config": CLUSTER_CONFIG}
    ).json()["id"]
    started = client.post(f"{base}/clusters/{external_id_}/provision")
    assert started.status_code == 202, started.text
    operation_id = started.json()["id"]

    real = system.infra.providers.adapters["aws"]
    assert isinstance(real, AwsAdapter)
    system.infra.providers.adapters["aws"] = DiesMidStep(real)  # type: ignore[arg-type,assignment]
    try:
        host, stop = run_provisioner(system)
        eventually(lambda: stop.is_set(), bool)  # the worker died
        with pytest.raises(RuntimeError, match="WorkerDied"):
            host.join(timeout=10)
    finally:
        real.close()
    assert system.infra.commands.repository.get(operation_id).status == "running"
    assert live_stacks(moto, cluster_stack_name(external_id_)) == 1

    # A restarted process: a fresh adapter finds the stack, the EKS cluster and the node
    # group by their names and finishes the operation, once.
    system.infra.providers.adapters["aws"] = AwsAdapter(
        endpoint_url=system.aws_endpoint_url, principal=PRINCIPAL, poll_seconds=0.05
    )
    host, stop = run_provisioner(system)
    try:
        operation = finished(client, {"id": operation_id})
    finally:
        stop.set()
        host.join(timeout=30)
    assert operation["status"] == "succeeded", operation
    kinds = [type(e).__name__ for e in system.infra.commands.events.get(operation_id)]
    assert kinds.count("Started") == 1
    assert kinds.count("Succeeded") == 1 and "Failed" not in kinds
    external = client.get(f"/infra/clusters/{external_id_}").json()["included"]["clusters"][0]
    assert external["status"] == "active"
    assert live_stacks(moto, cluster_stack_name(external_id_)) == 1
    assert live_stacks(moto, network_stack_name(network_id)) == 1
    eks = boto3.client("eks", region_name=REGION, endpoint_url=moto, **CUSTOMER)
    clusters = [c for c in eks.list_clusters()["clusters"] if c == eks_cluster_name(external_id_)]
    assert len(clusters) == 1
    assert eks.list_nodegroups(clusterName=clusters[0])["nodegroups"] == ["system"]

    # Naming a verified setting replaces what verification wrote: `null` clears the role.
    cleared = client.patch(
        f"/infra/connections/{connection_id}",
        json={"providerConfig": {"region": REGION, "roleArn": None}},
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["providerConfig"] == {"region": REGION}


def test_a_glue_catalog_authenticates_through_a_verified_aws_connection(
    aws_client: httpx.Client, moto: str
) -> None:
    """The catalog assumes the connection's role with its external id (STS on moto) and
    makes its initial database; a connection that is not verified yet lends no role."""
    pending = aws_client.post(
        "/infra/connections",
        json={"name": "Not yet", "provider": "aws", "providerConfig": {"region": REGION}},
    ).json()["id"]
    config = {"region": REGION, "endpointUrl": moto, "connectionId": pending}
    refused = aws_client.post(
        "/workloads/catalogs",
        json={"name": "lake-pending", "provider": "glue", "configWrite": config},
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "connection_not_active"
    assert refused.json()["message"].startswith(f"The AWS connection {pending} is pending")

    connection_id, _ = verified_connection(aws_client, moto)
    database = f"via_connection_{external_id_of(connection_id)[-8:]}"
    created = aws_client.post(
        "/workloads/catalogs",
        json={
            "name": "lake",
            "provider": "glue",
            "configWrite": {**config, "connectionId": connection_id, "initialDatabase": database},
        },
    )
    assert created.status_code == 201, created.text
    glue = boto3.client("glue", region_name=REGION, endpoint_url=moto, **CUSTOMER)
    assert glue.get_database(Name=database)["Database"]["Name"] == database

    unknown = aws_client.post(
        "/workloads/catalogs",
        json={
            "name": "lake-x",
            "provider": "glue",
            "configWrite": {**config, "connectionId": "CONN999999"},
        },
    )
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["code"] == "connection_not_found"
