"""Notifications: event types, channels, rules, notification events and deliveries.

- A **channel** is a destination owned by a team or a member: `email` (addresses, sent
  through the server's SMTP settings), `webhook` (a URL and a signing secret, sealed,
  never returned) or `member` (email to a member's verified address). Status `active` or
  `disabled`; deleting marks it `deleted` and keeps it for the delivery log.
- A **rule** maps event types to channels for a scope (`resource`, `team`,
  `organization`, `own_resources`), `immediate` or `digest` (daily, or weekly on
  `digestDayOfWeek`, at `digestTime` in `digestTimezone`), `enabled`, `mutedUntil`.
- A **notification event** is a domain event of another context that a registered
  mapping (`notification_sources.py`) found notable; its id derives from the source
  event, so a redelivered source event is recorded once.
- A **delivery** is one (rule, channel, notification event); its id derives from the
  three, so it too is recorded once. `pending -> delivering -> delivered | failed`, or
  `skipped` (rule disabled or muted, channel disabled or deleted); a failed or skipped
  delivery can be replayed (back to `pending`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.domain.ids import derived_id

# --- event types -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventType:
    key: str
    resource_type: str
    label: str
    description: str
    expands_to: tuple[str, ...] = ()


TERMINAL_RUN_EVENTS = (
    "job_run.completed",
    "job_run.failed",
    "job_run.timeout",
    "job_run.cancelled",
    "job_run.dead_letter",
)

EVENT_TYPES: tuple[EventType, ...] = (
    EventType("job_run.completed", "job_run", "Run completed", "A job run finished successfully."),
    EventType("job_run.failed", "job_run", "Run failed", "A job run failed."),
    EventType(
        "job_run.timeout", "job_run", "Run timed out", "A job run ran past its timeoutSeconds."
    ),
    EventType("job_run.cancelled", "job_run", "Run cancelled", "A job run was cancelled."),
    EventType(
        "job_run.skipped",
        "job_run",
        "Run skipped",
        "A scheduled run was skipped (concurrency policy or missed schedule).",
    ),
    EventType(
        "job_run.dead_letter",
        "job_run",
        "Run dead-lettered",
        "A job run exhausted its retries after system failures.",
    ),
    EventType(
        "job_run.terminal",
        "job_run",
        "Any terminal run status",
        "Shortcut for every terminal run status; expanded when a rule is created or updated.",
        TERMINAL_RUN_EVENTS,
    ),
    EventType("cluster.failed", "cluster", "Cluster failed", "A cluster's provisioning failed."),
    EventType("cluster.active", "cluster", "Cluster active", "A cluster became active."),
    EventType(
        "operation.failed",
        "operation",
        "Operation failed",
        "A long-running operation (provision, update, destroy) failed.",
    ),
)
EVENT_TYPES_BY_KEY = {t.key: t for t in EVENT_TYPES}


def expand_event_types(keys: list[str]) -> list[str]:
    """Concrete event types, shortcuts expanded, duplicates removed, in catalog order."""
    wanted: set[str] = set()
    for key in keys:
        found = EVENT_TYPES_BY_KEY.get(key)
        if found is None:
            raise InvalidValueError(
                f"Unknown notification event type {key!r}; see /notifications/event-types.",
                field="eventTypes",
                code="unknown_event_type",
            )
        wanted.update(found.expands_to or (found.key,))
    if not wanted:
        raise InvalidValueError(
            "A rule needs at least one event type.", field="eventTypes", code="no_event_types"
        )
    return [t.key for t in EVENT_TYPES if t.key in wanted]


def resource_type_of(event_types: list[str], given: str | None) -> str | None:
    kinds = {EVENT_TYPES_BY_KEY[t].resource_type for t in event_types}
    if given is not None:
        if kinds != {given}:
            raise InvalidValueError(
                f"Every event type of a rule with resourceType {given!r} must be about a {given}.",
                field="resourceType",
                code="resource_type_mismatch",
            )
        return given
    return kinds.pop() if len(kinds) == 1 else None


# --- channels --------------------------------------------------------------------------------

CHANNEL_TYPES = ("email", "webhook", "member")
CHANNEL_STATUSES = ("active", "disabled")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SECRET_MIN_LENGTH = 16


@dataclass(frozen=True)
class ChannelConfig:
    """A checked `configWrite`: what is shown (`config`) and the secret, if any."""

    config: dict[str, Any]
    secret: str | None = None


def check_channel_config(
    channel_type: str, values: dict[str, Any], *, owner_member_id: str | None
) -> ChannelConfig:
    """Validate a channel's full configuration (after a merge patch on update)."""

    def bad(message: str, code: str) -> InvalidValueError:
        return InvalidValueError(message, field="configWrite", code=code)

    allowed = {"email": {"addresses"}, "webhook": {"url", "secret"}, "member": {"memberId"}}
    if channel_type not in allowed:
        raise InvalidValueError(
            f"Channel type must be one of {', '.join(CHANNEL_TYPES)}.",
            field="type",
            code="unknown_channel_type",
        )
    unknown = set(values) - allowed[channel_type]
    if unknown:
        raise bad(
            f"Unknown {channel_type} channel setting(s): {', '.join(sorted(unknown))}.",
            "unknown_channel_setting",
        )
    if channel_type == "email":
        addresses = values.get("addresses")
        if (
            not isinstance(addresses, list)
            or not 1 <= len(addresses) <= 20
            or not all(isinstance(a, str) and EMAIL_PATTERN.match(a) for a in addresses)
        ):
            raise bad(
                "An email channel needs `addresses`: 1 to 20 email addresses.", "invalid_addresses"
            )
        return ChannelConfig({"addresses": [a.strip() for a in addresses]})
    if channel_type == "webhook":
        url, secret = values.get("url"), values.get("secret")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise bad("A webhook channel needs an http(s) `url`.", "invalid_url")
        if not isinstance(secret, str) or len(secret) < SECRET_MIN_LENGTH:
            raise bad(
                f"A webhook channel needs a signing `secret` of at least {SECRET_MIN_LENGTH} characters.",
                "invalid_secret",
            )
        return ChannelConfig({"url": url}, secret=secret)
    member_id = values.get("memberId", owner_member_id)
    if not isinstance(member_id, str) or not member_id:
        raise bad("A member channel needs `memberId`.", "invalid_member")
    return ChannelConfig({"memberId": member_id})


class NotificationChannel(SailplaneAggregate):
    kind = "notification_channel"
    channel_type: str
    name: str
    team_id: str | None
    member_id: str | None
    config: dict[str, Any]
    secret: str | None  # sealed
    status: str
    verified_at: datetime | None
    deleted: bool

    class Created(SailplaneAggregate.Created):
        channel_type: str
        name: str
        team_id: str | None
        member_id: str | None
        config: dict[str, Any]
        secret: str | None
        status: str

        def apply(self, aggregate: NotificationChannel) -> None:
            super().apply(aggregate)
            aggregate.channel_type = self.channel_type
            aggregate.name = self.name
            aggregate.team_id = self.team_id
            aggregate.member_id = self.member_id
            aggregate.config = dict(self.config)
            aggregate.secret = self.secret
            aggregate.status = self.status
            aggregate.verified_at = None
            aggregate.deleted = False

    class Updated(SailplaneAggregate.Event):
        changes: dict[str, Any]  # any of name, config, secret, status

        def apply(self, aggregate: NotificationChannel) -> None:
            for key, value in self.changes.items():
                setattr(aggregate, key, dict(value) if isinstance(value, dict) else value)
            if "config" in self.changes or "secret" in self.changes:
                aggregate.verified_at = None

    class Verified(SailplaneAggregate.Event):
        def apply(self, aggregate: NotificationChannel) -> None:
            aggregate.verified_at = self.timestamp

    class Deleted(SailplaneAggregate.Event):
        def apply(self, aggregate: NotificationChannel) -> None:
            aggregate.deleted = True
            aggregate.status = "deleted"

    @classmethod
    def create(
        cls,
        *,
        id: str,
        channel_type: str,
        name: str,
        team_id: str | None,
        member_id: str | None,
        config: dict[str, Any],
        sealed_secret: str | None,
        status: str = "active",
        by: Actor,
        at: datetime,
    ) -> NotificationChannel:
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            channel_type=channel_type,
            name=check_name(name),
            team_id=team_id,
            member_id=member_id,
            config=dict(config),
            secret=sealed_secret,
            status=check_channel_status(status),
        )

    def update(self, changes: dict[str, Any], *, by: Actor, at: datetime) -> None:
        if "name" in changes:
            changes["name"] = check_name(changes["name"])
        if "status" in changes:
            check_channel_status(changes["status"])
        changed = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if changed:
            self._trigger(self.Updated, by=by, at=at, changes=changed)

    def verify(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Verified, by=by, at=at)

    def delete(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Deleted, by=by, at=at)


def check_channel_status(status: str) -> str:
    if status not in CHANNEL_STATUSES:
        raise InvalidValueError(
            "Channel status must be active or disabled.", field="status", code="invalid_status"
        )
    return status


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= 100:
        raise InvalidValueError("The name must be 1 to 100 characters.", field="name")
    return cleaned


# --- rules -----------------------------------------------------------------------------------

SCOPE_TYPES = ("resource", "team", "organization", "own_resources")
DELIVERY_MODES = ("immediate", "digest")
DIGEST_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class DigestSchedule:
    """At `at` local time in `timezone`, daily, or weekly on `day_of_week` (0 = Sunday)."""

    at: str
    timezone: str = "UTC"
    day_of_week: int | None = None

    def next_after(self, moment: datetime) -> datetime:
        """The first digest time strictly after `moment` (UTC)."""
        zone = ZoneInfo(self.timezone)
        hour, minute = (int(p) for p in self.at.split(":"))
        local = moment.astimezone(zone)
        day = local.date()
        for _ in range(9):
            candidate = datetime.combine(day, time(hour, minute), tzinfo=zone)
            weekday = (candidate.weekday() + 1) % 7  # Python's Monday=0 -> Sunday=0
            if candidate > local and (self.day_of_week is None or weekday == self.day_of_week):
                return candidate.astimezone(UTC)
            day += timedelta(days=1)
        raise AssertionError("a digest time exists within a week")


def check_rule_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalize a rule's full field set (after an update is applied)."""
    if fields["scope_type"] not in SCOPE_TYPES:
        raise InvalidValueError(
            f"scopeType must be one of {', '.join(SCOPE_TYPES)}.", field="scopeType"
        )
    if fields["scope_type"] in ("resource", "team") and not fields.get("scope_id"):
        raise InvalidValueError(
            f"A {fields['scope_type']} rule needs scopeId.", field="scopeId", code="scope_required"
        )
    if fields["scope_type"] == "organization":
        fields["scope_id"] = None
    if fields["scope_type"] == "own_resources":
        if not fields.get("member_id"):
            raise InvalidValueError(
                "An own_resources rule must belong to a member (memberId).",
                field="scopeType",
                code="own_resources_needs_member",
            )
        fields["scope_id"] = fields["member_id"]
    if fields["delivery_mode"] not in DELIVERY_MODES:
        raise InvalidValueError("deliveryMode must be immediate or digest.", field="deliveryMode")
    if not fields["channel_ids"]:
        raise InvalidValueError(
            "A rule needs at least one channel.", field="channelIds", code="no_channels"
        )
    fields["channel_ids"] = sorted(set(fields["channel_ids"]))
    fields["event_types"] = expand_event_types(fields["event_types"])
    fields["resource_type"] = resource_type_of(fields["event_types"], fields.get("resource_type"))
    fields["name"] = check_name(fields["name"])
    if isinstance(fields.get("muted_until"), datetime):
        fields["muted_until"] = fields["muted_until"].astimezone(UTC).isoformat()
    if fields["delivery_mode"] == "digest":
        if not fields.get("digest_time") or not DIGEST_TIME.match(fields["digest_time"]):
            raise InvalidValueError(
                "A digest rule needs digestTime as HH:MM (24-hour).",
                field="digestTime",
                code="invalid_digest_time",
            )
        fields["digest_timezone"] = fields.get("digest_timezone") or "UTC"
        try:
            ZoneInfo(fields["digest_timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidValueError(
                f"Unknown time zone {fields['digest_timezone']!r}.",
                field="digestTimezone",
                code="invalid_timezone",
            ) from None
        day = fields.get("digest_day_of_week")
        if day is not None and not 0 <= day <= 6:
            raise InvalidValueError(
                "digestDayOfWeek is 0 (Sunday) to 6 (Saturday).", field="digestDayOfWeek"
            )
    return fields


RULE_FIELDS = (
    "name",
    "team_id",
    "member_id",
    "resource_type",
    "scope_type",
    "scope_id",
    "event_types",
    "delivery_mode",
    "channel_ids",
    "enabled",
    "digest_time",
    "digest_timezone",
    "digest_day_of_week",
    "muted_until",
)


class NotificationRule(SailplaneAggregate):
    kind = "notification_rule"
    fields: dict[str, Any]
    deleted: bool

    class Created(SailplaneAggregate.Created):
        fields: dict[str, Any]

        def apply(self, aggregate: NotificationRule) -> None:
            super().apply(aggregate)
            aggregate.fields = dict(self.fields)
            aggregate.deleted = False

    class Updated(SailplaneAggregate.Event):
        changes: dict[str, Any]

        def apply(self, aggregate: NotificationRule) -> None:
            aggregate.fields = {**aggregate.fields, **self.changes}

    class Deleted(SailplaneAggregate.Event):
        def apply(self, aggregate: NotificationRule) -> None:
            aggregate.deleted = True

    @classmethod
    def create(
        cls, *, id: str, fields: dict[str, Any], by: Actor, at: datetime
    ) -> NotificationRule:
        return cls._create_as(id=id, by=by, at=at, fields=check_rule_fields(dict(fields)))

    def update(self, changes: dict[str, Any], *, by: Actor, at: datetime) -> None:
        merged = check_rule_fields({**self.fields, **changes})
        changed = {k: v for k, v in merged.items() if self.fields.get(k) != v}
        if changed:
            self._trigger(self.Updated, by=by, at=at, changes=changed)

    def delete(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Deleted, by=by, at=at)


# --- notification events and deliveries --------------------------------------------------


class NotificationEvent(SailplaneAggregate):
    """A notable domain event, as the notifier saw it; published on sailplane.notifications."""

    kind = "notification_event"

    class Raised(SailplaneAggregate.Created):
        event_type: str
        resource_type: str
        resource_id: str
        related_ids: list[str]
        team_ids: list[str]
        member_id: str | None
        subject: str
        payload: dict[str, Any]
        source_event_id: str
        occurred_at: datetime

        def apply(self, aggregate: NotificationEvent) -> None:
            super().apply(aggregate)
            aggregate.event_type = self.event_type

    @staticmethod
    def id_for(source_event_id: str) -> str:
        return derived_id("notification-event", source_event_id)

    @classmethod
    def raise_(
        cls, *, source_event_id: str, occurred_at: datetime, by: Actor, at: datetime, **notable: Any
    ) -> NotificationEvent:
        return cls._create(
            cls.Raised,
            id=cls.id_for(source_event_id),
            organization_id=by.organization_id,
            actor=str(by),
            timestamp=at,
            source_event_id=source_event_id,
            occurred_at=occurred_at,
            **notable,
        )


DELIVERY_STATUSES = ("pending", "delivering", "delivered", "failed", "skipped")
REPLAYABLE = ("failed", "skipped")


class NotificationDelivery(SailplaneAggregate):
    kind = "notification_delivery"
    status: str
    attempts: int
    digest_at: datetime | None
    # Set while a failed attempt waits for its retry (status stays `delivering`).
    next_attempt_at: datetime | None

    class Recorded(SailplaneAggregate.Created):
        rule_id: str
        channel_id: str
        event_id: str
        event_type: str
        target_summary: str
        status: str  # pending or skipped
        status_message: str | None
        digest_at: datetime | None

        def apply(self, aggregate: NotificationDelivery) -> None:
            super().apply(aggregate)
            aggregate.status = self.status
            aggregate.attempts = 0
            aggregate.digest_at = self.digest_at
            aggregate.next_attempt_at = None

    class Started(SailplaneAggregate.Event):
        def apply(self, aggregate: NotificationDelivery) -> None:
            aggregate.status = "delivering"
            aggregate.next_attempt_at = None

    class AttemptFailed(SailplaneAggregate.Event):
        attempt: int
        message: str
        next_attempt_at: datetime | None = None  # when the notifier sends it again

        def apply(self, aggregate: NotificationDelivery) -> None:
            aggregate.attempts = self.attempt
            aggregate.next_attempt_at = self.next_attempt_at

    class Delivered(SailplaneAggregate.Event):
        attempt: int

        def apply(self, aggregate: NotificationDelivery) -> None:
            aggregate.status = "delivered"
            aggregate.attempts = self.attempt
            aggregate.next_attempt_at = None

    class Failed(SailplaneAggregate.Event):
        attempt: int
        message: str

        def apply(self, aggregate: NotificationDelivery) -> None:
            aggregate.status = "failed"
            aggregate.attempts = self.attempt
            aggregate.next_attempt_at = None

    class Replayed(SailplaneAggregate.Event):
        def apply(self, aggregate: NotificationDelivery) -> None:
            aggregate.status = "pending"
            aggregate.digest_at = None

    @staticmethod
    def id_for(rule_id: str, channel_id: str, event_id: str) -> str:
        return derived_id("notification-delivery", rule_id, channel_id, event_id)

    @classmethod
    def record(
        cls,
        *,
        rule_id: str,
        channel_id: str,
        event_id: str,
        event_type: str,
        target_summary: str,
        skipped_because: str | None,
        digest_at: datetime | None,
        by: Actor,
        at: datetime,
    ) -> NotificationDelivery:
        return cls._create(
            cls.Recorded,
            id=cls.id_for(rule_id, channel_id, event_id),
            organization_id=by.organization_id,
            actor=str(by),
            timestamp=at,
            rule_id=rule_id,
            channel_id=channel_id,
            event_id=event_id,
            event_type=event_type,
            target_summary=target_summary,
            status="skipped" if skipped_because else "pending",
            status_message=skipped_because,
            digest_at=None if skipped_because else digest_at,
        )

    @property
    def waiting_to_retry(self) -> bool:
        return self.status == "delivering" and self.next_attempt_at is not None

    def start(self, *, by: Actor, at: datetime) -> None:
        """Take a pending delivery, or a delivering one whose retry is scheduled."""
        if self.status != "pending" and not self.waiting_to_retry:
            raise ConflictError(
                f"Delivery {self.id} is {self.status}, not pending.", code="delivery_not_pending"
            )
        self._trigger(self.Started, by=by, at=at)

    def attempt_failed(
        self, message: str, *, next_attempt_at: datetime, by: Actor, at: datetime
    ) -> None:
        """A retryable attempt failed: it stays `delivering` and is sent again at
        `next_attempt_at` (the notifier's `tick` picks it up; nothing sleeps)."""
        self._trigger(
            self.AttemptFailed,
            by=by,
            at=at,
            attempt=self.attempts + 1,
            message=message,
            next_attempt_at=next_attempt_at,
        )

    def delivered(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Delivered, by=by, at=at, attempt=self.attempts + 1)

    def failed(self, message: str, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Failed, by=by, at=at, attempt=self.attempts + 1, message=message)

    def replay(self, *, by: Actor, at: datetime) -> None:
        if self.status not in REPLAYABLE:
            raise ConflictError(
                f"Delivery {self.id} is {self.status}; only failed or skipped deliveries can be replayed.",
                code="delivery_not_replayable",
            )
        self._trigger(self.Replayed, by=by, at=at)
