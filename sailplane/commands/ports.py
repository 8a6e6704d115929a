"""The ports of the use cases: what `sailplane.commands` asks of the world outside.

Each port is a `typing.Protocol` (or a plain value/error class the port speaks in) that lives
here, beside the use cases that need it; the adapters in `sailplane.infra_adapters` implement
them and import them from here, and the composition root (`sailplane/system.py`) builds the
adapters and passes them to the use cases' constructors. The commands never import an adapter.

- Provider: where clusters run (`local`, `aws`, `kubernetes`).
- IdentityProviderClient: an OpenID Connect relying party (discovery, registration, sign-in).
- WebhookTargets: which webhook URLs Sailplane may call.
- ChannelProbe: sends a notification channel its test message.
- Mail: sends one email and says what became of it (EmailOutcome).

## Provider
The provider port: what Sailplane asks of a place clusters run (`local`, `aws`, `kubernetes`).

One adapter per provider name, each in its own module of `sailplane.infra_adapters`
(`providers/local.py`, `cloud_providers.py`), implementing `Provider`. The composition root
(`sailplane/system.py`) builds each adapter with its settings and hands them to `Providers`;
the commands (validation, verify, regions, instance types,
provider networks, templates), the provisioner consumer (provision, update, destroy,
template sync), the HTTP layer (health, metrics, kubeconfig) and sessions (the Spark
Connect endpoint) all reach an adapter through `Providers.get(name)`.

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

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sailplane.domain.errors import ConflictError, InvalidValueError

# --- provider ------------------------------------------------------------------------------


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
class InstanceTypeQuery:
    """Which instance types to list: the documented filters (None: not filtered; `region`
    None: the connection's own)."""

    region: str | None = None
    architecture: str | None = None
    min_vcpus: int | None = None
    min_memory_mib: int | None = None


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
        self, connection: ConnectionSpec, wanted: InstanceTypeQuery
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

    def close(self) -> None:
        for adapter in self.adapters.values():
            adapter.close()


# --- identity providers (OpenID Connect) ---------------------------------------------------


class OidcError(Exception):
    """An OpenID Connect step failed, with a sentence a person can act on; callers turn it
    into a failed test result, a 422 or a refused sign-in, never a 500."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).decode().rstrip("="))


@dataclass(frozen=True)
class ExpectedIdToken:
    """What an ID token must match to sign someone in: the provider's keys and issuer, this
    client, this sign-in's nonce, and the time it is checked at."""

    jwks: dict[str, Any]
    issuer: str
    client_id: str
    nonce: str
    now: datetime


class IdentityProviderClient(Protocol):
    """An OpenID Connect relying party; every failure is an `OidcError`."""

    def discover(self, issuer: str) -> dict[str, Any]:
        """The issuer's `/.well-known/openid-configuration`."""
        ...

    def jwks(self, jwks_uri: str) -> dict[str, Any]: ...

    def register_client(
        self,
        registration_endpoint: str,
        metadata: dict[str, Any],
        *,
        initial_access_token: str | None,
    ) -> dict[str, Any]:
        """Dynamic Client Registration (RFC 7591): the provider's answer with client_id."""
        ...

    def exchange_code(
        self,
        token_endpoint: str,
        *,
        code: str,
        redirect_uri: str,
        client_id: str,
        client_secret: str | None,
        code_verifier: str,
    ) -> dict[str, Any]: ...

    def verify_id_token(self, id_token: str, expected: ExpectedIdToken) -> dict[str, Any]:
        """The ID token's claims, after its signature, issuer, audience, times and nonce check out."""
        ...


# --- webhooks ------------------------------------------------------------------------------


class WebhookTargets(Protocol):
    def refusal(self, url: str, *, unresolvable_ok: bool = False) -> str | None:
        """Why `url` may not be called, or None. A host that does not resolve is refused
        unless `unresolvable_ok` (when a channel is written: it is checked again at send)."""
        ...


class Sent(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def message(self) -> str | None: ...


class ChannelProbe(Protocol):
    """Sends one test message to a notification channel (a view row) now; the notifier's
    sender does."""

    def probe(self, channel: dict[str, Any], at: datetime) -> Sent: ...


# --- email ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailOutcome:
    """What became of an email the server meant to send; recorded and shown (invitations,
    email verification) instead of dropped silently."""

    status: str  # sent, failed or not_configured
    message: str | None = None


class Mail(Protocol):
    """Sends one plain-text email now and says what became of it (never raises for a
    refused or unconfigured server: that is an outcome to record)."""

    def send(self, to: str, subject: str, body: str) -> EmailOutcome: ...
