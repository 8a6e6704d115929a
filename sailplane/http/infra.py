"""`/api/v1/infra/...` (connections, networks, provisioned clusters), `/operations/{id}` and
`/me/clusters`.

Reading needs `CanViewInfrastructure`; changing anything, templates and kubeconfigs need
`CanManageInfrastructure`. `/me/clusters` lists the workload clusters the caller can run
work on: every cluster with `CanUseClusters` from an organization role, else the ones open
to every member (the built-in `local` cluster).

Provision, update, destroy and template sync answer 202 with the operation (or the
cluster, for an update) and continue in the provisioner.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response
from litestar.params import FromPath, JSONBody, QueryParameter

from sailplane.commands.ports import InstanceTypeQuery, resource_name
from sailplane.contexts import InfraContext
from sailplane.domain.errors import InvalidValueError, NotFoundError
from sailplane.http.auth import Caller, InfraDep, Principal, can_access, requires
from sailplane.http.errors import or_404
from sailplane.http.pagination import (
    SORT_BY,
    Described,
    Limit,
    Marker,
    NormalizedListing,
    PageNumber,
    SortDirection,
    page_of,
)
from sailplane.http.routes import delete, get, patch, post
from sailplane.http.shapes import Shape, from_row, iso

VIEW, MANAGE = "CanViewInfrastructure", "CanManageInfrastructure"
USE_CLUSTERS = "CanUseClusters"  # every workload cluster, not only those open to all members
ACCEPTED = 202


# --- request bodies -------------------------------------------------------------------------


Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
OptionalId = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,20}$")] | None


class ConnectionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Name
    provider: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    provider_config: dict[str, Any] = {}


class ConnectionUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Name | None = None
    provider_config: dict[str, Any] | None = None


class VerifyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    role_arn: Annotated[str, msgspec.Meta(max_length=2048)] | None = None


class NetworkCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    connection_id: OptionalId = None
    name: Name
    region: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    config: dict[str, Any] = {}


class NetworkUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Name | None = None
    config: dict[str, Any] | None = None


class ClusterCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    connection_id: OptionalId = None
    network_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,20}$")]
    name: Name
    region: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    config: dict[str, Any] = {}


class ClusterUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Name | None = None
    config: dict[str, Any] | None = None


# --- response shapes ------------------------------------------------------------------------


class ConnectionOut(Shape):
    id: str
    name: str
    provider: str
    provider_config: dict[str, Any]
    status: str
    status_message: str | None
    last_used_at: str | None
    template_synced_at: str | None
    template_sync_message: str | None
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class NetworkOut(Shape):
    id: str
    connection_id: str
    name: str
    region: str
    provider_network_id: str | None
    config: dict[str, Any]
    iac_state: dict[str, Any]
    iac_outputs: dict[str, Any]
    status: str
    status_message: str | None
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class ExternalClusterOut(Shape):
    id: str
    connection_id: str
    network_id: str
    cluster_id: str
    name: str
    region: str
    status: str
    status_message: str | None
    config: dict[str, Any]
    provider_metadata: dict[str, Any]
    iac_state: dict[str, Any]
    iac_outputs: dict[str, Any]
    job_runner_role_arn: str | None
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str
    last_health_status: str | None
    last_health_message: str | None
    last_health_check_at: str | None


class WorkloadClusterOut(Shape):
    id: str
    name: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str
    external_cluster_id: str
    region: str
    connection_id: str
    network_id: str
    external_status: str
    operation_id: str | None
    provider: str


class OperationOut(Shape):
    id: str
    organization_id: str
    member_id: str | None
    operation: str
    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    progress: dict[str, Any]
    resource_type: str
    resource_id: str
    created_at: str | None
    updated_at: str | None
    started_at: str | None
    completed_at: str | None


class ClusterRef(Shape):
    id: str
    connection_id: str


class MyClusterRef(Shape):
    id: str
    external_cluster_id: str
    connection_id: str


class ClustersIncluded(Shape):
    clusters: list[ExternalClusterOut]
    connections: list[ConnectionOut]
    operations: list[OperationOut]


class NetworksIncluded(Shape):
    networks: list[NetworkOut]
    connections: list[ConnectionOut]
    clusters: list[ExternalClusterOut]
    operations: list[OperationOut]


class MyClustersIncluded(Shape):
    clusters: list[WorkloadClusterOut]
    connections: list[ConnectionOut]
    networks: list[NetworkOut]
    external_clusters: list[ExternalClusterOut]


class ConnectionsIncluded(Shape):
    operations: list[OperationOut]


class ConnectionListing(msgspec.Struct, kw_only=True):
    items: list[ConnectionOut]
    included: ConnectionsIncluded
    marker: str | None


class NetworkListing(msgspec.Struct, kw_only=True):
    items: list[NetworkOut]
    included: NetworksIncluded
    marker: str | None


class Items(msgspec.Struct, kw_only=True):
    items: list[dict[str, Any]]


class InstanceTypes(msgspec.Struct, kw_only=True):
    items: list[dict[str, Any]]
    metadata: dict[str, Any]


class TemplateOut(Shape):
    template_url: str | None
    quick_launch_url: str | None
    download_url: str
    parameters: dict[str, str]


class HealthOut(Shape):
    status: str
    provider_metadata: dict[str, Any]
    node_groups: list[dict[str, Any]]
    system_pods: list[dict[str, Any]]
    total_nodes: int
    ready_nodes: int
    last_checked_at: str | None
    message: str


class KubeconfigOut(Shape):
    kubeconfig: str
    cluster_endpoint: str | None
    cluster_certificate_authority: str | None


# --- rows to shapes -------------------------------------------------------------------------


def connection_out(row: dict[str, Any]) -> ConnectionOut:
    return from_row(ConnectionOut, row)


def _iac_state(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "projectName": "sailplane",
        "stackName": resource_name(kind, row["id"], row["organization_id"]),
    }


def network_out(row: dict[str, Any]) -> NetworkOut:
    return from_row(NetworkOut, row, iac_state=_iac_state("network", row))


def external_cluster_out(row: dict[str, Any]) -> ExternalClusterOut:
    outputs = row["iac_outputs"]
    return from_row(
        ExternalClusterOut,
        row,
        provider_metadata=outputs.get("providerMetadata", {}),
        iac_state=_iac_state("cluster", row),
        job_runner_role_arn=outputs.get("jobRunnerRoleArn"),
        last_health_status=None,
        last_health_message=None,
        last_health_check_at=None,
    )


def workload_cluster_out(row: dict[str, Any]) -> WorkloadClusterOut:
    return from_row(WorkloadClusterOut, row)


def operation_out(row: dict[str, Any]) -> OperationOut:
    return from_row(OperationOut, row)


def connection_row(infra: InfraContext, principal: Principal, connection_id: str) -> dict[str, Any]:
    return or_404(
        infra.clusters.connection(principal.organization_id, connection_id),
        "connection",
        connection_id,
    )


def network_row(
    infra: InfraContext, principal: Principal, network_id: str, connection_id: str | None = None
) -> dict[str, Any]:
    row = infra.clusters.network(principal.organization_id, network_id)
    if row is not None and connection_id is not None and row["connection_id"] != connection_id:
        row = None
    return or_404(row, "network", network_id)


def external_row(
    infra: InfraContext, principal: Principal, cluster_id: str, connection_id: str | None = None
) -> dict[str, Any]:
    row = infra.clusters.external_cluster(principal.organization_id, cluster_id)
    if row is not None and connection_id is not None and row["connection_id"] != connection_id:
        row = None
    return or_404(row, "cluster", cluster_id)


def accepted(
    infra: InfraContext, principal: Principal, started: tuple[str, int]
) -> Response[OperationOut]:
    """202 with the operation a use case started, once the views show it."""
    operation_id, position = started
    infra.wait_for_views(position)
    row = or_404(
        infra.clusters.operation(principal.organization_id, operation_id),
        "operation",
        operation_id,
    )
    return Response(operation_out(row), status_code=ACCEPTED)


def _operations(infra: InfraContext, org: str, ids: list[str | None]) -> list[OperationOut]:
    wanted = sorted({i for i in ids if i})
    return (
        [operation_out(r) for r in infra.clusters.operations_by_id(org, wanted)] if wanted else []
    )


def _ref(row: dict[str, Any]) -> ClusterRef:
    return ClusterRef(id=row["id"], connection_id=row["connection_id"])


def _clusters_included(
    infra: InfraContext, org: str, rows: list[dict[str, Any]]
) -> ClustersIncluded:
    connections = infra.clusters.connections_by_id(org, sorted({r["connection_id"] for r in rows}))
    return ClustersIncluded(
        clusters=[external_cluster_out(r) for r in rows],
        connections=[connection_out(c) for c in connections],
        operations=_operations(infra, org, [r["operation_id"] for r in rows]),
    )


def _cluster_listing(
    infra: InfraContext, org: str, page: tuple[int, list[dict[str, Any]], str | None]
) -> NormalizedListing[ClusterRef, ClustersIncluded]:
    total, rows, marker = page
    return NormalizedListing(
        total=total,
        items=[_ref(r) for r in rows],
        included=_clusters_included(infra, org, rows),
        marker=marker,
    )


def _network_listing(
    infra: InfraContext, org: str, page: tuple[int, list[dict[str, Any]], str | None]
) -> NetworkListing:
    _, rows, marker = page
    return NetworkListing(
        items=[network_out(r) for r in rows],
        included=_networks_included(infra, org, rows),
        marker=marker,
    )


def _networks_included(
    infra: InfraContext, org: str, rows: list[dict[str, Any]]
) -> NetworksIncluded:
    connections = infra.clusters.connections_by_id(org, sorted({r["connection_id"] for r in rows}))
    clusters = infra.clusters.external_clusters_in_networks(org, [r["id"] for r in rows])
    return NetworksIncluded(
        networks=[network_out(r) for r in rows],
        connections=[connection_out(c) for c in connections],
        clusters=[external_cluster_out(c) for c in clusters],
        operations=_operations(infra, org, [r["operation_id"] for r in rows]),
    )


_PERIOD = re.compile(r"^(\d{1,4})([mhd])$")


def _period(value: str) -> timedelta:
    match = _PERIOD.match(value)
    if not match or int(match.group(1)) == 0:
        raise InvalidValueError("period must be like 30m, 1h, 24h or 7d.", field="period")
    amount, unit = int(match.group(1)), match.group(2)
    period = {
        "m": timedelta(minutes=amount),
        "h": timedelta(hours=amount),
        "d": timedelta(days=amount),
    }[unit]
    if period > timedelta(days=90):
        raise InvalidValueError("period must be at most 90d.", field="period")
    return period


Region = Annotated[
    str | None, QueryParameter(description="The region (default: the connection's).")
]
Architecture = Annotated[
    Literal["x86_64", "arm64"] | None,
    QueryParameter(description="Filter by architecture (x86_64 or arm64)"),
]
MinVCpus = Annotated[
    int | None, QueryParameter(name="minVCpus", ge=1, description="Minimum number of vCPUs")
]
MinMemory = Annotated[
    int | None, QueryParameter(name="minMemoryMiB", ge=1024, description="Minimum memory in MiB")
]


# --- controllers ----------------------------------------------------------------------------


class ConnectionController(Controller):
    path = "/infra/connections"
    tags = ["connections"]

    @get("/", operation_id="ListConnections", guards=[requires(VIEW)])
    def list_connections(
        self, infra: InfraDep, principal: Caller, limit: Limit = 100, marker: Marker = None
    ) -> ConnectionListing:
        """List the organization's connections, oldest first."""
        _, rows, next_marker = infra.clusters.connections(
            principal.organization_id, limit=limit, marker=marker
        )
        return ConnectionListing(
            items=[connection_out(r) for r in rows],
            included=ConnectionsIncluded(operations=[]),
            marker=next_marker,
        )

    @post("/", operation_id="CreateConnection", guards=[requires(MANAGE)])
    def create_connection(
        self, infra: InfraDep, principal: Caller, data: JSONBody[ConnectionCreate]
    ) -> ConnectionOut:
        """Create a connection (`aws`, `kubernetes` or `local`)."""
        connection_id, position = infra.commands.create_connection(
            name=data.name,
            provider=data.provider,
            provider_config=data.provider_config,
            by=principal.actor,
        )
        infra.wait_for_views(position)
        return connection_out(connection_row(infra, principal, connection_id))

    @get(
        "/{connection:str}",
        operation_id="DescribeConnection",
        guards=[requires(VIEW)],
    )
    def describe_connection(
        self, infra: InfraDep, principal: Caller, connection: FromPath[str]
    ) -> ConnectionOut:
        """Describe a connection; secret settings are never shown."""
        return connection_out(connection_row(infra, principal, connection))

    @patch(
        "/{connection:str}",
        operation_id="UpdateConnection",
        guards=[requires(MANAGE)],
    )
    def update_connection(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        data: JSONBody[ConnectionUpdate],
    ) -> ConnectionOut:
        """Rename a connection or replace its providerConfig."""
        infra.wait_for_views(
            infra.commands.update_connection(
                connection, name=data.name, provider_config=data.provider_config, by=principal.actor
            )
        )
        return connection_out(connection_row(infra, principal, connection))

    @delete(
        "/{connection:str}",
        operation_id="DeleteConnection",
        guards=[requires(MANAGE)],
    )
    def delete_connection(
        self, infra: InfraDep, principal: Caller, connection: FromPath[str]
    ) -> None:
        """Delete a connection whose networks and clusters are destroyed (409 otherwise)."""
        infra.wait_for_views(infra.commands.delete_connection(connection, by=principal.actor))

    @post(
        "/{connection:str}/verify",
        operation_id="VerifyConnection",
        guards=[requires(MANAGE)],
        status_code=200,
    )
    def verify_connection(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        data: JSONBody[VerifyRequest],
    ) -> ConnectionOut:
        """Check the connection with its provider: `active` when it works, `failed` with the reason."""
        infra.wait_for_views(
            infra.commands.verify_connection(connection, role_arn=data.role_arn, by=principal.actor)
        )
        return connection_out(connection_row(infra, principal, connection))

    @get(
        "/{connection:str}/regions",
        operation_id="ListConnectionRegions",
        guards=[requires(VIEW)],
    )
    def list_regions(self, infra: InfraDep, principal: Caller, connection: FromPath[str]) -> Items:
        """List the provider's regions."""
        return Items(items=infra.commands.regions(connection, by=principal.actor))

    @get(
        "/{connection:str}/instance-types",
        operation_id="ListConnectionInstanceTypes",
        guards=[requires(VIEW)],
    )
    def list_instance_types(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        region: Region = None,
        limit: Limit = 100,
        architecture: Architecture = None,
        min_vcpus: MinVCpus = None,
        min_memory_mib: MinMemory = None,
    ) -> InstanceTypes:
        """List the instance types the provider offers, filtered."""
        offered = infra.commands.instance_types(
            connection,
            InstanceTypeQuery(region, architecture, min_vcpus, min_memory_mib),
            by=principal.actor,
        )
        return InstanceTypes(items=offered.items[:limit], metadata={"provider": offered.provider})

    @get(
        "/{connection:str}/provider-networks",
        operation_id="ListConnectionProviderNetworks",
        guards=[requires(VIEW)],
    )
    def list_provider_networks(
        self, infra: InfraDep, principal: Caller, connection: FromPath[str], region: Region = None
    ) -> Items:
        """List the networks that exist at the provider."""
        return Items(
            items=infra.commands.provider_networks(connection, region=region, by=principal.actor)
        )

    @get(
        "/{connection:str}/template",
        operation_id="GetConnectionTemplate",
        guards=[requires(MANAGE)],
    )
    def get_template(
        self, infra: InfraDep, principal: Caller, connection: FromPath[str]
    ) -> TemplateOut:
        """The connection's infrastructure template: its URLs and parameters."""
        download = f"/api/v1/infra/connections/{connection}/template/download"
        template = infra.commands.template(connection, download_url=download, by=principal.actor)
        return TemplateOut(
            template_url=template.template_url,
            quick_launch_url=template.quick_launch_url,
            download_url=download,
            parameters=template.parameters,
        )

    @get(
        "/{connection:str}/template/download",
        operation_id="DownloadConnectionTemplate",
        guards=[requires(MANAGE)],
        media_type="text/yaml",
    )
    def download_template(
        self, infra: InfraDep, principal: Caller, connection: FromPath[str]
    ) -> Response[str]:
        """The template as YAML with the parameters' defaults filled in."""
        template = infra.commands.template(connection, download_url="", by=principal.actor)
        return Response(
            template.body,
            media_type="text/yaml",
            headers={
                "Content-Disposition": f'attachment; filename="sailplane-connection-{connection}.yaml"'
            },
        )

    @post(
        "/{connection:str}/sync-template",
        operation_id="SyncConnectionTemplate",
        guards=[requires(MANAGE)],
        status_code=ACCEPTED,
    )
    def sync_template(
        self, infra: InfraDep, principal: Caller, connection: FromPath[str]
    ) -> Response[OperationOut]:
        """Update the connection's stack to the latest template (an operation)."""
        return accepted(
            infra, principal, infra.commands.sync_template(connection, by=principal.actor)
        )


class NetworkController(Controller):
    path = "/infra"
    tags = ["networks"]

    @get("/networks", operation_id="ListNetworks", guards=[requires(VIEW)])
    def list_networks(
        self, infra: InfraDep, principal: Caller, limit: Limit = 100, marker: Marker = None
    ) -> NetworkListing:
        """List every network of the organization, oldest first."""
        org = principal.organization_id
        return _network_listing(
            infra, org, infra.clusters.networks(org, connection_id=None, limit=limit, marker=marker)
        )

    @delete(
        "/networks/{network:str}",
        operation_id="DeleteNetwork",
        guards=[requires(MANAGE)],
    )
    def delete_network(self, infra: InfraDep, principal: Caller, network: FromPath[str]) -> None:
        """Delete a destroyed or never-provisioned network record (409 otherwise)."""
        infra.wait_for_views(infra.commands.delete_network(network, by=principal.actor))

    @get(
        "/connections/{connection:str}/networks",
        operation_id="ListConnectionNetworks",
        guards=[requires(VIEW)],
    )
    def list_connection_networks(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> NetworkListing:
        """List a connection's networks, oldest first."""
        org = principal.organization_id
        connection_row(infra, principal, connection)
        return _network_listing(
            infra,
            org,
            infra.clusters.networks(org, connection_id=connection, limit=limit, marker=marker),
        )

    @post(
        "/connections/{connection:str}/networks",
        operation_id="CreateNetwork",
        guards=[requires(MANAGE)],
    )
    def create_network(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        data: JSONBody[NetworkCreate],
    ) -> NetworkOut:
        """Create a network (pending) in an active connection."""
        _body_connection(data.connection_id, connection)
        network_id, position = infra.commands.create_network(
            connection, name=data.name, region=data.region, config=data.config, by=principal.actor
        )
        infra.wait_for_views(position)
        return network_out(network_row(infra, principal, network_id))

    @get(
        "/connections/{connection:str}/networks/{network:str}",
        operation_id="DescribeNetwork",
        guards=[requires(VIEW)],
    )
    def describe_network(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        network: FromPath[str],
    ) -> Described[ClusterRef, NetworksIncluded]:
        """Describe a network with its connection, clusters and last operation."""
        connection_row(infra, principal, connection)
        row = network_row(infra, principal, network, connection)
        return Described(
            item=_ref(row), included=_networks_included(infra, principal.organization_id, [row])
        )

    @patch(
        "/connections/{connection:str}/networks/{network:str}",
        operation_id="UpdateNetwork",
        guards=[requires(MANAGE)],
    )
    def update_network(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        network: FromPath[str],
        data: JSONBody[NetworkUpdate],
    ) -> NetworkOut:
        """Rename a network (metadata only; its configuration is fixed once created)."""
        if (
            data.config is not None
            and data.config != network_row(infra, principal, network, connection)["config"]
        ):
            raise InvalidValueError(
                "A network's config cannot change; create another network.", field="config"
            )
        infra.wait_for_views(
            infra.commands.update_network(connection, network, name=data.name, by=principal.actor)
        )
        return network_out(network_row(infra, principal, network, connection))

    @delete(
        "/connections/{connection:str}/networks/{network:str}",
        operation_id="DestroyNetwork",
        guards=[requires(MANAGE)],
        status_code=ACCEPTED,
    )
    def destroy_network(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        network: FromPath[str],
    ) -> Response[OperationOut]:
        """Destroy a network's infrastructure (an operation); the record stays."""
        return accepted(
            infra,
            principal,
            infra.commands.destroy_network(connection, network, by=principal.actor),
        )

    @post(
        "/connections/{connection:str}/networks/{network:str}/provision",
        operation_id="ProvisionNetwork",
        guards=[requires(MANAGE)],
        status_code=ACCEPTED,
    )
    def provision_network(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        network: FromPath[str],
    ) -> Response[OperationOut]:
        """Provision a pending (or failed) network (an operation)."""
        return accepted(
            infra,
            principal,
            infra.commands.provision_network(connection, network, by=principal.actor),
        )


def _body_connection(body_id: str | None, path_id: str) -> None:
    if body_id is not None and body_id != path_id:
        raise InvalidValueError(
            "connectionId must match the connection in the path.", field="connectionId"
        )


class ClusterController(Controller):
    path = "/infra"
    tags = ["clusters"]

    @get(
        "/clusters",
        operation_id="ListExternalClusters",
        guards=[requires(VIEW)],
    )
    def list_clusters(
        self, infra: InfraDep, principal: Caller, limit: Limit = 100, marker: Marker = None
    ) -> NormalizedListing[ClusterRef, ClustersIncluded]:
        """List every provisioned cluster of the organization, oldest first."""
        org = principal.organization_id
        return _cluster_listing(
            infra,
            org,
            infra.clusters.external_clusters(org, connection_id=None, limit=limit, marker=marker),
        )

    @get(
        "/clusters/{cluster:str}",
        operation_id="DescribeExternalCluster",
        guards=[requires(VIEW)],
    )
    def describe_cluster(
        self, infra: InfraDep, principal: Caller, cluster: FromPath[str]
    ) -> Described[ClusterRef, ClustersIncluded]:
        """Describe a provisioned cluster with its connection and last operation."""
        row = external_row(infra, principal, cluster)
        return Described(
            item=_ref(row), included=_clusters_included(infra, principal.organization_id, [row])
        )

    @delete(
        "/clusters/{cluster:str}",
        operation_id="DeleteExternalCluster",
        guards=[requires(MANAGE)],
    )
    def delete_cluster(self, infra: InfraDep, principal: Caller, cluster: FromPath[str]) -> None:
        """Delete a destroyed or never-provisioned cluster record and its workload cluster (409 otherwise)."""
        infra.wait_for_views(infra.commands.delete_cluster(cluster, by=principal.actor))

    @get(
        "/connections/{connection:str}/clusters",
        operation_id="ListConnectionClusters",
        guards=[requires(VIEW)],
    )
    def list_connection_clusters(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        limit: Limit = 100,
        marker: Marker = None,
    ) -> NormalizedListing[ClusterRef, ClustersIncluded]:
        """List a connection's provisioned clusters, oldest first."""
        org = principal.organization_id
        connection_row(infra, principal, connection)
        return _cluster_listing(
            infra,
            org,
            infra.clusters.external_clusters(
                org, connection_id=connection, limit=limit, marker=marker
            ),
        )

    @post(
        "/connections/{connection:str}/clusters",
        operation_id="CreateExternalCluster",
        guards=[requires(MANAGE)],
    )
    def create_cluster(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        data: JSONBody[ClusterCreate],
    ) -> ExternalClusterOut:
        """Create a cluster (pending) on an active network, with its workload cluster."""
        _body_connection(data.connection_id, connection)
        cluster_id, position = infra.commands.create_cluster(
            connection,
            network_id=data.network_id,
            name=data.name,
            region=data.region,
            config=data.config,
            by=principal.actor,
        )
        infra.wait_for_views(position)
        return external_cluster_out(external_row(infra, principal, cluster_id))

    @get(
        "/connections/{connection:str}/clusters/{cluster:str}",
        operation_id="DescribeConnectionCluster",
        guards=[requires(VIEW)],
    )
    def describe_connection_cluster(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        cluster: FromPath[str],
    ) -> Described[ClusterRef, ClustersIncluded]:
        """Describe a provisioned cluster of a connection."""
        connection_row(infra, principal, connection)
        row = external_row(infra, principal, cluster, connection)
        return Described(
            item=_ref(row), included=_clusters_included(infra, principal.organization_id, [row])
        )

    @post(
        "/connections/{connection:str}/clusters/{cluster:str}",
        operation_id="UpdateExternalCluster",
        guards=[requires(MANAGE)],
        status_code=ACCEPTED,
    )
    def update_cluster(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        cluster: FromPath[str],
        data: JSONBody[ClusterUpdate],
    ) -> ExternalClusterOut:
        """Rename a cluster, or change its configuration (an update operation; active only)."""
        _, position = infra.commands.update_cluster(
            connection, cluster, name=data.name, config=data.config, by=principal.actor
        )
        infra.wait_for_views(position)
        return external_cluster_out(external_row(infra, principal, cluster, connection))

    @delete(
        "/connections/{connection:str}/clusters/{cluster:str}",
        operation_id="DestroyExternalCluster",
        guards=[requires(MANAGE)],
        status_code=ACCEPTED,
    )
    def destroy_cluster(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        cluster: FromPath[str],
    ) -> Response[OperationOut]:
        """Destroy an active or failed cluster's infrastructure (an operation); the record stays."""
        return accepted(
            infra,
            principal,
            infra.commands.destroy_cluster(connection, cluster, by=principal.actor),
        )

    @post(
        "/connections/{connection:str}/clusters/{cluster:str}/provision",
        operation_id="ProvisionExternalCluster",
        guards=[requires(MANAGE)],
        status_code=ACCEPTED,
    )
    def provision_cluster(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        cluster: FromPath[str],
    ) -> Response[OperationOut]:
        """Provision a pending (or failed) cluster (an operation)."""
        return accepted(
            infra,
            principal,
            infra.commands.provision_cluster(connection, cluster, by=principal.actor),
        )

    @get(
        "/connections/{connection:str}/clusters/{cluster:str}/health",
        operation_id="GetExternalClusterHealth",
        guards=[requires(VIEW)],
    )
    def cluster_health(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        cluster: FromPath[str],
    ) -> HealthOut:
        """Check the cluster now (a local cluster runs SELECT 1)."""
        report = infra.commands.cluster_health(connection, cluster, by=principal.actor)
        return HealthOut(
            status=report.health.status,
            provider_metadata={"status": report.cluster_status, "checks": report.health.checks},
            node_groups=[],
            system_pods=[],
            total_nodes=0,
            ready_nodes=0,
            last_checked_at=iso(infra.clock()),
            message=report.health.message,
        )

    @get(
        "/connections/{connection:str}/clusters/{cluster:str}/kubeconfig",
        operation_id="GetExternalClusterKubeconfig",
        guards=[requires(MANAGE)],
    )
    def cluster_kubeconfig(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        cluster: FromPath[str],
    ) -> KubeconfigOut:
        """A kubeconfig for the cluster (409 for a provider without one)."""
        kubeconfig = infra.commands.kubeconfig(connection, cluster, by=principal.actor)
        return KubeconfigOut(
            kubeconfig=kubeconfig.text,
            cluster_endpoint=kubeconfig.endpoint,
            cluster_certificate_authority=kubeconfig.certificate_authority,
        )

    @get(
        "/connections/{connection:str}/clusters/{cluster:str}/metrics",
        operation_id="GetExternalClusterMetrics",
        guards=[requires(VIEW)],
    )
    def cluster_metrics(
        self,
        infra: InfraDep,
        principal: Caller,
        connection: FromPath[str],
        cluster: FromPath[str],
        period: Annotated[
            str, QueryParameter(description='The period, e.g. "1h", "24h", "7d".')
        ] = "1h",
    ) -> dict[str, list[dict[str, Any]]]:
        """CPU and memory utilization over the period."""
        return infra.commands.cluster_metrics(
            connection, cluster, window=_period(period), by=principal.actor
        )


class OperationController(Controller):
    path = "/operations"
    tags = ["operations"]

    @get(
        "/{operationId:str}",
        operation_id="GetOperation",
        guards=[requires(VIEW)],
    )
    def get_operation(
        self,
        infra: InfraDep,
        principal: Caller,
        operationId: FromPath[str],
    ) -> OperationOut:
        """The status, progress, result and error of a long-running operation."""
        row = infra.clusters.operation(principal.organization_id, operationId)
        return operation_out(or_404(row, "operation", operationId))


MyClusterSortBy = Annotated[Literal["name"], SORT_BY]


class MyClustersController(Controller):
    path = "/me/clusters"
    tags = ["clusters"]

    @get("/", operation_id="ListMyClusters", guards=[requires(VIEW)])
    def list_my_clusters(
        self,
        infra: InfraDep,
        principal: Caller,
        limit: Limit = 100,
        page: PageNumber = 1,
        sort_by: MyClusterSortBy = "name",
        sort_direction: SortDirection = "asc",
        marker: Marker = None,
    ) -> NormalizedListing[MyClusterRef, MyClustersIncluded]:
        """List the workload clusters the caller can run jobs and sessions on, by name."""
        org = principal.organization_id
        total, rows, next_marker = infra.clusters.reachable_clusters(
            org,
            everything=can_access(principal, USE_CLUSTERS),
            page=page_of(page, limit),
            descending=sort_direction == "desc",
            marker=marker,
        )
        return NormalizedListing(
            total=total,
            items=[_my_ref(r) for r in rows],
            included=_my_included(infra, org, rows),
            marker=next_marker,
        )

    @get(
        "/{cluster:str}",
        operation_id="DescribeMyCluster",
        guards=[requires(VIEW)],
    )
    def describe_my_cluster(
        self, infra: InfraDep, principal: Caller, cluster: FromPath[str]
    ) -> Described[MyClusterRef, MyClustersIncluded]:
        """Describe a workload cluster the caller can reach (404 otherwise)."""
        row = infra.clusters.cluster(principal.organization_id, cluster)
        if row is None or not can_access(
            principal, USE_CLUSTERS, open_to_caller=row["open_to_all_members"]
        ):
            raise NotFoundError.of("cluster", cluster)
        return Described(
            item=_my_ref(row), included=_my_included(infra, principal.organization_id, [row])
        )


def _my_ref(row: dict[str, Any]) -> MyClusterRef:
    return MyClusterRef(
        id=row["id"],
        external_cluster_id=row["external_cluster_id"],
        connection_id=row["connection_id"],
    )


def _my_included(infra: InfraContext, org: str, rows: list[dict[str, Any]]) -> MyClustersIncluded:
    view = infra.clusters
    return MyClustersIncluded(
        clusters=[workload_cluster_out(r) for r in rows],
        connections=[
            connection_out(c)
            for c in view.connections_by_id(org, sorted({r["connection_id"] for r in rows}))
        ],
        networks=[
            network_out(n)
            for n in view.networks_by_id(org, sorted({r["network_id"] for r in rows}))
        ],
        external_clusters=[
            external_cluster_out(e)
            for e in view.external_clusters_by_id(
                org, sorted({r["external_cluster_id"] for r in rows})
            )
        ],
    )
