"""Use cases behind the `Idempotency-Key` header."""

from __future__ import annotations

from dataclasses import dataclass

from sailplane.commands.base import SailplaneApplication
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError
from sailplane.domain.ids import index_id
from sailplane.domain.requests import ClaimOutcome, IdempotentRequest


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    request_id: str
    status_code: int = 0
    content_type: str = ""
    body: str = ""


class Requests(SailplaneApplication):
    def claim(self, key: str, fingerprint: str, *, by: Actor) -> Claim:
        request_id = index_id("idempotency", by.organization_id, f"{by}\x1f{key}")
        request = self._find(IdempotentRequest, request_id)
        if request is None:
            request = IdempotentRequest.claim_new(
                id=request_id, key=key, fingerprint=fingerprint, by=by, at=self.clock()
            )
            outcome = ClaimOutcome.CLAIMED
        else:
            outcome = request.claim(fingerprint, by=by, at=self.clock())
        if outcome is ClaimOutcome.CLAIMED:
            try:
                self._commit(request)
            except ConflictError:
                # A concurrent request with the same key claimed it between our read and write.
                return Claim(ClaimOutcome.IN_PROGRESS, request_id)
        return Claim(outcome, request_id, request.status_code, request.content_type, request.body)

    def complete(
        self, request_id: str, *, status_code: int, content_type: str, body: str, by: Actor
    ) -> None:
        request = self._load(
            IdempotentRequest, request_id, organization_id=by.organization_id, kind="request"
        )
        request.complete(
            status_code=status_code, content_type=content_type, body=body, by=by, at=self.clock()
        )
        self._commit(request)

    def abandon(self, request_id: str, *, by: Actor) -> None:
        request = self._load(
            IdempotentRequest, request_id, organization_id=by.organization_id, kind="request"
        )
        request.abandon(by=by, at=self.clock())
        self._commit(request)
