"""Authorization-matrix cases of the catalogs and saved-queries groups.

Changing a catalog or a query needs the manage permission in the organization or in a
team the resource is granted to; a plain Member has neither, so gets 403.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.authz import Case, World


def catalog(world: World) -> dict[str, Any]:
    created = world.owner.post(
        "/workloads/catalogs", json={"name": world.unique("catalog"), "provider": "memory"}
    )
    return {"catalog": created.json()["id"]}


def team(world: World) -> dict[str, Any]:
    created = world.owner.post("/org/teams", json={"name": world.unique("team")})
    return {"team": created.json()["team"]["id"]}


def catalog_and_team(world: World) -> dict[str, Any]:
    return {**catalog(world), **team(world)}


def catalog_granted_to_team(world: World) -> dict[str, Any]:
    values = catalog_and_team(world)
    world.owner.post(
        f"/workloads/catalogs/{values['catalog']}/teams", json={"teamIds": [values["team"]]}
    )
    return values


def query(world: World) -> dict[str, Any]:
    created = world.owner.post(
        "/workloads/queries", json={"name": world.unique("query"), "queryText": "SELECT 1"}
    )
    return {"query": created.json()["id"]}


def query_and_team(world: World) -> dict[str, Any]:
    return {**query(world), **team(world)}


def query_granted_to_team(world: World) -> dict[str, Any]:
    values = query_and_team(world)
    world.owner.post(
        f"/workloads/queries/{values['query']}/teams", json={"teamIds": [values["team"]]}
    )
    return values


def new_catalog(world: World, _: dict[str, Any]) -> dict[str, Any]:
    return {"name": world.unique("catalog"), "provider": "memory"}


def new_query(world: World, _: dict[str, Any]) -> dict[str, Any]:
    return {"name": world.unique("query"), "queryText": "SELECT 1"}


def team_ids(_: World, values: dict[str, Any]) -> dict[str, Any]:
    return {"teamIds": [values["team"]]}


CASES: list[Case] = [
    # catalogs
    Case("GET", "/workloads/catalogs", "CanViewCatalogs", 200, foreign_404=False),
    Case("POST", "/workloads/catalogs", "CanManageCatalogs", 201, body=new_catalog),
    Case("GET", "/workloads/catalogs/{catalog}", "CanViewCatalogs", 200, setup=catalog),
    Case(
        "PATCH",
        "/workloads/catalogs/{catalog}",
        "CanManageCatalogs",
        200,
        setup=catalog,
        body=lambda world, _: {"name": world.unique("catalog")},
    ),
    Case("DELETE", "/workloads/catalogs/{catalog}", "CanManageCatalogs", 204, setup=catalog),
    Case("GET", "/workloads/catalogs/{catalog}/teams", "CanViewCatalogs", 200, setup=catalog),
    Case(
        "POST",
        "/workloads/catalogs/{catalog}/teams",
        "CanManageCatalogs",
        201,
        setup=catalog_and_team,
        body=team_ids,
    ),
    Case(
        "DELETE",
        "/workloads/catalogs/{catalog}/teams/{team}",
        "CanManageCatalogs",
        204,
        setup=catalog_granted_to_team,
    ),
    Case("GET", "/workloads/catalogs/{catalog}/queries", "CanViewQueries", 200, setup=catalog),
    Case("GET", "/me/catalogs", "CanViewCatalogs", 200),
    Case("GET", "/workloads/teams/{team}/catalogs", "CanViewCatalogs", 200, setup=team),
    # saved queries
    Case("GET", "/workloads/queries", "CanViewQueries", 200, foreign_404=False),
    Case("POST", "/workloads/queries", "CanManageQueries", 201, body=new_query),
    Case("GET", "/workloads/queries/{query}", "CanViewQueries", 200, setup=query),
    Case(
        "PATCH",
        "/workloads/queries/{query}",
        "CanManageQueries",
        200,
        setup=query,
        body={"description": "x"},
    ),
    Case("DELETE", "/workloads/queries/{query}", "CanManageQueries", 204, setup=query),
    Case("GET", "/workloads/queries/{query}/teams", "CanViewQueries", 200, setup=query),
    Case(
        "POST",
        "/workloads/queries/{query}/teams",
        "CanManageQueries",
        201,
        setup=query_and_team,
        body=team_ids,
    ),
    Case(
        "DELETE",
        "/workloads/queries/{query}/teams/{team}",
        "CanManageQueries",
        204,
        setup=query_granted_to_team,
    ),
    Case("GET", "/me/queries", "CanViewQueries", 200),
    Case("GET", "/workloads/teams/{team}/queries", "CanViewQueries", 200, setup=team),
]
