"""Catalog and saved-query views on real PostgreSQL: a rebuild from the log equals the live
views row for row, and who reaches what through teams."""

from __future__ import annotations

from typing import Any

import pytest

from sailplane.domain.access import MEMBER
from sailplane.domain.base import Actor
from sailplane.http.auth import Principal, reachable_team_ids
from sailplane.projections.query import Page, Sort
from sailplane.projections.runner import rebuild
from sailplane.projections.workloads import CatalogsProjection, QueriesProjection
from sailplane.storage import Database
from sailplane.system import System
from tests.conftest import found_org, running_system

WORKLOAD_PROJECTIONS = (CatalogsProjection, QueriesProjection)


def _snapshot(system: System) -> dict[str, list[dict[str, Any]]]:
    snapshot = {}
    with system.pool.connection() as conn, conn.cursor() as cur:
        for projection in WORKLOAD_PROJECTIONS:
            for table in projection.view_class.tables:
                snapshot[table] = sorted(cur.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    return snapshot


def _history(system: System, owner: Actor, moto: str) -> None:
    w = system.workloads.commands
    teams = [
        system.identity.commands.create_team(name=f"team-{i}", default_role_id=None, by=owner)[0]
        for i in range(4)
    ]
    catalogs = [
        w.create_catalog(
            name=f"catalog-{i}",
            provider="memory",
            config_write={"initialDatabase": f"db{i}"} if i % 2 else {},
            team_ids=teams[: i % 3],
            by=owner,
        )[0]
        for i in range(8)
    ]
    glue, _ = w.create_catalog(
        name="lake",
        provider="glue",
        config_write={
            "region": "us-east-1",
            "endpointUrl": moto,
            "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
            "secretAccessKey": "rebuild-secret",
            "initialDatabase": "rebuild_db",
        },
        team_ids=[teams[3]],
        by=owner,
    )
    w.update_catalog(
        glue, name="lake-renamed", config_patch={"initialDatabaseComment": "c"}, by=owner
    )
    w.update_catalog(catalogs[1], name=None, config_patch={"initialDatabase": None}, by=owner)
    w.grant_catalog_teams(catalogs[0], teams[1:3], by=owner)
    w.revoke_catalog_team(catalogs[2], teams[0], by=owner)
    w.delete_catalog(catalogs[3], by=owner)
    queries = [
        w.create_query(
            name=f"query-{i}",
            description="d" if i % 2 else None,
            catalog_schema="analytics" if i % 3 else None,
            catalog_id=catalogs[i % 3],
            query_text=f"SELECT {i}",
            tags=["etl", f"t{i}"],
            team_ids=teams[i % 2 : 2],
            by=owner,
        )[0]
        for i in range(10)
    ]
    w.update_query(queries[0], {"name": "renamed", "tags": ["x"], "catalog_id": None}, by=owner)
    w.update_query(queries[1], {"description": None, "query_text": "SELECT 'changed'"}, by=owner)
    w.grant_query_teams(queries[2], [teams[3]], by=owner)
    w.revoke_query_team(queries[3], teams[1], by=owner)
    w.delete_query(queries[4], by=owner)
    system.identity.commands.delete_team(teams[1], by=owner)
    assert system.views_reached(w.delete_catalog(catalogs[5], by=owner))


@pytest.mark.aws
def test_rebuilt_catalog_and_query_views_equal_the_live_ones(fresh_db: Database, moto: str) -> None:
    with running_system(fresh_db) as system:
        org = found_org(system)
        _history(system, org.owner, moto)
        live = _snapshot(system)
        assert len(live["catalogs"]) == 7 and len(live["queries"]) == 9
        assert live["catalog_teams"] and live["query_teams"]
        assert all(row["team_id"] != "" for row in live["catalog_teams"])
        for projection in WORKLOAD_PROJECTIONS:
            rebuild(system.event_log, projection, system.pool, batch_size=5)
        assert _snapshot(system) == live


def test_a_member_without_an_organization_permission_reaches_what_their_teams_are_granted(
    system: System,
) -> None:
    org = found_org(system)
    owner = org.owner
    granted, other, viewing_only = (
        system.identity.commands.create_team(name=n, default_role_id=None, by=owner)[0]
        for n in ("granted", "other", "viewing")
    )
    member_id, _ = system.identity.commands.add_member(
        email=f"reach-{org.id}@example.com", display_name="Reach", role_ids=[MEMBER.id], by=owner
    )
    system.identity.commands.add_team_member(granted, member_id, role_ids=["TEAMADMIN"], by=owner)
    system.identity.commands.add_team_member(
        viewing_only, member_id, role_ids=["TEAMMEMBER"], by=owner
    )
    mine, _ = system.workloads.commands.create_catalog(
        name="mine", provider="memory", config_write={}, team_ids=[granted], by=owner
    )
    _, position = system.workloads.commands.create_catalog(
        name="theirs", provider="memory", config_write={}, team_ids=[other], by=owner
    )
    system.wait_for_views(position)
    # Its team roles, read as authentication reads them for every request.
    team_roles = {
        team: tuple(roles)
        for team, roles in system.identity.teams.team_roles_of_member(org.id, member_id).items()
    }
    # A caller whose organization roles grant nothing reaches resources only through teams.
    caller = Principal(
        organization_id=org.id,
        kind="member",
        id=member_id,
        credential_id="test",
        role_ids=(),
        permissions=frozenset(),
        team_roles=team_roles,
    )
    assert reachable_team_ids(caller, "CanManageCatalogs") == [granted]
    teams = reachable_team_ids(caller, "CanViewCatalogs")
    assert teams == sorted([granted, viewing_only])
    total, rows, _ = system.workloads.catalogs.catalogs(
        org.id, Page(), Sort("name"), team_ids=teams
    )
    assert (total, [r["id"] for r in rows]) == (1, [mine])
    # An organization permission reaches everything.
    member = Principal(
        organization_id=org.id,
        kind="member",
        id=member_id,
        credential_id="test",
        role_ids=(MEMBER.id,),
        permissions=MEMBER.permissions,
        team_roles=team_roles,
    )
    assert reachable_team_ids(member, "CanViewCatalogs") is None
    assert reachable_team_ids(member, "CanManageCatalogs") == [granted]
