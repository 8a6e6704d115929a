"""`/me` over HTTP: profile, emails with SMTP verification links, teams, service accounts."""

from __future__ import annotations

import re
import uuid

import httpx

from sailplane.system import System
from tests.conftest import Org, http_client
from tests.e2e.identity.conftest import Mailbox, person, sign_in, signed_in_client


def test_get_and_update_my_profile(api: str, system: System, org: Org) -> None:
    who = person(system, org)
    with signed_in_client(api, who) as me:
        current = me.get("/me").json()
        assert set(current) == {"root", "user", "serviceAccount"}
        assert current["user"]["id"] == who.user_id
        assert current["serviceAccount"] is None
        updated = me.patch(
            "/me", json={"givenName": "Alan", "familyName": "Turing", "displayName": "Alan"}
        )
        assert updated.status_code == 200
        assert updated.json()["user"]["givenName"] == "Alan"
        assert me.get("/me").json()["user"]["displayName"] == "Alan"
        assert me.patch("/me", json={"displayName": "   "}).status_code == 422
        assert me.patch("/me", json={"nickname": "x"}).status_code == 400
        new_email = f"moved-{uuid.uuid4().hex[:6]}@example.com"
        assert me.patch("/me", json={"email": new_email}).json()["user"]["email"] == new_email
    assert sign_in(api, new_email, who.password).status_code == 200
    assert sign_in(api, who.email, who.password).status_code == 401


def test_adding_an_email_sends_a_verification_link_that_verifies_it(
    api: str, system: System, org: Org, smtp: Mailbox, client: httpx.Client
) -> None:
    who = person(system, org)
    extra = f"second-{uuid.uuid4().hex[:6]}@example.com"
    with signed_in_client(api, who) as me:
        added = me.post("/me/emails", json={"email": extra})
        assert added.status_code == 201
        assert added.json()["email"] == extra
        assert added.json()["verifiedAt"] is None
        assert added.json()["userId"] == who.user_id

        assert len(smtp.messages) == 1
        message = smtp.messages[0]
        assert message["To"] == extra
        link = re.search(
            r"(http://\S+/api/v1/auth/verify-email\?token=\S+)",
            message.get_payload(decode=True).decode(),
        )
        assert link is not None

        emails = me.get("/me/emails").json()
        assert set(emails) == {"items", "marker"}
        assert {e["email"]: e["verifiedAt"] for e in emails["items"]} == {
            who.email: None,
            extra: None,
        }

        with httpx.Client(timeout=30) as browser:
            verified = browser.get(link.group(1))
            assert verified.status_code == 200
            assert verified.json()["email"] == extra
            assert verified.json()["verifiedAt"] is not None
            again = browser.get(link.group(1))
            assert again.status_code == 404

        emails = {e["email"]: e["verifiedAt"] for e in me.get("/me/emails").json()["items"]}
        assert emails[extra] is not None
        # A verified email belongs to this user: nobody else can register it.
        taken = client.post("/org/users", json={"email": extra})
        assert taken.status_code == 409
        assert taken.json()["code"] == "email_taken"
        paged = me.get("/me/emails", params={"limit": 1}).json()
        assert len(paged["items"]) == 1 and paged["marker"] is not None


def test_an_email_of_another_user_cannot_be_added(api: str, system: System, org: Org) -> None:
    alice, bob = person(system, org), person(system, org)
    with signed_in_client(api, alice) as me:
        response = me.post("/me/emails", json={"email": bob.email})
        assert response.status_code == 409
        assert me.post("/me/emails", json={"email": "nope"}).status_code == 422


def test_a_bad_verification_token_is_404(api: str) -> None:
    with httpx.Client(base_url=api + "/api/v1") as anonymous:
        assert (
            anonymous.get("/auth/verify-email", params={"token": "vfy_NOPE.x"}).status_code == 404
        )
        assert anonymous.get("/auth/verify-email", params={"token": "garbage"}).status_code == 404


def test_my_teams_list_only_the_teams_i_am_in(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    who = person(system, org)
    mine = client.post("/org/teams", json={"name": f"mine-{uuid.uuid4().hex[:6]}"}).json()["team"]
    client.post("/org/teams", json={"name": f"other-{uuid.uuid4().hex[:6]}"})
    client.post(f"/org/teams/{mine['id']}/members/{who.member_id}", json={})
    with signed_in_client(api, who) as me:
        teams = me.get("/me/teams").json()["items"]
        assert [t["id"] for t in teams] == [mine["id"]]
        assert set(teams[0]) == set(mine)
        assert teams[0]["name"] == mine["name"]


def test_a_service_account_is_its_own_identity(api: str, system: System, org: Org) -> None:
    account_id, _ = system.identity.commands.create_service_account(
        username=f"ci-bot-{uuid.uuid4().hex[:4]}",
        description="CI",
        role_ids=["MEMBER"],
        by=org.owner,
    )
    token, position = system.identity.commands.issue_service_account_key(
        service_account_id=account_id, name="ci", by=org.owner
    )
    system.wait_for_views(position)
    with http_client(api, token) as bot:
        me = bot.get("/me").json()
        assert me["user"] is None
        assert me["serviceAccount"]["id"] == account_id
        assert me["serviceAccount"]["description"] == "CI"
        assert bot.get("/me/teams").json() == {"items": []}
        assert bot.get("/me/logins").json() == {"items": []}
        assert bot.patch("/me", json={"displayName": "x"}).status_code == 403
        assert bot.get("/org/teams").status_code == 200
        assert bot.post("/org/teams", json={"name": "bots"}).status_code == 403


def test_a_verification_email_that_fails_or_cannot_be_sent_is_recorded_and_shown(
    api: str, system: System, org: Org, smtp: Mailbox
) -> None:
    from sailplane.infra_adapters.mail import SmtpMailer
    from tests.services import free_port

    who = person(system, org)
    sent, unconfigured, failed = (f"{k}-{uuid.uuid4().hex[:6]}@example.com" for k in "suf")
    working = system.email.mailer
    with signed_in_client(api, who) as me:
        assert me.post("/me/emails", json={"email": sent}).json()["verificationEmailStatus"] == (
            "sent"
        )
        try:
            system.email.mailer = None
            added = me.post("/me/emails", json={"email": unconfigured}).json()
            assert added["verificationEmailStatus"] == "not_configured"
            assert "SAILPLANE_SMTP_HOST" in added["verificationEmailMessage"]
            system.email.mailer = SmtpMailer(
                "127.0.0.1", free_port(), "sailplane@example.com", timeout=5
            )
            added = me.post("/me/emails", json={"email": failed}).json()
        finally:
            system.email.mailer = working
        assert added["verificationEmailStatus"] == "failed"
        listed = {e["email"]: e for e in me.get("/me/emails").json()["items"]}
    assert listed[sent]["verificationEmailStatus"] == "sent"
    assert listed[unconfigured]["verificationEmailStatus"] == "not_configured"
    assert listed[failed]["verificationEmailStatus"] == "failed"
    assert failed in listed[failed]["verificationEmailMessage"]
    assert listed[who.email]["verificationEmailStatus"] is None
    assert len(smtp.messages) == 1
