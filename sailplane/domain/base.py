"""The base of every Sailplane aggregate and event.

Every event carries, besides the library's aggregate id, version and timestamp, the
organization it belongs to and the actor that caused it (`member:ID`,
`service_account:ID` or `system:<component>`). Aggregates use explicit event classes
whose `apply` only assigns state; public methods check rules, compute values and call
`_trigger`. Nothing inside `apply` reads a clock, a random source or any I/O: it runs
again on every replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    MetaDomainEvent,
)


@dataclass(frozen=True)
class Actor:
    """Who or what causes a change."""

    kind: str  # "member", "service_account" or "system"
    id: str
    organization_id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def system(cls, component: str, organization_id: str) -> Actor:
        return cls(kind="system", id=component, organization_id=organization_id)

    @classmethod
    def parse(cls, value: str, organization_id: str) -> Actor:
        kind, _, ident = value.partition(":")
        return cls(kind=kind, id=ident, organization_id=organization_id)

    @property
    def member_id(self) -> str | None:
        return self.id if self.kind == "member" else None


@dataclass(frozen=True)
class DomainEvent(CanMutateAggregate[str], metaclass=MetaDomainEvent):
    originator_id: str
    originator_version: int
    timestamp: datetime
    organization_id: str
    actor: str


@dataclass(frozen=True)
class AggregateCreated(CanInitAggregate[str], DomainEvent):
    originator_topic: str


class SailplaneAggregate(BaseAggregate[str]):
    """An aggregate that belongs to one organization, with text ids.

    Class-level annotations on subclasses document their state for readers; they do not
    make the aggregate a dataclass (its state is assigned only by events' `apply`).
    """

    if TYPE_CHECKING:
        organization_id: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        annotations = cls.__dict__.get("__annotations__")  # noqa: RUF063 - read exactly what the library reads
        if annotations:
            cls.__annotations__ = {}
        super().__init_subclass__(**kwargs)
        if annotations:
            cls.__annotations__ = annotations

    class Event(DomainEvent):
        pass

    class Created(Event, AggregateCreated):
        def apply(self, aggregate: Any) -> None:
            aggregate.organization_id = self.organization_id

    @classmethod
    def _create_as(
        cls,
        *,
        id: str,
        by: Actor,
        at: datetime,
        organization_id: str | None = None,
        **fields: Any,
    ) -> Self:
        return cls._create(
            cls.Created,
            id=id,
            organization_id=organization_id or by.organization_id,
            actor=str(by),
            timestamp=at,
            **fields,
        )

    def _trigger(self, event_class: type[Event], *, by: Actor, at: datetime, **fields: Any) -> None:
        self.trigger_event(
            event_class,
            organization_id=self.organization_id,
            actor=str(by),
            timestamp=at,
            **fields,
        )
