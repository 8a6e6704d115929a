"""Idempotent requests: an `Idempotency-Key` claimed by the first request that carries it.

The key's aggregate id is derived from the organization, the caller and the key, so two
concurrent requests with one key race on the event store's version check: one claims it,
the other sees the claim. A completed claim replays its response for 24 hours; a claim
whose request failed on the server side is abandoned and may be claimed again; a claim
left in progress by a crashed server expires after its lease.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum

from sailplane.domain.base import Actor, SailplaneAggregate

REPLAY_WINDOW = timedelta(hours=24)
IN_PROGRESS_LEASE = timedelta(minutes=2)


class ClaimOutcome(Enum):
    CLAIMED = "claimed"
    REPLAY = "replay"
    IN_PROGRESS = "in_progress"
    MISMATCH = "mismatch"


class IdempotentRequest(SailplaneAggregate):
    fingerprint: str
    state: str  # "in_progress", "completed" or "abandoned"
    claimed_at: datetime
    status_code: int
    content_type: str
    body: str

    class Created(SailplaneAggregate.Created):
        key: str
        fingerprint: str

        def apply(self, aggregate: IdempotentRequest) -> None:
            super().apply(aggregate)
            aggregate.key = self.key
            aggregate.fingerprint = self.fingerprint
            aggregate.state = "in_progress"
            aggregate.claimed_at = self.timestamp
            aggregate.status_code = 0
            aggregate.content_type = ""
            aggregate.body = ""

    class Reclaimed(SailplaneAggregate.Event):
        fingerprint: str

        def apply(self, aggregate: IdempotentRequest) -> None:
            aggregate.fingerprint = self.fingerprint
            aggregate.state = "in_progress"
            aggregate.claimed_at = self.timestamp

    class Completed(SailplaneAggregate.Event):
        status_code: int
        content_type: str
        body: str

        def apply(self, aggregate: IdempotentRequest) -> None:
            aggregate.state = "completed"
            aggregate.status_code = self.status_code
            aggregate.content_type = self.content_type
            aggregate.body = self.body

    class Abandoned(SailplaneAggregate.Event):
        def apply(self, aggregate: IdempotentRequest) -> None:
            aggregate.state = "abandoned"

    @classmethod
    def claim_new(
        cls, *, id: str, key: str, fingerprint: str, by: Actor, at: datetime
    ) -> IdempotentRequest:
        return cls._create_as(id=id, by=by, at=at, key=key, fingerprint=fingerprint)

    def claim(self, fingerprint: str, *, by: Actor, at: datetime) -> ClaimOutcome:
        """Decide what a request carrying this key gets; record a new claim if it may run."""
        expired = at - self.claimed_at > REPLAY_WINDOW
        stale = self.state == "in_progress" and at - self.claimed_at > IN_PROGRESS_LEASE
        if self.state == "abandoned" or expired or stale:
            self._trigger(self.Reclaimed, by=by, at=at, fingerprint=fingerprint)
            return ClaimOutcome.CLAIMED
        if fingerprint != self.fingerprint:
            return ClaimOutcome.MISMATCH
        if self.state == "in_progress":
            return ClaimOutcome.IN_PROGRESS
        return ClaimOutcome.REPLAY

    def complete(
        self, *, status_code: int, content_type: str, body: str, by: Actor, at: datetime
    ) -> None:
        self._trigger(
            self.Completed,
            by=by,
            at=at,
            status_code=status_code,
            content_type=content_type,
            body=body,
        )

    def abandon(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Abandoned, by=by, at=at)
