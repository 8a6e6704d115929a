"""A job's `config` as the API documents it: a union tagged by its key.

    {"sql": {"source": "SELECT 1"}}                        the work is SQL (or a saved query)
    {"python": {"entryPoint": "pkg.mod:main"}}             the work is a Python entry point
    {"container": {"image": "alpine", "command": [...]}}   the work is a command in an image
    {}                                                     no work set yet (a run fails)

each with the optional `compute` and `lakesail` settings. The request and response fields
stay JSON objects for the server (the domain checks them, `sailplane.domain.jobs`), and
`JobConfigSchemaPlugin` documents them as `oneOf` the four variants, so generated clients
get one type per kind of work.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar.openapi.spec import Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition
from msgspec import UNSET, UnsetType


class _Config(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    pass


class SqlWork(_Config):
    """SQL statements to run, or the saved query (`queryId`) whose statements to run."""

    source: str | UnsetType = UNSET
    query_id: str | UnsetType = UNSET


class PythonWork(_Config):
    """A Python program: its `source`, or an `entryPoint` (`module`, `module:function`, or a
    `.py` path), with its command-line arguments."""

    source: str | UnsetType = UNSET
    package_name: str | UnsetType = UNSET
    entry_point: str | UnsetType = UNSET
    parameters: list[str] | UnsetType = UNSET
    named_parameters: dict[str, str] | UnsetType = UNSET


class ContainerWork(_Config):
    """A command and the image it runs in: `command` is an argument list (run as it is) or
    a string (run by `/bin/sh -c`); `env` the variables it gets besides Sailplane's own."""

    image: str
    command: list[str] | str
    env: dict[str, str] | UnsetType = UNSET


class LakesailSettings(_Config):
    execution_mode: str | UnsetType = UNSET
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] | UnsetType = UNSET
    lakesail_image_uri: str | UnsetType = UNSET
    libraries: list[dict[str, Any]] | UnsetType = UNSET


class SqlJobConfig(_Config):
    sql: SqlWork
    compute: dict[str, Any] | UnsetType = UNSET
    lakesail: LakesailSettings | UnsetType = UNSET


class PythonJobConfig(_Config):
    python: PythonWork
    compute: dict[str, Any] | UnsetType = UNSET
    lakesail: LakesailSettings | UnsetType = UNSET


class ContainerJobConfig(_Config):
    container: ContainerWork
    compute: dict[str, Any] | UnsetType = UNSET
    lakesail: LakesailSettings | UnsetType = UNSET


class NoWorkJobConfig(_Config):
    """A configuration that names no work yet: no `sql`, `python` or `container`."""

    compute: dict[str, Any] | UnsetType = UNSET
    lakesail: LakesailSettings | UnsetType = UNSET


VARIANTS = (SqlJobConfig, PythonJobConfig, ContainerJobConfig, NoWorkJobConfig)


class _Documented:
    """Marks a field whose schema is the job config union (msgspec ignores the mark)."""


JobConfig = Annotated[dict[str, Any], _Documented()]


class JobConfigSchemaPlugin(OpenAPISchemaPlugin):
    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return any(isinstance(m, _Documented) for m in field_definition.metadata)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        variants = [
            schema_creator.for_field_definition(FieldDefinition.from_annotation(v))
            for v in VARIANTS
        ]
        # Only a config without a kind of work is one of no work: exactly one variant matches.
        no_work = FieldDefinition.from_annotation(NoWorkJobConfig)
        schema_creator.schema_registry.get_schema_for_field_definition(
            no_work
        ).additional_properties = False
        return Schema(
            one_of=variants,
            description=(
                "The job's work, tagged by its key: `sql`, `python` or `container` (or none yet)."
            ),
        )
