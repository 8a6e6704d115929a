"""Every endpoint in the matrix: 403 without the permission, 404 across organizations,
success for the Owner (cases in `tests/e2e/authz/<area>.py`)."""

from __future__ import annotations

import importlib
import pkgutil
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

import tests.e2e.authz as authz
from sailplane.domain.access import MEMBER
from sailplane.http.auth import RUN_TOKEN_ROUTE
from sailplane.http.runs_v1 import RUN_QUEUE_PREFIX
from sailplane.system import System
from tests.conftest import Org, add_member_with_token, found_org, http_client
from tests.e2e.authz import Case, World
from tests.oidc_provider import OidcProvider, oidc_provider


def _cases() -> list[Case]:
    found: list[Case] = []
    for module in pkgutil.iter_modules(authz.__path__):
        found += getattr(importlib.import_module(f"{authz.__name__}.{module.name}"), "CASES", [])
    return found


CASES = _cases()


@pytest.fixture(scope="module")
def oidc() -> Iterator[OidcProvider]:
    """A real OIDC issuer for the identity-provider cases."""
    with oidc_provider() as provider:
        yield provider


@pytest.fixture(scope="module")
def stranger(system: System) -> Org:
    return found_org(system, "Matrix Stranger")


@pytest.fixture
def world(api: str, system: System, request: pytest.FixtureRequest) -> Iterator[World]:
    org = found_org(system, "Matrix Org")
    services = {}
    if "oidc" in request.fixturenames:
        services["oidc"] = request.getfixturevalue("oidc")
    with http_client(api, org.token) as owner:
        yield World(api=api, system=system, org=org, owner=owner, services=services)


def _lacking(world: World, permission: str) -> httpx.Client:
    """A caller of the organization without `permission`."""
    if permission not in MEMBER.permissions:
        _, token = add_member_with_token(world.system, world.org, [MEMBER.id])
        return http_client(world.api, token)
    account_id, _ = world.system.identity.commands.create_service_account(
        username=f"bare-{uuid.uuid4().hex[:8]}",
        description="no role",
        role_ids=[],
        by=world.org.owner,
    )
    token, position = world.system.identity.commands.issue_service_account_key(
        service_account_id=account_id, name="matrix", by=world.org.owner
    )
    world.system.wait_for_views(position)
    return http_client(world.api, token)


def _send(
    client: httpx.Client, case: Case, world: World, values: dict[str, object]
) -> httpx.Response:
    path = case.path.format(**{k: v for k, v in values.items() if not k.startswith("_")})
    if path.startswith(RUN_QUEUE_PREFIX):  # the run queue lives outside /api/v1
        path = world.api + path
    body = case.json_for(world, values)
    return (
        client.request(case.method, path, json=body)
        if body is not None
        else client.request(case.method, path)
    )


@pytest.mark.usefixtures("oidc", "provisioner")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_endpoint_authorization(case: Case, world: World, stranger: Org) -> None:
    values = case.setup(world) if case.setup else {}

    with _lacking(world, case.permission) as lacking:
        denied = _send(lacking, case, world, values)
    assert denied.status_code == 403, f"{case.id} without {case.permission}: {denied.text}"
    refused = denied.json()
    assert refused.get("code") == "forbidden" or set(refused) == {"error", "request_id"}

    if case.checks_foreign:
        with http_client(world.api, stranger.token) as other:
            foreign = _send(other, case, world, values)
        assert foreign.status_code == 404, f"{case.id} from another organization: {foreign.text}"

    token = values.get("_owner_token")
    owner = http_client(world.api, str(token)) if token else world.owner
    try:
        allowed = _send(owner, case, world, values)
    finally:
        if token:
            owner.close()
    assert allowed.status_code == case.expect, f"{case.id} as Owner: {allowed.text}"


def test_the_matrix_covers_every_guarded_route(system: System) -> None:
    """A new endpoint without a matrix case fails here (public routes are exempt)."""
    from sailplane.http.app import API_PREFIX, create_app

    def shape(path: str) -> str:
        path = path.partition("?")[0]  # a case may carry a query (the run queue's project_id)
        return re.sub(r"\{[^}]+\}", "{}", path.rstrip("/") or "/")

    covered = {(c.method, shape(c.path)) for c in CASES}
    missing = []
    for route in create_app(system).routes:
        for handler in getattr(route, "route_handlers", []):
            methods = set(getattr(handler, "http_methods", ())) - {"OPTIONS", "HEAD"}
            if (
                not methods
                or handler.opt.get("exclude_from_auth")
                or handler.opt.get(RUN_TOKEN_ROUTE)  # run tokens only: test_run_runtime.py
                or not route.path.startswith((API_PREFIX, RUN_QUEUE_PREFIX))
            ):
                continue
            path = route.path.removeprefix(API_PREFIX)
            for method in methods:
                if (method, shape(path)) not in covered:
                    missing.append(f"{method} {path}")
    assert not missing, f"endpoints without an authorization-matrix case: {sorted(missing)}"
