"""Authorization-matrix cases of the identity groups (teams, events, users, members, roles,
invitations, policies, identity providers, me, mfa, logout)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pyotp

from tests.e2e.authz import Case, World

PASSWORD = "matrix password 1"


# --- setups --------------------------------------------------------------------------------


def team(world: World) -> dict[str, Any]:
    created = world.owner.post("/org/teams", json={"name": world.unique("team")})
    return {"team": created.json()["team"]["id"]}


def member(world: World) -> dict[str, Any]:
    member_id, position = world.system.identity.commands.add_member(
        email=f"{world.unique('m')}@example.com",
        display_name="M",
        role_ids=["MEMBER"],
        by=world.org.owner,
    )
    world.system.wait_for_views(position)
    user_id = world.system.identity.directory.member(world.org.id, member_id)["user_id"]
    return {"member": member_id, "user": user_id}


def team_and_member(world: World) -> dict[str, Any]:
    return {**team(world), **member(world)}


def team_with_member(world: World) -> dict[str, Any]:
    values = team_and_member(world)
    world.owner.post(f"/org/teams/{values['team']}/members/{values['member']}", json={})
    return values


def team_policy(world: World) -> dict[str, Any]:
    values = team(world)
    world.owner.put(f"/org/policies/{values['team']}", json={"permissions": ["CanViewJobs"]})
    return {"principal": values["team"]}


def provider(world: World) -> dict[str, Any]:
    created = world.owner.post(
        "/auth/idps",
        json={
            "identityProviderTypeId": "oidc",
            "name": "Matrix SSO",
            "configWrite": {"oidc": {"issuer": world.services["oidc"].issuer, "clientId": "c"}},
        },
    )
    return {"idp": created.json()["id"]}


def owner_login(world: World, **extra: Any) -> dict[str, Any]:
    """The Owner signs in with a password (the Owner otherwise uses an API key)."""
    system, org = world.system, world.org
    owner_user = system.identity.directory.member(org.id, org.owner_member_id)["user_id"]
    system.wait_for_views(
        system.identity.commands.change_password(
            owner_user, current_password=PASSWORD, new_password=PASSWORD, by=org.owner
        )
    )
    email = system.identity.directory.member(org.id, org.owner_member_id)["email"]
    with httpx.Client(base_url=world.api + "/api/v1") as anonymous:
        login = anonymous.post(
            "/auth/login",
            json={"email": email, "password": PASSWORD, "organizationId": org.id, **extra},
        ).json()
    return {
        "_owner_token": login.get("token"),
        "loginId": login["loginId"],
        "_login": login,
        "_user": owner_user,
    }


def owner_trusted_device(world: World) -> dict[str, Any]:
    values = owner_login(world)
    with httpx.Client(
        base_url=world.api + "/api/v1",
        headers={"Authorization": f"Bearer {values['_owner_token']}"},
    ) as me:
        secret = me.post("/me/mfa/totp").json()["secret"]
        me.post("/me/mfa/totp/verify", json={"code": pyotp.TOTP(secret).at(time.time() - 30)})
    challenge = owner_login(world)["_login"]["mfaToken"]
    with httpx.Client(base_url=world.api + "/api/v1") as anonymous:
        done = anonymous.post(
            "/auth/login/mfa",
            json={"mfaToken": challenge, "code": pyotp.TOTP(secret).now(), "trustDevice": True},
        ).json()
    with httpx.Client(
        base_url=world.api + "/api/v1", headers={"Authorization": f"Bearer {done['token']}"}
    ) as me:
        device = me.get("/me/trusted-devices").json()["items"][0]["id"]
    return {"trustedDeviceId": device, "_owner_token": done["token"]}


def owner_totp_enrollment(world: World) -> dict[str, Any]:
    values = owner_login(world)
    with httpx.Client(
        base_url=world.api + "/api/v1",
        headers={"Authorization": f"Bearer {values['_owner_token']}"},
    ) as me:
        values["secret"] = me.post("/me/mfa/totp").json()["secret"]
    return values


def unique_team_name(world: World, values: dict[str, Any]) -> Any:
    return {"name": world.unique("team")}


def unique_email(world: World, values: dict[str, Any]) -> Any:
    return {"email": f"{world.unique('e')}@example.com"}


def provider_body(world: World, values: dict[str, Any]) -> Any:
    return {
        "identityProviderTypeId": "oidc",
        "name": "SSO",
        "configWrite": {"oidc": {"issuer": world.services["oidc"].issuer, "clientId": "c"}},
    }


def auto_setup_body(world: World, values: dict[str, Any]) -> Any:
    oidc = world.services["oidc"]
    return {
        "name": "Auto",
        "providerUrl": oidc.issuer,
        "initialAccessToken": oidc.initial_access_token,
    }


def totp_code(world: World, values: dict[str, Any]) -> Any:
    return {"code": pyotp.TOTP(values["secret"]).now()}


# --- cases -----------------------------------------------------------------------------------

CASES: list[Case] = [
    # teams
    Case("GET", "/org/teams", "CanViewTeams", 200),
    Case("POST", "/org/teams", "CanManageTeams", 201, body=unique_team_name),
    Case("GET", "/org/teams/{team}", "CanViewTeams", 200, setup=team),
    Case("PATCH", "/org/teams/{team}", "CanManageTeams", 200, setup=team, body=unique_team_name),
    Case("DELETE", "/org/teams/{team}", "CanManageTeams", 204, setup=team),
    Case("GET", "/org/teams/{team}/members", "CanViewTeams", 200, setup=team),
    Case(
        "POST",
        "/org/teams/{team}/members/{member}",
        "CanManageTeamMembers",
        201,
        setup=team_and_member,
        body={},
    ),
    Case(
        "DELETE",
        "/org/teams/{team}/members/{member}",
        "CanManageTeamMembers",
        204,
        setup=team_with_member,
    ),
    Case(
        "PUT",
        "/org/teams/{team}/members/{member}/roles",
        "CanManageTeamMembers",
        204,
        setup=team_with_member,
        body={"roleIds": ["TEAMADMIN"]},
    ),
    # event log
    Case("GET", "/events", "CanViewAuditLog", 200),
    # roles (built in: the same in every organization, so no cross-organization 404)
    Case("GET", "/org/roles", "CanViewMembers", 200),
    Case(
        "GET",
        "/org/roles/{role}",
        "CanViewMembers",
        200,
        setup=lambda w: {"role": "OWNER"},
        foreign_404=False,
    ),
    Case("GET", "/org/team-roles", "CanViewMembers", 200),
    Case(
        "GET",
        "/org/team-roles/{role}",
        "CanViewMembers",
        200,
        setup=lambda w: {"role": "TEAMADMIN"},
        foreign_404=False,
    ),
    # users
    Case("GET", "/org/users", "CanViewMembers", 200),
    Case("POST", "/org/users", "CanManageUsers", 201, body=unique_email),
    Case("GET", "/org/users/{user}", "CanViewMembers", 200, setup=member),
    Case(
        "PATCH",
        "/org/users/{user}",
        "CanManageUsers",
        200,
        setup=member,
        body={"displayName": "Renamed"},
    ),
    Case("DELETE", "/org/users/{user}", "CanManageUsers", 204, setup=member),
    Case("DELETE", "/org/users/{user}/mfa", "CanManageUsers", 204, setup=member),
    Case(
        "POST",
        "/org/users/{user}/password",
        "CanUseOwnAccount",
        204,
        setup=member,
        body={"newPassword": "a fresh password"},
    ),
    Case("POST", "/org/users/{user}/password/reset", "CanManageUsers", 200, setup=member),
    # members
    Case("GET", "/org/members", "CanViewMembers", 200),
    Case("GET", "/org/members/{member}", "CanViewMembers", 200, setup=member),
    Case("PATCH", "/org/members/{member}", "CanManageUsers", 200, setup=member, body={"name": "N"}),
    Case("DELETE", "/org/members/{member}", "CanManageUsers", 204, setup=member),
    Case(
        "PUT",
        "/org/members/{member}/roles",
        "CanManageUsers",
        204,
        setup=member,
        body={"roleIds": ["ADMIN"]},
    ),
    # invitations (describe and accept are public)
    Case("POST", "/org/invites", "CanManageUsers", 201, body=unique_email),
    # policies
    Case("GET", "/org/policies", "CanViewPolicies", 200),
    Case("GET", "/org/policies/{principal}", "CanViewPolicies", 200, setup=team_policy),
    Case(
        "PUT",
        "/org/policies/{principal}",
        "CanManagePolicies",
        200,
        setup=lambda w: {"principal": team(w)["team"]},
        body={"permissions": ["CanViewJobs"]},
    ),
    Case("DELETE", "/org/policies/{principal}", "CanManagePolicies", 204, setup=team_policy),
    # identity providers
    Case("GET", "/auth/identity-provider-types", "CanViewIdentityProviders", 200),
    Case("GET", "/auth/idps", "CanViewIdentityProviders", 200),
    Case("POST", "/auth/idps", "CanManageIdentityProviders", 201, body=provider_body),
    Case("POST", "/auth/idps/auto-setup", "CanManageIdentityProviders", 201, body=auto_setup_body),
    Case("GET", "/auth/idps/{idp}", "CanViewIdentityProviders", 200, setup=provider),
    Case(
        "PATCH",
        "/auth/idps/{idp}",
        "CanManageIdentityProviders",
        200,
        setup=provider,
        body={"name": "N"},
    ),
    Case("DELETE", "/auth/idps/{idp}", "CanManageIdentityProviders", 204, setup=provider),
    Case(
        "POST",
        "/auth/idps/{idp}/rotate-secret",
        "CanManageIdentityProviders",
        200,
        setup=provider,
        body={"clientSecret": "s2"},
    ),
    Case(
        "POST",
        "/auth/idps/{idp}/test-connection",
        "CanManageIdentityProviders",
        200,
        setup=provider,
    ),
    # the caller's own account
    Case("POST", "/auth/logout", "CanUseOwnAccount", 204, setup=owner_login),
    Case("GET", "/me", "CanUseOwnAccount", 200),
    Case("PATCH", "/me", "CanUseOwnAccount", 200, body={"displayName": "Me"}),
    Case("GET", "/me/emails", "CanUseOwnAccount", 200),
    Case("POST", "/me/emails", "CanUseOwnAccount", 201, body=unique_email),
    Case("GET", "/me/logins", "CanUseOwnAccount", 200),
    Case("DELETE", "/me/logins/{loginId}", "CanUseOwnAccount", 204, setup=owner_login),
    Case("GET", "/me/trusted-devices", "CanUseOwnAccount", 200),
    Case(
        "DELETE",
        "/me/trusted-devices/{trustedDeviceId}",
        "CanUseOwnAccount",
        204,
        setup=owner_trusted_device,
    ),
    Case("GET", "/me/teams", "CanUseOwnAccount", 200),
    Case("DELETE", "/me/mfa", "CanUseOwnAccount", 204),
    Case("POST", "/me/mfa/totp", "CanUseOwnAccount", 201),
    Case(
        "POST",
        "/me/mfa/totp/verify",
        "CanUseOwnAccount",
        200,
        setup=owner_totp_enrollment,
        body=totp_code,
    ),
]

# One case per method and path (the pytest ids).
assert len({c.id for c in CASES}) == len(CASES), "duplicate authorization-matrix case"
