"""The `notifications` group over HTTP: event types, channels and rules, rule by rule."""

from __future__ import annotations

import uuid

import httpx

from sailplane.system import System
from tests.conftest import Org, add_member_with_token, http_client

SECRET = "s3cret-signing-key-0123456789"
CHANNEL_KEYS = {
    "id", "type", "name", "teamId", "memberId", "config", "status", "statusMessage",
    "verifiedAt", "createdAt", "createdBy", "updatedAt", "updatedBy", "supportsDigest",
}  # fmt: skip
RULE_KEYS = {
    "id", "name", "teamId", "memberId", "resourceType", "scopeType", "scopeId", "eventTypes",
    "deliveryMode", "channelIds", "enabled", "digestTime", "digestTimezone", "digestDayOfWeek",
    "mutedUntil", "createdAt", "createdBy", "updatedAt", "updatedBy",
}  # fmt: skip


def _team(client: httpx.Client) -> str:
    return client.post("/org/teams", json={"name": f"team-{uuid.uuid4().hex[:8]}"}).json()["team"][
        "id"
    ]


def webhook_channel(client: httpx.Client, url: str, **extra: object) -> dict:
    body = {"type": "webhook", "name": "hooks", "configWrite": {"url": url, "secret": SECRET}}
    response = client.post("/notifications/channels", json={**body, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def test_event_types_list_the_catalog_and_the_terminal_shortcut(client: httpx.Client) -> None:
    items = client.get("/notifications/event-types").json()["items"]
    keys = [i["key"] for i in items]
    for key in ("job_run.completed", "job_run.failed", "job_run.timeout", "job_run.cancelled",
                "job_run.skipped", "job_run.dead_letter", "cluster.failed", "cluster.active",
                "operation.failed"):  # fmt: skip
        assert key in keys
    terminal = next(i for i in items if i["key"] == "job_run.terminal")
    assert set(terminal) == {"key", "resourceType", "label", "description", "expandsTo"}
    assert terminal["expandsTo"] == [
        "job_run.completed", "job_run.failed", "job_run.timeout", "job_run.cancelled",
        "job_run.dead_letter",
    ]  # fmt: skip


def test_a_webhook_secret_is_written_but_never_returned(client: httpx.Client) -> None:
    team = _team(client)
    created = webhook_channel(client, "https://example.com/hook", teamId=team)
    assert set(created) == CHANNEL_KEYS | {"configWrite"}
    assert created["teamId"] == team and created["memberId"] is None
    assert created["status"] == "active" and created["verifiedAt"] is None
    assert created["config"] == {"url": "https://example.com/hook", "secretConfigured": True}
    assert SECRET not in client.get(f"/notifications/channels/{created['id']}").text
    listed = client.get("/notifications/channels", params={"teamId": team}).json()
    assert [c["id"] for c in listed["items"]] == [created["id"]]
    assert set(listed["items"][0]) == CHANNEL_KEYS and listed["marker"] is None

    # configWrite is a merge patch: the URL changes, the secret stays.
    patched = client.patch(
        f"/notifications/channels/{created['id']}",
        json={"configWrite": {"url": "https://example.com/other"}, "status": "disabled"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["config"] == {
        "url": "https://example.com/other",
        "secretConfigured": True,
    }
    assert patched.json()["status"] == "disabled"


def test_channel_values_are_checked(client: httpx.Client) -> None:
    team = _team(client)
    cases = [
        {"type": "pager", "name": "x", "teamId": team},
        {"type": "webhook", "name": "x", "teamId": team, "configWrite": {"url": "ftp://x"}},
        {"type": "webhook", "name": "x", "teamId": team,
         "configWrite": {"url": "https://x.example", "secret": "short"}},
        {"type": "email", "name": "x", "teamId": team, "configWrite": {"addresses": ["nope"]}},
        {"type": "email", "name": "x", "teamId": "NOSUCHTEAM",
         "configWrite": {"addresses": ["a@example.com"]}},
        {"type": "email", "name": "x", "teamId": team, "status": "paused",
         "configWrite": {"addresses": ["a@example.com"]}},
    ]  # fmt: skip
    for body in cases:
        response = client.post("/notifications/channels", json=body)
        assert response.status_code == 422, (body, response.text)
    unknown = client.post(
        "/notifications/channels", json={"type": "email", "name": "x", "surprise": 1}
    )
    assert unknown.status_code == 400
    assert client.get("/notifications/channels", params={"teamId": team}).json()["items"] == []
    disabled = client.post(
        "/notifications/channels",
        json={"type": "email", "name": "x", "teamId": team, "status": "disabled",
              "configWrite": {"addresses": ["a@example.com"]}},
    )  # fmt: skip
    assert disabled.status_code == 201 and disabled.json()["status"] == "disabled"


def test_a_member_owns_channels_and_rules_of_their_own(
    api: str, system: System, org: Org, client: httpx.Client
) -> None:
    member_id, token = add_member_with_token(system, org, ["MEMBER"])
    with http_client(api, token) as member:
        mine = member.post(
            "/notifications/channels", json={"type": "member", "name": "me", "configWrite": {}}
        )
        assert mine.status_code == 201, mine.text
        assert mine.json()["memberId"] == member_id
        assert mine.json()["config"] == {"memberId": member_id}
        rule = member.post(
            "/notifications/rules",
            json={"name": "my runs", "eventTypes": ["job_run.failed"],
                  "channelIds": [mine.json()["id"]]},
        )  # fmt: skip
        assert rule.status_code == 201, rule.text
        assert rule.json()["scopeType"] == "own_resources"
        assert rule.json()["scopeId"] == member_id
        # A plain Member may not change what a team owns, nor subscribe the organization.
        team_channel = webhook_channel(client, "https://example.com/h", teamId=_team(client))
        denied = member.delete(f"/notifications/channels/{team_channel['id']}")
        assert denied.status_code == 403
        borrowed = member.post(
            "/notifications/rules",
            json={"name": "x", "eventTypes": ["job_run.failed"],
                  "channelIds": [team_channel["id"]]},
        )  # fmt: skip
        assert borrowed.status_code == 403
        org_rule = member.post(
            "/notifications/rules",
            json={"name": "all", "scopeType": "organization", "eventTypes": ["job_run.failed"],
                  "channelIds": [mine.json()["id"]]},
        )  # fmt: skip
        assert org_rule.status_code == 403


def test_rules_expand_shortcuts_and_filter(client: httpx.Client) -> None:
    team = _team(client)
    channel = webhook_channel(client, "https://example.com/hook", teamId=team)
    created = client.post(
        "/notifications/rules",
        json={"name": "Terminal runs", "teamId": team, "eventTypes": ["job_run.terminal"],
              "channelIds": [channel["id"]]},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    rule = created.json()
    assert set(rule) == RULE_KEYS
    assert rule["eventTypes"] == [
        "job_run.completed", "job_run.failed", "job_run.timeout", "job_run.cancelled",
        "job_run.dead_letter",
    ]  # fmt: skip
    assert rule["resourceType"] == "job_run"
    assert (rule["scopeType"], rule["scopeId"]) == ("team", team)
    assert rule["deliveryMode"] == "immediate" and rule["enabled"] is True

    cluster_rule = client.post(
        "/notifications/rules",
        json={"name": "Clusters", "teamId": team, "scopeType": "organization",
              "eventTypes": ["cluster.failed"], "channelIds": [channel["id"]],
              "deliveryMode": "digest", "digestTime": "08:00",
              "digestTimezone": "America/New_York", "digestDayOfWeek": 1},
    )  # fmt: skip
    assert cluster_rule.status_code == 201, cluster_rule.text
    assert cluster_rule.json()["scopeId"] is None

    def ids(**params: str) -> list[str]:
        response = client.get("/notifications/rules", params={"teamId": team, **params})
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["items"]]

    assert set(ids()) == {rule["id"], cluster_rule.json()["id"]}
    assert ids(resourceType="cluster") == [cluster_rule.json()["id"]]
    assert ids(scopeType="team") == [rule["id"]]
    assert client.get("/notifications/rules", params={"scopeType": "galaxy"}).status_code == 400
    first = client.get("/notifications/rules", params={"teamId": team, "limit": 1}).json()
    second = client.get(
        "/notifications/rules", params={"teamId": team, "limit": 1, "marker": first["marker"]}
    ).json()
    # By name: "Clusters" before "Terminal runs".
    assert [r["id"] for r in first["items"] + second["items"]] == [
        cluster_rule.json()["id"],
        rule["id"],
    ]
    assert second["marker"] is None


def test_rule_updates_mute_disable_and_delete(client: httpx.Client) -> None:
    team = _team(client)
    channel = webhook_channel(client, "https://example.com/hook", teamId=team)
    rule = client.post(
        "/notifications/rules",
        json={"name": "r", "teamId": team, "eventTypes": ["job_run.failed"],
              "channelIds": [channel["id"]]},
    ).json()  # fmt: skip
    path = f"/notifications/rules/{rule['id']}"
    muted = client.patch(path, json={"mutedUntil": "2030-01-01T00:00:00Z", "enabled": False})
    assert muted.status_code == 200, muted.text
    assert muted.json()["mutedUntil"] == "2030-01-01T00:00:00.000Z"
    assert muted.json()["enabled"] is False
    unmuted = client.patch(path, json={"mutedUntil": None})
    assert unmuted.json()["mutedUntil"] is None and unmuted.json()["enabled"] is False
    bad = [
        {"deliveryMode": "digest"},
        {"deliveryMode": "digest", "digestTime": "25:00"},
        {"deliveryMode": "digest", "digestTime": "08:00", "digestTimezone": "Mars/Olympus"},
        {"eventTypes": ["job_run.exploded"]},
        {"channelIds": ["NOSUCHCHAN"]},
    ]
    for body in bad:
        assert client.patch(path, json=body).status_code == 422, body
    assert client.delete(path).status_code == 204
    assert client.get(path).status_code == 404


def test_a_deleted_channel_disappears_but_stays_in_the_log(client: httpx.Client) -> None:
    team = _team(client)
    channel = webhook_channel(client, "https://example.com/hook", teamId=team)
    path = f"/notifications/channels/{channel['id']}"
    assert client.delete(path).status_code == 204
    assert client.get(path).status_code == 404
    assert client.patch(path, json={"name": "again"}).status_code == 404
    assert channel["id"] not in [
        c["id"] for c in client.get("/notifications/channels").json()["items"]
    ]
