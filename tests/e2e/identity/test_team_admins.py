"""Team roles count in the one permission check: a Team Admin manages their own team's
members (and only that team's), a Team Member does not."""

from __future__ import annotations

import uuid

import httpx

from sailplane.system import System
from tests.conftest import Org, add_member_with_token, http_client


def _team(client: httpx.Client) -> str:
    return client.post("/org/teams", json={"name": f"t-{uuid.uuid4().hex[:6]}"}).json()["team"][
        "id"
    ]


def test_a_team_admin_manages_the_members_of_their_team_only(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    lead, lead_token = add_member_with_token(system, org, ["MEMBER"])
    plain, plain_token = add_member_with_token(system, org, ["MEMBER"])
    newcomer, _ = add_member_with_token(system, org, ["MEMBER"])
    team, other_team = _team(client), _team(client)
    client.post(f"/org/teams/{team}/members/{lead}", json={"roleIds": ["TEAMADMIN"]})
    client.post(f"/org/teams/{team}/members/{plain}", json={"roleIds": ["TEAMMEMBER"]})

    with http_client(api, lead_token) as admin, http_client(api, plain_token) as member:
        assert member.post(f"/org/teams/{team}/members/{newcomer}", json={}).status_code == 403
        assert admin.post(f"/org/teams/{team}/members/{newcomer}", json={}).status_code == 201
        assert (
            admin.put(
                f"/org/teams/{team}/members/{newcomer}/roles", json={"roleIds": ["TEAMADMIN"]}
            ).status_code
            == 204
        )
        assert admin.delete(f"/org/teams/{team}/members/{newcomer}").status_code == 204
        # Another team, or the team itself, is not theirs to manage.
        assert admin.post(f"/org/teams/{other_team}/members/{newcomer}", json={}).status_code == 403
        assert admin.patch(f"/org/teams/{team}", json={"name": "mine now"}).status_code == 403
        assert admin.delete(f"/org/teams/{team}").status_code == 403
        # Demoted to Team Member, the next request is refused.
        client.put(f"/org/teams/{team}/members/{lead}/roles", json={"roleIds": ["TEAMMEMBER"]})
        assert admin.post(f"/org/teams/{team}/members/{newcomer}", json={}).status_code == 403
