"""`create_app(system)`: the Litestar application, the only composition of the HTTP layer."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Response, Router
from litestar.di import Provide
from litestar.middleware.base import DefineMiddleware

from sailplane.contexts import (
    IdentityContext,
    InfraContext,
    NotificationsContext,
    RunsContext,
    WorkloadsContext,
)
from sailplane.http.auth import (
    BearerAuthMiddleware,
    Principal,
    PrincipalCache,
    SystemDep,
    provide_principal,
)
from sailplane.http.authentication import AuthController
from sailplane.http.catalogs import CatalogController, CatalogListsController
from sailplane.http.errors import EXCEPTION_HANDLERS
from sailplane.http.events import EventLogController
from sailplane.http.idempotency import IdempotencyMiddleware
from sailplane.http.identity_providers import IdentityProviderController
from sailplane.http.infra import (
    ClusterController,
    ConnectionController,
    MyClustersController,
    NetworkController,
    OperationController,
)
from sailplane.http.invitations import InvitationController
from sailplane.http.job_config import JobConfigSchemaPlugin
from sailplane.http.job_runs import JobRunController, JobRunListsController
from sailplane.http.jobs import JobController, JobListsController
from sailplane.http.me import MeController
from sailplane.http.members import MemberController
from sailplane.http.metrics import Metrics, RequestMiddleware, metrics_endpoint
from sailplane.http.notifications import NotificationController
from sailplane.http.openapi import assets_router, declare_errors, openapi_config
from sailplane.http.policies import PolicyController
from sailplane.http.queries import QueryController, QueryListsController
from sailplane.http.request_guard import MAX_BODY_BYTES, RequestGuardMiddleware
from sailplane.http.roles import RoleController
from sailplane.http.routes import get
from sailplane.http.run_runtime import run_runtime_router
from sailplane.http.runs_v1 import run_queue_router
from sailplane.http.schedules import SchedulePreviewController
from sailplane.http.sessions import ComputeConfigController, SessionController
from sailplane.http.teams import TeamController
from sailplane.http.users import UserController
from sailplane.http.workspaces import workspaces_router
from sailplane.storage import EventLog
from sailplane.system import System

API_PREFIX = "/api/v1"

# Every controller of the `/api/v1` API. Later endpoint groups add theirs here.
CONTROLLERS: list[type[Any]] = [
    TeamController,
    EventLogController,
    AuthController,
    IdentityProviderController,
    MeController,
    UserController,
    MemberController,
    RoleController,
    InvitationController,
    PolicyController,
    CatalogController,
    CatalogListsController,
    QueryController,
    QueryListsController,
    ConnectionController,
    NetworkController,
    ClusterController,
    OperationController,
    MyClustersController,
    SessionController,
    ComputeConfigController,
    NotificationController,
    JobController,
    JobListsController,
    JobRunController,
    JobRunListsController,
    SchedulePreviewController,
]


@get(
    "/healthz",
    operation_id="Health",
    opt={"exclude_from_auth": True},
    security=[],
    include_in_schema=False,
)
async def healthz() -> dict[str, str]:
    """Answers 200 once the server accepts requests."""
    return {"status": "ok"}


@get(
    "/livez",
    operation_id="Liveness",
    opt={"exclude_from_auth": True},
    security=[],
    include_in_schema=False,
)
async def livez() -> dict[str, str]:
    """Answers 200 while the process serves requests (nothing else is checked)."""
    return {"status": "ok"}


@get(
    "/readyz",
    operation_id="Readiness",
    opt={"exclude_from_auth": True},
    security=[],
    include_in_schema=False,
)
def readyz(system: SystemDep) -> Response[dict[str, Any]]:
    """200 when every readiness check of the System passes, else 503 naming what is not.
    `isolation` says how user work is kept away from this server (docs/security.md)."""
    results = system.readiness()
    checks = {name: problem or "ok" for name, problem in results.items()}
    failing = [f"{name}: {problem}" for name, problem in results.items() if problem is not None]
    isolation = system.isolation_report()
    if not failing:
        return Response({"status": "ready", "checks": checks, "isolation": isolation})
    return Response(
        {
            "message": "Not ready: " + "; ".join(failing),
            "code": "not_ready",
            "status": "not_ready",
            "checks": checks,
            "isolation": isolation,
        },
        status_code=503,
    )


def provide(value: Any) -> Provide:
    """A dependency that is always the one object the System built."""
    return Provide(lambda: value, use_cache=True, sync_to_thread=False)


def create_app(system: System, *, debug: bool = False) -> Litestar:
    api = Router(path=API_PREFIX, route_handlers=CONTROLLERS)
    container_jobs = workspaces_router()  # seed 002, at the root as its document has it
    run_queue = run_queue_router()
    metrics = Metrics(system.event_log, system.pool, system.runs.view)
    app = Litestar(
        route_handlers=[
            api,
            container_jobs,
            run_queue,  # seed 003, at /v1 as its document has it
            run_runtime_router(),  # the work's runtime routes and what it reported
            healthz,
            livez,
            readyz,
            assets_router(),
            metrics_endpoint(metrics),
        ],
        # Each handler declares the contexts it uses (`runs: RunsDep`, http/auth.py).
        dependencies={
            "identity": provide(system.identity),
            "infra": provide(system.infra),
            "workloads": provide(system.workloads),
            "runs": provide(system.runs),
            "notifications": provide(system.notifications),
            "event_log": provide(system.event_log),  # the audit log's reader
            "system": provide(system),  # the server's own endpoints (/readyz)
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        signature_namespace={
            "System": System,
            "Principal": Principal,
            "IdentityContext": IdentityContext,
            "InfraContext": InfraContext,
            "WorkloadsContext": WorkloadsContext,
            "RunsContext": RunsContext,
            "NotificationsContext": NotificationsContext,
            "EventLog": EventLog,
        },
        # Authentication first, then the request guard, before anything reads the body.
        middleware=[
            DefineMiddleware(RequestMiddleware, metrics=metrics),
            DefineMiddleware(
                BearerAuthMiddleware,
                identity=system.identity,
                principals=PrincipalCache(system.positions),
                run_tokens=system.runs.tokens,
                exclude=["^/schema", "^/healthz", "^/livez", "^/readyz", "^/metrics"],
            ),
            RequestGuardMiddleware,
            DefineMiddleware(IdempotencyMiddleware, requests=system.requests),
        ],
        request_max_body_size=MAX_BODY_BYTES,
        exception_handlers=EXCEPTION_HANDLERS,
        # Logging is the process's (sailplane/observability.py), not configured by the app.
        logging_config=None,
        openapi_config=openapi_config(),
        plugins=[JobConfigSchemaPlugin()],
        debug=debug,
    )
    declare_errors(app)
    return app
