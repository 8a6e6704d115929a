"""Session and compute-config use cases.

A compute config names a workload cluster and a team; the instance types it names are
checked against the cluster's connection (its provider's instance types). A session runs
on its config's cluster, which must be usable (active) when it is created; the provisioner
then opens it (`open_session`): the cluster's Spark Connect endpoint, started on first use
for a local cluster, becomes the session's `grpcEndpoint`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from eventsourcing.persistence import Tracking

from sailplane.commands.base import Clock, SailplaneApplication, utc_now
from sailplane.commands.infra import Infra, cluster_spec, local_ids
from sailplane.commands.ports import InstanceTypeQuery, ProviderError
from sailplane.domain.base import Actor
from sailplane.domain.errors import (
    ConflictError,
    InvalidValueError,
    NotFoundError,
    PermissionDeniedError,
)
from sailplane.domain.identity import Team
from sailplane.domain.ids import new_id
from sailplane.domain.infra import ACTIVE, Cluster, Connection, ExternalCluster, Network
from sailplane.domain.sessions import ComputeConfig, Session
from sailplane.storage import EventLog

TOKEN_MIN_SECONDS = 60
TOKEN_MAX_SECONDS = 86_400
TOKEN_DEFAULT_SECONDS = 3_600


@dataclass(frozen=True)
class SessionToken:
    token: str
    expires_at: datetime


class Sessions(SailplaneApplication):
    def __init__(self, log: EventLog, *, infra: Infra, clock: Clock = utc_now) -> None:
        self.infra = infra
        super().__init__(log, clock=clock)

    # --- compute configs -----------------------------------------------------------------

    def create_compute_config(
        self,
        *,
        name: str,
        workload_type: str,
        cluster_id: str,
        team_id: str,
        config: dict[str, Any],
        endpoint_limits: dict[str, int],
        by: Actor,
    ) -> tuple[str, int]:
        if workload_type not in ("session",):
            raise InvalidValueError(
                f"workloadType must be session; got {workload_type!r}.", field="workloadType"
            )
        self._load(Team, team_id, organization_id=by.organization_id, kind="team")
        cluster = self._cluster(cluster_id, by, field="clusterId")
        self._check_instance_types(cluster, config)
        compute = ComputeConfig.create(
            id=new_id(),
            name=name,
            workload_type=workload_type,
            cluster_id=cluster.id,
            team_id=team_id,
            config=config,
            endpoint_limits=endpoint_limits,
            by=by,
            at=self.clock(),
        )
        return compute.id, self._commit(compute)

    def _check_instance_types(self, cluster: Cluster, config: dict[str, Any]) -> None:
        compute = (config.get("sail") or {}).get("compute") or {}
        named = {
            f"config.sail.compute.{role}.instanceType": (compute.get(role) or {}).get(
                "instanceType"
            )
            for role in ("driver", "worker")
        }
        named = {field: value for field, value in named.items() if value}
        if not named:
            return
        connection = self._load(
            Connection,
            cluster.connection_id,
            organization_id=cluster.organization_id,
            kind="connection",
        )
        adapter = self.infra.providers.get(connection.provider)
        try:
            offered = {
                t["instanceType"]
                for t in adapter.instance_types(
                    self.infra.connection_spec(connection), InstanceTypeQuery(region=cluster.region)
                )
            }
        except ProviderError as exc:
            raise ConflictError(
                f"Cannot list the instance types of connection {connection.id}: {exc.message}",
                code="instance_types_unavailable",
            ) from None
        for field, value in named.items():
            if value not in offered:
                raise InvalidValueError(
                    f"Instance type {value!r} is not offered by connection {connection.id} in "
                    f"{cluster.region} (offered: {', '.join(sorted(offered)) or 'none'}).",
                    field=field,
                    code="unknown_instance_type",
                )

    # --- sessions ------------------------------------------------------------------------

    def create_session(
        self,
        *,
        name: str,
        endpoint_type: str,
        team_id: str | None,
        workload_config_id: str | None,
        notebook_id: str | None,
        config: dict[str, Any],
        metadata: dict[str, str],
        by: Actor,
    ) -> tuple[str, int]:
        if endpoint_type not in ("spark_connect",):
            raise InvalidValueError(
                f"endpointType must be spark_connect; got {endpoint_type!r}.", field="endpointType"
            )
        at = self.clock()
        extra: list[ComputeConfig] = []
        if workload_config_id is not None:
            compute = self._compute_config(workload_config_id, by)
        else:
            if team_id is not None:
                self._load(Team, team_id, organization_id=by.organization_id, kind="team")
            compute = ComputeConfig.create(
                id=new_id(),
                name=None,
                workload_type="session",
                cluster_id=local_ids(by.organization_id)[3],
                team_id=team_id,
                config={},
                endpoint_limits={},
                by=by,
                at=at,
            )
            extra.append(compute)
        cluster = self._cluster(compute.cluster_id, by, field="workloadConfigId")
        if cluster.external_status != ACTIVE:
            raise ConflictError(
                f"Cannot open a session on cluster {cluster.id}: its status is "
                f"{cluster.external_status} (allowed: active).",
                code="cluster_not_active",
            )
        session = self._new_session(
            name=name,
            endpoint_type=endpoint_type,
            compute=compute,
            team_id=team_id if team_id is not None else compute.team_id,
            notebook_id=notebook_id,
            config=config,
            metadata=metadata,
            relaunched_from=None,
            by=by,
        )
        return session.id, self._commit(*extra, session)

    def _new_session(
        self,
        *,
        name: str,
        endpoint_type: str,
        compute: ComputeConfig,
        team_id: str | None,
        notebook_id: str | None,
        config: dict[str, Any],
        metadata: dict[str, str],
        relaunched_from: str | None,
        by: Actor,
    ) -> Session:
        return Session.create(
            id=new_id(),
            by=by,
            at=self.clock(),
            name=name,
            endpoint_type=endpoint_type,
            workload_config_id=compute.id,
            cluster_id=compute.cluster_id,
            team_id=team_id,
            member_id=by.id if by.kind == "member" else None,
            service_account_id=by.id if by.kind == "service_account" else None,
            notebook_id=notebook_id,
            config=config,
            metadata=metadata,
            sealed_token_key=self.infra.secret_box.seal(secrets.token_urlsafe(32)),
            relaunched_from=relaunched_from,
        )

    def close_session(self, session_id: str, *, by: Actor) -> int:
        session = self._session(session_id, by)
        session.close(by=by, at=self.clock())
        return self._commit(session)

    def relaunch_session(self, session_id: str, *, by: Actor) -> tuple[str, int]:
        session = self._session(session_id, by)
        if (session.member_id or session.service_account_id) != by.id:
            raise PermissionDeniedError(
                f"Only the owner of session {session.id} can relaunch it.", code="not_session_owner"
            )
        session.check_relaunchable()
        compute = self._compute_config(session.workload_config_id, by)
        cluster = self._cluster(compute.cluster_id, by, field="workloadConfigId")
        if cluster.external_status != ACTIVE:
            raise ConflictError(
                f"Cannot relaunch session {session.id}: cluster {cluster.id} is "
                f"{cluster.external_status} (allowed: active).",
                code="cluster_not_active",
            )
        new = self._new_session(
            name=session.name,
            endpoint_type=session.endpoint_type,
            compute=compute,
            team_id=session.team_id,
            notebook_id=session.notebook_id,
            config=session.config,
            metadata=session.metadata,
            relaunched_from=session.id,
            by=by,
        )
        return new.id, self._commit(new)

    def issue_token(
        self, session_id: str, *, duration_seconds: int | None, by: Actor
    ) -> SessionToken:
        """A short-lived signed token for the session's endpoint (HS256 with the session's key)."""
        session = self._session(session_id, by)
        session.check_open("issue a token for")
        seconds = TOKEN_DEFAULT_SECONDS if duration_seconds is None else duration_seconds
        if not TOKEN_MIN_SECONDS <= seconds <= TOKEN_MAX_SECONDS:
            raise InvalidValueError(
                f"durationSeconds must be between {TOKEN_MIN_SECONDS} and {TOKEN_MAX_SECONDS}.",
                field="durationSeconds",
            )
        now = self.clock()
        expires = now + timedelta(seconds=seconds)
        claims = {
            "sub": session.id,
            "org": session.organization_id,
            "aud": "sailplane-session",
            "target": session.grpc_endpoint or "",
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        key = self.infra.secret_box.open(session.sealed_token_key)
        return SessionToken(jwt.encode(claims, key, algorithm="HS256"), expires)

    def open_session(self, session_id: str, *, by: Actor, tracking: Tracking | None = None) -> int:
        """The provisioner: bring up the cluster's Spark Connect endpoint; the session goes active or failed."""
        session = self._find(Session, session_id)
        if session is None or session.status != "pending":
            return 0
        cluster = self._find(Cluster, session.cluster_id)
        external = self._find(ExternalCluster, cluster.external_cluster_id) if cluster else None
        connection = self._find(Connection, external.connection_id) if external else None
        at = self.clock()
        if cluster is None or external is None or connection is None or not cluster.usable:
            session.fail(f"Cluster {session.cluster_id} is not active.", by=by, at=at)
        else:
            network = self._find(Network, external.network_id)
            try:
                endpoint = self.infra.providers.get(connection.provider).spark_endpoint(
                    self.infra.connection_spec(connection),
                    cluster_spec(external, network.outputs if network else {}),
                )
            except ProviderError as exc:
                session.fail(exc.message, by=by, at=self.clock())
            else:
                session.open(endpoint, by=by, at=self.clock())
        return self._commit(session, tracking=tracking)

    def end_sessions(
        self, session_ids: list[str], *, reason: str, by: Actor, tracking: Tracking | None = None
    ) -> int:
        """Close these sessions (those not ended yet) at once, e.g. when their cluster goes away."""
        sessions = [s for s in (self._find(Session, i) for i in session_ids) if s is not None]
        for session in sessions:
            session.end(reason, by=by, at=self.clock())
        return self._commit(*sessions, tracking=tracking)

    # --- helpers -------------------------------------------------------------------------

    def _session(self, session_id: str, by: Actor) -> Session:
        return self._load(Session, session_id, organization_id=by.organization_id, kind="session")

    def _compute_config(self, config_id: str, by: Actor) -> ComputeConfig:
        return self._load(
            ComputeConfig, config_id, organization_id=by.organization_id, kind="workload_config"
        )

    def _cluster(self, cluster_id: str, by: Actor, *, field: str) -> Cluster:
        try:
            return self._load(
                Cluster, cluster_id, organization_id=by.organization_id, kind="cluster"
            )
        except NotFoundError:
            raise InvalidValueError(
                f"Cluster {cluster_id} was not found.", field=field, code="cluster_not_found"
            ) from None
