"""Readers of the audit log survive any stored event: an event nested far deeper than the
API accepts is shown in full, one that cannot be decoded at all in its degraded form, and
neither stops `read_log` or `sailplane events export`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from eventsourcing.persistence import StoredEvent

from sailplane.commands.identity import Identity
from sailplane.domain.base import Actor
from sailplane.projections.event_log import UNDECODABLE, read_log
from sailplane.storage import Database, EventLog

BROKEN_TOPIC = "sailplane.domain.identity:Team.Updated"


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"d": value}
    return value


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, dict) and "d" in value:
        value, depth = value["d"], depth + 1
    return depth


def _export(database: Database) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database.conninfo}
    return subprocess.run(
        [sys.executable, "-m", "sailplane.cli", "--log-level", "ERROR", "events", "export"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_deep_and_undecodable_events_break_no_reader(fresh_db: Database) -> None:
    event_log = EventLog(fresh_db)
    try:
        identity = Identity(event_log)
        founded = identity.found_organization(
            name="Log Org", owner_email="log@example.com", owner_name="L"
        )
        actor = Actor("member", founded.owner_member_id, founded.organization_id)
        # Stored as the API once accepted it: a value nested 500 deep (the API now refuses
        # anything deeper than 400), in an event the log shows field by field.
        team_id, _ = identity.create_team(name="deep", default_role_id=None, by=actor)
        deep_position = identity.update_member(
            founded.owner_member_id, preferences={"nested": _nested(500)}, by=actor
        )
        event_log.recorder.insert_events(
            [
                StoredEvent(
                    originator_id=team_id,
                    originator_version=99,
                    topic=BROKEN_TOPIC,
                    state=b'{"not": "the event\'s fields',
                )
            ]
        )
        later, _ = identity.create_team(name="after the broken one", default_role_id=None, by=actor)

        events, position = read_log(event_log, after=0, limit=1000)
    finally:
        event_log.close()

    assert position > deep_position
    (deep,) = [e for e in events if "nested" in str(e.data)[:1000]]
    assert deep.position == deep_position
    assert _depth(deep.data["changes"]["preferences"]["nested"]) == 500
    broken = [e for e in events if UNDECODABLE in e.data]
    assert len(broken) == 1
    assert broken[0].aggregate_id == team_id and broken[0].aggregate_version == 99
    assert broken[0].type == "sailplane.identity.Team.Updated"
    assert any(e.aggregate_id == later for e in events), "events after it are still read"

    exported = _export(fresh_db)
    assert exported.returncode == 0, exported.stderr[-3000:]
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["position"] for r in records] == [e.position for e in events]
    assert sum(UNDECODABLE in r["data"] for r in records) == 1
