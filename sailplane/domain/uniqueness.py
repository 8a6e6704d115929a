"""Uniqueness across aggregates: a key claimed by one owner at a time.

A `UniqueKey` has a deterministic id (`index_id(kind, organization, key)`), so two
concurrent claims of a new key both try to create version 1 of the same aggregate and the
event store's unique version check refuses the second. A released key can be claimed
again; the claim is an event on the same aggregate, so races still meet on the version.
"""

from __future__ import annotations

from datetime import datetime

from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import ConflictError
from sailplane.domain.ids import index_id

GLOBAL_SCOPE = "*"


class UniqueKey(SailplaneAggregate):
    kind: str
    key: str
    owner_id: str | None

    class Created(SailplaneAggregate.Created):
        kind: str
        key: str
        owner_id: str

        def apply(self, aggregate: UniqueKey) -> None:
            super().apply(aggregate)
            aggregate.kind = self.kind
            aggregate.key = self.key
            aggregate.owner_id = self.owner_id

    class Claimed(SailplaneAggregate.Event):
        owner_id: str

        def apply(self, aggregate: UniqueKey) -> None:
            aggregate.owner_id = self.owner_id

    class Released(SailplaneAggregate.Event):
        def apply(self, aggregate: UniqueKey) -> None:
            aggregate.owner_id = None

    @staticmethod
    def id_for(kind: str, organization_id: str, key: str) -> str:
        return index_id(kind, organization_id, key)

    @classmethod
    def new(
        cls,
        *,
        kind: str,
        key: str,
        owner_id: str,
        by: Actor,
        at: datetime,
        scope: str | None = None,
    ) -> UniqueKey:
        """`scope` defaults to the actor's organization; GLOBAL_SCOPE for installation-wide keys."""
        return cls._create_as(
            id=cls.id_for(kind, by.organization_id if scope is None else scope, key),
            by=by,
            at=at,
            kind=kind,
            key=key,
            owner_id=owner_id,
        )

    def claim(self, owner_id: str, *, by: Actor, at: datetime, conflict: ConflictError) -> None:
        if self.owner_id == owner_id:
            return
        if self.owner_id is not None:
            raise conflict
        self._trigger(self.Claimed, by=by, at=at, owner_id=owner_id)

    def release(self, owner_id: str, *, by: Actor, at: datetime) -> None:
        if self.owner_id == owner_id:
            self._trigger(self.Released, by=by, at=at)
