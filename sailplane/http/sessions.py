"""`/api/v1/workloads/sessions` and `/api/v1/workloads/compute-configs`.

Sessions need `CanManageSessions`, compute configs `CanUseClusters`, from an organization
role or from a team role in some team (for a create with `teamId`: in that team).
Visibility follows the documents: members see their own sessions, team admins (holders of
the permission through a team role) also those of their teams, holders of the permission
through an organization role all of them; compute configs are listed for the caller's
teams, all of them with the permission from an organization role.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, JSONBody, QueryParameter

from sailplane.contexts import InfraContext
from sailplane.domain.errors import InvalidValueError, NotFoundError, PermissionDeniedError
from sailplane.http.auth import (
    Caller,
    InfraDep,
    Principal,
    can_access,
    reachable_team_ids,
    require_access,
)
from sailplane.http.pagination import Limit, Marker, NormalizedListing
from sailplane.http.routes import delete, get, post
from sailplane.http.shapes import Shape, from_row, iso

SESSIONS, CONFIGS = "CanManageSessions", "CanUseClusters"
# A team role that manages a team's members also sees the team's sessions.
TEAM_ADMIN = "CanManageTeamMembers"
Id = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,20}$")]


def requires_somewhere(permission: str) -> Any:
    """A guard: `permission` from an organization role, or from a team role in any team."""

    # A coroutine: Litestar runs a plain function guard in a worker thread, a hop per request
    # for what reads only the principal.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal: Principal = connection.user
        if principal.can(permission) or principal.teams_granting(permission):
            return
        raise PermissionDeniedError(
            f"This needs the {permission} permission, which neither your roles nor your teams grant.",
            code="forbidden",
        )

    guard.__name__ = f"requires_{permission}"
    return guard


def _require_in_team(principal: Principal, permission: str, team_id: str | None) -> None:
    require_access(
        principal,
        permission,
        granted_team_ids=[team_id] if team_id else [],
        refusal=f"This needs the {permission} permission in team {team_id or '(none named)'}.",
    )


# --- shapes -----------------------------------------------------------------------------


class SessionSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    idle_timeout_seconds: Annotated[int, msgspec.Meta(ge=0, le=604_800)] = 0
    idle_close_delay_seconds: Annotated[int, msgspec.Meta(ge=0, le=604_800)] = 0
    max_duration_seconds: Annotated[int, msgspec.Meta(ge=0, le=2_592_000)] = 0


class SessionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    endpoint_type: str = "spark_connect"
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    team_id: Id | None = None
    member_id: Id | None = None
    service_account_id: Id | None = None
    notebook_id: Id | None = None
    config: SessionSettings = msgspec.field(default_factory=SessionSettings)
    metadata: dict[str, str] = {}
    workload_config_id: Id | None = None
    allow_shared: bool = False


class TokenRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    duration_seconds: Annotated[int, msgspec.Meta(ge=60, le=86_400)] | None = None


class ComputeConfigCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    workload_type: str = "session"
    cluster_id: Id
    team_id: Id
    config: dict[str, Any] = {}
    endpoint_limits: dict[str, Annotated[int, msgspec.Meta(ge=0)]] = {}


class ConnectionInfo(Shape):
    proxy_auth_url: str | None
    grpc_endpoint: str | None


class SessionOut(Shape):
    id: str
    endpoint_type: str
    name: str
    status: str
    workload_id: str
    team_id: str | None
    member_id: str | None
    service_account_id: str | None
    notebook_id: str | None
    termination_reason: str | None
    status_message: str | None
    connection_info: ConnectionInfo | None
    last_activity_at: str | None
    idle_since: str | None
    closed_at: str | None
    timeout_at: str | None
    config: dict[str, Any]
    metadata: dict[str, str]
    created_at: str | None
    updated_at: str | None


class ComputeConfigOut(Shape):
    id: str
    name: str | None
    workload_type: str
    cluster_id: str
    team_id: str | None
    config: dict[str, Any]
    endpoint_limits: dict[str, int]
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class SessionRef(Shape):
    id: str
    compute_instance_id: str
    member_id: str | None
    service_account_id: str | None


class SessionsIncluded(Shape):
    sessions: list[SessionOut]
    members: list[dict[str, Any]]
    service_accounts: list[dict[str, Any]]
    workloads: list[dict[str, Any]]
    workload_configs: list[ComputeConfigOut]


class ComputeConfigListing(msgspec.Struct, kw_only=True):
    items: list[ComputeConfigOut]
    marker: str | None


class TokenOut(Shape):
    token: str
    expires_at: str | None


def session_out(row: dict[str, Any], *, owner_view: bool) -> SessionOut:
    return from_row(
        SessionOut,
        row,
        workload_id=row["cluster_id"],
        connection_info=ConnectionInfo(proxy_auth_url=None, grpc_endpoint=row["grpc_endpoint"])
        if owner_view
        else None,
        last_activity_at=None,
        idle_since=None,
        timeout_at=None,
    )


def compute_config_out(row: dict[str, Any]) -> ComputeConfigOut:
    return from_row(ComputeConfigOut, row)


def _is_owner(principal: Principal, row: dict[str, Any]) -> bool:
    return principal.id in (row["member_id"], row["service_account_id"])


def _owner_view(principal: Principal, row: dict[str, Any]) -> bool:
    """Whether the caller sees the session as its owner does (and may issue its token)."""
    return can_access(principal, SESSIONS, open_to_caller=_is_owner(principal, row))


def _visibility(principal: Principal) -> tuple[str, list[str]] | None:
    """Whose sessions the caller sees: None for all (the organization-wide permission), else
    their own and those of the teams where a team role lets them manage members."""
    if can_access(principal, SESSIONS):
        return None
    return principal.id, principal.teams_granting(TEAM_ADMIN)


def _visible_session(infra: InfraContext, principal: Principal, session_id: str) -> dict[str, Any]:
    """The session if the caller may see it: owner, team admin of its team, or org-wide permission."""
    row = infra.session_views.session(principal.organization_id, session_id)
    if row is None or not (
        _owner_view(principal, row)
        or (row["team_id"] is not None and row["team_id"] in principal.teams_granting(TEAM_ADMIN))
    ):
        raise NotFoundError.of("session", session_id)
    return row


def _describe(infra: InfraContext, principal: Principal, session_id: str) -> SessionOut:
    row = _visible_session(infra, principal, session_id)
    return session_out(row, owner_view=_owner_view(principal, row))


class SessionController(Controller):
    path = "/workloads/sessions"
    tags = ["sessions"]

    @get("/", operation_id="ListSessions", guards=[requires_somewhere(SESSIONS)])
    def list_sessions(
        self,
        infra: InfraDep,
        principal: Caller,
        team_id: Annotated[
            Id | None, QueryParameter(name="teamId", description="Filter sessions by team.")
        ] = None,
        endpoint_type: Annotated[
            Literal["spark_connect"] | None,
            QueryParameter(name="endpoint_type", description="Filter sessions by endpoint type."),
        ] = None,
        status: Annotated[
            Literal["pending", "active", "idle", "closed", "failed"] | None,
            QueryParameter(description="Filter sessions by status."),
        ] = None,
        limit: Limit = 100,
        marker: Marker = None,
    ) -> NormalizedListing[SessionRef, SessionsIncluded]:
        """List the sessions the caller may see, oldest first, with filters."""
        org = principal.organization_id
        total, rows, next_marker = infra.session_views.sessions(
            org,
            visible_to=_visibility(principal),
            team_id=team_id,
            endpoint_type=endpoint_type,
            status=status,
            limit=limit,
            marker=marker,
        )
        configs = infra.session_views.compute_configs_by_id(
            org, sorted({r["workload_config_id"] for r in rows})
        )
        return NormalizedListing(
            total=total,
            items=[
                SessionRef(
                    id=r["id"],
                    compute_instance_id=r["cluster_id"],
                    member_id=r["member_id"],
                    service_account_id=r["service_account_id"],
                )
                for r in rows
            ],
            included=SessionsIncluded(
                sessions=[session_out(r, owner_view=_owner_view(principal, r)) for r in rows],
                members=[],
                service_accounts=[],
                workloads=[],
                workload_configs=[compute_config_out(c) for c in configs],
            ),
            marker=next_marker,
        )

    @post(
        "/",
        operation_id="CreateSession",
        guards=[requires_somewhere(SESSIONS)],
    )
    def create_session(
        self, infra: InfraDep, principal: Caller, data: JSONBody[SessionCreate]
    ) -> SessionOut:
        """Open a session on its config's active cluster; it starts pending and becomes active."""
        _require_in_team(principal, SESSIONS, data.team_id)
        for field, value, kind in (
            ("memberId", data.member_id, "member"),
            ("serviceAccountId", data.service_account_id, "service_account"),
        ):
            if value is not None and (value != principal.id or principal.kind != kind):
                raise InvalidValueError(f"{field} can only name the caller.", field=field)
        session_id, position = infra.sessions.create_session(
            name=data.name,
            endpoint_type=data.endpoint_type,
            team_id=data.team_id,
            workload_config_id=data.workload_config_id,
            notebook_id=data.notebook_id,
            config=msgspec.to_builtins(data.config),
            metadata=data.metadata,
            by=principal.actor,
        )
        infra.wait_for_views(position)
        return _describe(infra, principal, session_id)

    @get(
        "/{session:str}",
        operation_id="DescribeSession",
        guards=[requires_somewhere(SESSIONS)],
    )
    def describe_session(
        self, infra: InfraDep, principal: Caller, session: FromPath[str]
    ) -> SessionOut:
        """Describe a session; its owner also sees connectionInfo."""
        return _describe(infra, principal, session)

    @delete(
        "/{session:str}",
        operation_id="CloseSession",
        guards=[requires_somewhere(SESSIONS)],
    )
    def close_session(self, infra: InfraDep, principal: Caller, session: FromPath[str]) -> None:
        """Close a session now (409 when it is already closed or failed)."""
        _visible_session(infra, principal, session)
        infra.wait_for_views(infra.sessions.close_session(session, by=principal.actor))

    @post(
        "/{session:str}/token",
        operation_id="IssueSessionToken",
        guards=[requires_somewhere(SESSIONS)],
    )
    def issue_token(
        self,
        infra: InfraDep,
        principal: Caller,
        session: FromPath[str],
        data: JSONBody[TokenRequest],
    ) -> TokenOut:
        """A short-lived signed bearer token for the session's endpoint (owner or org admin)."""
        row = _visible_session(infra, principal, session)
        require_access(
            principal,
            SESSIONS,
            open_to_caller=_is_owner(principal, row),
            refusal="Only the session's owner or an admin can issue its token.",
        )
        issued = infra.sessions.issue_token(
            session, duration_seconds=data.duration_seconds, by=principal.actor
        )
        return TokenOut(token=issued.token, expires_at=iso(issued.expires_at))

    @post(
        "/{session:str}/relaunch",
        operation_id="RelaunchSession",
        guards=[requires_somewhere(SESSIONS)],
    )
    def relaunch_session(
        self, infra: InfraDep, principal: Caller, session: FromPath[str]
    ) -> SessionOut:
        """Start a new session with a closed or failed session's configuration (owner only)."""
        _visible_session(infra, principal, session)
        new_id, position = infra.sessions.relaunch_session(session, by=principal.actor)
        infra.wait_for_views(position)
        return _describe(infra, principal, new_id)


class ComputeConfigController(Controller):
    path = "/workloads/compute-configs"
    tags = ["compute-configs"]

    @get(
        "/",
        operation_id="ListComputeConfigs",
        guards=[requires_somewhere(CONFIGS)],
    )
    def list_compute_configs(
        self,
        infra: InfraDep,
        principal: Caller,
        team_id: Annotated[
            Id | None, QueryParameter(name="teamId", description="Filter workload configs by team.")
        ] = None,
        limit: Limit = 100,
        marker: Marker = None,
    ) -> ComputeConfigListing:
        """List the named compute configs of the caller's teams (all with the organization permission)."""
        _, rows, next_marker = infra.session_views.compute_configs(
            principal.organization_id,
            team_ids=reachable_team_ids(principal, CONFIGS),
            team_id=team_id,
            limit=limit,
            marker=marker,
        )
        return ComputeConfigListing(items=[compute_config_out(r) for r in rows], marker=next_marker)

    @post(
        "/",
        operation_id="CreateComputeConfig",
        guards=[requires_somewhere(CONFIGS)],
    )
    def create_compute_config(
        self, infra: InfraDep, principal: Caller, data: JSONBody[ComputeConfigCreate]
    ) -> ComputeConfigOut:
        """Create a named compute config for a team; instance types are checked against the cluster's connection."""
        _require_in_team(principal, CONFIGS, data.team_id)
        config_id, position = infra.sessions.create_compute_config(
            name=data.name,
            workload_type=data.workload_type,
            # The provisioned cluster's id stands for its workload cluster, as for jobs.
            cluster_id=infra.clusters.workload_cluster_id(
                principal.organization_id, data.cluster_id
            ),
            team_id=data.team_id,
            config=data.config,
            endpoint_limits=data.endpoint_limits,
            by=principal.actor,
        )
        infra.wait_for_views(position)
        return compute_config_out(_config_row(infra, principal, config_id))

    @get(
        "/{workloadConfig:str}",
        operation_id="DescribeComputeConfig",
        guards=[requires_somewhere(CONFIGS)],
    )
    def describe_compute_config(
        self,
        infra: InfraDep,
        principal: Caller,
        workloadConfig: FromPath[str],
    ) -> ComputeConfigOut:
        """Describe a compute config."""
        return compute_config_out(_config_row(infra, principal, workloadConfig))


def _config_row(infra: InfraContext, principal: Principal, config_id: str) -> dict[str, Any]:
    row = infra.session_views.compute_config(principal.organization_id, config_id)
    if row is None or not can_access(principal, CONFIGS, granted_team_ids=[row["team_id"]]):
        raise NotFoundError.of("workload_config", config_id)
    return row
