"""The `jobs` group of the LakeSail API (seeds 001/004), rule by rule, over HTTP."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from sailplane.commands.infra import local_ids
from sailplane.system import System
from tests.conftest import Org, add_member_with_token, found_org, http_client, local_cluster_id
from tests.e2e.jobs.conftest import (
    active_cluster,
    create_job,
    new_team,
    pending_cluster,
    unique,
)

JOB_KEYS = {
    "id",
    "memberId",
    "jobKey",
    "version",
    "currentVersion",
    "draftVersion",
    "basedOnVersion",
    "status",
    "clusterId",
    "description",
    "config",
    "timeoutSeconds",
    "sourceConfig",
    "dependsOn",
    "cronExpression",
    "cronTimezone",
    "concurrencyPolicy",
    "maxConcurrentRuns",
    "missedSchedulePolicy",
    "createdAt",
    "createdBy",
    "updatedAt",
    "nextRunAt",
    "lastScheduledAt",
    "updatedBy",
}
VERSION_KEYS = {
    "jobId",
    "version",
    "basedOnVersion",
    "status",
    "jobType",
    "clusterId",
    "memberId",
    "description",
    "config",
    "timeoutSeconds",
    "sourceConfig",
    "dependsOn",
    "cronExpression",
    "cronTimezone",
    "concurrencyPolicy",
    "maxConcurrentRuns",
    "missedSchedulePolicy",
    "createdAt",
    "createdBy",
    "updatedAt",
    "updatedBy",
    "publishedAt",
    "publishedBy",
}
CONFIG = {
    "sql": {"source": "SELECT 1"},
    "lakesail": {"executionMode": "standalone", "maxRetries": 3},
}


def _versions(client: httpx.Client, job_id: str) -> list[int]:
    listed = client.get(f"/workloads/jobs/{job_id}/versions")
    assert listed.status_code == 200
    return [v["version"] for v in listed.json()["items"]]


def test_create_makes_the_job_and_its_version_one_published_and_active(
    client: httpx.Client, org: Org, cluster: str, team: str
) -> None:
    created = client.post(
        "/workloads/jobs",
        json={
            "jobKey": "daily-sales-etl",
            "status": "active",
            "clusterId": cluster,
            "description": "Daily ETL pipeline for sales data",
            "config": CONFIG,
            "timeoutSeconds": 3600,
            "sourceConfig": {"url": "https://github.com/acme/data-pipelines.git"},
            "dependsOn": [],
            "teamIds": [team],
            "cronExpression": "0 2 * * *",
            "cronTimezone": "America/New_York",
            "concurrencyPolicy": "skip",
            "maxConcurrentRuns": 1,
            "missedSchedulePolicy": "latest",
        },
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert set(job) == JOB_KEYS
    assert (job["version"], job["currentVersion"], job["draftVersion"]) == (1, 1, None)
    assert job["basedOnVersion"] is None
    assert job["clusterId"] == cluster and job["config"] == CONFIG
    assert job["memberId"] == job["createdBy"] == org.owner_member_id
    assert job["nextRunAt"] is not None and job["lastScheduledAt"] is None

    described = client.get(f"/workloads/jobs/{job['id']}")
    assert described.status_code == 200
    body = described.json()
    assert set(body) == {"item", "included"}
    no_usage = {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0, "costMicrousd": 0}
    assert body["item"] == {
        "jobId": job["id"],
        "latestJobRunId": None,
        "teamIds": [team],
        "usage": no_usage,  # the model usage its runs reported (the run runtime)
    }
    assert set(body["included"]) == {"jobs", "jobRuns", "teams"}
    assert body["included"]["jobs"] == [job]
    assert [t["id"] for t in body["included"]["teams"]] == [team]

    versions = client.get(f"/workloads/jobs/{job['id']}/versions").json()
    assert versions["total"] == 1
    (v1,) = versions["items"]
    assert set(v1) == VERSION_KEYS
    assert v1["status"] == "published" and v1["jobType"] == "sql"
    assert v1["createdBy"] == v1["publishedBy"] == org.owner_member_id


def test_create_needs_at_least_one_team_that_exists(client: httpx.Client, cluster: str) -> None:
    no_team = client.post("/workloads/jobs", json={"jobKey": unique(), "clusterId": cluster})
    assert no_team.status_code == 422
    assert no_team.json()["field"] == "teamIds"
    unknown = client.post(
        "/workloads/jobs",
        json={"jobKey": unique(), "clusterId": cluster, "teamIds": ["NOSUCHTEAM"]},
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "team_not_found"


def test_create_needs_an_active_cluster(
    client: httpx.Client, inactive_cluster: str, team: str
) -> None:
    pending = client.post(
        "/workloads/jobs",
        json={"jobKey": unique(), "clusterId": inactive_cluster, "teamIds": [team]},
    )
    assert pending.status_code == 422
    assert pending.json()["code"] == "cluster_not_active"
    assert pending.json()["field"] == "clusterId"
    missing = client.post(
        "/workloads/jobs",
        json={"jobKey": unique(), "clusterId": "NOSUCHCLUSTER", "teamIds": [team]},
    )
    assert missing.status_code == 422
    assert missing.json()["code"] == "cluster_not_found"
    no_cluster = client.post("/workloads/jobs", json={"jobKey": unique(), "teamIds": [team]})
    assert no_cluster.status_code == 400
    assert "clusterId" in no_cluster.json()["message"]


def test_job_key_is_unique_per_organization(
    client: httpx.Client, api: str, system: System, cluster: str, team: str
) -> None:
    create_job(client, cluster, team, jobKey="nightly")
    again = client.post(
        "/workloads/jobs", json={"jobKey": "nightly", "clusterId": cluster, "teamIds": [team]}
    )
    assert again.status_code == 409
    assert again.json()["code"] == "job_key_taken"
    other = found_org(system)
    with http_client(api, other.token) as stranger:
        create_job(
            stranger, local_cluster_id(system, other.id), new_team(stranger), jobKey="nightly"
        )


def test_a_draft_copies_the_active_version_and_the_body_overrides(
    client: httpx.Client, org: Org, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team, config=CONFIG, timeoutSeconds=60)
    draft = client.post(f"/workloads/jobs/{job['id']}/draft", json={"timeoutSeconds": 120})
    assert draft.status_code == 201, draft.text
    body = draft.json()
    assert set(body) == VERSION_KEYS
    assert (body["version"], body["status"], body["basedOnVersion"]) == (2, "draft", 1)
    assert body["timeoutSeconds"] == 120 and body["config"] == CONFIG
    assert body["publishedBy"] is None
    assert client.get(f"/workloads/jobs/{job['id']}/draft").json() == body
    described = client.get(f"/workloads/jobs/{job['id']}").json()["included"]["jobs"][0]
    assert (described["currentVersion"], described["draftVersion"]) == (1, 2)
    assert described["timeoutSeconds"] == 60  # the active version is unchanged


def test_at_most_one_draft(client: httpx.Client, cluster: str, team: str) -> None:
    job = create_job(client, cluster, team)
    assert client.post(f"/workloads/jobs/{job['id']}/draft", json={}).status_code == 201
    second = client.post(f"/workloads/jobs/{job['id']}/draft", json={})
    assert second.status_code == 409
    assert second.json()["code"] == "job_draft_exists"


def test_patch_draft_changes_only_the_fields_sent(
    client: httpx.Client, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team, timeoutSeconds=60, maxConcurrentRuns=3)
    client.post(f"/workloads/jobs/{job['id']}/draft", json={"description": "v2"})
    patched = client.patch(f"/workloads/jobs/{job['id']}/draft", json={"timeoutSeconds": 90})
    assert patched.status_code == 200
    body = patched.json()
    assert body["timeoutSeconds"] == 90
    assert body["maxConcurrentRuns"] == 3 and body["description"] == "v2"
    unknown = client.patch(f"/workloads/jobs/{job['id']}/draft", json={"jobKey": "x"})
    assert unknown.status_code == 400


def test_draft_endpoints_without_a_draft(client: httpx.Client, cluster: str, team: str) -> None:
    job = create_job(client, cluster, team)
    base = f"/workloads/jobs/{job['id']}/draft"
    for response in (client.get(base), client.patch(base, json={}), client.delete(base)):
        assert response.status_code == 404
        assert response.json()["code"] == "job_draft_not_found"
    published = client.post(f"{base}/publish")
    assert published.status_code == 400  # as documented: 400, not 404
    assert published.json()["code"] == "job_draft_not_found"
    assert client.post("/workloads/jobs/NOSUCHJOB/draft/publish").status_code == 404


def test_discard_keeps_the_active_version(client: httpx.Client, cluster: str, team: str) -> None:
    job = create_job(client, cluster, team, timeoutSeconds=60)
    client.post(f"/workloads/jobs/{job['id']}/draft", json={"timeoutSeconds": 5})
    assert client.delete(f"/workloads/jobs/{job['id']}/draft").status_code == 204
    after = client.get(f"/workloads/jobs/{job['id']}").json()["included"]["jobs"][0]
    assert (after["currentVersion"], after["draftVersion"], after["timeoutSeconds"]) == (
        1,
        None,
        60,
    )
    assert _versions(client, job["id"]) == [1]


def test_publish_makes_the_draft_the_active_version(
    client: httpx.Client, api: str, system: System, org: Org, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team, timeoutSeconds=60)
    client.post(f"/workloads/jobs/{job['id']}/draft", json={"timeoutSeconds": 30})
    # another member of the organization publishes: the version records both
    admin_id, token = add_member_with_token(system, org, ["ADMIN"])
    with http_client(api, token) as admin:
        published = admin.post(f"/workloads/jobs/{job['id']}/draft/publish")
    assert published.status_code == 200, published.text
    body = published.json()
    assert set(body) == JOB_KEYS
    assert (body["currentVersion"], body["draftVersion"]) == (2, None)
    assert body["basedOnVersion"] == 1 and body["timeoutSeconds"] == 30
    v2 = client.get(f"/workloads/jobs/{job['id']}/versions").json()["items"][1]
    assert v2["status"] == "published"
    assert (v2["createdBy"], v2["publishedBy"]) == (org.owner_member_id, admin_id)


def test_create_version_publishes_at_once_and_is_refused_with_a_draft(
    client: httpx.Client, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team, timeoutSeconds=60)
    created = client.post(f"/workloads/jobs/{job['id']}/versions", json={"timeoutSeconds": 70})
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == VERSION_KEYS
    assert (body["version"], body["status"], body["basedOnVersion"]) == (2, "published", 1)
    assert (
        client.get(f"/workloads/jobs/{job['id']}").json()["included"]["jobs"][0]["currentVersion"]
        == 2
    )
    client.post(f"/workloads/jobs/{job['id']}/draft", json={})
    refused = client.post(f"/workloads/jobs/{job['id']}/versions", json={})
    assert refused.status_code == 409
    assert refused.json()["code"] == "job_draft_exists"


def test_activate_an_older_version(client: httpx.Client, cluster: str, team: str) -> None:
    job = create_job(client, cluster, team, timeoutSeconds=60)
    client.post(f"/workloads/jobs/{job['id']}/versions", json={"timeoutSeconds": 70})
    activated = client.post(f"/workloads/jobs/{job['id']}/activate-version", json={"version": 1})
    assert activated.status_code == 200, activated.text
    body = activated.json()
    assert (body["currentVersion"], body["timeoutSeconds"]) == (1, 60)
    assert _versions(client, job["id"]) == [1, 2]  # nothing is lost
    missing = client.post(f"/workloads/jobs/{job['id']}/activate-version", json={"version": 9})
    assert missing.status_code == 404
    assert missing.json()["code"] == "job_version_not_found"
    client.post(f"/workloads/jobs/{job['id']}/draft", json={})
    with_draft = client.post(f"/workloads/jobs/{job['id']}/activate-version", json={"version": 2})
    assert with_draft.status_code == 409
    # a draft's number is not a published version
    client.delete(f"/workloads/jobs/{job['id']}/draft")
    assert (
        client.post(
            f"/workloads/jobs/{job['id']}/activate-version", json={"version": 3}
        ).status_code
        == 404
    )


def test_patch_job_changes_metadata_only_and_checks_the_version(
    client: httpx.Client, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team, description="old")
    client.post(f"/workloads/jobs/{job['id']}/versions", json={})
    patched = client.patch(
        f"/workloads/jobs/{job['id']}",
        json={"jobKey": unique("renamed"), "description": "new", "status": "paused", "version": 2},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    # the revision moves with the metadata; the active configuration stays version 2
    assert (body["description"], body["status"]) == ("new", "paused")
    assert (body["version"], body["currentVersion"]) == (3, 2)
    assert body["nextRunAt"] is None  # paused
    assert _versions(client, job["id"]) == [1, 2]
    stale = client.patch(f"/workloads/jobs/{job['id']}", json={"description": "x", "version": 2})
    assert stale.status_code == 409
    assert stale.json()["code"] == "job_version_stale"
    config = client.patch(f"/workloads/jobs/{job['id']}", json={"clusterId": cluster})
    assert config.status_code == 400  # execution configuration changes need a new version
    bad = client.patch(f"/workloads/jobs/{job['id']}", json={"status": "stopped"})
    assert bad.status_code == 400


def test_of_concurrent_patches_from_one_read_exactly_one_wins(
    client: httpx.Client, api: str, org: Org, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team)
    barrier = threading.Barrier(20)

    def patch(n: int) -> httpx.Response:
        with http_client(api, org.token) as c:
            barrier.wait()
            return c.patch(
                f"/workloads/jobs/{job['id']}",
                json={"description": f"edit {n}", "version": job["version"]},
            )

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(patch, range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 19, statuses
    assert all(set(r.json()) == {"message", "code"} for r in responses if r.status_code == 409)
    (winner,) = [r.json() for r in responses if r.status_code == 200]
    described = client.get(f"/workloads/jobs/{job['id']}").json()["included"]["jobs"][0]
    assert described["description"] == winner["description"]
    assert described["version"] == winner["version"] == job["version"] + 1


def test_renaming_frees_the_old_job_key(client: httpx.Client, cluster: str, team: str) -> None:
    job = create_job(client, cluster, team, jobKey=(old := unique()))
    taken = create_job(client, cluster, team)
    conflict = client.patch(f"/workloads/jobs/{job['id']}", json={"jobKey": taken["jobKey"]})
    assert conflict.status_code == 409
    assert (
        client.patch(f"/workloads/jobs/{job['id']}", json={"jobKey": unique()}).status_code == 200
    )
    create_job(client, cluster, team, jobKey=old)


def test_versions_lists_published_versions_in_order_by_page(
    client: httpx.Client, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team)
    for _ in range(3):
        client.post(f"/workloads/jobs/{job['id']}/versions", json={})
    client.post(f"/workloads/jobs/{job['id']}/draft", json={})  # version 5, not listed
    first = client.get(f"/workloads/jobs/{job['id']}/versions", params={"limit": 3}).json()
    assert set(first) >= {"total", "items"}
    assert first["total"] == 4 and [v["version"] for v in first["items"]] == [1, 2, 3]
    second = client.get(
        f"/workloads/jobs/{job['id']}/versions", params={"limit": 3, "page": 2}
    ).json()
    assert [v["version"] for v in second["items"]] == [4]


def test_describe_version_is_the_job_as_that_version_configures_it(
    client: httpx.Client, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team, timeoutSeconds=60)
    client.post(f"/workloads/jobs/{job['id']}/versions", json={"timeoutSeconds": 70})
    described = client.get(f"/workloads/jobs/{job['id']}/versions/1")
    assert described.status_code == 200
    body = described.json()
    assert set(body) == {"item", "included"}
    assert body["item"]["jobId"] == job["id"]
    (as_v1,) = body["included"]["jobs"]
    assert set(as_v1) == JOB_KEYS
    assert (as_v1["currentVersion"], as_v1["timeoutSeconds"]) == (2, 60)
    client.post(f"/workloads/jobs/{job['id']}/draft", json={})
    assert client.get(f"/workloads/jobs/{job['id']}/versions/3").status_code == 404  # a draft
    assert client.get(f"/workloads/jobs/{job['id']}/versions/0").status_code == 400


def test_diff_names_the_changed_fields(client: httpx.Client, cluster: str, team: str) -> None:
    job = create_job(client, cluster, team, config=CONFIG, timeoutSeconds=60)
    client.post(
        f"/workloads/jobs/{job['id']}/versions",
        json={
            "config": {**CONFIG, "lakesail": {"executionMode": "standalone", "maxRetries": 5}},
            "cronExpression": "*/5 * * * *",
        },
    )
    diff = client.get(f"/workloads/jobs/{job['id']}/versions/2/diff", params={"against": 1})
    assert diff.status_code == 200, diff.text
    assert diff.json() == {
        "jobId": job["id"],
        "version": 2,
        "against": 1,
        "changes": [
            {"field": "config.lakesail.maxRetries", "from": 3, "to": 5},
            {"field": "cronExpression", "from": None, "to": "*/5 * * * *"},
        ],
    }
    # without `against`: the version it was based on
    assert client.get(f"/workloads/jobs/{job['id']}/versions/2/diff").json()["against"] == 1
    assert client.get(f"/workloads/jobs/{job['id']}/versions/1/diff").status_code == 400
    assert client.get(f"/workloads/jobs/{job['id']}/versions/2/diff?against=7").status_code == 404


def test_delete_removes_the_job_its_versions_and_grants(
    client: httpx.Client, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team)
    assert client.delete(f"/workloads/jobs/{job['id']}").status_code == 204
    assert client.get(f"/workloads/jobs/{job['id']}").status_code == 404
    assert client.get(f"/workloads/jobs/{job['id']}/versions").status_code == 404
    assert client.delete(f"/workloads/jobs/{job['id']}").status_code == 404
    assert client.get(f"/workloads/teams/{team}/jobs").json()["total"] == 0
    create_job(client, cluster, team, jobKey=job["jobKey"])  # the key is free again


def test_team_grants(client: httpx.Client, cluster: str, team: str) -> None:
    job = create_job(client, cluster, team)
    other = new_team(client)
    added = client.post(f"/workloads/jobs/{job['id']}/teams", json={"teamIds": [other]})
    assert added.status_code == 201
    (link,) = added.json()["items"]
    assert set(link) == {"jobId", "teamId", "createdAt", "createdBy", "updatedAt", "updatedBy"}
    assert (link["jobId"], link["teamId"]) == (job["id"], other)
    listed = client.get(f"/workloads/jobs/{job['id']}/teams").json()
    assert listed["total"] == 2
    assert set(listed["items"][0]) == {"team", "memberCount"}
    team_jobs = client.get(f"/workloads/teams/{other}/jobs").json()
    assert set(team_jobs) >= {"total", "items", "included"}
    assert [i["jobId"] for i in team_jobs["items"]] == [job["id"]]
    assert client.delete(f"/workloads/jobs/{job['id']}/teams/{other}").status_code == 204
    assert client.get(f"/workloads/teams/{other}/jobs").json()["total"] == 0
    assert client.delete(f"/workloads/jobs/{job['id']}/teams/{other}").status_code == 404
    assert client.get("/workloads/teams/NOSUCHTEAM/jobs").status_code == 404


@pytest.mark.usefixtures("provisioner")
def test_cluster_jobs_follow_the_active_version(
    client: httpx.Client, org: Org, cluster: str, team: str
) -> None:
    second = active_cluster(client, org)
    job = create_job(client, cluster, team)
    on_first = client.get(f"/workloads/clusters/{cluster}/jobs").json()
    assert [i["jobId"] for i in on_first["items"]] == [job["id"]]
    assert set(on_first["included"]) == {"jobs", "jobRuns", "teams"}
    client.post(f"/workloads/jobs/{job['id']}/draft", json={"clusterId": second})
    assert client.get(f"/workloads/clusters/{second}/jobs").json()["total"] == 0  # only a draft
    client.post(f"/workloads/jobs/{job['id']}/draft/publish")
    assert client.get(f"/workloads/clusters/{cluster}/jobs").json()["total"] == 0
    assert client.get(f"/workloads/clusters/{second}/jobs").json()["total"] == 1
    assert client.get("/workloads/clusters/NOSUCHCLUSTER/jobs").status_code == 404


def test_my_jobs_are_those_of_my_teams_by_page_and_sort(
    client: httpx.Client, api: str, system: System, org: Org, cluster: str, team: str
) -> None:
    mine = [create_job(client, cluster, team, jobKey=f"{k}-{unique()}") for k in "bca"]
    create_job(client, cluster, new_team(client))  # not granted to my team
    member_id, token = add_member_with_token(system, org, ["MEMBER"])
    joined = client.post(f"/org/teams/{team}/members/{member_id}", json={"roleIds": ["TEAMMEMBER"]})
    assert joined.status_code == 201, joined.text
    with http_client(api, token) as member:
        listed = member.get(
            "/me/jobs", params={"sortBy": "jobKey", "sortDirection": "desc", "limit": 2}
        )
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert set(body) == {"total", "items", "included", "marker"}
        assert body["total"] == 3
        keys = sorted((j["jobKey"] for j in mine), reverse=True)
        assert [j["jobKey"] for j in body["included"]["jobs"]] == keys[:2]
        assert all(i["teamIds"] == [team] for i in body["items"])
        page_two = member.get(
            "/me/jobs",
            params={"sortBy": "jobKey", "sortDirection": "desc", "limit": 2, "page": 2},
        ).json()
        assert [j["jobKey"] for j in page_two["included"]["jobs"]] == keys[2:]
        by_creation = member.get("/me/jobs").json()  # default: createdAt ascending
        assert [i["jobId"] for i in by_creation["items"]] == [j["id"] for j in mine]
        # the whole organization's jobs are still listed by /workloads/jobs
        assert member.get("/workloads/jobs").json()["total"] == 4
    assert client.get("/me/jobs").json()["total"] == 0  # the Owner is in no team


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cronExpression", "every day"),
        ("cronExpression", "0 25 * * *"),
        ("cronTimezone", "Mars/Olympus"),
        ("concurrencyPolicy", "sometimes"),
        ("maxConcurrentRuns", 0),
        ("missedSchedulePolicy", "most"),
        ("timeoutSeconds", 0),
    ],
)
def test_schedule_fields_are_checked_at_the_edge(
    client: httpx.Client, cluster: str, team: str, field: str, value: Any
) -> None:
    body = {"jobKey": unique(), "clusterId": cluster, "teamIds": [team], field: value}
    created = client.post("/workloads/jobs", json=body)
    assert created.status_code == 400
    assert field in created.json()["message"]
    job = create_job(client, cluster, team)
    assert (
        client.post(f"/workloads/jobs/{job['id']}/versions", json={field: value}).status_code == 400
    )
    client.post(f"/workloads/jobs/{job['id']}/draft", json={})
    assert (
        client.patch(f"/workloads/jobs/{job['id']}/draft", json={field: value}).status_code == 400
    )


def test_depends_on_names_existing_jobs_without_cycles(
    client: httpx.Client, cluster: str, team: str
) -> None:
    unknown = client.post(
        "/workloads/jobs",
        json={
            "jobKey": unique(),
            "clusterId": cluster,
            "teamIds": [team],
            "dependsOn": [{"jobKey": "no-such-job"}],
        },
    )
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "dependsOn[0].jobKey"
    a = create_job(client, cluster, team)
    b = create_job(client, cluster, team, dependsOn=[{"jobKey": a["jobKey"]}])
    c = create_job(client, cluster, team, dependsOn=[{"jobKey": b["jobKey"]}])
    assert c["dependsOn"] == [{"jobKey": b["jobKey"]}]
    cycle = client.post(
        f"/workloads/jobs/{a['id']}/versions", json={"dependsOn": [{"jobKey": c["jobKey"]}]}
    )
    assert cycle.status_code == 409
    assert cycle.json()["code"] == "dependency_cycle"
    itself = client.post(
        f"/workloads/jobs/{a['id']}/versions", json={"dependsOn": [{"jobKey": a["jobKey"]}]}
    )
    assert itself.status_code == 409


def test_next_run_at_comes_from_the_active_version(
    client: httpx.Client, cluster: str, team: str
) -> None:
    on_demand = create_job(client, cluster, team)
    assert on_demand["nextRunAt"] is None
    scheduled = client.post(
        f"/workloads/jobs/{on_demand['id']}/versions",
        json={"cronExpression": "0 0 1 1 *", "cronTimezone": "UTC"},
    )
    assert scheduled.status_code == 201
    job = client.get(f"/workloads/jobs/{on_demand['id']}").json()["included"]["jobs"][0]
    assert job["nextRunAt"].endswith("-01-01T00:00:00.000Z")


def test_a_query_used_by_an_active_job_version_cannot_be_deleted(
    client: httpx.Client, cluster: str, team: str
) -> None:
    query = client.post(
        "/workloads/queries", json={"name": unique("query"), "queryText": "SELECT 1"}
    ).json()
    job = create_job(client, cluster, team, config={"sql": {"queryId": query["id"]}})
    refused = client.delete(f"/workloads/queries/{query['id']}")
    assert refused.status_code == 409
    assert refused.json()["code"] == "query_in_use"
    described = client.get(f"/workloads/queries/{query['id']}").json()
    assert described["item"]["jobIds"] == [job["id"]]
    assert [j["id"] for j in described["included"]["jobs"]] == [job["id"]]
    # a new active version that runs no saved query frees it
    client.post(f"/workloads/jobs/{job['id']}/versions", json={"config": {"sql": {"source": "x"}}})
    assert client.delete(f"/workloads/queries/{query['id']}").status_code == 204
    unknown = client.post(
        f"/workloads/jobs/{job['id']}/versions", json={"config": {"sql": {"queryId": query["id"]}}}
    )
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "config.sql.queryId"


def test_another_organization_sees_nothing(
    client: httpx.Client, api: str, system: System, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team)
    other = found_org(system)
    with http_client(api, other.token) as stranger:
        assert stranger.get(f"/workloads/jobs/{job['id']}").status_code == 404
        assert stranger.get("/workloads/jobs").json()["total"] == 0
        assert stranger.post(f"/workloads/jobs/{job['id']}/draft", json={}).status_code == 404


def test_a_member_without_a_manage_grant_cannot_change_a_job(
    client: httpx.Client, member_client: httpx.Client, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team)
    assert member_client.get(f"/workloads/jobs/{job['id']}").status_code == 200
    denied = member_client.post(f"/workloads/jobs/{job['id']}/draft", json={})
    assert denied.status_code == 403


def _list(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_list_jobs_is_normalized(client: httpx.Client, cluster: str, team: str) -> None:
    jobs = [create_job(client, cluster, team) for _ in range(3)]
    body = _list(client, "/workloads/jobs", limit=2)
    assert set(body) == {"total", "items", "included", "marker"}
    assert body["total"] == 3
    assert all(set(i) == {"jobId", "latestJobRunId", "teamIds"} for i in body["items"])
    assert [j["id"] for j in body["included"]["jobs"]] == [i["jobId"] for i in body["items"]]
    rest = _list(client, "/workloads/jobs", limit=2, marker=body["marker"])
    assert {i["jobId"] for i in body["items"] + rest["items"]} == {j["id"] for j in jobs}


def test_concurrent_drafts_one_wins_the_other_gets_409(
    client: httpx.Client, api: str, org: Org, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team)
    barrier = threading.Barrier(4)

    def post_draft(_: int) -> int:
        with http_client(api, org.token) as c:
            barrier.wait()
            return c.post(f"/workloads/jobs/{job['id']}/draft", json={}).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(post_draft, range(4)))
    assert statuses == [201, 409, 409, 409]


def test_a_draft_names_an_existing_cluster_and_publishing_needs_it_active(
    client: httpx.Client, org: Org, cluster: str, team: str
) -> None:
    job = create_job(client, cluster, team)
    client.post(f"/workloads/jobs/{job['id']}/draft", json={})
    missing = client.patch(f"/workloads/jobs/{job['id']}/draft", json={"clusterId": "NOSUCH"})
    assert missing.status_code == 422
    assert missing.json()["code"] == "cluster_not_found"
    pending = pending_cluster(client, org)
    assert (
        client.patch(f"/workloads/jobs/{job['id']}/draft", json={"clusterId": pending}).status_code
        == 200
    )
    refused = client.post(f"/workloads/jobs/{job['id']}/draft/publish")
    assert refused.status_code == 422
    assert refused.json()["code"] == "cluster_not_active"
    assert client.get(f"/workloads/jobs/{job['id']}/draft").json()["clusterId"] == pending


def test_a_cluster_is_named_by_either_of_its_ids(
    client: httpx.Client, org: Org, cluster: str, team: str
) -> None:
    # The provisioned cluster (`GET /infra/connections/{c}/clusters`) has its own `id`; its
    # workload cluster (`/me/clusters`) has another. A job may name either: the provisioned
    # cluster's id stands for its one workload cluster, and the job shows the workload id.
    connection, _, external, _ = local_ids(org.id)
    listed = client.get(f"/infra/connections/{connection}/clusters").json()
    assert external in json.dumps(listed) and external != cluster
    created = client.post(
        "/workloads/jobs",
        json={"jobKey": unique(), "clusterId": external, "teamIds": [team], "config": CONFIG},
    )
    assert created.status_code == 201, created.text
    assert created.json()["clusterId"] == cluster
    version = client.post(
        f"/workloads/jobs/{created.json()['id']}/versions", json={"clusterId": external}
    )
    assert version.status_code in (200, 201), version.text
    assert version.json()["clusterId"] == cluster
