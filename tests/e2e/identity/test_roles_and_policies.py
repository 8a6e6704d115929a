"""Permissions, roles and organization policies over HTTP, and the one permission check
that reads them all (roles, policies of the member and of the member's teams)."""

from __future__ import annotations

import uuid

import httpx

from sailplane.domain.access import ORGANIZATION_ROLES, PERMISSIONS, TEAM_ROLES
from sailplane.system import System
from tests.conftest import Org, add_member_with_token, found_org, http_client


def test_permissions_are_public_and_list_every_enforced_permission(api: str) -> None:
    with httpx.Client(base_url=api + "/api/v1") as anonymous:
        body = anonymous.get("/auth/permissions").json()
    assert set(body) == {"items"}
    assert [p["relation"] for p in body["items"]] == [p.relation for p in PERMISSIONS]
    first = body["items"][0]
    assert set(first) == {"relation", "description", "validObjectTypes", "systemOnly"}
    assert isinstance(first["validObjectTypes"], list) and isinstance(
        first["validObjectTypes"][0], str
    )
    assert any(p["systemOnly"] for p in body["items"])


def test_every_route_declares_one_catalog_permission_or_opts_out_of_auth(
    system: System,
) -> None:
    from sailplane.domain.access import PERMISSION_NAMES
    from sailplane.http.app import create_app
    from sailplane.http.auth import RUN_TOKEN_ROUTE

    app = create_app(system)
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if getattr(handler, "http_methods", None) == {"OPTIONS"}:
                continue  # the framework's own CORS preflight answer
            names = [getattr(g, "func", g).__name__ for g in handler.resolve_guards()]
            required = [n.removeprefix("requires_") for n in names if n.startswith("requires_")]
            public = handler.opt.get("exclude_from_auth", False) or route.path.startswith("/schema")
            if handler.opt.get(RUN_TOKEN_ROUTE):  # the work's own routes: its run token only
                assert not required, f"{route.path} takes a run token, not {required}"
                continue
            assert public or len(required) == 1, f"{route.path} declares {required}"
            assert set(required) <= PERMISSION_NAMES


def test_organization_roles_list_and_describe(client: httpx.Client, org: Org) -> None:
    listed = client.get("/org/roles").json()
    assert listed["total"] == 3
    assert [r["role"]["name"] for r in listed["items"]] == ["Admin", "Member", "Owner"]
    owner = next(r for r in listed["items"] if r["role"]["id"] == "OWNER")
    assert owner["memberCount"] == 1
    assert owner["permissionCount"] == len(ORGANIZATION_ROLES["OWNER"].permissions)
    assert set(owner["role"]) == {
        "id",
        "organizationId",
        "name",
        "description",
        "allTeams",
        "breakGlass",
        "createdAt",
        "createdBy",
        "updatedAt",
        "updatedBy",
    }
    searched = client.get("/org/roles", params={"search": "owner"}).json()
    assert [r["role"]["id"] for r in searched["items"]] == ["OWNER"]
    descending = client.get("/org/roles", params={"sortDirection": "desc", "limit": 2}).json()
    assert [r["role"]["name"] for r in descending["items"]] == ["Owner", "Member"]
    assert descending["marker"] is not None
    rest = client.get(
        "/org/roles", params={"sortDirection": "desc", "limit": 2, "marker": descending["marker"]}
    ).json()
    assert [r["role"]["name"] for r in rest["items"]] == ["Admin"]
    assert rest["marker"] is None

    detail = client.get("/org/roles/MEMBER").json()
    assert set(detail) == {"item", "included"}
    item = detail["item"]
    assert item["roleId"] == "MEMBER"
    assert set(item["permissionIds"]) == ORGANIZATION_ROLES["MEMBER"].permissions
    assert set(item["bundleIds"]) == set(item["bundlePermissions"])
    assert "VIEWER" in item["bundleIds"]
    assert {p["relation"] for p in detail["included"]["permissions"]} == set(item["permissionIds"])
    assert [b["id"] for b in detail["included"]["bundles"]] == item["bundleIds"]
    assert detail["included"]["roles"][0]["role"]["id"] == "MEMBER"
    assert client.get("/org/roles/TEAMADMIN").status_code == 404
    missing = client.get("/org/roles/NOSUCH")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Role NOSUCH was not found.", "code": "role_not_found"}


def test_team_roles_list_and_describe(client: httpx.Client) -> None:
    listed = client.get("/org/team-roles").json()
    assert listed["total"] == 2
    assert [r["role"]["id"] for r in listed["items"]] == ["TEAMADMIN", "TEAMMEMBER"]
    assert "allTeams" not in listed["items"][0]["role"]
    detail = client.get("/org/team-roles/TEAMMEMBER").json()
    assert set(detail["item"]["permissionIds"]) == TEAM_ROLES["TEAMMEMBER"].permissions
    missing = client.get("/org/team-roles/OWNER")
    assert missing.status_code == 404
    assert missing.json()["code"] == "team_role_not_found"


def test_a_policy_grants_a_member_an_organization_permission(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    member_id, token = add_member_with_token(system, org, ["MEMBER"])
    with http_client(api, token) as member:
        assert (
            member.post("/org/teams", json={"name": f"p-{uuid.uuid4().hex[:6]}"}).status_code == 403
        )
        set_ = client.put(f"/org/policies/{member_id}", json={"permissions": ["CanManageTeams"]})
        assert set_.status_code == 200
        body = set_.json()
        assert body["principal"] == {"type": "member", "id": member_id}
        assert body["permissions"] == ["CanManageTeams"]
        assert set(body) == {"principal", "permissions", "createdAt", "updatedAt"}
        # The very next request sees the grant.
        assert (
            member.post("/org/teams", json={"name": f"p-{uuid.uuid4().hex[:6]}"}).status_code == 201
        )
        assert client.get(f"/org/policies/{member_id}").json() == body
        assert member_id in [
            p["principal"]["id"] for p in client.get("/org/policies").json()["items"]
        ]
        assert client.delete(f"/org/policies/{member_id}").status_code == 204
        assert (
            member.post("/org/teams", json={"name": f"p-{uuid.uuid4().hex[:6]}"}).status_code == 403
        )
        assert client.get(f"/org/policies/{member_id}").status_code == 404
        assert client.delete(f"/org/policies/{member_id}").status_code == 404


def test_a_teams_policy_applies_to_its_members(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    member_id, token = add_member_with_token(system, org, ["MEMBER"])
    team = client.post("/org/teams", json={"name": f"ops-{uuid.uuid4().hex[:6]}"}).json()["team"][
        "id"
    ]
    policy = client.put(f"/org/policies/{team}", json={"permissions": ["CanViewAuditLog"]}).json()
    assert policy["principal"] == {"type": "team", "id": team}
    with http_client(api, token) as member:
        assert member.get("/events").status_code == 403
        client.post(f"/org/teams/{team}/members/{member_id}", json={})
        assert member.get("/events").status_code == 200
        client.delete(f"/org/teams/{team}/members/{member_id}")
        assert member.get("/events").status_code == 403


def test_policies_are_checked(api: str, system: System, org: Org, client: httpx.Client) -> None:
    member_id, _ = add_member_with_token(system, org, ["MEMBER"])
    unknown = client.put(f"/org/policies/{member_id}", json={"permissions": ["CanFly"]})
    assert unknown.status_code == 422
    system_only = client.put(f"/org/policies/{member_id}", json={"permissions": ["CanActAsSystem"]})
    assert system_only.status_code == 422
    nobody = client.put("/org/policies/NOSUCHTHING", json={"permissions": []})
    assert nobody.status_code == 404
    stranger = found_org(system, "Policy Stranger")
    with http_client(api, stranger.token) as other:
        assert other.put(f"/org/policies/{member_id}", json={"permissions": []}).status_code == 404
    # An admin cannot grant what admins do not hold.
    _, admin_token = add_member_with_token(system, org, ["ADMIN"])
    with http_client(api, admin_token) as admin:
        escalate = admin.put(
            f"/org/policies/{member_id}", json={"permissions": ["CanManageIdentityProviders"]}
        )
        assert escalate.status_code == 403
        assert (
            admin.put(
                f"/org/policies/{member_id}", json={"permissions": ["CanManageTeams"]}
            ).status_code
            == 200
        )


def test_policy_listing_walks_with_a_marker(api: str, system: System) -> None:
    fresh = found_org(system, "Policies Paging")
    with http_client(api, fresh.token) as c:
        teams = [
            c.post("/org/teams", json={"name": f"t{i}"}).json()["team"]["id"] for i in range(5)
        ]
        for team in teams:
            c.put(f"/org/policies/{team}", json={"permissions": ["CanViewJobs"]})
        seen, marker = [], None
        while True:
            page = c.get(
                "/org/policies", params={"limit": 2, **({"marker": marker} if marker else {})}
            ).json()
            seen += [p["principal"]["id"] for p in page["items"]]
            marker = page["marker"]
            if marker is None:
                break
        assert sorted(seen) == sorted(teams)
        # A deleted team's policy is gone from the list.
        c.delete(f"/org/teams/{teams[0]}")
        assert teams[0] not in [
            p["principal"]["id"] for p in c.get("/org/policies").json()["items"]
        ]
