"""The HTTP conventions every endpoint group inherits, checked over real HTTP on /org/teams."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from sailplane.notices import advisory_key
from sailplane.system import System
from tests.conftest import Org


def _name() -> str:
    return f"team-{uuid.uuid4().hex[:8]}"


def test_requests_without_or_with_a_bad_token_are_401(api: str) -> None:
    with httpx.Client(base_url=api) as anonymous:
        missing = anonymous.get("/api/v1/org/teams")
        bad = anonymous.get(
            "/api/v1/org/teams", headers={"Authorization": "Bearer sp_not-a-real-token"}
        )
        wrong_scheme = anonymous.get("/api/v1/org/teams", headers={"Authorization": "Basic abc"})
    assert missing.status_code == 401
    assert missing.json()["code"] == "missing_token"
    assert bad.status_code == 401
    assert bad.json() == {"message": "The bearer token is not valid.", "code": "invalid_token"}
    assert wrong_scheme.status_code == 401


def test_health_and_openapi_need_no_token(api: str) -> None:
    with httpx.Client(base_url=api) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        schema = anonymous.get("/schema/openapi.json").json()
    operation_ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert len(operation_ids) == len(set(operation_ids)), "every endpoint has its own operationId"
    assert "CreateTeam" in operation_ids


def test_unknown_fields_and_malformed_json_are_400_and_create_nothing(client: httpx.Client) -> None:
    before = client.get("/org/teams").json()["total"]
    unknown = client.post("/org/teams", json={"name": _name(), "colour": "blue"})
    malformed = client.post(
        "/org/teams", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    wrong_type = client.post("/org/teams", json={"name": 42})
    assert unknown.status_code == 400
    assert "colour" in unknown.json()["message"]
    assert unknown.json()["code"] == "invalid_request"
    assert malformed.status_code == 400
    assert wrong_type.status_code == 400
    assert client.get("/org/teams").json()["total"] == before


def test_out_of_range_values_are_400_or_422(client: httpx.Client) -> None:
    too_many = client.get("/org/teams", params={"limit": 101})
    page_zero = client.get("/org/teams", params={"page": 0})
    bad_sort = client.get("/org/teams", params={"sortBy": "colour"})
    bad_role = client.post("/org/teams", json={"name": _name(), "defaultRoleId": "NOSUCHROLE"})
    blank = client.post("/org/teams", json={"name": "   "})
    assert too_many.status_code == 400
    assert page_zero.status_code == 400
    assert bad_sort.status_code == 400
    assert bad_role.status_code == 422
    assert bad_role.json()["field"] == "defaultRoleId"
    assert blank.status_code == 422


def test_unknown_ids_and_routes_are_404_with_a_json_body(client: httpx.Client) -> None:
    missing = client.get("/org/teams/ZZZZZZZZZZ")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Team ZZZZZZZZZZ was not found.", "code": "team_not_found"}
    route = client.get("/no/such/route")
    assert route.status_code == 404
    assert set(route.json()) == {"message", "code"}


def test_another_organizations_team_is_404_never_its_data(
    api: str, client: httpx.Client, system: System
) -> None:
    from tests.conftest import found_org, http_client

    team_id = client.post("/org/teams", json={"name": _name()}).json()["team"]["id"]
    stranger = found_org(system, name="Other Org")
    with http_client(api, stranger.token) as other:
        assert other.get(f"/org/teams/{team_id}").status_code == 404
        assert other.patch(f"/org/teams/{team_id}", json={"name": "stolen"}).status_code == 404
        assert team_id not in [i["team"]["id"] for i in other.get("/org/teams").json()["items"]]


def test_a_write_is_visible_in_the_very_next_read(client: httpx.Client) -> None:
    for _ in range(20):
        name = _name()
        created = client.post("/org/teams", json={"name": name})
        assert created.status_code == 201
        team_id = created.json()["team"]["id"]
        assert client.get(f"/org/teams/{team_id}").json()["team"]["name"] == name
        renamed = client.patch(f"/org/teams/{team_id}", json={"name": name + "-x"})
        assert renamed.json()["team"]["name"] == name + "-x"
        assert client.get(f"/org/teams/{team_id}").json()["team"]["name"] == name + "-x"


def test_concurrent_updates_of_one_team_have_one_winner_and_lose_nothing(
    client: httpx.Client, api: str, org: Org
) -> None:
    from tests.conftest import http_client

    team_id = client.post("/org/teams", json={"name": _name()}).json()["team"]["id"]
    saw_conflict = False
    for round_number in range(10):
        names = [f"round{round_number}-writer{i}-{uuid.uuid4().hex[:4]}" for i in range(6)]
        barrier = threading.Barrier(len(names))
        results: dict[str, int] = {}

        def rename(name: str, barrier: threading.Barrier, results: dict[str, int]) -> None:
            with http_client(api, org.token) as c:
                barrier.wait()
                results[name] = c.patch(f"/org/teams/{team_id}", json={"name": name}).status_code

        threads = [threading.Thread(target=rename, args=(n, barrier, results)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(results.values()) <= {200, 409}
        winners = [n for n, status in results.items() if status == 200]
        assert winners, "at least one concurrent writer wins"
        final = client.get(f"/org/teams/{team_id}").json()["team"]["name"]
        # No lost update: the stored name is one a winner was told it set, and every
        # loser was told so with a 409 instead of having its change silently dropped.
        assert final in winners
        if 409 in results.values():
            saw_conflict = True
            assert client.get(f"/org/teams/{team_id}").json()["team"]["name"] in winners
            break
    assert saw_conflict, "concurrent writers of one version must produce a 409"


def test_page_walk_returns_every_team_exactly_once(api: str, system: System) -> None:
    from tests.conftest import found_org, http_client

    fresh = found_org(system, "Paging Org")
    with http_client(api, fresh.token) as c:
        names = {f"t{i:02d}-{uuid.uuid4().hex[:4]}" for i in range(23)}
        for name in names:
            assert c.post("/org/teams", json={"name": name}).status_code == 201
        seen: list[str] = []
        page = 1
        while True:
            body = c.get("/org/teams", params={"page": page, "limit": 5}).json()
            assert body["total"] == 23
            if not body["items"]:
                break
            seen += [i["team"]["name"] for i in body["items"]]
            page += 1
        assert sorted(seen) == sorted(names)
        assert len(seen) == len(set(seen)) == 23
        assert seen == sorted(names, key=str.lower)


def test_marker_walk_returns_every_team_exactly_once_even_while_teams_are_added(
    api: str, system: System
) -> None:
    from tests.conftest import found_org, http_client

    fresh = found_org(system, "Marker Org")
    with http_client(api, fresh.token) as c:
        names = [f"m{i:02d}" for i in range(17)]
        for name in names:
            c.post("/org/teams", json={"name": name})
        seen: list[str] = []
        marker = None
        params: dict[str, object] = {"limit": 4, "sortDirection": "desc"}
        while True:
            body = c.get(
                "/org/teams", params={**params, **({"marker": marker} if marker else {})}
            ).json()
            seen += [i["team"]["name"] for i in body["items"]]
            if len(seen) == 4:
                # A team created behind the cursor must not shift the walk.
                c.post("/org/teams", json={"name": "a-late-arrival"})
            marker = body["marker"]
            if marker is None:
                break
        assert seen[: len(names)] == sorted(names, reverse=True)
        assert len(seen) == len(set(seen))
        bad = c.get("/org/teams", params={"marker": "not-a-marker"})
        assert bad.status_code == 400
        assert bad.json()["code"] == "invalid_marker"


def test_idempotency_key_replays_the_first_response_and_creates_nothing_new(
    client: httpx.Client,
) -> None:
    before = client.get("/org/teams").json()["total"]
    body = {"name": _name()}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = client.post("/org/teams", json=body, headers=key)
    second = client.post("/org/teams", json=body, headers=key)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert client.get("/org/teams").json()["total"] == before + 1

    reused = client.post("/org/teams", json={"name": _name()}, headers=key)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"


def test_idempotency_key_replays_a_recorded_4xx_too(client: httpx.Client) -> None:
    name = _name()
    client.post("/org/teams", json={"name": name})
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = client.post("/org/teams", json={"name": name}, headers=key)
    second = client.post("/org/teams", json={"name": name}, headers=key)
    assert first.status_code == second.status_code == 409
    assert second.json() == first.json()


@contextlib.contextmanager
def views_held(system: System) -> Iterator[None]:
    """The projections stand still: this connection holds the teams view's lock."""
    with psycopg.connect(system.database.conninfo, autocommit=True) as conn:
        key = advisory_key("view:" + system.identity.teams.tracking_name)
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def test_a_write_whose_views_lag_answers_503_and_is_not_replayed(
    client: httpx.Client, system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    team_id = client.post("/org/teams", json={"name": _name()}).json()["team"]["id"]
    monkeypatch.setattr(system.reads, "timeout", 0.5)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": _name()}
    with views_held(system):
        lagging = client.patch(f"/org/teams/{team_id}", json=body, headers=key)
    assert lagging.status_code == 503, lagging.text
    assert lagging.headers["retry-after"].isdigit()
    assert set(lagging.json()) == {"message", "code"}
    assert lagging.json()["code"] == "views_behind"

    # the change was saved; once the views catch up, a retry gets the real answer
    assert system.views_reached(system.event_log.head())
    retried = client.patch(f"/org/teams/{team_id}", json=body, headers=key)
    assert retried.status_code == 200, retried.text
    assert "idempotent-replayed" not in retried.headers
    assert retried.json()["team"]["name"] == body["name"]
    again = client.patch(f"/org/teams/{team_id}", json=body, headers=key)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == retried.json()


def test_idempotency_keys_are_scoped_to_the_caller(
    client: httpx.Client, member_client: httpx.Client
) -> None:
    key = {"Idempotency-Key": "shared-key"}
    owner = client.post("/org/teams", json={"name": _name()}, headers=key)
    member = member_client.post("/org/teams", json={"name": _name()}, headers=key)
    assert owner.status_code == 201
    assert member.status_code == 403  # the member's own request ran; it saw nothing of the owner's
