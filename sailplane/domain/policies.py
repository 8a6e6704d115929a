"""Organization-level authorization policies: extra permissions for a member, team or service account.

A policy adds to what a principal's roles grant; the one permission check reads both. Its
id is derived from the organization and the principal, so setting a principal's policy
twice at once collides on the same aggregate.
"""

from __future__ import annotations

from datetime import datetime

from sailplane.domain.access import PERMISSIONS_BY_NAME, grantable
from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import InvalidValueError, NotFoundError
from sailplane.domain.ids import derived_id

PRINCIPAL_TYPES = ("member", "team", "service_account")


class Policy(SailplaneAggregate):
    principal_type: str
    principal_id: str
    permissions: list[str]
    deleted: bool

    class Created(SailplaneAggregate.Created):
        principal_type: str
        principal_id: str
        permissions: list[str]

        def apply(self, aggregate: Policy) -> None:
            super().apply(aggregate)
            aggregate.principal_type = self.principal_type
            aggregate.principal_id = self.principal_id
            aggregate.permissions = list(self.permissions)
            aggregate.deleted = False

    class Replaced(SailplaneAggregate.Event):
        permissions: list[str]

        def apply(self, aggregate: Policy) -> None:
            aggregate.permissions = list(self.permissions)
            aggregate.deleted = False

    class Deleted(SailplaneAggregate.Event):
        def apply(self, aggregate: Policy) -> None:
            aggregate.permissions = []
            aggregate.deleted = True

    @staticmethod
    def id_for(organization_id: str, principal_id: str) -> str:
        return derived_id("policy", organization_id, principal_id)

    @classmethod
    def set_new(
        cls,
        *,
        principal_type: str,
        principal_id: str,
        permissions: list[str],
        by: Actor,
        at: datetime,
    ) -> Policy:
        return cls._create_as(
            id=cls.id_for(by.organization_id, principal_id),
            by=by,
            at=at,
            principal_type=principal_type,
            principal_id=principal_id,
            permissions=check_permissions(permissions),
        )

    def replace(self, permissions: list[str], *, by: Actor, at: datetime) -> None:
        wanted = check_permissions(permissions)
        if self.deleted or wanted != self.permissions:
            self._trigger(self.Replaced, by=by, at=at, permissions=wanted)

    def delete(self, *, by: Actor, at: datetime) -> None:
        if self.deleted:
            raise NotFoundError.of("policy", self.principal_id)
        self._trigger(self.Deleted, by=by, at=at)


def check_permissions(permissions: list[str]) -> list[str]:
    unknown = [p for p in permissions if p not in PERMISSIONS_BY_NAME]
    if unknown:
        raise InvalidValueError(
            f"Unknown permission: {', '.join(unknown)} (GET /auth/permissions lists them).",
            field="permissions",
        )
    internal = [p for p in permissions if not grantable(p)]
    if internal:
        raise InvalidValueError(
            f"System-only permissions cannot be granted: {', '.join(internal)}.",
            field="permissions",
        )
    return sorted(set(permissions))
