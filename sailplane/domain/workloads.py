"""Workloads: catalogs and saved queries, each shared with teams.

A catalog points Sail at table metadata: `memory` (Sail's in-memory catalog) or `glue`
(the AWS Glue Data Catalog). Its configuration is written as `configWrite` and read back
as `config`; secret fields are kept only in sealed form (the application seals them
before they reach an event) and are never shown, only whether they are set.

A saved query is reusable SQL with the catalog and schema it runs against.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import InvalidValueError, NotFoundError
from sailplane.domain.ids import is_valid_id

CATALOG_NAME_MAX = 100
QUERY_NAME_MAX = 200
QUERY_DESCRIPTION_MAX = 2000
QUERY_TEXT_MAX = 1_000_000
SCHEMA_NAME_MAX = 255
TAG_MAX = 64
TAGS_MAX = 50


# --- team grants, shared by catalogs and queries -------------------------------------------


class TeamsGrantedEvent(SailplaneAggregate.Event):
    team_ids: list[str]

    def apply(self, aggregate: Any) -> None:
        aggregate.team_ids = sorted({*aggregate.team_ids, *self.team_ids})


class TeamRevokedEvent(SailplaneAggregate.Event):
    team_id: str

    def apply(self, aggregate: Any) -> None:
        aggregate.team_ids = [t for t in aggregate.team_ids if t != self.team_id]


class SharedWithTeams(SailplaneAggregate):
    """An aggregate that teams are granted access to."""

    kind: str  # the resource name used in messages and error codes
    team_ids: list[str]
    deleted: bool

    TeamsGranted: type[TeamsGrantedEvent]
    TeamRevoked: type[TeamRevokedEvent]
    Deleted: type[SailplaneAggregate.Event]

    def grant_teams(self, team_ids: Iterable[str], *, by: Actor, at: datetime) -> list[str]:
        """Grant the teams not granted yet; returns those newly granted."""
        new = sorted(set(check_team_ids(team_ids, required=True)) - set(self.team_ids))
        if new:
            self._trigger(self.TeamsGranted, by=by, at=at, team_ids=new)
        return new

    def revoke_team(self, team_id: str, *, by: Actor, at: datetime) -> None:
        if team_id not in self.team_ids:
            raise NotFoundError(
                f"Team {team_id} is not granted {self.kind.replace('_', ' ')} {self.id}.",
                code=f"{self.kind}_team_not_found",
            )
        self._trigger(self.TeamRevoked, by=by, at=at, team_id=team_id)

    def delete(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Deleted, by=by, at=at)


class DeletedEvent(SailplaneAggregate.Event):
    def apply(self, aggregate: Any) -> None:
        aggregate.deleted = True
        aggregate.team_ids = []


def check_team_ids(team_ids: Iterable[str], *, required: bool = False) -> list[str]:
    ids = list(dict.fromkeys(team_ids))
    if required and not ids:
        raise InvalidValueError("Name at least one team.", field="teamIds")
    bad = [t for t in ids if not is_valid_id(t)]
    if bad:
        raise InvalidValueError(f"Not a team id: {', '.join(bad)}.", field="teamIds")
    return ids


# --- catalog providers ------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigField:
    name: str
    pattern: re.Pattern[str]
    description: str  # what a valid value is, for error messages
    secret: bool = False
    default: str | None = None


@dataclass(frozen=True)
class CatalogProvider:
    """The configuration a provider accepts, with its secret fields and cross-field rules."""

    name: str
    fields: tuple[ConfigField, ...]
    rule: Callable[[dict[str, str], dict[str, str]], None] | None = None

    @property
    def secret_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.secret)

    def check(self, values: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        """Validate written values; returns (plain configuration, secret values)."""
        known = {f.name: f for f in self.fields}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InvalidValueError(
                f"The {self.name} provider has no setting {unknown[0]!r}; it accepts "
                f"{', '.join(f.name for f in self.fields)}.",
                field=f"configWrite.{unknown[0]}",
                code="invalid_catalog_config",
            )
        config: dict[str, str] = {}
        secrets: dict[str, str] = {}
        for name, value in values.items():
            spec = known[name]
            if value is None:
                continue
            if not isinstance(value, str) or not spec.pattern.fullmatch(value):
                raise InvalidValueError(
                    f"configWrite.{name} must be {spec.description}.",
                    field=f"configWrite.{name}",
                    code="invalid_catalog_config",
                )
            (secrets if spec.secret else config)[name] = value
        if self.rule is not None:
            self.rule(config, secrets)
        return config, secrets

    def displayed(self, config: dict[str, str], secret_names: Iterable[str]) -> dict[str, Any]:
        """The configuration as read back: defaults filled in, secrets only as `<name>Configured`."""
        shown: dict[str, Any] = {}
        present = set(secret_names)
        for spec in self.fields:
            if spec.secret:
                shown[f"{spec.name}Configured"] = spec.name in present
            elif spec.name in config:
                shown[spec.name] = config[spec.name]
            elif spec.default is not None:
                shown[spec.name] = spec.default
        return shown


_TEXT = re.compile(r"[^\x00-\x1f]{1,1024}")
_MEMORY_DATABASE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,254}")
_GLUE_DATABASE = re.compile(r"[a-z0-9_][a-z0-9_-]{0,254}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_URL = re.compile(r"https?://[^\s/?#]+(:\d+)?(/[^\s]*)?")
_ACCOUNT = re.compile(r"\d{12}")
_ACCESS_KEY_ID = re.compile(r"[A-Z0-9]{16,128}")
_SECRET = re.compile(r"\S{1,256}")
_ID = re.compile(r"[A-Z0-9]{1,20}")


def _glue_credentials(config: dict[str, str], secrets: dict[str, str]) -> None:
    has_keys = "accessKeyId" in config or "secretAccessKey" in secrets
    if "connectionId" in config and has_keys:
        raise InvalidValueError(
            "A glue catalog authenticates either through connectionId or with an access key "
            "pair, not both.",
            field="configWrite.connectionId",
            code="invalid_catalog_config",
        )
    if "connectionId" in config:
        return
    if not ("accessKeyId" in config and "secretAccessKey" in secrets):
        raise InvalidValueError(
            "A glue catalog needs connectionId (an AWS connection) or both accessKeyId and "
            "secretAccessKey.",
            field="configWrite.connectionId" if not has_keys else "configWrite.secretAccessKey",
            code="invalid_catalog_config",
        )


def _glue_region(config: dict[str, str], secrets: dict[str, str]) -> None:
    if "region" not in config:
        raise InvalidValueError(
            "A glue catalog needs region, the AWS region of its Glue Data Catalog.",
            field="configWrite.region",
            code="invalid_catalog_config",
        )
    _glue_credentials(config, secrets)


MEMORY = CatalogProvider(
    "memory",
    (
        ConfigField(
            "initialDatabase",
            _MEMORY_DATABASE,
            "a database name (letters, digits, _ and -)",
            default="default",
        ),
        ConfigField("initialDatabaseComment", _TEXT, "one line of at most 1024 characters"),
    ),
)
GLUE = CatalogProvider(
    "glue",
    (
        ConfigField("region", _REGION, "an AWS region such as us-east-1"),
        ConfigField("connectionId", _ID, "the id of an AWS connection"),
        ConfigField("glueCatalogId", _ACCOUNT, "the 12-digit AWS account id of the Glue catalog"),
        ConfigField("endpointUrl", _URL, "an http or https URL"),
        ConfigField(
            "initialDatabase",
            _GLUE_DATABASE,
            "a Glue database name (lowercase letters, digits, _ and -)",
        ),
        ConfigField("initialDatabaseComment", _TEXT, "one line of at most 1024 characters"),
        ConfigField("accessKeyId", _ACCESS_KEY_ID, "an AWS access key id"),
        ConfigField("secretAccessKey", _SECRET, "an AWS secret access key", secret=True),
    ),
    rule=_glue_region,
)
PROVIDERS: dict[str, CatalogProvider] = {p.name: p for p in (MEMORY, GLUE)}


def provider_of(name: str) -> CatalogProvider:
    provider = PROVIDERS.get(name)
    if provider is None:
        raise InvalidValueError(
            f"Unknown catalog provider {name!r}; supported: {', '.join(PROVIDERS)}.",
            field="provider",
            code="unsupported_provider",
        )
    return provider


def merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 on a flat object: sent keys replace, `null` removes, the rest stays."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def check_catalog_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > CATALOG_NAME_MAX:
        raise InvalidValueError(
            f"The catalog name must be 1 to {CATALOG_NAME_MAX} characters.", field="name"
        )
    return cleaned


# --- catalogs --------------------------------------------------------------------------------


class Catalog(SharedWithTeams):
    kind = "catalog"
    name: str
    provider: str
    config: dict[str, str]
    secrets: dict[str, str]  # secret field -> sealed value

    class Created(SailplaneAggregate.Created):
        name: str
        provider: str
        config: dict[str, str]
        secrets: dict[str, str]
        team_ids: list[str]

        def apply(self, aggregate: Catalog) -> None:
            super().apply(aggregate)
            aggregate.name = self.name
            aggregate.provider = self.provider
            aggregate.config = dict(self.config)
            aggregate.secrets = dict(self.secrets)
            aggregate.team_ids = sorted(self.team_ids)
            aggregate.deleted = False

    class Updated(SailplaneAggregate.Event):
        changes: dict[str, Any]  # any of name, config, secrets

        def apply(self, aggregate: Catalog) -> None:
            if "name" in self.changes:
                aggregate.name = self.changes["name"]
            if "config" in self.changes:
                aggregate.config = dict(self.changes["config"])
            if "secrets" in self.changes:
                aggregate.secrets = dict(self.changes["secrets"])

    class TeamsGranted(TeamsGrantedEvent):
        pass

    class TeamRevoked(TeamRevokedEvent):
        pass

    class Deleted(DeletedEvent):
        pass

    @classmethod
    def create(
        cls,
        *,
        id: str,
        name: str,
        provider: str,
        config: dict[str, str],
        sealed_secrets: dict[str, str],
        team_ids: list[str],
        by: Actor,
        at: datetime,
    ) -> Catalog:
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            name=check_catalog_name(name),
            provider=provider_of(provider).name,
            config=dict(config),
            secrets=dict(sealed_secrets),
            team_ids=sorted(check_team_ids(team_ids)),
        )

    def update(
        self,
        *,
        name: str | None,
        config: dict[str, str] | None,
        sealed_secrets: dict[str, str] | None,
        by: Actor,
        at: datetime,
    ) -> None:
        changes: dict[str, Any] = {}
        if name is not None and check_catalog_name(name) != self.name:
            changes["name"] = check_catalog_name(name)
        if config is not None and config != self.config:
            changes["config"] = dict(config)
        if sealed_secrets is not None and sealed_secrets != self.secrets:
            changes["secrets"] = dict(sealed_secrets)
        if changes:
            self._trigger(self.Updated, by=by, at=at, changes=changes)


# --- saved queries ---------------------------------------------------------------------------


QUERY_FIELDS = ("name", "description", "catalog_schema", "catalog_id", "query_text", "tags")


def check_query_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalize the given saved-query fields (any subset of QUERY_FIELDS)."""
    checked: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "name":
            checked[key] = _text(value, field="name", limit=QUERY_NAME_MAX, label="The query name")
        elif key == "query_text":
            if not value.strip():
                raise InvalidValueError("queryText must not be empty.", field="queryText")
            if len(value) > QUERY_TEXT_MAX:
                raise InvalidValueError(
                    f"queryText is longer than {QUERY_TEXT_MAX} characters.",
                    field="queryText",
                    code="value_too_large",
                )
            checked[key] = value
        elif key == "description":
            if value is not None and len(value) > QUERY_DESCRIPTION_MAX:
                raise InvalidValueError(
                    f"The description is longer than {QUERY_DESCRIPTION_MAX} characters.",
                    field="description",
                )
            checked[key] = value
        elif key == "catalog_schema":
            checked[key] = (
                None
                if value is None
                else _text(
                    value, field="catalog_schema", limit=SCHEMA_NAME_MAX, label="catalog_schema"
                )
            )
        elif key == "catalog_id":
            if value is not None and not is_valid_id(value):
                raise InvalidValueError(f"Not a catalog id: {value}.", field="catalogId")
            checked[key] = value
        elif key == "tags":
            checked[key] = check_tags(value)
        else:
            raise ValueError(f"not a saved query field: {key}")
    return checked


def _text(value: str, *, field: str, limit: int, label: str) -> str:
    cleaned = value.strip()
    if not cleaned or len(cleaned) > limit:
        raise InvalidValueError(f"{label} must be 1 to {limit} characters.", field=field)
    return cleaned


def check_tags(tags: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(t.strip() for t in tags))
    if len(cleaned) > TAGS_MAX:
        raise InvalidValueError(f"A query has at most {TAGS_MAX} tags.", field="tags")
    for tag in cleaned:
        if not tag or len(tag) > TAG_MAX:
            raise InvalidValueError(f"Each tag must be 1 to {TAG_MAX} characters.", field="tags")
    return cleaned


class SavedQuery(SharedWithTeams):
    kind = "query"
    member_id: str
    name: str
    description: str | None
    catalog_schema: str | None
    catalog_id: str | None
    query_text: str
    tags: list[str]

    class Created(SailplaneAggregate.Created):
        member_id: str
        name: str
        description: str | None
        catalog_schema: str | None
        catalog_id: str | None
        query_text: str
        tags: list[str]
        team_ids: list[str]

        def apply(self, aggregate: SavedQuery) -> None:
            super().apply(aggregate)
            aggregate.member_id = self.member_id
            aggregate.name = self.name
            aggregate.description = self.description
            aggregate.catalog_schema = self.catalog_schema
            aggregate.catalog_id = self.catalog_id
            aggregate.query_text = self.query_text
            aggregate.tags = list(self.tags)
            aggregate.team_ids = sorted(self.team_ids)
            aggregate.deleted = False

    class Updated(SailplaneAggregate.Event):
        changes: dict[str, Any]  # any of QUERY_FIELDS

        def apply(self, aggregate: SavedQuery) -> None:
            for key, value in self.changes.items():
                setattr(aggregate, key, list(value) if key == "tags" else value)

    class TeamsGranted(TeamsGrantedEvent):
        pass

    class TeamRevoked(TeamRevokedEvent):
        pass

    class Deleted(DeletedEvent):
        pass

    @classmethod
    def create(
        cls,
        *,
        id: str,
        name: str,
        description: str | None,
        catalog_schema: str | None,
        catalog_id: str | None,
        query_text: str,
        tags: list[str],
        team_ids: list[str],
        by: Actor,
        at: datetime,
    ) -> SavedQuery:
        fields = check_query_fields(
            {
                "name": name,
                "description": description,
                "catalog_schema": catalog_schema,
                "catalog_id": catalog_id,
                "query_text": query_text,
                "tags": tags,
            }
        )
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            member_id=by.id,
            team_ids=sorted(check_team_ids(team_ids)),
            **fields,
        )

    def update(self, fields: dict[str, Any], *, by: Actor, at: datetime) -> None:
        changes = {
            key: value
            for key, value in check_query_fields(fields).items()
            if getattr(self, key) != value
        }
        if changes:
            self._trigger(self.Updated, by=by, at=at, changes=changes)
