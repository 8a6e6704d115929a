"""Workloads use cases: catalogs and saved queries (jobs: `commands/jobs.py`, its base).

Three ports keep this module free of I/O: a `SecretBox` seals secret configuration
before it reaches an event, `CatalogBackends` checks a catalog's provider settings
against the real service (and sets up its initial database), and `QueryUsage` answers
which active job versions use a saved query.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from sailplane.commands.base import Clock, utc_now
from sailplane.commands.jobs import Clusters, JobUseCases, NoClusters
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError
from sailplane.domain.identity import Team
from sailplane.domain.ids import new_id
from sailplane.domain.workloads import (
    Catalog,
    SavedQuery,
    SharedWithTeams,
    check_catalog_name,
    check_team_ids,
    merge_patch,
    provider_of,
)
from sailplane.storage import EventLog

CATALOG_NAME_KEY = "catalog-name"


class SecretBox(Protocol):
    def seal(self, plaintext: str) -> str: ...

    def open(self, sealed: str) -> str: ...


class CatalogBackends(Protocol):
    def prepare(
        self,
        *,
        organization_id: str,
        provider: str,
        config: dict[str, str],
        secrets: dict[str, str],
    ) -> None:
        """Make sure the catalog is usable as configured; raise a DomainError when not."""


class QueryUsage(Protocol):
    def active_job_ids(self, organization_id: str, query_id: str) -> list[str]:
        """Jobs whose active version runs this saved query (`config.sql.queryId`)."""


class Workloads(JobUseCases):
    def __init__(
        self,
        log: EventLog,
        *,
        secret_box: SecretBox,
        catalog_backends: CatalogBackends,
        query_usage: QueryUsage,
        clusters: Clusters | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.secret_box = secret_box
        self.catalog_backends = catalog_backends
        self.query_usage = query_usage
        self.clusters = clusters or NoClusters()
        super().__init__(log, clock=clock)

    # --- catalogs ------------------------------------------------------------------------

    def create_catalog(
        self,
        *,
        name: str,
        provider: str,
        config_write: dict[str, Any],
        team_ids: list[str],
        by: Actor,
    ) -> tuple[str, int]:
        spec = provider_of(provider)
        config, secrets = spec.check(config_write)
        teams = self._teams(team_ids, by)
        catalog_id = new_id()
        name = check_catalog_name(name)
        name_key = self._claim_key(
            CATALOG_NAME_KEY, name.lower(), catalog_id, by=by, conflict=_name_taken(name)
        )
        self.catalog_backends.prepare(
            organization_id=by.organization_id, provider=spec.name, config=config, secrets=secrets
        )
        catalog = Catalog.create(
            id=catalog_id,
            name=name,
            provider=spec.name,
            config=config,
            sealed_secrets={k: self.secret_box.seal(v) for k, v in secrets.items()},
            team_ids=[t.id for t in teams],
            by=by,
            at=self.clock(),
        )
        return catalog.id, self._commit(catalog, name_key, conflict=_name_taken(name))

    def update_catalog(
        self,
        catalog_id: str,
        *,
        name: str | None,
        config_patch: dict[str, Any] | None,
        by: Actor,
    ) -> int:
        """Rename and/or reconfigure; `config_patch` is a JSON merge patch of configWrite."""
        catalog = self._catalog(catalog_id, by)
        old_name = catalog.name
        new_name = old_name if name is None else check_catalog_name(name)
        keys = []
        if new_name.lower() != old_name.lower():
            conflict = _name_taken(new_name)
            keys.append(
                self._claim_key(
                    CATALOG_NAME_KEY, new_name.lower(), catalog.id, by=by, conflict=conflict
                )
            )
            keys.append(self._release_key(CATALOG_NAME_KEY, old_name.lower(), catalog.id, by=by))
        config = sealed = None
        if config_patch is not None:
            spec = provider_of(catalog.provider)
            current_secrets = {k: self.secret_box.open(v) for k, v in catalog.secrets.items()}
            config, secrets = spec.check(
                merge_patch({**catalog.config, **current_secrets}, config_patch)
            )
            sealed = {
                k: catalog.secrets[k] if current_secrets.get(k) == v else self.secret_box.seal(v)
                for k, v in secrets.items()
            }
            if config != catalog.config or secrets != current_secrets:
                self.catalog_backends.prepare(
                    organization_id=by.organization_id,
                    provider=spec.name,
                    config=config,
                    secrets=secrets,
                )
        catalog.update(name=new_name, config=config, sealed_secrets=sealed, by=by, at=self.clock())
        return self._commit(catalog, *keys, conflict=_name_taken(new_name) if keys else None)

    def delete_catalog(self, catalog_id: str, *, by: Actor) -> int:
        catalog = self._catalog(catalog_id, by)
        catalog.delete(by=by, at=self.clock())
        name_key = self._release_key(CATALOG_NAME_KEY, catalog.name.lower(), catalog.id, by=by)
        return self._commit(catalog, name_key)

    def grant_catalog_teams(self, catalog_id: str, team_ids: list[str], *, by: Actor) -> int:
        return self._grant(self._catalog(catalog_id, by), team_ids, by)

    def revoke_catalog_team(self, catalog_id: str, team_id: str, *, by: Actor) -> int:
        return self._revoke(self._catalog(catalog_id, by), team_id, by)

    # --- saved queries -------------------------------------------------------------------

    def create_query(
        self,
        *,
        name: str,
        description: str | None,
        catalog_schema: str | None,
        catalog_id: str | None,
        query_text: str,
        tags: list[str],
        team_ids: list[str],
        by: Actor,
    ) -> tuple[str, int]:
        teams = self._teams(team_ids, by)
        if catalog_id is not None:
            self._catalog(catalog_id, by)
        query = SavedQuery.create(
            id=new_id(),
            name=name,
            description=description,
            catalog_schema=catalog_schema,
            catalog_id=catalog_id,
            query_text=query_text,
            tags=tags,
            team_ids=[t.id for t in teams],
            by=by,
            at=self.clock(),
        )
        return query.id, self._commit(query)

    def update_query(self, query_id: str, fields: dict[str, Any], *, by: Actor) -> int:
        """Change the given fields (any of name, description, catalog_schema, catalog_id,
        query_text, tags); a catalog_id must name a catalog of the organization."""
        query = self._query(query_id, by)
        if fields.get("catalog_id") is not None and fields["catalog_id"] != query.catalog_id:
            self._catalog(fields["catalog_id"], by)
        query.update(fields, by=by, at=self.clock())
        return self._commit(query)

    def delete_query(self, query_id: str, *, by: Actor) -> int:
        query = self._query(query_id, by)
        jobs = self.query_usage.active_job_ids(by.organization_id, query.id)
        if jobs:
            raise ConflictError(
                f"Query {query.id} is used by the active version of job(s) {', '.join(jobs)}; "
                "publish job versions that no longer use it first.",
                code="query_in_use",
            )
        query.delete(by=by, at=self.clock())
        return self._commit(query)

    def grant_query_teams(self, query_id: str, team_ids: list[str], *, by: Actor) -> int:
        return self._grant(self._query(query_id, by), team_ids, by)

    def revoke_query_team(self, query_id: str, team_id: str, *, by: Actor) -> int:
        return self._revoke(self._query(query_id, by), team_id, by)

    # --- helpers -------------------------------------------------------------------------

    def _grant(self, resource: SharedWithTeams, team_ids: list[str], by: Actor) -> int:
        teams = self._teams(check_team_ids(team_ids, required=True), by)
        resource.grant_teams([t.id for t in teams], by=by, at=self.clock())
        return self._commit(resource)

    def _revoke(self, resource: SharedWithTeams, team_id: str, by: Actor) -> int:
        resource.revoke_team(team_id, by=by, at=self.clock())
        return self._commit(resource)

    def _teams(self, team_ids: Iterable[str], by: Actor) -> list[Team]:
        return [
            self._load(Team, team_id, organization_id=by.organization_id, kind="team")
            for team_id in check_team_ids(team_ids)
        ]

    def _catalog(self, catalog_id: str, by: Actor) -> Catalog:
        return self._load(Catalog, catalog_id, organization_id=by.organization_id, kind="catalog")

    def _query(self, query_id: str, by: Actor) -> SavedQuery:
        return self._load(SavedQuery, query_id, organization_id=by.organization_id, kind="query")


def _name_taken(name: str) -> ConflictError:
    return ConflictError(f"A catalog named {name!r} already exists.", code="catalog_name_taken")
