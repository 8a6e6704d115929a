"""The `teams` group of the LakeSail API, endpoint by endpoint, over HTTP."""

from __future__ import annotations

import uuid

import httpx

from sailplane.system import System
from tests.conftest import Org, add_member_with_token


def _name() -> str:
    return f"team-{uuid.uuid4().hex[:8]}"


def test_create_describe_update_delete_a_team(client: httpx.Client, org: Org) -> None:
    created = client.post("/org/teams", json={"name": "Analytics", "organizationId": org.id})
    assert created.status_code == 201
    body = created.json()
    team = body["team"]
    assert body["memberCount"] == 0
    assert set(team) == {
        "id",
        "organizationId",
        "name",
        "createdAt",
        "createdBy",
        "updatedAt",
        "updatedBy",
        "defaultRoleId",
    }
    assert team["organizationId"] == org.id
    assert team["createdBy"] == org.owner_member_id
    assert team["defaultRoleId"] == "TEAMMEMBER"
    assert team["createdAt"].endswith("Z")

    described = client.get(f"/org/teams/{team['id']}").json()
    assert described == body

    updated = client.patch(
        f"/org/teams/{team['id']}", json={"name": "Analytics EU", "defaultRoleId": "TEAMADMIN"}
    )
    assert updated.status_code == 200
    assert updated.json()["team"]["name"] == "Analytics EU"
    assert updated.json()["team"]["defaultRoleId"] == "TEAMADMIN"
    assert updated.json()["team"]["updatedAt"] >= team["updatedAt"]

    assert client.delete(f"/org/teams/{team['id']}").status_code == 204
    assert client.get(f"/org/teams/{team['id']}").status_code == 404
    assert client.delete(f"/org/teams/{team['id']}").status_code == 404


def test_team_names_are_unique_per_organization_case_insensitively(client: httpx.Client) -> None:
    name = _name()
    assert client.post("/org/teams", json={"name": name}).status_code == 201
    duplicate = client.post("/org/teams", json={"name": name.upper()})
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "team_name_taken"


def test_a_deleted_or_renamed_teams_name_can_be_used_again(client: httpx.Client) -> None:
    name = _name()
    first = client.post("/org/teams", json={"name": name}).json()["team"]["id"]
    client.patch(f"/org/teams/{first}", json={"name": name + "-renamed"})
    assert client.post("/org/teams", json={"name": name}).status_code == 201
    taken = client.patch(f"/org/teams/{first}", json={"name": name})
    assert taken.status_code == 409
    client.delete(f"/org/teams/{first}")
    assert client.post("/org/teams", json={"name": name + "-renamed"}).status_code == 201


def test_organization_id_of_another_organization_is_404(client: httpx.Client) -> None:
    assert (
        client.post(
            "/org/teams", json={"name": _name(), "organizationId": "OTHERORG01"}
        ).status_code
        == 404
    )


def test_team_membership_lifecycle(client: httpx.Client, system: System, org: Org) -> None:
    team = client.post("/org/teams", json={"name": _name()}).json()["team"]
    member_id, _ = add_member_with_token(system, org, ["MEMBER"])

    added = client.post(f"/org/teams/{team['id']}/members/{member_id}", json={})
    assert added.status_code == 201
    membership = added.json()
    assert membership["memberId"] == member_id
    assert membership["teamId"] == team["id"]
    assert membership["isAutomatic"] is False

    again = client.post(f"/org/teams/{team['id']}/members/{member_id}", json={})
    assert again.status_code == 409

    owner_added = client.post(
        f"/org/teams/{team['id']}/members/{org.owner_member_id}", json={"roleIds": ["TEAMADMIN"]}
    )
    assert owner_added.status_code == 201
    assert client.get(f"/org/teams/{team['id']}").json()["memberCount"] == 2

    listing = client.get(f"/org/teams/{team['id']}/members", params={"sortBy": "name"}).json()
    assert listing["total"] == 2
    rows = {row["memberId"]: row for row in listing["items"]}
    assert rows[member_id]["teamRoleIds"] == ["TEAMMEMBER"]  # the team's default role
    assert rows[member_id]["roleIds"] == ["MEMBER"]
    assert rows[org.owner_member_id]["teamRoleIds"] == ["TEAMADMIN"]
    included = listing["included"]
    assert {m["id"] for m in included["members"]} == {member_id, org.owner_member_id}
    assert {u["user"]["id"] for u in included["users"]} == {r["userId"] for r in listing["items"]}
    assert {r["role"]["id"] for r in included["roles"]} == {"MEMBER", "OWNER"}
    assert {r["role"]["id"] for r in included["teamRoles"]} == {"TEAMADMIN", "TEAMMEMBER"}

    replaced = client.put(
        f"/org/teams/{team['id']}/members/{member_id}/roles", json={"roleIds": ["TEAMADMIN"]}
    )
    assert replaced.status_code == 204
    listing = client.get(f"/org/teams/{team['id']}/members").json()
    assert {r["memberId"]: r["teamRoleIds"] for r in listing["items"]}[member_id] == ["TEAMADMIN"]

    empty = client.put(f"/org/teams/{team['id']}/members/{member_id}/roles", json={"roleIds": []})
    assert empty.status_code == 422
    unknown_role = client.put(
        f"/org/teams/{team['id']}/members/{member_id}/roles", json={"roleIds": ["OWNER"]}
    )
    assert unknown_role.status_code == 422

    assert client.delete(f"/org/teams/{team['id']}/members/{member_id}").status_code == 204
    assert client.delete(f"/org/teams/{team['id']}/members/{member_id}").status_code == 404
    not_in_team = client.put(
        f"/org/teams/{team['id']}/members/{member_id}/roles", json={"roleIds": ["TEAMADMIN"]}
    )
    assert not_in_team.status_code == 404
    assert client.get(f"/org/teams/{team['id']}").json()["memberCount"] == 1


def test_only_organization_members_can_join_a_team(client: httpx.Client) -> None:
    team = client.post("/org/teams", json={"name": _name()}).json()["team"]
    response = client.post(f"/org/teams/{team['id']}/members/NOSUCHMEMB", json={})
    assert response.status_code == 404
    assert response.json()["code"] == "member_not_found"


def test_a_member_may_list_teams_but_not_manage_them(
    client: httpx.Client, member_client: httpx.Client
) -> None:
    team = client.post("/org/teams", json={"name": _name()}).json()["team"]
    assert member_client.get("/org/teams").status_code == 200
    assert member_client.get(f"/org/teams/{team['id']}").status_code == 200
    forbidden = member_client.post("/org/teams", json={"name": _name()})
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "forbidden"
    assert member_client.patch(f"/org/teams/{team['id']}", json={"name": "x"}).status_code == 403
    assert member_client.delete(f"/org/teams/{team['id']}").status_code == 403


def test_deleting_a_team_removes_its_member_assignments(
    client: httpx.Client, system: System, org: Org
) -> None:
    team = client.post("/org/teams", json={"name": _name()}).json()["team"]
    member_id, _ = add_member_with_token(system, org, ["MEMBER"])
    client.post(f"/org/teams/{team['id']}/members/{member_id}", json={})
    client.delete(f"/org/teams/{team['id']}")
    assert system.identity.teams.teams_of_member(org.id, member_id) == []
    assert client.get(f"/org/teams/{team['id']}/members").status_code == 404
