"""MFA over HTTP: TOTP enrollment and verification, the second sign-in step, recovery
codes, trusted devices, and resets that end every login on the very next request."""

from __future__ import annotations

import time

import httpx
import pyotp

from sailplane.system import System
from tests.conftest import Org, http_client
from tests.e2e.identity.conftest import Person, person, sign_in, signed_in_client


def _anonymous(api: str) -> httpx.Client:
    return httpx.Client(base_url=api + "/api/v1", timeout=30)


def _code(secret: str, *, offset_steps: int = 0) -> str:
    totp = pyotp.TOTP(secret)
    return totp.at(time.time() + offset_steps * totp.interval)


def enroll(api: str, who: Person) -> tuple[str, list[str]]:
    """Enroll TOTP for `who`; returns the secret and the recovery codes."""
    with signed_in_client(api, who) as c:
        started = c.post("/me/mfa/totp")
        assert started.status_code == 201
        secret = started.json()["secret"]
        assert started.json()["otpauthUri"].startswith("otpauth://totp/")
        assert who.email.replace("@", "%40") in started.json()["otpauthUri"]
        wrong = c.post(
            "/me/mfa/totp/verify",
            json={"code": "000000" if _code(secret) != "000000" else "111111"},
        )
        assert wrong.status_code == 422
        verified = c.post("/me/mfa/totp/verify", json={"code": _code(secret, offset_steps=-1)})
        assert verified.status_code == 200
        codes = verified.json()["recoveryCodes"]
        assert len(codes) == 10 and len(set(codes)) == 10
        again = c.post("/me/mfa/totp")
        assert again.status_code == 409
        assert again.json()["code"] == "mfa_already_enabled"
    return secret, codes


def test_enrolled_users_take_a_second_step_with_a_totp_code(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    who = person(system, org)
    secret, _ = enroll(api, who)
    info = client.get(f"/org/members/{who.member_id}").json()["included"]["users"][0]["auth"]
    assert info == {"has2FA": True, "hasPassword": True, "hasRecovery": True}

    first = sign_in(api, who.email, who.password)
    assert first.status_code == 200
    challenge = first.json()
    assert challenge["mfaRequired"] is True
    assert challenge["token"] is None
    assert challenge["mfaToken"].startswith("spc_")
    # The challenge is not a bearer token.
    with http_client(api, challenge["mfaToken"]) as not_yet:
        assert not_yet.get("/me").status_code == 401

    with _anonymous(api) as anonymous:
        wrong = anonymous.post(
            "/auth/login/mfa", json={"mfaToken": challenge["mfaToken"], "code": "12345x"}
        )
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "invalid_mfa_code"
        code = _code(secret)
        done = anonymous.post(
            "/auth/login/mfa", json={"mfaToken": challenge["mfaToken"], "code": code}
        )
        assert done.status_code == 200, done.text
        assert done.json()["mfaRequired"] is False
        token = done.json()["token"]
        # A challenge is used once.
        replay = anonymous.post(
            "/auth/login/mfa", json={"mfaToken": challenge["mfaToken"], "code": code}
        )
        assert replay.status_code == 401
    with http_client(api, token) as c:
        assert c.get("/me").json()["user"]["id"] == who.user_id

    # The same code cannot sign in twice (replay protection by time step).
    second = sign_in(api, who.email, who.password).json()
    with _anonymous(api) as anonymous:
        reused = anonymous.post(
            "/auth/login/mfa", json={"mfaToken": second["mfaToken"], "code": code}
        )
        assert reused.status_code == 401


def test_a_challenge_allows_five_wrong_codes(api: str, system: System, org: Org) -> None:
    who = person(system, org)
    secret, _ = enroll(api, who)
    challenge = sign_in(api, who.email, who.password).json()["mfaToken"]
    with _anonymous(api) as anonymous:
        for _ in range(5):
            assert (
                anonymous.post(
                    "/auth/login/mfa", json={"mfaToken": challenge, "code": "99999x"}
                ).status_code
                == 401
            )
        locked = anonymous.post(
            "/auth/login/mfa", json={"mfaToken": challenge, "code": _code(secret, offset_steps=1)}
        )
        assert locked.status_code == 401
        assert locked.json()["code"] == "invalid_mfa_token"


def test_recovery_codes_work_once(api: str, system: System, org: Org) -> None:
    who = person(system, org)
    _, codes = enroll(api, who)
    with _anonymous(api) as anonymous:
        challenge = sign_in(api, who.email, who.password).json()["mfaToken"]
        used = anonymous.post(
            "/auth/login/mfa", json={"mfaToken": challenge, "recoveryCode": codes[0]}
        )
        assert used.status_code == 200
        challenge = sign_in(api, who.email, who.password).json()["mfaToken"]
        again = anonymous.post(
            "/auth/login/mfa", json={"mfaToken": challenge, "recoveryCode": codes[0]}
        )
        assert again.status_code == 401
        both = anonymous.post(
            "/auth/login/mfa",
            json={"mfaToken": challenge, "recoveryCode": codes[1], "code": "123456"},
        )
        assert both.status_code == 422


def test_a_trusted_device_skips_the_second_step_until_revoked(
    api: str, system: System, org: Org
) -> None:
    who = person(system, org)
    secret, _ = enroll(api, who)
    challenge = sign_in(api, who.email, who.password, deviceId="work-laptop").json()["mfaToken"]
    with _anonymous(api) as anonymous:
        done = anonymous.post(
            "/auth/login/mfa",
            json={"mfaToken": challenge, "code": _code(secret), "trustDevice": True},
        ).json()
    device_token = done["trustedDeviceToken"]
    assert device_token.startswith("spd_")

    trusted = sign_in(api, who.email, who.password, trustedDeviceToken=device_token)
    assert trusted.json()["mfaRequired"] is False
    assert trusted.json()["token"]

    with http_client(api, trusted.json()["token"]) as c:
        devices = c.get("/me/trusted-devices").json()["items"]
        assert len(devices) == 1
        assert devices[0]["deviceId"] == "work-laptop"
        assert set(devices[0]) == {
            "id",
            "deviceId",
            "expiresAt",
            "createdAt",
            "remoteIp",
            "userAgent",
        }
        assert c.delete(f"/me/trusted-devices/{devices[0]['id']}").status_code == 204
        assert c.get("/me/trusted-devices").json()["items"] == []
        assert c.delete(f"/me/trusted-devices/{devices[0]['id']}").status_code == 404
    again = sign_in(api, who.email, who.password, trustedDeviceToken=device_token)
    assert again.json()["mfaRequired"] is True
    # A trusted-device token of someone else does not help.
    other = person(system, org)
    enroll(api, other)
    assert (
        sign_in(api, other.email, other.password, trustedDeviceToken=device_token).json()[
            "mfaRequired"
        ]
        is True
    )


def test_resetting_my_mfa_ends_every_login_at_once(api: str, system: System, org: Org) -> None:
    who = person(system, org)
    secret, _ = enroll(api, who)
    challenge = sign_in(api, who.email, who.password).json()["mfaToken"]
    with _anonymous(api) as anonymous:
        token = anonymous.post(
            "/auth/login/mfa", json={"mfaToken": challenge, "code": _code(secret)}
        ).json()["token"]
    with (
        http_client(api, token) as c,
        http_client(api, sign_in(api, who.email, who.password).json()["mfaToken"]),
    ):
        assert c.delete("/me/mfa").status_code == 204
        refused = c.get("/me")
        assert refused.status_code == 401
    # MFA is gone: the next sign-in needs no second step.
    plain = sign_in(api, who.email, who.password).json()
    assert plain["mfaRequired"] is False


def test_an_admin_reset_of_a_users_mfa_ends_their_logins_at_once(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    who = person(system, org)
    with signed_in_client(api, who) as c:
        assert c.get("/me").status_code == 200
        assert client.delete(f"/org/users/{who.user_id}/mfa").status_code == 204
        assert c.get("/me").status_code == 401
    info = client.get(f"/org/members/{who.member_id}").json()["included"]["users"][0]["auth"]
    assert info["has2FA"] is False


def test_an_admin_may_not_reset_an_owners_mfa(api: str, system: System, org: Org) -> None:
    admin = person(system, org, ["ADMIN"])
    owner_user = system.identity.directory.member(org.id, org.owner_member_id)["user_id"]
    with signed_in_client(api, admin) as c:
        response = c.delete(f"/org/users/{owner_user}/mfa")
        assert response.status_code == 403
        assert response.json()["code"] == "owner_required"


def test_verifying_without_an_enrollment_is_409(api: str, system: System, org: Org) -> None:
    who = person(system, org)
    with signed_in_client(api, who) as c:
        response = c.post("/me/mfa/totp/verify", json={"code": "123456"})
        assert response.status_code == 409
        assert response.json()["code"] == "mfa_enrollment_not_started"


def test_totp_secrets_are_stored_sealed_never_in_clear(api: str, system: System, org: Org) -> None:
    who = person(system, org)
    secret, _ = enroll(api, who)
    with system.event_log.database.connect() as conn:
        stored = conn.execute(
            "SELECT convert_from(state, 'UTF8') FROM sailplane_events WHERE originator_id = %s",
            (who.user_id,),
        ).fetchall()
    assert stored
    assert all(secret not in row[0] for row in stored), (
        "the TOTP secret is in the event store in clear"
    )
