"""Random sequences of team create/delete, team member add/remove, team and organization role
changes and policy grants, over HTTP, keep `/me/teams`, the member listings, the policies
and every member's effective permission equal to a model (hypothesis stateful testing)."""

from __future__ import annotations

import uuid
from typing import ClassVar

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from sailplane.system import System
from tests.conftest import add_member_with_token, found_org, http_client

TEAM_NAMES = ["alpha", "Alpha", "beta", "gamma"]
TEAM_ROLE_SETS = st.lists(st.sampled_from(["TEAMADMIN", "TEAMMEMBER"]), max_size=2, unique=True)
ORG_ROLE_SETS = st.lists(st.sampled_from(["MEMBER", "ADMIN"]), max_size=2, unique=True)
GRANTS = st.lists(st.sampled_from(["CanViewAuditLog", "CanViewJobs"]), max_size=2, unique=True)


class AccessModel(RuleBasedStateMachine):
    api: ClassVar[str]
    system: ClassVar[System]

    teams = Bundle("teams")

    @initialize()
    def organization(self) -> None:
        org = found_org(self.system, "Model Org")
        self.owner = http_client(self.api, org.token)
        self.clients: dict[str, httpx.Client] = {}
        self.org_roles: dict[str, list[str]] = {}
        for _ in range(3):
            member_id, token = add_member_with_token(self.system, org, ["MEMBER"])
            self.clients[member_id] = http_client(self.api, token)
            self.org_roles[member_id] = ["MEMBER"]
        self.owner_id = org.owner_member_id
        self.team_names: dict[str, str] = {}  # live team id -> name
        self.team_members: dict[str, dict[str, list[str]]] = {}  # team -> member -> roles
        self.policies: dict[str, list[str]] = {}  # principal id -> permissions

    def teardown(self) -> None:
        for c in [self.owner, *self.clients.values()]:
            c.close()

    @property
    def member_ids(self) -> list[str]:
        return sorted(self.clients)

    # --- rules --------------------------------------------------------------------------

    @rule(target=teams, name=st.sampled_from(TEAM_NAMES))
    def create_team(self, name: str) -> str:
        response = self.owner.post("/org/teams", json={"name": name})
        if name.lower() in {n.lower() for n in self.team_names.values()}:
            assert response.status_code == 409
            return f"NOTCREATED{uuid.uuid4().hex[:6].upper()}"
        assert response.status_code == 201, response.text
        team_id = response.json()["team"]["id"]
        self.team_names[team_id] = name
        self.team_members[team_id] = {}
        return team_id

    @rule(team=teams)
    def delete_team(self, team: str) -> None:
        response = self.owner.delete(f"/org/teams/{team}")
        if team in self.team_names:
            assert response.status_code == 204
            del self.team_names[team]
            del self.team_members[team]
            self.policies.pop(team, None)
        else:
            assert response.status_code == 404

    @rule(team=teams, index=st.integers(0, 2), roles=TEAM_ROLE_SETS)
    def add_to_team(self, team: str, index: int, roles: list[str]) -> None:
        member = self.member_ids[index]
        response = self.owner.post(f"/org/teams/{team}/members/{member}", json={"roleIds": roles})
        if team not in self.team_names:
            assert response.status_code == 404
        elif member in self.team_members[team]:
            assert response.status_code == 409
        else:
            assert response.status_code == 201, response.text
            self.team_members[team][member] = sorted(roles) or ["TEAMMEMBER"]

    @rule(team=teams, index=st.integers(0, 2))
    def remove_from_team(self, team: str, index: int) -> None:
        member = self.member_ids[index]
        response = self.owner.delete(f"/org/teams/{team}/members/{member}")
        if team in self.team_names and member in self.team_members[team]:
            assert response.status_code == 204
            del self.team_members[team][member]
        else:
            assert response.status_code == 404

    @rule(team=teams, index=st.integers(0, 2), roles=TEAM_ROLE_SETS)
    def replace_team_roles(self, team: str, index: int, roles: list[str]) -> None:
        member = self.member_ids[index]
        response = self.owner.put(
            f"/org/teams/{team}/members/{member}/roles", json={"roleIds": roles}
        )
        if team not in self.team_names or member not in self.team_members[team]:
            assert response.status_code == 404
        elif not roles:
            assert response.status_code == 422
        else:
            assert response.status_code == 204
            self.team_members[team][member] = sorted(roles)

    @rule(index=st.integers(0, 2), roles=ORG_ROLE_SETS)
    def replace_org_roles(self, index: int, roles: list[str]) -> None:
        member = self.member_ids[index]
        response = self.owner.put(f"/org/members/{member}/roles", json={"roleIds": roles})
        if not roles:
            assert response.status_code == 422
        else:
            assert response.status_code == 204
            self.org_roles[member] = sorted(roles)

    @rule(team=teams, permissions=GRANTS)
    def grant_team(self, team: str, permissions: list[str]) -> None:
        response = self.owner.put(f"/org/policies/{team}", json={"permissions": permissions})
        if team in self.team_names:
            assert response.status_code == 200
            self.policies[team] = sorted(permissions)
        else:
            assert response.status_code == 404

    @rule(index=st.integers(0, 2), permissions=GRANTS)
    def grant_member(self, index: int, permissions: list[str]) -> None:
        member = self.member_ids[index]
        assert (
            self.owner.put(f"/org/policies/{member}", json={"permissions": permissions}).status_code
            == 200
        )
        self.policies[member] = sorted(permissions)

    @rule(index=st.integers(0, 3), team=teams)
    def revoke_policy(self, index: int, team: str) -> None:
        principal = team if index == 3 else self.member_ids[index]
        response = self.owner.delete(f"/org/policies/{principal}")
        if principal in self.policies:
            assert response.status_code == 204
            del self.policies[principal]
        else:
            assert response.status_code == 404

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def my_teams_match(self) -> None:
        for member, c in self.clients.items():
            expected = sorted(t for t, members in self.team_members.items() if member in members)
            assert sorted(t["id"] for t in c.get("/me/teams").json()["items"]) == expected

    @invariant()
    def member_listing_matches(self) -> None:
        body = self.owner.get("/org/members").json()
        seen = {i["memberId"]: i for i in body["items"]}
        assert set(seen) == {*self.clients, self.owner_id}
        for member in self.clients:
            assert seen[member]["roleIds"] == self.org_roles[member]
            expected = {
                t: roles
                for t, m in self.team_members.items()
                for mm, roles in m.items()
                if mm == member
            }
            assert seen[member]["teamRoleIds"] == expected
        for team, members in self.team_members.items():
            listing = self.owner.get(f"/org/teams/{team}/members").json()
            assert {i["memberId"]: i["teamRoleIds"] for i in listing["items"]} == members
            assert self.owner.get(f"/org/teams/{team}").json()["memberCount"] == len(members)

    @invariant()
    def policies_and_effective_permissions_match(self) -> None:
        listed = {
            p["principal"]["id"]: p["permissions"]
            for p in self.owner.get("/org/policies").json()["items"]
        }
        assert listed == self.policies
        for member, c in self.clients.items():
            granted = set(self.policies.get(member, []))
            for team, members in self.team_members.items():
                if member in members:
                    granted |= set(self.policies.get(team, []))
            may_audit = "ADMIN" in self.org_roles[member] or "CanViewAuditLog" in granted
            assert c.get("/events", params={"limit": 1}).status_code == (200 if may_audit else 403)


def test_access_changes_keep_every_listing_equal_to_the_model(api: str, system: System) -> None:
    AccessModel.api = api
    AccessModel.system = system
    run_state_machine_as_test(
        AccessModel,
        settings=settings(
            max_examples=8,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
