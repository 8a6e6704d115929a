"""The `kubernetes` provider: an existing cluster reached with a kubeconfig.

Sailplane does not create this cluster, so the provider's operations mean:

| operation | on an existing cluster |
|---|---|
| verify | the API server's version and the nodes' readiness, with the kubeconfig's credentials |
| regions | the nodes' `topology.kubernetes.io/region` labels, else one region `default` |
| instance types | one per distinct node shape (`node.kubernetes.io/instance-type` label, else `custom-<vCPUs>vcpu-<GiB>gib`) with its capacity and allocatable CPU |
| provider networks | none: the cluster brings its own network |
| network provision / destroy | nothing to create or release (a logical record) |
| cluster provision | the namespace `sailplane-<clusterid>` where Sailplane runs workloads |
| cluster destroy | deletes that namespace (and so everything Sailplane ran in it) |
| health | server version, node readiness, kube-system pods |
| metrics | current node usage from metrics.k8s.io (metrics-server) against allocatable; none without metrics-server |
| kubeconfig | the connection's kubeconfig, defaulting to the cluster's namespace |

The kubeconfig is checked before any call (422 with what is wrong). Only inline credentials
are accepted: an `exec` or `auth-provider` user would run a program, and file references
would read files, on the Sailplane host.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from kubernetes.config import new_client_from_config_dict
from kubernetes.config.config_exception import ConfigException
from kubernetes.utils.quantity import parse_quantity

from sailplane.commands.base import Clock, utc_now
from sailplane.domain.errors import ConflictError, InvalidValueError
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
    PodHealth,
    ProviderNetwork,
    ProviderUnavailableError,
    Region,
    StepStatus,
)

PROVIDER = "kubernetes"
FIELD = "providerConfig.kubeconfig"
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
NODE_GROUP_LABELS = (
    "sailplane.dev/node-group",
    "eks.amazonaws.com/nodegroup",
    "cloud.google.com/gke-nodepool",
    "kubernetes.azure.com/agentpool",
)
ARCHITECTURES = {"amd64": "x86_64", "arm64": "arm64"}
DEFAULT_REGION = "default"
SYSTEM_NAMESPACE = "kube-system"
FORBIDDEN_USER_KEYS = {
    "exec": "runs a program",
    "auth-provider": "runs an authentication plugin",
    "tokenFile": "reads a file",
    "client-certificate": "reads a file (use client-certificate-data)",
    "client-key": "reads a file (use client-key-data)",
}
FORBIDDEN_CLUSTER_KEYS = {"certificate-authority": "reads a file (use certificate-authority-data)"}
_T = TypeVar("_T")


def _invalid(problem: str) -> InvalidValueError:
    return InvalidValueError(
        f"The kubeconfig is not usable: {problem}", field=FIELD, code="invalid_kubeconfig"
    )


def _named(document: Mapping[str, Any], section: str) -> dict[str, dict[str, Any]]:
    entries = document.get(section)
    if not isinstance(entries, list) or not entries:
        raise _invalid(f"`{section}` must be a non-empty list of named entries.")
    named: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _invalid(f"every entry of `{section}` needs a `name`.")
        named[entry["name"]] = entry
    return named


def parse_kubeconfig(
    value: str | Mapping[str, Any], *, context: str | None = None
) -> dict[str, Any]:
    """The kubeconfig as a dict, checked: YAML (or JSON) mapping, the context and its cluster
    and user exist, the server is an http(s) URL, credentials are inline.
    Raises InvalidValueError (422, field providerConfig.kubeconfig) saying what is wrong."""
    if isinstance(value, str):
        try:
            document = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
            raise _invalid(f"it is not valid YAML{at}.") from None
    else:
        document = copy.deepcopy(dict(value))
    if not isinstance(document, dict):
        raise _invalid("it must be a mapping with `clusters`, `users` and `contexts`.")
    clusters, users, contexts = (_named(document, s) for s in ("clusters", "users", "contexts"))
    chosen = context or document.get("current-context")
    if not chosen:
        raise _invalid("it names no `current-context`.")
    if chosen not in contexts:
        raise _invalid(f"the context {chosen!r} is not among its `contexts`.")
    settings = contexts[chosen].get("context") or {}
    cluster = clusters.get(settings.get("cluster", ""), {}).get("cluster")
    if not isinstance(cluster, dict):
        raise _invalid(f"the context {chosen!r} names no cluster of `clusters`.")
    user = users.get(settings.get("user", ""), {}).get("user")
    if not isinstance(user, dict):
        raise _invalid(f"the context {chosen!r} names no user of `users`.")
    server = cluster.get("server")
    if not isinstance(server, str) or not re.match(r"^https?://[^/\s]+", server):
        raise _invalid(f"the cluster's `server` {server!r} is not an http(s) URL.")
    for key, why in FORBIDDEN_CLUSTER_KEYS.items():
        if key in cluster:
            raise _invalid(f"the cluster's `{key}` {why} on the Sailplane host.")
    for key, why in FORBIDDEN_USER_KEYS.items():
        if key in user:
            raise _invalid(
                f"the user's `{key}` {why} on the Sailplane host; give a token, "
                "client-certificate-data and client-key-data, or username and password."
            )
    document["current-context"] = chosen
    return document


class _StepFailed(Exception):
    pass


class KubernetesProvider:
    """One `kubernetes` connection: an existing cluster behind a checked kubeconfig."""

    provider = PROVIDER

    def __init__(
        self,
        *,
        connection_id: str,
        kubeconfig: str | Mapping[str, Any],
        context: str | None = None,
        clock: Clock = utc_now,
        request_timeout: tuple[float, float] = (5.0, 15.0),
    ) -> None:
        self.connection_id = connection_id
        self.document = parse_kubeconfig(kubeconfig, context=context)
        self.clock = clock
        self.timeout = request_timeout
        configuration = type.__call__(k8s.Configuration)  # a fresh one, not the global default
        configuration.retries = 0  # a step or a request retries, not each HTTP call
        try:
            self.api = new_client_from_config_dict(
                self.document, persist_config=False, client_configuration=configuration
            )
        except (ConfigException, ValueError, TypeError) as exc:
            raise _invalid(str(exc)) from None

    def close(self) -> None:
        self.api.close()

    # ----------------------------------------------------------------- calls

    @contextmanager
    def _asking(self, what: str) -> Iterator[None]:
        """Refusals (401, 403, 4xx) -> 422; no answer or 5xx -> ProviderUnavailableError."""
        try:
            yield
        except ApiException as exc:
            if exc.status and exc.status < 500:
                raise InvalidValueError(
                    f"The cluster refused {what}: {exc.status} {exc.reason}",
                    field=FIELD,
                    code="provider_refused",
                ) from None
            raise ProviderUnavailableError(
                f"The cluster did not answer {what}: {exc.status} {exc.reason}"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ProviderUnavailableError(
                f"The cluster at {self.server} did not answer {what}: {exc}"
            ) from None

    def _step(self, stage: str, run: Callable[[], StepStatus]) -> StepStatus:
        try:
            with self._asking(stage):
                return run()
        except (InvalidValueError, _StepFailed) as exc:
            message = exc.message if isinstance(exc, InvalidValueError) else str(exc)
            return StepStatus(state="failed", stage=stage, message=message)

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def _version(self) -> str:
        return str(k8s.VersionApi(self.api).get_code(_request_timeout=self.timeout).git_version)

    def _nodes(self) -> list[Any]:
        return list(k8s.CoreV1Api(self.api).list_node(_request_timeout=self.timeout).items)

    def _cluster(self) -> dict[str, Any]:
        name = self._context.get("cluster", "")
        return next(c["cluster"] for c in self.document["clusters"] if c["name"] == name)

    @property
    def _context(self) -> dict[str, Any]:
        chosen = self.document["current-context"]
        for entry in self.document["contexts"]:
            if entry["name"] == chosen:
                return entry.setdefault("context", {})
        raise _invalid(f"the context {chosen!r} is not among its `contexts`.")

    # ----------------------------------------------------------------- connection

    def connection_template(self) -> ConnectionTemplate:
        raise _no_template()

    def sync_template(self, *, operation_id: str) -> StepStatus:
        raise _no_template()

    def verify(self, role_arn: str | None = None) -> ConnectionCheck:
        """The server answers with the kubeconfig's credentials and lists its nodes."""
        with self._asking("its version and nodes"):
            version = self._version()
            nodes = self._nodes()
        ready = sum(_ready(n) for n in nodes)
        return ConnectionCheck(
            provider=PROVIDER,
            identity=f"{self._context.get('cluster', '')} at {self.server}",
            message=f"Kubernetes {version}; {ready} of {len(nodes)} nodes ready.",
        )

    # ----------------------------------------------------------------- catalogue

    def regions(self) -> tuple[Region, ...]:
        with self._asking("its nodes"):
            nodes = self._nodes()
        codes = sorted({r for n in nodes if (r := _label(n, REGION_LABELS))})
        return tuple(
            Region(provider=PROVIDER, region_code=code, region_name=code, group=PROVIDER)
            for code in codes or [DEFAULT_REGION]
        )

    def instance_types(self, filters: InstanceTypeFilter | None = None) -> InstanceTypeList:
        """One entry per distinct node shape; `filters.region` matches the nodes' region."""
        filters = filters or InstanceTypeFilter()
        with self._asking("its nodes"):
            nodes = self._nodes()
        shapes: dict[str, InstanceType] = {}
        for node in sorted(nodes, key=lambda n: n.metadata.name):
            region = _label(node, REGION_LABELS) or DEFAULT_REGION
            if filters.region not in (None, region):
                continue
            item = _shape(node)
            if filters.admits(item):
                shapes.setdefault(item.instance_type, item)
        items = sorted(shapes.values(), key=lambda i: (i.v_cpus, i.memory_mib, i.instance_type))
        return InstanceTypeList(
            items=tuple(items), metadata=InstanceTypeMetadata(provider=PROVIDER)
        )

    def provider_networks(self, region: str | None = None) -> tuple[ProviderNetwork, ...]:
        return ()

    # ----------------------------------------------------------------- networks

    def provision_network(self, spec: NetworkSpec, *, operation_id: str) -> StepStatus:
        return StepStatus(
            state="succeeded",
            stage="network",
            message="An existing cluster brings its own network: nothing to create.",
        )

    def update_network(self, spec: NetworkSpec, *, operation_id: str) -> StepStatus:
        return self.provision_network(spec, operation_id=operation_id)

    def destroy_network(self, spec: NetworkSpec, *, operation_id: str) -> StepStatus:
        return StepStatus(
            state="succeeded", stage="network", message="Nothing of the network to release."
        )

    # ----------------------------------------------------------------- clusters

    def provision_cluster(self, spec: ClusterSpec, *, operation_id: str) -> StepStatus:
        """Create (or find) the cluster's namespace; succeeds once a node is ready.
        Outputs: namespace, clusterEndpoint, serverVersion."""
        return self._step("namespace", lambda: self._provision_cluster(spec))

    def _provision_cluster(self, spec: ClusterSpec) -> StepStatus:
        core = k8s.CoreV1Api(self.api)
        name = namespace_name(spec.cluster_id)
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/managed-by": "sailplane",
                    "sailplane.dev/cluster": spec.cluster_id.lower(),
                },
            },
        }
        try:
            core.create_namespace(body, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 409:  # AlreadyExists: an earlier call made it
                raise
        found = core.read_namespace(name, _request_timeout=self.timeout)
        if found.status is not None and found.status.phase == "Terminating":
            raise _StepFailed(f"Namespace {name} is still being deleted; provision again later.")
        version, nodes = self._version(), self._nodes()
        outputs = {
            "namespace": name,
            "clusterEndpoint": self.server,
            "clusterCertificateAuthority": self._cluster().get("certificate-authority-data", ""),
            "serverVersion": version,
        }
        if not any(_ready(n) for n in nodes):
            return StepStatus(
                state="running",
                stage="nodes",
                message=f"Namespace {name} is ready; waiting for a ready node ({len(nodes)} known).",
                outputs=outputs,
            )
        return StepStatus(
            state="succeeded",
            stage="nodes",
            message=f"Namespace {name} on Kubernetes {version} is ready.",
            outputs=outputs,
        )

    def update_cluster(self, spec: ClusterSpec, *, operation_id: str) -> StepStatus:
        """Sailplane sizes nothing on an existing cluster: the update re-checks the namespace."""
        return self.provision_cluster(spec, operation_id=operation_id)

    def destroy_cluster(self, spec: ClusterSpec, *, operation_id: str) -> StepStatus:
        return self._step("namespace", lambda: self._destroy_cluster(spec))

    def _destroy_cluster(self, spec: ClusterSpec) -> StepStatus:
        core = k8s.CoreV1Api(self.api)
        name = namespace_name(spec.cluster_id)
        try:
            core.delete_namespace(name, _request_timeout=self.timeout)
            core.read_namespace(name, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return StepStatus(
                state="succeeded", stage="namespace", message=f"Namespace {name} is deleted."
            )
        return StepStatus(
            state="running", stage="namespace", message=f"Namespace {name} is terminating."
        )

    def kubeconfig(self, spec: ClusterSpec) -> Kubeconfig:
        document = copy.deepcopy(self.document)
        chosen = document["current-context"]
        for entry in document["contexts"]:
            if entry["name"] == chosen:
                entry.setdefault("context", {})["namespace"] = namespace_name(spec.cluster_id)
        cluster = self._cluster()
        return Kubeconfig(
            kubeconfig=yaml.safe_dump(document, sort_keys=False),
            cluster_endpoint=cluster["server"],
            cluster_certificate_authority=cluster.get("certificate-authority-data", ""),
        )

    def health(self, spec: ClusterSpec) -> ClusterHealth:
        """healthy: every node ready and every kube-system pod ready; degraded: some; unhealthy:
        no ready node or the server does not answer (said in `message`)."""
        try:
            with self._asking("its version, nodes and system pods"):
                version = self._version()
                nodes = self._nodes()
                pods = (
                    k8s.CoreV1Api(self.api)
                    .list_namespaced_pod(SYSTEM_NAMESPACE, _request_timeout=self.timeout)
                    .items
                )
        except (InvalidValueError, ProviderUnavailableError) as exc:
            return ClusterHealth(
                status="unhealthy",
                provider_metadata={"server": self.server},
                node_groups=(),
                system_pods=(),
                total_nodes=0,
                ready_nodes=0,
                message=exc.message,
            )
        groups: dict[str, list[Any]] = {}
        for node in nodes:
            groups.setdefault(_label(node, NODE_GROUP_LABELS) or "default", []).append(node)
        node_groups = tuple(
            NodeGroupHealth(
                name=name,
                status="Ready" if all(_ready(n) for n in members) else "Degraded",
                desired_size=len(members),
                ready_nodes=sum(_ready(n) for n in members),
            )
            for name, members in sorted(groups.items())
        )
        system_pods = tuple(_pod_health(p) for p in sorted(pods, key=lambda p: p.metadata.name))
        ready = sum(_ready(n) for n in nodes)
        if not ready:
            status = "unhealthy"
        elif ready < len(nodes) or not all(p.ready for p in system_pods):
            status = "degraded"
        else:
            status = "healthy"
        return ClusterHealth(
            status=status,
            provider_metadata={"server": self.server, "version": version},
            node_groups=node_groups,
            system_pods=system_pods,
            total_nodes=len(nodes),
            ready_nodes=ready,
            message=f"{ready} of {len(nodes)} nodes ready.",
        )

    def metrics(
        self, spec: ClusterSpec, *, start: datetime, end: datetime, period_seconds: int
    ) -> ClusterMetrics:
        """The current utilization (one point, timed by the clock) from metrics-server. The
        API keeps no history, so the window only decides whether now is inside it."""
        if not start <= self.clock() <= end + timedelta(seconds=period_seconds):
            return ClusterMetrics()
        with self._asking("node metrics (metrics.k8s.io)"):
            try:
                usage = k8s.CustomObjectsApi(self.api).list_cluster_custom_object(
                    "metrics.k8s.io", "v1beta1", "nodes", _request_timeout=self.timeout
                )["items"]
            except ApiException as exc:
                if exc.status == 404:  # no metrics-server: no figures
                    return ClusterMetrics()
                raise
            nodes = self._nodes()
        allocatable = {
            n.metadata.name: (n.status.allocatable or {}) for n in nodes if n.status is not None
        }
        used_cpu = used_memory = total_cpu = total_memory = Decimal(0)
        for item in usage:
            node = allocatable.get(item["metadata"]["name"])
            if not node:
                continue
            used_cpu += parse_quantity(item["usage"]["cpu"])
            used_memory += parse_quantity(item["usage"]["memory"])
            total_cpu += parse_quantity(node.get("cpu", "0"))
            total_memory += parse_quantity(node.get("memory", "0"))
        if not total_cpu or not total_memory:
            return ClusterMetrics()
        now = self.clock()
        return ClusterMetrics(
            cpu_utilization=(MetricPoint(timestamp=now, value=_percent(used_cpu, total_cpu)),),
            memory_utilization=(
                MetricPoint(timestamp=now, value=_percent(used_memory, total_memory)),
            ),
        )


def _no_template() -> ConflictError:
    return ConflictError(
        "A kubernetes connection has no infrastructure template: it reaches an existing "
        "cluster with its kubeconfig.",
        code="unsupported_by_provider",
    )


def namespace_name(cluster_id: str) -> str:
    return f"sailplane-{cluster_id.lower()}"


def _percent(used: Decimal, total: Decimal) -> float:
    return round(float(used / total * 100), 2)


def _label(node: Any, keys: tuple[str, ...]) -> str | None:
    labels = node.metadata.labels or {}
    return next((labels[k] for k in keys if labels.get(k)), None)


def _ready(node: Any) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _quantity(values: Mapping[str, str] | None, key: str) -> Decimal:
    return parse_quantity((values or {}).get(key, "0"))


def _shape(node: Any) -> InstanceType:
    capacity = node.status.capacity if node.status else None
    allocatable = node.status.allocatable if node.status else None
    vcpus = int(_quantity(capacity, "cpu"))
    memory_mib = int(_quantity(capacity, "memory") / (1024 * 1024))
    named = _label(node, INSTANCE_TYPE_LABELS)
    instance_type = named or f"custom-{vcpus}vcpu-{round(memory_mib / 1024)}gib"
    labels = node.metadata.labels or {}
    return InstanceType(
        provider=PROVIDER,
        instance_type=instance_type,
        v_cpus=vcpus,
        memory_mib=memory_mib,
        architecture=ARCHITECTURES.get(labels.get("kubernetes.io/arch", ""), "x86_64"),
        gpu_count=int(_quantity(capacity, "nvidia.com/gpu")),
        instance_family=instance_type.split(".", 1)[0] if named else "custom",
        max_pods=int(_quantity(capacity, "pods")),
        group=_label(node, NODE_GROUP_LABELS) or "default",
        allocatable_milli_cpu=int(_quantity(allocatable, "cpu") * 1000),
    )


def _pod_health(pod: Any) -> PodHealth:
    status = pod.status
    containers = (status.container_statuses if status else None) or []
    conditions = (status.conditions if status else None) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return PodHealth(
        name=pod.metadata.name,
        namespace=pod.metadata.namespace or SYSTEM_NAMESPACE,
        ready=ready,
        phase=(status.phase if status else None) or "Unknown",
        restart_count=sum(c.restart_count or 0 for c in containers),
        message=(status.message if status else None) or "",
    )
