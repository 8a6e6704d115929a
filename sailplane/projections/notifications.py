"""The notifications view: channels, rules, notification events and the delivery log.

A deleted channel keeps its row (status `deleted`) so the delivery log can still name
it; lists and describes leave it out. A deleted rule's row is removed (its deliveries
keep its id). The webhook secret is kept sealed, for the notifier only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from psycopg.types.json import Jsonb

from sailplane.domain.notifications import (
    RULE_FIELDS,
    NotificationChannel,
    NotificationDelivery,
    NotificationEvent,
    NotificationRule,
)
from sailplane.projections.base import Projection, View
from sailplane.projections.identity import actor_ref
from sailplane.projections.query import keyset_page

_AUDIT = """
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL"""


class NotificationsView(View):
    name = "notifications"
    tables = {
        "notification_channels": f"""
            CREATE TABLE {{notification_channels}} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                type text NOT NULL,
                name text NOT NULL,
                team_id text,
                member_id text,
                config jsonb NOT NULL,
                sealed_secret text,
                status text NOT NULL,
                status_message text,
                verified_at timestamptz,{_AUDIT}
            )""",
        "notification_rules": f"""
            CREATE TABLE {{notification_rules}} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                name text NOT NULL,
                team_id text,
                member_id text,
                resource_type text,
                scope_type text NOT NULL,
                scope_id text,
                event_types text[] NOT NULL,
                delivery_mode text NOT NULL,
                channel_ids text[] NOT NULL,
                enabled boolean NOT NULL,
                digest_time text,
                digest_timezone text,
                digest_day_of_week integer,
                muted_until timestamptz,{_AUDIT}
            )""",
        "notification_events": """
            CREATE TABLE {notification_events} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                event_type text NOT NULL,
                resource_type text NOT NULL,
                resource_id text NOT NULL,
                subject text NOT NULL,
                payload jsonb NOT NULL,
                occurred_at timestamptz NOT NULL,
                source_event_id text NOT NULL
            )""",
        "notification_deliveries": """
            CREATE TABLE {notification_deliveries} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                rule_id text NOT NULL,
                channel_id text NOT NULL,
                event_id text NOT NULL,
                event_type text NOT NULL,
                target_summary text NOT NULL,
                status text NOT NULL,
                status_message text,
                attempts integer NOT NULL,
                last_attempt_at timestamptz,
                delivered_at timestamptz,
                digest_at timestamptz,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                next_attempt_at timestamptz
            )""",
    }
    indexes = (
        "CREATE INDEX ON {notification_channels} (organization_id, lower(name), id)",
        "CREATE INDEX ON {notification_rules} (organization_id, lower(name), id)",
        "CREATE INDEX ON {notification_rules} USING gin (event_types)",
        "CREATE INDEX ON {notification_deliveries} (organization_id, created_at, id)",
        "CREATE INDEX ON {notification_deliveries} (status, digest_at)",
    )

    # --- channels ------------------------------------------------------------------------

    def channel(
        self, organization_id: str, channel_id: str, *, with_deleted: bool = False
    ) -> dict[str, Any] | None:
        row = self.fetch_one(
            "SELECT * FROM {notification_channels} WHERE organization_id = %s AND id = %s",
            (organization_id, channel_id),
        )
        if row is not None and row["status"] == "deleted" and not with_deleted:
            return None
        return row

    def channels(
        self,
        organization_id: str,
        *,
        team_id: str | None,
        member_id: str | None,
        limit: int,
        marker: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        where, params = self._owned(
            "c",
            "FROM {notification_channels} c WHERE c.organization_id = %s AND c.status <> 'deleted'",
            [organization_id],
            team_id,
            member_id,
        )
        return keyset_page(
            self,
            where,
            params,
            select="c.*",
            keys=["lower(c.name)", "c.id"],
            limit=limit,
            marker=marker,
        )

    # --- rules ---------------------------------------------------------------------------

    def rule(self, organization_id: str, rule_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {notification_rules} WHERE organization_id = %s AND id = %s",
            (organization_id, rule_id),
        )

    def rules(
        self,
        organization_id: str,
        *,
        team_id: str | None,
        member_id: str | None,
        resource_type: str | None,
        scope_type: str | None,
        limit: int,
        marker: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        where, params = self._owned(
            "r",
            "FROM {notification_rules} r WHERE r.organization_id = %s",
            [organization_id],
            team_id,
            member_id,
        )
        if resource_type is not None:
            where += " AND r.resource_type = %s"
            params.append(resource_type)
        if scope_type is not None:
            where += " AND r.scope_type = %s"
            params.append(scope_type)
        return keyset_page(
            self,
            where,
            params,
            select="r.*",
            keys=["lower(r.name)", "r.id"],
            limit=limit,
            marker=marker,
        )

    def rules_for(self, organization_id: str, event_type: str) -> list[dict[str, Any]]:
        """Every rule of the organization that names this event type (enabled or not)."""
        return self.fetch_all(
            "SELECT * FROM {notification_rules} WHERE organization_id = %s "
            "AND event_types @> ARRAY[%s]::text[] ORDER BY id",
            (organization_id, event_type),
        )

    # --- deliveries ----------------------------------------------------------------------

    def deliveries(
        self,
        organization_id: str,
        *,
        channel_id: str | None,
        rule_id: str | None,
        status: str | None,
        limit: int,
        marker: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The delivery log, newest first."""
        where, params = self._delivery_filter(organization_id, channel_id, rule_id, status)
        return keyset_page(
            self,
            where,
            params,
            select="d.*",
            keys=["d.created_at", "d.id"],
            limit=limit,
            marker=marker,
            descending=True,
        )

    def delivery_ids(
        self,
        organization_id: str,
        *,
        channel_id: str | None,
        rule_id: str | None,
        status: str,
        limit: int,
    ) -> list[str]:
        where, params = self._delivery_filter(organization_id, channel_id, rule_id, status)
        rows = self.fetch_all(
            f"SELECT d.id {where} ORDER BY d.created_at, d.id LIMIT %s", [*params, limit]
        )
        return [r["id"] for r in rows]

    def delivery(self, organization_id: str, delivery_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {notification_deliveries} WHERE organization_id = %s AND id = %s",
            (organization_id, delivery_id),
        )

    def due(self, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
        """Deliveries to send now: pending immediate ones, pending digest ones whose time
        came, and delivering ones whose scheduled retry is due."""
        return self.fetch_all(
            "SELECT d.*, e.subject, e.payload, e.resource_type, e.resource_id, e.occurred_at "
            "FROM {notification_deliveries} d JOIN {notification_events} e ON e.id = d.event_id "
            "WHERE (d.status = 'pending' AND (d.digest_at IS NULL OR d.digest_at <= %s)) "
            "OR (d.status = 'delivering' AND d.next_attempt_at <= %s) "
            "ORDER BY d.created_at, d.id LIMIT %s",
            (now, now, limit),
        )

    def stalled(self, before: datetime) -> list[str]:
        """Deliveries still `delivering` with no change since `before` (a worker died).
        One waiting for a scheduled retry is not stalled: `due` sends it."""
        rows = self.fetch_all(
            "SELECT id FROM {notification_deliveries} WHERE status = 'delivering' "
            "AND next_attempt_at IS NULL AND updated_at < %s ORDER BY updated_at LIMIT 100",
            (before,),
        )
        return [r["id"] for r in rows]

    def verified_email_of_member(self, organization_id: str, member_id: str) -> str | None:
        """The member's verified address: their primary one if verified, else the first."""
        row = self.fetch_one(
            "SELECT e.email FROM members m JOIN user_emails e ON e.user_id = m.user_id "
            "WHERE m.organization_id = %s AND m.id = %s AND e.verified_at IS NOT NULL "
            "ORDER BY (lower(e.email) = lower(m.email)) DESC, e.verified_at, e.email LIMIT 1",
            (organization_id, member_id),
        )
        return row["email"] if row else None

    @staticmethod
    def _owned(
        alias: str, where: str, params: list[Any], team_id: str | None, member_id: str | None
    ) -> tuple[str, list[Any]]:
        if team_id is not None:
            where += f" AND {alias}.team_id = %s"
            params.append(team_id)
        if member_id is not None:
            where += f" AND {alias}.member_id = %s"
            params.append(member_id)
        return where, params

    @staticmethod
    def _delivery_filter(
        organization_id: str, channel_id: str | None, rule_id: str | None, status: str | None
    ) -> tuple[str, list[Any]]:
        where = "FROM {notification_deliveries} d WHERE d.organization_id = %s"
        params: list[Any] = [organization_id]
        for column, value in (("channel_id", channel_id), ("rule_id", rule_id), ("status", status)):
            if value is not None:
                where += f" AND d.{column} = %s"
                params.append(value)
        return where, params


class NotificationsProjection(Projection[NotificationsView]):
    view_class = NotificationsView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events change nothing here."""

    @process_event.register
    def _(self, event: NotificationChannel.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {notification_channels} VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.channel_type,
                event.name,
                event.team_id,
                event.member_id,
                Jsonb(event.config),
                event.secret,
                event.status,
                event.timestamp,
                by,
                event.timestamp,
                by,
            ),
        )

    @process_event.register
    def _(self, event: NotificationChannel.Updated, tracking: Tracking) -> None:
        columns = {
            "name": "name",
            "config": "config",
            "secret": "sealed_secret",
            "status": "status",
        }
        sets = [f"{columns[k]} = %s" for k in event.changes]
        values = [Jsonb(v) if k == "config" else v for k, v in event.changes.items()]
        if "config" in event.changes or "secret" in event.changes:
            sets.append("verified_at = NULL")
        self._touch_channel(event, sets, values)

    @process_event.register
    def _(self, event: NotificationChannel.Verified, tracking: Tracking) -> None:
        self._touch_channel(event, ["verified_at = %s"], [event.timestamp])

    @process_event.register
    def _(self, event: NotificationChannel.Deleted, tracking: Tracking) -> None:
        self._touch_channel(event, ["status = 'deleted'"], [])

    def _touch_channel(self, event: Any, sets: list[str], values: list[Any]) -> None:
        self.view.execute(
            f"UPDATE {{notification_channels}} SET {', '.join([*sets, 'updated_at = %s', 'updated_by = %s'])} "
            "WHERE id = %s",
            (*values, event.timestamp, actor_ref(event.actor), event.originator_id),
        )

    @process_event.register
    def _(self, event: NotificationRule.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        fields = event.fields
        self.view.execute(
            "INSERT INTO {notification_rules} (id, organization_id, "
            + ", ".join(RULE_FIELDS)
            + ", created_at, created_by, updated_at, updated_by) VALUES ("
            + ", ".join(["%s"] * (len(RULE_FIELDS) + 6))
            + ")",
            (
                event.originator_id,
                event.organization_id,
                *(_rule_value(k, fields.get(k)) for k in RULE_FIELDS),
                event.timestamp,
                by,
                event.timestamp,
                by,
            ),
        )

    @process_event.register
    def _(self, event: NotificationRule.Updated, tracking: Tracking) -> None:
        sets = [f"{k} = %s" for k in event.changes]
        self.view.execute(
            f"UPDATE {{notification_rules}} SET {', '.join([*sets, 'updated_at = %s', 'updated_by = %s'])} "
            "WHERE id = %s",
            (
                *(_rule_value(k, v) for k, v in event.changes.items()),
                event.timestamp,
                actor_ref(event.actor),
                event.originator_id,
            ),
        )

    @process_event.register
    def _(self, event: NotificationRule.Deleted, tracking: Tracking) -> None:
        self.view.execute("DELETE FROM {notification_rules} WHERE id = %s", (event.originator_id,))

    @process_event.register
    def _(self, event: NotificationEvent.Raised, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {notification_events} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.event_type,
                event.resource_type,
                event.resource_id,
                event.subject,
                Jsonb(event.payload),
                event.occurred_at,
                event.source_event_id,
            ),
        )

    @process_event.register
    def _(self, event: NotificationDelivery.Recorded, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {notification_deliveries} VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, 0, NULL, NULL, %s, %s, %s, NULL)",
            (
                event.originator_id,
                event.organization_id,
                event.rule_id,
                event.channel_id,
                event.event_id,
                event.event_type,
                event.target_summary,
                event.status,
                event.status_message,
                event.digest_at,
                event.timestamp,
                event.timestamp,
            ),
        )

    @process_event.register
    def _(self, event: NotificationDelivery.Started, tracking: Tracking) -> None:
        self._delivery(event, "status = 'delivering', next_attempt_at = NULL", ())

    @process_event.register
    def _(self, event: NotificationDelivery.AttemptFailed, tracking: Tracking) -> None:
        self._delivery(
            event,
            "attempts = %s, last_attempt_at = %s, status_message = %s, next_attempt_at = %s",
            (event.attempt, event.timestamp, event.message, event.next_attempt_at),
        )

    @process_event.register
    def _(self, event: NotificationDelivery.Delivered, tracking: Tracking) -> None:
        self._delivery(
            event,
            "status = 'delivered', attempts = %s, last_attempt_at = %s, delivered_at = %s, "
            "status_message = NULL, next_attempt_at = NULL",
            (event.attempt, event.timestamp, event.timestamp),
        )

    @process_event.register
    def _(self, event: NotificationDelivery.Failed, tracking: Tracking) -> None:
        self._delivery(
            event,
            "status = 'failed', attempts = %s, last_attempt_at = %s, status_message = %s, "
            "next_attempt_at = NULL",
            (event.attempt, event.timestamp, event.message),
        )

    @process_event.register
    def _(self, event: NotificationDelivery.Replayed, tracking: Tracking) -> None:
        self._delivery(event, "status = 'pending', status_message = NULL, digest_at = NULL", ())

    def _delivery(self, event: Any, sets: str, values: tuple[Any, ...]) -> None:
        self.view.execute(
            f"UPDATE {{notification_deliveries}} SET {sets}, updated_at = %s WHERE id = %s",
            (*values, event.timestamp, event.originator_id),
        )


def _rule_value(key: str, value: Any) -> Any:
    if key == "muted_until" and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value
