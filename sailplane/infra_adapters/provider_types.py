"""Values the cloud provider adapters (`aws`, `kubernetes`) take and return.

Every adapter answers with these Structs, so the provisioner and the HTTP layer treat all
providers alike. They encode to the API's camelCase field names.

A provisioning step (`provision_network`, `destroy_cluster`, ...) is a reconciliation: each
call moves the resource as far as it can without waiting and answers a `StepStatus`.
Calling it again polls; calling it after it succeeded changes nothing. Resource names and
client tokens derive from the resource id (and the operation id), so a repeated or
resumed step never creates a second resource.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from sailplane.domain.errors import ServiceUnavailableError

StepState = Literal["running", "succeeded", "failed"]
HealthState = Literal["healthy", "degraded", "unhealthy"]


class ProviderUnavailableError(ServiceUnavailableError):
    """The provider could not be reached or throttled the call: retry the same step later.

    Permanent refusals (access denied, invalid parameters) are not raised: a step answers
    them as a `failed` StepStatus, a query as InvalidValueError.
    """

    default_code = "provider_unreachable"


class _Value(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    pass


class Region(_Value):
    provider: str
    region_code: str
    region_name: str
    group: str


class InstanceType(_Value):
    provider: str
    instance_type: str
    v_cpus: int
    memory_mib: int = msgspec.field(name="memoryMiB")
    architecture: str
    gpu_count: int
    instance_family: str
    max_pods: int
    group: str
    allocatable_milli_cpu: int


class InstanceTypeFilter(_Value):
    """The documented filters of `GET .../instance-types`; `region` None = the connection's."""

    region: str | None = None
    architecture: Literal["x86_64", "arm64"] | None = None
    min_v_cpus: int | None = None
    min_memory_mib: int | None = msgspec.field(default=None, name="minMemoryMiB")

    def admits(self, item: InstanceType) -> bool:
        return (
            (self.architecture is None or item.architecture == self.architecture)
            and (self.min_v_cpus is None or item.v_cpus >= self.min_v_cpus)
            and (self.min_memory_mib is None or item.memory_mib >= self.min_memory_mib)
        )


class InstanceTypeMetadata(_Value):
    """What a node spends on the system before workloads: the inputs of capacity planning."""

    provider: str
    system_pods_per_node: int = 0
    system_pods_per_system_node: int = 0
    system_pods_fixed: int = 0
    system_pods_per_node_margin: int = 0
    system_pods_fixed_margin: int = 0
    system_milli_cpu_per_node: int = msgspec.field(default=0, name="systemMilliCPUPerNode")
    system_milli_cpu_fixed: int = msgspec.field(default=0, name="systemMilliCPUFixed")
    karpenter_milli_cpu_per_replica: int = msgspec.field(
        default=0, name="karpenterMilliCPUPerReplica"
    )
    karpenter_replicas: int = 0


class InstanceTypeList(_Value):
    """Sorted by vCPUs, memory, then name; the caller applies `limit`."""

    items: tuple[InstanceType, ...]
    metadata: InstanceTypeMetadata


class ProviderSubnet(_Value):
    subnet_id: str
    cidr: str
    availability_zone: str
    public: bool
    name: str | None = None


class ProviderNetwork(_Value):
    provider: str
    vpc_id: str
    cidr: str
    name: str | None
    az_count: int
    state: str
    tags: dict[str, str]
    subnets: tuple[ProviderSubnet, ...] = ()


class ConnectionCheck(_Value):
    """What `verify` proved: who Sailplane is in the account or cluster."""

    provider: str
    identity: str
    account_id: str | None = None
    message: str = ""


class ConnectionTemplate(_Value):
    """The infrastructure-as-code document a customer deploys for a connection."""

    parameters: dict[str, str]
    body: str
    content_type: str = "text/yaml"
    file_name: str = "sailplane-connection.yaml"


class NetworkSpec(_Value):
    network_id: str
    name: str
    region: str
    cidr: str = "10.0.0.0/16"


class NodeGroupSpec(_Value):
    name: str = "system"
    instance_types: tuple[str, ...] = ("m7g.large",)
    min_size: int = 1
    max_size: int = 3
    desired_size: int = 2
    disk_size_gb: int = 100


class ClusterSpec(_Value):
    """`network_outputs` are the outputs of the network's provision step (its iacOutputs)."""

    cluster_id: str
    name: str
    region: str
    network_outputs: dict[str, str] = {}
    kubernetes_version: str = "1.31"
    system_node_group: NodeGroupSpec = NodeGroupSpec()
    public_access_cidrs: tuple[str, ...] = ()


class ResourceProgress(_Value):
    urn: str
    type: str
    name: str
    operation: str
    status: str


class StepStatus(_Value):
    """Where a provisioning step stands. `outputs` are kept by the caller (iacOutputs)."""

    state: StepState
    stage: str
    message: str = ""
    outputs: dict[str, str] = {}
    resources: tuple[ResourceProgress, ...] = ()

    @property
    def done(self) -> bool:
        return self.state != "running"


class NodeGroupHealth(_Value):
    name: str
    status: str
    desired_size: int
    ready_nodes: int
    message: str = ""


class PodHealth(_Value):
    name: str
    namespace: str
    ready: bool
    phase: str
    restart_count: int
    message: str = ""


class ClusterHealth(_Value):
    status: HealthState
    provider_metadata: dict[str, str]
    node_groups: tuple[NodeGroupHealth, ...]
    system_pods: tuple[PodHealth, ...]
    total_nodes: int
    ready_nodes: int
    message: str = ""


class MetricPoint(_Value):
    timestamp: datetime
    value: float


class ClusterMetrics(_Value):
    """Utilization in percent. `estimatedCost` and `activeJobCount` are Sailplane's own
    figures (jobs, prices), not the provider's; the adapters leave them empty."""

    cpu_utilization: tuple[MetricPoint, ...] = ()
    memory_utilization: tuple[MetricPoint, ...] = ()
    estimated_cost: tuple[MetricPoint, ...] = ()
    active_job_count: tuple[MetricPoint, ...] = ()


class Kubeconfig(_Value):
    kubeconfig: str
    cluster_endpoint: str
    cluster_certificate_authority: str
