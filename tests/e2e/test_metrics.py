"""`/metrics` and request ids over HTTP: counters move with real requests, the gauges read
the real views, every answer carries `X-Request-Id`, and JSON log lines carry the same id."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sailplane.observability import configure_logging
from sailplane.settings import ConfigurationError
from tests.conftest import Org
from tests.runs_support import wait_until


def scrape(api: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics` (no token needed) by name and labels."""
    response = httpx.get(f"{api}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_request_counters_and_latency_move_by_route_and_status(
    api: str, client: httpx.Client
) -> None:
    before = scrape(api)
    for _ in range(3):
        assert client.post("/org/teams", json={"name": f"t-{uuid.uuid4().hex[:6]}"}).status_code
    assert client.get("/org/teams/NOSUCHTEAM").status_code == 404
    assert client.get("/org/teams", headers={"Authorization": "Bearer nope"}).status_code == 401
    after = scrape(api)

    created = {"method": "POST", "route": "/api/v1/org/teams", "status": "201"}
    counted = "sailplane_http_requests_total"
    assert sample(after, counted, **created) - sample(before, counted, **created) == 3
    # The route is its template (one path parameter), whatever the parameter is called;
    # other tests of the session have counted other /org/teams/{...}/... routes already.
    routes = {dict(k[1]).get("route") for k in after if k[0] == counted}
    describe = [r for r in routes if r and re.fullmatch(r"/api/v1/org/teams/\{[^/]+\}", r)]
    assert len(describe) == 1, routes
    missing = {"method": "GET", "route": describe[0], "status": "404"}
    assert sample(after, counted, **missing) - sample(before, counted, **missing) == 1
    refused = {"method": "GET", "route": "/api/v1/org/teams", "status": "401"}
    assert sample(after, counted, **refused) - sample(before, counted, **refused) == 1
    # The latency histogram observes every request once: its sample count moves with them.
    creates = {"method": "POST", "route": "/api/v1/org/teams"}
    observed = "sailplane_http_request_duration_seconds_count"
    assert sample(after, observed, **creates) - sample(before, observed, **creates) == 3


def test_gauges_read_the_views(api: str, client: httpx.Client, org: Org) -> None:
    from sailplane.commands.infra import local_ids

    team = client.post("/org/teams", json={"name": f"g-{uuid.uuid4().hex[:6]}"}).json()["team"]
    job = client.post(
        "/workloads/jobs",
        json={
            "jobKey": f"gauge-{uuid.uuid4().hex[:8]}",
            "clusterId": local_ids(org.id)[3],
            "teamIds": [team["id"]],
            "config": {"sql": {"source": "SELECT 1"}},
        },
    ).json()
    before = sample(scrape(api), "sailplane_runs", status="pending")
    held = client.post(f"/workloads/jobs/{job['id']}/runs", json={"hold": True})
    assert held.status_code == 201, held.text
    after = scrape(api)
    # Held runs stay pending (no dispatcher needed): the gauge counts the new one.
    assert sample(after, "sailplane_runs", status="pending") - before == 1
    assert sample(after, "sailplane_event_log_head") > 0
    views = {
        dict(k[1])["view"]: v for k, v in after.items() if k[0] == "sailplane_projection_lag_events"
    }
    assert "job_runs" in views and "teams" in views, views
    assert all(lag >= 0 for lag in views.values())
    assert ("sailplane_queue_depth", (("queue", "dispatch"),)) in after


def test_every_answer_carries_a_request_id(api: str, client: httpx.Client) -> None:
    fresh = client.get("/me")
    assert len(fresh.headers["x-request-id"]) == 32
    assert client.get("/me").headers["x-request-id"] != fresh.headers["x-request-id"]
    kept = client.get("/me", headers={"X-Request-Id": "trace-abc.123"})
    assert kept.headers["x-request-id"] == "trace-abc.123"
    insane = client.get("/me", headers={"X-Request-Id": "no spaces <or> markup"})
    assert insane.headers["x-request-id"] != "no spaces <or> markup"
    assert client.get("/org/teams/NOPE").headers["x-request-id"]


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The root logger writes JSON lines into the returned buffer during the test."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("INFO", "json", buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_json_log_lines_carry_the_request_id(
    json_logs: io.StringIO, api: str, client: httpx.Client
) -> None:
    answered = client.get("/me", headers={"X-Request-Id": "req-json-1"})
    assert answered.status_code == 200

    def logged() -> list[dict]:
        # The server thread writes its line just after the answer is sent.
        lines = json_logs.getvalue().split("\n")[:-1]  # complete lines only
        entries = [json.loads(line) for line in lines]  # JSON, nothing else
        return [entry for entry in entries if entry.get("request_id") == "req-json-1"]

    [line] = wait_until(logged, timeout=10, what="the request's log line")
    assert (line["logger"], line["status"], line["path"]) == ("sailplane.http", 200, "/api/v1/me")
    assert line["level"] == "INFO" and line["time"]


def test_the_request_line_never_shows_an_invitation_token(
    json_logs: io.StringIO, api: str, client: httpx.Client
) -> None:
    invited = client.post(
        "/org/invites", json={"email": f"i-{uuid.uuid4().hex[:8]}@example.com", "sendEmail": False}
    )
    token = invited.json()["invitationToken"]
    seen = httpx.get(f"{api}/api/v1/org/invites/{token}", headers={"X-Request-Id": "req-invite"})
    assert seen.status_code == 200

    def logged() -> list[dict]:
        lines = [json.loads(line) for line in json_logs.getvalue().split("\n")[:-1]]
        return [entry for entry in lines if entry.get("request_id") == "req-invite"]

    [line] = wait_until(logged, timeout=10, what="the request's log line")
    assert line["path"] == "/api/v1/org/invites/[redacted]"
    server_lines = [
        entry
        for entry in map(json.loads, json_logs.getvalue().split("\n")[:-1])
        if entry["logger"] != "httpx"  # this test's own client logs what it asked for
    ]
    assert all(token not in json.dumps(entry) for entry in server_lines)


def test_an_unknown_log_format_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"^SAILPLANE_LOG_FORMAT: 'xml'"):
        configure_logging("INFO", "xml")
