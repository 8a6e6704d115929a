"""The provider port: what Sailplane asks of a place clusters run (`local`, `aws`, `kubernetes`).

One adapter per provider name, each in its own module of this package, implementing
`Provider`. The `System` builds a `Providers` registry from `ADAPTERS` (provider name ->
builder taking the System); the commands (validation, verify, regions, instance types,
provider networks, templates), the provisioner consumer (provision, update, destroy,
template sync), the HTTP layer (health, metrics, kubeconfig) and sessions (the Spark
Connect endpoint) all reach an adapter through `system.providers.get(name)`.

Contracts every adapter keeps:
- Inputs are plain snapshots (`ConnectionSpec`, `NetworkSpec`, `ClusterSpec`) built from
  aggregates; adapters never read or write Sailplane's state themselves.
- Steps (`provision_*`, `update_cluster`, `destroy_*`, `sync_template`) are idempotent:
  resource names derive from Sailplane ids (`resource_name()`), and `token` (the operation
  id) is the client request token for the provider's API. Calling a step again after a
  crash, or twice, converges on the same single resource. A destroy of something already
  gone succeeds.
- Steps report progress through `progress(stage, message, resources)`; each call becomes
  an `Operation.Progressed` event. `resources` is a list of
  `{"urn", "type", "name", "operation", "status"}` dicts.
- Steps return the resource's outputs (shown as `iacOutputs`; a network may return
  `providerNetworkId`, a cluster `providerMetadata`). They raise `ProviderError` for a
  failure the user should see on the operation (its `retryable` says whether provisioning
  again may help); any other exception is treated the same way with its text as message.
- Read calls (`regions`, `instance_types`, `provider_networks`, `template`, `health`,
  `metrics`, `kubeconfig`) answer synchronously; a provider without the notion raises
  `Unsupported` (the HTTP layer answers 409 with its message).
- `check_config` validates a connection's settings at create/update time and splits them
  into plain settings and secrets (which Sailplane seals and hands back opened in
  `ConnectionSpec.secrets`); it raises `InvalidValueError` (422) for bad values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sailplane.domain.errors import ConflictError, InvalidValueError

if TYPE_CHECKING:
    from sailplane.system import System


class ProviderError(Exception):
    """A provider step failed; recorded on the operation (code, message, retryable)."""

    def __init__(
        self, message: str, *, code: str = "provider_error", retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable


class Unsupported(ConflictError):
    """The provider has no such notion (a kubeconfig of a local cluster, a template of a local connection)."""

    default_code = "unsupported_by_provider"


@dataclass(frozen=True)
class ConnectionSpec:
    id: str
    organization_id: str
    provider: str
    config: dict[str, Any]  # plain providerConfig
    secrets: dict[str, str] = field(default_factory=dict)  # opened secret settings


@dataclass(frozen=True)
class NetworkSpec:
    id: str
    organization_id: str
    connection_id: str
    name: str
    region: str
    config: dict[str, Any]
    provider_network_id: str | None
    outputs: dict[str, Any]


@dataclass(frozen=True)
class ClusterSpec:
    id: str  # the provisioned (external) cluster id
    organization_id: str
    connection_id: str
    network_id: str
    cluster_id: str  # the workload cluster id
    name: str
    region: str
    config: dict[str, Any]
    outputs: dict[str, Any]
    network_outputs: dict[str, Any]


@dataclass(frozen=True)
class Verification:
    ok: bool
    message: str
    provider_config: dict[str, Any]  # the connection's settings after verification (e.g. accountId)


@dataclass(frozen=True)
class Health:
    status: str  # "healthy", "unhealthy" or "unknown"
    message: str
    checks: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Template:
    parameters: dict[str, str]
    body: str  # YAML with the parameters' defaults filled in
    template_url: str | None = None
    quick_launch_url: str | None = None


Progress = Callable[[str, str, list[dict[str, Any]]], None]


def resource_name(kind: str, spec_id: str, organization_id: str) -> str:
    """The provider-side name of a Sailplane resource: the same ids always give the same name."""
    return f"sailplane-{kind}-{organization_id.lower()}-{spec_id.lower()}"


@runtime_checkable
class Provider(Protocol):
    name: str  # the provider name connections carry (`local`, `aws`, `kubernetes`)
    # whether `template` and `sync_template` apply (else 409 before any operation)
    supports_templates: bool
    # The providerConfig keys `verify` writes (e.g. the role ARN and account id): an update
    # keeps them unless the client's providerConfig names one of them.
    verified_settings: tuple[str, ...]

    # --- connections --------------------------------------------------------------------

    def check_config(
        self, config: dict[str, Any], *, connection_id: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Validate providerConfig written by a user: (plain settings, secret settings)."""
        ...

    def initial_status(self) -> str:
        """A new connection's status: `active` when nothing needs verifying, else `pending`."""
        ...

    def verify(self, connection: ConnectionSpec, *, role_arn: str | None) -> Verification: ...

    def regions(self, connection: ConnectionSpec) -> list[dict[str, Any]]:
        """`{provider, regionCode, regionName, group}` items."""
        ...

    def instance_types(
        self,
        connection: ConnectionSpec,
        *,
        region: str | None,
        architecture: str | None,
        min_vcpus: int | None,
        min_memory_mib: int | None,
    ) -> list[dict[str, Any]]:
        """`{provider, instanceType, vCpus, memoryMiB, architecture, gpuCount, instanceFamily,
        maxPods, group, allocatableMilliCpu}` items, filtered."""
        ...

    def provider_networks(
        self, connection: ConnectionSpec, *, region: str | None
    ) -> list[dict[str, Any]]:
        """Networks that exist at the provider (VPCs with their subnets, the loopback network)."""
        ...

    def template(self, connection: ConnectionSpec, *, download_url: str) -> Template: ...

    def sync_template(
        self, connection: ConnectionSpec, *, token: str, progress: Progress
    ) -> dict[str, Any]: ...

    # --- networks and clusters (provisioner steps) ---------------------------------------

    def provision_network(
        self, connection: ConnectionSpec, network: NetworkSpec, *, token: str, progress: Progress
    ) -> dict[str, Any]: ...

    def destroy_network(
        self, connection: ConnectionSpec, network: NetworkSpec, *, token: str, progress: Progress
    ) -> None: ...

    def provision_cluster(
        self, connection: ConnectionSpec, cluster: ClusterSpec, *, token: str, progress: Progress
    ) -> dict[str, Any]: ...

    def update_cluster(
        self, connection: ConnectionSpec, cluster: ClusterSpec, *, token: str, progress: Progress
    ) -> dict[str, Any]: ...

    def destroy_cluster(
        self, connection: ConnectionSpec, cluster: ClusterSpec, *, token: str, progress: Progress
    ) -> None: ...

    # --- running clusters ----------------------------------------------------------------

    def health(self, connection: ConnectionSpec, cluster: ClusterSpec) -> Health: ...

    def metrics(
        self,
        connection: ConnectionSpec,
        cluster: ClusterSpec,
        *,
        start: datetime,
        end: datetime,
        period_seconds: int,
    ) -> dict[str, list[dict[str, Any]]]:
        """`{cpuUtilization, memoryUtilization, estimatedCost, activeJobCount}`: lists of
        `{timestamp, value}`."""
        ...

    def kubeconfig(self, connection: ConnectionSpec, cluster: ClusterSpec) -> str: ...

    def spark_endpoint(self, connection: ConnectionSpec, cluster: ClusterSpec) -> str:
        """The `sc://host:port` a Spark Connect client dials for work on this cluster
        (a local adapter starts its server here on first use)."""
        ...

    def close(self) -> None:
        """Stop what the adapter runs on this host (local servers) and release clients."""
        ...


# provider name -> builder. `local` is always there; the composition root (sailplane/system.py)
# adds `aws` and `kubernetes` with their settings.
ADAPTERS: dict[str, Callable[[System], Provider]] = {}


class Providers:
    """The adapters of one System, by provider name."""

    def __init__(self, adapters: dict[str, Provider]) -> None:
        self.adapters = dict(adapters)

    def get(self, name: str) -> Provider:
        adapter = self.adapters.get(name)
        if adapter is None:
            raise InvalidValueError(
                f"The {name!r} provider is not available in this installation "
                f"(available: {', '.join(sorted(self.adapters))}).",
                field="provider",
                code="provider_unavailable",
            )
        return adapter

    def register(self, adapter: Provider) -> None:
        self.adapters[adapter.name] = adapter

    def close(self) -> None:
        for adapter in self.adapters.values():
            adapter.close()
