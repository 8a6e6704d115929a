"""The notifier: `sailplane worker notifier`.

For each event of `sailplane.job-runs` and `sailplane.infra` (or the log, in the single
process mode) that a registered mapping finds notable (`domain/notification_sources.py`):

1. match the organization's rules naming the event type, in scope (`resource`: the
   resource or a related id such as the run's job; `team`: one of the resource's teams;
   `organization`; `own_resources`: the rule's member owns the resource);
2. record the notification event and one delivery per (rule, channel) in one
   transaction with the inbox row; ids derive from the source event, so a redelivered
   message records nothing. Disabled or muted rules, disabled or deleted channels
   record `skipped`; digest rules record `pending` with the next digest time;
3. send what is due: `pending -> delivering -> delivered | failed`, one attempt at a
   time. A retryable failure records `AttemptFailed` with `next_attempt_at` = now +
   backoff with jitter (`webhooks.Backoff`); the delivery stays `delivering` and a later
   `tick` sends it again. After the last attempt it is `failed` (replayable). The
   notifier never sleeps, so one slow receiver does not hold up the others. A delivery
   left `delivering` by a notifier that stopped before sending is sent again after
   `STALLED_AFTER`: delivery is at least once, and a receiver deduplicates on the
   delivery id (the `Sailplane-Delivery` header, the CloudEvent `id`).

Between polls (`tick`) it sends what else is due: digests whose time came (one message
per channel holding every due delivery), replayed deliveries and due retries.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sailplane.commands.notifications import Notifications, PlannedDelivery
from sailplane.commands.ports import Mail
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError
from sailplane.domain.ids import derived_id
from sailplane.domain.notification_sources import NOTIFICATION_SOURCES, Notable, NotificationSources
from sailplane.domain.notifications import DigestSchedule, NotificationDelivery
from sailplane.infra_adapters.consumers import Consumer, Delivery
from sailplane.infra_adapters.mail import EMAIL_NOT_CONFIGURED, EMAIL_SENT
from sailplane.infra_adapters.webhooks import Backoff, Outcome, WebhookSender
from sailplane.projections.event_log import event_id, jsonable
from sailplane.projections.notifications import NotificationsView

if TYPE_CHECKING:
    from sailplane.contexts import NotificationsContext

log = logging.getLogger(__name__)
COMPONENT = "notifier"
# A delivery `delivering` this long was left by a worker that stopped between taking it and
# sending it: it is sent again (at least once; receivers deduplicate on the delivery id).
STALLED_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class Message:
    """One message to one channel: a single notification, a digest, or a test."""

    id: str  # the delivery id (or a digest's id): the webhook's CloudEvent id
    organization_id: str
    type: str
    subject: str
    text: str
    data: dict[str, Any]
    time: datetime
    resource_id: str = ""

    def cloud_event(self) -> bytes:
        return json.dumps(
            {
                "specversion": "1.0",
                "id": self.id,
                "source": f"/sailplane/organizations/{self.organization_id}",
                "type": self.type,
                "subject": self.resource_id,
                "time": jsonable(self.time),
                "datacontenttype": "application/json",
                "data": self.data,
            },
            separators=(",", ":"),
        ).encode()


class ChannelSender:
    """Sends one message to one channel, once (the caller retries)."""

    def __init__(
        self,
        view: NotificationsView,
        notifications: Notifications,
        mail: Mail,
        webhooks: WebhookSender,
    ) -> None:
        self.view = view
        self.notifications = notifications
        self.mail = mail
        self.webhooks = webhooks

    def probe(self, channel: dict[str, Any], at: datetime) -> Outcome:
        """Send the channel its test message."""
        return self.send(channel, probe_message(channel, at))

    def send(self, channel: dict[str, Any], message: Message) -> Outcome:
        if channel["type"] == "webhook":
            url = channel["config"]["url"]
            # Checked again at send time: the host may resolve elsewhere than when written.
            refused = self.notifications.webhook_guard.refusal(url)
            if refused is not None:
                return Outcome(False, refused, retryable=False)
            secret = self.notifications.channel_secret(channel["sealed_secret"]) or ""
            return self.webhooks.post(url, secret, message.cloud_event(), message.id)
        if channel["type"] == "member":
            address = self.view.verified_email_of_member(
                channel["organization_id"], channel["config"]["memberId"]
            )
            if address is None:
                return Outcome(False, "the member has no verified email address", retryable=False)
            return self._email([address], message)
        return self._email(channel["config"]["addresses"], message)

    def _email(self, addresses: list[str], message: Message) -> Outcome:
        refused = []
        for address in addresses:
            outcome = self.mail.send(address, message.subject, message.text)
            if outcome.status == EMAIL_NOT_CONFIGURED:
                return Outcome(False, outcome.message, retryable=False)
            if outcome.status != EMAIL_SENT:
                refused.append(address)
        if refused:
            return Outcome(False, f"the SMTP server did not accept mail to {', '.join(refused)}")
        return Outcome(True)


def target_summary(channel: dict[str, Any]) -> str:
    config = channel["config"]
    if channel["type"] == "webhook":
        return f"POST {config['url']}"
    if channel["type"] == "member":
        return f"email to member {config['memberId']}"
    return "email to " + ", ".join(config["addresses"])


def in_scope(rule: dict[str, Any], notable: Notable) -> bool:
    scope = rule["scope_type"]
    if scope == "organization":
        return True
    if scope == "team":
        return rule["scope_id"] in notable.team_ids
    if scope == "resource":
        return rule["scope_id"] in notable.resource_ids()
    return notable.member_id is not None and rule["member_id"] == notable.member_id


def probe_message(channel: dict[str, Any], at: datetime) -> Message:
    return Message(
        id=derived_id("notification-test", channel["id"], at.isoformat()),
        organization_id=channel["organization_id"],
        type="sailplane.notification.test",
        subject=f"[Sailplane] Test notification for channel {channel['name']}",
        text=f"This is a test message for the Sailplane notification channel {channel['name']} "
        f"({channel['id']}). It reached you, so the channel works.",
        data={"channelId": channel["id"], "test": True},
        time=at,
        resource_id=channel["id"],
    )


def _notification_data(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "deliveryId": row["id"],
        "eventId": row["event_id"],
        "eventType": row["event_type"],
        "ruleId": row["rule_id"],
        "channelId": row["channel_id"],
        "resourceType": row["resource_type"],
        "resourceId": row["resource_id"],
        "subject": row["subject"],
        "occurredAt": jsonable(row["occurred_at"]),
        "payload": row["payload"],
    }


def message_for(rows: list[dict[str, Any]]) -> Message:
    """A single notification, or (several due digest deliveries of one channel) a digest."""
    first = rows[0]
    if len(rows) == 1 and first["digest_at"] is None:
        return Message(
            id=first["id"],
            organization_id=first["organization_id"],
            type=f"sailplane.notification.{first['event_type']}",
            subject=f"[Sailplane] {first['subject']}",
            text=f"{first['subject']}\n\nEvent: {first['event_type']}\n"
            f"Resource: {first['resource_type']} {first['resource_id']}\n"
            f"At: {jsonable(first['occurred_at'])}\n\n"
            + json.dumps(first["payload"], indent=2, sort_keys=True),
            data=_notification_data(first),
            time=first["occurred_at"],
            resource_id=first["resource_id"],
        )
    lines = [f"- {jsonable(r['occurred_at'])} {r['event_type']}: {r['subject']}" for r in rows]
    return Message(
        id=derived_id("notification-digest", *[r["id"] for r in rows]),
        organization_id=first["organization_id"],
        type="sailplane.notification.digest",
        subject=f"[Sailplane] Digest: {len(rows)} notification{'s' if len(rows) != 1 else ''}",
        text="\n".join([f"{len(rows)} events since the last digest:", "", *lines]),
        data={
            "channelId": first["channel_id"],
            "notifications": [_notification_data(r) for r in rows],
        },
        time=max(r["occurred_at"] for r in rows),
        resource_id=first["channel_id"],
    )


class Notifier(Consumer):
    name = COMPONENT
    kafka_topics = ("sailplane.job-runs", "sailplane.infra")

    def __init__(
        self,
        notifications: NotificationsContext,
        *,
        sources: NotificationSources = NOTIFICATION_SOURCES,
        clock: Callable[[], datetime] | None = None,
        rng: Callable[[], float] = random.random,
        backoff: Backoff | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.views_reached = notifications.views_reached  # a worker goes on either way
        self.notifications = notifications.commands
        self.view = notifications.view
        self.sources = sources
        self.clock = clock or notifications.clock
        self.rng = rng
        self.backoff = backoff or Backoff()
        self.sender = ChannelSender(
            self.view,
            self.notifications,
            notifications.mail,
            webhooks or WebhookSender(clock=lambda: self.clock().timestamp()),
        )

    # --- events in -------------------------------------------------------------------------

    def handle(self, delivery: Delivery) -> None:
        event = delivery.event
        notable = self.sources.notable(event, self.notifications.aggregate_at)
        if notable is None:
            return
        organization_id = event.organization_id
        _, _, position = self.notifications.record_event(
            notable,
            source_event_id=event_id(event.originator_id, event.originator_version),
            occurred_at=event.timestamp,
            deliveries=self.plan(organization_id, notable),
            by=Actor.system(COMPONENT, organization_id),
            tracking=delivery.tracking(self.name),
        )
        if position:
            self.views_reached(position)
            self.send_due()

    def plan(self, organization_id: str, notable: Notable) -> list[PlannedDelivery]:
        now = self.clock()
        planned = []
        for rule in self.view.rules_for(organization_id, notable.event_type):
            if not in_scope(rule, notable):
                continue
            rule_skip = None
            if not rule["enabled"]:
                rule_skip = "the rule is disabled"
            elif rule["muted_until"] is not None and rule["muted_until"] > now:
                rule_skip = f"the rule is muted until {jsonable(rule['muted_until'])}"
            digest_at = (
                DigestSchedule(
                    rule["digest_time"], rule["digest_timezone"], rule["digest_day_of_week"]
                ).next_after(now)
                if rule["delivery_mode"] == "digest"
                else None
            )
            for channel_id in rule["channel_ids"]:
                channel = self.view.channel(organization_id, channel_id, with_deleted=True)
                if channel is None:
                    continue
                skip = rule_skip or (
                    f"the channel is {channel['status']}" if channel["status"] != "active" else None
                )
                planned.append(
                    PlannedDelivery(
                        rule["id"], channel_id, target_summary(channel), skip, digest_at
                    )
                )
        return planned

    # --- deliveries out --------------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock()
        resumed = 0
        for delivery_id in self.view.stalled(now - STALLED_AFTER):
            with contextlib.suppress(ConflictError):
                resumed = max(
                    resumed,
                    self.notifications.retry_stalled_delivery(
                        delivery_id,
                        "the notifier stopped while sending; sending again",
                        next_attempt_at=now,
                        by=Actor.system(COMPONENT, "system"),
                    ),
                )
        if resumed:
            self.views_reached(resumed)
        self.send_due()

    def send_due(self) -> None:
        """Send every pending delivery whose time came: immediate ones one by one, due
        digest deliveries as one message per channel."""
        # A digest's retry resends the same deliveries together (they share next_attempt_at).
        digests: dict[tuple[str, datetime | None], list[dict[str, Any]]] = {}
        for row in self.view.due(self.clock()):
            if row["digest_at"] is None:
                self._send([row])
            else:
                key = (row["channel_id"], row["next_attempt_at"])
                digests.setdefault(key, []).append(row)
        for rows in digests.values():
            self._send(rows)

    def _send(self, rows: list[dict[str, Any]]) -> None:
        organization_id = rows[0]["organization_id"]
        by = Actor.system(COMPONENT, organization_id)
        started: list[tuple[dict[str, Any], NotificationDelivery]] = []
        for row in rows:
            delivery = self.notifications.start_delivery(row["id"], by=by)
            if delivery is not None:
                started.append((row, delivery))
        if not started:
            return
        channel = self.view.channel(organization_id, rows[0]["channel_id"], with_deleted=True)
        if channel is None or channel["status"] != "active":
            state = "gone" if channel is None else channel["status"]
            outcome = Outcome(False, f"the channel is {state}", retryable=False)
        else:
            message = message_for([row for row, _ in started])
            outcome = self.sender.send(channel, message)
        attempt = max(d.attempts for _, d in started) + 1
        if not outcome.ok and outcome.retryable and attempt < self.backoff.max_attempts:
            # Sent again by a later tick, not slept on here.
            retry_at = self.clock() + timedelta(seconds=self.backoff.delay(attempt, self.rng))
            for _, delivery in started:
                self.notifications.attempt_failed(
                    delivery, outcome.message or "failed", next_attempt_at=retry_at, by=by
                )
            log.info(
                "notification to channel %s failed (attempt %d), retrying at %s: %s",
                rows[0]["channel_id"],
                attempt,
                retry_at.isoformat(),
                outcome.message,
            )
            return
        for _, delivery in started:
            self.notifications.finish_delivery(
                delivery, error=None if outcome.ok else outcome.message or "failed", by=by
            )
        if not outcome.ok:
            log.warning(
                "notification to channel %s failed: %s", rows[0]["channel_id"], outcome.message
            )
