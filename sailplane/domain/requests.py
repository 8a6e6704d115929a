"""Idempotent requests: an `Idempotency-Key` claimed by the first request that carries it.

The key's aggregate id is derived from the organization, the caller and the key, so two
concurrent requests with one key race on the event store's version check: one claims it,
the other sees the claim. A completed claim replays its response for 24 hours; a claim
whose request failed on the server side is abandoned and may be claimed again; a claim
left in progress by a crashed server expires after its lease.

The lease never lets a command run twice: the request's first save of its change also
saves `Executed` on the claim, at the claim's version (`sailplane.commands.base`). A
claim whose lease expired after its change was saved is not taken again (its response
was lost with the server: 409); one whose lease expired before is, and the original
request, if it still runs, then fails on the claim's version instead of saving its change.

The log records only that a request completed: its status and the id of the resource
it named. The response itself can hold a secret shown once, so it is kept sealed outside
the log (`ReplayBodies` in `sailplane.commands.requests`).
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
    REPLAY_UNAVAILABLE = "replay_unavailable"  # completed, but its response is gone
    RESPONSE_LOST = "response_lost"  # its change was saved, the server stopped before answering


class IdempotentRequest(SailplaneAggregate):
    fingerprint: str
    state: str  # "in_progress", "completed" or "abandoned"
    executed: bool  # the claim's request saved its change
    claimed_at: datetime
    status_code: int
    resource_id: str | None

    class Created(SailplaneAggregate.Created):
        key: str
        fingerprint: str

        def apply(self, aggregate: IdempotentRequest) -> None:
            super().apply(aggregate)
            aggregate.key = self.key
            aggregate.fingerprint = self.fingerprint
            aggregate.state = "in_progress"
            aggregate.executed = False
            aggregate.claimed_at = self.timestamp
            aggregate.status_code = 0
            aggregate.resource_id = None

    class Reclaimed(SailplaneAggregate.Event):
        fingerprint: str

        def apply(self, aggregate: IdempotentRequest) -> None:
            aggregate.fingerprint = self.fingerprint
            aggregate.state = "in_progress"
            aggregate.executed = False
            aggregate.claimed_at = self.timestamp

    class Executed(SailplaneAggregate.Event):
        """The claim's request saved its change (in the same transaction as the change)."""

        def apply(self, aggregate: IdempotentRequest) -> None:
            aggregate.executed = True

    class Completed(SailplaneAggregate.Event):
        status_code: int
        resource_id: str | None

        # Version 1 recorded the response itself; it is no longer read (see the module).
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state.pop("content_type", None)
            state.pop("body", None)
            state["resource_id"] = None

        def apply(self, aggregate: IdempotentRequest) -> None:
            aggregate.state = "completed"
            aggregate.status_code = self.status_code
            aggregate.resource_id = self.resource_id

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
        if self.state == "abandoned" or expired or (stale and not self.executed):
            self._trigger(self.Reclaimed, by=by, at=at, fingerprint=fingerprint)
            return ClaimOutcome.CLAIMED
        if fingerprint != self.fingerprint:
            return ClaimOutcome.MISMATCH
        if self.state == "in_progress":
            return ClaimOutcome.RESPONSE_LOST if stale else ClaimOutcome.IN_PROGRESS
        return ClaimOutcome.REPLAY

    def executed_now(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Executed, by=by, at=at)

    def complete(
        self, *, status_code: int, resource_id: str | None, by: Actor, at: datetime
    ) -> None:
        self._trigger(
            self.Completed, by=by, at=at, status_code=status_code, resource_id=resource_id
        )

    def abandon(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Abandoned, by=by, at=at)
