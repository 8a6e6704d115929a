"""Scheduler leadership: one instance leads; another takes over when it stops or dies."""

from __future__ import annotations

from sailplane.infra_adapters.scheduler import Leadership
from sailplane.storage import Database


def test_one_instance_leads_and_another_takes_over_when_it_steps_down(fresh_db: Database) -> None:
    first, second = Leadership(fresh_db, "scheduler"), Leadership(fresh_db, "scheduler")
    try:
        assert first.try_lead()
        assert not second.try_lead()
        assert first.try_lead()  # keeps it
        first.step_down()
        assert second.try_lead()
        assert not first.try_lead()
    finally:
        first.step_down()
        second.step_down()


def test_a_leader_whose_connection_dies_loses_leadership_at_once(fresh_db: Database) -> None:
    leader, standby = Leadership(fresh_db, "scheduler"), Leadership(fresh_db, "scheduler")
    try:
        assert leader.try_lead()
        assert not standby.try_lead()
        backend = leader._conn.info.backend_pid  # type: ignore[union-attr]
        with fresh_db.connect(autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        assert standby.try_lead()  # the server released the dead session's lock
        assert not leader.try_lead()  # and the old leader notices it no longer leads
        assert not leader.leading
    finally:
        leader.step_down()
        standby.step_down()


def test_roles_lead_independently(fresh_db: Database) -> None:
    scheduler, other = Leadership(fresh_db, "scheduler"), Leadership(fresh_db, "something-else")
    try:
        assert scheduler.try_lead() and other.try_lead()
    finally:
        scheduler.step_down()
        other.step_down()
