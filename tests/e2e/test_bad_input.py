"""Input a clumsy or hostile client sends is a 400 or 415 with `{message, code}`, never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from sailplane.commands.infra import local_ids
from sailplane.system import System
from tests.conftest import Org, local_cluster_id

# Every list that takes a marker, but those of a run's logs and events (integer markers).
LISTS = [
    "/org/teams",
    "/org/teams/{team}/members",
    "/auth/idps",
    "/me/emails",
    "/org/users",
    "/org/members",
    "/org/roles",
    "/org/team-roles",
    "/org/policies",
    "/workloads/catalogs",
    "/me/catalogs",
    "/workloads/teams/{team}/catalogs",
    "/workloads/queries",
    "/me/queries",
    "/infra/connections",
    "/infra/networks",
    "/infra/clusters",
    "/me/clusters",
    "/workloads/sessions",
    "/workloads/compute-configs",
    "/notifications/channels",
    "/notifications/rules",
    "/notifications",
    "/workloads/jobs",
    "/me/jobs",
    "/me/jobs/runs",
    "/workloads/jobs/{job}/teams",
    "/workloads/jobs/{job}/versions",
    "/workloads/jobs/{job}/runs",
    "/workloads/clusters/{cluster}/jobs",
    "/infra/connections/{connection}/networks",
    "/infra/connections/{connection}/clusters",
]
# Markers no list ever returns: refused by every list.
NEVER_RETURNED: list[Any] = [
    [True, False],
    [1.5, 2],
    [[1], {"a": 1}],
    ["a\u0000", "b"],
    [1, 2, 3],
    "e30",
    "!!not base64!!",
    "WwpbWw",  # "[\n[[": truncated JSON
]
# Well-formed markers that fit some lists' keys and not others': a page or a 400.
FORGED: list[Any] = [
    [1],
    [1, 2],
    ["x", "y"],
    ["2026-13-45", "x"],
    [99999999999999999999999, 1],
    [None, None],
    [-1, "x"],
]


def _marker(values: Any) -> str:
    if isinstance(values, str):
        return values
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"message", "code"}, body
    if code is not None:
        assert body["code"] == code, body


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", LISTS)
def test_forged_or_foreign_markers_are_400(
    client: httpx.Client, system: System, org: Org, path: str
) -> None:
    team = client.post("/org/teams", json={"name": f"markers {path}"[:100]}).json()["team"]["id"]
    connection, _, _, cluster = local_ids(org.id)
    job = ""
    if "{job}" in path:
        created = client.post(
            "/workloads/jobs",
            json={
                "jobKey": "markers",
                "clusterId": local_cluster_id(system, org.id),
                "teamIds": [team],
                "config": {"sql": {"source": "SELECT 1"}},
            },
        )
        assert created.status_code == 201, created.text
        job = created.json()["id"]
    url = path.format(team=team, job=job, connection=connection, cluster=cluster)
    assert client.get(url).status_code == 200
    for values in NEVER_RETURNED:
        _error(client.get(url, params={"marker": _marker(values)}), 400, "invalid_marker")
    for values in FORGED:
        response = client.get(url, params={"marker": _marker(values)})
        if response.status_code != 200:
            _error(response, 400, "invalid_marker")
    # A marker another list returned, used on this one.
    foreign = client.get("/org/roles", params={"limit": 1}).json()["marker"]
    response = client.get(url, params={"marker": foreign})
    if response.status_code != 200:
        _error(response, 400, "invalid_marker")


def test_a_marker_of_numbers_on_the_team_list_is_400(client: httpx.Client) -> None:
    _error(client.get("/org/teams", params={"marker": _marker([1, 2])}), 400, "invalid_marker")


@pytest.mark.parametrize(
    ("criteria", "code"),
    [
        ({"isEnabled": "x"}, "invalid_filter"),
        ({"name": 5}, "invalid_filter"),
        ({"roleId": ["OWNER"]}, "invalid_filter"),
        ({"colour": "blue"}, "invalid_filter"),
        ({"name": "a\u0000b"}, "invalid_character"),
        ({"email": "x", "teamId": "a\u0000"}, "invalid_character"),
    ],
)
def test_member_filters_of_the_wrong_type_or_with_nul_are_400(
    client: httpx.Client, criteria: dict[str, Any], code: str
) -> None:
    _error(client.get("/org/members", params={"filter": json.dumps(criteria)}), 400, code)


def test_deeply_nested_member_filters_are_400(client: httpx.Client) -> None:
    text = '{"name": ' + _deep(10_000) + "}"
    _error(client.get("/org/members", params={"filter": text}), 400, "invalid_filter")


def test_a_well_typed_member_filter_still_filters(client: httpx.Client) -> None:
    enabled = client.get("/org/members", params={"filter": '{"isEnabled": true}'})
    disabled = client.get("/org/members", params={"filter": '{"isEnabled": false}'})
    assert enabled.status_code == disabled.status_code == 200
    assert enabled.json()["total"] == 1 and disabled.json()["total"] == 0


@pytest.mark.parametrize("depth", [401, 10_000, 1_000_000])
def test_json_bodies_nested_deeper_than_400_are_400_and_store_nothing(
    client: httpx.Client, depth: int
) -> None:
    before = client.get("/org/teams").json()["total"]
    for body in (_deep(depth), '{"name": "deep", "x": ' + _deep(depth) + "}"):
        response = client.post(
            "/org/teams", content=body.encode(), headers={"Content-Type": "application/json"}
        )
        _error(response, 400, "too_deep")
    assert client.get("/org/teams").json()["total"] == before


def test_nesting_up_to_400_is_judged_by_the_endpoint_not_refused(client: httpx.Client) -> None:
    inside = '{"name": ' + _deep(399) + "}"  # 400 levels with the object itself
    response = client.post(
        "/org/teams", content=inside.encode(), headers={"Content-Type": "application/json"}
    )
    _error(response, 400, "invalid_request")
    # Brackets inside strings nest nothing (an escaped quote does not end the string).
    brackets_in_strings = json.dumps({"name": "ok", "defaultRoleId": '\\"' + "[{" * 1000})
    response = client.post(
        "/org/teams", content=brackets_in_strings, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["code"] != "too_deep"


def test_a_job_config_nested_500_deep_is_400(client: httpx.Client, org: Org) -> None:
    config: Any = "leaf"
    for _ in range(500):
        config = {"d": config}
    response = client.post(
        "/workloads/jobs", json={"jobKey": "deep", "clusterId": "x", "config": config}
    )
    _error(response, 400, "too_deep")


@pytest.mark.parametrize("version", [2**31, 2242114320703, 2**63, 2**70])
def test_a_job_version_beyond_any_integer_column_is_not_found(
    client: httpx.Client, system: System, org: Org, version: int
) -> None:
    # Found by the stateful fuzzer: the run create cast the version to a fixed-size integer.
    from tests.e2e.jobs.conftest import create_job

    team = client.post("/org/teams", json={"name": f"big version {version}"}).json()["team"]
    job = create_job(client, local_cluster_id(system, org.id), team["id"])
    job_id = job["job"]["id"] if "job" in job else job["id"]
    created = client.post(f"/workloads/jobs/{job_id}/runs", json={"jobVersion": version})
    _error(created, 422, "job_version_not_found")
    _error(client.post("/workloads/jobs/NOSUCHJOB0/runs", json={"jobVersion": version}), 404)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/pl\u00e4in",
    ],
)
def test_bodies_that_are_not_json_are_415(client: httpx.Client, content_type: str) -> None:
    before = client.get("/org/teams").json()["total"]
    response = client.post(
        "/org/teams",
        content=b'{"name": "not json"}',
        headers={"Content-Type": content_type.encode("latin-1")},
    )
    _error(response, 415, "unsupported_media_type")
    assert client.get("/org/teams").json()["total"] == before


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"],
)
def test_json_media_types_are_accepted(client: httpx.Client, content_type: str) -> None:
    body = json.dumps({"name": f"typed {content_type}"[:100]}).encode()
    response = client.post("/org/teams", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 201, response.text


def test_the_event_log_pages_over_an_event_nested_500_deep(
    client: httpx.Client, system: System, org: Org
) -> None:
    # Stored as the API accepted it before depth was bounded.
    nested: Any = "leaf"
    for _ in range(500):
        nested = {"d": nested}
    position = system.identity.commands.update_member(
        org.owner_member_id, preferences={"nested": nested}, by=org.owner
    )
    system.wait_for_views(position)
    for after in (0, position - 1):
        page = client.get("/events", params={"after": after, "limit": 100})
        assert page.status_code == 200, page.text
    (event,) = [e for e in page.json()["items"] if e["position"] == position]
    assert "nested" in event["data"]["changes"]["preferences"]
