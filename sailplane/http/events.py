"""`GET /api/v1/events`: the organization's event log, paged by global position."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller
from litestar.params import QueryParameter

from sailplane.http.auth import Caller, EventLogDep, requires
from sailplane.http.pagination import Limit
from sailplane.http.routes import get
from sailplane.http.shapes import Shape
from sailplane.projections.event_log import jsonable, read_log

After = Annotated[
    int, QueryParameter(ge=0, description="Return events after this global log position.")
]


class LoggedEventOut(Shape):
    id: str
    type: str
    aggregate_id: str
    aggregate_version: int
    organization_id: str
    actor: str
    time: str
    position: int
    data: dict[str, Any]


class EventPage(Shape):
    items: list[LoggedEventOut]
    next: int  # pass as `after` to continue; equals `after` when nothing new was found


class EventLogController(Controller):
    path = "/events"
    tags = ["events"]

    @get("/", operation_id="ListEvents", guards=[requires("CanViewAuditLog")])
    def list_events(
        self, event_log: EventLogDep, principal: Caller, after: After = 0, limit: Limit = 100
    ) -> EventPage:
        """Page through the organization's events in log order (owners and admins)."""
        events, position = read_log(
            event_log, after=after, limit=limit, organization_id=principal.organization_id
        )
        return EventPage(
            items=[
                LoggedEventOut(
                    id=e.id,
                    type=e.type,
                    aggregate_id=e.aggregate_id,
                    aggregate_version=e.aggregate_version,
                    organization_id=e.organization_id,
                    actor=e.actor,
                    time=jsonable(e.time),
                    position=e.position,
                    data=e.data,
                )
                for e in events
            ],
            next=position,
        )
