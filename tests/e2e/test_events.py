"""`GET /api/v1/events`: the organization's event log, owner/admin only."""

from __future__ import annotations

import httpx

from sailplane.system import System
from tests.conftest import Org, found_org, http_client


def _walk(c: httpx.Client, limit: int) -> list[dict]:
    events, after = [], 0
    while True:
        body = c.get("/events", params={"after": after, "limit": limit}).json()
        events += body["items"]
        if body["next"] == after:
            return events
        after = body["next"]


def test_events_page_by_position_and_carry_the_envelope(client: httpx.Client, org: Org) -> None:
    team = client.post("/org/teams", json={"name": "Audited"}).json()["team"]
    client.patch(f"/org/teams/{team['id']}", json={"name": "Audited 2"})
    events = _walk(client, limit=2)
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(positions) == len(set(positions))
    assert all(e["organizationId"] == org.id for e in events)
    team_events = [e for e in events if e["aggregateId"] == team["id"]]
    assert [e["type"] for e in team_events] == [
        "sailplane.identity.Team.Created",
        "sailplane.identity.Team.Updated",
    ]
    assert [e["aggregateVersion"] for e in team_events] == [1, 2]
    created = team_events[0]
    assert created["actor"] == f"member:{org.owner_member_id}"
    assert created["data"] == {"name": "Audited", "default_role_id": "TEAMMEMBER"}
    assert created["time"].endswith("Z")
    assert len({e["id"] for e in events}) == len(events)
    assert team_events[1]["data"] == {"changes": {"name": "Audited 2"}}


def test_events_of_other_organizations_are_not_shown(
    api: str, client: httpx.Client, system: System
) -> None:
    other = found_org(system, "Other")
    with http_client(api, other.token) as c:
        c.post("/org/teams", json={"name": "Secret"})
    assert all(e["data"].get("name") != "Secret" for e in _walk(client, limit=100))


def test_events_are_for_owners_and_admins_only(member_client: httpx.Client) -> None:
    response = member_client.get("/events")
    assert response.status_code == 403


def test_events_limit_is_bounded(client: httpx.Client) -> None:
    assert client.get("/events", params={"limit": 101}).status_code == 400
    assert client.get("/events", params={"after": -1}).status_code == 400
    assert client.get("/events", params={"limit": 0}).json()["items"] == []
