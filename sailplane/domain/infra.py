"""Infrastructure: connections, networks, provisioned clusters, workload clusters, operations.

A `Connection` is a cloud account or a place clusters run (`aws`, `kubernetes`, `local`).
A `Network` and an `ExternalCluster` (the provisioned cluster, `/infra/...`) follow one
status machine (DECISIONS.md "Clusters and connections"):

    pending --provision--> provisioning --> active | failed
    failed  --provision--> provisioning
    active  --update-----> updating     --> active | failed      (clusters only)
    active | failed --destroy--> destroying --> destroyed | failed
    record delete: only destroyed or never provisioned (pending)

Creating an `ExternalCluster` also creates its workload `Cluster` (`clusterId` <->
`externalClusterId`), which mirrors the external status (`externalStatus`) and last
operation; jobs and sessions use the workload cluster, usable when it is `active`.

An `Operation` records one provision, update, destroy or template sync:
`pending -> running -> succeeded | failed`, with progress, result and error. The
provisioner performs the steps and records them here.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.domain.notification_sources import NOTIFICATION_SOURCES, Lookup, Notable

PROVIDERS = ("aws", "kubernetes", "local")
LOCAL = "local"
NAME_MAX = 100

PENDING = "pending"
PROVISIONING = "provisioning"
ACTIVE = "active"
UPDATING = "updating"
DESTROYING = "destroying"
DESTROYED = "destroyed"
FAILED = "failed"
INFRA_STATUSES = (PENDING, PROVISIONING, ACTIVE, UPDATING, DESTROYING, DESTROYED, FAILED)

OPERATION_PENDING = "pending"
OPERATION_RUNNING = "running"
OPERATION_SUCCEEDED = "succeeded"
OPERATION_FAILED = "failed"

_NAME = re.compile(r"[^\x00-\x1f]{1,100}")


def check_name(name: str, *, field: str = "name") -> str:
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise InvalidValueError(
            f"{field} must be 1 to {NAME_MAX} printable characters.", field=field
        )
    return name


def check_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise InvalidValueError(
            f"provider must be one of {', '.join(PROVIDERS)}; got {provider!r}.", field="provider"
        )
    return provider


def wrong_state(
    kind: str, resource_id: str, status: str, action: str, allowed: tuple[str, ...]
) -> ConflictError:
    return ConflictError(
        f"Cannot {action} {kind} {resource_id}: its status is {status} "
        f"(allowed: {', '.join(allowed)}).",
        code=f"{kind.replace(' ', '_')}_status_conflict",
    )


# --- connections ----------------------------------------------------------------------------


class Connection(SailplaneAggregate):
    """A cloud account (aws), an existing Kubernetes cluster (kubernetes) or this host (local).

    `provider_config` holds the provider's plain settings; secret settings (a kubeconfig)
    are kept only sealed in `sealed_secrets`.
    """

    name: str
    provider: str
    provider_config: dict[str, Any]
    sealed_secrets: dict[str, str]
    status: str
    status_message: str | None
    deleted: bool

    class Created(SailplaneAggregate.Created):
        name: str
        provider: str
        provider_config: dict[str, Any]
        sealed_secrets: dict[str, str]
        status: str
        status_message: str | None

        def apply(self, aggregate: Connection) -> None:
            super().apply(aggregate)
            aggregate.name = self.name
            aggregate.provider = self.provider
            aggregate.provider_config = dict(self.provider_config)
            aggregate.sealed_secrets = dict(self.sealed_secrets)
            aggregate.status = self.status
            aggregate.status_message = self.status_message
            aggregate.deleted = False

    class Updated(SailplaneAggregate.Event):
        name: str
        provider_config: dict[str, Any]
        sealed_secrets: dict[str, str]

        def apply(self, aggregate: Connection) -> None:
            aggregate.name = self.name
            aggregate.provider_config = dict(self.provider_config)
            aggregate.sealed_secrets = dict(self.sealed_secrets)

    class Verified(SailplaneAggregate.Event):
        status: str
        status_message: str | None
        provider_config: dict[str, Any]

        def apply(self, aggregate: Connection) -> None:
            aggregate.status = self.status
            aggregate.status_message = self.status_message
            aggregate.provider_config = dict(self.provider_config)

    class TemplateSynced(SailplaneAggregate.Event):
        message: str | None

        def apply(self, aggregate: Connection) -> None:
            pass

    class Deleted(SailplaneAggregate.Event):
        def apply(self, aggregate: Connection) -> None:
            aggregate.deleted = True

    @classmethod
    def create(
        cls,
        *,
        id: str,
        name: str,
        provider: str,
        provider_config: dict[str, Any],
        sealed_secrets: dict[str, str],
        status: str,
        by: Actor,
        at: datetime,
        status_message: str | None = None,
    ) -> Connection:
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            name=check_name(name),
            provider=check_provider(provider),
            provider_config=provider_config,
            sealed_secrets=sealed_secrets,
            status=status,
            status_message=status_message,
        )

    def update(
        self,
        *,
        name: str,
        provider_config: dict[str, Any],
        sealed_secrets: dict[str, str],
        by: Actor,
        at: datetime,
    ) -> None:
        name = check_name(name)
        if (name, provider_config, sealed_secrets) != (
            self.name,
            self.provider_config,
            self.sealed_secrets,
        ):
            self._trigger(
                self.Updated,
                by=by,
                at=at,
                name=name,
                provider_config=provider_config,
                sealed_secrets=sealed_secrets,
            )

    def record_verification(
        self,
        *,
        ok: bool,
        message: str | None,
        provider_config: dict[str, Any],
        by: Actor,
        at: datetime,
    ) -> None:
        self._trigger(
            self.Verified,
            by=by,
            at=at,
            status=ACTIVE if ok else FAILED,
            status_message=message,
            provider_config=provider_config,
        )

    def check_active(self, action: str) -> None:
        if self.status != ACTIVE:
            raise wrong_state("connection", self.id, self.status, action, (ACTIVE,))

    def record_template_sync(self, *, message: str | None, by: Actor, at: datetime) -> None:
        self._trigger(self.TemplateSynced, by=by, at=at, message=message)

    def delete(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Deleted, by=by, at=at)


# --- the provisioned-resource status machine ------------------------------------------------


class Provisioned(SailplaneAggregate):
    """A network or provisioned cluster: what the provisioner creates, updates and destroys."""

    kind: str  # "network" or "cluster", for messages and error codes
    connection_id: str
    name: str
    region: str
    config: dict[str, Any]
    status: str
    status_message: str | None
    operation_id: str | None
    outputs: dict[str, Any]  # iacOutputs: what the provider reports about the resource
    provisioned_once: bool
    deleted: bool

    class StatusChanged(SailplaneAggregate.Event):
        status: str
        status_message: str | None
        operation_id: str | None
        outputs: dict[str, Any] | None

        def apply(self, aggregate: Provisioned) -> None:
            aggregate.status = self.status
            aggregate.status_message = self.status_message
            if self.operation_id is not None:
                aggregate.operation_id = self.operation_id
            if self.outputs is not None:
                aggregate.outputs = dict(self.outputs)
            if self.status == PROVISIONING:
                aggregate.provisioned_once = True

    class Renamed(SailplaneAggregate.Event):
        name: str

        def apply(self, aggregate: Provisioned) -> None:
            aggregate.name = self.name

    class Deleted(SailplaneAggregate.Event):
        def apply(self, aggregate: Provisioned) -> None:
            aggregate.deleted = True

    def begin(self, status: str) -> None:
        """The lifecycle fields of a new network or cluster (called by its Created event)."""
        self.status = status
        self.status_message = None
        self.operation_id = None
        self.outputs = {}
        self.provisioned_once = status != PENDING
        self.deleted = False

    def _change(
        self,
        status: str,
        *,
        by: Actor,
        at: datetime,
        message: str | None = None,
        operation_id: str | None = None,
        outputs: dict[str, Any] | None = None,
    ) -> None:
        self._trigger(
            self.StatusChanged,
            by=by,
            at=at,
            status=status,
            status_message=message,
            operation_id=operation_id,
            outputs=outputs,
        )

    def _require(self, action: str, allowed: tuple[str, ...]) -> None:
        if self.status not in allowed:
            raise wrong_state(self.kind, self.id, self.status, action, allowed)

    def start_provisioning(self, operation_id: str, *, by: Actor, at: datetime) -> None:
        self._require("provision", (PENDING, FAILED))
        self._change(PROVISIONING, by=by, at=at, operation_id=operation_id)

    def start_update(self, operation_id: str, *, by: Actor, at: datetime) -> None:
        self._require("update", (ACTIVE,))
        self._change(UPDATING, by=by, at=at, operation_id=operation_id)

    def start_destroying(self, operation_id: str, *, by: Actor, at: datetime) -> None:
        self._require("destroy", (ACTIVE, FAILED))
        self._change(DESTROYING, by=by, at=at, operation_id=operation_id)

    def finish(
        self,
        *,
        ok: bool,
        message: str | None,
        outputs: dict[str, Any] | None,
        by: Actor,
        at: datetime,
    ) -> None:
        """The running provision, update or destroy ended (success or failure)."""
        if self.status not in (PROVISIONING, UPDATING, DESTROYING):
            return  # already finished: a redelivered completion changes nothing
        if not ok:
            self._change(FAILED, by=by, at=at, message=message, outputs=outputs)
        elif self.status == DESTROYING:
            self._change(DESTROYED, by=by, at=at, message=message, outputs={})
        else:
            self._change(ACTIVE, by=by, at=at, message=message, outputs=outputs)

    def rename(self, name: str, *, by: Actor, at: datetime) -> None:
        name = check_name(name)
        if name != self.name:
            self._trigger(self.Renamed, by=by, at=at, name=name)

    @property
    def holds_infrastructure(self) -> bool:
        """Whether something may exist at the provider (anything but never-provisioned or destroyed)."""
        return self.status != DESTROYED and (self.status != PENDING or self.provisioned_once)

    def delete(self, *, by: Actor, at: datetime) -> None:
        if self.holds_infrastructure:
            raise ConflictError(
                f"Cannot delete {self.kind} {self.id}: its status is {self.status}; destroy its "
                "infrastructure first (only a destroyed or never provisioned record can be deleted).",
                code=f"{self.kind}_status_conflict",
            )
        self._trigger(self.Deleted, by=by, at=at)


class Network(Provisioned):
    kind = "network"
    provider_network_id: str | None

    class Created(SailplaneAggregate.Created):
        connection_id: str
        name: str
        region: str
        config: dict[str, Any]
        provider_network_id: str | None
        status: str

        def apply(self, aggregate: Network) -> None:
            super().apply(aggregate)
            aggregate.connection_id = self.connection_id
            aggregate.name = self.name
            aggregate.region = self.region
            aggregate.config = dict(self.config)
            aggregate.provider_network_id = self.provider_network_id
            aggregate.begin(self.status)

    @classmethod
    def create(
        cls,
        *,
        id: str,
        connection_id: str,
        name: str,
        region: str,
        config: dict[str, Any],
        provider_network_id: str | None,
        by: Actor,
        at: datetime,
        status: str = PENDING,
    ) -> Network:
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            connection_id=connection_id,
            name=check_name(name),
            region=region,
            config=config,
            provider_network_id=provider_network_id,
            status=status,
        )


class ExternalCluster(Provisioned):
    """A provisioned cluster (`/infra/...clusters`)."""

    kind = "cluster"
    network_id: str
    cluster_id: str  # the workload cluster

    class Created(SailplaneAggregate.Created):
        connection_id: str
        network_id: str
        cluster_id: str
        name: str
        region: str
        config: dict[str, Any]
        status: str

        def apply(self, aggregate: ExternalCluster) -> None:
            super().apply(aggregate)
            aggregate.connection_id = self.connection_id
            aggregate.network_id = self.network_id
            aggregate.cluster_id = self.cluster_id
            aggregate.name = self.name
            aggregate.region = self.region
            aggregate.config = dict(self.config)
            aggregate.begin(self.status)

    class Reconfigured(SailplaneAggregate.Event):
        config: dict[str, Any]

        def apply(self, aggregate: ExternalCluster) -> None:
            aggregate.config = dict(self.config)

    @classmethod
    def create(
        cls,
        *,
        id: str,
        connection_id: str,
        network_id: str,
        cluster_id: str,
        name: str,
        region: str,
        config: dict[str, Any],
        by: Actor,
        at: datetime,
        status: str = PENDING,
    ) -> ExternalCluster:
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            connection_id=connection_id,
            network_id=network_id,
            cluster_id=cluster_id,
            name=check_name(name),
            region=region,
            config=config,
            status=status,
        )

    def reconfigure(self, config: dict[str, Any], *, by: Actor, at: datetime) -> None:
        self._require("update", (ACTIVE,))
        if config != self.config:
            self._trigger(self.Reconfigured, by=by, at=at, config=config)


class Cluster(SailplaneAggregate):
    """The workload cluster: what jobs and sessions run on, usable when externally active."""

    name: str
    provider: str
    connection_id: str
    network_id: str
    external_cluster_id: str
    region: str
    external_status: str
    operation_id: str | None
    open_to_all_members: bool
    deleted: bool

    class Created(SailplaneAggregate.Created):
        name: str
        provider: str
        connection_id: str
        network_id: str
        external_cluster_id: str
        region: str
        external_status: str
        open_to_all_members: bool

        def apply(self, aggregate: Cluster) -> None:
            super().apply(aggregate)
            aggregate.name = self.name
            aggregate.provider = self.provider
            aggregate.connection_id = self.connection_id
            aggregate.network_id = self.network_id
            aggregate.external_cluster_id = self.external_cluster_id
            aggregate.region = self.region
            aggregate.external_status = self.external_status
            aggregate.operation_id = None
            aggregate.open_to_all_members = self.open_to_all_members
            aggregate.deleted = False

    class ExternalStatusMirrored(SailplaneAggregate.Event):
        external_status: str
        operation_id: str | None
        name: str

        def apply(self, aggregate: Cluster) -> None:
            aggregate.external_status = self.external_status
            aggregate.name = self.name
            if self.operation_id is not None:
                aggregate.operation_id = self.operation_id

    class Deleted(SailplaneAggregate.Event):
        def apply(self, aggregate: Cluster) -> None:
            aggregate.deleted = True

    @classmethod
    def create_for(
        cls,
        external: ExternalCluster,
        *,
        provider: str,
        open_to_all_members: bool,
        by: Actor,
        at: datetime,
    ) -> Cluster:
        return cls._create_as(
            id=external.cluster_id,
            by=by,
            at=at,
            name=external.name,
            provider=provider,
            connection_id=external.connection_id,
            network_id=external.network_id,
            external_cluster_id=external.id,
            region=external.region,
            external_status=external.status,
            open_to_all_members=open_to_all_members,
        )

    def mirror(self, external: ExternalCluster, *, by: Actor, at: datetime) -> None:
        """Follow the provisioned cluster's status, last operation and name."""
        if (external.status, external.operation_id, external.name) != (
            self.external_status,
            self.operation_id,
            self.name,
        ):
            self._trigger(
                self.ExternalStatusMirrored,
                by=by,
                at=at,
                external_status=external.status,
                operation_id=external.operation_id,
                name=external.name,
            )

    def delete(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Deleted, by=by, at=at)

    @property
    def usable(self) -> bool:
        return not self.deleted and self.external_status == ACTIVE


# --- operations -----------------------------------------------------------------------------

# operation kind -> (resource type, the resource's step)
OPERATION_KINDS = {
    "provision_network": ("network", "provision"),
    "destroy_network": ("network", "destroy"),
    "provision_cluster": ("cluster", "provision"),
    "update_cluster": ("cluster", "update"),
    "destroy_cluster": ("cluster", "destroy"),
    "sync_template": ("connection", "sync_template"),
}


class Operation(SailplaneAggregate):
    """A long-running change performed by the provisioner."""

    operation: str
    resource_type: str
    resource_id: str
    connection_id: str
    member_id: str | None
    status: str
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    started_at: datetime | None
    completed_at: datetime | None

    class Created(SailplaneAggregate.Created):
        operation: str
        resource_type: str
        resource_id: str
        connection_id: str
        member_id: str | None

        def apply(self, aggregate: Operation) -> None:
            super().apply(aggregate)
            aggregate.operation = self.operation
            aggregate.resource_type = self.resource_type
            aggregate.resource_id = self.resource_id
            aggregate.connection_id = self.connection_id
            aggregate.member_id = self.member_id
            aggregate.status = OPERATION_PENDING
            aggregate.progress = {"stage": "pending", "message": "Waiting for the provisioner."}
            aggregate.result = None
            aggregate.error = None
            aggregate.started_at = None
            aggregate.completed_at = None

    class Started(SailplaneAggregate.Event):
        def apply(self, aggregate: Operation) -> None:
            aggregate.status = OPERATION_RUNNING
            aggregate.started_at = self.timestamp

    class Progressed(SailplaneAggregate.Event):
        progress: dict[str, Any]

        def apply(self, aggregate: Operation) -> None:
            aggregate.progress = dict(self.progress)

    class Succeeded(SailplaneAggregate.Event):
        result: dict[str, Any] | None
        progress: dict[str, Any]

        def apply(self, aggregate: Operation) -> None:
            aggregate.status = OPERATION_SUCCEEDED
            aggregate.result = self.result
            aggregate.progress = dict(self.progress)
            aggregate.completed_at = self.timestamp

    class Failed(SailplaneAggregate.Event):
        error: dict[str, Any]
        progress: dict[str, Any]

        def apply(self, aggregate: Operation) -> None:
            aggregate.status = OPERATION_FAILED
            aggregate.error = dict(self.error)
            aggregate.progress = dict(self.progress)
            aggregate.completed_at = self.timestamp

    @classmethod
    def create(
        cls,
        *,
        id: str,
        operation: str,
        resource_id: str,
        connection_id: str,
        by: Actor,
        at: datetime,
    ) -> Operation:
        resource_type, _ = OPERATION_KINDS[operation]
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            operation=operation,
            resource_type=resource_type,
            resource_id=resource_id,
            connection_id=connection_id,
            member_id=by.member_id,
        )

    @property
    def step(self) -> str:
        return OPERATION_KINDS[self.operation][1]

    @property
    def finished(self) -> bool:
        return self.status in (OPERATION_SUCCEEDED, OPERATION_FAILED)

    def start(self, *, by: Actor, at: datetime) -> bool:
        """Mark it running; False when it already runs or ended (a redelivery)."""
        if self.status != OPERATION_PENDING:
            return False
        self._trigger(self.Started, by=by, at=at)
        return True

    def record_progress(
        self, stage: str, message: str, resources: list[dict[str, Any]], *, by: Actor, at: datetime
    ) -> None:
        if self.finished:
            return
        progress = {
            "stage": stage,
            "message": message,
            "resources": resources,
            "summary": _summary(resources),
        }
        if progress != self.progress:
            self._trigger(self.Progressed, by=by, at=at, progress=progress)

    def succeed(
        self, result: dict[str, Any] | None, *, message: str, by: Actor, at: datetime
    ) -> None:
        if self.finished:
            return
        resources = [dict(r, status="succeeded") for r in self.progress.get("resources", [])]
        progress = {
            "stage": "completed",
            "message": message,
            "resources": resources,
            "summary": _summary(resources),
        }
        self._trigger(self.Succeeded, by=by, at=at, result=result, progress=progress)

    def fail(self, *, code: str, message: str, retryable: bool, by: Actor, at: datetime) -> None:
        if self.finished:
            return
        resources = [
            dict(r, status="failed") if r.get("status") != "succeeded" else r
            for r in self.progress.get("resources", [])
        ]
        progress = {
            "stage": "failed",
            "message": message,
            "resources": resources,
            "summary": _summary(resources),
        }
        error = {
            "code": code,
            "message": message,
            "errorType": "provider",
            "details": {"retryable": retryable},
        }
        self._trigger(self.Failed, by=by, at=at, error=error, progress=progress)


def _summary(resources: list[dict[str, Any]]) -> dict[str, int]:
    summary = {
        "total": len(resources),
        "pending": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "unchanged": 0,
    }
    for resource in resources:
        status = resource.get("status", "pending")
        if status in summary:
            summary[status] += 1
    return summary


# --- what the notifier hears from this context ------------------------------------------


@NOTIFICATION_SOURCES.maps(ExternalCluster.StatusChanged)
def _cluster_status(event: ExternalCluster.StatusChanged, lookup: Lookup) -> Notable | None:
    """`cluster.active` and `cluster.failed`, about the workload cluster members use."""
    if event.status not in (ACTIVE, FAILED):
        return None
    cluster = lookup(event.originator_id, event.originator_version)
    if cluster is None:
        return None
    return Notable(
        event_type=f"cluster.{event.status}",
        resource_type="cluster",
        resource_id=cluster.cluster_id,
        related_ids=(cluster.id, cluster.connection_id, cluster.network_id),
        subject=f"Cluster {cluster.name} is {event.status}",
        payload={
            "clusterId": cluster.cluster_id,
            "externalClusterId": cluster.id,
            "status": event.status,
            "statusMessage": event.status_message,
            "operationId": event.operation_id,
        },
    )


@NOTIFICATION_SOURCES.maps(Operation.Failed)
def _operation_failed(event: Operation.Failed, lookup: Lookup) -> Notable | None:
    """`operation.failed`, owned by the member who started the operation."""
    operation = lookup(event.originator_id, event.originator_version)
    if operation is None:
        return None
    return Notable(
        event_type="operation.failed",
        resource_type="operation",
        resource_id=operation.id,
        related_ids=(operation.resource_id, operation.connection_id),
        member_id=operation.member_id,
        subject=f"Operation {operation.operation} of {operation.resource_type} "
        f"{operation.resource_id} failed",
        payload={
            "operation": operation.operation,
            "resourceType": operation.resource_type,
            "resourceId": operation.resource_id,
            "error": dict(event.error),
        },
    )
