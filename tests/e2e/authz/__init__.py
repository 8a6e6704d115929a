"""The authorization matrix: for every endpoint, who gets 403, 404 and success.

Each area adds a module to this package with a module-level `CASES: list[Case]` (no
registry to edit: `test_authorization_matrix.py` collects every module here). A case
names the endpoint, the one permission it declares, the Owner's expected status, and an
optional `setup` that creates what the path needs in the world's organization and returns
the values of the path's `{placeholders}` (plus anything the body needs).

For each case the test checks, over HTTP:
- a caller of the same organization without the permission gets 403: a plain Member
  when the Member role lacks it, else a service account with no role (the only principal
  that lacks what every role grants);
- the Owner of another organization gets 404 for a path that names a resource of this
  organization (never its data);
- this organization's Owner gets the expected status (with the token the setup returns
  under `_owner_token` when the endpoint needs a login rather than the Owner's API key).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from sailplane.system import System
from tests.conftest import Org


@dataclass
class World:
    """One fresh organization for one case, with what a setup may need."""

    api: str
    system: System
    org: Org
    owner: httpx.Client
    services: dict[str, Any] = field(default_factory=dict)  # e.g. "oidc": the test issuer

    @staticmethod
    def unique(prefix: str = "x") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"


Setup = Callable[[World], dict[str, Any]]
Body = Callable[[World, dict[str, Any]], Any]


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # below /api/v1 (or from /v1/ for the run queue), with {placeholders}
    permission: str  # the permission the endpoint declares
    expect: int  # the Owner's status
    setup: Setup | None = None
    body: Any = None  # a JSON value, or a function of (world, setup values)
    foreign_404: bool | None = None  # default: the path names a resource

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def checks_foreign(self) -> bool:
        return ("{" in self.path) if self.foreign_404 is None else self.foreign_404

    def json_for(self, world: World, values: dict[str, Any]) -> Any:
        return self.body(world, values) if callable(self.body) else self.body
