"""How a bounded context tells the notifier which of its events are worth a notification.

The notifier knows no other context. A context registers, for each domain event class
that may notify someone, a pure function that turns the event into a `Notable`: the
notification event type (one of `notifications.EVENT_TYPES`), the resource it is about,
the teams and the member that own that resource, a one-line subject and a JSON payload.

    # at the end of sailplane/domain/runs.py
    from sailplane.domain.notification_sources import NOTIFICATION_SOURCES, Notable

    @NOTIFICATION_SOURCES.maps(JobRun.Failed)
    def _run_failed(event: JobRun.Failed) -> Notable | None:
        return Notable(
            event_type="job_run.failed",
            resource_type="job_run",
            resource_id=event.originator_id,
            related_ids=(event.job_id,),
            team_ids=tuple(event.team_ids),
            member_id=event.created_by_member_id,
            subject=f"Run {event.originator_id} of job {event.job_key} failed",
            payload={"jobId": event.job_id, "status": "failed", "reason": event.reason},
        )

The function must only read the event (no I/O, no clock): the notifier may call it
again for a redelivered message and must get the same answer. Returning None means
"not notable" (e.g. a status change that is not terminal). The event's module must have
its row in `projections/event_log.CONTEXTS` on a topic the notifier consumes
(`sailplane.job-runs` or `sailplane.infra`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sailplane.domain.notifications import EVENT_TYPES_BY_KEY

E = TypeVar("E")


@dataclass(frozen=True)
class Notable:
    event_type: str  # a concrete key of EVENT_TYPES, e.g. "job_run.failed"
    resource_type: str  # "job_run", "cluster", "operation"
    resource_id: str
    subject: str  # one line for humans: an email subject, a webhook's summary
    team_ids: tuple[str, ...] = ()  # teams the resource belongs to (scope "team")
    member_id: str | None = None  # the member who owns the resource (scope "own_resources")
    related_ids: tuple[str, ...] = ()  # e.g. a run's job id: a rule on the job matches its runs
    payload: dict[str, Any] = field(default_factory=dict)  # JSON; the webhook's data.payload

    def __post_init__(self) -> None:
        known = EVENT_TYPES_BY_KEY.get(self.event_type)
        if known is None or known.expands_to:
            raise ValueError(f"{self.event_type!r} is not a concrete notification event type")

    def resource_ids(self) -> tuple[str, ...]:
        return (self.resource_id, *self.related_ids)


Mapping = Callable[[Any], Notable | None]


class NotificationSources:
    """Domain event class -> the function that makes it a `Notable` (or None)."""

    def __init__(self) -> None:
        self._mappings: dict[type, Mapping] = {}

    def register(self, event_class: type, mapping: Mapping) -> None:
        self._mappings[event_class] = mapping

    def unregister(self, event_class: type) -> None:
        self._mappings.pop(event_class, None)

    def maps(self, event_class: type[E]) -> Callable[[Callable[[E], Notable | None]], Mapping]:
        """Decorator form of `register`."""

        def decorate(mapping: Callable[[E], Notable | None]) -> Mapping:
            self.register(event_class, mapping)
            return mapping

        return decorate

    def notable(self, event: Any) -> Notable | None:
        for cls in type(event).__mro__:
            mapping = self._mappings.get(cls)
            if mapping is not None:
                return mapping(event)
        return None


NOTIFICATION_SOURCES = NotificationSources()
