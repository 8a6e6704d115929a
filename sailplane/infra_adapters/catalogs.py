"""Catalog providers as Sail sees them, and the check a catalog passes before it is saved.

`memory` is Sail's in-memory catalog: nothing outside Sailplane to check; Sail creates
its initial database when a session starts. `glue` is the AWS Glue Data Catalog:
before a glue catalog is saved, Sailplane reaches it with the catalog's credentials and
makes sure its initial database exists.

`sail_catalog_options` renders a catalog as one entry of Sail's `SAIL_CATALOG__LIST`
(what a cluster running a job is started with); `sail_catalog_list` renders the list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sailplane.infra_adapters.glue import GlueCatalogs


class CatalogBackends:
    def __init__(self, glue: GlueCatalogs) -> None:
        self.glue = glue

    def prepare(
        self,
        *,
        organization_id: str,
        provider: str,
        config: dict[str, str],
        secrets: dict[str, str],
    ) -> None:
        if provider == "glue":
            self.glue.ensure_initial_database(organization_id, config, secrets)


def sail_catalog_options(name: str, provider: str, config: dict[str, str]) -> dict[str, Any]:
    """One `SAIL_CATALOG__LIST` entry; AWS credentials reach Sail through its environment."""
    if provider == "memory":
        options: dict[str, Any] = {
            "name": name,
            "type": "memory",
            "initial_database": [config.get("initialDatabase", "default")],
        }
        if "initialDatabaseComment" in config:
            options["initial_database_comment"] = config["initialDatabaseComment"]
        return options
    if provider == "glue":
        options = {"name": name, "type": "glue", "region": config["region"]}
        if "endpointUrl" in config:
            options["endpoint_url"] = config["endpointUrl"]
        return options
    raise ValueError(f"Sail has no catalog provider {provider!r}")


def sail_catalog_list(entries: Iterable[dict[str, Any]]) -> str:
    """The value of `SAIL_CATALOG__LIST`: an array of inline tables."""

    def value(v: Any) -> str:
        if isinstance(v, list):
            return "[" + ", ".join(value(i) for i in v) + "]"
        return json.dumps(v)  # a basic string with escapes, as Sail's configuration reads it

    return (
        "["
        + ", ".join(
            "{" + ", ".join(f"{k}={value(v)}" for k, v in entry.items()) + "}" for entry in entries
        )
        + "]"
    )
