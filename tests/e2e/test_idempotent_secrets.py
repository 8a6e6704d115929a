"""Responses recorded for `Idempotency-Key` replays never put a secret in the event log.

Every endpoint that shows a secret once is called with a key, then again with the same
key: the replay is the same response, and neither the log nor the replay table holds any
of the secrets in clear.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pyotp

from sailplane.infra_adapters.replay_bodies import BODIES_TABLE
from sailplane.system import System
from tests.conftest import Org
from tests.e2e.identity.conftest import person, signed_in_client
from tests.e2e.test_infra import eventually


def _twice(client: httpx.Client, path: str, json: Any = None) -> dict[str, Any]:
    """POST with a fresh key, then replay it: the same status and body, marked replayed."""
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = client.post(path, json=json, headers=key)
    assert first.status_code in (200, 201), first.text
    replayed = client.post(path, json=json, headers=key)
    assert replayed.status_code == first.status_code
    assert replayed.headers.get("idempotent-replayed") == "true"
    assert replayed.json() == first.json()
    return first.json()


def _stored_text(system: System, sql: str) -> str:
    with system.database.connect() as conn:
        return "\n".join(row[0] for row in conn.execute(sql).fetchall())


def test_no_secret_shown_once_reaches_the_log_and_replays_still_answer(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    secrets: list[str] = []

    # TOTP enrollment and its recovery codes
    who = person(system, org)
    with signed_in_client(api, who) as own:
        enrollment = _twice(own, "/me/mfa/totp")
        secrets += [enrollment["secret"], enrollment["otpauthUri"]]
        code = pyotp.TOTP(enrollment["secret"]).at(time.time())
        codes = _twice(own, "/me/mfa/totp/verify", {"code": code})["recoveryCodes"]
        assert len(codes) == 10
        secrets += codes

    # an invitation's token
    invite = _twice(
        client, "/org/invites", {"email": f"invitee-{uuid.uuid4().hex[:8]}@example.com"}
    )
    secrets.append(invite["invitationToken"])

    # a reset's temporary password
    other = person(system, org)
    secrets.append(_twice(client, f"/org/users/{other.user_id}/password/reset")["password"])

    # a session token
    session_id = client.post("/workloads/sessions", json={"name": "replayed"}).json()["id"]
    eventually(
        lambda: client.get(f"/workloads/sessions/{session_id}").json(),
        lambda s: s["status"] == "active",
    )
    token = _twice(client, f"/workloads/sessions/{session_id}/token", {"durationSeconds": 600})
    secrets.append(token["token"])

    assert all(len(s) >= 8 for s in secrets)
    log = _stored_text(system, "SELECT convert_from(state, 'UTF8') FROM sailplane_events")
    leaked = [s for s in secrets if s in log]
    assert not leaked, f"secrets in the event log: {leaked}"
    # The replay table holds them sealed only.
    kept = _stored_text(system, f"SELECT body FROM {BODIES_TABLE}")
    assert kept and not [s for s in secrets if s in kept]
