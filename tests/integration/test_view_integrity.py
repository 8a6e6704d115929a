"""Views never silently drop an event, and a changed handler rebuilds its view."""

from __future__ import annotations

import importlib.util
import logging
import sys
import uuid
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from eventsourcing.persistence import StoredEvent

from sailplane.http.app import create_app
from sailplane.projections.runner import ProjectionRunner, prepare_view
from sailplane.storage import Database
from sailplane.system import System
from tests import services
from tests.conftest import found_org, running_system
from tests.runs_support import wait_until

UNKNOWN_TOPIC = "sailplane.domain.identity:Vanished.Created"


def test_an_event_of_an_unknown_class_stops_the_views_loudly(
    fresh_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="sailplane.projections.runner")
    with running_system(fresh_db) as system:
        org = found_org(system)
        before, _ = system.identity.commands.create_team(
            name="before", default_role_id=None, by=org.owner
        )
        [unknown_position] = system.event_log.recorder.insert_events(
            [StoredEvent(str(uuid.uuid4()), 1, UNKNOWN_TOPIC, b"{}")]
        )
        after, position = system.identity.commands.create_team(
            name="after", default_role_id=None, by=org.owner
        )

        # The views stop just before the unknown event: nothing after it is applied as if
        # it had not been there, and waits for later writes end (False) instead of hanging.
        wait_until(lambda: system.positions.stopped is not None, what="the views stop")
        assert system.views_reached(position) is False
        assert system.positions.lowest() == unknown_position - 1
        assert system.identity.teams.fetch_one("SELECT id FROM {teams} WHERE id = %s", (before,))
        assert (
            system.identity.teams.fetch_one("SELECT id FROM {teams} WHERE id = %s", (after,))
            is None
        )
        logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(UNKNOWN_TOPIC in m and str(unknown_position) in m for m in logged), logged

        with (
            services.api_server(create_app(system)) as base_url,
            httpx.Client(base_url=base_url) as anonymous,
        ):
            ready = anonymous.get("/readyz")
            live = anonymous.get("/livez")
        assert live.status_code == 200
        assert ready.status_code == 503
        body = ready.json()
        assert body["code"] == "not_ready"
        assert body["checks"]["database"] == "ok"
        assert UNKNOWN_TOPIC in body["checks"]["views"]
        assert UNKNOWN_TOPIC in body["message"]


def test_a_rebuild_at_start_that_meets_an_unknown_event_keeps_the_server_up_but_not_ready(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sailplane.projections.identity import TeamsView

    with running_system(fresh_db) as system:
        org = found_org(system)
        system.identity.commands.create_team(name="kept", default_role_id=None, by=org.owner)
        system.event_log.recorder.insert_events(
            [StoredEvent(str(uuid.uuid4()), 1, UNKNOWN_TOPIC, b"{}")]
        )
    # A release changes the teams view: it is rebuilt at start, and the rebuild meets the event.
    monkeypatch.setattr(
        TeamsView, "indexes", (*TeamsView.indexes, "CREATE INDEX ON {teams} (updated_at)")
    )
    with running_system(fresh_db) as system:
        assert system.identity.teams.fetch_one("SELECT id FROM {teams} WHERE name = 'kept'")
        assert UNKNOWN_TOPIC in (system.readiness()["views"] or "")


def test_readyz_is_ready_when_the_views_are_caught_up_and_takes_named_checks(
    system: System, api: str
) -> None:
    org = found_org(system)
    with httpx.Client(base_url=api) as anonymous:
        ready = anonymous.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ready",
            "checks": {"database": "ok", "views": "ok"},
            "isolation": system.isolation.describe(),
        }
        system.readiness_checks["isolation"] = lambda: "user work runs without isolation"
        try:
            refused = anonymous.get("/readyz")
        finally:
            del system.readiness_checks["isolation"]
    assert org.id
    assert refused.status_code == 503
    assert refused.json()["checks"]["isolation"] == "user work runs without isolation"


def test_view_lag_is_not_ready_once_a_seen_head_stays_unreached_past_the_bound() -> None:
    from sailplane.system import ViewLag

    now = [0.0]
    lag = ViewLag(bound=30.0, clock=lambda: now[0])
    assert lag.check(head=10, lowest=4) is None  # behind, but only just seen
    now[0] = 20.0
    assert lag.check(head=12, lowest=8) is None
    now[0] = 31.0
    assert "short of position 10" in (lag.check(head=12, lowest=8) or "")
    assert lag.check(head=12, lowest=10) is None  # 12 was seen 11 s ago: within the bound
    now[0] = 51.0
    assert lag.check(head=12, lowest=12) is None  # caught up
    assert lag.check(head=13, lowest=12) is None


PROBE = """
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from sailplane.domain.identity import Team
from sailplane.projections.base import Projection, View


class ProbeView(View):
    name = "probe_team_names"
    tables = {{"probe_team_names": "CREATE TABLE {{probe_team_names}} (id text PRIMARY KEY, name text)"}}


class ProbeProjection(Projection[ProbeView]):
    view_class = ProbeView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        pass

    @process_event.register
    def _(self, event: Team.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {{probe_team_names}} VALUES (%s, {expression})",
            (event.originator_id, event.name),
        )
"""


def _probe(directory: Path, name: str, expression: str) -> ModuleType:
    path = directory / f"{name}.py"
    path.write_text(PROBE.format(expression=expression))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_a_changed_handler_rebuilds_its_view(fresh_db: Database, tmp_path: Path) -> None:
    with running_system(fresh_db) as system:
        org = found_org(system)
        team_id, _ = system.identity.commands.create_team(
            name="Alpha", default_role_id=None, by=org.owner
        )

        def names(module: ModuleType) -> list[str]:
            view = module.ProbeView(system.pool)
            return [r["name"] for r in view.fetch_all("SELECT name FROM {probe_team_names}")]

        first = _probe(tmp_path, "probe_projection_one", "%s")
        prepare_view(system.event_log, first.ProbeProjection, system.pool)
        ProjectionRunner(
            system.event_log, first.ProbeProjection(first.ProbeView(system.pool))
        ).catch_up()
        assert names(first) == ["Alpha"]

        # Same tables, another handler: the view's version changed, so it is rebuilt.
        second = _probe(tmp_path, "probe_projection_two", "upper(%s)")
        assert second.ProbeProjection.version() != first.ProbeProjection.version()
        prepare_view(system.event_log, second.ProbeProjection, system.pool)
        assert names(second) == ["ALPHA"]
        # An unchanged version is left as it is.
        prepare_view(system.event_log, second.ProbeProjection, system.pool)
        assert names(second) == ["ALPHA"]
        assert team_id
