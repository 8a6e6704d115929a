"""Authorization-matrix cases of the notifications group.

Reading needs `CanViewNotifications` (every organization role has it; a service account
without roles does not). Changing a team's channels and rules, testing a channel and
replaying its deliveries need `CanManageNotifications` from an organization role or a
team role in the owning team; a plain Member has neither, so gets 403.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sailplane.commands.notifications import PlannedDelivery
from sailplane.domain.base import Actor
from sailplane.domain.notification_sources import Notable
from tests.e2e.authz import Case, World

VIEW, MANAGE = "CanViewNotifications", "CanManageNotifications"


@cache
def receiver_url() -> str:
    """A webhook receiver that accepts everything, for `/test` (lives as long as the tests)."""

    class Accept(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Accept)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


def team(world: World) -> dict[str, Any]:
    created = world.owner.post("/org/teams", json={"name": world.unique("team")})
    return {"team": created.json()["team"]["id"]}


def new_channel(_: World, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "webhook",
        "name": "hooks",
        "teamId": values["team"],
        "configWrite": {"url": receiver_url(), "secret": "matrix-signing-secret-0001"},
    }


def channel(world: World) -> dict[str, Any]:
    values = team(world)
    created = world.owner.post("/notifications/channels", json=new_channel(world, values))
    return {**values, "channel": created.json()["id"]}


def new_rule(_: World, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "failures",
        "teamId": values["team"],
        "eventTypes": ["job_run.failed"],
        "channelIds": [values["channel"]],
    }


def rule(world: World) -> dict[str, Any]:
    values = channel(world)
    created = world.owner.post("/notifications/rules", json=new_rule(world, values))
    return {**values, "rule": created.json()["id"]}


def skipped_delivery(world: World) -> dict[str, Any]:
    """A delivery the notifier skipped (it is replayable), recorded through its use case."""
    values = rule(world)
    by = Actor.system("notifier", world.org.id)
    _, [delivery_id], position = world.system.notifications.commands.record_event(
        Notable(
            event_type="job_run.failed",
            resource_type="job_run",
            resource_id=world.unique("RUN").upper().replace("-", ""),
            subject="A run failed",
        ),
        source_event_id=world.unique("source"),
        occurred_at=datetime.now(UTC),
        deliveries=[
            PlannedDelivery(values["rule"], values["channel"], "hooks", "the rule is muted", None)
        ],
        by=by,
        tracking=None,
    )
    world.system.wait_for_views(position)
    return {**values, "delivery": delivery_id}


CASES: list[Case] = [
    Case("GET", "/notifications/event-types", VIEW, 200, foreign_404=False),
    Case("GET", "/notifications/channels", VIEW, 200, foreign_404=False),
    Case("POST", "/notifications/channels", MANAGE, 201, setup=team, body=new_channel),
    Case("GET", "/notifications/channels/{channel}", VIEW, 200, setup=channel),
    Case(
        "PATCH",
        "/notifications/channels/{channel}",
        MANAGE,
        200,
        setup=channel,
        body={"name": "renamed"},
    ),
    Case("DELETE", "/notifications/channels/{channel}", MANAGE, 204, setup=channel),
    Case("POST", "/notifications/channels/{channel}/test", MANAGE, 204, setup=channel),
    Case("GET", "/notifications/rules", VIEW, 200, foreign_404=False),
    Case("POST", "/notifications/rules", MANAGE, 201, setup=channel, body=new_rule),
    Case("GET", "/notifications/rules/{rule}", VIEW, 200, setup=rule),
    Case("PATCH", "/notifications/rules/{rule}", MANAGE, 200, setup=rule, body={"enabled": False}),
    Case("DELETE", "/notifications/rules/{rule}", MANAGE, 204, setup=rule),
    Case("GET", "/notifications", VIEW, 200, foreign_404=False),
    Case("POST", "/notifications/{delivery}/replay", MANAGE, 202, setup=skipped_delivery),
    Case("POST", "/notifications/replay", MANAGE, 202, body={}, foreign_404=False),
]
