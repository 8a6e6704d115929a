"""The notifier end to end: a real SMTP server, a real webhook receiver, the real log.

Run events come from the test-only `SampleRun` source (see `tests/notification_support.py`),
mapped through the same registry the job-runs context uses.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sailplane.domain.base import Actor
from sailplane.infra_adapters.webhooks import SIGNATURE_HEADER, WebhookGuard, verify_signature
from sailplane.projections.event_log import read_log
from sailplane.projections.notifications import NotificationsProjection
from sailplane.projections.runner import rebuild
from sailplane.system import System
from tests.conftest import Org
from tests.e2e.identity.conftest import Mailbox
from tests.e2e.notifications.test_channels_and_rules import SECRET, webhook_channel
from tests.notification_support import (
    NotifierDriver,
    Receiver,
    SampleRun,
    SampleRuns,
    webhook_receiver,
)
from tests.services import free_port


def _team(client: httpx.Client) -> str:
    return client.post("/org/teams", json={"name": f"team-{uuid.uuid4().hex[:8]}"}).json()["team"][
        "id"
    ]


def email_channel(client: httpx.Client, team: str, address: str = "ops@example.com") -> dict:
    response = client.post(
        "/notifications/channels",
        json={"type": "email", "name": "ops mail", "teamId": team,
              "configWrite": {"addresses": [address]}},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


def rule(client: httpx.Client, team: str, channel_ids: list[str], **extra: object) -> dict:
    body = {"name": "runs", "teamId": team, "eventTypes": ["job_run.terminal"],
            "channelIds": channel_ids, **extra}  # fmt: skip
    response = client.post("/notifications/rules", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(client: httpx.Client, **params: str) -> list[dict]:
    response = client.get("/notifications", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def fail_run(runs: SampleRuns, org: Org, team: str, status: str = "failed") -> str:
    return runs.finish(status, by=Actor.system("test-runs", org.id), team_ids=(team,))


def test_a_failed_run_sends_an_email_and_a_signed_webhook(
    client: httpx.Client,
    org: Org,
    runs: SampleRuns,
    smtp: Mailbox,
    receiver: Receiver,
    notifier: NotifierDriver,
) -> None:
    team = _team(client)
    mail = email_channel(client, team)
    hook = webhook_channel(client, receiver.url, teamId=team)
    created = rule(client, team, [mail["id"], hook["id"]])

    run_id = fail_run(runs, org, team)
    notifier.pump()

    # The email reached the SMTP server.
    assert len(smtp.messages) == 1
    assert smtp.messages[0]["To"] == "ops@example.com"
    assert f"Run {run_id} failed" in smtp.messages[0]["Subject"]
    # The webhook body is a CloudEvent, and its signature verifies with the channel secret.
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert verify_signature(
        SECRET, headers[SIGNATURE_HEADER], body, now=notifier.clock().timestamp()
    )
    assert not verify_signature("another-secret-entirely", headers[SIGNATURE_HEADER], body,
                                now=notifier.clock().timestamp())  # fmt: skip
    event = receiver.bodies()[0]
    assert (
        event["specversion"] == "1.0" and event["type"] == "sailplane.notification.job_run.failed"
    )
    assert event["subject"] == run_id
    assert event["data"]["payload"] == {"jobId": "JOB0000001", "status": "failed"}
    assert headers["Sailplane-Delivery"] == event["id"] == event["data"]["deliveryId"]

    log = deliveries(client, ruleId=created["id"])
    assert sorted(d["channelId"] for d in log) == sorted([mail["id"], hook["id"]])
    assert {d["status"] for d in log} == {"delivered"}
    assert all(d["attempts"] == 1 and d["deliveredAt"] for d in log)
    # A completed run is in the same rule (the terminal shortcut); a running one is not notable.
    runs.finish("running", by=Actor.system("test-runs", org.id), team_ids=(team,))
    notifier.pump()
    assert len(receiver.requests) == 1


def test_a_receiver_failing_twice_gets_the_event_once_after_retries(
    client: httpx.Client, org: Org, runs: SampleRuns, notifier: NotifierDriver
) -> None:
    team = _team(client)
    with webhook_receiver(statuses=[500, 500]) as flaky:
        hook = webhook_channel(client, flaky.url, teamId=team)
        rule(client, team, [hook["id"]])
        fail_run(runs, org, team)
        notifier.pump()
        # The first attempt failed: the retry is scheduled, nothing waited for it.
        assert len(flaky.requests) == 1
        [waiting] = deliveries(client, channelId=hook["id"])
        assert waiting["status"] == "delivering" and waiting["attempts"] == 1
        assert waiting["nextAttemptAt"] and waiting["statusMessage"]
        notifier.pump()  # not due yet: nothing sent
        assert len(flaky.requests) == 1
        notifier.pump_retries()
    assert len(flaky.requests) == 3
    assert len({h["Sailplane-Delivery"] for h, _ in flaky.requests}) == 1
    # Exponential backoff with jitter (the test's random source gives 75% of the ceiling).
    assert notifier.waits == [0.75, 1.5]
    [delivery] = deliveries(client, channelId=hook["id"])
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3


def test_a_receiver_that_is_down_ends_failed_and_replay_delivers(
    client: httpx.Client, org: Org, runs: SampleRuns, notifier: NotifierDriver
) -> None:
    team = _team(client)
    port = free_port()
    hook = webhook_channel(client, f"http://127.0.0.1:{port}/hook", teamId=team)
    rule(client, team, [hook["id"]])
    fail_run(runs, org, team)
    notifier.pump()
    notifier.pump_retries()
    [failed] = deliveries(client, channelId=hook["id"], status="failed")
    assert failed["attempts"] == 4 and failed["statusMessage"] and not failed["nextAttemptAt"]

    with webhook_receiver(port=port) as back:
        replayed = client.post(f"/notifications/{failed['id']}/replay")
        assert replayed.status_code == 202, replayed.text
        assert replayed.json()["status"] == "pending"
        notifier.pump()
    assert len(back.requests) == 1
    [delivered] = deliveries(client, channelId=hook["id"])
    assert delivered["id"] == failed["id"] and delivered["status"] == "delivered"
    assert client.post(f"/notifications/{failed['id']}/replay").status_code == 409


def test_bulk_replay_by_filter(
    client: httpx.Client, org: Org, runs: SampleRuns, notifier: NotifierDriver
) -> None:
    team = _team(client)
    port = free_port()
    hook = webhook_channel(client, f"http://127.0.0.1:{port}/hook", teamId=team)
    rule(client, team, [hook["id"]])
    for _ in range(3):
        fail_run(runs, org, team)
    notifier.pump()
    notifier.pump_retries()
    assert len(deliveries(client, channelId=hook["id"], status="failed")) == 3
    with webhook_receiver(port=port) as back:
        replayed = client.post("/notifications/replay", json={"channelId": hook["id"]})
        assert replayed.status_code == 202, replayed.text
        assert len(replayed.json()["items"]) == 3
        notifier.pump()
    assert len(back.requests) == 3
    assert {d["status"] for d in deliveries(client, channelId=hook["id"])} == {"delivered"}


def test_a_redelivered_event_is_delivered_once(
    client: httpx.Client,
    org: Org,
    runs: SampleRuns,
    receiver: Receiver,
    notifier: NotifierDriver,
) -> None:
    team = _team(client)
    hook = webhook_channel(client, receiver.url, teamId=team)
    rule(client, team, [hook["id"]])
    fail_run(runs, org, team)
    last = notifier.system.event_log.recorder.max_notification_id() or 0
    batch = []
    while notifier.source._position < last:
        batch += notifier.source.poll(timeout=0.0)
    mine = [
        d
        for d in batch
        if isinstance(d.event, SampleRun.Finished) and d.event.organization_id == org.id
    ]
    assert len(mine) == 1
    # The broker hands the message over again, even to a worker whose inbox missed it:
    # the deterministic ids of the notification event and delivery make it a no-op.
    notifier.notifier.handle(mine[0])
    notifier.notifier.handle(mine[0])
    notifier.worker.process(mine[0])
    notifier.pump()
    assert len(receiver.requests) == 1
    assert len(deliveries(client, channelId=hook["id"])) == 1


def test_a_digest_collects_five_events_into_one_message_at_the_local_time(
    client: httpx.Client,
    org: Org,
    runs: SampleRuns,
    smtp: Mailbox,
    notifier: NotifierDriver,
) -> None:
    team = _team(client)
    mail = email_channel(client, team, "digest@example.com")
    digest = rule(client, team, [mail["id"]], deliveryMode="digest", digestTime="08:00",
                  digestTimezone="Europe/Paris")  # fmt: skip
    # 05:00 UTC on a summer day is 07:00 in Paris: the digest goes out at 06:00 UTC.
    notifier.clock.now = datetime(2026, 7, 1, 5, 0, tzinfo=UTC)
    for status in ("failed", "completed", "timeout", "cancelled", "failed"):
        fail_run(runs, org, team, status)
    notifier.pump()
    pending = deliveries(client, ruleId=digest["id"])
    assert len(pending) == 5 and {d["status"] for d in pending} == {"pending"}
    assert {d["digestAt"] for d in pending} == {"2026-07-01T06:00:00.000Z"}
    assert smtp.messages == []

    notifier.clock.now = datetime(2026, 7, 1, 5, 59, tzinfo=UTC)
    notifier.pump()
    assert smtp.messages == []
    notifier.clock.now += timedelta(minutes=1)
    notifier.pump()
    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert message["To"] == "digest@example.com"
    assert "Digest: 5 notifications" in message["Subject"]
    assert message.get_payload().count("job_run.") == 5
    assert {d["status"] for d in deliveries(client, ruleId=digest["id"])} == {"delivered"}
    notifier.pump()
    assert len(smtp.messages) == 1


def test_muted_and_disabled_rules_record_skipped(
    client: httpx.Client,
    org: Org,
    runs: SampleRuns,
    receiver: Receiver,
    notifier: NotifierDriver,
) -> None:
    team = _team(client)
    hook = webhook_channel(client, receiver.url, teamId=team)
    muted = rule(client, team, [hook["id"]], mutedUntil="2999-01-01T00:00:00Z")
    disabled = rule(client, team, [hook["id"]], enabled=False)
    fail_run(runs, org, team)
    notifier.pump()
    assert receiver.requests == []
    [m] = deliveries(client, ruleId=muted["id"])
    [d] = deliveries(client, ruleId=disabled["id"])
    assert m["status"] == d["status"] == "skipped"
    assert "muted" in m["statusMessage"] and "disabled" in d["statusMessage"]
    assert len(deliveries(client, status="skipped", channelId=hook["id"])) == 2


def test_rules_match_only_their_scope(
    client: httpx.Client,
    org: Org,
    runs: SampleRuns,
    receiver: Receiver,
    notifier: NotifierDriver,
) -> None:
    team, other_team = _team(client), _team(client)
    hook = webhook_channel(client, receiver.url, teamId=team)
    on_job = rule(client, team, [hook["id"]], scopeType="resource", scopeId="JOBWATCHED")
    on_team = rule(client, team, [hook["id"]])
    runs.finish("failed", by=Actor.system("t", org.id), job_id="JOBWATCHED", team_ids=(other_team,))
    notifier.pump()
    assert [d["ruleId"] for d in deliveries(client, channelId=hook["id"])] == [on_job["id"]]
    runs.finish("failed", by=Actor.system("t", org.id), job_id="JOBOTHER", team_ids=(team,))
    notifier.pump()
    assert deliveries(client, channelId=hook["id"])[0]["ruleId"] == on_team["id"]
    assert len(receiver.requests) == 2


def test_the_test_endpoint_sends_a_real_message_and_sets_verified_at(
    client: httpx.Client, receiver: Receiver, smtp: Mailbox
) -> None:
    team = _team(client)
    hook = webhook_channel(client, receiver.url, teamId=team)
    tested = client.post(f"/notifications/channels/{hook['id']}/test")
    assert tested.status_code == 204, tested.text
    assert receiver.bodies()[0]["type"] == "sailplane.notification.test"
    assert client.get(f"/notifications/channels/{hook['id']}").json()["verifiedAt"]

    mail = email_channel(client, team, "check@example.com")
    assert client.post(f"/notifications/channels/{mail['id']}/test").status_code == 204
    assert smtp.messages[-1]["To"] == "check@example.com"

    dead = webhook_channel(client, f"http://127.0.0.1:{free_port()}/x", teamId=team)
    failed = client.post(f"/notifications/channels/{dead['id']}/test")
    assert failed.status_code == 409 and failed.json()["code"] == "channel_test_failed"
    assert client.get(f"/notifications/channels/{dead['id']}").json()["verifiedAt"] is None


def test_notification_events_and_deliveries_are_published_on_their_topic(
    system: System,
    client: httpx.Client,
    org: Org,
    runs: SampleRuns,
    receiver: Receiver,
    notifier: NotifierDriver,
) -> None:
    team = _team(client)
    hook = webhook_channel(client, receiver.url, teamId=team)
    rule(client, team, [hook["id"]])
    fail_run(runs, org, team)
    notifier.pump()
    events, _ = read_log(system.event_log, after=0, limit=1000, organization_id=org.id)
    published = [e for e in events if e.context == "notifications"]
    types = [e.type for e in published]
    assert "sailplane.notifications.NotificationEvent.Raised" in types
    assert "sailplane.notifications.NotificationDelivery.Delivered" in types
    # The webhook secret (sealed) never reaches the topic.
    created = next(e for e in published if e.type.endswith("NotificationChannel.Created"))
    assert created.data["secret"] == "[redacted]"


def test_a_delivery_a_stopped_worker_left_delivering_is_sent_again(
    system: System,
    client: httpx.Client,
    org: Org,
    runs: SampleRuns,
    receiver: Receiver,
    notifier: NotifierDriver,
) -> None:
    team = _team(client)
    hook = webhook_channel(client, receiver.url, teamId=team)
    rule(client, team, [hook["id"]], deliveryMode="digest", digestTime="08:00")
    notifier.clock.now = datetime(2026, 7, 1, 5, 0, tzinfo=UTC)
    fail_run(runs, org, team)
    notifier.pump()
    [pending] = deliveries(client, channelId=hook["id"])
    # A worker takes it and dies between "delivering" and the send.
    system.notifications.commands.start_delivery(pending["id"], by=Actor.system("notifier", org.id))
    notifier.pump()
    assert deliveries(client, channelId=hook["id"])[0]["status"] == "delivering"
    assert receiver.requests == []
    notifier.clock.now = datetime.now(UTC) + timedelta(minutes=16)
    notifier.pump()
    [resent] = deliveries(client, channelId=hook["id"])
    assert resent["status"] == "delivered"
    assert len(receiver.requests) == 1
    notifier.pump()
    assert len(receiver.requests) == 1, "sent once more, not on every tick"


def test_a_member_channel_mails_the_members_verified_address(
    system: System,
    client: httpx.Client,
    org: Org,
    runs: SampleRuns,
    smtp: Mailbox,
    notifier: NotifierDriver,
) -> None:
    team = _team(client)
    address = f"person-{uuid.uuid4().hex[:8]}@example.com"
    member_id, _ = system.identity.commands.add_member(
        email=address, display_name="Person", role_ids=["MEMBER"], by=org.owner
    )
    user_id = system.identity.commands.user_by_email(address).id
    channel = client.post(
        "/notifications/channels",
        json={"type": "member", "name": "person", "teamId": team,
              "configWrite": {"memberId": member_id}},
    ).json()  # fmt: skip
    rule(client, team, [channel["id"]])
    fail_run(runs, org, team)
    notifier.pump()
    [unverified] = deliveries(client, channelId=channel["id"])
    assert unverified["status"] == "failed"
    assert unverified["statusMessage"] == "the member has no verified email address"
    assert smtp.messages == []

    other = f"other-{uuid.uuid4().hex[:8]}@example.com"
    _, token, _ = system.identity.commands.add_email(user_id, other, by=org.owner)
    system.wait_for_views(system.identity.commands.verify_email(token)[2])
    assert client.post(f"/notifications/{unverified['id']}/replay").status_code == 202
    notifier.pump()
    assert [m["To"] for m in smtp.messages] == [other]


def test_sailplane_worker_notifier_runs_the_notifier_over_the_log(
    system: System, client: httpx.Client, org: Org, runs: SampleRuns, receiver: Receiver
) -> None:
    assert "notifier" in system.worker_names()
    team = _team(client)
    hook = webhook_channel(client, receiver.url, teamId=team)
    rule(client, team, [hook["id"]])
    fail_run(runs, org, team)
    worker = system.worker("notifier")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not receiver.requests:
            assert time.monotonic() < deadline, "the notifier worker sent nothing"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert len(receiver.requests) == 1


def _delivery_rows(system: System) -> list[dict]:
    with system.pool.connection() as conn, conn.cursor() as cur:
        return sorted(cur.execute("SELECT * FROM notification_deliveries").fetchall(), key=repr)


def test_a_scheduled_retry_is_not_reclaimed_as_stalled_and_views_rebuild_the_same(
    system: System, client: httpx.Client, org: Org, runs: SampleRuns, notifier: NotifierDriver
) -> None:
    team = _team(client)
    with webhook_receiver(statuses=[503]) as flaky:
        hook = webhook_channel(client, flaky.url, teamId=team)
        rule(client, team, [hook["id"]])
        fail_run(runs, org, team)
        notifier.pump()
        [waiting] = deliveries(client, channelId=hook["id"])
        assert waiting["status"] == "delivering" and waiting["nextAttemptAt"]
        # The retry state (attempts, nextAttemptAt) is a function of the events alone.
        live = _delivery_rows(system)
        rebuild(system.event_log, NotificationsProjection, system.pool, batch_size=3)
        assert _delivery_rows(system) == live
        # The worker was away longer than the stall limit: the retry is sent, not abandoned.
        notifier.clock.now += timedelta(minutes=16)
        notifier.pump()
    [delivered] = deliveries(client, channelId=hook["id"])
    assert delivered["status"] == "delivered" and delivered["attempts"] == 2
    assert delivered["nextAttemptAt"] is None
    assert len(flaky.requests) == 2


def test_a_failing_receiver_does_not_hold_up_other_channels(
    client: httpx.Client, org: Org, runs: SampleRuns, receiver: Receiver, notifier: NotifierDriver
) -> None:
    team = _team(client)
    with webhook_receiver(statuses=[500, 500, 500]) as flaky:
        bad = webhook_channel(client, flaky.url, teamId=team)
        good = webhook_channel(client, receiver.url, teamId=team)
        rule(client, team, [bad["id"], good["id"]])
        fail_run(runs, org, team)
        notifier.pump()
        # One pump: the good channel has its message, the bad one one attempt and a schedule.
        assert len(receiver.requests) == 1 and len(flaky.requests) == 1
        assert notifier.waits == []
        notifier.pump_retries()
    assert len(flaky.requests) == 4
    assert deliveries(client, channelId=bad["id"])[0]["status"] == "delivered"


def test_by_default_a_private_webhook_target_is_refused_on_write_and_at_send(
    system: System,
    client: httpx.Client,
    org: Org,
    runs: SampleRuns,
    receiver: Receiver,
    notifier: NotifierDriver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    team = _team(client)
    # Written while private targets were allowed (as the test system allows them).
    hook = webhook_channel(client, receiver.url, teamId=team)
    rule(client, team, [hook["id"]])
    monkeypatch.setattr(system.notifications.commands, "webhook_guard", WebhookGuard())
    body = {"type": "webhook", "name": "hooks", "teamId": team}
    for url in (receiver.url, "http://[::1]/hook", "http://169.254.169.254/latest"):
        created = client.post(
            "/notifications/channels", json={**body, "configWrite": {"url": url, "secret": SECRET}}
        )
        assert created.status_code == 422, created.text
        assert created.json()["field"] == "configWrite.url"
        assert "SAILPLANE_WEBHOOK_ALLOW_PRIVATE" in created.json()["message"]
    patched = client.patch(
        f"/notifications/channels/{hook['id']}",
        json={"configWrite": {"url": "http://localhost:9/hook"}},
    )
    assert patched.status_code == 422 and patched.json()["field"] == "configWrite.url"
    # The channel written before is checked again when sending: a failed attempt, no call.
    fail_run(runs, org, team)
    notifier.pump()
    [refused] = deliveries(client, channelId=hook["id"])
    assert refused["status"] == "failed" and refused["attempts"] == 1
    assert "not globally routable" in refused["statusMessage"] and refused["nextAttemptAt"] is None
    assert receiver.requests == []
