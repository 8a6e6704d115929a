"""How a bounded context tells the notifier which of its events are worth a notification.

The notifier knows no other context. A context registers, for each domain event class
that may notify someone, a function that turns the event into a `Notable`: the
notification event type (one of `notifications.EVENT_TYPES`), the resource it is about,
the teams and the member that own that resource, a one-line subject and a JSON payload.

    # at the end of sailplane/domain/runs.py
    from sailplane.domain.notification_sources import NOTIFICATION_SOURCES, Lookup, Notable

    @NOTIFICATION_SOURCES.maps(JobRun.StatusChanged)
    def _run_status(event: JobRun.StatusChanged, lookup: Lookup) -> Notable | None:
        if event.status not in ("completed", "failed", "timeout", "cancelled", "dead_letter"):
            return None                                   # not notable
        run = lookup(event.originator_id, event.originator_version)   # the run as of then
        return Notable(
            event_type=f"job_run.{event.status}",
            resource_type="job_run",
            resource_id=event.originator_id,
            related_ids=(run.job_id,),                    # a rule on the job matches its runs
            team_ids=tuple(run.team_ids),                 # scope "team"
            member_id=run.member_id,                      # scope "own_resources"
            subject=f"Run {event.originator_id} of job {run.job_key} {event.status}",
            payload={"jobId": run.job_id, "status": event.status, "reason": event.reason},
        )

`lookup(aggregate_id, version=None)` returns any aggregate of the log (as of `version`
when given, else its latest state) or None: use it for what the event itself does not
carry. The function must not write, send or read the clock. The notifier records the
first answer for a source event (the notification event's id derives from the source
event), so a redelivered message never notifies twice. Returning None means "not
notable". The event's module must have its row in `projections/event_log.CONTEXTS` in a
context whose topic (`infra_adapters/topics.py`) the notifier consumes (`sailplane.job-runs`
or `sailplane.infra`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

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


class Lookup(Protocol):
    def __call__(self, aggregate_id: str, version: int | None = None) -> Any | None: ...


Mapping = Callable[[Any, Lookup], Notable | None]


class NotificationSources:
    """Domain event class -> the function that makes it a `Notable` (or None)."""

    def __init__(self) -> None:
        self._mappings: dict[type, Mapping] = {}

    def register(self, event_class: type, mapping: Mapping) -> None:
        self._mappings[event_class] = mapping

    def unregister(self, event_class: type) -> None:
        self._mappings.pop(event_class, None)

    def maps(
        self, event_class: type[E]
    ) -> Callable[[Callable[[E, Lookup], Notable | None]], Mapping]:
        """Decorator form of `register`."""

        def decorate(mapping: Callable[[E, Lookup], Notable | None]) -> Mapping:
            self.register(event_class, mapping)
            return mapping

        return decorate

    def notable(self, event: Any, lookup: Lookup) -> Notable | None:
        for cls in type(event).__mro__:
            mapping = self._mappings.get(cls)
            if mapping is not None:
                return mapping(event, lookup)
        return None


NOTIFICATION_SOURCES = NotificationSources()
