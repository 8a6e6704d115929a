"""Interactive sessions and the compute configs they run with.

A `ComputeConfig` (a "workload config") names the workload cluster, the team and the Sail
settings a session runs with; named ones are reused, anonymous ones are made for a session
created without one. A `Session` is a Spark Connect endpoint on an active cluster:

    pending --opened--> active --close--> closed
    pending --failed--> failed
    pending | active | idle --close--> closed
    closed | failed --relaunch--> (a new session, pending; the original is unchanged)

Wrong-state actions are 409 with the current status in the message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import ConflictError
from sailplane.domain.infra import check_name

SESSION_STATUSES = ("pending", "active", "idle", "closed", "failed")
TERMINAL = ("closed", "failed")
ENDPOINT_TYPES = ("spark_connect",)
WORKLOAD_TYPES = ("session",)


class ComputeConfig(SailplaneAggregate):
    name: str | None
    workload_type: str
    cluster_id: str
    team_id: str | None
    config: dict[str, Any]
    endpoint_limits: dict[str, int]
    anonymous: bool

    class Created(SailplaneAggregate.Created):
        name: str | None
        workload_type: str
        cluster_id: str
        team_id: str | None
        config: dict[str, Any]
        endpoint_limits: dict[str, int]
        anonymous: bool

        def apply(self, aggregate: ComputeConfig) -> None:
            super().apply(aggregate)
            aggregate.name = self.name
            aggregate.workload_type = self.workload_type
            aggregate.cluster_id = self.cluster_id
            aggregate.team_id = self.team_id
            aggregate.config = dict(self.config)
            aggregate.endpoint_limits = dict(self.endpoint_limits)
            aggregate.anonymous = self.anonymous

    @classmethod
    def create(
        cls,
        *,
        id: str,
        name: str | None,
        workload_type: str,
        cluster_id: str,
        team_id: str | None,
        config: dict[str, Any],
        endpoint_limits: dict[str, int],
        by: Actor,
        at: datetime,
    ) -> ComputeConfig:
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            name=None if name is None else check_name(name),
            workload_type=workload_type,
            cluster_id=cluster_id,
            team_id=team_id,
            config=config,
            endpoint_limits=endpoint_limits,
            anonymous=name is None,
        )


class Session(SailplaneAggregate):
    name: str
    endpoint_type: str
    status: str
    workload_config_id: str
    cluster_id: str
    team_id: str | None
    member_id: str | None
    service_account_id: str | None
    notebook_id: str | None
    config: dict[str, Any]
    metadata: dict[str, str]
    sealed_token_key: str
    grpc_endpoint: str | None
    status_message: str | None
    termination_reason: str | None
    relaunched_from: str | None
    closed_at: datetime | None

    class Created(SailplaneAggregate.Created):
        name: str
        endpoint_type: str
        workload_config_id: str
        cluster_id: str
        team_id: str | None
        member_id: str | None
        service_account_id: str | None
        notebook_id: str | None
        config: dict[str, Any]
        metadata: dict[str, str]
        sealed_token_key: str
        relaunched_from: str | None

        def apply(self, aggregate: Session) -> None:
            super().apply(aggregate)
            for field in (
                "name",
                "endpoint_type",
                "workload_config_id",
                "cluster_id",
                "team_id",
                "member_id",
                "service_account_id",
                "notebook_id",
                "sealed_token_key",
                "relaunched_from",
            ):
                setattr(aggregate, field, getattr(self, field))
            aggregate.config = dict(self.config)
            aggregate.metadata = dict(self.metadata)
            aggregate.status = "pending"
            aggregate.grpc_endpoint = None
            aggregate.status_message = "Waiting for the cluster's Spark Connect endpoint."
            aggregate.termination_reason = None
            aggregate.closed_at = None

    class Opened(SailplaneAggregate.Event):
        grpc_endpoint: str

        def apply(self, aggregate: Session) -> None:
            aggregate.status = "active"
            aggregate.grpc_endpoint = self.grpc_endpoint
            aggregate.status_message = None

    class Failed(SailplaneAggregate.Event):
        message: str

        def apply(self, aggregate: Session) -> None:
            aggregate.status = "failed"
            aggregate.status_message = self.message
            aggregate.termination_reason = "failed"

    class Closed(SailplaneAggregate.Event):
        reason: str

        def apply(self, aggregate: Session) -> None:
            aggregate.status = "closed"
            aggregate.termination_reason = self.reason
            aggregate.closed_at = self.timestamp

    @classmethod
    def create(cls, *, id: str, by: Actor, at: datetime, **fields: Any) -> Session:
        fields["name"] = check_name(fields["name"])
        return cls._create_as(id=id, by=by, at=at, **fields)

    def _wrong_state(self, action: str, allowed: tuple[str, ...]) -> ConflictError:
        return ConflictError(
            f"Cannot {action} session {self.id}: its status is {self.status} "
            f"(allowed: {', '.join(allowed)}).",
            code="session_status_conflict",
        )

    def open(self, grpc_endpoint: str, *, by: Actor, at: datetime) -> None:
        if self.status != "pending":
            return  # closed before its endpoint came up, or opened already (a redelivery)
        self._trigger(self.Opened, by=by, at=at, grpc_endpoint=grpc_endpoint)

    def fail(self, message: str, *, by: Actor, at: datetime) -> None:
        if self.status != "pending":
            return
        self._trigger(self.Failed, by=by, at=at, message=message)

    def close(self, *, by: Actor, at: datetime) -> None:
        if self.status in TERMINAL:
            raise self._wrong_state("close", ("pending", "active", "idle"))
        self._trigger(self.Closed, by=by, at=at, reason="closed_by_user")

    def end(self, reason: str, *, by: Actor, at: datetime) -> None:
        """Close it for a reason outside the user's hands (its cluster went away); no-op when ended."""
        if self.status not in TERMINAL:
            self._trigger(self.Closed, by=by, at=at, reason=reason)

    def check_relaunchable(self) -> None:
        if self.status not in TERMINAL:
            raise self._wrong_state("relaunch", TERMINAL)

    def check_open(self, action: str) -> None:
        if self.status in TERMINAL:
            raise self._wrong_state(action, ("pending", "active", "idle"))
