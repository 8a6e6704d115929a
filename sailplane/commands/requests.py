"""Use cases behind the `Idempotency-Key` header.

A completed request is recorded in the log as its status and the id of the resource it
named; its response goes to `ReplayBodies`, sealed, outside the log, for the replay window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sailplane.commands.base import Clock, SailplaneApplication, utc_now
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError
from sailplane.domain.ids import index_id
from sailplane.domain.requests import ClaimOutcome, IdempotentRequest
from sailplane.storage import EventLog


class ReplayBodies(Protocol):
    """Where the responses to replay are kept: sealed, outside the log, expired after 24 h."""

    def keep(self, request_id: str, content_type: str, body: str, *, at: datetime) -> None: ...

    def find(self, request_id: str, *, at: datetime) -> tuple[str, str] | None:
        """(content type, body), or None once expired or unreadable."""


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    request_id: str
    status_code: int = 0
    content_type: str = ""
    body: str = ""
    resource_id: str | None = None
    request: IdempotentRequest | None = None  # when claimed: the claim, to fence its commands


class Requests(SailplaneApplication):
    def __init__(
        self, log: EventLog, *, replay_bodies: ReplayBodies, clock: Clock = utc_now
    ) -> None:
        super().__init__(log, clock=clock)
        self.replay_bodies = replay_bodies

    def claim(self, key: str, fingerprint: str, *, by: Actor) -> Claim:
        request_id = index_id("idempotency", by.organization_id, f"{by}\x1f{key}")
        request = self._find(IdempotentRequest, request_id)
        now = self.clock()
        if request is None:
            request = IdempotentRequest.claim_new(
                id=request_id, key=key, fingerprint=fingerprint, by=by, at=now
            )
            outcome = ClaimOutcome.CLAIMED
        else:
            outcome = request.claim(fingerprint, by=by, at=now)
        if outcome is ClaimOutcome.CLAIMED:
            try:
                self._commit(request)
            except ConflictError:
                # A concurrent request with the same key claimed it between our read and write.
                return Claim(ClaimOutcome.IN_PROGRESS, request_id)
        if outcome is ClaimOutcome.CLAIMED:
            return Claim(outcome, request_id, request=request)
        if outcome is not ClaimOutcome.REPLAY:
            return Claim(outcome, request_id)
        kept = self.replay_bodies.find(request_id, at=now)
        if kept is None:
            return Claim(
                ClaimOutcome.REPLAY_UNAVAILABLE,
                request_id,
                request.status_code,
                resource_id=request.resource_id,
            )
        content_type, body = kept
        return Claim(outcome, request_id, request.status_code, content_type, body)

    def complete(
        self, request_id: str, *, status_code: int, content_type: str, body: str, by: Actor
    ) -> None:
        request = self._load(
            IdempotentRequest, request_id, organization_id=by.organization_id, kind="request"
        )
        now = self.clock()
        # The body first: a completion in the log always has its response to replay.
        self.replay_bodies.keep(request_id, content_type, body, at=now)
        request.complete(status_code=status_code, resource_id=resource_id_of(body), by=by, at=now)
        self._commit(request)

    def abandon(self, request_id: str, *, by: Actor) -> None:
        request = self._load(
            IdempotentRequest, request_id, organization_id=by.organization_id, kind="request"
        )
        request.abandon(by=by, at=self.clock())
        self._commit(request)


def resource_id_of(body: str) -> str | None:
    """The `id` a JSON response names, at its top or in its one entity (`{"team": {"id"}}`)."""
    try:
        document: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    candidates = [document, *(v for v in document.values() if isinstance(v, dict))]
    for candidate in candidates:
        if isinstance(candidate.get("id"), str):
            return str(candidate["id"])
    return None
