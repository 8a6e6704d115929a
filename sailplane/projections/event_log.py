"""The event log as audit consumers see it: `GET /api/v1/events` and the Kafka relay.

Each event becomes a `LoggedEvent` with a stable id (derived from aggregate id and
version), a type named after its context, aggregate and event class, the organization,
the actor, the time, its global position and its own fields as plain JSON.
Bookkeeping aggregates (uniqueness keys, idempotency records) belong to no context and
are not published.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import Notification

from sailplane.storage import EventLog

log = logging.getLogger(__name__)

EVENT_ID_NAMESPACE = uuid.UUID("6f1c2a4e-3d5b-4c8e-9a7f-5e2d1c0b9a88")

# Domain module -> the context name used in event types (the Kafka topic of each context
# is the relay's business: infra_adapters/topics.py).
CONTEXTS: dict[str, str] = {
    "sailplane.domain.identity": "identity",
    "sailplane.domain.infra": "infra",
    "sailplane.domain.sessions": "infra",
    "sailplane.domain.workloads": "workloads",
    "sailplane.domain.jobs": "workloads",
    "sailplane.domain.runs": "runs",
    "sailplane.domain.notifications": "notifications",
    "sailplane.domain.signin": "identity",
    "sailplane.domain.invitations": "identity",
    "sailplane.domain.policies": "identity",
    "sailplane.domain.sso": "identity",
}
ENVELOPE_FIELDS = frozenset(
    {
        "originator_id",
        "originator_version",
        "timestamp",
        "organization_id",
        "actor",
        "originator_topic",
    }
)


@dataclass(frozen=True)
class LoggedEvent:
    position: int
    id: str
    type: str
    context: str
    aggregate_id: str
    aggregate_version: int
    organization_id: str
    actor: str
    time: datetime
    data: dict[str, Any]
    event_class: str  # the library topic of the event class, for consumers that rebuild the event


# Event fields that hold secrets or their hashes: kept in the store (the server needs them)
# but never shown to audit readers or published to Kafka.
SECRET_FIELDS = frozenset(
    {
        "password_hash",
        "secret",
        "client_secret",
        "code_verifier",
        "nonce",
        "token_hash",
        "challenge_hash",
        "recovery_code_hashes",
        "code_hash",
        "ota_code_hash",
    }
)
REDACTED = "[redacted]"
# The `data` key, and the time, of an event that cannot be decoded (see `undecodable`).
UNDECODABLE = "_undecodable"
UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def redact(data: dict[str, Any]) -> dict[str, Any]:
    """The event's fields with secrets (at any depth) replaced by a marker of the same shape."""
    redacted = {}
    for key, value in data.items():
        if key in SECRET_FIELDS:
            value = _redacted(value)
        elif isinstance(value, dict):
            value = redact(value)
        redacted[key] = value
    return redacted


def _redacted(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [REDACTED] * len(value)
    return REDACTED


def event_id(aggregate_id: str, version: int) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{aggregate_id}/{version}"))


def context_of(topic: str) -> str | None:
    module = topic.partition(":")[0]
    return CONTEXTS.get(module)


def jsonable(value: Any) -> Any:
    """`value` as plain JSON values (one stack frame per level of nesting)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        plain = {}
        for key, item in value.items():
            plain[key] = jsonable(item)
        return plain
    if isinstance(value, list | tuple):
        items = []
        for item in value:
            items.append(jsonable(item))
        return items
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value


def logged_event(position: int, topic: str, domain_event: Any) -> LoggedEvent | None:
    name = context_of(topic)
    if name is None:
        return None
    return LoggedEvent(
        position=position,
        id=event_id(domain_event.originator_id, domain_event.originator_version),
        type=f"sailplane.{name}.{topic.partition(':')[2]}",
        context=name,
        aggregate_id=domain_event.originator_id,
        aggregate_version=domain_event.originator_version,
        organization_id=domain_event.organization_id,
        actor=domain_event.actor,
        time=domain_event.timestamp,
        data=redact(
            {k: jsonable(v) for k, v in vars(domain_event).items() if k not in ENVELOPE_FIELDS}
        ),
        event_class=topic,
    )


def decode(event_log: EventLog, notification: Notification) -> LoggedEvent | None:
    """The published event at this log entry; an entry that cannot be decoded, however
    broken, becomes its degraded form (`undecodable`) rather than an error for its reader."""
    if context_of(notification.topic) is None:
        return None
    try:
        domain_event = event_log.mapper.to_domain_event(notification)
    except Exception as error:
        return undecodable(notification, error)
    try:
        return logged_event(notification.id, notification.topic, domain_event)
    except Exception as error:
        return undecodable(notification, error, envelope=domain_event)


def undecodable(
    notification: Notification, error: Exception, *, envelope: Any = None
) -> LoggedEvent:
    """An event shown by its envelope (as far as it can be read) and `data` that says why
    its fields cannot be shown: `{"_undecodable": "<error>"}`. Without an envelope the
    organization and actor are "" and the time is the epoch."""
    log.warning(
        "event %s (%s) at position %s cannot be decoded: %r",
        notification.originator_id,
        notification.topic,
        notification.id,
        error,
    )
    name = context_of(notification.topic) or "unknown"
    return LoggedEvent(
        position=notification.id,
        id=event_id(str(notification.originator_id), notification.originator_version),
        type=f"sailplane.{name}.{notification.topic.partition(':')[2]}",
        context=name,
        aggregate_id=str(notification.originator_id),
        aggregate_version=notification.originator_version,
        organization_id=str(getattr(envelope, "organization_id", "")),
        actor=str(getattr(envelope, "actor", "")),
        time=getattr(envelope, "timestamp", UNKNOWN_TIME),
        data={UNDECODABLE: f"{type(error).__name__}: {str(error)[:200]}"},
        event_class=notification.topic,
    )


def read_log(
    event_log: EventLog,
    *,
    after: int,
    limit: int,
    organization_id: str | None = None,
    scan_limit: int = 5000,
) -> tuple[list[LoggedEvent], int]:
    """Up to `limit` published events after `after` (of one organization if given).

    Returns the events and the position to continue from; at most `scan_limit` log
    entries are read per call, so a sparse organization's page may be short but never
    skips anything.
    """
    found: list[LoggedEvent] = []
    position = after
    scanned = 0
    while len(found) < limit and scanned < scan_limit:
        notifications = event_log.recorder.select_notifications(
            start=position + 1, limit=min(500, scan_limit - scanned)
        )
        if not notifications:
            break
        for notification in notifications:
            scanned += 1
            position = notification.id
            event = decode(event_log, notification)
            if event is not None and (
                organization_id is None or event.organization_id == organization_id
            ):
                found.append(event)
                if len(found) == limit:
                    break
    return found, position
