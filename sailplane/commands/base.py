"""The write side's base class: applications that append to the shared event log."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    Mapper,
    ProcessRecorder,
    Tracking,
)
from eventsourcing.utils import Environment

from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import ConflictError, NotFoundError
from sailplane.domain.requests import IdempotentRequest
from sailplane.domain.uniqueness import UniqueKey
from sailplane.storage import EventLog

Clock = Callable[[], datetime]
A = TypeVar("A", bound=SailplaneAggregate)


@dataclass
class RequestFence:
    """The claim of the `Idempotency-Key` request whose commands run in this context."""

    claim: IdempotentRequest  # at the version it was claimed
    by: Actor
    used: bool = False


# Set by the HTTP layer around a request with an `Idempotency-Key`: the request's first
# save of a change also saves the claim's `Executed` event, at the claim's version, so a
# request whose claim another request took over (its lease expired) cannot save its change.
current_request: ContextVar[RequestFence | None] = ContextVar("current_request", default=None)


def utc_now() -> datetime:
    return datetime.now(UTC)


class SailplaneApplication(Application[str]):
    """Base of the bounded-context applications: shared log, injected clock, error mapping."""

    def __init__(self, log: EventLog, *, clock: Clock = utc_now) -> None:
        self.event_log = log
        self.clock = clock
        super().__init__()

    # The applications share the log's factory, recorder and mapper (one pool, one table).
    def construct_factory(self, env: Environment) -> InfrastructureFactory:
        return self.event_log.factory

    def construct_mapper(self) -> Mapper[str]:
        return self.event_log.mapper

    def construct_recorder(self) -> ProcessRecorder:
        return self.event_log.recorder

    def close(self) -> None:
        """The event log owns the connections; closing an application releases nothing."""

    def _load(self, cls: type[A], aggregate_id: str, *, organization_id: str, kind: str) -> A:
        """An aggregate of this organization, or NotFoundError (also for deleted ones)."""
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFoundError.of(kind, aggregate_id) from None
        if (
            not isinstance(aggregate, cls)
            or aggregate.organization_id != organization_id
            or getattr(aggregate, "deleted", False)
        ):
            raise NotFoundError.of(kind, aggregate_id)
        return aggregate

    def _find(self, cls: type[A], aggregate_id: str) -> A | None:
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, cls) else None

    def _commit(
        self,
        *aggregates: SailplaneAggregate | None,
        conflict: ConflictError | None = None,
        tracking: Tracking | None = None,
    ) -> int:
        """Save the aggregates' new events atomically; return the last position (0 if none).

        A lost optimistic-concurrency race (another request saved the same version first)
        becomes a ConflictError, never a lost update.
        """
        changed = [a for a in aggregates if a is not None]
        fence = current_request.get()
        if fence is not None and not fence.used and any(a.pending_events for a in changed):
            fence.used = True
            fence.claim.executed_now(by=fence.by, at=self.clock())
            changed.append(fence.claim)
        processing = ProcessingEvent[str](tracking=tracking)
        processing.collect_events(*changed)
        try:
            recordings = self._record(processing)
        except IntegrityError:
            raise conflict or ConflictError(
                "The resource was changed by another request at the same time; reload it and try again.",
                code="concurrent_modification",
            ) from None
        return recordings[-1].notification.id if recordings else 0

    def _claim_key(
        self,
        kind: str,
        key: str,
        owner_id: str,
        *,
        by: Actor,
        conflict: ConflictError,
        scope: str | None = None,
    ) -> UniqueKey:
        """Claim a unique key for owner_id (per organization, or in `scope`); save it with the owner."""
        existing = self._find(
            UniqueKey, UniqueKey.id_for(kind, by.organization_id if scope is None else scope, key)
        )
        if existing is None:
            return UniqueKey.new(
                kind=kind, key=key, owner_id=owner_id, by=by, at=self.clock(), scope=scope
            )
        existing.claim(owner_id, by=by, at=self.clock(), conflict=conflict)
        return existing

    def _release_key(
        self, kind: str, key: str, owner_id: str, *, by: Actor, scope: str | None = None
    ) -> UniqueKey | None:
        existing = self._find(
            UniqueKey, UniqueKey.id_for(kind, by.organization_id if scope is None else scope, key)
        )
        if existing is not None:
            existing.release(owner_id, by=by, at=self.clock())
        return existing
