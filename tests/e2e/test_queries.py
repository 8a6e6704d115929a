"""The `queries` group of the LakeSail API (saved queries), rule by rule, over HTTP."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import httpx

from sailplane.projections.workloads import QueriesView
from sailplane.system import System
from tests.conftest import Org, add_member_with_token, found_org, http_client

QUERY_KEYS = {
    "id",
    "memberId",
    "name",
    "description",
    "catalog_schema",
    "catalogId",
    "queryText",
    "tags",
    "createdAt",
    "createdBy",
    "updatedAt",
    "updatedBy",
}


def _name(prefix: str = "query") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _team(client: httpx.Client) -> str:
    return client.post("/org/teams", json={"name": _name("team")}).json()["team"]["id"]


def _catalog(client: httpx.Client) -> str:
    return client.post(
        "/workloads/catalogs", json={"name": _name("catalog"), "provider": "memory"}
    ).json()["id"]


def _query(client: httpx.Client, **body: object) -> dict:
    response = client.post(
        "/workloads/queries", json={"name": _name(), "queryText": "SELECT 1", **body}
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_create_describe_update_delete_a_saved_query(client: httpx.Client, org: Org) -> None:
    catalog, team = _catalog(client), _team(client)
    created = client.post(
        "/workloads/queries",
        json={
            "name": "Daily Sales Summary",
            "description": "Daily ETL pipeline for sales data",
            "catalog_schema": "analytics",
            "catalogId": catalog,
            "queryText": "SELECT region, SUM(amount) FROM sales GROUP BY region",
            "tags": ["etl", "sales", "daily"],
            "teamIds": [team],
        },
    )
    assert created.status_code == 201
    query = created.json()
    assert set(query) == QUERY_KEYS
    assert query["catalog_schema"] == "analytics"  # snake_case, as documented
    assert query["catalogId"] == catalog
    assert query["tags"] == ["etl", "sales", "daily"]
    assert query["memberId"] == query["createdBy"] == org.owner_member_id

    described = client.get(f"/workloads/queries/{query['id']}")
    assert described.status_code == 200
    body = described.json()
    assert set(body) == {"item", "included"}
    assert body["item"] == {
        "queryId": query["id"],
        "teamIds": [team],
        "catalogId": catalog,
        "jobIds": [],
    }
    assert set(body["included"]) == {"queries", "catalogs", "teams", "jobs"}
    assert body["included"]["queries"] == [query]
    assert [c["id"] for c in body["included"]["catalogs"]] == [catalog]
    assert [t["team"]["id"] for t in body["included"]["teams"]] == [team]
    assert body["included"]["jobs"] == []

    assert client.delete(f"/workloads/queries/{query['id']}").status_code == 204
    missing = client.get(f"/workloads/queries/{query['id']}")
    assert missing.status_code == 404
    assert missing.json()["code"] == "query_not_found"
    assert client.delete(f"/workloads/queries/{query['id']}").status_code == 404


def test_patch_changes_only_the_fields_sent(client: httpx.Client) -> None:
    catalog = _catalog(client)
    query = _query(
        client,
        description="first",
        catalog_schema="raw",
        catalogId=catalog,
        tags=["a", "b"],
    )
    renamed = client.patch(f"/workloads/queries/{query['id']}", json={"name": "Renamed"})
    assert renamed.status_code == 200
    assert set(renamed.json()) == QUERY_KEYS
    after = renamed.json()
    assert after["name"] == "Renamed"
    for field in ("description", "catalog_schema", "catalogId", "queryText", "tags", "createdAt"):
        assert after[field] == query[field]

    changed = client.patch(
        f"/workloads/queries/{query['id']}",
        json={"queryText": "SELECT 2", "tags": ["b", "c", "c"], "catalog_schema": "curated"},
    ).json()
    assert changed["queryText"] == "SELECT 2"
    assert changed["tags"] == ["b", "c"]
    assert changed["catalog_schema"] == "curated"
    assert changed["name"] == "Renamed"

    # null clears the optional fields.
    cleared = client.patch(
        f"/workloads/queries/{query['id']}",
        json={"description": None, "catalogId": None, "catalog_schema": None},
    ).json()
    assert (cleared["description"], cleared["catalogId"], cleared["catalog_schema"]) == (
        None,
        None,
        None,
    )
    assert client.get(f"/workloads/queries/{query['id']}").json()["included"]["queries"] == [
        cleared
    ]


def test_invalid_saved_queries_are_refused_and_change_nothing(client: httpx.Client) -> None:
    query = _query(client)
    before = client.get("/workloads/queries").json()["total"]
    cases = [
        ({"name": "x", "queryText": "   "}, 422, "queryText"),
        ({"name": "   ", "queryText": "SELECT 1"}, 422, "name"),
        ({"name": "x", "queryText": "SELECT 1", "tags": ["ok", " "]}, 422, "tags"),
        ({"name": "x", "queryText": "SELECT 1", "tags": ["t" * 65]}, 422, "tags"),
        ({"name": "x", "queryText": "SELECT 1", "catalog_schema": ""}, 422, "catalog_schema"),
    ]
    for body, status, field in cases:
        response = client.post("/workloads/queries", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["field"] == field
    # The documents' nested tags example is a rendering artifact: tags are strings.
    nested = client.post(
        "/workloads/queries", json={"name": "x", "queryText": "SELECT 1", "tags": [["etl"]]}
    )
    assert nested.status_code == 400
    assert client.post("/workloads/queries", json={"name": "x"}).status_code == 400
    assert (
        client.post(
            "/workloads/queries", json={"name": "x", "queryText": "SELECT 1", "catalogSchema": "s"}
        ).status_code
        == 400
    )  # the field is spelled catalog_schema
    assert (
        client.patch(f"/workloads/queries/{query['id']}", json={"queryText": ""}).status_code == 400
    )
    assert (
        client.patch(f"/workloads/queries/{query['id']}", json={"owner": "me"}).status_code == 400
    )
    assert client.get("/workloads/queries").json()["total"] == before


def test_a_query_names_only_an_existing_catalog_and_existing_teams(
    client: httpx.Client, api: str, system: System
) -> None:
    unknown_catalog = client.post(
        "/workloads/queries", json={"name": "x", "queryText": "SELECT 1", "catalogId": "NOSUCHCATA"}
    )
    assert unknown_catalog.status_code == 404
    assert unknown_catalog.json()["code"] == "catalog_not_found"
    unknown_team = client.post(
        "/workloads/queries", json={"name": "x", "queryText": "SELECT 1", "teamIds": ["NOSUCHTEAM"]}
    )
    assert unknown_team.status_code == 404
    assert unknown_team.json()["code"] == "team_not_found"

    with http_client(api, found_org(system, "Foreign").token) as foreign:
        foreign_catalog = _catalog(foreign)
    stolen = client.post(
        "/workloads/queries",
        json={"name": "x", "queryText": "SELECT 1", "catalogId": foreign_catalog},
    )
    assert stolen.status_code == 404
    query = _query(client)
    moved = client.patch(f"/workloads/queries/{query['id']}", json={"catalogId": foreign_catalog})
    assert moved.status_code == 404
    assert client.get(f"/workloads/queries/{query['id']}").json()["item"]["catalogId"] is None


def test_team_grants_of_a_query(client: httpx.Client) -> None:
    first, second = _team(client), _team(client)
    query = _query(client, teamIds=[first])
    added = client.post(f"/workloads/queries/{query['id']}/teams", json={"teamIds": [second]})
    assert added.status_code == 201
    assert set(added.json()) == {"items"}
    assert added.json()["items"][0]["queryId"] == query["id"]
    assert set(added.json()["items"][0]) == {
        "queryId",
        "teamId",
        "createdAt",
        "createdBy",
        "updatedAt",
        "updatedBy",
    }

    teams = client.get(f"/workloads/queries/{query['id']}/teams").json()
    assert set(teams) == {"total", "items", "marker"}
    assert teams["total"] == 2
    assert {t["team"]["id"] for t in teams["items"]} == {first, second}
    assert all(set(t) == {"team", "memberCount"} for t in teams["items"])
    one = client.get(f"/workloads/queries/{query['id']}/teams", params={"limit": 1}).json()
    assert len(one["items"]) == 1 and one["total"] == 2 and one["marker"]

    assert client.delete(f"/workloads/queries/{query['id']}/teams/{first}").status_code == 204
    again = client.delete(f"/workloads/queries/{query['id']}/teams/{first}")
    assert again.status_code == 404
    assert again.json()["code"] == "query_team_not_found"
    assert client.get(f"/workloads/queries/{query['id']}").json()["item"]["teamIds"] == [second]
    assert (
        client.post(f"/workloads/queries/{query['id']}/teams", json={"teamIds": []}).status_code
        == 422
    )


def test_query_lists_have_the_normalized_shape(api: str, system: System) -> None:
    fresh = found_org(system, "Query Lists")
    with http_client(api, fresh.token) as c:
        catalog, team = _catalog(c), _team(c)
        first = _query(c, name="b-first", catalogId=catalog, teamIds=[team])
        second = _query(c, name="a-second")
        for path in ("/workloads/queries", "/me/queries", f"/workloads/teams/{team}/queries"):
            body = c.get(path).json()
            assert set(body) == {"total", "items", "included", "marker"}, path
            assert set(body["included"]) == {"queries", "catalogs", "teams", "jobs"}
            assert body["included"]["jobs"] == []
            assert all(set(q) == QUERY_KEYS for q in body["included"]["queries"])
            rows = {i["queryId"]: i for i in body["items"]}
            assert rows[first["id"]] == {
                "queryId": first["id"],
                "teamIds": [team],
                "catalogId": catalog,
                "jobIds": [],
            }
            assert [x["id"] for x in body["included"]["catalogs"]] == [catalog]
            assert [t["team"]["id"] for t in body["included"]["teams"]] == [team]
        assert c.get("/workloads/queries").json()["total"] == 2
        assert [i["queryId"] for i in c.get("/workloads/queries").json()["items"]] == [
            second["id"],
            first["id"],
        ]
        team_list = c.get(f"/workloads/teams/{team}/queries").json()
        assert [i["queryId"] for i in team_list["items"]] == [first["id"]]
        assert c.get("/workloads/teams/NOSUCHTEAM/queries").status_code == 404


def test_my_queries_sort_by_update_time_by_default(api: str, system: System) -> None:
    fresh = found_org(system, "My Queries")
    with http_client(api, fresh.token) as c:
        ids = [_query(c, name=n)["id"] for n in ("c", "a", "b")]
        c.patch(f"/workloads/queries/{ids[0]}", json={"queryText": "SELECT 42"})
        default = c.get("/me/queries").json()
        assert [i["queryId"] for i in default["items"]] == [ids[1], ids[2], ids[0]]
        by_name = c.get("/me/queries", params={"sortBy": "name", "sortDirection": "desc"}).json()
        assert [q["name"] for q in by_name["included"]["queries"]] == ["c", "b", "a"]
        page2 = c.get("/me/queries", params={"sortBy": "name", "limit": 2, "page": 2}).json()
        assert page2["total"] == 3
        assert [q["name"] for q in page2["included"]["queries"]] == ["c"]


def test_team_members_manage_the_queries_of_their_teams_only(
    client: httpx.Client, system: System, org: Org, api: str
) -> None:
    team = _team(client)
    member_id, token = add_member_with_token(system, org, ["MEMBER"])
    _, position = system.identity.commands.add_team_member(
        team, member_id, role_ids=["TEAMMEMBER"], by=org.owner
    )
    system.wait_for_views(position)
    shared = _query(client, teamIds=[team])
    private = _query(client)
    with http_client(api, token) as member:
        assert member.get(f"/workloads/queries/{private['id']}").status_code == 200
        assert (
            member.patch(
                f"/workloads/queries/{shared['id']}", json={"name": "mine now"}
            ).status_code
            == 200
        )
        denied = member.patch(f"/workloads/queries/{private['id']}", json={"name": "no"})
        assert denied.status_code == 403
        assert denied.json()["code"] == "forbidden"
        assert member.delete(f"/workloads/queries/{private['id']}").status_code == 403
        assert (
            member.post(
                "/workloads/queries", json={"name": "x", "queryText": "SELECT 1"}
            ).status_code
            == 403
        )
        created = member.post(
            "/workloads/queries", json={"name": "x", "queryText": "SELECT 1", "teamIds": [team]}
        )
        assert created.status_code == 201
        assert created.json()["memberId"] == member_id
        assert member.delete(f"/workloads/queries/{shared['id']}").status_code == 204


@contextlib.contextmanager
def _jobs_projection_batch(system: System) -> Iterator[QueriesView]:
    """A write to the queries view in one transaction, as a projection batch makes it."""
    view = QueriesView(system.pool)
    with system.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:  # noqa: SIM117 - the batch needs the cursor
        with view.batch(cursor):
            yield view


def test_a_query_used_by_an_active_job_version_cannot_be_deleted(
    client: httpx.Client, system: System, org: Org
) -> None:
    query = _query(client)
    # The jobs projection records which active job versions run a query (config.sql.queryId)
    # in `query_jobs`; here the row is written the way that projection will write it.
    with _jobs_projection_batch(system) as view:
        view.execute(
            "INSERT INTO {query_jobs} VALUES (%s, %s, %s)", (query["id"], "JOBUSING01", org.id)
        )
    assert client.get(f"/workloads/queries/{query['id']}").json()["item"]["jobIds"] == [
        "JOBUSING01"
    ]
    refused = client.delete(f"/workloads/queries/{query['id']}")
    assert refused.status_code == 409
    assert refused.json()["code"] == "query_in_use"
    assert "JOBUSING01" in refused.json()["message"]
    assert client.get(f"/workloads/queries/{query['id']}").status_code == 200

    with _jobs_projection_batch(system) as view:
        view.execute("DELETE FROM {query_jobs} WHERE query_id = %s", (query["id"],))
    assert client.delete(f"/workloads/queries/{query['id']}").status_code == 204


def test_another_organizations_query_is_404(api: str, client: httpx.Client, system: System) -> None:
    query = _query(client)
    with http_client(api, found_org(system, "Outsider").token) as other:
        assert other.get(f"/workloads/queries/{query['id']}").status_code == 404
        assert other.delete(f"/workloads/queries/{query['id']}").status_code == 404
        assert other.get(f"/workloads/queries/{query['id']}/teams").status_code == 404
        assert query["id"] not in other.get("/me/queries").text
