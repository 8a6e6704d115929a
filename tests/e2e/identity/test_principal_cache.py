"""The principal cache is exact: what a token resolves to is read once and kept, and any
change to the identity views (a role removed, a member disabled or removed, a team role
changed) is refused or granted on the very next request, however the change was made."""

from __future__ import annotations

import uuid

import httpx

from sailplane.system import System
from tests.conftest import Org, add_member_with_token, http_client


def new_team(client: httpx.Client) -> httpx.Response:
    return client.post("/org/teams", json={"name": f"c-{uuid.uuid4().hex[:6]}"})


def test_a_kept_principal_is_used_while_the_identity_views_stay_unchanged(
    api: str, system: System, org: Org
) -> None:
    member_id, token = add_member_with_token(system, org, ["MEMBER"])
    with http_client(api, token) as member:
        assert member.get("/me").status_code == 200
        # Taken out of the view behind the log's back (no event, no view position moves):
        # the kept principal still answers, so the second request did not read the views.
        with system.pool.connection() as conn:
            conn.execute("DELETE FROM api_keys WHERE principal_id = %s", (member_id,))
        assert member.get("/me").status_code == 200


def test_a_removed_role_is_refused_on_the_very_next_request(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    member_id, token = add_member_with_token(system, org, ["ADMIN"])
    with http_client(api, token) as member:
        assert new_team(member).status_code == 201
        assert new_team(member).status_code == 201
        demoted = client.put(f"/org/members/{member_id}/roles", json={"roleIds": ["MEMBER"]})
        assert demoted.status_code == 204, demoted.text
        assert new_team(member).status_code == 403


def test_a_disabled_member_is_refused_on_the_very_next_request(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    member_id, token = add_member_with_token(system, org, ["MEMBER"])
    with http_client(api, token) as member:
        assert member.get("/me").status_code == 200
        assert client.patch(f"/org/members/{member_id}", json={"isEnabled": False}).is_success
        refused = member.get("/me")
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_token"
        assert client.patch(f"/org/members/{member_id}", json={"isEnabled": True}).is_success
        assert member.get("/me").status_code == 200


def test_a_change_written_elsewhere_is_seen_once_the_views_hold_it(
    api: str, system: System, org: Org
) -> None:
    """As when another replica made the change: no HTTP write of this server saw it."""
    member_id, token = add_member_with_token(system, org, ["MEMBER"])
    with http_client(api, token) as member:
        assert member.get("/me").status_code == 200
        system.wait_for_views(system.identity.commands.remove_member(member_id, by=org.owner))
        assert member.get("/me").status_code == 401


def test_a_team_role_taken_away_is_refused_on_the_very_next_request(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    lead, token = add_member_with_token(system, org, ["MEMBER"])
    newcomer, _ = add_member_with_token(system, org, ["MEMBER"])
    team = new_team(client).json()["team"]["id"]
    added = client.post(f"/org/teams/{team}/members/{lead}", json={"roleIds": ["TEAMADMIN"]})
    assert added.status_code == 201, added.text
    with http_client(api, token) as admin:
        assert admin.post(f"/org/teams/{team}/members/{newcomer}", json={}).status_code == 201
        assert admin.delete(f"/org/teams/{team}/members/{newcomer}").status_code == 204
        demoted = client.put(
            f"/org/teams/{team}/members/{lead}/roles", json={"roleIds": ["TEAMMEMBER"]}
        )
        assert demoted.status_code == 204
        assert admin.post(f"/org/teams/{team}/members/{newcomer}", json={}).status_code == 403
