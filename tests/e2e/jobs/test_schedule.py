"""A job's schedule over HTTP: the preview of its next fire times, `nextRunAt` and
`lastScheduledAt` (docs/api.md "Scheduling")."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from sailplane.domain.scheduling import slot_run_id
from sailplane.infra_adapters.scheduler import RunsForScheduler
from sailplane.system import System
from tests.conftest import Org
from tests.e2e.jobs.conftest import create_job


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_the_preview_lists_the_next_fire_times_in_utc_and_local_time(
    client: httpx.Client, cluster: str, team: str
) -> None:
    job = create_job(
        client, cluster, team, cronExpression="30 2 * * *", cronTimezone="America/New_York"
    )
    preview = client.get(f"/workloads/jobs/{job['id']}/schedule/preview", params={"count": 40})
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["jobId"], body["status"], body["cronExpression"], body["cronTimezone"]) == (
        job["id"],
        "active",
        "30 2 * * *",
        "America/New_York",
    )
    times = body["fireTimes"]
    assert len(times) == 40
    instants = [parse(t["utc"]) for t in times]
    assert instants == sorted(instants) and len(set(instants)) == 40
    for t in times:
        utc, local = parse(t["utc"]), datetime.fromisoformat(t["local"])
        assert utc == local  # the same instant, written in the zone's offset of the day
        # 02:30 every day; on a spring-forward day 02:30 does not exist: 03:00 instead.
        assert (local.hour, local.minute) in ((2, 30), (3, 0))
        assert local.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))
    # nextRunAt is the first fire time.
    described = client.get(f"/workloads/jobs/{job['id']}").json()["included"]["jobs"][0]
    assert described["nextRunAt"] == times[0]["utc"]


def test_the_preview_count_is_bounded_and_defaults_to_ten(
    client: httpx.Client, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team, cronExpression="*/5 * * * *")
    path = f"/workloads/jobs/{job['id']}/schedule/preview"
    assert len(client.get(path).json()["fireTimes"]) == 10
    for bad in (0, 101, "x"):
        assert client.get(path, params={"count": bad}).status_code == 400


def test_a_job_without_a_schedule_previews_nothing(
    client: httpx.Client, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team)
    body = client.get(f"/workloads/jobs/{job['id']}/schedule/preview").json()
    assert body["cronExpression"] is None and body["fireTimes"] == []
    assert job["nextRunAt"] is None and job["lastScheduledAt"] is None


def test_a_paused_job_has_no_next_run_but_still_previews_its_schedule(
    client: httpx.Client, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team, cronExpression="0 * * * *")
    assert job["nextRunAt"] is not None
    paused = client.patch(f"/workloads/jobs/{job['id']}", json={"status": "paused"})
    assert paused.status_code == 200, paused.text
    described = client.get(f"/workloads/jobs/{job['id']}").json()["included"]["jobs"][0]
    assert described["nextRunAt"] is None
    body = client.get(f"/workloads/jobs/{job['id']}/schedule/preview").json()
    assert body["status"] == "paused" and len(body["fireTimes"]) == 10


def test_last_scheduled_at_is_the_latest_slot_the_scheduler_made_a_run_for(
    client: httpx.Client, system: System, org: Org, cluster: str, team: str
) -> None:
    job = create_job(
        client, cluster, team, cronExpression="0 * * * *", config={"sql": {"source": "SELECT 1"}}
    )
    slots = [
        parse(t["utc"])
        for t in client.get(
            f"/workloads/jobs/{job['id']}/schedule/preview", params={"count": 2}
        ).json()["fireTimes"]
    ]
    runs = RunsForScheduler(system.runs.commands)
    for slot in reversed(slots):  # out of order: the latest slot wins
        assert runs.create_scheduled_run(
            org.id, job["id"], run_id=slot_run_id(job["id"], slot), slot=slot
        )
    assert system.views_reached(system.event_log.head())
    described = client.get(f"/workloads/jobs/{job['id']}").json()["included"]["jobs"][0]
    assert parse(described["lastScheduledAt"]) == slots[-1]
    listed = client.get("/workloads/jobs").json()
    (row,) = [j for j in listed["included"]["jobs"] if j["id"] == job["id"]]
    assert parse(row["lastScheduledAt"]) == slots[-1]
    run = client.get(f"/workloads/jobs/{job['id']}/runs/{slot_run_id(job['id'], slots[0])}")
    assert run.status_code == 200, run.text
    assert run.json()["trigger"] == "schedule"
