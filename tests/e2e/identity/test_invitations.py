"""Invitations over HTTP: a token with expiry and team assignments; describe and accept
need no bearer token; accepting creates the user or links an existing one."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import httpx
import pytest

from sailplane.system import System
from tests.conftest import Org, found_org, http_client
from tests.e2e.identity.conftest import Mailbox, person, sign_in

INVITE_FIELDS = {
    "id",
    "organizationId",
    "name",
    "email",
    "organizationRoleId",
    "accountType",
    "invitationToken",
    "invitedAt",
    "createdAt",
    "createdBy",
    "expiresAt",
    "organization",
    "inviteUrl",
    "emailStatus",
    "emailMessage",
}


def _email() -> str:
    return f"invitee-{uuid.uuid4().hex[:8]}@example.com"


def _anonymous(api: str) -> httpx.Client:
    return httpx.Client(base_url=api + "/api/v1", timeout=30)


def test_invite_describe_accept_as_a_new_user_and_sign_in(
    api: str, client: httpx.Client, org: Org
) -> None:
    team = client.post("/org/teams", json={"name": f"t-{uuid.uuid4().hex[:6]}"}).json()["team"][
        "id"
    ]
    email = _email()
    created = client.post(
        "/org/invites",
        json={
            "organizationId": org.id,
            "name": "Grace Hopper",
            "email": email,
            "organizationRoleId": "ADMIN",
            "accountType": "managed",
            "teamAssignments": [{"teamId": team, "roleId": "TEAMADMIN"}],
            "sendEmail": False,
        },
    )
    assert created.status_code == 201, created.text
    invite = created.json()
    assert set(invite) == INVITE_FIELDS
    token = invite["invitationToken"]
    assert invite["email"] == email
    assert invite["organizationRoleId"] == "ADMIN"
    assert invite["createdBy"] == org.owner_member_id
    assert invite["organization"]["id"] == org.id
    assert set(invite["organization"]) == {
        "id",
        "slug",
        "name",
        "settings",
        "defaultTeamId",
        "defaultOrgRoleId",
    }
    assert invite["inviteUrl"].endswith(f"/api/v1/org/invites/{token}")
    assert invite["expiresAt"] > invite["createdAt"]

    with _anonymous(api) as anonymous:
        described = anonymous.get(f"/org/invites/{token}")
        assert described.status_code == 200
        assert described.json() == invite
        assert anonymous.get(f"/org/invites/{token[:-2]}xx").status_code == 404

        accepted = anonymous.post(
            f"/org/invites/{token}/accept",
            json={
                "user": {"givenName": "Grace", "familyName": "Hopper", "password": "cobol-rules"}
            },
        )
        assert accepted.status_code == 200, accepted.text
        result = accepted.json()
        assert set(result) == {"organization", "user", "otaCode", "nextStep"}
        assert result["user"]["email"] == email
        assert result["user"]["givenName"] == "Grace"
        assert result["nextStep"] == "sign_in"

        # Used: 409 on describe and accept.
        assert anonymous.get(f"/org/invites/{token}").status_code == 409
        again = anonymous.post(f"/org/invites/{token}/accept", json={})
        assert again.status_code == 409
        assert again.json()["code"] == "invitation_used"

        # The one-time code signs in once.
        code_login = anonymous.post("/auth/login", json={"otaCode": result["otaCode"]})
        assert code_login.status_code == 200
        assert anonymous.post("/auth/login", json={"otaCode": result["otaCode"]}).status_code == 401

    with http_client(api, code_login.json()["token"]) as me:
        member_id = code_login.json()["memberId"]
        assert [t["id"] for t in me.get("/me/teams").json()["items"]] == [team]
        described = me.get(f"/org/members/{member_id}").json()
        assert described["item"]["roleIds"] == ["ADMIN"]
        assert described["item"]["teamRoleIds"] == {team: ["TEAMADMIN"]}
        member = described["included"]["members"][0]
        assert member["invitedByMemberId"] == org.owner_member_id
        assert member["inviteAcceptedAt"] is not None
        assert member["inviteExpiresAt"] == invite["expiresAt"]
    assert sign_in(api, email, "cobol-rules").status_code == 200


def test_accepting_links_an_existing_user(api: str, system: System, org: Org) -> None:
    who = person(system, org)
    other = found_org(system, "Inviting Org")
    with http_client(api, other.token) as c, _anonymous(api) as anonymous:
        token = c.post("/org/invites", json={"email": who.email.upper()}).json()["invitationToken"]
        accepted = anonymous.post(f"/org/invites/{token}/accept")
        assert accepted.status_code == 200
        assert accepted.json()["user"]["id"] == who.user_id
        assert accepted.json()["nextStep"] == "sign_in"
        # No one-time code for an account that existed: whoever holds the invitation token
        # must not become that user.
        assert accepted.json()["otaCode"] is None
        # The same person now signs in to either organization with their one password.
        assert sign_in(api, who.email, who.password, organizationId=other.id).status_code == 200
        # Inviting a member again is refused.
        assert c.post("/org/invites", json={"email": who.email}).status_code == 409


def test_an_expired_invitation_is_404(api: str, system: System, org: Org) -> None:
    _, token, position = system.identity.commands.create_invitation(
        email=_email(),
        name="Late",
        organization_role_id="MEMBER",
        account_type="managed",
        team_assignments=[],
        send_email=False,
        by=org.owner,
        expires_in=timedelta(0),
    )
    system.wait_for_views(position)
    with _anonymous(api) as anonymous:
        described = anonymous.get(f"/org/invites/{token}")
        assert described.status_code == 404
        assert described.json()["code"] == "invitation_expired"
        assert anonymous.post(f"/org/invites/{token}/accept", json={}).status_code == 404


def test_invitation_input_is_checked(client: httpx.Client) -> None:
    assert client.post("/org/invites", json={"email": "nope"}).status_code == 422
    assert (
        client.post(
            "/org/invites", json={"email": _email(), "organizationRoleId": "KING"}
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/org/invites", json={"email": _email(), "teamAssignments": [{"teamId": "NOSUCHTEAM"}]}
        ).status_code
        == 404
    )
    assert (
        client.post(
            "/org/invites", json={"email": _email(), "organizationId": "OTHERORG01"}
        ).status_code
        == 404
    )
    assert (
        client.post("/org/invites", json={"email": _email(), "accountType": "x"}).status_code == 422
    )


def test_accepting_with_another_email_or_a_weak_password_is_refused(
    api: str, client: httpx.Client
) -> None:
    token = client.post("/org/invites", json={"email": _email()}).json()["invitationToken"]
    with _anonymous(api) as anonymous:
        other = anonymous.post(f"/org/invites/{token}/accept", json={"user": {"email": _email()}})
        assert other.status_code == 422
        weak = anonymous.post(f"/org/invites/{token}/accept", json={"user": {"password": "short"}})
        assert weak.status_code == 422
        # Nothing was written: the invitation is still open.
        assert anonymous.get(f"/org/invites/{token}").status_code == 200
        without_password = anonymous.post(f"/org/invites/{token}/accept")
        assert without_password.json()["nextStep"] == "set_password"


def test_an_admin_cannot_invite_an_owner(api: str, system: System, org: Org) -> None:
    from tests.e2e.identity.conftest import signed_in_client

    admin = person(system, org, ["ADMIN"])
    with signed_in_client(api, admin) as c:
        response = c.post("/org/invites", json={"email": _email(), "organizationRoleId": "OWNER"})
        assert response.status_code == 403


def test_send_email_delivers_the_invitation_through_smtp(
    client: httpx.Client, smtp: Mailbox
) -> None:
    email = _email()
    invite = client.post("/org/invites", json={"email": email, "sendEmail": True}).json()
    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert message["To"] == email
    assert invite["inviteUrl"] in message.get_payload(decode=True).decode()


def test_invitation_and_verification_tokens_never_reach_the_access_log(
    api: str, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The request log `serve` writes (one line per request, logger `sailplane.http`)."""
    token = client.post("/org/invites", json={"email": _email(), "sendEmail": False}).json()[
        "invitationToken"
    ]
    caplog.set_level(logging.INFO, logger="sailplane.http")
    with _anonymous(api) as anonymous:
        assert anonymous.get(f"/org/invites/{token}").status_code == 200
        anonymous.post(f"/org/invites/{token}/accept", json={})
        anonymous.get("/auth/verify-email", params={"token": "sp-verify-secret"})
    lines = [r.getMessage() for r in caplog.records if r.name == "sailplane.http"]
    logged = " ".join(lines) + repr([vars(r) for r in caplog.records if r.name == "sailplane.http"])
    assert any("/org/invites/[redacted]/accept" in line for line in lines), lines
    assert token not in logged and "sp-verify-secret" not in logged, lines


def test_an_invitation_email_that_fails_or_cannot_be_sent_is_recorded_and_shown(
    api: str, system: System, client: httpx.Client, smtp: Mailbox
) -> None:
    from sailplane.infra_adapters.mail import SmtpMailer
    from tests.services import free_port

    def invite(send_email: bool = True) -> dict:
        created = client.post("/org/invites", json={"email": _email(), "sendEmail": send_email})
        assert created.status_code == 201, created.text
        return created.json()

    def described(token: str) -> dict:
        with _anonymous(api) as anonymous:
            return anonymous.get(f"/org/invites/{token}").json()

    sent = invite()
    assert (sent["emailStatus"], sent["emailMessage"]) == ("sent", None)
    assert len(smtp.messages) == 1
    assert invite(send_email=False)["emailStatus"] == "not_requested"

    working = system.email.mailer
    try:
        system.email.mailer = None
        unconfigured = invite()
        assert unconfigured["emailStatus"] == "not_configured"
        assert "SAILPLANE_SMTP_HOST" in unconfigured["emailMessage"]
        # Nothing listens on this port: the SMTP connection is refused.
        system.email.mailer = SmtpMailer(
            "127.0.0.1", free_port(), "sailplane@example.com", timeout=5
        )
        failed = invite()
    finally:
        system.email.mailer = working
    assert failed["emailStatus"] == "failed"
    assert failed["email"] in failed["emailMessage"]
    assert described(failed["invitationToken"])["emailStatus"] == "failed"
    assert described(unconfigured["invitationToken"])["emailStatus"] == "not_configured"
    assert described(sent["invitationToken"])["emailStatus"] == "sent"
    assert len(smtp.messages) == 1
