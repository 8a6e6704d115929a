"""Identity providers and single sign-on over HTTP, against a real OIDC issuer started by
the test session (discovery, JWKS, authorization and token endpoints, DCR)."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sailplane.system import System
from tests.conftest import Org, found_org, http_client
from tests.e2e.identity.conftest import person
from tests.oidc_provider import OidcProvider, Person
from tests.services import free_port

CALLBACK_PATH = "/api/v1/auth/sso/callback"


def _create(client: httpx.Client, oidc: OidcProvider, api: str, **overrides: object) -> dict:
    registered = oidc.add_client(api + CALLBACK_PATH)
    body = {
        "identityProviderTypeId": "keycloak",
        "name": "Company SSO",
        "configWrite": {
            "oidc": {
                "issuer": oidc.issuer,
                "clientId": registered.client_id,
                "clientSecret": registered.client_secret,
                "scopes": ["openid", "email", "profile"],
            }
        },
        **overrides,
    }
    response = client.post("/auth/idps", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_provider_types_are_listed(client: httpx.Client) -> None:
    items = client.get("/auth/identity-provider-types").json()["items"]
    ids = [t["id"] for t in items]
    assert {"oidc", "keycloak", "okta", "google"} <= set(ids)
    keycloak = items[ids.index("keycloak")]
    assert keycloak["capabilities"]["dcr"]["supported"] is True
    assert keycloak["capabilities"]["dcr"]["requiresToken"] is True
    assert set(keycloak) == {
        "id",
        "name",
        "description",
        "providerType",
        "capabilities",
        "metadata",
        "enabled",
        "visible",
        "displayOrder",
        "createdAt",
        "updatedAt",
    }
    assert [t["displayOrder"] for t in items] == sorted(t["displayOrder"] for t in items)


def test_create_describe_update_rotate_and_delete_without_ever_returning_the_secret(
    api: str, client: httpx.Client, oidc: OidcProvider, org: Org
) -> None:
    created = _create(client, oidc, api)
    assert set(created) == {
        "id",
        "identityProviderTypeId",
        "name",
        "config",
        "configWrite",
        "createdAt",
        "createdBy",
        "updatedAt",
        "updatedBy",
    }
    assert created["config"]["oidc"]["clientSecretConfigured"] is True
    assert created["configWrite"]["oidc"]["clientSecret"] is None
    assert created["createdBy"] == org.owner_member_id
    secret_free = str(client.get(f"/auth/idps/{created['id']}").json())
    for listing in (secret_free, str(client.get("/auth/idps").json()), str(created)):
        for registered in oidc.clients.values():
            assert registered.client_secret not in listing

    described = client.get(f"/auth/idps/{created['id']}").json()
    assert described == created
    listed = client.get("/auth/idps").json()
    assert set(listed) == {"items", "marker"}
    assert created["id"] in [p["id"] for p in listed["items"]]
    assert set(listed["items"][0]) == {"id", "identityProviderTypeId", "name", "config"}

    updated = client.patch(
        f"/auth/idps/{created['id']}",
        json={"name": "Renamed SSO", "configWrite": {"oidc": {"scopes": ["openid", "email"]}}},
    )
    assert updated.status_code == 200
    assert updated.json()["name"] == "Renamed SSO"
    assert updated.json()["config"]["oidc"]["scopes"] == ["openid", "email"]
    assert updated.json()["config"]["oidc"]["issuer"] == oidc.issuer

    rotated = client.post(f"/auth/idps/{created['id']}/rotate-secret", json={"clientSecret": "new"})
    assert rotated.status_code == 200
    assert rotated.json()["config"]["oidc"]["clientSecretConfigured"] is True
    assert "new" not in str(rotated.json())
    assert (
        client.post(
            f"/auth/idps/{created['id']}/rotate-secret", json={"clientSecret": ""}
        ).status_code
        == 400
    )

    # The audit log shows the change but not the secret.
    events = client.get("/events", params={"limit": 100}).json()["items"]
    secret_events = [e for e in events if e["aggregateId"] == created["id"]]
    assert secret_events and "new" not in str([e["data"] for e in secret_events])
    assert any(e["data"].get("client_secret") == "[redacted]" for e in secret_events)

    assert client.delete(f"/auth/idps/{created['id']}").status_code == 204
    assert client.get(f"/auth/idps/{created['id']}").status_code == 404


def test_provider_input_is_checked(api: str, client: httpx.Client, oidc: OidcProvider) -> None:
    base = {
        "identityProviderTypeId": "keycloak",
        "name": "x",
        "configWrite": {"oidc": {"issuer": oidc.issuer, "clientId": "c"}},
    }
    assert (
        client.post("/auth/idps", json={**base, "identityProviderTypeId": "myspace"}).status_code
        == 422
    )
    bad_issuer = client.post(
        "/auth/idps", json={**base, "configWrite": {"oidc": {"issuer": "ftp://x", "clientId": "c"}}}
    )
    assert bad_issuer.status_code == 422
    assert bad_issuer.json()["field"] == "configWrite.oidc.issuer"
    no_openid = client.post(
        "/auth/idps",
        json={
            **base,
            "configWrite": {"oidc": {"issuer": oidc.issuer, "clientId": "c", "scopes": ["email"]}},
        },
    )
    assert no_openid.status_code == 422
    assert client.post("/auth/idps", json={**base, "colour": 1}).status_code == 400


def test_test_connection_reports_the_discovered_endpoints(
    api: str, client: httpx.Client, oidc: OidcProvider
) -> None:
    created = _create(client, oidc, api)
    result = client.post(f"/auth/idps/{created['id']}/test-connection")
    assert result.status_code == 200
    body = result.json()
    assert body["success"] is True
    assert body["details"]["issuer"] == oidc.issuer
    assert body["details"]["endpoints"] == {
        "authorization": f"{oidc.issuer}/authorize",
        "token": f"{oidc.issuer}/token",
        "userinfo": f"{oidc.issuer}/userinfo",
        "jwks": f"{oidc.issuer}/jwks",
        "endSession": f"{oidc.issuer}/logout",
    }
    assert body["details"]["backchannelLogoutSupported"] is True
    assert body["details"]["frontchannelLogoutSupported"] is False
    assert "email" in body["details"]["scopesSupported"]
    assert "email_verified" in body["details"]["claimsSupported"]


def test_a_wrong_issuer_url_is_a_clear_failure_not_an_error(
    api: str, client: httpx.Client, oidc: OidcProvider
) -> None:
    nothing_there = f"http://127.0.0.1:{free_port()}/realms/none"
    created = _create(
        client,
        oidc,
        api,
        configWrite={"oidc": {"issuer": nothing_there, "clientId": "c", "clientSecret": "s"}},
    )
    result = client.post(f"/auth/idps/{created['id']}/test-connection")
    assert result.status_code == 200
    assert result.json()["success"] is False
    assert "Could not reach" in result.json()["message"]
    assert result.json()["details"]["issuer"] == nothing_there

    # An issuer that answers, but with another issuer name, is also a failure.
    wrong_path = _create(
        client, oidc, api, configWrite={"oidc": {"issuer": oidc.issuer + "/other", "clientId": "c"}}
    )
    mismatch = client.post(f"/auth/idps/{wrong_path['id']}/test-connection").json()
    assert mismatch["success"] is False
    assert "HTTP 404" in mismatch["message"]


def test_auto_setup_registers_sailplane_through_dcr(
    api: str, client: httpx.Client, oidc: OidcProvider
) -> None:
    before = set(oidc.clients)
    created = client.post(
        "/auth/idps/auto-setup",
        json={
            "name": "Auto SSO",
            "providerUrl": oidc.issuer,
            "providerType": "keycloak",
            "initialAccessToken": oidc.initial_access_token,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "identityProviderTypeId", "name", "config"}
    new_clients = set(oidc.clients) - before
    assert len(new_clients) == 1
    client_id = new_clients.pop()
    assert body["config"]["oidc"]["clientId"] == client_id
    assert body["config"]["oidc"]["clientSecretConfigured"] is True
    assert body["config"]["oidc"]["issuer"] == oidc.issuer
    assert oidc.clients[client_id].redirect_uris == [api + CALLBACK_PATH]


def test_auto_setup_failures_are_clear_422s(
    api: str, client: httpx.Client, oidc: OidcProvider
) -> None:
    no_scheme = client.post(
        "/auth/idps/auto-setup", json={"name": "x", "providerUrl": "keycloak.example.com"}
    )
    assert no_scheme.status_code == 422
    assert no_scheme.json()["field"] == "providerUrl"
    unreachable = client.post(
        "/auth/idps/auto-setup",
        json={"name": "x", "providerUrl": f"http://127.0.0.1:{free_port()}"},
    )
    assert unreachable.status_code == 422
    assert unreachable.json()["code"] == "discovery_failed"
    refused = client.post(
        "/auth/idps/auto-setup",
        json={"name": "x", "providerUrl": oidc.issuer, "initialAccessToken": "wrong"},
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "dcr_failed"
    oidc.dcr_enabled = False
    try:
        unsupported = client.post(
            "/auth/idps/auto-setup", json={"name": "x", "providerUrl": oidc.issuer}
        )
    finally:
        oidc.dcr_enabled = True
    assert unsupported.status_code == 422
    assert unsupported.json()["code"] == "dcr_not_supported"
    assert "Dynamic Client Registration" in unsupported.json()["message"]


def _browserless_sign_in(api: str, provider_id: str) -> httpx.Response:
    """Follow the redirects a browser would: Sailplane -> issuer -> Sailplane's callback."""
    with httpx.Client(timeout=30) as browser:
        start = browser.get(f"{api}/api/v1/auth/sso/{provider_id}/authorize")
        assert start.status_code == 302, start.text
        to_issuer = start.headers["location"]
        query = parse_qs(urlsplit(to_issuer).query)
        assert query["code_challenge_method"] == ["S256"]
        assert query["nonce"][0] and query["state"][0]
        at_issuer = browser.get(to_issuer)
        assert at_issuer.status_code == 302
        return browser.get(at_issuer.headers["location"])


@pytest.fixture
def provider(api: str, client: httpx.Client, oidc: OidcProvider) -> dict:
    return _create(client, oidc, api)


def test_a_new_person_signs_in_through_the_provider(
    api: str, oidc: OidcProvider, provider: dict, org: Org, client: httpx.Client
) -> None:
    email = f"sso-{uuid.uuid4().hex[:8]}@example.com"
    oidc.person = Person(sub="new-1", email=email, name="Sso Person")
    response = _browserless_sign_in(api, provider["id"])
    assert response.status_code == 200, response.text
    login = response.json()
    assert login["organizationId"] == org.id
    assert login["mfaRequired"] is False
    # The token exchange carried the PKCE verifier.
    assert oidc.token_requests[-1]["code_verifier"]
    with http_client(api, login["token"]) as me:
        identity = me.get("/me").json()
        assert identity["user"]["email"] == email
        assert identity["user"]["displayName"] == "Sso Person"
        emails = me.get("/me/emails").json()["items"]
        assert emails[0]["verifiedAt"] is not None  # the provider vouched for it
    member = client.get(f"/org/members/{login['memberId']}").json()
    assert member["item"]["roleIds"] == ["MEMBER"]
    assert member["included"]["members"][0]["accountType"] == "external"


def test_an_existing_user_is_matched_by_verified_email(
    api: str, system: System, oidc: OidcProvider, provider: dict, org: Org
) -> None:
    who = person(system, org, ["ADMIN"])
    oidc.person = Person(sub="existing-1", email=who.email.upper())
    login = _browserless_sign_in(api, provider["id"]).json()
    assert login["userId"] == who.user_id
    assert login["memberId"] == who.member_id


def test_a_provider_cannot_open_an_account_of_another_organization(
    api: str, system: System, oidc: OidcProvider, provider: dict
) -> None:
    """An organization's provider speaks for its members and new people, not for accounts
    that exist elsewhere (else any organization could sign in as anyone)."""
    elsewhere = found_org(system, "Victim Org")
    victim_member, position = system.identity.commands.add_member(
        email=f"victim-{uuid.uuid4().hex[:6]}@example.com",
        display_name="Victim",
        role_ids=["MEMBER"],
        by=elsewhere.owner,
    )
    system.wait_for_views(position)
    victim = system.identity.directory.member(elsewhere.id, victim_member)
    oidc.person = Person(sub="forged", email=victim["email"])
    refused = _browserless_sign_in(api, provider["id"])
    assert refused.status_code == 403
    assert refused.json()["code"] == "sso_account_exists"


def test_an_unverified_email_or_a_forged_token_is_refused(
    api: str, oidc: OidcProvider, provider: dict
) -> None:
    oidc.person = Person(sub="unverified", email="unverified@example.com", email_verified=False)
    refused = _browserless_sign_in(api, provider["id"])
    assert refused.status_code == 401
    assert refused.json()["code"] == "sso_failed"
    assert "verified email" in refused.json()["message"]

    oidc.person = Person(sub="aud", email=f"aud-{uuid.uuid4().hex[:6]}@example.com")
    oidc.audience_override = "someone-else"
    try:
        wrong_audience = _browserless_sign_in(api, provider["id"])
    finally:
        oidc.audience_override = None
    assert wrong_audience.status_code == 401
    assert "ID token is not valid" in wrong_audience.json()["message"]


def test_the_callback_refuses_unknown_replayed_or_denied_attempts(
    api: str, oidc: OidcProvider, provider: dict
) -> None:
    oidc.person = Person(sub="replay", email=f"replay-{uuid.uuid4().hex[:6]}@example.com")
    with httpx.Client(timeout=30) as browser:
        start = browser.get(f"{api}/api/v1/auth/sso/{provider['id']}/authorize")
        back = browser.get(start.headers["location"]).headers["location"]
        assert browser.get(back).status_code == 200
        replay = browser.get(back)
        assert replay.status_code == 409
        unknown = browser.get(f"{api}{CALLBACK_PATH}", params={"state": "forged", "code": "x"})
        assert unknown.status_code == 401
        start = browser.get(f"{api}/api/v1/auth/sso/{provider['id']}/authorize")
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
        denied = browser.get(
            f"{api}{CALLBACK_PATH}", params={"state": state, "error": "access_denied"}
        )
        assert denied.status_code == 401
        assert "access_denied" in denied.json()["message"]
        assert browser.get(f"{api}/api/v1/auth/sso/NOSUCHIDP1/authorize").status_code == 404


def test_another_organization_cannot_see_or_use_a_provider(
    api: str, system: System, provider: dict
) -> None:
    stranger = found_org(system, "IdP Stranger")
    with http_client(api, stranger.token) as other:
        assert other.get(f"/auth/idps/{provider['id']}").status_code == 404
        assert other.post(f"/auth/idps/{provider['id']}/test-connection").status_code == 404
        assert provider["id"] not in [p["id"] for p in other.get("/auth/idps").json()["items"]]
