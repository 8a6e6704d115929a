"""Sign-in over HTTP: password logins are bearer tokens that `/me/logins` lists and that
end at once when revoked; bad credentials look alike; repeated failures are slowed down."""

from __future__ import annotations

import httpx

from sailplane.system import System
from tests.conftest import Org, http_client
from tests.e2e.identity.conftest import PASSWORD, person, sign_in, signed_in_client


def test_a_password_login_is_a_bearer_token_listed_with_is_current(
    api: str, system: System, org: Org
) -> None:
    who = person(system, org)
    response = sign_in(api, who.email, who.password, deviceId="laptop-1")
    assert response.status_code == 200
    body = response.json()
    assert body["mfaRequired"] is False
    assert body["token"].startswith("spl_")
    assert body["tokenType"] == "Bearer"
    assert body["organizationId"] == org.id
    assert body["memberId"] == who.member_id
    assert body["userId"] == who.user_id
    assert body["deviceId"] == "laptop-1"
    assert body["expiresAt"].endswith("Z")

    with http_client(api, body["token"]) as me, signed_in_client(api, who) as other:
        assert me.get("/me").json()["user"]["email"] == who.email
        logins = me.get("/me/logins").json()["items"]
        assert {login["id"] for login in logins} >= {body["loginId"]}
        current = [login for login in logins if login["isCurrent"]]
        assert [login["id"] for login in current] == [body["loginId"]]
        assert set(current[0]) == {
            "id",
            "deviceId",
            "authTime",
            "lastUsedAt",
            "expiresAt",
            "remoteIp",
            "userAgent",
            "isCurrent",
        }
        assert current[0]["deviceId"] == "laptop-1"
        assert current[0]["remoteIp"] == "127.0.0.1"
        # The member's last login shows in the directory.
        member = me.get(f"/org/members/{who.member_id}").json()["included"]["members"][0]
        assert member["lastLoginAt"] is not None
        # The other login sees the same two, with itself as current.
        others_view = other.get("/me/logins").json()["items"]
        assert len(others_view) == 2
        assert [x["id"] for x in others_view if x["isCurrent"]] != [body["loginId"]]


def test_a_revoked_login_fails_on_the_very_next_request(api: str, system: System, org: Org) -> None:
    who = person(system, org)
    with signed_in_client(api, who) as first, signed_in_client(api, who) as second:
        first_id = next(x["id"] for x in first.get("/me/logins").json()["items"] if x["isCurrent"])
        assert second.delete(f"/me/logins/{first_id}").status_code == 204
        refused = first.get("/me")
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_token"
        assert second.get("/me").status_code == 200
        assert first_id not in [x["id"] for x in second.get("/me/logins").json()["items"]]
        assert second.delete(f"/me/logins/{first_id}").status_code == 404


def test_someone_elses_login_cannot_be_revoked(api: str, system: System, org: Org) -> None:
    alice, bob = person(system, org), person(system, org)
    with signed_in_client(api, alice) as a, signed_in_client(api, bob) as b:
        alice_login = a.get("/me/logins").json()["items"][0]["id"]
        assert b.delete(f"/me/logins/{alice_login}").status_code == 404
        assert a.get("/me").status_code == 200


def test_logout_ends_the_current_login(api: str, system: System, org: Org) -> None:
    who = person(system, org)
    with signed_in_client(api, who) as c:
        assert c.post("/auth/logout").status_code == 204
        assert c.get("/me").status_code == 401


def test_logout_with_an_api_key_is_refused(client: httpx.Client) -> None:
    response = client.post("/auth/logout")
    assert response.status_code == 400
    assert response.json()["code"] == "not_a_login"
    assert client.get("/me").status_code == 200


def test_wrong_email_and_wrong_password_fail_alike(api: str, system: System, org: Org) -> None:
    who = person(system, org)
    wrong_password = sign_in(api, who.email, "not the password")
    wrong_email = sign_in(api, "nobody-here@example.com", who.password)
    malformed_email = sign_in(api, "not-an-email", who.password)
    for response in (wrong_password, wrong_email, malformed_email):
        assert response.status_code == 401
        assert response.json() == {
            "message": "The email or password is not correct.",
            "code": "invalid_credentials",
        }


def test_repeated_failures_for_one_account_are_slowed_down(
    api: str, system: System, org: Org
) -> None:
    who = person(system, org)
    bystander = person(system, org)
    statuses = [sign_in(api, who.email, f"wrong-{i}").status_code for i in range(5)]
    assert statuses == [401] * 5
    throttled = sign_in(api, who.email, who.password)
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "too_many_failed_logins"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 30
    # Another account is not affected.
    assert sign_in(api, bystander.email, bystander.password).status_code == 200


def test_a_password_reset_by_an_admin_lifts_the_throttle(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    who = person(system, org)
    for i in range(6):
        sign_in(api, who.email, f"wrong-{i}")
    assert sign_in(api, who.email, who.password).status_code == 429
    temporary = client.post(f"/org/users/{who.user_id}/password/reset").json()["password"]
    assert sign_in(api, who.email, temporary).status_code == 200


def test_a_login_acts_in_the_organization_it_was_made_for(
    api: str, system: System, org: Org
) -> None:
    from tests.conftest import found_org

    who = person(system, org)
    other = found_org(system, "Second Org")
    # The same person joins another organization.
    system.wait_for_views(
        system.identity.commands.add_member(
            email=who.email, display_name="Person", role_ids=["ADMIN"], by=other.owner
        )[1]
    )
    first = sign_in(api, who.email, PASSWORD)
    assert first.json()["organizationId"] == org.id  # the oldest membership by default
    chosen = sign_in(api, who.email, PASSWORD, organizationId=other.id)
    assert chosen.status_code == 200
    assert chosen.json()["organizationId"] == other.id
    with http_client(api, chosen.json()["token"]) as c:
        assert c.get("/org/members").json()["included"]["members"][0]["organizationId"] == other.id
        mismatched = c.get("/me", headers={"LakeSail-Organization-Id": org.id})
        assert mismatched.status_code == 401
        assert mismatched.json()["code"] == "organization_mismatch"
        assert c.get("/me", headers={"LakeSail-Organization-Id": other.id}).status_code == 200
    not_member = sign_in(api, who.email, PASSWORD, organizationId="NOSUCHORG1")
    assert not_member.status_code == 403


def test_a_disabled_member_cannot_sign_in_and_their_login_stops(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    who = person(system, org)
    with signed_in_client(api, who) as c:
        assert (
            client.patch(f"/org/members/{who.member_id}", json={"isEnabled": False}).status_code
            == 200
        )
        assert c.get("/me").status_code == 401
    assert sign_in(api, who.email, who.password).status_code == 403


def test_a_re_enabled_member_signs_in_again_but_old_logins_stay_refused(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    who = person(system, org)
    with signed_in_client(api, who) as old:
        assert old.get("/me").status_code == 200
        disabled = client.patch(f"/org/members/{who.member_id}", json={"isEnabled": False})
        assert disabled.status_code == 200
        enabled = client.patch(f"/org/members/{who.member_id}", json={"isEnabled": True})
        assert enabled.status_code == 200
        refused = old.get("/me")
        assert refused.status_code == 401, "disabling ended the member's logins for good"
        with signed_in_client(api, who) as fresh:
            assert fresh.get("/me").status_code == 200


def test_sign_in_needs_email_and_password_or_a_code(api: str) -> None:
    with httpx.Client(base_url=api + "/api/v1") as anonymous:
        assert anonymous.post("/auth/login", json={"email": "a@example.com"}).status_code == 422
        assert anonymous.post("/auth/login", json={"colour": "blue"}).status_code == 400
        both = anonymous.post("/auth/login", json={"password": "x", "otaCode": "y"})
        assert both.status_code == 422
        assert anonymous.post("/auth/login", json={"otaCode": "ota_NOPE.x"}).status_code == 401


def test_the_sign_in_endpoints_are_documented_and_public_in_the_openapi(api: str) -> None:
    schema = httpx.get(api + "/schema/openapi.json").json()
    operations = {
        op["operationId"]: (path, method, op)
        for path, methods in schema["paths"].items()
        for method, op in methods.items()
    }
    public = {
        "Login": ("/api/v1/auth/login", "post"),
        "CompleteLoginMfa": ("/api/v1/auth/login/mfa", "post"),
        "StartSingleSignOn": ("/api/v1/auth/sso/{idp}/authorize", "get"),
        "FinishSingleSignOn": ("/api/v1/auth/sso/callback", "get"),
        "VerifyEmail": ("/api/v1/auth/verify-email", "get"),
        "ListPermissions": ("/api/v1/auth/permissions", "get"),
        "DescribeInvitation": ("/api/v1/org/invites/{token}", "get"),
        "AcceptInvitation": ("/api/v1/org/invites/{token}/accept", "post"),
    }
    for operation_id, (path, method) in public.items():
        found_path, found_method, op = operations[operation_id]
        assert (found_path, found_method) == (path, method)
        assert op.get("security") == [{}], f"{operation_id} needs no bearer token"
        assert op.get("summary") or op.get("description")
    for operation_id in ("EnrollMyTotp", "VerifyMyTotp", "Logout"):
        assert operations[operation_id][2].get("security") in (None, [{"BearerAuth": []}])
    login_body = operations["Login"][2]["requestBody"]["content"]["application/json"]["schema"]
    assert login_body
