"""The `aws` provider: a customer's AWS account reached through an IAM role.

The customer deploys the connection template (CloudFormation) in their account. It creates
the role `sailplane-connection-<ConnectionId>` that the `LakeSailPrincipal` (the AWS
principal Sailplane runs as) may assume with the connection's `ExternalId`. Every other
call goes through that role's short-lived credentials (STS AssumeRole), with boto3 clients
built against one injectable endpoint URL (tests point it at a moto server).

Resources Sailplane manages, each named from its id so that a repeated or resumed step
finds the resource it made instead of making another:

| resource | AWS | name |
|---|---|---|
| network | CloudFormation stack: VPC, 2 public + 2 private subnets, internet gateway, NAT gateway, route tables | `sailplane-network-<networkid>` |
| cluster | CloudFormation stack with the IAM roles (cluster, node, job runner), then the EKS cluster and its system node group through the EKS API | stack `sailplane-cluster-<clusterid>`, EKS cluster `sailplane-<clusterid>`, node group from the spec |

CloudFormation client request tokens derive from the resource id, the action and the
operation id; EKS client request tokens likewise. A stack left in ROLLBACK_COMPLETE by an
earlier operation is deleted and created again by the next provision operation.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import boto3
import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

from sailplane.commands.base import Clock, utc_now
from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.infra_adapters.aws_templates import (
    cluster_template_document,
    connection_template_document,
    dump_yaml,
    network_subnets,
    network_template_document,
)
from sailplane.infra_adapters.glue import (
    CLIENT_CONFIG,
    SESSION_SECONDS,
    AwsCredentials,
    AwsRole,
    _code,
    _reason,
    assume_role,
)
from sailplane.infra_adapters.provider_types import (
    ClusterHealth,
    ClusterMetrics,
    ClusterSpec,
    ConnectionCheck,
    ConnectionTemplate,
    InstanceType,
    InstanceTypeFilter,
    InstanceTypeList,
    InstanceTypeMetadata,
    Kubeconfig,
    MetricPoint,
    NetworkSpec,
    NodeGroupHealth,
    ProviderNetwork,
    ProviderSubnet,
    ProviderUnavailableError,
    Region,
    ResourceProgress,
    StepStatus,
)

PROVIDER = "aws"
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "ServerException",
    }
)
NAMED_IAM = ["CAPABILITY_NAMED_IAM"]
OPERATION_TAG = "sailplane:operation"
RESOURCE_TAG = "sailplane:resource"
CONTAINER_INSIGHTS = "ContainerInsights"
# EKS reserves CPU for the kubelet and the system per node: 6% of the first core, 1% of
# the second, 0.5% of the third and fourth, 0.25% of every further core.
_CPU_RESERVE = ((1000, 0.06), (1000, 0.01), (2000, 0.005))
_CPU_RESERVE_REST = 0.0025
# What every EKS node runs before workloads (aws-node, kube-proxy, eks-pod-identity-agent)
# and what the system node group adds once (coredns x2, metrics-server).
EKS_SYSTEM = InstanceTypeMetadata(
    provider=PROVIDER,
    system_pods_per_node=3,
    system_pods_per_system_node=3,
    system_pods_fixed=3,
    system_pods_per_node_margin=1,
    system_pods_fixed_margin=2,
    system_milli_cpu_per_node=100,
    system_milli_cpu_fixed=300,
)
_FAMILY_GROUPS = (
    (("hpc",), "high-performance-computing"),
    (("p", "g", "inf", "trn", "dl", "f", "vt"), "accelerated"),
    (("c",), "compute-optimized"),
    (("r", "x", "z", "u"), "memory-optimized"),
    (("i", "d", "h", "im", "is"), "storage-optimized"),
    (("t",), "burstable"),
)


# --------------------------------------------------------------------------- naming


def network_stack_name(network_id: str) -> str:
    return f"sailplane-network-{network_id.lower()}"


def cluster_stack_name(cluster_id: str) -> str:
    return f"sailplane-cluster-{cluster_id.lower()}"


def eks_cluster_name(cluster_id: str) -> str:
    return f"sailplane-{cluster_id.lower()}"


def connection_role_name(connection_id: str) -> str:
    """The role the connection template creates (the template's `ConnectionId` as is)."""
    return f"sailplane-connection-{connection_id}"


def client_token(resource_id: str, action: str, operation_id: str) -> str:
    """CloudFormation and EKS idempotency token: the same step of the same operation on the
    same resource always sends the same token (at most 64 characters)."""
    return f"sp-{resource_id.lower()}-{action}-{operation_id.lower()}"[:64]


# --------------------------------------------------------------------------- errors


def _transient(exc: Exception) -> bool:
    if isinstance(exc, BotoCoreError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _code(exc) in TRANSIENT_CODES or status >= 500
    return False


@contextmanager
def _asking(what: str) -> Iterator[None]:
    """A query's AWS errors: transient -> ProviderUnavailableError, refused -> 422."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        if _transient(exc):
            raise ProviderUnavailableError(f"AWS did not answer {what}: {_reason(exc)}") from None
        raise InvalidValueError(
            f"AWS refused {what}: {_reason(exc)}", field="connection", code="provider_refused"
        ) from None


class _StepFailed(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage, self.message = stage, message


def _step(run: Callable[[], StepStatus], stage: str) -> StepStatus:
    """Run a step: transient AWS errors raise (retry later), permanent ones fail the step."""
    try:
        return run()
    except _StepFailed as failed:
        return StepStatus(state="failed", stage=failed.stage, message=failed.message)
    except (ClientError, BotoCoreError) as exc:
        if _transient(exc):
            raise ProviderUnavailableError(
                f"AWS did not answer ({stage}): {_reason(exc)}"
            ) from None
        return StepStatus(
            state="failed", stage=stage, message=f"AWS refused ({stage}): {_reason(exc)}"
        )


# --------------------------------------------------------------------------- stacks


def _describe_stack(cloudformation: Any, name: str) -> dict[str, Any] | None:
    try:
        return cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if _code(exc) == "ValidationError" and "does not exist" in _reason(exc):
            return None
        raise


def _outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _tags(stack: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in stack.get("Tags", [])}


def _stack_failure(cloudformation: Any, stack: dict[str, Any]) -> str:
    """The first resource failure CloudFormation recorded for the stack, else its status."""
    try:
        events = cloudformation.describe_stack_events(StackName=stack["StackId"])["StackEvents"]
    except ClientError:
        events = []
    reasons = [
        f"{e['LogicalResourceId']}: {e['ResourceStatusReason']}"
        for e in reversed(events)
        if e.get("ResourceStatus", "").endswith("FAILED") and e.get("ResourceStatusReason")
    ]
    reason = reasons[0] if reasons else stack.get("StackStatusReason") or "no reason given"
    return f"Stack {stack['StackName']} is {stack['StackStatus']}: {reason}"


def _stack_resources(cloudformation: Any, name: str) -> tuple[ResourceProgress, ...]:
    try:
        rows = cloudformation.describe_stack_resources(StackName=name)["StackResources"]
    except ClientError:
        return ()
    return tuple(
        ResourceProgress(
            urn=r.get("PhysicalResourceId") or r["LogicalResourceId"],
            type=r["ResourceType"],
            name=r["LogicalResourceId"],
            operation=r["ResourceStatus"].split("_", 1)[0].lower(),
            status=r["ResourceStatus"],
        )
        for r in rows
    )


def _ensure_stack(
    cloudformation: Any,
    *,
    name: str,
    body: str,
    parameters: dict[str, str],
    resource_id: str,
    operation_id: str,
    stage: str,
) -> StepStatus:
    """Create the stack unless it exists, then report where it stands. A stack that an
    earlier operation left in ROLLBACK_COMPLETE is deleted first, so a retry can succeed."""
    stack = _describe_stack(cloudformation, name)
    if stack is None:
        try:
            cloudformation.create_stack(
                StackName=name,
                TemplateBody=body,
                Parameters=[
                    {"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()
                ],
                Capabilities=NAMED_IAM,
                ClientRequestToken=client_token(resource_id, "create", operation_id),
                Tags=[
                    {"Key": RESOURCE_TAG, "Value": resource_id},
                    {"Key": OPERATION_TAG, "Value": operation_id},
                ],
            )
        except ClientError as exc:
            if _code(exc) != "AlreadyExistsException":  # created meanwhile: report it
                raise
        stack = _describe_stack(cloudformation, name)
        if stack is None:
            return StepStatus(state="running", stage=stage, message=f"Creating stack {name}.")
    status = stack["StackStatus"]
    resources = _stack_resources(cloudformation, name)
    if status == "ROLLBACK_COMPLETE" and _tags(stack).get(OPERATION_TAG) != operation_id:
        cloudformation.delete_stack(
            StackName=name, ClientRequestToken=client_token(resource_id, "clear", operation_id)
        )
        return StepStatus(
            state="running",
            stage=stage,
            message=f"Removing the failed stack {name} before retrying.",
        )
    if status.endswith("_IN_PROGRESS"):
        return StepStatus(
            state="running", stage=stage, message=f"Stack {name} is {status}.", resources=resources
        )
    if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"):
        return StepStatus(
            state="succeeded",
            stage=stage,
            message=f"Stack {name} is {status}.",
            outputs={"stackName": name, "stackId": stack["StackId"], **_outputs(stack)},
            resources=resources,
        )
    raise _StepFailed(stage, _stack_failure(cloudformation, stack))


def _update_stack(
    cloudformation: Any,
    *,
    name: str,
    body: str,
    parameters: dict[str, str] | None,
    resource_id: str,
    operation_id: str,
    stage: str,
) -> StepStatus:
    """Update the stack to `body` (parameters None = keep the previous values)."""
    stack = _describe_stack(cloudformation, name)
    if stack is None:
        raise _StepFailed(stage, f"Stack {name} does not exist.")
    if not stack["StackStatus"].endswith("_IN_PROGRESS"):
        if parameters is None:
            given = [
                {"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
                for p in stack.get("Parameters", [])
            ]
        else:
            given = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
        try:
            cloudformation.update_stack(
                StackName=name,
                TemplateBody=body,
                Parameters=given,
                Capabilities=NAMED_IAM,
                ClientRequestToken=client_token(resource_id, "update", operation_id),
            )
        except ClientError as exc:
            if "No updates are to be performed" not in _reason(exc):
                raise
        stack = _describe_stack(cloudformation, name) or stack
    status = stack["StackStatus"]
    if status.endswith("_IN_PROGRESS"):
        return StepStatus(state="running", stage=stage, message=f"Stack {name} is {status}.")
    if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        return StepStatus(
            state="succeeded",
            stage=stage,
            message=f"Stack {name} is {status}.",
            outputs={"stackName": name, "stackId": stack["StackId"], **_outputs(stack)},
        )
    raise _StepFailed(stage, _stack_failure(cloudformation, stack))


def _delete_stack(
    cloudformation: Any, ec2: Any, *, name: str, resource_id: str, operation_id: str, stage: str
) -> StepStatus:
    stack = _describe_stack(cloudformation, name)
    if stack is None or stack["StackStatus"] == "DELETE_COMPLETE":
        return StepStatus(state="succeeded", stage=stage, message=f"Stack {name} is deleted.")
    if stack["StackStatus"] == "DELETE_IN_PROGRESS":
        return StepStatus(state="running", stage=stage, message=f"Deleting stack {name}.")
    _release_route_tables(cloudformation, ec2, name)
    cloudformation.delete_stack(
        StackName=name, ClientRequestToken=client_token(resource_id, "delete", operation_id)
    )
    stack = _describe_stack(cloudformation, name)
    if stack is None or stack["StackStatus"] == "DELETE_COMPLETE":
        return StepStatus(state="succeeded", stage=stage, message=f"Stack {name} is deleted.")
    if stack["StackStatus"] == "DELETE_FAILED":
        raise _StepFailed(stage, _stack_failure(cloudformation, stack))
    return StepStatus(state="running", stage=stage, message=f"Deleting stack {name}.")


def _release_route_tables(cloudformation: Any, ec2: Any, name: str) -> None:
    """Delete the stack's route tables (and their associations) before the stack.

    CloudFormation on AWS deletes them itself and skips resources already gone, so this
    changes nothing there; moto 5.2 cannot delete an AWS::EC2::RouteTable of a stack and
    then refuses to delete the VPC, so without this the emulated destroy never finishes.
    """
    tables = [
        r["PhysicalResourceId"]
        for r in cloudformation.describe_stack_resources(StackName=name)["StackResources"]
        if r["ResourceType"] == "AWS::EC2::RouteTable" and r.get("PhysicalResourceId")
    ]
    for table_id in tables:
        try:
            table = ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]
        except ClientError as exc:
            if _code(exc) == "InvalidRouteTableID.NotFound":
                continue
            raise
        for association in table.get("Associations", []):
            if not association.get("Main"):
                ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
        ec2.delete_route_table(RouteTableId=table_id)


# --------------------------------------------------------------------------- instance types


def _family_group(family: str) -> str:
    """`m7g` -> general-purpose, `c7i` -> compute-optimized, `inf2` -> accelerated, ..."""
    prefix = re.match(r"[a-z]*", family)
    letters = prefix.group(0) if prefix else ""
    for candidate in (letters, letters[:1]):
        for prefixes, group in _FAMILY_GROUPS:
            if candidate in prefixes:
                return group
    return "general-purpose"


def _allocatable_milli_cpu(vcpus: int) -> int:
    remaining, reserved = vcpus * 1000, 0.0
    for size, share in _CPU_RESERVE:
        used = min(remaining, size)
        reserved += used * share
        remaining -= used
    reserved += remaining * _CPU_RESERVE_REST
    return vcpus * 1000 - round(reserved)


def _max_pods(network: dict[str, Any]) -> int:
    """EKS' formula without prefix delegation: ENIs x (IPv4 per ENI - 1) + 2."""
    enis = network.get("MaximumNetworkInterfaces", 0)
    per_eni = network.get("Ipv4AddressesPerInterface", 0)
    return max(enis * (per_eni - 1) + 2, 0) if enis else 0


def _instance_type(row: dict[str, Any], architecture: str) -> InstanceType:
    name = row["InstanceType"]
    family = name.split(".", 1)[0]
    vcpus = row["VCpuInfo"]["DefaultVCpus"]
    gpus = sum(g.get("Count", 0) for g in row.get("GpuInfo", {}).get("Gpus", []))
    return InstanceType(
        provider=PROVIDER,
        instance_type=name,
        v_cpus=vcpus,
        memory_mib=row["MemoryInfo"]["SizeInMiB"],
        architecture=architecture,
        gpu_count=gpus,
        instance_family=family,
        max_pods=_max_pods(row.get("NetworkInfo", {})),
        group="accelerated" if gpus else _family_group(family),
        allocatable_milli_cpu=_allocatable_milli_cpu(vcpus),
    )


# --------------------------------------------------------------------------- the adapter


class AwsProvider:
    """One AWS connection. `role_arn` is None until the connection is verified (only the
    template can be rendered then). Thread-safe: credentials are cached per instance and
    refreshed before they expire."""

    provider = PROVIDER

    def __init__(
        self,
        *,
        connection_id: str,
        region: str,
        external_id: str,
        role_arn: str | None = None,
        stack_arn: str | None = None,
        principal: str | None = None,
        endpoint_url: str | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.connection_id = connection_id
        self.region = region
        self.external_id = external_id
        self.role_arn = role_arn
        self.stack_arn = stack_arn
        self.principal = principal
        self.endpoint_url = endpoint_url
        self.clock = clock
        self._credentials: tuple[AwsCredentials, datetime] | None = None
        self._session = boto3.session.Session()  # one per provider: sessions are not thread-safe
        self._clients: dict[tuple[str, str], tuple[AwsCredentials, Any]] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- clients

    def _assume(self, role_arn: str) -> AwsCredentials:
        return assume_role(
            AwsRole(role_arn, self.external_id),
            region=self.region,
            session_name=f"sailplane-{self.connection_id.lower()}",
            endpoint_url=self.endpoint_url,
            field="roleArn",
        )

    def _session_credentials(self) -> AwsCredentials:
        if self.role_arn is None:
            raise ConflictError(
                f"Connection {self.connection_id} has no verified role yet: deploy the "
                "template and verify the connection with its role ARN first.",
                code="connection_not_verified",
            )
        with self._lock:
            now = self.clock()
            if self._credentials is None or self._credentials[1] <= now:
                expires = now + timedelta(seconds=SESSION_SECONDS - 120)
                self._credentials = (self._assume(self.role_arn), expires)
            return self._credentials[0]

    def _build(self, service: str, region: str | None, credentials: AwsCredentials | None) -> Any:
        """A boto3 client against the endpoint; the host's credentials when None is given."""
        with self._lock:
            return self._session.client(
                service,
                region_name=region or self.region,
                endpoint_url=self.endpoint_url,
                config=CLIENT_CONFIG,
                **(credentials.client_kwargs() if credentials else {}),
            )

    def client(self, service: str, region: str | None = None) -> Any:
        """A client with the connection role's credentials, reused until they are renewed."""
        credentials = self._session_credentials()
        key = (service, region or self.region)
        with self._lock:
            cached = self._clients.get(key)
        if cached is not None and cached[0] is credentials:
            return cached[1]
        made = self._build(service, region, credentials)
        with self._lock:
            self._clients[key] = (credentials, made)
        return made

    # ----------------------------------------------------------------- connection

    def lakesail_principal(self) -> str:
        """The principal Sailplane runs as (given, else this process's AWS account root)."""
        if self.principal is None:
            sts = self._build("sts", None, None)
            with _asking("who Sailplane is (sts:GetCallerIdentity)"):
                account = sts.get_caller_identity()["Account"]
            self.principal = f"arn:aws:iam::{account}:root"
        return self.principal

    def connection_template(self) -> ConnectionTemplate:
        parameters = {
            "ConnectionId": self.connection_id,
            "LakeSailPrincipal": self.lakesail_principal(),
            "ExternalId": self.external_id,
        }
        body = connection_template_document(
            connection_id=self.connection_id,
            principal=parameters["LakeSailPrincipal"],
            external_id=self.external_id,
        )
        return ConnectionTemplate(
            parameters=parameters,
            body=body,
            file_name=f"sailplane-connection-{self.connection_id.lower()}.yaml",
        )

    def verify(self, role_arn: str | None = None) -> ConnectionCheck:
        """Assume `role_arn` (or the known role) with the external id and ask who we are.
        On success the role becomes this provider's role. 422 when STS refuses."""
        role = role_arn or self.role_arn
        if not role or not role.startswith("arn:"):
            raise InvalidValueError(
                f"The role ARN {role!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME).",
                field="roleArn",
                code="invalid_role_arn",
            )
        credentials = self._assume(role)
        sts = self._build("sts", None, credentials)
        with _asking("the assumed role's identity (sts:GetCallerIdentity)"):
            identity = sts.get_caller_identity()
        with self._lock:
            self.role_arn = role
            self._credentials = (
                credentials,
                self.clock() + timedelta(seconds=SESSION_SECONDS - 120),
            )
        return ConnectionCheck(
            provider=PROVIDER,
            identity=identity["Arn"],
            account_id=identity["Account"],
            message=f"Assumed {role} with the connection's external id.",
        )

    def sync_template(self, *, operation_id: str) -> StepStatus:
        """Update the connection's own stack (`stack_arn`) to the current template."""
        stage = "sync-template"
        if self.stack_arn is None:
            return StepStatus(
                state="failed",
                stage=stage,
                message=f"Connection {self.connection_id} has no deployed stack (stackArn) to update.",
            )
        template = self.connection_template()
        region = self.stack_arn.split(":")[3] if self.stack_arn.count(":") >= 5 else self.region
        cloudformation = self.client("cloudformation", region)
        return _step(
            lambda: _update_stack(
                cloudformation,
                name=self.stack_arn or "",
                body=template.body,
                parameters=None,
                resource_id=self.connection_id,
                operation_id=operation_id,
                stage=stage,
            ),
            stage,
        )

    # ----------------------------------------------------------------- catalogue

    def regions(self) -> tuple[Region, ...]:
        """The regions enabled for the account, named as the AWS console names them."""
        with _asking("the list of regions (ec2:DescribeRegions)"):
            rows = self.client("ec2").describe_regions()["Regions"]
        names = _region_names()
        return tuple(
            Region(
                provider=PROVIDER,
                region_code=r["RegionName"],
                region_name=names.get(r["RegionName"], r["RegionName"]),
                group=_region_group(r["RegionName"]),
            )
            for r in sorted(rows, key=lambda r: r["RegionName"])
        )

    def instance_types(self, filters: InstanceTypeFilter | None = None) -> InstanceTypeList:
        """Current-generation instance types of the region that pass the filters."""
        filters = filters or InstanceTypeFilter()
        wanted = [{"Name": "current-generation", "Values": ["true"]}]
        if filters.architecture is not None:
            wanted.append(
                {"Name": "processor-info.supported-architecture", "Values": [filters.architecture]}
            )
        items: list[InstanceType] = []
        with _asking("the list of instance types (ec2:DescribeInstanceTypes)"):
            pages = self.client("ec2", filters.region).get_paginator("describe_instance_types")
            for page in pages.paginate(Filters=wanted):
                for row in page["InstanceTypes"]:
                    supported = row.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
                    for architecture in ("x86_64", "arm64"):
                        if architecture in supported:
                            item = _instance_type(row, architecture)
                            if filters.admits(item):
                                items.append(item)
                            break
        items.sort(key=lambda i: (i.v_cpus, i.memory_mib, i.instance_type))
        return InstanceTypeList(items=tuple(items), metadata=EKS_SYSTEM)

    def provider_networks(self, region: str | None = None) -> tuple[ProviderNetwork, ...]:
        """The account's VPCs in the region, each with its subnets."""
        ec2 = self.client("ec2", region)
        with _asking("the list of VPCs and subnets (ec2:DescribeVpcs, ec2:DescribeSubnets)"):
            vpcs = [v for p in ec2.get_paginator("describe_vpcs").paginate() for v in p["Vpcs"]]
            subnets = [
                s for p in ec2.get_paginator("describe_subnets").paginate() for s in p["Subnets"]
            ]
        networks = []
        for vpc in sorted(vpcs, key=lambda v: v["VpcId"]):
            tags = {t["Key"]: t["Value"] for t in vpc.get("Tags", [])}
            own = [s for s in subnets if s["VpcId"] == vpc["VpcId"]]
            networks.append(
                ProviderNetwork(
                    provider=PROVIDER,
                    vpc_id=vpc["VpcId"],
                    cidr=vpc["CidrBlock"],
                    name=tags.get("Name"),
                    az_count=len({s["AvailabilityZone"] for s in own}),
                    state=vpc["State"],
                    tags=tags,
                    subnets=tuple(
                        ProviderSubnet(
                            subnet_id=s["SubnetId"],
                            cidr=s["CidrBlock"],
                            availability_zone=s["AvailabilityZone"],
                            public=bool(s.get("MapPublicIpOnLaunch")),
                            name={t["Key"]: t["Value"] for t in s.get("Tags", [])}.get("Name"),
                        )
                        for s in sorted(own, key=lambda s: s["SubnetId"])
                    ),
                )
            )
        return tuple(networks)

    # ----------------------------------------------------------------- networks

    def provision_network(self, spec: NetworkSpec, *, operation_id: str) -> StepStatus:
        """Create (or find) the network's stack and report it. Outputs: stackName, stackId,
        VpcId, PublicSubnetIds, PrivateSubnetIds (comma-separated), NatGatewayId."""
        return self._network_stack(_ensure_stack, spec, operation_id)

    def update_network(self, spec: NetworkSpec, *, operation_id: str) -> StepStatus:
        """Bring the network's stack to the current template and the spec's name and CIDR."""
        return self._network_stack(_update_stack, spec, operation_id)

    def _network_stack(
        self, apply: Callable[..., StepStatus], spec: NetworkSpec, operation_id: str
    ) -> StepStatus:
        stage = "network-stack"
        try:
            parameters = self._network_parameters(spec)
        except InvalidValueError as exc:
            return StepStatus(state="failed", stage=stage, message=exc.message)
        cloudformation = self.client("cloudformation", spec.region)
        return _step(
            lambda: apply(
                cloudformation,
                name=network_stack_name(spec.network_id),
                body=network_template_document(),
                parameters=parameters,
                resource_id=spec.network_id,
                operation_id=operation_id,
                stage=stage,
            ),
            stage,
        )

    def destroy_network(self, spec: NetworkSpec, *, operation_id: str) -> StepStatus:
        stage = "network-stack"
        cloudformation = self.client("cloudformation", spec.region)
        ec2 = self.client("ec2", spec.region)
        return _step(
            lambda: _delete_stack(
                cloudformation,
                ec2,
                name=network_stack_name(spec.network_id),
                resource_id=spec.network_id,
                operation_id=operation_id,
                stage=stage,
            ),
            stage,
        )

    @staticmethod
    def _network_parameters(spec: NetworkSpec) -> dict[str, str]:
        public_a, public_b, private_a, private_b = network_subnets(spec.cidr)
        return {
            "NetworkName": f"sailplane-{spec.network_id.lower()}",
            "VpcCidr": spec.cidr,
            "PublicSubnetACidr": public_a,
            "PublicSubnetBCidr": public_b,
            "PrivateSubnetACidr": private_a,
            "PrivateSubnetBCidr": private_b,
        }

    # ----------------------------------------------------------------- clusters

    def provision_cluster(self, spec: ClusterSpec, *, operation_id: str) -> StepStatus:
        """Roles stack, then EKS cluster, then the system node group; each call advances as
        far as it can. Outputs once succeeded: stackName, ClusterRoleArn, NodeRoleArn,
        JobRunnerRoleArn, clusterName, clusterArn, clusterEndpoint, nodeGroupName."""
        return _step(lambda: self._provision_cluster(spec, operation_id), "cluster")

    def _provision_cluster(self, spec: ClusterSpec, operation_id: str) -> StepStatus:
        roles = _ensure_stack(
            self.client("cloudformation", spec.region),
            name=cluster_stack_name(spec.cluster_id),
            body=cluster_template_document(),
            parameters={"RolePrefix": f"sailplane-{spec.cluster_id.lower()}"},
            resource_id=spec.cluster_id,
            operation_id=operation_id,
            stage="cluster-roles",
        )
        if roles.state != "succeeded":
            return roles
        outputs = {k: v for k, v in roles.outputs.items() if k != "stackId"}
        subnets = _subnets(spec.network_outputs, "PrivateSubnetIds") + _subnets(
            spec.network_outputs, "PublicSubnetIds"
        )
        if not subnets:
            raise _StepFailed(
                "eks-cluster", "The cluster's network has no subnets: provision the network first."
            )
        eks = self.client("eks", spec.region)
        name = eks_cluster_name(spec.cluster_id)
        cluster = _describe_eks(eks, name)
        if cluster is None:
            vpc_config: dict[str, Any] = {
                "subnetIds": subnets,
                "endpointPublicAccess": True,
                "endpointPrivateAccess": True,
            }
            if spec.public_access_cidrs:
                vpc_config["publicAccessCidrs"] = list(spec.public_access_cidrs)
            try:
                cluster = eks.create_cluster(
                    name=name,
                    version=spec.kubernetes_version,
                    roleArn=roles.outputs["ClusterRoleArn"],
                    resourcesVpcConfig=vpc_config,
                    clientRequestToken=client_token(spec.cluster_id, "eks", operation_id),
                    tags={RESOURCE_TAG: spec.cluster_id, "Name": spec.name},
                )["cluster"]
            except ClientError as exc:
                if _code(exc) != "ResourceInUseException":  # created meanwhile
                    raise
                cluster = _describe_eks(eks, name)
        status = cluster["status"] if cluster else "CREATING"
        if status == "FAILED":
            raise _StepFailed("eks-cluster", f"EKS cluster {name} failed to create.")
        if status != "ACTIVE":
            return StepStatus(
                state="running", stage="eks-cluster", message=f"EKS cluster {name} is {status}."
            )
        outputs.update(
            clusterName=name,
            clusterArn=cluster["arn"],
            clusterEndpoint=cluster.get("endpoint", ""),
            clusterCertificateAuthority=cluster.get("certificateAuthority", {}).get("data", ""),
        )
        group = spec.system_node_group
        node_group = _describe_node_group(eks, name, group.name)
        if node_group is None:
            node_subnets = _subnets(spec.network_outputs, "PrivateSubnetIds") or subnets
            try:
                node_group = eks.create_nodegroup(
                    clusterName=name,
                    nodegroupName=group.name,
                    scalingConfig={
                        "minSize": group.min_size,
                        "maxSize": group.max_size,
                        "desiredSize": group.desired_size,
                    },
                    diskSize=group.disk_size_gb,
                    subnets=node_subnets,
                    instanceTypes=list(group.instance_types),
                    amiType=_ami_type(group.instance_types),
                    nodeRole=roles.outputs["NodeRoleArn"],
                    labels={"sailplane.dev/node-group": group.name},
                    clientRequestToken=client_token(spec.cluster_id, "nodes", operation_id),
                    tags={RESOURCE_TAG: spec.cluster_id},
                )["nodegroup"]
            except ClientError as exc:
                if _code(exc) != "ResourceInUseException":
                    raise
                node_group = _describe_node_group(eks, name, group.name)
        status = node_group["status"] if node_group else "CREATING"
        if status in ("CREATE_FAILED", "DEGRADED"):
            raise _StepFailed("node-group", _node_group_problem(node_group or {}))
        outputs["nodeGroupName"] = group.name
        if status != "ACTIVE":
            return StepStatus(
                state="running",
                stage="node-group",
                message=f"Node group {group.name} is {status}.",
                outputs=outputs,
            )
        return StepStatus(
            state="succeeded",
            stage="node-group",
            message=f"EKS cluster {name} and node group {group.name} are active.",
            outputs=outputs,
        )

    def update_cluster(self, spec: ClusterSpec, *, operation_id: str) -> StepStatus:
        """Apply the system node group's scaling to the running cluster. A different
        Kubernetes version or instance types need a new cluster (422 as a failed step)."""
        return _step(lambda: self._update_cluster(spec, operation_id), "node-group")

    def _update_cluster(self, spec: ClusterSpec, operation_id: str) -> StepStatus:
        eks = self.client("eks", spec.region)
        name = eks_cluster_name(spec.cluster_id)
        cluster = _describe_eks(eks, name)
        group = spec.system_node_group
        node_group = _describe_node_group(eks, name, group.name) if cluster else None
        if cluster is None or node_group is None:
            raise _StepFailed("node-group", f"EKS cluster {name} or its node group does not exist.")
        if cluster.get("version") != spec.kubernetes_version:
            raise _StepFailed(
                "eks-cluster",
                f"EKS cluster {name} runs Kubernetes {cluster.get('version')}; changing it to "
                f"{spec.kubernetes_version} is not supported, create a new cluster instead.",
            )
        if node_group["status"] == "UPDATING":
            return StepStatus(
                state="running", stage="node-group", message=f"Node group {group.name} is UPDATING."
            )
        wanted = {
            "minSize": group.min_size,
            "maxSize": group.max_size,
            "desiredSize": group.desired_size,
        }
        if node_group.get("scalingConfig") != wanted:
            eks.update_nodegroup_config(
                clusterName=name,
                nodegroupName=group.name,
                scalingConfig=wanted,
                clientRequestToken=client_token(spec.cluster_id, "scale", operation_id),
            )
            node_group = _describe_node_group(eks, name, group.name) or node_group
        if node_group["status"] != "ACTIVE":
            return StepStatus(
                state="running",
                stage="node-group",
                message=f"Node group {group.name} is {node_group['status']}.",
            )
        return StepStatus(
            state="succeeded",
            stage="node-group",
            message=f"Node group {group.name} scales {wanted}.",
        )

    def destroy_cluster(self, spec: ClusterSpec, *, operation_id: str) -> StepStatus:
        """Node groups, then the EKS cluster, then the roles stack; each call advances."""
        return _step(lambda: self._destroy_cluster(spec, operation_id), "cluster")

    def _destroy_cluster(self, spec: ClusterSpec, operation_id: str) -> StepStatus:
        eks = self.client("eks", spec.region)
        name = eks_cluster_name(spec.cluster_id)
        cluster = _describe_eks(eks, name)
        if cluster is not None:
            groups = eks.list_nodegroups(clusterName=name)["nodegroups"]
            for group in groups:
                found = _describe_node_group(eks, name, group)
                if found is not None and found["status"] != "DELETING":
                    _ignore_missing(
                        lambda g=group: eks.delete_nodegroup(clusterName=name, nodegroupName=g)
                    )
            remaining = [g for g in groups if _describe_node_group(eks, name, g) is not None]
            if remaining:
                return StepStatus(
                    state="running",
                    stage="node-group",
                    message=f"Deleting node groups {', '.join(remaining)}.",
                )
            if cluster["status"] != "DELETING":
                _ignore_missing(lambda: eks.delete_cluster(name=name))
            if _describe_eks(eks, name) is not None:
                return StepStatus(
                    state="running", stage="eks-cluster", message=f"Deleting EKS cluster {name}."
                )
        return _delete_stack(
            self.client("cloudformation", spec.region),
            self.client("ec2", spec.region),
            name=cluster_stack_name(spec.cluster_id),
            resource_id=spec.cluster_id,
            operation_id=operation_id,
            stage="cluster-roles",
        )

    def _active_cluster(self, spec: ClusterSpec) -> dict[str, Any]:
        name = eks_cluster_name(spec.cluster_id)
        with _asking(f"EKS cluster {name} (eks:DescribeCluster)"):
            cluster = _describe_eks(self.client("eks", spec.region), name)
        if cluster is None:
            raise ConflictError(
                f"EKS cluster {name} does not exist in {spec.region}: provision the cluster first.",
                code="cluster_not_provisioned",
            )
        return cluster

    def kubeconfig(self, spec: ClusterSpec) -> Kubeconfig:
        """A kubeconfig for the EKS cluster; its user gets a token from `aws eks get-token`
        with the caller's own AWS credentials."""
        cluster = self._active_cluster(spec)
        name, endpoint = cluster["name"], cluster.get("endpoint", "")
        authority = cluster.get("certificateAuthority", {}).get("data", "")
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {"server": endpoint, "certificate-authority-data": authority},
                }
            ],
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "--region",
                                spec.region,
                                "eks",
                                "get-token",
                                "--cluster-name",
                                name,
                            ],
                            "interactiveMode": "Never",
                        }
                    },
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }
        return Kubeconfig(
            kubeconfig=dump_yaml(document),
            cluster_endpoint=endpoint,
            cluster_certificate_authority=authority,
        )

    def health(self, spec: ClusterSpec) -> ClusterHealth:
        """From EKS: the cluster's status and each node group's status and health issues.
        Ready nodes are counted per node group (desired size of an ACTIVE group without
        issues); per-node readiness would need the cluster's own API."""
        eks = self.client("eks", spec.region)
        name = eks_cluster_name(spec.cluster_id)
        with _asking(f"EKS cluster {name} (eks:DescribeCluster)"):
            cluster = _describe_eks(eks, name)
            if cluster is None:
                return ClusterHealth(
                    status="unhealthy",
                    provider_metadata={"status": "MISSING"},
                    node_groups=(),
                    system_pods=(),
                    total_nodes=0,
                    ready_nodes=0,
                    message=f"EKS cluster {name} does not exist.",
                )
            groups = [
                g
                for g in (
                    _describe_node_group(eks, name, n)
                    for n in eks.list_nodegroups(clusterName=name)["nodegroups"]
                )
                if g is not None
            ]
        node_groups = []
        for group in groups:
            desired = group.get("scalingConfig", {}).get("desiredSize", 0)
            healthy = group["status"] == "ACTIVE" and not group.get("health", {}).get("issues")
            node_groups.append(
                NodeGroupHealth(
                    name=group["nodegroupName"],
                    status=group["status"],
                    desired_size=desired,
                    ready_nodes=desired if healthy else 0,
                    message="" if healthy else _node_group_problem(group),
                )
            )
        total = sum(g.desired_size for g in node_groups)
        ready = sum(g.ready_nodes for g in node_groups)
        if cluster["status"] != "ACTIVE" or (total and not ready):
            status = "unhealthy"
        elif ready < total or not node_groups:
            status = "degraded"
        else:
            status = "healthy"
        return ClusterHealth(
            status=status,
            provider_metadata={
                "status": cluster["status"],
                "clusterName": name,
                "version": cluster.get("version", ""),
                "platformVersion": cluster.get("platformVersion", ""),
            },
            node_groups=tuple(node_groups),
            system_pods=(),
            total_nodes=total,
            ready_nodes=ready,
            message=f"EKS cluster {name} is {cluster['status']}.",
        )

    def metrics(
        self, spec: ClusterSpec, *, start: datetime, end: datetime, period_seconds: int
    ) -> ClusterMetrics:
        """CPU and memory utilization (percent, average over the cluster's nodes) from
        CloudWatch Container Insights (`node_cpu_utilization`, `node_memory_utilization`),
        in buckets of `period_seconds` (rounded up to a whole minute)."""
        step = max(60, -(-period_seconds // 60) * 60)
        name = eks_cluster_name(spec.cluster_id)
        queries = [
            {
                "Id": key,
                "MetricStat": {
                    "Metric": {
                        "Namespace": CONTAINER_INSIGHTS,
                        "MetricName": metric,
                        "Dimensions": [{"Name": "ClusterName", "Value": name}],
                    },
                    "Period": step,
                    "Stat": "Average",
                },
            }
            for key, metric in (
                ("cpu", "node_cpu_utilization"),
                ("memory", "node_memory_utilization"),
            )
        ]
        series: dict[str, list[MetricPoint]] = {"cpu": [], "memory": []}
        with _asking("cluster metrics (cloudwatch:GetMetricData)"):
            cloudwatch = self.client("cloudwatch", spec.region)
            pages = cloudwatch.get_paginator("get_metric_data").paginate(
                MetricDataQueries=queries,
                StartTime=start,
                EndTime=end,
                ScanBy="TimestampAscending",
            )
            for page in pages:
                for result in page["MetricDataResults"]:
                    series[result["Id"]].extend(
                        MetricPoint(timestamp=t, value=float(v))
                        for t, v in zip(result["Timestamps"], result["Values"], strict=True)
                    )
        return ClusterMetrics(
            cpu_utilization=tuple(sorted(series["cpu"], key=lambda p: p.timestamp)),
            memory_utilization=tuple(sorted(series["memory"], key=lambda p: p.timestamp)),
        )


# --------------------------------------------------------------------------- helpers


def _region_names() -> dict[str, str]:
    """Region code -> the console's description, from botocore's bundled endpoint data."""
    data = botocore.session.get_session().get_data("endpoints")
    return {
        code: region.get("description", code)
        for partition in data["partitions"]
        for code, region in partition["regions"].items()
    }


def _region_group(code: str) -> str:
    prefix = code.split("-", 1)[0]
    return {
        "us": "North America",
        "ca": "North America",
        "mx": "North America",
        "sa": "South America",
        "eu": "Europe",
        "il": "Middle East",
        "me": "Middle East",
        "af": "Africa",
        "ap": "Asia Pacific",
        "cn": "China",
    }.get(prefix, "Other")


def _subnets(outputs: dict[str, str], key: str) -> list[str]:
    return [s for s in outputs.get(key, "").split(",") if s]


def _ami_type(instance_types: tuple[str, ...]) -> str:
    """Graviton families (a `g` after the generation digit, such as m7g or c8gd) get ARM nodes."""
    family = instance_types[0].split(".", 1)[0] if instance_types else ""
    digits = [i for i, c in enumerate(family) if c.isdigit()]
    graviton = bool(digits) and family[digits[-1] + 1 : digits[-1] + 2] == "g"
    return "AL2023_ARM_64_STANDARD" if graviton else "AL2023_x86_64_STANDARD"


def _describe_eks(eks: Any, name: str) -> dict[str, Any] | None:
    try:
        return eks.describe_cluster(name=name)["cluster"]
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return None
        raise


def _describe_node_group(eks: Any, cluster: str, name: str) -> dict[str, Any] | None:
    try:
        return eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return None
        raise


def _ignore_missing(call: Callable[[], Any]) -> None:
    try:
        call()
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise


def _node_group_problem(group: dict[str, Any]) -> str:
    issues = group.get("health", {}).get("issues", [])
    described = "; ".join(f"{i.get('code')}: {i.get('message')}" for i in issues)
    return f"Node group {group.get('nodegroupName')} is {group.get('status')}" + (
        f": {described}" if described else "."
    )
