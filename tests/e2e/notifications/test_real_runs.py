"""A real failed run notifies: a job with bad SQL on the local Sail cluster fails through
the dispatcher, and the notifier mails the team and calls its signed webhook."""

from __future__ import annotations

import httpx
import pytest

from sailplane.infra_adapters.webhooks import SIGNATURE_HEADER, verify_signature
from tests.e2e.identity.conftest import Mailbox
from tests.e2e.notifications.test_channels_and_rules import SECRET, webhook_channel
from tests.e2e.notifications.test_delivery import deliveries, email_channel, rule
from tests.e2e.test_job_runs import Jobs, dispatcher, jobs, local_cluster, team
from tests.notification_support import NotifierDriver, Receiver

__all__ = ["dispatcher", "jobs", "local_cluster", "team"]  # fixtures used below

pytestmark = pytest.mark.sail


def test_a_failed_run_mails_the_team_and_calls_its_webhook(
    jobs: Jobs,
    team: str,
    client: httpx.Client,
    smtp: Mailbox,
    receiver: Receiver,
    notifier: NotifierDriver,
) -> None:
    mail = email_channel(client, team)
    hook = webhook_channel(client, receiver.url, teamId=team)
    created = rule(client, team, [mail["id"], hook["id"]])

    job = jobs.create(sql="SELEC nonsense")
    run = jobs.run(job)
    jobs.until(run, "failed")
    notifier.pump()

    assert [m["To"] for m in smtp.messages] == ["ops@example.com"]
    assert run["id"] in smtp.messages[0]["Subject"]
    [(headers, body)] = receiver.requests
    assert verify_signature(
        SECRET, headers[SIGNATURE_HEADER], body, now=notifier.clock().timestamp()
    )
    event = receiver.bodies()[0]
    assert event["type"] == "sailplane.notification.job_run.failed"
    assert event["subject"] == run["id"]
    log = deliveries(client, ruleId=created["id"])
    assert {d["status"] for d in log} == {"delivered"} and len(log) == 2
