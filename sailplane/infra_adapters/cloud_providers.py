"""The `aws` and `kubernetes` providers in the shape of the provider port.

The port (`sailplane.commands.ports.Provider`) passes every call the connection
(and network or cluster) as plain snapshots with `id`, `config`, `secrets`, `region`,
`outputs`, ... attributes, and runs each provisioning step to its end, reporting progress.
`AwsProvider` and `KubernetesProvider` are bound to one connection and answer a step with
where it stands (`StepStatus`); this module builds them from the snapshots (cached per
connection), drives a step by polling it until it is done, and turns the Structs into the
camelCase dicts the port returns.

Connection settings (`providerConfig`):
- aws: `region` (required), `accountId`, `roleArn`, `stackArn`, `externalIdSecretArn`;
  nothing secret. The external id derives from the connection id (users cannot choose it,
  which is what protects against the confused deputy; AWS does not treat it as a secret).
- kubernetes: `kubeconfig` (YAML text or a mapping; sealed as a secret) and an optional
  `context`; the plain settings keep the chosen context and the server URL.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import msgspec
import yaml

from sailplane.commands.base import Clock, utc_now
from sailplane.commands.ports import (
    Health,
    InstanceTypeQuery,
    Progress,
    ProviderError,
    Template,
    Unsupported,
    Verification,
)
from sailplane.domain.errors import ConflictError, InvalidValueError, NotFoundError
from sailplane.domain.infra import ACTIVE
from sailplane.infra_adapters.aws import AwsProvider
from sailplane.infra_adapters.glue import AwsRole
from sailplane.infra_adapters.kubernetes_cluster import KubernetesProvider, parse_kubeconfig
from sailplane.infra_adapters.provider_types import (
    ClusterHealth,
    ClusterSpec,
    InstanceTypeFilter,
    NetworkSpec,
    NodeGroupSpec,
    ProviderUnavailableError,
    StepStatus,
)

EXTERNAL_IDS = uuid.UUID("6f1c2a9e-5d43-4f6b-9a57-1c0de5a11b1e")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
ACCOUNT = re.compile(r"^\d{12}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
STACK_ARN = re.compile(r"^arn:aws[a-z-]*:cloudformation:[a-z0-9-]+:\d{12}:stack/.+$")
AWS_SETTINGS = {"region", "accountId", "roleArn", "stackArn", "externalIdSecretArn"}
KUBERNETES_SETTINGS = {"kubeconfig", "context"}


class _Connection(Protocol):
    id: str
    organization_id: str
    provider: str
    config: dict[str, Any]
    secrets: dict[str, str]


class _Network(Protocol):
    id: str
    name: str
    region: str
    config: dict[str, Any]


class _Cluster(Protocol):
    id: str
    name: str
    region: str
    config: dict[str, Any]
    network_outputs: dict[str, Any]


def external_id_of(connection_id: str) -> str:
    """The external id of an AWS connection: fixed by its id, never chosen by a user."""
    return f"sailplane-{uuid.uuid5(EXTERNAL_IDS, connection_id).hex}"


class ConnectionRows(Protocol):
    def connection(self, organization_id: str, connection_id: str) -> dict[str, Any] | None:
        """The connection's row in the infra view (None: unknown or deleted)."""


class AwsConnectionRoles:
    """The `AwsConnections` a glue catalog authenticates through: an organization's AWS
    connection lends its verified role (`roleArn`) and its external id, fixed by its id."""

    def __init__(self, rows: ConnectionRows) -> None:
        self.rows = rows

    def role_of(self, organization_id: str, connection_id: str) -> AwsRole:
        row = self.rows.connection(organization_id, connection_id)
        if row is None or row["provider"] != "aws":
            raise NotFoundError.of("connection", connection_id)
        role_arn = row["provider_config"].get("roleArn")
        if row["status"] != ACTIVE or not role_arn:
            raise ConflictError(
                f"The AWS connection {connection_id} is {row['status']}: only an active, "
                "verified connection lends its role to a catalog.",
                code="connection_not_active",
            )
        return AwsRole(role_arn=role_arn, external_id=external_id_of(connection_id))


def _unknown(config: Mapping[str, Any], allowed: set[str]) -> None:
    for key in sorted(set(config) - allowed):
        raise InvalidValueError(
            f"providerConfig.{key} is not a setting of this provider "
            f"(settings: {', '.join(sorted(allowed))}).",
            field=f"providerConfig.{key}",
            code="unknown_setting",
        )


def _matching(config: Mapping[str, Any], key: str, pattern: re.Pattern[str], example: str) -> None:
    value = config.get(key)
    if value is not None and not (isinstance(value, str) and pattern.match(value)):
        raise InvalidValueError(
            f"providerConfig.{key} {value!r} is not valid (such as {example}).",
            field=f"providerConfig.{key}",
            code="invalid_setting",
        )


def drive(
    step: Callable[[], StepStatus],
    progress: Progress,
    *,
    poll_seconds: float,
    timeout_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    attempts_when_unavailable: int = 5,
) -> dict[str, Any]:
    """Call `step` until it is done, reporting each new stage or message; its outputs.
    Raises ProviderError when it fails, stays unreachable or outlasts the timeout."""
    deadline = monotonic() + timeout_seconds
    reported: tuple[str, str] | None = None
    unavailable = 0
    while True:
        try:
            status = step()
        except ProviderUnavailableError as exc:
            unavailable += 1
            if unavailable >= attempts_when_unavailable:
                raise ProviderError(exc.message, code=exc.code, retryable=True) from None
            sleep(poll_seconds)
            continue
        unavailable = 0
        if (status.stage, status.message) != reported:
            reported = (status.stage, status.message)
            progress(status.stage, status.message, _plain(status.resources))
        if status.state == "succeeded":
            return dict(status.outputs)
        if status.state == "failed":
            raise ProviderError(status.message, code="provider_step_failed", retryable=True)
        if monotonic() >= deadline:
            raise ProviderError(
                f"{status.message} Still not done after {int(timeout_seconds)} s; "
                "provision again to resume.",
                code="provider_step_timeout",
                retryable=True,
            )
        sleep(poll_seconds)


def _release(provider: Any) -> None:
    release = getattr(provider, "close", None)
    if release is not None:
        release()


def _plain(values: tuple[msgspec.Struct, ...]) -> list[dict[str, Any]]:
    """Structs as the JSON-ready camelCase dicts the port answers with."""
    return [msgspec.to_builtins(v) for v in values]


def _network_spec(network: _Network) -> NetworkSpec:
    return NetworkSpec(
        network_id=network.id,
        name=network.name,
        region=network.region,
        cidr=str(network.config.get("cidr") or "10.0.0.0/16"),
    )


def _cluster_spec(cluster: _Cluster) -> ClusterSpec:
    config = cluster.config
    group = dict(config.get("systemNodeGroup") or {})
    types = group.get("instanceTypes") or ["m7g.large"]
    flat = [t for entry in types for t in (entry if isinstance(entry, list) else [entry])]
    return ClusterSpec(
        cluster_id=cluster.id,
        name=cluster.name,
        region=cluster.region,
        network_outputs={k: str(v) for k, v in (cluster.network_outputs or {}).items()},
        kubernetes_version=str(config.get("kubernetesVersion") or "1.31"),
        system_node_group=NodeGroupSpec(
            name=str(group.get("name") or "system"),
            instance_types=tuple(flat),
            min_size=int(group.get("minSize", 1)),
            max_size=int(group.get("maxSize", 3)),
            desired_size=int(group.get("desiredSize", 2)),
            disk_size_gb=int(group.get("diskSizeGb", 100)),
        ),
        public_access_cidrs=tuple(config.get("publicAccessCidrs") or ()),
    )


def _health(health: ClusterHealth) -> Health:
    checks = [
        {"check": "provider", **health.provider_metadata},
        *({"check": "nodeGroup", **msgspec.to_builtins(g)} for g in health.node_groups),
        *({"check": "systemPod", **msgspec.to_builtins(p)} for p in health.system_pods),
        {"check": "nodes", "totalNodes": health.total_nodes, "readyNodes": health.ready_nodes},
    ]
    status = "healthy" if health.status == "healthy" else "unhealthy"
    return Health(status=status, message=health.message, checks=checks)


class _Adapter(ABC):
    """What both adapters share: the per-connection cache, the step driver and every call
    that only needs the connection's bound provider."""

    name = ""
    supports_templates = False
    verified_settings: tuple[str, ...] = ()

    def __init__(self, *, poll_seconds: float, timeout_seconds: float, clock: Clock) -> None:
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self._bound: dict[str, tuple[str, Any]] = {}  # connection id -> (settings, provider)
        self._lock = threading.Lock()

    def _cached(self, connection: _Connection, build: Callable[[], Any]) -> Any:
        """The connection's provider, built again when its settings changed (verify adds the
        role ARN, an update replaces the kubeconfig)."""
        settings = json.dumps([connection.config, connection.secrets], sort_keys=True, default=str)
        digest = hashlib.sha256(settings.encode()).hexdigest()
        with self._lock:
            known = self._bound.get(connection.id)
            if known is not None and known[0] == digest:
                return known[1]
            if known is not None:
                _release(known[1])
            provider = build()
            self._bound[connection.id] = (digest, provider)
            return provider

    def _drive(self, step: Callable[[], StepStatus], progress: Progress) -> dict[str, Any]:
        return drive(
            step, progress, poll_seconds=self.poll_seconds, timeout_seconds=self.timeout_seconds
        )

    def initial_status(self) -> str:
        return "pending"

    def spark_endpoint(self, connection: _Connection, cluster: _Cluster) -> str:
        raise Unsupported(
            f"Sessions on {self.name} clusters are not available yet: Sailplane does not "
            "deploy Sail onto them."
        )

    def close(self) -> None:
        with self._lock:
            for _, provider in self._bound.values():
                _release(provider)
            self._bound.clear()

    @abstractmethod
    def _bind(self, connection: _Connection) -> Any:
        """The provider object (AwsProvider, KubernetesProvider) of this connection."""

    def regions(self, connection: _Connection) -> list[dict[str, Any]]:
        return _plain(self._bind(connection).regions())

    def instance_types(
        self, connection: _Connection, wanted: InstanceTypeQuery
    ) -> list[dict[str, Any]]:
        filters = InstanceTypeFilter(
            region=wanted.region,
            architecture=wanted.architecture,  # type: ignore[arg-type]  # the HTTP layer checks the enum
            min_v_cpus=wanted.min_vcpus,
            min_memory_mib=wanted.min_memory_mib,
        )
        return _plain(self._bind(connection).instance_types(filters).items)

    def provider_networks(
        self, connection: _Connection, *, region: str | None
    ) -> list[dict[str, Any]]:
        return _plain(self._bind(connection).provider_networks(region))

    def provision_network(
        self, connection: _Connection, network: _Network, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        provider, spec = self._bind(connection), _network_spec(network)
        outputs = self._drive(
            lambda: provider.provision_network(spec, operation_id=token), progress
        )
        if "VpcId" in outputs:
            outputs["providerNetworkId"] = outputs["VpcId"]
        return outputs

    def destroy_network(
        self, connection: _Connection, network: _Network, *, token: str, progress: Progress
    ) -> None:
        provider, spec = self._bind(connection), _network_spec(network)
        self._drive(lambda: provider.destroy_network(spec, operation_id=token), progress)

    def provision_cluster(
        self, connection: _Connection, cluster: _Cluster, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        provider, spec = self._bind(connection), _cluster_spec(cluster)
        outputs = self._drive(
            lambda: provider.provision_cluster(spec, operation_id=token), progress
        )
        metadata = {
            k: outputs[k] for k in ("clusterName", "clusterArn", "namespace") if k in outputs
        }
        return {**outputs, "providerMetadata": metadata}

    def update_cluster(
        self, connection: _Connection, cluster: _Cluster, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        provider, spec = self._bind(connection), _cluster_spec(cluster)
        return self._drive(lambda: provider.update_cluster(spec, operation_id=token), progress)

    def destroy_cluster(
        self, connection: _Connection, cluster: _Cluster, *, token: str, progress: Progress
    ) -> None:
        provider, spec = self._bind(connection), _cluster_spec(cluster)
        self._drive(lambda: provider.destroy_cluster(spec, operation_id=token), progress)

    def health(self, connection: _Connection, cluster: _Cluster) -> Health:
        return _health(self._bind(connection).health(_cluster_spec(cluster)))

    def metrics(
        self,
        connection: _Connection,
        cluster: _Cluster,
        *,
        start: datetime,
        end: datetime,
        period_seconds: int,
    ) -> dict[str, list[dict[str, Any]]]:
        found = self._bind(connection).metrics(
            _cluster_spec(cluster), start=start, end=end, period_seconds=period_seconds
        )
        return msgspec.to_builtins(found)

    def kubeconfig(self, connection: _Connection, cluster: _Cluster) -> str:
        return str(self._bind(connection).kubeconfig(_cluster_spec(cluster)).kubeconfig)


class AwsAdapter(_Adapter):
    name = "aws"
    supports_templates = True
    verified_settings = ("roleArn", "accountId")

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        principal: str | None = None,
        poll_seconds: float = 15.0,
        timeout_seconds: float = 3600.0,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(poll_seconds=poll_seconds, timeout_seconds=timeout_seconds, clock=clock)
        self.endpoint_url = endpoint_url
        self.principal = principal

    def check_config(
        self, config: dict[str, Any], *, connection_id: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        _unknown(config, AWS_SETTINGS)
        if not isinstance(config.get("region"), str):
            raise InvalidValueError(
                "providerConfig.region is required for an aws connection (such as us-east-1).",
                field="providerConfig.region",
                code="invalid_setting",
            )
        _matching(config, "region", REGION, "us-east-1")
        _matching(config, "accountId", ACCOUNT, "123456789012")
        _matching(config, "roleArn", ROLE_ARN, "arn:aws:iam::123456789012:role/NAME")
        _matching(config, "stackArn", STACK_ARN, "arn:aws:cloudformation:REGION:ACCOUNT:stack/...")
        return {k: v for k, v in config.items() if v is not None}, {}

    def _bind(self, connection: _Connection) -> AwsProvider:
        return self._cached(
            connection,
            lambda: AwsProvider(
                connection_id=connection.id,
                region=str(connection.config["region"]),
                external_id=external_id_of(connection.id),
                role_arn=connection.config.get("roleArn"),
                stack_arn=connection.config.get("stackArn"),
                principal=self.principal,
                endpoint_url=self.endpoint_url,
                clock=self.clock,
            ),
        )

    def verify(self, connection: _Connection, *, role_arn: str | None) -> Verification:
        role = role_arn or connection.config.get("roleArn")
        _matching({"roleArn": role}, "roleArn", ROLE_ARN, "arn:aws:iam::123456789012:role/NAME")
        try:
            check = self._bind(connection).verify(role)
        except InvalidValueError as refused:
            if refused.code != "connection_unusable":
                raise
            return Verification(ok=False, message=refused.message, provider_config={})
        return Verification(
            ok=True,
            message=check.message,
            provider_config={"roleArn": role, "accountId": check.account_id},
        )

    def template(self, connection: _Connection, *, download_url: str) -> Template:
        """`templateUrl` is where Sailplane serves the YAML (behind authentication); a
        console quick-launch link needs the template in S3, so there is none."""
        found = self._bind(connection).connection_template()
        return Template(
            parameters=found.parameters, body=found.body, template_url=download_url or None
        )

    def sync_template(
        self, connection: _Connection, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        provider = self._bind(connection)
        return self._drive(lambda: provider.sync_template(operation_id=token), progress)


class KubernetesAdapter(_Adapter):
    name = "kubernetes"

    def __init__(
        self,
        *,
        poll_seconds: float = 2.0,
        timeout_seconds: float = 600.0,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(poll_seconds=poll_seconds, timeout_seconds=timeout_seconds, clock=clock)

    def check_config(
        self, config: dict[str, Any], *, connection_id: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        _unknown(config, KUBERNETES_SETTINGS)
        given = config.get("kubeconfig")
        if not isinstance(given, str | dict):
            raise InvalidValueError(
                "providerConfig.kubeconfig is required: the cluster's kubeconfig as YAML text "
                "or an object.",
                field="providerConfig.kubeconfig",
                code="invalid_kubeconfig",
            )
        context = config.get("context")
        if context is not None and not isinstance(context, str):
            raise InvalidValueError(
                "providerConfig.context must be the name of one of the kubeconfig's contexts.",
                field="providerConfig.context",
                code="invalid_setting",
            )
        document = parse_kubeconfig(given, context=context)
        chosen = document["current-context"]
        settings = next(c for c in document["contexts"] if c["name"] == chosen)["context"]
        server = next(c for c in document["clusters"] if c["name"] == settings["cluster"])
        plain = {"context": chosen, "server": server["cluster"]["server"]}
        return plain, {"kubeconfig": yaml.safe_dump(document, sort_keys=False)}

    def _bind(self, connection: _Connection) -> KubernetesProvider:
        kubeconfig = connection.secrets.get("kubeconfig")
        if not kubeconfig:
            raise ConflictError(
                f"Connection {connection.id} has no kubeconfig: update its providerConfig.",
                code="connection_unusable",
            )
        return self._cached(
            connection,
            lambda: KubernetesProvider(
                connection_id=connection.id,
                kubeconfig=kubeconfig,
                context=connection.config.get("context"),
                clock=self.clock,
            ),
        )

    def verify(self, connection: _Connection, *, role_arn: str | None) -> Verification:
        provider = self._bind(connection)
        try:
            check = provider.verify()
        except (InvalidValueError, ProviderUnavailableError) as exc:
            return Verification(ok=False, message=exc.message, provider_config={})
        return Verification(
            ok=True, message=check.message, provider_config={"server": provider.server}
        )

    def template(self, connection: _Connection, *, download_url: str) -> Template:
        return self._bind(connection).connection_template()

    def sync_template(
        self, connection: _Connection, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        return self._bind(connection).sync_template(operation_id=token)
