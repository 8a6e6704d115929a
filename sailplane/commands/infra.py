"""Infrastructure use cases: connections, networks, clusters and their operations.

The HTTP layer calls the user-facing use cases (create, provision, destroy, ...); each
provision, update, destroy or template sync saves an `Operation` together with the
resource's new status. The provisioner consumer then calls `start_operation`,
`record_progress` and `finish_operation` as it performs the provider's steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from eventsourcing.persistence import Tracking

from sailplane.commands.base import Clock, SailplaneApplication, utc_now
from sailplane.commands.ports import (
    ClusterSpec,
    ConnectionSpec,
    Health,
    InstanceTypeQuery,
    NetworkSpec,
    Provider,
    ProviderError,
    Providers,
    Template,
    Unsupported,
)
from sailplane.commands.workloads import SecretBox
from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import ConflictError, InvalidValueError, NotFoundError
from sailplane.domain.identity import Organization
from sailplane.domain.ids import derived_id, new_id
from sailplane.domain.infra import (
    ACTIVE,
    DESTROYED,
    LOCAL,
    PENDING,
    UPDATING,
    Cluster,
    Connection,
    ExternalCluster,
    Network,
    Operation,
    check_provider,
    wrong_state,
)
from sailplane.storage import EventLog

A = TypeVar("A", bound=SailplaneAggregate)

LOCAL_NAME = "local"
RUNNING = (ACTIVE, UPDATING)  # a cluster in these states answers health, kubeconfig and metrics


@dataclass(frozen=True)
class LocalCluster:
    connection_id: str
    network_id: str
    external_cluster_id: str
    cluster_id: str
    position: int  # when it existed already: the log's position now, which covers its creation


@dataclass(frozen=True)
class ClusterHealth:
    cluster_status: str  # the provisioned cluster's own status
    health: Health  # what the provider reports now ("unknown" unless the cluster runs)


@dataclass(frozen=True)
class InstanceTypes:
    provider: str
    items: list[dict[str, Any]]


@dataclass(frozen=True)
class Kubeconfig:
    text: str
    endpoint: str | None
    certificate_authority: str | None


def local_ids(organization_id: str) -> tuple[str, str, str, str]:
    """The derived ids of an organization's local connection, network, provisioned and workload cluster."""
    return (
        derived_id("local-connection", organization_id),
        derived_id("local-network", organization_id),
        derived_id("local-external-cluster", organization_id),
        derived_id("local-cluster", organization_id),
    )


class InfraLookup(Protocol):
    def live_children(
        self,
        organization_id: str,
        *,
        connection_id: str | None = None,
        network_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Networks and clusters (of a connection), or clusters (of a network), not deleted."""


class Infra(SailplaneApplication):
    def __init__(
        self,
        log: EventLog,
        *,
        providers: Providers,
        secret_box: SecretBox,
        lookup: InfraLookup,
        clock: Clock = utc_now,
    ) -> None:
        self.providers = providers
        self.secret_box = secret_box
        self.lookup = lookup  # the clusters view
        super().__init__(log, clock=clock)

    # --- the local cluster ---------------------------------------------------------------

    def ensure_local_cluster(
        self, organization_id: str, *, tracking: Tracking | None = None
    ) -> LocalCluster:
        """The organization's `local` connection, network and active cluster, created once.

        Ids derive from the organization, so concurrent or repeated calls create nothing twice
        (a racing second save fails the store's version check and finds the first one's).
        """
        connection_id, network_id, external_id, cluster_id = local_ids(organization_id)
        if self._find(Cluster, cluster_id) is not None:
            return self._existing_local(organization_id)
        by = Actor.system("bootstrap", organization_id)
        at = self.clock()
        connection = Connection.create(
            id=connection_id,
            name=LOCAL_NAME,
            provider=LOCAL,
            provider_config={},
            sealed_secrets={},
            status=ACTIVE,
            status_message="Sail on the Sailplane host.",
            by=by,
            at=at,
        )
        network = Network.create(
            id=network_id,
            connection_id=connection_id,
            name=LOCAL_NAME,
            region=LOCAL,
            config={"cidr": "127.0.0.0/8"},
            provider_network_id="loopback",
            status=ACTIVE,
            by=by,
            at=at,
        )
        external = ExternalCluster.create(
            id=external_id,
            connection_id=connection_id,
            network_id=network_id,
            cluster_id=cluster_id,
            name=LOCAL_NAME,
            region=LOCAL,
            config={},
            status=ACTIVE,
            by=by,
            at=at,
        )
        cluster = Cluster.create_for(
            external, provider=LOCAL, open_to_all_members=True, by=by, at=at
        )
        try:
            position = self._commit(connection, network, external, cluster, tracking=tracking)
        except ConflictError:
            if self._find(Cluster, cluster_id) is not None:
                return self._existing_local(organization_id)  # created by a concurrent call
            raise
        return LocalCluster(connection_id, network_id, external_id, cluster_id, position)

    def ensure_local_cluster_of_founded(
        self, organization_id: str, *, tracking: Tracking | None = None
    ) -> int:
        """The provisioner, for a new organization: its local cluster (when the organization is
        in this store; a broker shared with another installation carries others)."""
        if self._find(Organization, organization_id) is None:
            return 0
        return self.ensure_local_cluster(organization_id, tracking=tracking).position

    def _existing_local(self, organization_id: str) -> LocalCluster:
        """The existing local cluster, with a position that a read-your-writes wait can use."""
        return LocalCluster(*local_ids(organization_id), self.recorder.max_notification_id() or 0)

    # --- connections ---------------------------------------------------------------------

    def create_connection(
        self, *, name: str, provider: str, provider_config: dict[str, Any], by: Actor
    ) -> tuple[str, int]:
        adapter = self.providers.get(check_provider(provider))
        connection_id = new_id()
        config, secrets = adapter.check_config(provider_config, connection_id=connection_id)
        connection = Connection.create(
            id=connection_id,
            name=name,
            provider=provider,
            provider_config=config,
            sealed_secrets=self._seal(secrets),
            status=adapter.initial_status(),
            by=by,
            at=self.clock(),
        )
        return connection.id, self._commit(connection)

    def update_connection(
        self,
        connection_id: str,
        *,
        name: str | None,
        provider_config: dict[str, Any] | None,
        by: Actor,
    ) -> int:
        connection = self._connection(connection_id, by)
        config, sealed = connection.provider_config, connection.sealed_secrets
        if provider_config is not None:
            adapter = self.providers.get(connection.provider)
            given = {**self._carried_over(connection, adapter, provider_config), **provider_config}
            config, secrets = adapter.check_config(given, connection_id=connection.id)
            sealed = self._seal(secrets)
        connection.update(
            name=connection.name if name is None else name,
            provider_config=config,
            sealed_secrets=sealed,
            by=by,
            at=self.clock(),
        )
        return self._commit(connection)

    def _carried_over(
        self, connection: Connection, adapter: Provider, provider_config: dict[str, Any]
    ) -> dict[str, Any]:
        """What an update keeps that the client did not re-send: the secret settings (a
        kubeconfig) and what verification wrote (a role ARN and account id), unless the
        client names one of those (a `null` clears it)."""
        kept: dict[str, Any] = {
            k: self.secret_box.open(v)
            for k, v in connection.sealed_secrets.items()
            if k not in provider_config
        }
        verified = adapter.verified_settings
        if not any(k in provider_config for k in verified):
            kept.update(
                {
                    k: connection.provider_config[k]
                    for k in verified
                    if k in connection.provider_config
                }
            )
        return kept

    def verify_connection(self, connection_id: str, *, role_arn: str | None, by: Actor) -> int:
        connection = self._connection(connection_id, by)
        adapter = self.providers.get(connection.provider)
        result = adapter.verify(self.connection_spec(connection), role_arn=role_arn)
        connection.record_verification(
            ok=result.ok,
            message=result.message,
            provider_config={**connection.provider_config, **result.provider_config},
            by=by,
            at=self.clock(),
        )
        return self._commit(connection)

    def delete_connection(self, connection_id: str, *, by: Actor) -> int:
        connection = self._connection(connection_id, by)
        self._refuse_builtin(connection.id, by, "delete")
        holding = [
            f"{c['kind']} {c['id']} ({c['status']})"
            for c in self.lookup.live_children(by.organization_id, connection_id=connection.id)
            if c["status"] not in (DESTROYED, PENDING)
        ]
        if holding:
            raise ConflictError(
                f"Cannot delete connection {connection.id}: destroy its networks and clusters "
                f"first ({', '.join(holding)}).",
                code="connection_in_use",
            )
        connection.delete(by=by, at=self.clock())
        return self._commit(connection)

    def sync_template(self, connection_id: str, *, by: Actor) -> tuple[str, int]:
        connection = self._connection(connection_id, by)
        connection.check_active("sync the template of")
        adapter = self.providers.get(connection.provider)
        if not adapter.supports_templates:
            raise Unsupported(
                f"Connection {connection.id} ({connection.provider}) has no infrastructure template to sync."
            )
        operation = self._operation("sync_template", connection.id, connection.id, by)
        return operation.id, self._commit(operation)

    # --- what the provider reports (reads of the provider, nothing saved) ------------------

    def regions(self, connection_id: str, *, by: Actor) -> list[dict[str, Any]]:
        adapter, spec = self._provider_of(connection_id, by)
        return adapter.regions(spec)

    def instance_types(
        self, connection_id: str, wanted: InstanceTypeQuery, *, by: Actor
    ) -> InstanceTypes:
        """The provider's instance types in the region (default: the connection's), filtered."""
        adapter, spec = self._provider_of(connection_id, by)
        items = adapter.instance_types(
            spec, replace(wanted, region=wanted.region or spec.config.get("region"))
        )
        return InstanceTypes(provider=spec.provider, items=items)

    def provider_networks(
        self, connection_id: str, *, region: str | None, by: Actor
    ) -> list[dict[str, Any]]:
        adapter, spec = self._provider_of(connection_id, by)
        return adapter.provider_networks(spec, region=region or spec.config.get("region"))

    def template(self, connection_id: str, *, download_url: str, by: Actor) -> Template:
        adapter, spec = self._provider_of(connection_id, by)
        return adapter.template(spec, download_url=download_url)

    def cluster_health(self, connection_id: str, external_id: str, *, by: Actor) -> ClusterHealth:
        """The provider's check of the cluster now; "unknown" unless the cluster runs."""
        adapter, connection, external, spec = self._cluster_of(connection_id, external_id, by)
        if external.status not in RUNNING:
            health = Health(status="unknown", message=f"The cluster is {external.status}.")
        else:
            health = adapter.health(connection, spec)
        return ClusterHealth(cluster_status=external.status, health=health)

    def kubeconfig(self, connection_id: str, external_id: str, *, by: Actor) -> Kubeconfig:
        """A kubeconfig for a running cluster (409 otherwise, or for a provider without one)."""
        adapter, connection, external, spec = self._cluster_of(connection_id, external_id, by)
        if external.status not in RUNNING:
            raise wrong_state(
                "cluster", external_id, external.status, "get the kubeconfig of", RUNNING
            )
        return Kubeconfig(
            text=adapter.kubeconfig(connection, spec),
            endpoint=spec.outputs.get("clusterEndpoint"),
            certificate_authority=spec.outputs.get("clusterCertificateAuthority"),
        )

    def cluster_metrics(
        self, connection_id: str, external_id: str, *, window: timedelta, by: Actor
    ) -> dict[str, list[dict[str, Any]]]:
        """CPU and memory utilization over the window that ends now."""
        adapter, connection, _, spec = self._cluster_of(connection_id, external_id, by)
        end = self.clock()
        return adapter.metrics(
            connection,
            spec,
            start=end - window,
            end=end,
            period_seconds=max(60, int(window.total_seconds() // 60)),
        )

    # --- networks ------------------------------------------------------------------------

    def create_network(
        self,
        connection_id: str,
        *,
        name: str,
        region: str | None,
        config: dict[str, Any],
        by: Actor,
    ) -> tuple[str, int]:
        connection = self._connection(connection_id, by)
        connection.check_active("create a network in")
        network = Network.create(
            id=new_id(),
            connection_id=connection.id,
            name=name,
            region=self._region(connection, region),
            config=config,
            provider_network_id=None,
            by=by,
            at=self.clock(),
        )
        return network.id, self._commit(network)

    def update_network(
        self, connection_id: str, network_id: str, *, name: str | None, by: Actor
    ) -> int:
        network = self._network(network_id, by, connection_id=connection_id)
        if name is not None:
            network.rename(name, by=by, at=self.clock())
        return self._commit(network)

    def provision_network(
        self, connection_id: str, network_id: str, *, by: Actor
    ) -> tuple[str, int]:
        network = self._network(network_id, by, connection_id=connection_id)
        self._connection(network.connection_id, by).check_active("provision a network in")
        operation = self._operation("provision_network", network.id, network.connection_id, by)
        network.start_provisioning(operation.id, by=by, at=self.clock())
        return operation.id, self._commit(network, operation)

    def destroy_network(self, connection_id: str, network_id: str, *, by: Actor) -> tuple[str, int]:
        network = self._network(network_id, by, connection_id=connection_id)
        self._refuse_builtin(network.id, by, "destroy")
        holding = [
            f"cluster {c['id']} ({c['status']})"
            for c in self.lookup.live_children(by.organization_id, network_id=network.id)
            if c["status"] not in (DESTROYED, PENDING)
        ]
        if holding:
            raise ConflictError(
                f"Cannot destroy network {network.id}: destroy its clusters first ({', '.join(holding)}).",
                code="network_in_use",
            )
        operation = self._operation("destroy_network", network.id, network.connection_id, by)
        network.start_destroying(operation.id, by=by, at=self.clock())
        return operation.id, self._commit(network, operation)

    def delete_network(self, network_id: str, *, by: Actor) -> int:
        network = self._network(network_id, by)
        self._refuse_builtin(network.id, by, "delete")
        network.delete(by=by, at=self.clock())
        return self._commit(network)

    # --- provisioned clusters ------------------------------------------------------------

    def create_cluster(
        self,
        connection_id: str,
        *,
        network_id: str,
        name: str,
        region: str | None,
        config: dict[str, Any],
        by: Actor,
    ) -> tuple[str, int]:
        connection = self._connection(connection_id, by)
        connection.check_active("create a cluster in")
        network = self._network(network_id, by, connection_id=connection.id, field="networkId")
        if network.status != ACTIVE:
            raise wrong_state(
                "network", network.id, network.status, "create a cluster in", (ACTIVE,)
            )
        at = self.clock()
        external = ExternalCluster.create(
            id=new_id(),
            connection_id=connection.id,
            network_id=network.id,
            cluster_id=new_id(),
            name=name,
            region=self._region(connection, region or network.region),
            config=config,
            by=by,
            at=at,
        )
        cluster = Cluster.create_for(
            external, provider=connection.provider, open_to_all_members=False, by=by, at=at
        )
        return external.id, self._commit(external, cluster)

    def update_cluster(
        self,
        connection_id: str,
        external_id: str,
        *,
        name: str | None,
        config: dict[str, Any] | None,
        by: Actor,
    ) -> tuple[str | None, int]:
        """Rename and/or reconfigure; a new configuration starts an update operation."""
        external = self._external(external_id, by, connection_id=connection_id)
        cluster = self._workload_cluster(external)
        at = self.clock()
        operation = None
        if config is not None and config != external.config:
            self._refuse_builtin(external.id, by, "update")
            external.reconfigure(config, by=by, at=at)
            operation = self._operation("update_cluster", external.id, external.connection_id, by)
            external.start_update(operation.id, by=by, at=at)
        if name is not None:
            external.rename(name, by=by, at=at)
        cluster.mirror(external, by=by, at=at)
        return (operation.id if operation else None), self._commit(external, cluster, operation)

    def provision_cluster(
        self, connection_id: str, external_id: str, *, by: Actor
    ) -> tuple[str, int]:
        external = self._external(external_id, by, connection_id=connection_id)
        self._connection(external.connection_id, by).check_active("provision a cluster in")
        operation = self._operation("provision_cluster", external.id, external.connection_id, by)
        external.start_provisioning(operation.id, by=by, at=self.clock())
        cluster = self._workload_cluster(external)
        cluster.mirror(external, by=by, at=self.clock())
        return operation.id, self._commit(external, cluster, operation)

    def destroy_cluster(
        self, connection_id: str, external_id: str, *, by: Actor
    ) -> tuple[str, int]:
        external = self._external(external_id, by, connection_id=connection_id)
        self._refuse_builtin(external.id, by, "destroy")
        operation = self._operation("destroy_cluster", external.id, external.connection_id, by)
        external.start_destroying(operation.id, by=by, at=self.clock())
        cluster = self._workload_cluster(external)
        cluster.mirror(external, by=by, at=self.clock())
        return operation.id, self._commit(external, cluster, operation)

    def delete_cluster(self, external_id: str, *, by: Actor) -> int:
        external = self._external(external_id, by)
        self._refuse_builtin(external.id, by, "delete")
        external.delete(by=by, at=self.clock())
        cluster = self._workload_cluster(external)
        cluster.delete(by=by, at=self.clock())
        return self._commit(external, cluster)

    # --- operations: what the provisioner calls ------------------------------------------

    def start_operation(self, operation_id: str, *, by: Actor) -> int:
        """Mark the operation running (a no-op, returning 0, when it already runs or ended)."""
        operation = self._any(Operation, operation_id, "operation")
        if not operation.start(by=by, at=self.clock()):
            return 0
        return self._commit(operation)

    def record_progress(
        self,
        operation_id: str,
        stage: str,
        message: str,
        resources: list[dict[str, Any]],
        *,
        by: Actor,
    ) -> int:
        operation = self._any(Operation, operation_id, "operation")
        operation.record_progress(stage, message, resources, by=by, at=self.clock())
        return self._commit(operation)

    def finish_operation(
        self,
        operation_id: str,
        *,
        outputs: dict[str, Any] | None,
        error: ProviderError | None,
        by: Actor,
        tracking: Tracking | None = None,
    ) -> int:
        """Record the outcome on the operation and its resource (and the workload cluster), at once."""
        operation = self._any(Operation, operation_id, "operation")
        at = self.clock()
        resource: Any = None
        cluster = None
        if operation.resource_type == "connection":
            resource = self._any(Connection, operation.resource_id, "connection")
            if error is None:
                resource.record_template_sync(message="The template is up to date.", by=by, at=at)
            else:
                resource.record_template_sync(message=error.message, by=by, at=at)
        else:
            resource = self._any(
                Network if operation.resource_type == "network" else ExternalCluster,
                operation.resource_id,
                operation.resource_type,
            )
            if resource.operation_id == operation.id:
                resource.finish(
                    ok=error is None,
                    message=None if error is None else error.message,
                    outputs=outputs if error is None else None,
                    by=by,
                    at=at,
                )
            if isinstance(resource, ExternalCluster):
                cluster = self._workload_cluster(resource)
                cluster.mirror(resource, by=by, at=at)
        if error is None:
            operation.succeed(
                outputs,
                message=f"The {operation.operation.replace('_', ' ')} succeeded.",
                by=by,
                at=at,
            )
        else:
            operation.fail(
                code=error.code, message=error.message, retryable=error.retryable, by=by, at=at
            )
        return self._commit(operation, resource, cluster, tracking=tracking)

    def operation_target(
        self, operation_id: str
    ) -> tuple[Operation, ConnectionSpec, NetworkSpec | ClusterSpec | None]:
        """The operation and snapshots of what its step acts on, for the provider adapter."""
        operation = self._any(Operation, operation_id, "operation")
        connection = self._any(Connection, operation.connection_id, "connection")
        target: NetworkSpec | ClusterSpec | None = None
        if operation.resource_type == "network":
            target = network_spec(self._any(Network, operation.resource_id, "network"))
        elif operation.resource_type == "cluster":
            external = self._any(ExternalCluster, operation.resource_id, "cluster")
            network = self._find(Network, external.network_id)
            target = cluster_spec(external, network.outputs if network else {})
        return operation, self.connection_spec(connection), target

    # --- helpers -------------------------------------------------------------------------

    def connection_spec(self, connection: Connection) -> ConnectionSpec:
        return ConnectionSpec(
            id=connection.id,
            organization_id=connection.organization_id,
            provider=connection.provider,
            config=dict(connection.provider_config),
            secrets={k: self.secret_box.open(v) for k, v in connection.sealed_secrets.items()},
        )

    def _provider_of(self, connection_id: str, by: Actor) -> tuple[Provider, ConnectionSpec]:
        connection = self._connection(connection_id, by)
        return self.providers.get(connection.provider), self.connection_spec(connection)

    def _cluster_of(
        self, connection_id: str, external_id: str, by: Actor
    ) -> tuple[Provider, ConnectionSpec, ExternalCluster, ClusterSpec]:
        """The adapter and the snapshots of a provisioned cluster of the connection."""
        adapter, connection = self._provider_of(connection_id, by)
        external = self._external(external_id, by)
        if external.connection_id != connection_id:
            raise NotFoundError.of("cluster", external_id)
        network = self._find(Network, external.network_id)
        return (
            adapter,
            connection,
            external,
            cluster_spec(external, network.outputs if network else {}),
        )

    def _seal(self, secrets: dict[str, str]) -> dict[str, str]:
        return {k: self.secret_box.seal(v) for k, v in secrets.items()}

    def _operation(self, kind: str, resource_id: str, connection_id: str, by: Actor) -> Operation:
        return Operation.create(
            id=new_id(),
            operation=kind,
            resource_id=resource_id,
            connection_id=connection_id,
            by=by,
            at=self.clock(),
        )

    def _refuse_builtin(self, resource_id: str, by: Actor, action: str) -> None:
        if resource_id in local_ids(by.organization_id):
            raise ConflictError(
                f"Cannot {action} the organization's built-in local {resource_id}: every member's "
                "local cluster stays available.",
                code="builtin_local_cluster",
            )

    @staticmethod
    def _region(connection: Connection, region: str | None) -> str:
        if region:
            return region
        if connection.provider == LOCAL:
            return LOCAL
        if connection.provider == "kubernetes":
            return "default"  # an existing cluster is one place: its one region
        configured = connection.provider_config.get("region")
        if not configured:
            raise InvalidValueError(
                "Name a region: the connection has no configured region.", field="region"
            )
        return str(configured)

    def _any(self, cls: type[A], aggregate_id: str, kind: str) -> A:
        found = self._find(cls, aggregate_id)
        if found is None:
            raise NotFoundError.of(kind, aggregate_id)
        return found

    def _connection(self, connection_id: str, by: Actor) -> Connection:
        return self._load(
            Connection, connection_id, organization_id=by.organization_id, kind="connection"
        )

    def _network(
        self,
        network_id: str,
        by: Actor,
        *,
        connection_id: str | None = None,
        field: str | None = None,
    ) -> Network:
        if connection_id is not None:
            self._connection(connection_id, by)
        network = self._load(
            Network, network_id, organization_id=by.organization_id, kind="network"
        )
        if connection_id is not None and network.connection_id != connection_id:
            if field is not None:
                raise InvalidValueError(
                    f"Network {network_id} belongs to another connection.", field=field
                )
            raise NotFoundError.of("network", network_id)
        return network

    def _external(
        self, external_id: str, by: Actor, *, connection_id: str | None = None
    ) -> ExternalCluster:
        if connection_id is not None:
            self._connection(connection_id, by)
        external = self._load(
            ExternalCluster, external_id, organization_id=by.organization_id, kind="cluster"
        )
        if connection_id is not None and external.connection_id != connection_id:
            raise NotFoundError.of("cluster", external_id)
        return external

    def _workload_cluster(self, external: ExternalCluster) -> Cluster:
        return self._any(Cluster, external.cluster_id, "cluster")


def network_spec(network: Network) -> NetworkSpec:
    return NetworkSpec(
        id=network.id,
        organization_id=network.organization_id,
        connection_id=network.connection_id,
        name=network.name,
        region=network.region,
        config=dict(network.config),
        provider_network_id=network.provider_network_id,
        outputs=dict(network.outputs),
    )


def cluster_spec(external: ExternalCluster, network_outputs: dict[str, Any]) -> ClusterSpec:
    return ClusterSpec(
        id=external.id,
        organization_id=external.organization_id,
        connection_id=external.connection_id,
        network_id=external.network_id,
        cluster_id=external.cluster_id,
        name=external.name,
        region=external.region,
        config=dict(external.config),
        outputs=dict(external.outputs),
        network_outputs=dict(network_outputs),
    )
