"""Catalogs and saved queries as pure domain code: events, provider settings, sealing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, InvalidValueError, NotFoundError
from sailplane.domain.workloads import GLUE, MEMORY, Catalog, SavedQuery, merge_patch, provider_of
from sailplane.infra_adapters.catalogs import sail_catalog_list
from sailplane.infra_adapters.secret_box import FernetSecretBox

BY = Actor("member", "MEMBER0001", "ORG0000001")
AT = datetime(2026, 11, 23, tzinfo=UTC)


def _catalog(**overrides: object) -> Catalog:
    fields: dict = {
        "id": "CATALOG001",
        "name": " Production ",
        "provider": "memory",
        "config": {},
        "sealed_secrets": {},
        "team_ids": ["TEAM000002", "TEAM000001"],
        "by": BY,
        "at": AT,
        **overrides,
    }
    return Catalog.create(**fields)


def test_a_catalog_records_every_change_as_an_event() -> None:
    catalog = _catalog()
    assert catalog.grant_teams(["TEAM000001", "TEAM000003"], by=BY, at=AT) == ["TEAM000003"]
    assert catalog.grant_teams(["TEAM000003"], by=BY, at=AT) == []  # nothing new: no event
    catalog.revoke_team("TEAM000001", by=BY, at=AT)
    catalog.update(name="Production", config=None, sealed_secrets=None, by=BY, at=AT)  # same name
    catalog.update(name="Prod", config={"initialDatabase": "x"}, sealed_secrets=None, by=BY, at=AT)
    catalog.delete(by=BY, at=AT)
    events = catalog.collect_events()
    assert [type(e).__name__ for e in events] == [
        "Created",
        "TeamsGranted",
        "TeamRevoked",
        "Updated",
        "Deleted",
    ]
    assert events[0].name == "Production"
    assert events[0].team_ids == ["TEAM000001", "TEAM000002"]
    assert events[3].changes == {"name": "Prod", "config": {"initialDatabase": "x"}}
    assert all(e.actor == "member:MEMBER0001" and e.organization_id == "ORG0000001" for e in events)
    assert catalog.deleted and catalog.team_ids == []


def test_revoking_a_team_that_is_not_granted_is_not_found() -> None:
    with pytest.raises(NotFoundError) as raised:
        _catalog().revoke_team("TEAM000009", by=BY, at=AT)
    assert raised.value.code == "catalog_team_not_found"


def test_memory_settings_default_and_show_as_written() -> None:
    assert MEMORY.check({}) == ({}, {})
    assert MEMORY.displayed({}, []) == {"initialDatabase": "default"}
    config, secrets = MEMORY.check({"initialDatabase": "dev", "initialDatabaseComment": None})
    assert (config, secrets) == ({"initialDatabase": "dev"}, {})


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({}, "configWrite.region"),
        ({"region": "us-east-1"}, "configWrite.connectionId"),
        ({"region": "us-east-1", "secretAccessKey": "s"}, "configWrite.secretAccessKey"),
        (
            {"region": "us-east-1", "connectionId": "C1", "secretAccessKey": "s"},
            "configWrite.connectionId",
        ),
        (
            {"region": "us-east-1", "connectionId": "C1", "glueCatalogId": "12"},
            "configWrite.glueCatalogId",
        ),
        (
            {"region": "us-east-1", "connectionId": "C1", "initialDatabase": "Upper"},
            "configWrite.initialDatabase",
        ),
        (
            {"region": "us-east-1", "connectionId": "C1", "endpointUrl": "localhost:4566"},
            "configWrite.endpointUrl",
        ),
        (
            {"region": "us-east-1", "connectionId": "C1", "initialDatabaseComment": "two\nlines"},
            "configWrite.initialDatabaseComment",
        ),
    ],
)
def test_glue_settings_are_checked_field_by_field(values: dict, field: str) -> None:
    with pytest.raises(InvalidValueError) as raised:
        GLUE.check(values)
    assert raised.value.field == field


def test_glue_secrets_are_split_off_and_shown_only_as_configured() -> None:
    config, secrets = GLUE.check(
        {"region": "eu-west-1", "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": "s3cr3t"}
    )
    assert secrets == {"secretAccessKey": "s3cr3t"}
    assert "secretAccessKey" not in config
    shown = GLUE.displayed(config, secrets)
    assert shown["secretAccessKeyConfigured"] is True
    assert "s3cr3t" not in str(shown)
    assert (
        GLUE.displayed({"region": "eu-west-1", "connectionId": "C1"}, [])[
            "secretAccessKeyConfigured"
        ]
        is False
    )


def test_unknown_providers_are_refused() -> None:
    with pytest.raises(InvalidValueError) as raised:
        provider_of("unity")
    assert raised.value.code == "unsupported_provider"


def test_merge_patch_replaces_removes_and_keeps() -> None:
    assert merge_patch({"a": "1", "b": "2"}, {"a": "3", "b": None, "c": "4"}) == {
        "a": "3",
        "c": "4",
    }


def test_a_saved_query_changes_only_what_differs() -> None:
    query = SavedQuery.create(
        id="QUERY00001",
        name=" Daily ",
        description=None,
        catalog_schema="analytics",
        catalog_id=None,
        query_text="SELECT 1",
        tags=["etl", " etl", "daily"],
        team_ids=[],
        by=BY,
        at=AT,
    )
    assert (query.name, query.tags, query.member_id) == ("Daily", ["etl", "daily"], "MEMBER0001")
    query.update({"name": "Daily", "tags": ["etl", "daily"]}, by=BY, at=AT)
    query.update({"query_text": "SELECT 2", "catalog_schema": None}, by=BY, at=AT)
    events = query.collect_events()
    assert [type(e).__name__ for e in events] == ["Created", "Updated"]
    assert events[1].changes == {"query_text": "SELECT 2", "catalog_schema": None}


def test_sealed_secrets_open_only_with_the_key_that_sealed_them(tmp_path: Path) -> None:
    box = FernetSecretBox.from_key_file(tmp_path / "secrets.key")
    sealed = box.seal("s3cr3t")
    assert "s3cr3t" not in sealed
    assert sealed != box.seal("s3cr3t")  # a fresh IV every time
    assert FernetSecretBox.from_key_file(tmp_path / "secrets.key").open(sealed) == "s3cr3t"
    assert (tmp_path / "secrets.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConflictError) as raised:
        FernetSecretBox.generate().open(sealed)
    assert raised.value.code == "secret_unreadable"
    # Rotation: a new key first, the old one still opens what it sealed.
    old = (tmp_path / "secrets.key").read_text()
    rotated = FernetSecretBox.from_setting(f"{Fernet.generate_key().decode()},{old}")
    assert rotated.open(sealed) == "s3cr3t"


def test_sail_catalog_list_renders_inline_tables() -> None:
    rendered = sail_catalog_list(
        [
            {"name": "c1", "type": "memory", "initial_database": ["default"]},
            {"name": "c2", "type": "glue"},
        ]
    )
    assert (
        rendered
        == '[{name="c1", type="memory", initial_database=["default"]}, {name="c2", type="glue"}]'
    )
