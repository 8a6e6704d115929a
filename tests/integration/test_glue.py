"""The Glue adapter against a moto server over HTTP, and catalogs as Sail reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest

from sailplane.domain.errors import ConflictError, InvalidValueError, NotFoundError
from sailplane.infra_adapters.catalogs import sail_catalog_list, sail_catalog_options
from sailplane.infra_adapters.cloud_providers import AwsConnectionRoles, external_id_of
from sailplane.infra_adapters.glue import AwsRole, GlueCatalogs, assume_role
from tests.services import free_port, wait_for_port

pytestmark = pytest.mark.aws

KEYS = {"accessKeyId": "AKIAIOSFODNN7EXAMPLE"}
SECRETS = {"secretAccessKey": "glue-test-secret"}


class OneRole:
    """The connections lookup as the connections context will answer it, for one connection."""

    def __init__(self, connection_id: str, role: AwsRole) -> None:
        self.connection_id, self.role = connection_id, role

    def role_of(self, organization_id: str, connection_id: str) -> AwsRole:
        if connection_id != self.connection_id:
            raise NotFoundError.of("connection", connection_id)
        return self.role


class Rows:
    """The infra view's connection rows, as `AwsConnectionRoles` reads them."""

    def __init__(self, *rows: dict[str, object]) -> None:
        self.rows = {r["id"]: r for r in rows}

    def connection(self, organization_id: str, connection_id: str) -> dict[str, object] | None:
        return self.rows.get(connection_id)


NO_CONNECTIONS = AwsConnectionRoles(Rows())  # key-pair catalogs never ask


def _glue(moto: str) -> object:
    return boto3.client(
        "glue",
        region_name="us-east-1",
        endpoint_url=moto,
        aws_access_key_id=KEYS["accessKeyId"],
        aws_secret_access_key=SECRETS["secretAccessKey"],
    )


def _config(moto: str, **extra: str) -> dict[str, str]:
    return {"region": "us-east-1", "endpointUrl": moto, **KEYS, **extra}


def test_the_initial_database_is_created_once_with_its_comment(moto: str) -> None:
    glue = GlueCatalogs(NO_CONNECTIONS)
    database = f"db_{uuid.uuid4().hex[:8]}"
    config = _config(moto, initialDatabase=database, initialDatabaseComment="Curated tables")
    assert glue.ensure_initial_database("ORG", config, SECRETS) is True
    assert glue.ensure_initial_database("ORG", config, SECRETS) is False
    stored = _glue(moto).get_database(Name=database)["Database"]
    assert stored["Description"] == "Curated tables"


def test_an_existing_database_is_left_as_it_is(moto: str) -> None:
    database = f"db_{uuid.uuid4().hex[:8]}"
    _glue(moto).create_database(DatabaseInput={"Name": database, "Description": "theirs"})
    glue = GlueCatalogs(NO_CONNECTIONS)
    config = _config(moto, initialDatabase=database, initialDatabaseComment="ours")
    assert glue.ensure_initial_database("ORG", config, SECRETS) is False
    assert _glue(moto).get_database(Name=database)["Database"]["Description"] == "theirs"


def test_without_an_initial_database_only_access_is_checked(moto: str) -> None:
    before = len(_glue(moto).get_databases()["DatabaseList"])
    assert (
        GlueCatalogs(NO_CONNECTIONS).ensure_initial_database("ORG", _config(moto), SECRETS) is False
    )
    assert len(_glue(moto).get_databases()["DatabaseList"]) == before


def test_an_unreachable_endpoint_is_an_invalid_value() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(InvalidValueError) as raised:
        GlueCatalogs(NO_CONNECTIONS).ensure_initial_database(
            "ORG", _config(nowhere, initialDatabase="x"), SECRETS
        )
    assert raised.value.code == "catalog_unreachable"
    assert nowhere in raised.value.message


def test_a_connection_is_used_through_its_role_and_external_id(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sailplane assumes a connection's role with its own AWS identity (the host's chain).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASAILPLANEHOST000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sailplane-host-secret")
    iam = boto3.client(
        "iam",
        region_name="us-east-1",
        endpoint_url=moto,
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="x",
    )
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role_arn = iam.create_role(
        RoleName=f"sailplane-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]
    role = AwsRole(role_arn=role_arn, external_id="external-123")
    credentials = assume_role(role, region="us-east-1", session_name="test", endpoint_url=moto)
    assert credentials.session_token

    glue = GlueCatalogs(OneRole("CONN000001", role), sts_endpoint_url=moto)
    database = f"via_role_{uuid.uuid4().hex[:8]}"
    config = {
        "region": "us-east-1",
        "endpointUrl": moto,
        "connectionId": "CONN000001",
        "initialDatabase": database,
    }
    assert glue.ensure_initial_database("ORG", config, {}) is True
    assert _glue(moto).get_database(Name=database)["Database"]["Name"] == database
    with pytest.raises(NotFoundError):
        glue.ensure_initial_database("ORG", {**config, "connectionId": "OTHERCONN1"}, {})


def test_a_connection_lends_its_role_only_when_it_is_an_active_aws_connection() -> None:
    role = "arn:aws:iam::123456789012:role/sailplane"
    roles = AwsConnectionRoles(
        Rows(
            {
                "id": "CONNAWS001",
                "provider": "aws",
                "status": "active",
                "provider_config": {"roleArn": role},
            },
            {"id": "CONNAWS002", "provider": "aws", "status": "pending", "provider_config": {}},
            {
                "id": "CONNK8S001",
                "provider": "kubernetes",
                "status": "active",
                "provider_config": {},
            },
        )
    )
    assert roles.role_of("ORG", "CONNAWS001") == AwsRole(role, external_id_of("CONNAWS001"))
    with pytest.raises(ConflictError) as pending:
        roles.role_of("ORG", "CONNAWS002")
    assert pending.value.code == "connection_not_active"
    for unknown in ("CONNK8S001", "CONN999999"):
        with pytest.raises(NotFoundError) as raised:
            roles.role_of("ORG", unknown)
        assert raised.value.code == "connection_not_found"


@contextmanager
def _sail(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "sail"),
            "spark",
            "server",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        yield f"sc://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.sail
def test_sail_reads_memory_and_glue_catalogs_as_sailplane_renders_them(moto: str) -> None:
    from pyspark.sql import SparkSession

    database = f"lake_{uuid.uuid4().hex[:8]}"
    glue_config = _config(moto, initialDatabase=database, initialDatabaseComment="Lake tables")
    GlueCatalogs(NO_CONNECTIONS).ensure_initial_database("ORG", glue_config, SECRETS)
    entries = [
        sail_catalog_options(
            "dev",
            "memory",
            {"initialDatabase": "scratch", "initialDatabaseComment": 'Scratch "space"'},
        ),
        sail_catalog_options("lake", "glue", glue_config),
    ]
    env = {
        "SAIL_CATALOG__LIST": sail_catalog_list(entries),
        "SAIL_CATALOG__DEFAULT_CATALOG": "dev",
        "AWS_ACCESS_KEY_ID": KEYS["accessKeyId"],
        "AWS_SECRET_ACCESS_KEY": SECRETS["secretAccessKey"],
        "AWS_REGION": "us-east-1",
    }
    with _sail(env) as url:
        spark = SparkSession.builder.remote(url).getOrCreate()
        try:
            assert {c.name for c in spark.catalog.listCatalogs()} >= {"dev", "lake"}
            scratch = spark.sql("SHOW DATABASES IN dev").collect()
            assert [(r["name"], r["description"]) for r in scratch] == [
                ("scratch", 'Scratch "space"')
            ]
            lake = {
                r["name"]: r["description"] for r in spark.sql("SHOW DATABASES IN lake").collect()
            }
            assert lake[database] == "Lake tables"
        finally:
            spark.stop()
