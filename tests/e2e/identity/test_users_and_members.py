"""Users and members over HTTP: CRUD, passwords, search, roles, and the last Owner rule."""

from __future__ import annotations

import json
import threading
import uuid

import httpx

from sailplane.projections.query import Page, Sort
from sailplane.system import System
from tests.conftest import Org, found_org, http_client
from tests.e2e.identity.conftest import person, sign_in, signed_in_client

USER_FIELDS = {
    "id",
    "email",
    "givenName",
    "familyName",
    "displayName",
    "createdAt",
    "createdBy",
    "updatedAt",
    "updatedBy",
}


def _email() -> str:
    return f"user-{uuid.uuid4().hex[:8]}@example.com"


# --- users ---------------------------------------------------------------------------------


def test_create_describe_update_list_and_delete_a_user(client: httpx.Client, org: Org) -> None:
    email = _email()
    created = client.post(
        "/org/users", json={"email": email.upper(), "givenName": "Ada", "familyName": "Lovelace"}
    )
    assert created.status_code == 201
    user = created.json()
    assert set(user) == USER_FIELDS
    assert user["email"] == email  # emails are kept lower-case
    assert user["displayName"] == "Ada Lovelace"
    assert user["createdBy"] == org.owner_member_id

    assert client.get(f"/org/users/{user['id']}").json() == user
    # The new user is a Member of the organization.
    members = client.get(
        "/org/members", params={"filter": json.dumps({"userId": user["id"]})}
    ).json()
    assert members["total"] == 1
    assert members["items"][0]["roleIds"] == ["MEMBER"]

    new_email = _email()
    updated = client.patch(
        f"/org/users/{user['id']}", json={"displayName": "Countess", "email": new_email}
    )
    assert updated.status_code == 200
    assert updated.json()["displayName"] == "Countess"
    assert updated.json()["email"] == new_email
    assert updated.json()["updatedAt"] >= user["updatedAt"]

    listed = client.get("/org/users", params={"limit": 100}).json()
    assert set(listed) == {"items", "marker"}
    assert user["id"] in [u["id"] for u in listed["items"]]

    assert client.post("/org/users", json={"email": new_email}).status_code == 409
    assert client.delete(f"/org/users/{user['id']}").status_code == 204
    assert client.get(f"/org/users/{user['id']}").status_code == 404
    # The account is gone with its last membership: its email is free again.
    assert client.post("/org/users", json={"email": new_email}).status_code == 201


def test_users_list_walks_with_a_marker(api: str, system: System) -> None:
    fresh = found_org(system, "Users Paging")
    with http_client(api, fresh.token) as c:
        for _ in range(7):
            assert c.post("/org/users", json={"email": _email()}).status_code == 201
        seen, marker = [], None
        while True:
            page = c.get(
                "/org/users", params={"limit": 3, **({"marker": marker} if marker else {})}
            ).json()
            seen += [u["email"] for u in page["items"]]
            marker = page["marker"]
            if marker is None:
                break
        assert len(seen) == 8 == len(set(seen))
        assert seen == sorted(seen)


def test_invalid_user_input_is_rejected(client: httpx.Client) -> None:
    assert client.post("/org/users", json={"email": "not-an-email"}).status_code == 422
    assert client.post("/org/users", json={"email": _email(), "password": "x"}).status_code == 400
    assert client.get("/org/users/NOSUCHUSER").status_code == 404


def test_a_user_changes_their_password_with_the_current_one(
    api: str, system: System, org: Org
) -> None:
    who = person(system, org)
    with signed_in_client(api, who) as me, signed_in_client(api, who) as elsewhere:
        wrong = me.post(
            f"/org/users/{who.user_id}/password",
            json={"currentPassword": "nope", "newPassword": "a new password"},
        )
        assert wrong.status_code == 422
        assert wrong.json()["field"] == "currentPassword"
        short = me.post(
            f"/org/users/{who.user_id}/password",
            json={"currentPassword": who.password, "newPassword": "short"},
        )
        assert short.status_code == 422
        changed = me.post(
            f"/org/users/{who.user_id}/password",
            json={"currentPassword": who.password, "newPassword": "a new password"},
        )
        assert changed.status_code == 204
        assert me.get("/me").status_code == 200  # this login goes on
        assert elsewhere.get("/me").status_code == 401  # the others end
    assert sign_in(api, who.email, who.password).status_code == 401
    assert sign_in(api, who.email, "a new password").status_code == 200


def test_a_member_cannot_change_someone_elses_password(api: str, system: System, org: Org) -> None:
    alice, bob = person(system, org), person(system, org)
    with signed_in_client(api, alice) as a:
        response = a.post(
            f"/org/users/{bob.user_id}/password",
            json={"currentPassword": bob.password, "newPassword": "taken over!"},
        )
        assert response.status_code == 403
        assert (
            a.post("/org/users/NOSUCHUSER/password", json={"newPassword": "whatever12"}).status_code
            == 404
        )


def test_an_admin_password_reset_returns_a_temporary_password_and_ends_logins(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    who = person(system, org)
    with signed_in_client(api, who) as c:
        reset = client.post(f"/org/users/{who.user_id}/password/reset")
        assert reset.status_code == 200
        temporary = reset.json()["password"]
        assert len(temporary) >= 12
        assert c.get("/me").status_code == 401
    assert sign_in(api, who.email, who.password).status_code == 401
    assert sign_in(api, who.email, temporary).status_code == 200


def test_an_admin_cannot_reset_an_owners_password(api: str, system: System, org: Org) -> None:
    admin = person(system, org, ["ADMIN"])
    owner_user = system.identity.directory.member(org.id, org.owner_member_id)["user_id"]
    with signed_in_client(api, admin) as c:
        assert c.post(f"/org/users/{owner_user}/password/reset").status_code == 403


# --- members -------------------------------------------------------------------------------


def test_members_search_filters_pages_and_sorts(api: str, system: System) -> None:
    fresh = found_org(system, "Members Search")
    with http_client(api, fresh.token) as c:
        team = c.post("/org/teams", json={"name": "Search Team"}).json()["team"]["id"]
        ids = {}
        for name in ("Carol", "alice", "Bob", "dave"):
            member_id, _ = system.identity.commands.add_member(
                email=f"{name.lower()}-{uuid.uuid4().hex[:6]}@example.com",
                display_name=name,
                role_ids=["ADMIN"] if name == "Bob" else ["MEMBER"],
                by=fresh.owner,
            )
            ids[name] = member_id
        c.post(f"/org/teams/{team}/members/{ids['alice']}", json={"roleIds": ["TEAMADMIN"]})

        everyone = c.get("/org/members", params={"sortBy": "name"}).json()
        assert everyone["total"] == 5
        names = [m["name"] for m in everyone["included"]["members"]]
        assert names == sorted(names, key=str.lower)

        page = c.get("/org/members", params={"page": 2, "limit": 2, "sortBy": "name"}).json()
        assert [m["name"] for m in page["included"]["members"]] == names[2:4]

        search = c.get("/org/members", params={"filter": "ALI"}).json()
        assert [i["memberId"] for i in search["items"]] == [ids["alice"]]
        by_role = c.get("/org/members", params={"filter": json.dumps({"roleId": "ADMIN"})}).json()
        assert [i["memberId"] for i in by_role["items"]] == [ids["Bob"]]
        by_team = c.get("/org/members", params={"filter": json.dumps({"teamId": team})}).json()
        assert by_team["total"] == 1
        item = by_team["items"][0]
        assert item == {
            "memberId": ids["alice"],
            "userId": item["userId"],
            "roleIds": ["MEMBER"],
            "teamRoleIds": {team: ["TEAMADMIN"]},
        }
        included = by_team["included"]
        assert set(included) == {
            "members",
            "users",
            "roles",
            "teams",
            "teamRoles",
            "_entityRelations",
        }
        assert [t["team"]["id"] for t in included["teams"]] == [team]
        assert included["teams"][0]["memberCount"] == 1
        assert [r["role"]["id"] for r in included["teamRoles"]] == ["TEAMADMIN"]
        assert [r["role"]["id"] for r in included["roles"]] == ["MEMBER"]
        assert included["users"][0]["emails"][0]["email"].startswith("alice-")
        relations = included["_entityRelations"]
        assert {"memberId": ids["alice"], "organizationRoleId": "MEMBER"}.items() <= relations[
            0
        ].items()
        assert any(r.get("teamId") == team and r.get("isAutomatic") is False for r in relations)
        assert any(r.get("teamRoleId") == "TEAMADMIN" for r in relations)

        assert (
            c.get("/org/members", params={"filter": json.dumps({"colour": "x"})}).status_code == 400
        )
        assert c.get("/org/members", params={"filter": "{not json"}).status_code == 400
        assert c.get("/org/members", params={"sortBy": "age"}).status_code == 400


def test_describe_update_and_remove_a_member(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    who = person(system, org)
    described = client.get(f"/org/members/{who.member_id}")
    assert described.status_code == 200
    assert set(described.json()) == {"item", "included"}
    assert described.json()["item"]["memberId"] == who.member_id

    updated = client.patch(
        f"/org/members/{who.member_id}",
        json={"name": "Renamed", "preferences": {"theme": "dark"}},
    )
    assert updated.status_code == 200
    body = updated.json()
    assert body["name"] == "Renamed"
    assert body["preferences"] == {"theme": "dark"}
    assert body["invitationToken"] is None
    assert (
        client.patch(f"/org/members/{who.member_id}", json={"invitationToken": "x"}).status_code
        == 422
    )

    team = client.post("/org/teams", json={"name": f"t-{uuid.uuid4().hex[:6]}"}).json()["team"][
        "id"
    ]
    client.post(f"/org/teams/{team}/members/{who.member_id}", json={})
    with signed_in_client(api, who) as c:
        assert client.delete(f"/org/members/{who.member_id}").status_code == 204
        assert c.get("/me").status_code == 401  # their login ends with the membership
    assert client.get(f"/org/members/{who.member_id}").status_code == 404
    assert client.get(f"/org/teams/{team}").json()["memberCount"] == 0
    assert client.delete(f"/org/members/{who.member_id}").status_code == 404


def test_replacing_member_roles_takes_effect_on_the_next_request(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    who = person(system, org)
    with signed_in_client(api, who) as c:
        assert c.post("/org/teams", json={"name": f"x-{uuid.uuid4().hex[:6]}"}).status_code == 403
        assert (
            client.put(
                f"/org/members/{who.member_id}/roles", json={"roleIds": ["ADMIN"]}
            ).status_code
            == 204
        )
        assert c.post("/org/teams", json={"name": f"x-{uuid.uuid4().hex[:6]}"}).status_code == 201
    assert (
        client.put(f"/org/members/{who.member_id}/roles", json={"roleIds": []}).status_code == 422
    )
    assert (
        client.put(f"/org/members/{who.member_id}/roles", json={"roleIds": ["KING"]}).status_code
        == 422
    )


def test_the_last_owner_cannot_be_removed_demoted_or_disabled(
    client: httpx.Client, org: Org, system: System
) -> None:
    demote = client.put(f"/org/members/{org.owner_member_id}/roles", json={"roleIds": ["ADMIN"]})
    assert demote.status_code == 409
    assert demote.json()["code"] == "last_owner"
    assert client.delete(f"/org/members/{org.owner_member_id}").status_code == 409
    assert (
        client.patch(f"/org/members/{org.owner_member_id}", json={"isEnabled": False}).status_code
        == 409
    )
    owner_user = system.identity.directory.member(org.id, org.owner_member_id)["user_id"]
    assert client.delete(f"/org/users/{owner_user}").status_code == 409

    # With a second owner, the first may step down.
    second, _ = system.identity.commands.add_member(
        email=_email(), display_name="Second", role_ids=["OWNER"], by=org.owner
    )
    system.wait_for_views(
        system.identity.commands.replace_member_roles(second, ["OWNER", "ADMIN"], by=org.owner)
    )
    assert (
        client.put(
            f"/org/members/{org.owner_member_id}/roles", json={"roleIds": ["ADMIN"]}
        ).status_code
        == 204
    )
    with_second = client.get(
        "/org/members", params={"filter": json.dumps({"roleId": "OWNER"})}
    ).json()
    assert [i["memberId"] for i in with_second["items"]] == [second]


def test_two_owners_demoting_each_other_at_once_leave_one_owner(api: str, system: System) -> None:
    fresh = found_org(system, "Owner Race")
    second, _ = system.identity.commands.add_member(
        email=_email(), display_name="Second", role_ids=["OWNER"], by=fresh.owner
    )
    token, position = system.identity.commands.issue_api_key(
        member_id=second, name="k", by=fresh.owner
    )
    system.wait_for_views(position)
    results: dict[str, int] = {}
    barrier = threading.Barrier(2)

    def demote(name: str, token: str, target: str) -> None:
        with http_client(api, token) as c:
            barrier.wait()
            results[name] = c.put(
                f"/org/members/{target}/roles", json={"roleIds": ["ADMIN"]}
            ).status_code

    threads = [
        threading.Thread(target=demote, args=("first", fresh.token, second)),
        threading.Thread(target=demote, args=("second", token, fresh.owner_member_id)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) in ([204, 409], [204, 403])
    total, _, _ = system.identity.directory.search_members(
        fresh.id, {"roleId": "OWNER"}, Page(), Sort()
    )
    assert total == 1


def test_only_an_owner_may_make_an_owner(api: str, system: System, org: Org) -> None:
    admin = person(system, org, ["ADMIN"])
    target = person(system, org)
    with signed_in_client(api, admin) as c:
        response = c.put(f"/org/members/{target.member_id}/roles", json={"roleIds": ["OWNER"]})
        assert response.status_code == 403
        assert response.json()["code"] == "owner_required"
        assert (
            c.put(f"/org/members/{target.member_id}/roles", json={"roleIds": ["ADMIN"]}).status_code
            == 204
        )


def test_an_organization_cannot_change_the_credentials_of_a_user_shared_with_another(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    """Else an admin of one organization could take over the account in every other."""
    who = person(system, org)
    other = found_org(system, "Sharing Org")
    system.wait_for_views(
        system.identity.commands.add_member(
            email=who.email, display_name="P", role_ids=["MEMBER"], by=other.owner
        )[1]
    )
    for response in (
        client.post(f"/org/users/{who.user_id}/password/reset"),
        client.delete(f"/org/users/{who.user_id}/mfa"),
        client.post(f"/org/users/{who.user_id}/password", json={"newPassword": "hijacked!!"}),
        client.patch(f"/org/users/{who.user_id}", json={"email": _email()}),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "user_in_other_organizations"
    # Names are the organization's to fix; the user still changes their own credentials.
    assert (
        client.patch(f"/org/users/{who.user_id}", json={"displayName": "P. Person"}).status_code
        == 200
    )
    with signed_in_client(api, who) as me:
        assert (
            me.post(
                f"/org/users/{who.user_id}/password",
                json={"currentPassword": who.password, "newPassword": "my own choice"},
            ).status_code
            == 204
        )
    # Deleting removes only this organization's membership; the account goes on elsewhere.
    assert client.delete(f"/org/users/{who.user_id}").status_code == 204
    assert sign_in(api, who.email, "my own choice", organizationId=other.id).status_code == 200
