"""Authentication and the permission check every endpoint declares.

Every route requires `Authorization: Bearer <token>` unless it opts out with
`opt={"exclude_from_auth": True}` (and `security=[]` for the OpenAPI document). The
token (an API key or a login) is looked up by its SHA-256 digest in the credentials view
(through the exact cache below), so a revoked login, a reset MFA, a removed or disabled
member or a changed role takes effect on the very next request.

The caller's permissions are one set: what their organization roles grant plus what the
organization policies of the caller and of the caller's teams grant. A route names the
permission it needs with `guards=[requires("CanManageTeams")]` (403 without it); a
resource shared with teams is checked with `require_access(...)`, which also accepts the
permission through a team role in one of the teams the resource is granted to.

What a token resolves to (credential, roles, policies, team roles) is kept in a
`PrincipalCache`, which is exact rather than short-lived: an entry records the position
the identity views (`directory`, `access`, `teams`) had reached when it was read, and is
used only while none of those views has changed since. A write's read-your-writes wait
moves the views in this process past the change, so the next request reads afresh. Only
the expiry, which changes with time rather than with events, is checked on every use.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import anyio
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from sailplane.commands.credentials import hash_token
from sailplane.contexts import (
    IdentityContext,
    InfraContext,
    NotificationsContext,
    RunsContext,
    WorkloadsContext,
)
from sailplane.domain.access import ORGANIZATION_ROLES, TEAM_ROLES, permissions_of
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, NotAuthenticatedError, PermissionDeniedError
from sailplane.domain.runtime import RunTokens, is_run_token
from sailplane.projections.runner import Positions
from sailplane.storage import EventLog
from sailplane.system import System

log = logging.getLogger(__name__)
ORGANIZATION_HEADER = "LakeSail-Organization-Id"
# A login's lastUsedAt is recorded at most this often (one event per login per interval).
LOGIN_USE_RECORDING_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    organization_id: str
    kind: str  # "member" or "service_account"
    id: str
    credential_id: str
    role_ids: tuple[str, ...]
    permissions: frozenset[str]
    user_id: str | None = None  # the person behind a member; None for service accounts
    credential_kind: str = "api_key"  # or "login"
    # {team id: the member's team role ids} for every team the member is in.
    team_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def actor(self) -> Actor:
        return Actor(kind=self.kind, id=self.id, organization_id=self.organization_id)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def teams_granting(self, permission: str) -> list[str]:
        """The teams in which the caller's team roles grant `permission`, sorted."""
        return sorted(
            t for t, r in self.team_roles.items() if permission in permissions_of(TEAM_ROLES, r)
        )


@dataclass(frozen=True)
class RunPrincipal:
    """The work of one attempt of a run, authenticated by its run token. It acts only on
    the runtime routes (`opt={RUN_TOKEN_ROUTE: True}`), and only while its attempt is the
    run's current one (the handlers check, 401 otherwise)."""

    organization_id: str
    run_id: str
    attempt: int

    @property
    def actor(self) -> Actor:
        return Actor(kind="run", id=self.run_id, organization_id=self.organization_id)


RUN_TOKEN_ROUTE = "run_token"  # the route's `opt` key: it takes run tokens, and only those


@dataclass(frozen=True)
class CachedCredential:
    principal: Principal
    expires_at: datetime | None
    is_enabled: bool
    last_used_at: datetime | None  # logins only


class PrincipalCache:
    """token hash -> what it resolved to, valid while the identity views have not changed.

    Bounded (least recently used entries go first). Shared by every request of a process.
    """

    VIEWS = ("directory", "access", "teams")

    def __init__(self, positions: Positions, *, size: int = 10_000) -> None:
        self.positions = positions
        self.size = size
        self._entries: OrderedDict[str, tuple[int, CachedCredential]] = OrderedDict()
        self._lock = threading.Lock()

    def stamp(self) -> int:
        """Take before reading: the read sees at least the views as of this position."""
        return self.positions.stamp(self.VIEWS)

    def get(self, token_hash: str) -> tuple[int, CachedCredential] | None:
        """The entry and the stamp it was read at, if no identity view changed since."""
        with self._lock:
            found = self._entries.get(token_hash)
            if found is None:
                return None
            if self.positions.changed_after(self.VIEWS, found[0]):
                del self._entries[token_hash]
                return None
            self._entries.move_to_end(token_hash)
            return found

    def put(self, token_hash: str, stamp: int, credential: CachedCredential) -> None:
        with self._lock:
            self._entries[token_hash] = (stamp, credential)
            self._entries.move_to_end(token_hash)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


class KeyHint:
    """Until a request of this process has authenticated, a refused one logs how to get a
    key (at most once a minute): on a new install that is the question being asked."""

    INTERVAL = 60.0

    def __init__(self) -> None:
        self.authenticated = False
        self.last_hint = -self.INTERVAL

    def refused(self, code: str) -> None:
        now = time.monotonic()
        if self.authenticated or now - self.last_hint < self.INTERVAL:
            return
        self.last_hint = now
        log.warning(
            "a request without a valid API key was refused (%s); the owner's key was printed "
            "on the first start (or is the SAILPLANE_BOOTSTRAP_TOKEN of that start); "
            "`sailplane admin create-token` issues a new one",
            code,
        )


KEY_HINT = KeyHint()
NEEDS_DATABASE = object()  # `BearerAuthMiddleware._principal`: ask again from a worker thread


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    def __init__(
        self,
        app: ASGIApp,
        identity: IdentityContext,
        principals: PrincipalCache,
        run_tokens: RunTokens | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self.identity = identity
        self.principals = principals
        self.run_tokens = run_tokens

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            KEY_HINT.refused("missing_token")
            raise NotAuthenticatedError("A bearer token is required.", code="missing_token")
        runtime_route = bool(connection.route_handler.opt.get(RUN_TOKEN_ROUTE))
        if is_run_token(token.strip()):
            return self._run_principal(token.strip(), runtime_route)
        if runtime_route:
            raise PermissionDeniedError(
                "The runtime routes take only a run token (SAILPLANE_RUN_TOKEN, given to the "
                "work of a run), not a member's or service account's token.",
                code="run_token_required",
            )
        token_hash = hash_token(token.strip())
        # A principal the cache holds is answered here, on the event loop; only reading the
        # views or recording a login's use goes to a worker thread (a hop costs more than
        # the lookup it would run).
        principal = self._principal(token_hash, may_block=False)
        if principal is NEEDS_DATABASE:
            principal = await anyio.to_thread.run_sync(
                functools.partial(self._principal, token_hash, may_block=True)
            )
        if principal is None:
            KEY_HINT.refused("invalid_token")
            raise NotAuthenticatedError("The bearer token is not valid.", code="invalid_token")
        KEY_HINT.authenticated = True
        requested = connection.headers.get(ORGANIZATION_HEADER.lower())
        if requested and requested != principal.organization_id:
            raise NotAuthenticatedError(
                f"The token does not belong to organization {requested}.",
                code="organization_mismatch",
            )
        return AuthenticationResult(user=principal, auth=principal.credential_id)

    def _run_principal(self, token: str, runtime_route: bool) -> AuthenticationResult:
        claims = self.run_tokens.verify(token) if self.run_tokens is not None else None
        if claims is None:
            raise NotAuthenticatedError("The run token is not valid.", code="invalid_token")
        if not runtime_route:
            raise PermissionDeniedError(
                "A run token acts only on its own run's runtime routes (/v1/runtime/...).",
                code="run_token_not_allowed",
            )
        principal = RunPrincipal(claims.organization_id, claims.run_id, claims.attempt)
        return AuthenticationResult(user=principal, auth=f"run:{claims.run_id}")

    def _principal(self, token_hash: str, *, may_block: bool) -> Any:
        """The token's principal, None when it is not valid now; `NEEDS_DATABASE` when
        answering needs a query or a write and `may_block` is False."""
        cached = self.principals.get(token_hash)
        if cached is not None:
            stamp, credential = cached
        elif not may_block:
            return NEEDS_DATABASE
        else:
            stamp = self.principals.stamp()
            read = self._read(token_hash)
            if read is None:
                return None
            credential = read
            self.principals.put(token_hash, stamp, credential)
        now = self.identity.clock()
        if credential.expires_at is not None and credential.expires_at <= now:
            return None
        if not credential.is_enabled:
            return None
        principal = credential.principal
        if principal.credential_kind == "login" and (
            credential.last_used_at is None
            or credential.last_used_at <= now - LOGIN_USE_RECORDING_INTERVAL
        ):
            if not may_block:
                return NEEDS_DATABASE
            # A concurrent request of the same login may have recorded it already.
            with contextlib.suppress(ConflictError):
                self.identity.authentication.touch_login(principal.credential_id)
            # Until the views show the recorded use, this process knows it already (kept
            # at the stamp it was read at, so no change since is hidden).
            self.principals.put(token_hash, stamp, replace(credential, last_used_at=now))
        return principal

    def _read(self, token_hash: str) -> CachedCredential | None:
        """The credential, its principal's roles, policies and team roles, from the views."""
        row = self.identity.directory.credential(token_hash)
        if row is None:
            return None
        organization_id, principal_id = row["organization_id"], row["principal_id"]
        role_ids = tuple(row["role_ids"] or ())
        permissions = permissions_of(ORGANIZATION_ROLES, role_ids) | (
            self.identity.access.policy_permissions(organization_id, principal_id)
        )
        team_roles = (
            {
                team: tuple(roles)
                for team, roles in self.identity.teams.team_roles_of_member(
                    organization_id, principal_id
                ).items()
            }
            if row["principal_kind"] == "member"
            else {}
        )
        principal = Principal(
            organization_id=organization_id,
            kind=row["principal_kind"],
            id=principal_id,
            credential_id=row["id"],
            role_ids=role_ids,
            permissions=permissions,
            user_id=row["user_id"],
            credential_kind=row["credential_kind"],
            team_roles=team_roles,
        )
        return CachedCredential(
            principal=principal,
            expires_at=row["expires_at"],
            is_enabled=bool(row["is_enabled"]),
            last_used_at=row["last_used_at"],
        )


# --- resource-level checks: every handler's "may this caller do it here" goes through these --


def can_access(
    principal: Principal,
    permission: str,
    *,
    granted_team_ids: Iterable[str] = (),
    open_to_caller: bool = False,
) -> bool:
    """Whether the caller may use `permission` on a resource: the resource is the caller's
    own or open to every member (`open_to_caller`), an organization role grants the
    permission, or a team role does in one of the teams the resource is granted to."""
    if open_to_caller or principal.can(permission):
        return True
    return not set(principal.teams_granting(permission)).isdisjoint(granted_team_ids)


def require_access(
    principal: Principal,
    permission: str,
    *,
    granted_team_ids: Iterable[str] = (),
    open_to_caller: bool = False,
    refusal: str | None = None,
) -> None:
    """`can_access`, or 403 `forbidden` (with `refusal` as its message when given)."""
    if not can_access(
        principal, permission, granted_team_ids=granted_team_ids, open_to_caller=open_to_caller
    ):
        raise PermissionDeniedError(
            refusal
            or f"This needs the {permission} permission on this resource, which neither your "
            "roles nor your teams grant.",
            code="forbidden",
        )


def reachable_team_ids(principal: Principal, permission: str) -> list[str] | None:
    """The teams through which the caller reaches resources, or None when an organization
    role grants `permission` and so every resource of the organization is reachable."""
    if principal.can(permission):
        return None
    return principal.teams_granting(permission)


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return request.user


def requires(permission: str, *, or_in_team: str | None = None) -> Any:
    """A guard: the caller must hold `permission` in their organization.

    With `or_in_team="team"` (the name of a path parameter holding a team id), a team role
    that grants `permission` in that team is enough too: a Team Admin manages their team.
    """

    # A coroutine: Litestar runs a plain function guard in a worker thread, a hop per request
    # for what reads only the principal.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal: Principal = connection.user
        if principal.can(permission):
            return
        if or_in_team is not None and can_access(
            principal,
            permission,
            granted_team_ids=[str(connection.path_params.get(or_in_team, ""))],
        ):
            return
        raise PermissionDeniedError(
            f"This needs the {permission} permission, which your roles do not grant.",
            code="forbidden",
        )

    guard.__name__ = f"requires_{permission}"
    return guard


# Handler parameters, declared explicitly: the caller (`principal: Caller`) and the contexts
# the handler uses (`runs: RunsDep`); `create_app` provides one of each.
SystemDep: TypeAlias = NamedDependency[System]  # only the server's own endpoints (/readyz)
IdentityDep: TypeAlias = NamedDependency[IdentityContext]
InfraDep: TypeAlias = NamedDependency[InfraContext]
WorkloadsDep: TypeAlias = NamedDependency[WorkloadsContext]
RunsDep: TypeAlias = NamedDependency[RunsContext]
NotificationsDep: TypeAlias = NamedDependency[NotificationsContext]
EventLogDep: TypeAlias = NamedDependency[EventLog]
Caller: TypeAlias = NamedDependency[Principal]
RunCaller: TypeAlias = NamedDependency[RunPrincipal]
