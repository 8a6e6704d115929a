"""Replay bodies: sealed per day, expired after 24 hours, their day's key dropped after."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sailplane.domain.base import Actor
from sailplane.domain.requests import ClaimOutcome
from sailplane.infra_adapters.replay_bodies import BODIES_TABLE, KEYS_TABLE, SealedReplayBodies
from sailplane.infra_adapters.secret_box import FernetSecretBox
from sailplane.storage import Database
from sailplane.system import System

NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def bodies(fresh_db: Database) -> Iterator[SealedReplayBodies]:
    pool = fresh_db.pool(name="replay-test", max_size=2)
    store = SealedReplayBodies(pool, FernetSecretBox.generate())
    store.create_table()
    try:
        yield store
    finally:
        pool.close()


def _count(store: SealedReplayBodies, table: str) -> int:
    with store.pool.connection() as conn:
        return int(conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"])


def test_a_body_is_sealed_replayed_for_a_day_then_deleted_with_its_key(
    bodies: SealedReplayBodies,
) -> None:
    secret = '{"password": "tEmP-0rary-pa55"}'
    bodies.keep("r1", "application/json", secret, at=NOON)
    with bodies.pool.connection() as conn:
        stored = conn.execute(f"SELECT body FROM {BODIES_TABLE}").fetchone()["body"]
    assert "tEmP" not in stored
    assert bodies.find("r1", at=NOON + timedelta(hours=23)) == ("application/json", secret)
    assert bodies.find("r1", at=NOON + timedelta(hours=24)) is None
    assert bodies.find("nothing", at=NOON) is None
    # a server with another secrets key cannot open the day's key, so not the body either
    stranger = SealedReplayBodies(bodies.pool, FernetSecretBox.generate())
    assert stranger.find("r1", at=NOON) is None

    # The next day's recording deletes the expired body; the first day's key stays until
    # every body it sealed has gone and that day is over a day old.
    bodies.keep("r2", "application/json", "{}", at=NOON + timedelta(hours=25))
    assert _count(bodies, BODIES_TABLE) == 1
    assert _count(bodies, KEYS_TABLE) == 2
    bodies.expire(NOON + timedelta(days=2))
    assert _count(bodies, KEYS_TABLE) == 1  # 1 March's key is dropped
    bodies.expire(NOON + timedelta(days=3))
    assert _count(bodies, BODIES_TABLE) == _count(bodies, KEYS_TABLE) == 0


def test_a_copy_of_a_body_cannot_be_opened_once_its_day_key_is_dropped(
    fresh_db: Database, bodies: SealedReplayBodies
) -> None:
    bodies.keep("r1", "application/json", '{"token": "t0ken"}', at=NOON)
    with bodies.pool.connection() as conn:
        copy = conn.execute(f"SELECT * FROM {BODIES_TABLE}").fetchone()
    bodies.expire(NOON + timedelta(days=3))
    with bodies.pool.connection() as conn:
        conn.execute(
            f"INSERT INTO {BODIES_TABLE} VALUES (%s, %s, %s, %s, %s)",
            ("r1", copy["day"], NOON + timedelta(days=9), copy["content_type"], copy["body"]),
        )
    # Another process (no day keys in memory) finds the restored row but no key to open it.
    other = SealedReplayBodies(bodies.pool, bodies.secret_box)
    assert other.find("r1", at=NOON + timedelta(days=3)) is None


def test_a_completion_recorded_with_its_body_in_the_log_is_no_longer_replayed(
    system: System, org_actor: Actor
) -> None:
    """Completions of earlier versions held the response in the log; it is never read."""
    key = uuid.uuid4().hex
    claim = system.requests.claim(key, "f", by=org_actor)
    assert claim.outcome is ClaimOutcome.CLAIMED
    request = system.requests.repository.get(claim.request_id)
    request.complete(status_code=201, resource_id="X", by=org_actor, at=datetime.now(UTC))
    (event,) = request.collect_events()
    stored = system.event_log.mapper.to_stored_event(event)
    state = json.loads(stored.state)
    del state["class_version"], state["resource_id"]
    state |= {"content_type": "application/json", "body": '{"secret": "in the clear"}'}
    legacy = type(stored)(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=json.dumps(state).encode(),
    )
    system.event_log.recorder.insert_events([legacy])

    replay = system.requests.claim(key, "f", by=org_actor)
    assert replay.outcome is ClaimOutcome.REPLAY_UNAVAILABLE
    assert (replay.status_code, replay.body) == (201, "")


@pytest.fixture
def org_actor(system: System) -> Actor:
    founded = system.identity.commands.found_organization(
        name="Replays", owner_email=f"o-{uuid.uuid4().hex[:8]}@example.com", owner_name="O"
    )
    return Actor("member", founded.owner_member_id, founded.organization_id)
