"""The jobs view on real PostgreSQL: a rebuild from the log equals the live view row for
row (jobs, versions, grants, and the saved queries' `query_jobs`)."""

from __future__ import annotations

from typing import Any

from sailplane.commands.infra import local_ids
from sailplane.domain.base import Actor
from sailplane.projections.jobs import JobsProjection
from sailplane.projections.runner import rebuild
from sailplane.projections.workloads import QueriesProjection
from sailplane.storage import Database
from sailplane.system import System
from tests.conftest import found_org, local_cluster_id, running_system

PROJECTIONS = (JobsProjection, QueriesProjection)


def _snapshot(system: System) -> dict[str, list[dict[str, Any]]]:
    snapshot = {}
    with system.pool.connection() as conn, conn.cursor() as cur:
        for projection in PROJECTIONS:
            for table in projection.view_class.tables:
                snapshot[table] = sorted(cur.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    return snapshot


def _pending_cluster(system: System, owner: Actor) -> str:
    """A cluster that exists but is not provisioned: a draft may name it, not publish it."""
    connection, network, _, _ = local_ids(owner.organization_id)
    external_id, position = system.infra.commands.create_cluster(
        connection, network_id=network, name="pending", region=None, config={}, by=owner
    )
    system.wait_for_views(position)
    row = system.infra.clusters.external_cluster(owner.organization_id, external_id)
    assert row is not None
    return row["cluster_id"]


def _history(system: System, owner: Actor, cluster: str, other_cluster: str) -> None:
    w = system.workloads.commands
    teams = [
        system.identity.commands.create_team(name=f"team-{i}", default_role_id=None, by=owner)[0]
        for i in range(3)
    ]
    query, _ = w.create_query(
        name="q",
        description=None,
        catalog_schema=None,
        catalog_id=None,
        query_text="SELECT 1",
        tags=[],
        team_ids=[],
        by=owner,
    )
    jobs = [
        w.create_job(
            job_key=f"job-{i}",
            description=f"job {i}" if i % 2 else None,
            status="active",
            spec={
                "cluster_id": cluster,
                "config": {"sql": {"queryId": query}} if i == 0 else {"sql": {"source": "x"}},
                "cron_expression": "0 2 * * *" if i % 2 else None,
                "depends_on": [{"jobKey": "job-0"}] if i else [],
            },
            team_ids=teams[: 1 + i % 3],
            by=owner,
        )[0]
        for i in range(5)
    ]
    w.create_job_draft(jobs[1], {"timeout_seconds": 30}, by=owner)
    w.update_job_draft(jobs[1], {"cluster_id": other_cluster, "max_concurrent_runs": 2}, by=owner)
    w.update_job_draft(jobs[1], {"cluster_id": cluster}, by=owner)
    w.publish_job_draft(jobs[1], by=owner)
    w.create_job_version(jobs[2], {"config": {"sql": {"queryId": query}}}, by=owner)
    w.activate_job_version(jobs[2], 1, by=owner)
    w.create_job_draft(jobs[3], {"description": "a draft", "cluster_id": other_cluster}, by=owner)
    w.create_job_draft(jobs[4], {}, by=owner)
    w.discard_job_draft(jobs[4], by=owner)
    # created, drafted, discarded: its revision is 3
    w.update_job(jobs[4], {"status": "paused", "job_key": "renamed"}, expected_version=3, by=owner)
    w.grant_job_teams(jobs[0], teams[1:], by=owner)
    w.revoke_job_team(jobs[2], teams[0], by=owner)
    w.create_job_version(jobs[0], {}, by=owner)
    system.identity.commands.delete_team(teams[2], by=owner)
    assert system.views_reached(w.delete_job(jobs[3], by=owner))


def test_rebuilt_job_views_equal_the_live_ones(fresh_db: Database) -> None:
    with running_system(fresh_db) as system:
        org = found_org(system)
        local = local_cluster_id(system, org.id)
        _history(system, org.owner, local, _pending_cluster(system, org.owner))
        live = _snapshot(system)
        assert len(live["jobs"]) == 4 and len(live["job_versions"]) == 7
        assert live["job_teams"] and live["query_jobs"]
        for projection in PROJECTIONS:
            rebuild(system.event_log, projection, system.pool, batch_size=3)
        assert _snapshot(system) == live


def test_the_active_version_as_the_runs_context_reads_it(system: System) -> None:
    org = found_org(system)
    owner = org.owner
    team, _ = system.identity.commands.create_team(name="runs", default_role_id=None, by=owner)
    w = system.workloads.commands
    upstream, _ = w.create_job(
        job_key=f"up-{org.id}",
        description=None,
        status="active",
        spec={"cluster_id": local_cluster_id(system, org.id)},
        team_ids=[team],
        by=owner,
    )
    job_id, _ = w.create_job(
        job_key=f"down-{org.id}",
        description=None,
        status="paused",
        spec={
            "cluster_id": local_cluster_id(system, org.id),
            "config": {"lakesail": {"maxRetries": 2}},
            "timeout_seconds": 600,
            "concurrency_policy": "queue",
            "max_concurrent_runs": 3,
            "depends_on": [{"jobKey": f"up-{org.id}"}],
        },
        team_ids=[team],
        by=owner,
    )
    w.create_job_version(job_id, {"timeout_seconds": 900}, by=owner)
    assert system.views_reached(w.activate_job_version(job_id, 1, by=owner))
    active = system.workloads.jobs.active_version(org.id, job_id)
    assert active is not None
    assert (active["version"], active["timeout_seconds"], active["job_status"]) == (
        1,
        600,
        "paused",
    )
    assert active["cluster_id"] == local_cluster_id(system, org.id)
    assert active["config"]["lakesail"]["maxRetries"] == 2
    assert (active["concurrency_policy"], active["max_concurrent_runs"]) == ("queue", 3)
    assert active["depends_on"] == [{"jobKey": f"up-{org.id}"}]
    assert system.workloads.jobs.job_by_key(org.id, f"up-{org.id}")["id"] == upstream
    assert system.views_reached(w.delete_job(job_id, by=owner))
    assert system.workloads.jobs.active_version(org.id, job_id) is None
