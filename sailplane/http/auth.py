"""Authentication and the permission check every endpoint declares.

Every route requires `Authorization: Bearer <token>` unless it opts out with
`opt={"exclude_from_auth": True}`. The token's SHA-256 digest is looked up in the
credentials view (revoked keys are gone from it at once). A route names the permission
it needs with `guards=[requires("CanManageTeams")]`; an authenticated caller without it
gets 403.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

import anyio
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from sailplane.commands.identity import hash_token
from sailplane.domain.access import ORGANIZATION_ROLES, TEAM_ROLES, permissions_of
from sailplane.domain.base import Actor
from sailplane.domain.errors import NotAuthenticatedError, PermissionDeniedError
from sailplane.system import System

ORGANIZATION_HEADER = "LakeSail-Organization-Id"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    organization_id: str
    kind: str  # "member" or "service_account"
    id: str
    credential_id: str
    role_ids: tuple[str, ...]
    permissions: frozenset[str]

    @property
    def actor(self) -> Actor:
        return Actor(kind=self.kind, id=self.id, organization_id=self.organization_id)

    def can(self, permission: str) -> bool:
        return permission in self.permissions


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    def __init__(self, app: ASGIApp, system: System, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.system = system

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticatedError("A bearer token is required.", code="missing_token")
        principal = await anyio.to_thread.run_sync(self._principal, token.strip())
        if principal is None:
            raise NotAuthenticatedError("The bearer token is not valid.", code="invalid_token")
        requested = connection.headers.get(ORGANIZATION_HEADER.lower())
        if requested and requested != principal.organization_id:
            raise NotAuthenticatedError(
                f"The token does not belong to organization {requested}.",
                code="organization_mismatch",
            )
        return AuthenticationResult(user=principal, auth=principal.credential_id)

    def _principal(self, token: str) -> Principal | None:
        row = self.system.directory.credential(hash_token(token))
        if row is None:
            return None
        if row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC):
            return None
        if row["principal_kind"] == "member" and not row["is_enabled"]:
            return None
        role_ids = tuple(row["role_ids"] or ())
        return Principal(
            organization_id=row["organization_id"],
            kind=row["principal_kind"],
            id=row["principal_id"],
            credential_id=row["id"],
            role_ids=role_ids,
            permissions=permissions_of(ORGANIZATION_ROLES, role_ids),
        )


def require_access(
    system: System, principal: Principal, permission: str, *, granted_team_ids: Iterable[str]
) -> None:
    """Resource-level check: the permission through an organization role, or through a
    team role in one of the teams the resource is granted to (403 otherwise)."""
    if not can_access(system, principal, permission, granted_team_ids=granted_team_ids):
        raise PermissionDeniedError(
            f"This needs the {permission} permission on this resource, which neither your roles "
            "nor your teams grant.",
            code="forbidden",
        )


def can_access(
    system: System, principal: Principal, permission: str, *, granted_team_ids: Iterable[str]
) -> bool:
    if principal.can(permission):
        return True
    granted = set(granted_team_ids)
    if not granted or principal.kind != "member":
        return False
    team_roles = system.teams.team_roles_of_member(principal.organization_id, principal.id)
    return any(
        permission in permissions_of(TEAM_ROLES, roles)
        for team, roles in team_roles.items()
        if team in granted
    )


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return request.user


def requires(permission: str) -> Any:
    """A guard: the caller must hold `permission` in their organization."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal: Principal = connection.user
        if not principal.can(permission):
            raise PermissionDeniedError(
                f"This needs the {permission} permission, which your roles do not grant.",
                code="forbidden",
            )

    guard.__name__ = f"requires_{permission}"
    return guard


# Handler parameters, declared explicitly: `system: SystemDep, principal: Caller`.
SystemDep: TypeAlias = NamedDependency[System]
Caller: TypeAlias = NamedDependency[Principal]
