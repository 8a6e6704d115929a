"""The `catalogs` group of the LakeSail API, rule by rule, over HTTP.

Glue catalogs run against a moto server: the catalog's `endpointUrl` points at it.
"""

from __future__ import annotations

import uuid

import boto3
import httpx
import pytest

from sailplane.system import System
from tests.conftest import Org, add_member_with_token, http_client
from tests.services import free_port

SUMMARY_KEYS = {
    "id",
    "name",
    "provider",
    "config",
    "createdAt",
    "createdBy",
    "updatedAt",
    "updatedBy",
}
LINK_KEYS = {"catalogId", "teamId", "createdAt", "createdBy", "updatedAt", "updatedBy"}
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _name(prefix: str = "catalog") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _team(client: httpx.Client) -> str:
    return client.post("/org/teams", json={"name": _name("team")}).json()["team"]["id"]


def _memory(client: httpx.Client, **body: object) -> dict:
    response = client.post(
        "/workloads/catalogs", json={"name": _name(), "provider": "memory", **body}
    )
    assert response.status_code == 201, response.text
    return response.json()


def _glue_config(moto: str, **extra: str) -> dict[str, str]:
    return {
        "region": "us-east-1",
        "endpointUrl": moto,
        "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
        "secretAccessKey": SECRET,
        **extra,
    }


def _glue_client(moto: str) -> object:
    return boto3.client(
        "glue",
        region_name="us-east-1",
        endpoint_url=moto,
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key=SECRET,
    )


def test_create_describe_update_delete_a_memory_catalog(client: httpx.Client, org: Org) -> None:
    created = client.post(
        "/workloads/catalogs",
        json={
            "name": "Development",
            "provider": "memory",
            "configWrite": {"initialDatabaseComment": "Default in-memory database"},
        },
    )
    assert created.status_code == 201
    body = created.json()
    assert set(body) == SUMMARY_KEYS
    assert body["provider"] == "memory"
    # `config` reads back the effective settings, defaults included.
    assert body["config"] == {
        "initialDatabase": "default",
        "initialDatabaseComment": "Default in-memory database",
    }
    assert body["createdBy"] == org.owner_member_id
    assert body["createdAt"].endswith("Z")

    described = client.get(f"/workloads/catalogs/{body['id']}")
    assert described.status_code == 200
    assert set(described.json()) == SUMMARY_KEYS | {"configWrite"}
    assert described.json()["configWrite"] == {
        "initialDatabaseComment": "Default in-memory database"
    }

    updated = client.patch(
        f"/workloads/catalogs/{body['id']}",
        json={"name": "Development EU", "configWrite": {"initialDatabase": "dev"}},
    )
    assert updated.status_code == 200
    assert set(updated.json()) == SUMMARY_KEYS
    assert updated.json()["name"] == "Development EU"
    # configWrite in a PATCH is a merge patch: the comment stays.
    assert updated.json()["config"] == {
        "initialDatabase": "dev",
        "initialDatabaseComment": "Default in-memory database",
    }
    assert updated.json()["updatedAt"] >= body["updatedAt"]

    cleared = client.patch(
        f"/workloads/catalogs/{body['id']}", json={"configWrite": {"initialDatabaseComment": None}}
    )
    assert cleared.json()["config"] == {"initialDatabase": "dev"}

    assert client.delete(f"/workloads/catalogs/{body['id']}").status_code == 204
    missing = client.get(f"/workloads/catalogs/{body['id']}")
    assert missing.status_code == 404
    assert missing.json() == {
        "message": f"Catalog {body['id']} was not found.",
        "code": "catalog_not_found",
    }
    assert client.delete(f"/workloads/catalogs/{body['id']}").status_code == 404


def test_catalog_names_are_unique_per_organization(client: httpx.Client) -> None:
    name = _name()
    first = _memory(client, name=name)
    duplicate = client.post(
        "/workloads/catalogs", json={"name": name.upper(), "provider": "memory"}
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "catalog_name_taken"

    other = _memory(client)
    taken = client.patch(f"/workloads/catalogs/{other['id']}", json={"name": name})
    assert taken.status_code == 409
    assert client.get(f"/workloads/catalogs/{other['id']}").json()["name"] == other["name"]

    # A deleted or renamed catalog's name is free again.
    client.patch(f"/workloads/catalogs/{first['id']}", json={"name": name + "-old"})
    assert (
        client.post("/workloads/catalogs", json={"name": name, "provider": "memory"}).status_code
        == 201
    )
    client.delete(f"/workloads/catalogs/{first['id']}")
    renamed = client.patch(f"/workloads/catalogs/{other['id']}", json={"name": name + "-old"})
    assert renamed.status_code == 200


def test_the_same_name_may_be_used_in_another_organization(
    api: str, client: httpx.Client, system: System
) -> None:
    from tests.conftest import found_org

    name = _name()
    _memory(client, name=name)
    with http_client(api, found_org(system, "Elsewhere").token) as other:
        assert (
            other.post("/workloads/catalogs", json={"name": name, "provider": "memory"}).status_code
            == 201
        )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"provider": "hive"}, 422, "provider"),
        ({"provider": "memory", "configWrite": {"colour": "blue"}}, 422, "configWrite.colour"),
        (
            {"provider": "memory", "configWrite": {"initialDatabase": "no spaces"}},
            422,
            "configWrite.initialDatabase",
        ),
        (
            {"provider": "memory", "configWrite": {"initialDatabase": 7}},
            422,
            "configWrite.initialDatabase",
        ),
        ({"provider": "glue", "configWrite": {}}, 422, "configWrite.region"),
        ({"provider": "glue", "configWrite": {"region": "Mars"}}, 422, "configWrite.region"),
        (
            {"provider": "glue", "configWrite": {"region": "us-east-1"}},
            422,
            "configWrite.connectionId",
        ),
        (
            {
                "provider": "glue",
                "configWrite": {"region": "us-east-1", "accessKeyId": "AKIAIOSFODNN7EXAMPLE"},
            },
            422,
            "configWrite.secretAccessKey",
        ),
        (
            {
                "provider": "glue",
                "configWrite": {
                    "region": "us-east-1",
                    "connectionId": "CONN000001",
                    "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
                    "secretAccessKey": "x",
                },
            },
            422,
            "configWrite.connectionId",
        ),
        (
            {"provider": "glue", "configWrite": {"region": "us-east-1", "endpointUrl": "ftp://x"}},
            422,
            "configWrite.endpointUrl",
        ),
        ({"provider": "memory", "name": "   "}, 422, "name"),
        ({"provider": "memory", "teamIds": ["not an id"]}, 422, "teamIds"),
    ],
)
def test_invalid_catalog_settings_are_422_naming_the_field_and_create_nothing(
    client: httpx.Client, body: dict, status: int, field: str
) -> None:
    before = client.get("/workloads/catalogs").json()["total"]
    response = client.post("/workloads/catalogs", json={"name": _name(), **body})
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    assert set(response.json()) == {"message", "code", "field"}
    assert client.get("/workloads/catalogs").json()["total"] == before


def test_malformed_catalog_requests_are_400(client: httpx.Client) -> None:
    assert client.post("/workloads/catalogs", json={"name": _name()}).status_code == 400
    unknown = client.post(
        "/workloads/catalogs", json={"name": _name(), "provider": "memory", "colour": "blue"}
    )
    assert unknown.status_code == 400
    assert "colour" in unknown.json()["message"]
    catalog = _memory(client)
    # The provider of a catalog cannot change: PATCH has no such field.
    assert (
        client.patch(f"/workloads/catalogs/{catalog['id']}", json={"provider": "glue"}).status_code
        == 400
    )


@pytest.mark.aws
def test_a_glue_catalog_reaches_glue_and_creates_its_initial_database(
    client: httpx.Client, moto: str
) -> None:
    database = f"sales_{uuid.uuid4().hex[:8]}"
    created = client.post(
        "/workloads/catalogs",
        json={
            "name": _name(),
            "provider": "glue",
            "configWrite": _glue_config(
                moto, initialDatabase=database, initialDatabaseComment="Sales data"
            ),
        },
    )
    assert created.status_code == 201, created.text
    glue = _glue_client(moto)
    assert glue.get_database(Name=database)["Database"]["Description"] == "Sales data"
    # The secret is never returned: `config` only says it is set.
    assert created.json()["config"] == {
        "region": "us-east-1",
        "endpointUrl": moto,
        "initialDatabase": database,
        "initialDatabaseComment": "Sales data",
        "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
        "secretAccessKeyConfigured": True,
    }
    described = client.get(f"/workloads/catalogs/{created.json()['id']}")
    assert "secretAccessKey" not in described.json()["configWrite"]
    assert SECRET not in described.text
    assert SECRET not in client.get("/workloads/catalogs").text
    assert SECRET not in client.get("/me/catalogs").text


@pytest.mark.aws
def test_a_glue_catalogs_secret_never_enters_the_event_log_in_clear(
    client: httpx.Client, moto: str
) -> None:
    catalog = client.post(
        "/workloads/catalogs",
        json={"name": _name(), "provider": "glue", "configWrite": _glue_config(moto)},
    ).json()
    events, after = [], 0
    while True:
        body = client.get("/events", params={"after": after}).json()
        events += body["items"]
        if body["next"] == after:
            break
        after = body["next"]
    created = next(e for e in events if e["aggregateId"] == catalog["id"])
    assert created["type"] == "sailplane.workloads.Catalog.Created"
    assert created["data"]["secrets"]["secretAccessKey"].startswith("fernet:")
    assert SECRET not in str(events)


@pytest.mark.aws
def test_a_glue_catalogs_secret_is_kept_when_a_patch_leaves_it_out(
    client: httpx.Client, moto: str
) -> None:
    catalog = client.post(
        "/workloads/catalogs",
        json={"name": _name(), "provider": "glue", "configWrite": _glue_config(moto)},
    ).json()
    database = f"later_{uuid.uuid4().hex[:8]}"
    # Changing the settings reaches Glue again, with the secret kept from before.
    updated = client.patch(
        f"/workloads/catalogs/{catalog['id']}", json={"configWrite": {"initialDatabase": database}}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["config"]["secretAccessKeyConfigured"] is True
    assert _glue_client(moto).get_database(Name=database)["Database"]["Name"] == database
    # Removing the secret leaves a glue catalog without credentials: refused, nothing changes.
    removed = client.patch(
        f"/workloads/catalogs/{catalog['id']}", json={"configWrite": {"secretAccessKey": None}}
    )
    assert removed.status_code == 422
    assert removed.json()["field"] == "configWrite.secretAccessKey"
    assert (
        client.get(f"/workloads/catalogs/{catalog['id']}").json()["config"]
        == updated.json()["config"]
    )


@pytest.mark.aws
def test_an_unreachable_glue_catalog_is_422_and_creates_nothing(
    client: httpx.Client, moto: str
) -> None:
    name = _name()
    nowhere = f"http://127.0.0.1:{free_port()}"
    refused = client.post(
        "/workloads/catalogs",
        json={"name": name, "provider": "glue", "configWrite": _glue_config(nowhere)},
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "catalog_unreachable"
    assert nowhere in refused.json()["message"]
    # The name was not taken by the failed request.
    retried = client.post(
        "/workloads/catalogs",
        json={"name": name, "provider": "glue", "configWrite": _glue_config(moto)},
    )
    assert retried.status_code == 201


def test_a_glue_catalog_through_an_unknown_connection_is_404(client: httpx.Client) -> None:
    response = client.post(
        "/workloads/catalogs",
        json={
            "name": _name(),
            "provider": "glue",
            "configWrite": {"region": "eu-west-1", "connectionId": "NOSUCHCONN"},
        },
    )
    assert response.status_code == 404
    assert response.json()["code"] == "connection_not_found"


def test_team_grants_of_a_catalog(client: httpx.Client) -> None:
    first, second = _team(client), _team(client)
    catalog = _memory(client, teamIds=[first])
    listed = client.get(f"/workloads/catalogs/{catalog['id']}/teams")
    assert listed.status_code == 200
    assert set(listed.json()) == {"items"}
    assert [link["teamId"] for link in listed.json()["items"]] == [first]
    assert set(listed.json()["items"][0]) == LINK_KEYS

    added = client.post(
        f"/workloads/catalogs/{catalog['id']}/teams", json={"teamIds": [second, first]}
    )
    assert added.status_code == 201
    assert set(added.json()) == {"items"}
    assert {link["teamId"] for link in added.json()["items"]} == {first, second}
    assert all(link["catalogId"] == catalog["id"] for link in added.json()["items"])
    # Granting a team twice changes nothing.
    again = client.post(f"/workloads/catalogs/{catalog['id']}/teams", json={"teamIds": [second]})
    assert again.status_code == 201
    assert [link["teamId"] for link in again.json()["items"]] == [second]
    assert len(client.get(f"/workloads/catalogs/{catalog['id']}/teams").json()["items"]) == 2

    assert client.delete(f"/workloads/catalogs/{catalog['id']}/teams/{first}").status_code == 204
    not_granted = client.delete(f"/workloads/catalogs/{catalog['id']}/teams/{first}")
    assert not_granted.status_code == 404
    assert not_granted.json()["code"] == "catalog_team_not_found"
    assert [
        link["teamId"]
        for link in client.get(f"/workloads/catalogs/{catalog['id']}/teams").json()["items"]
    ] == [second]


def test_granting_unknown_or_no_teams_is_refused(client: httpx.Client) -> None:
    catalog = _memory(client)
    unknown = client.post(
        f"/workloads/catalogs/{catalog['id']}/teams", json={"teamIds": ["NOSUCHTEAM"]}
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "team_not_found"
    empty = client.post(f"/workloads/catalogs/{catalog['id']}/teams", json={"teamIds": []})
    assert empty.status_code == 422
    assert empty.json()["field"] == "teamIds"
    at_create = client.post(
        "/workloads/catalogs",
        json={"name": _name(), "provider": "memory", "teamIds": ["NOSUCHTEAM"]},
    )
    assert at_create.status_code == 404
    assert client.get(f"/workloads/catalogs/{catalog['id']}/teams").json() == {"items": []}


def test_catalog_lists_have_the_normalized_shape(
    client: httpx.Client, api: str, system: System
) -> None:
    from tests.conftest import found_org

    fresh = found_org(system, "Catalog Lists")
    with http_client(api, fresh.token) as c:
        team = _team(c)
        granted = _memory(c, name="b-granted", teamIds=[team])
        alone = _memory(c, name="a-alone")
        for path in ("/workloads/catalogs", "/me/catalogs"):
            body = c.get(path).json()
            assert set(body) == {"total", "items", "included", "marker"}
            assert body["total"] == 2
            assert [i["catalogId"] for i in body["items"]] == [alone["id"], granted["id"]]
            assert body["items"][1] == {
                "catalogId": granted["id"],
                "teamIds": [team],
                "externalCatalogIds": [],
            }
            assert set(body["included"]) == {"catalogs", "teams", "externalCatalogs"}
            assert [x["id"] for x in body["included"]["catalogs"]] == [alone["id"], granted["id"]]
            assert all(set(x) == SUMMARY_KEYS for x in body["included"]["catalogs"])
            assert body["included"]["teams"][0]["team"]["id"] == team
            assert set(body["included"]["teams"][0]) == {"team", "memberCount"}
            assert body["included"]["externalCatalogs"] == []

        team_list = c.get(f"/workloads/teams/{team}/catalogs").json()
        assert team_list["total"] == 1
        assert [i["catalogId"] for i in team_list["items"]] == [granted["id"]]
        assert set(team_list["included"]) == {"catalogs", "teams", "externalCatalogs"}
        assert c.get("/workloads/teams/NOSUCHTEAM/catalogs").status_code == 404


def test_my_catalogs_page_and_sort(client: httpx.Client, api: str, system: System) -> None:
    from tests.conftest import found_org

    fresh = found_org(system, "My Catalogs")
    with http_client(api, fresh.token) as c:
        names = ["delta", "Alpha", "charlie", "bravo", "echo"]
        ids = {n: _memory(c, name=n)["id"] for n in names}
        c.patch(f"/workloads/catalogs/{ids['charlie']}", json={"name": "charlie"})  # no change
        c.patch(
            f"/workloads/catalogs/{ids['bravo']}", json={"configWrite": {"initialDatabase": "b"}}
        )

        page1 = c.get("/me/catalogs", params={"limit": 2, "page": 1}).json()
        page2 = c.get("/me/catalogs", params={"limit": 2, "page": 2}).json()
        page3 = c.get("/me/catalogs", params={"limit": 2, "page": 3}).json()
        assert page1["total"] == page2["total"] == page3["total"] == 5
        walked = [c_["name"] for p in (page1, page2, page3) for c_ in p["included"]["catalogs"]]
        assert walked == ["Alpha", "bravo", "charlie", "delta", "echo"]

        by_update = c.get(
            "/me/catalogs", params={"sortBy": "updatedAt", "sortDirection": "desc"}
        ).json()
        assert by_update["items"][0]["catalogId"] == ids["bravo"]
        descending = c.get("/me/catalogs", params={"sortDirection": "desc"}).json()
        assert [x["name"] for x in descending["included"]["catalogs"]] == walked[::-1]
        assert c.get("/me/catalogs", params={"sortBy": "colour"}).status_code == 400
        assert c.get("/me/catalogs", params={"page": 0}).status_code == 400
        assert c.get("/workloads/catalogs", params={"limit": 101}).status_code == 400


def test_members_view_catalogs_but_change_only_those_of_teams_they_administer(
    client: httpx.Client, system: System, org: Org, api: str
) -> None:
    admin_team, member_team = _team(client), _team(client)
    member_id, token = add_member_with_token(system, org, ["MEMBER"])
    system.identity.commands.add_team_member(
        admin_team, member_id, role_ids=["TEAMADMIN"], by=org.owner
    )
    _, position = system.identity.commands.add_team_member(
        member_team, member_id, role_ids=["TEAMMEMBER"], by=org.owner
    )
    system.wait_for_views(position)
    theirs = _memory(client, teamIds=[admin_team])
    only_member = _memory(client, teamIds=[member_team])
    other = _memory(client)
    with http_client(api, token) as member:
        # Viewing comes with the Member role.
        assert member.get(f"/workloads/catalogs/{other['id']}").status_code == 200
        assert member.get("/me/catalogs").json()["total"] >= 3
        # Changing needs CanManageCatalogs: Team Admin of a granted team has it.
        assert (
            member.patch(f"/workloads/catalogs/{theirs['id']}", json={"name": _name()}).status_code
            == 200
        )
        forbidden = member.patch(f"/workloads/catalogs/{other['id']}", json={"name": _name()})
        assert forbidden.status_code == 403
        assert forbidden.json()["code"] == "forbidden"
        assert (
            member.patch(
                f"/workloads/catalogs/{only_member['id']}", json={"name": _name()}
            ).status_code
            == 403
        )
        assert member.delete(f"/workloads/catalogs/{other['id']}").status_code == 403
        assert (
            member.post(
                f"/workloads/catalogs/{other['id']}/teams", json={"teamIds": [admin_team]}
            ).status_code
            == 403
        )
        # Creating: only for a team they administer.
        assert (
            member.post(
                "/workloads/catalogs", json={"name": _name(), "provider": "memory"}
            ).status_code
            == 403
        )
        mine = member.post(
            "/workloads/catalogs",
            json={"name": _name(), "provider": "memory", "teamIds": [admin_team]},
        )
        assert mine.status_code == 201
        assert member.delete(f"/workloads/catalogs/{mine.json()['id']}").status_code == 204


def test_another_organizations_catalog_is_404(
    api: str, client: httpx.Client, system: System
) -> None:
    from tests.conftest import found_org

    catalog = _memory(client)
    with http_client(api, found_org(system, "Stranger").token) as other:
        assert other.get(f"/workloads/catalogs/{catalog['id']}").status_code == 404
        assert (
            other.patch(f"/workloads/catalogs/{catalog['id']}", json={"name": "x"}).status_code
            == 404
        )
        assert other.get(f"/workloads/catalogs/{catalog['id']}/teams").status_code == 404
        assert catalog["id"] not in other.get("/workloads/catalogs").text


def test_deleting_a_team_removes_its_catalog_grants(client: httpx.Client) -> None:
    team, kept = _team(client), _team(client)
    catalog = _memory(client, teamIds=[team, kept])
    assert client.delete(f"/org/teams/{team}").status_code == 204
    links = client.get(f"/workloads/catalogs/{catalog['id']}/teams").json()["items"]
    assert [link["teamId"] for link in links] == [kept]


def test_deleting_a_catalog_removes_its_grants_and_keeps_queries(client: httpx.Client) -> None:
    team = _team(client)
    catalog = _memory(client, teamIds=[team])
    query = client.post(
        "/workloads/queries",
        json={"name": "uses it", "queryText": "SELECT 1", "catalogId": catalog["id"]},
    ).json()
    assert client.delete(f"/workloads/catalogs/{catalog['id']}").status_code == 204
    assert client.get(f"/workloads/teams/{team}/catalogs").json()["total"] == 0
    # "Queries that reference this catalog will need to be updated": they keep the id.
    described = client.get(f"/workloads/queries/{query['id']}").json()
    assert described["item"]["catalogId"] == catalog["id"]
    assert described["included"]["catalogs"] == []
    assert client.get(f"/workloads/catalogs/{catalog['id']}/queries").status_code == 404


def test_queries_of_a_catalog(client: httpx.Client) -> None:
    catalog, other = _memory(client), _memory(client)
    team = _team(client)
    uses = [
        client.post(
            "/workloads/queries",
            json={
                "name": f"q{i}",
                "queryText": "SELECT 1",
                "catalogId": catalog["id"],
                "teamIds": [team],
            },
        ).json()
        for i in range(3)
    ]
    client.post(
        "/workloads/queries",
        json={"name": "elsewhere", "queryText": "SELECT 2", "catalogId": other["id"]},
    )
    body = client.get(f"/workloads/catalogs/{catalog['id']}/queries", params={"limit": 2}).json()
    assert set(body) == {"total", "items", "included", "marker"}
    assert body["total"] == 3
    assert [i["queryId"] for i in body["items"]] == [q["id"] for q in uses[:2]]
    assert body["items"][0] == {
        "queryId": uses[0]["id"],
        "teamIds": [team],
        "catalogId": catalog["id"],
        "jobIds": [],
    }
    assert set(body["included"]) == {"queries", "catalogs", "teams", "jobs"}
    assert [c["id"] for c in body["included"]["catalogs"]] == [catalog["id"]]
    assert body["included"]["jobs"] == []
    rest = client.get(
        f"/workloads/catalogs/{catalog['id']}/queries",
        params={"limit": 2, "marker": body["marker"]},
    ).json()
    assert [i["queryId"] for i in rest["items"]] == [uses[2]["id"]]
    assert rest["marker"] is None


def test_concurrent_creates_of_one_name_have_one_winner(api: str, org: Org) -> None:
    import threading

    name = _name()
    barrier = threading.Barrier(6)
    results: list[int] = []

    def create() -> None:
        with http_client(api, org.token) as c:
            barrier.wait()
            results.append(
                c.post("/workloads/catalogs", json={"name": name, "provider": "memory"}).status_code
            )

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] + [409] * 5
    with http_client(api, org.token) as c:
        names = [x["name"] for x in c.get("/workloads/catalogs").json()["included"]["catalogs"]]
    assert names.count(name) == 1


DOCUMENTED = {
    ("get", "/me/catalogs"),
    ("get", "/workloads/catalogs"),
    ("post", "/workloads/catalogs"),
    ("get", "/workloads/catalogs/{catalog}"),
    ("delete", "/workloads/catalogs/{catalog}"),
    ("patch", "/workloads/catalogs/{catalog}"),
    ("get", "/workloads/catalogs/{catalog}/teams"),
    ("post", "/workloads/catalogs/{catalog}/teams"),
    ("delete", "/workloads/catalogs/{catalog}/teams/{team}"),
    ("get", "/workloads/catalogs/{catalog}/queries"),
    ("get", "/workloads/teams/{team}/catalogs"),
    ("get", "/me/queries"),
    ("get", "/workloads/queries"),
    ("post", "/workloads/queries"),
    ("get", "/workloads/queries/{query}"),
    ("delete", "/workloads/queries/{query}"),
    ("patch", "/workloads/queries/{query}"),
    ("get", "/workloads/queries/{query}/teams"),
    ("post", "/workloads/queries/{query}/teams"),
    ("delete", "/workloads/queries/{query}/teams/{team}"),
    ("get", "/workloads/teams/{team}/queries"),
}


def test_every_documented_catalog_and_query_endpoint_is_in_the_openapi_document(api: str) -> None:
    schema = httpx.get(api + "/schema/openapi.json").json()
    served = {
        # Litestar reserves the parameter name `query`: the document calls it query_id.
        (method, path.removeprefix("/api/v1").replace("{query_id}", "{query}"))
        for path, operations in schema["paths"].items()
        for method in operations
    }
    assert served >= DOCUMENTED
    tagged = [
        op["operationId"]
        for path, operations in schema["paths"].items()
        for op in operations.values()
        if {"catalogs", "queries"} & set(op.get("tags", []))
    ]
    assert len(tagged) == len(set(tagged)) == len(DOCUMENTED)
