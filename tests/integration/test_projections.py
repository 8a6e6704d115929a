"""Views on real PostgreSQL: batches, concurrency on the write side, rebuild equality."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError
from sailplane.domain.identity import Team
from sailplane.projections.runner import ProjectionRunner, rebuild
from sailplane.storage import Database
from sailplane.system import PROJECTIONS, System
from tests.conftest import found_org, running_system


def _snapshot(system: System) -> dict[str, list[dict[str, Any]]]:
    """Every row of every view table, in a canonical order."""
    snapshot = {}
    with system.pool.connection() as conn, conn.cursor() as cur:
        for projection in PROJECTIONS:
            for table in projection.view_class.tables:
                snapshot[table] = sorted(cur.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    return snapshot


def _some_history(system: System, org_actor: Actor) -> None:
    ids = []
    for i in range(30):
        team_id, _ = system.identity.commands.create_team(
            name=f"history-{i}", default_role_id=None, by=org_actor
        )
        ids.append(team_id)
    member_id, _ = system.identity.commands.add_member(
        email="h@example.com", display_name="H", role_ids=["MEMBER"], by=org_actor
    )
    for team_id in ids[:10]:
        system.identity.commands.add_team_member(team_id, member_id, role_ids=None, by=org_actor)
    for team_id in ids[10:15]:
        system.identity.commands.update_team(
            team_id, name=f"renamed-{team_id}", default_role_id="TEAMADMIN", by=org_actor
        )
    for team_id in ids[15:18]:
        system.identity.commands.delete_team(team_id, by=org_actor)
    system.identity.commands.replace_team_member_roles(
        ids[0], member_id, role_ids=["TEAMADMIN"], by=org_actor
    )
    position = system.identity.commands.remove_team_member(ids[1], member_id, by=org_actor)
    assert system.views_reached(position)


def test_rebuilt_views_equal_the_views_built_live_row_for_row(fresh_db: Database) -> None:
    with running_system(fresh_db) as system:
        org = found_org(system)
        _some_history(system, org.owner)
        live = _snapshot(system)
        assert live["teams"] and live["team_members"]
        stop_reads = threading.Event()
        read_failures: list[BaseException] = []

        def keep_reading() -> None:
            # Reads go on against the live tables while the rebuild runs and swaps.
            while not stop_reads.is_set():
                try:
                    system.identity.teams.team(org.id, live["teams"][0]["id"])
                except BaseException as exc:  # pragma: no cover - reported below
                    read_failures.append(exc)

        reader = threading.Thread(target=keep_reading)
        reader.start()
        try:
            for projection in PROJECTIONS:
                rebuild(system.event_log, projection, system.pool, batch_size=7)
        finally:
            stop_reads.set()
            reader.join()
        assert read_failures == []
        assert _snapshot(system) == live


def test_a_changed_view_definition_is_rebuilt_at_start(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_system(fresh_db) as system:
        org = found_org(system)
        _some_history(system, org.owner)
        live = _snapshot(system)
    from sailplane.projections.identity import TeamsProjection, TeamsView

    monkeypatch.setattr(
        TeamsView, "indexes", (*TeamsView.indexes, "CREATE INDEX ON {teams} (updated_at)")
    )
    with running_system(fresh_db) as system:
        assert _snapshot(system) == live
        with system.pool.connection() as conn:
            stored = conn.execute(
                "SELECT schema_hash FROM follower_positions WHERE name = 'teams'"
            ).fetchone()
        assert stored["schema_hash"] == TeamsProjection.version()


def test_batches_are_one_transaction_and_never_double_process(system: System) -> None:
    org = found_org(system)
    for i in range(12):
        system.identity.commands.create_team(name=f"batch-{i}", default_role_id=None, by=org.owner)
    # A second runner on the same view (another process would do the same) finds nothing to do
    # twice: the advisory lock and the tracking row make batches exclusive and ordered.
    from sailplane.projections.identity import TeamsProjection, TeamsView

    other = ProjectionRunner(
        system.event_log, TeamsProjection(TeamsView(system.pool)), batch_size=3
    )
    threads = [threading.Thread(target=other.catch_up) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = system.identity.teams.fetch_all(
        "SELECT name FROM {teams} WHERE organization_id = %s", (org.id,)
    )
    assert sorted(r["name"] for r in rows) == sorted(f"batch-{i}" for i in range(12))


def test_optimistic_concurrency_conflict_is_a_conflict_error_and_loses_nothing(
    system: System,
) -> None:
    org = found_org(system)
    team_id, _ = system.identity.commands.create_team(
        name="race", default_role_id=None, by=org.owner
    )
    first = system.identity.commands.repository.get(team_id)
    second = system.identity.commands.repository.get(team_id)
    first.update(name="first", default_role_id=None, by=org.owner, at=system.clock())
    second.update(name="second", default_role_id=None, by=org.owner, at=system.clock())
    third = system.identity.commands.repository.get(team_id)
    third.update(name="third", default_role_id=None, by=org.owner, at=system.clock())
    system.identity.commands.save(first)
    with pytest.raises(IntegrityError):
        system.identity.commands.save(second)  # the store's unique version check
    with pytest.raises(ConflictError) as conflict:
        system.identity.commands._commit(third)  # what every use case turns it into
    assert conflict.value.code == "concurrent_modification"
    assert system.identity.commands.repository.get(team_id).name == "first"
    assert isinstance(system.identity.commands.repository.get(team_id), Team)
