"""`/api/v1/notifications`: event types, channels, rules, the delivery log and replay.

Every endpoint needs `CanViewNotifications` from an organization role. Changing a
channel or a rule (and testing a channel, replaying its deliveries) needs
`CanManageNotifications` from an organization role, or from a team role in the team
that owns it; a member-owned channel or rule may also be changed by that member. A rule
of scope `organization` needs the permission from an organization role. Replaying in
bulk needs it from an organization role.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Controller
from litestar.params import FromPath, JSONBody, QueryParameter

from sailplane.contexts import IdentityContext, NotificationsContext
from sailplane.domain.errors import InvalidValueError
from sailplane.domain.notifications import EVENT_TYPES, RULE_FIELDS
from sailplane.http.auth import (
    Caller,
    IdentityDep,
    NotificationsDep,
    Principal,
    require_access,
    requires,
)
from sailplane.http.errors import or_404
from sailplane.http.pagination import Limit, Marker, MarkerListing
from sailplane.http.routes import delete, get, patch, post
from sailplane.http.shapes import Shape, from_row
from sailplane.http.sharing import ItemList

VIEW, MANAGE = "CanViewNotifications", "CanManageNotifications"
T = TypeVar("T")
C = TypeVar("C", bound="ChannelSummary")

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern="^[A-Z0-9]{1,20}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


def _filter(name: str, description: str) -> Any:
    return Annotated[
        str | None,
        QueryParameter(
            name=name,
            description=description,
            min_length=1,
            max_length=20,
            pattern="^[A-Z0-9]{1,20}$",
        ),
    ]


TeamFilter = _filter("teamId", "Filter by team ID.")
MemberFilter = _filter("memberId", "Filter by member ID.")
ChannelFilter = _filter("channelId", "Filter by channel ID.")
RuleFilter = _filter("ruleId", "Filter by rule ID.")
ResourceTypeFilter = Annotated[
    str | None, QueryParameter(name="resourceType", description="Filter rules by resource type.")
]
DeliveryStatus = Annotated[
    Literal["pending", "delivering", "delivered", "failed", "skipped"] | None,
    QueryParameter(description="Filter by delivery status."),
]
ScopeType = Annotated[
    Literal["resource", "team", "organization", "own_resources"] | None,
    QueryParameter(name="scopeType", description="Filter rules by scope type."),
]

# --- requests --------------------------------------------------------------------------------


class ChannelCreateRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    name: Name
    team_id: Id | None = None
    member_id: Id | None = None
    config_write: dict[str, Any] = {}
    status: str = "active"


class ChannelUpdateRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    name: Name | None = None
    config_write: dict[str, Any] | None = None
    status: str | None = None


DayOfWeek = Annotated[int, msgspec.Meta(ge=0, le=6)]
DigestTime = Annotated[str, msgspec.Meta(max_length=5)]
EventTypeKey = Annotated[str, msgspec.Meta(min_length=1, max_length=60)]


class RuleUpdateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Only the fields given change; `null` clears `mutedUntil` and the digest settings."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    event_types: list[EventTypeKey] | msgspec.UnsetType = msgspec.UNSET
    delivery_mode: str | msgspec.UnsetType = msgspec.UNSET
    channel_ids: list[Id] | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    digest_time: DigestTime | msgspec.UnsetType | None = msgspec.UNSET
    digest_timezone: Annotated[str, msgspec.Meta(max_length=60)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )
    digest_day_of_week: DayOfWeek | msgspec.UnsetType | None = msgspec.UNSET
    muted_until: datetime | msgspec.UnsetType | None = msgspec.UNSET


class RuleCreateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Name
    team_id: Id | None = None
    member_id: Id | None = None
    resource_type: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    scope_type: str | None = None
    scope_id: Id | None = None
    event_types: list[EventTypeKey]
    delivery_mode: str = "immediate"
    channel_ids: list[Id]
    enabled: bool = True
    digest_time: DigestTime | None = None
    digest_timezone: Annotated[str, msgspec.Meta(max_length=60)] | None = None
    digest_day_of_week: DayOfWeek | None = None
    muted_until: datetime | None = None


class ReplayRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Which deliveries to replay: every one matching all the filters given."""

    channel_id: Id | None = None
    rule_id: Id | None = None
    status: str = "failed"
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


# --- responses -------------------------------------------------------------------------------


class EventTypeOut(Shape):
    key: str
    resource_type: str
    label: str
    description: str
    expands_to: list[str]


class ChannelSummary(Shape):
    id: str
    type: str
    name: str
    team_id: str | None
    member_id: str | None
    config: dict[str, Any]
    status: str
    status_message: str | None
    verified_at: str | None
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str
    supports_digest: bool


class ChannelDetails(ChannelSummary):
    config_write: dict[str, Any]


class RuleOut(Shape):
    id: str
    name: str
    team_id: str | None
    member_id: str | None
    resource_type: str | None
    scope_type: str
    scope_id: str | None
    event_types: list[str]
    delivery_mode: str
    channel_ids: list[str]
    enabled: bool
    digest_time: str | None
    digest_timezone: str | None
    digest_day_of_week: int | None
    muted_until: str | None
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class DeliveryOut(Shape):
    id: str
    rule_id: str
    channel_id: str
    event_id: str
    event_type: str
    target_summary: str
    status: str
    status_message: str | None
    attempts: int
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    digest_at: str | None
    created_at: str | None


def _shown_config(row: dict[str, Any]) -> dict[str, Any]:
    config = dict(row["config"])
    if row["type"] == "webhook":
        config["secretConfigured"] = row["sealed_secret"] is not None
    return config


def _channel(shape: type[C], row: dict[str, Any], **fields: Any) -> C:
    """A channel as a list (`ChannelSummary`) or a describe (`ChannelDetails`) shows it."""
    return from_row(shape, row, config=_shown_config(row), supports_digest=True, **fields)


def _channel_details(row: dict[str, Any]) -> ChannelDetails:
    return _channel(ChannelDetails, row, config_write=_shown_config(row))


def _rule_out(row: dict[str, Any]) -> RuleOut:
    return from_row(
        RuleOut, row, event_types=list(row["event_types"]), channel_ids=list(row["channel_ids"])
    )


def _delivery_out(row: dict[str, Any]) -> DeliveryOut:
    return from_row(DeliveryOut, row)


def _listing(
    found: tuple[list[dict[str, Any]], str | None], shape: Callable[[dict[str, Any]], T]
) -> MarkerListing[T]:
    rows, marker = found
    return MarkerListing(items=[shape(r) for r in rows], marker=marker)


# --- access ----------------------------------------------------------------------------------


def require_owner(principal: Principal, *, team_id: str | None, member_id: str | None) -> None:
    """403 unless the caller may manage what this team or member owns."""
    require_access(
        principal,
        MANAGE,
        granted_team_ids=[team_id] if team_id else [],
        open_to_caller=member_id is not None
        and principal.kind == "member"
        and principal.id == member_id,
    )


def _check_member(identity: IdentityContext, principal: Principal, member_id: str | None) -> None:
    if (
        member_id is not None
        and identity.directory.member(principal.organization_id, member_id) is None
    ):
        raise InvalidValueError(
            f"Member {member_id} does not exist.", field="memberId", code="unknown_member"
        )


def _channel_row(
    notifications: NotificationsContext, principal: Principal, channel_id: str
) -> dict[str, Any]:
    return or_404(
        notifications.view.channel(principal.organization_id, channel_id),
        "notification_channel",
        channel_id,
    )


def _rule_row(
    notifications: NotificationsContext, principal: Principal, rule_id: str
) -> dict[str, Any]:
    return or_404(
        notifications.view.rule(principal.organization_id, rule_id),
        "notification_rule",
        rule_id,
    )


def _delivery_row(
    notifications: NotificationsContext, principal: Principal, delivery_id: str
) -> dict[str, Any]:
    return or_404(
        notifications.view.delivery(principal.organization_id, delivery_id),
        "notification_delivery",
        delivery_id,
    )


def _owner_of(row: dict[str, Any]) -> dict[str, str | None]:
    return {"team_id": row["team_id"], "member_id": row["member_id"]}


class NotificationController(Controller):
    path = "/notifications"
    tags = ["notifications"]

    # --- event types -----------------------------------------------------------------------

    @get(
        "/event-types",
        operation_id="ListNotificationEventTypes",
        guards=[requires(VIEW)],
        sync_to_thread=False,
    )
    def list_event_types(self) -> ItemList[EventTypeOut]:
        """List the event types rules can subscribe to, with shortcuts and what they expand to."""
        return ItemList(
            items=[
                EventTypeOut(
                    key=t.key,
                    resource_type=t.resource_type,
                    label=t.label,
                    description=t.description,
                    expands_to=list(t.expands_to),
                )
                for t in EVENT_TYPES
            ]
        )

    # --- channels --------------------------------------------------------------------------

    @get(
        "/channels",
        operation_id="ListNotificationChannels",
        guards=[requires(VIEW)],
    )
    def list_channels(
        self,
        notifications: NotificationsDep,
        principal: Caller,
        limit: Limit = 100,
        marker: Marker = None,
        team_id: TeamFilter = None,
        member_id: MemberFilter = None,
    ) -> MarkerListing[ChannelSummary]:
        """List the organization's notification channels, by name, optionally by owner."""
        return _listing(
            notifications.view.channels(
                principal.organization_id,
                team_id=team_id,
                member_id=member_id,
                limit=limit,
                marker=marker,
            ),
            lambda row: _channel(ChannelSummary, row),
        )

    @post(
        "/channels",
        operation_id="CreateNotificationChannel",
        guards=[requires(VIEW)],
    )
    def create_channel(
        self,
        identity: IdentityDep,
        notifications: NotificationsDep,
        principal: Caller,
        data: JSONBody[ChannelCreateRequest],
    ) -> ChannelDetails:
        """Create an email, webhook or member channel owned by a team or a member."""
        member_id = data.member_id
        if data.team_id is None and member_id is None and principal.kind == "member":
            member_id = principal.id
        require_owner(principal, team_id=data.team_id, member_id=member_id)
        _check_member(identity, principal, member_id)
        channel_id, position = notifications.commands.create_channel(
            channel_type=data.type,
            name=data.name,
            team_id=data.team_id,
            member_id=member_id,
            config_write=data.config_write,
            status=data.status,
            by=principal.actor,
        )
        notifications.wait_for_views(position)
        return _channel_details(_channel_row(notifications, principal, channel_id))

    @get(
        "/channels/{channel:str}",
        operation_id="DescribeNotificationChannel",
        guards=[requires(VIEW)],
    )
    def describe_channel(
        self, notifications: NotificationsDep, principal: Caller, channel: FromPath[str]
    ) -> ChannelDetails:
        """Describe a channel; a webhook's secret shows only as `secretConfigured`."""
        return _channel_details(_channel_row(notifications, principal, channel))

    @patch(
        "/channels/{channel:str}",
        operation_id="UpdateNotificationChannel",
        guards=[requires(VIEW)],
    )
    def update_channel(
        self,
        notifications: NotificationsDep,
        principal: Caller,
        channel: FromPath[str],
        data: JSONBody[ChannelUpdateRequest],
    ) -> ChannelDetails:
        """Rename, reconfigure (`configWrite` is a JSON merge patch) or enable/disable a channel."""
        require_owner(principal, **_owner_of(_channel_row(notifications, principal, channel)))
        position = notifications.commands.update_channel(
            channel,
            name=data.name,
            config_patch=data.config_write,
            status=data.status,
            by=principal.actor,
        )
        notifications.wait_for_views(position)
        return _channel_details(_channel_row(notifications, principal, channel))

    @delete(
        "/channels/{channel:str}",
        operation_id="DeleteNotificationChannel",
        guards=[requires(VIEW)],
    )
    def delete_channel(
        self, notifications: NotificationsDep, principal: Caller, channel: FromPath[str]
    ) -> None:
        """Soft-delete a channel: it stops receiving, its deliveries stay in the log."""
        require_owner(principal, **_owner_of(_channel_row(notifications, principal, channel)))
        notifications.wait_for_views(
            notifications.commands.delete_channel(channel, by=principal.actor)
        )

    @post(
        "/channels/{channel:str}/test",
        operation_id="TestNotificationChannel",
        guards=[requires(VIEW)],
        status_code=204,
    )
    def test_channel(
        self, notifications: NotificationsDep, principal: Caller, channel: FromPath[str]
    ) -> None:
        """Send a real test message; on success the channel's verifiedAt is set."""
        row = _channel_row(notifications, principal, channel)
        require_owner(principal, **_owner_of(row))
        notifications.wait_for_views(
            notifications.commands.test_channel(
                row, sender=notifications.sender, by=principal.actor
            )
        )

    # --- rules -----------------------------------------------------------------------------

    @get(
        "/rules",
        operation_id="ListNotificationRules",
        guards=[requires(VIEW)],
    )
    def list_rules(
        self,
        notifications: NotificationsDep,
        principal: Caller,
        limit: Limit = 100,
        marker: Marker = None,
        team_id: TeamFilter = None,
        member_id: MemberFilter = None,
        resource_type: ResourceTypeFilter = None,
        scope_type: ScopeType = None,
    ) -> MarkerListing[RuleOut]:
        """List the organization's notification rules, by name, with the documented filters."""
        return _listing(
            notifications.view.rules(
                principal.organization_id,
                team_id=team_id,
                member_id=member_id,
                resource_type=resource_type,
                scope_type=scope_type,
                limit=limit,
                marker=marker,
            ),
            _rule_out,
        )

    @post(
        "/rules",
        operation_id="CreateNotificationRule",
        guards=[requires(VIEW)],
    )
    def create_rule(
        self,
        identity: IdentityDep,
        notifications: NotificationsDep,
        principal: Caller,
        data: JSONBody[RuleCreateRequest],
    ) -> RuleOut:
        """Create a rule: event types (shortcuts expanded now) to channels, for a scope."""
        fields = {f: getattr(data, f) for f in RULE_FIELDS}
        if fields["team_id"] is None and fields["member_id"] is None and principal.kind == "member":
            fields["member_id"] = principal.id
        if fields["scope_type"] is None:
            fields["scope_type"] = "team" if fields["team_id"] else "own_resources"
            fields["scope_id"] = fields["scope_id"] or fields["team_id"]
        require_owner(principal, team_id=fields["team_id"], member_id=fields["member_id"])
        _check_member(identity, principal, fields["member_id"])
        _require_scope(principal, fields["scope_type"])
        _require_channels(notifications, principal, fields["channel_ids"])
        rule_id, position = notifications.commands.create_rule(fields, by=principal.actor)
        notifications.wait_for_views(position)
        return _rule_out(_rule_row(notifications, principal, rule_id))

    @get(
        "/rules/{rule:str}",
        operation_id="DescribeNotificationRule",
        guards=[requires(VIEW)],
    )
    def describe_rule(
        self, notifications: NotificationsDep, principal: Caller, rule: FromPath[str]
    ) -> RuleOut:
        """Describe a notification rule."""
        return _rule_out(_rule_row(notifications, principal, rule))

    @patch(
        "/rules/{rule:str}",
        operation_id="UpdateNotificationRule",
        guards=[requires(VIEW)],
    )
    def update_rule(
        self,
        notifications: NotificationsDep,
        principal: Caller,
        rule: FromPath[str],
        data: JSONBody[RuleUpdateRequest],
    ) -> RuleOut:
        """Change a rule: event types, channels, enable/disable, mute, digest settings."""
        row = _rule_row(notifications, principal, rule)
        require_owner(principal, **_owner_of(row))
        if not isinstance(data.channel_ids, msgspec.UnsetType):
            _require_channels(notifications, principal, data.channel_ids)
        changes = {
            f: v for f in data.__struct_fields__ if (v := getattr(data, f)) is not msgspec.UNSET
        }
        position = notifications.commands.update_rule(rule, changes, by=principal.actor)
        notifications.wait_for_views(position)
        return _rule_out(_rule_row(notifications, principal, rule))

    @delete(
        "/rules/{rule:str}",
        operation_id="DeleteNotificationRule",
        guards=[requires(VIEW)],
    )
    def delete_rule(
        self, notifications: NotificationsDep, principal: Caller, rule: FromPath[str]
    ) -> None:
        """Delete a rule: later events no longer match it; its deliveries stay in the log."""
        require_owner(principal, **_owner_of(_rule_row(notifications, principal, rule)))
        notifications.wait_for_views(notifications.commands.delete_rule(rule, by=principal.actor))

    # --- the delivery log and replay ---------------------------------------------------------

    @get("/", operation_id="ListNotifications", guards=[requires(VIEW)])
    def list_deliveries(
        self,
        notifications: NotificationsDep,
        principal: Caller,
        limit: Limit = 100,
        marker: Marker = None,
        channel_id: ChannelFilter = None,
        rule_id: RuleFilter = None,
        status: DeliveryStatus = None,
    ) -> MarkerListing[DeliveryOut]:
        """The delivery log, newest first, filtered by channel, rule or status."""
        return _listing(
            notifications.view.deliveries(
                principal.organization_id,
                channel_id=channel_id,
                rule_id=rule_id,
                status=status,
                limit=limit,
                marker=marker,
            ),
            _delivery_out,
        )

    @post(
        "/{delivery:str}/replay",
        operation_id="ReplayNotification",
        guards=[requires(VIEW)],
        status_code=202,
    )
    def replay(
        self, notifications: NotificationsDep, principal: Caller, delivery: FromPath[str]
    ) -> DeliveryOut:
        """Send a failed or skipped delivery again: it becomes pending and the notifier sends it."""
        row = _delivery_row(notifications, principal, delivery)
        channel = notifications.view.channel(
            principal.organization_id, row["channel_id"], with_deleted=True
        )
        require_owner(principal, **_owner_of(channel or {"team_id": None, "member_id": None}))
        notifications.wait_for_views(
            notifications.commands.replay_delivery(delivery, by=principal.actor)
        )
        return _delivery_out(_delivery_row(notifications, principal, delivery))

    @post(
        "/replay",
        operation_id="ReplayNotifications",
        guards=[requires(VIEW)],
        status_code=202,
    )
    def replay_many(
        self, notifications: NotificationsDep, principal: Caller, data: JSONBody[ReplayRequest]
    ) -> ItemList[DeliveryOut]:
        """Replay every delivery matching the filters (default: failed), up to `limit`."""
        require_access(principal, MANAGE, granted_team_ids=[])
        if data.status not in ("failed", "skipped"):
            raise InvalidValueError(
                "Only failed or skipped deliveries can be replayed.", field="status"
            )
        ids = notifications.view.delivery_ids(
            principal.organization_id,
            channel_id=data.channel_id,
            rule_id=data.rule_id,
            status=data.status,
            limit=data.limit,
        )
        replayed, position = notifications.commands.replay_deliveries(ids, by=principal.actor)
        notifications.wait_for_views(position)
        return ItemList(
            items=[_delivery_out(_delivery_row(notifications, principal, d)) for d in replayed]
        )


def _require_channels(
    notifications: NotificationsContext, principal: Principal, channel_ids: list[str]
) -> None:
    """A rule may send only to channels the caller may manage (unknown ones are 422 later)."""
    for channel_id in channel_ids:
        row = notifications.view.channel(principal.organization_id, channel_id)
        if row is not None:
            require_owner(principal, **_owner_of(row))


def _require_scope(principal: Principal, scope_type: str | None) -> None:
    if scope_type == "organization":
        require_access(
            principal,
            MANAGE,
            refusal=f"An organization-wide rule needs {MANAGE} from an organization role.",
        )
