"""Notifications use cases: channels and rules (HTTP), events and deliveries (the notifier).

The webhook signing secret is sealed with the `SecretBox` before it reaches an event.
The notifier records a notification event and its deliveries in one transaction with
its inbox row; their ids derive from the source event, so a redelivered source event
records nothing new (the second save collides on the store's version check).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Tracking

from sailplane.commands.base import SailplaneApplication
from sailplane.commands.ports import ChannelProbe, WebhookTargets
from sailplane.commands.workloads import SecretBox
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.domain.identity import Team
from sailplane.domain.ids import new_id
from sailplane.domain.notification_sources import Notable
from sailplane.domain.notifications import (
    ChannelConfig,
    NotificationChannel,
    NotificationDelivery,
    NotificationEvent,
    NotificationRule,
    check_channel_config,
)
from sailplane.domain.workloads import merge_patch
from sailplane.storage import EventLog


@dataclass(frozen=True)
class PlannedDelivery:
    """What the notifier decided for one (rule, channel) of an event."""

    rule_id: str
    channel_id: str
    target_summary: str
    skipped_because: str | None
    digest_at: datetime | None


class Notifications(SailplaneApplication):
    def __init__(
        self,
        log: EventLog,
        *,
        secret_box: SecretBox,
        webhook_guard: WebhookTargets,
        **kwargs: Any,
    ) -> None:
        self.secret_box = secret_box
        # Which webhook URLs may be called: checked on write here, and by the notifier at send.
        self.webhook_guard = webhook_guard
        super().__init__(log, **kwargs)

    # --- channels ------------------------------------------------------------------------

    def create_channel(
        self,
        *,
        channel_type: str,
        name: str,
        team_id: str | None,
        member_id: str | None,
        config_write: dict[str, Any],
        status: str = "active",
        by: Actor,
    ) -> tuple[str, int]:
        self._check_owner(team_id, member_id, by)
        checked = check_channel_config(channel_type, config_write, owner_member_id=member_id)
        self._check_webhook_target(checked)
        channel = NotificationChannel.create(
            id=new_id(),
            channel_type=channel_type,
            name=name,
            team_id=team_id,
            member_id=member_id,
            config=checked.config,
            sealed_secret=self._seal(checked.secret),
            status=status,
            by=by,
            at=self.clock(),
        )
        return channel.id, self._commit(channel)

    def update_channel(
        self,
        channel_id: str,
        *,
        name: str | None,
        config_patch: dict[str, Any] | None,
        status: str | None,
        by: Actor,
    ) -> int:
        """`config_patch` is a JSON merge patch of the channel's configWrite."""
        channel = self._channel(channel_id, by)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if status is not None:
            changes["status"] = status
        if config_patch is not None:
            current = dict(channel.config)
            if channel.secret is not None:
                current["secret"] = self.secret_box.open(channel.secret)
            checked = check_channel_config(
                channel.channel_type,
                merge_patch(current, config_patch),
                owner_member_id=channel.member_id,
            )
            self._check_webhook_target(checked)
            changes["config"] = checked.config
            if checked.secret != current.get("secret"):
                changes["secret"] = self._seal(checked.secret)
        channel.update(changes, by=by, at=self.clock())
        return self._commit(channel)

    def delete_channel(self, channel_id: str, *, by: Actor) -> int:
        channel = self._channel(channel_id, by)
        channel.delete(by=by, at=self.clock())
        return self._commit(channel)

    def verify_channel(self, channel_id: str, *, by: Actor) -> int:
        """Record that a test message reached the channel (sets verifiedAt)."""
        channel = self._channel(channel_id, by)
        channel.verify(by=by, at=self.clock())
        return self._commit(channel)

    def test_channel(self, channel: dict[str, Any], *, sender: ChannelProbe, by: Actor) -> int:
        """Send a real test message to the channel; once it arrives, record that (verifiedAt).
        409 when it could not be delivered."""
        outcome = sender.probe(channel, self.clock())
        if not outcome.ok:
            raise ConflictError(
                f"The test message could not be delivered: {outcome.message}.",
                code="channel_test_failed",
            )
        return self.verify_channel(channel["id"], by=by)

    def channel_secret(self, sealed: str | None) -> str | None:
        return None if sealed is None else self.secret_box.open(sealed)

    # --- rules ---------------------------------------------------------------------------

    def create_rule(self, fields: dict[str, Any], *, by: Actor) -> tuple[str, int]:
        self._check_owner(fields.get("team_id"), fields.get("member_id"), by)
        self._check_channels(fields.get("channel_ids") or [], by)
        if fields.get("scope_type") == "team" and fields.get("scope_id"):
            self._team(fields["scope_id"], by, field="scopeId")
        rule = NotificationRule.create(id=new_id(), fields=fields, by=by, at=self.clock())
        return rule.id, self._commit(rule)

    def update_rule(self, rule_id: str, changes: dict[str, Any], *, by: Actor) -> int:
        rule = self._load(
            NotificationRule, rule_id, organization_id=by.organization_id, kind="notification_rule"
        )
        if "channel_ids" in changes:
            self._check_channels(changes["channel_ids"] or [], by)
        rule.update(changes, by=by, at=self.clock())
        return self._commit(rule)

    def delete_rule(self, rule_id: str, *, by: Actor) -> int:
        rule = self._load(
            NotificationRule, rule_id, organization_id=by.organization_id, kind="notification_rule"
        )
        rule.delete(by=by, at=self.clock())
        return self._commit(rule)

    # --- the notifier ---

    def aggregate_at(self, aggregate_id: str, version: int | None = None) -> Any | None:
        """Any aggregate of the log, as of `version` (a mapping's `Lookup`)."""
        try:
            return self.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            return None

    def record_event(
        self,
        notable: Notable,
        *,
        source_event_id: str,
        occurred_at: datetime,
        deliveries: list[PlannedDelivery],
        by: Actor,
        tracking: Tracking | None,
    ) -> tuple[str, list[str], int]:
        """Record the notification event and its deliveries: (event id, delivery ids, position).

        A source event seen before (a redelivered message) records nothing: position 0.
        """
        at = self.clock()
        event = NotificationEvent.raise_(
            source_event_id=source_event_id,
            occurred_at=occurred_at,
            by=by,
            at=at,
            event_type=notable.event_type,
            resource_type=notable.resource_type,
            resource_id=notable.resource_id,
            related_ids=list(notable.related_ids),
            team_ids=list(notable.team_ids),
            member_id=notable.member_id,
            subject=notable.subject,
            payload=dict(notable.payload),
        )
        recorded = [
            NotificationDelivery.record(
                rule_id=d.rule_id,
                channel_id=d.channel_id,
                event_id=event.id,
                event_type=notable.event_type,
                target_summary=d.target_summary,
                skipped_because=d.skipped_because,
                digest_at=d.digest_at,
                by=by,
                at=at,
            )
            for d in deliveries
        ]
        try:
            position = self._commit(event, *recorded, tracking=tracking)
        except ConflictError:
            if self._find(NotificationEvent, event.id) is None:
                raise
            return event.id, [], 0
        return event.id, [d.id for d in recorded], position

    def start_delivery(self, delivery_id: str, *, by: Actor) -> NotificationDelivery | None:
        """Mark a pending delivery (or one whose retry is due) delivering; None when another
        worker took it or it is done."""
        delivery = self._find(NotificationDelivery, delivery_id)
        if delivery is None or (delivery.status != "pending" and not delivery.waiting_to_retry):
            return None
        delivery.start(by=by, at=self.clock())
        try:
            self._commit(delivery)
        except ConflictError:
            return None
        return delivery

    def attempt_failed(
        self,
        delivery: NotificationDelivery,
        message: str,
        *,
        next_attempt_at: datetime,
        by: Actor,
    ) -> int:
        delivery.attempt_failed(message, next_attempt_at=next_attempt_at, by=by, at=self.clock())
        return self._commit(delivery)

    def finish_delivery(
        self, delivery: NotificationDelivery, *, error: str | None, by: Actor
    ) -> int:
        if error is None:
            delivery.delivered(by=by, at=self.clock())
        else:
            delivery.failed(error, by=by, at=self.clock())
        return self._commit(delivery)

    def retry_stalled_delivery(
        self, delivery_id: str, message: str, *, next_attempt_at: datetime, by: Actor
    ) -> int:
        """Send again a delivery whose worker stopped between taking it and sending it:
        the lost attempt counts as failed and the next is due at `next_attempt_at`
        (at least once; receivers deduplicate on the delivery id)."""
        delivery = self._find(NotificationDelivery, delivery_id)
        # A delivery waiting for its scheduled retry is not stalled: the notifier resends it.
        if delivery is None or delivery.status != "delivering" or delivery.waiting_to_retry:
            return 0
        delivery.attempt_failed(message, next_attempt_at=next_attempt_at, by=by, at=self.clock())
        return self._commit(delivery)

    def replay_delivery(self, delivery_id: str, *, by: Actor) -> int:
        delivery = self._load(
            NotificationDelivery,
            delivery_id,
            organization_id=by.organization_id,
            kind="notification_delivery",
        )
        delivery.replay(by=by, at=self.clock())
        return self._commit(delivery)

    def replay_deliveries(self, delivery_ids: list[str], *, by: Actor) -> tuple[list[str], int]:
        """Replay many at once (one transaction); ones no longer replayable are left out."""
        replayed = []
        for delivery_id in delivery_ids:
            delivery = self._find(NotificationDelivery, delivery_id)
            if (
                delivery is not None
                and delivery.organization_id == by.organization_id
                and delivery.status in ("failed", "skipped")
            ):
                delivery.replay(by=by, at=self.clock())
                replayed.append(delivery)
        return [d.id for d in replayed], self._commit(*replayed)

    # --- helpers ---------------------------------------------------------------------------

    def _check_webhook_target(self, checked: ChannelConfig) -> None:
        url = checked.config.get("url")
        if not isinstance(url, str):
            return
        refused = self.webhook_guard.refusal(url, unresolvable_ok=True)
        if refused is not None:
            raise InvalidValueError(refused, field="configWrite.url", code="webhook_url_refused")

    def _seal(self, secret: str | None) -> str | None:
        return None if secret is None else self.secret_box.seal(secret)

    def _channel(self, channel_id: str, by: Actor) -> NotificationChannel:
        return self._load(
            NotificationChannel,
            channel_id,
            organization_id=by.organization_id,
            kind="notification_channel",
        )

    def _team(self, team_id: str, by: Actor, *, field: str) -> Team:
        team = self._find(Team, team_id)
        if team is None or team.organization_id != by.organization_id or team.deleted:
            raise InvalidValueError(
                f"Team {team_id} does not exist.", field=field, code="unknown_team"
            )
        return team

    def _check_owner(self, team_id: str | None, member_id: str | None, by: Actor) -> None:
        if (team_id is None) == (member_id is None):
            raise InvalidValueError(
                "Give exactly one owner: teamId or memberId.", field="teamId", code="owner_required"
            )
        if team_id is not None:
            self._team(team_id, by, field="teamId")

    def _check_channels(self, channel_ids: list[str], by: Actor) -> None:
        for channel_id in channel_ids:
            channel = self._find(NotificationChannel, channel_id)
            if channel is None or channel.organization_id != by.organization_id or channel.deleted:
                raise InvalidValueError(
                    f"Notification channel {channel_id} does not exist.",
                    field="channelIds",
                    code="unknown_channel",
                )
