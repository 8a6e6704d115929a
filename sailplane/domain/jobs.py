"""Jobs: a job definition with numbered versions, at most one draft, and team grants.

A job's execution configuration lives on its versions (the cluster, the config, the
schedule, the dependencies); the job itself holds only metadata (`jobKey`, `description`,
`status` active|paused) and two pointers: `current_version`, the active published version
new runs use, and `draft_version`, the one draft a job may have.

Versions are numbered from 1. Creating a job makes version 1, published and active. A
draft copies the active version (the request's fields override) and takes the number
after the highest version; publishing it makes it the active version; discarding it
deletes it (so its number is used again by the next draft). Create-version is draft +
publish in one step; activate-version points the job at an older (or newer) published
version. Both are refused while a draft exists. Every version records who created it,
who published it and which version it was based on.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import (
    ConflictError,
    InvalidRequestError,
    InvalidValueError,
    NotFoundError,
)
from sailplane.domain.ids import is_valid_id
from sailplane.domain.schedule import (
    CONCURRENCY_POLICIES,
    DEFAULT_TIMEZONE,
    MISSED_SCHEDULE_POLICIES,
    check_cron_expression,
    check_timezone,
)
from sailplane.domain.workloads import (
    DeletedEvent,
    SharedWithTeams,
    TeamRevokedEvent,
    TeamsGrantedEvent,
    check_team_ids,
)

JOB_KEY_MAX = 128
DESCRIPTION_MAX = 2000
JOB_STATUSES = ("active", "paused")
DEPENDS_ON_MAX = 50
# `config` and `sourceConfig`, each as compact UTF-8 JSON (the whole event has its own limit).
CONFIG_MAX_BYTES = 1_000_000
IMAGE_MAX = 512
COMMAND_MAX = 16_384  # a shell command, or one argument
COMMAND_ARGS_MAX = 256
ENV_MAX = 256
ENV_VALUE_MAX = 32_768
TAGS_MAX = 64
TAG_NAME_MAX = 128
TAG_VALUE_MAX = 256
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")

# The execution configuration a version holds: Python name -> API (camelCase) name.
VERSION_FIELDS: dict[str, str] = {
    "cluster_id": "clusterId",
    "description": "description",
    "config": "config",
    "timeout_seconds": "timeoutSeconds",
    "source_config": "sourceConfig",
    "depends_on": "dependsOn",
    "cron_expression": "cronExpression",
    "cron_timezone": "cronTimezone",
    "concurrency_policy": "concurrencyPolicy",
    "max_concurrent_runs": "maxConcurrentRuns",
    "missed_schedule_policy": "missedSchedulePolicy",
}
# What a new job's version 1 holds for the fields its request leaves out.
VERSION_DEFAULTS: dict[str, Any] = {
    "description": None,
    "config": {},
    "timeout_seconds": None,
    "source_config": None,
    "depends_on": [],
    "cron_expression": None,
    "cron_timezone": DEFAULT_TIMEZONE,
    "concurrency_policy": "allow",
    "max_concurrent_runs": 1,
    "missed_schedule_policy": "skip",
}
METADATA_FIELDS = ("job_key", "description", "status")


def _key_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c in "-_.")


def check_job_key(job_key: str) -> str:
    if not (
        0 < len(job_key) <= JOB_KEY_MAX
        and job_key[0].isascii()
        and job_key[0].isalnum()
        and all(_key_char(c) for c in job_key)
    ):
        raise InvalidValueError(
            f"jobKey must be 1 to {JOB_KEY_MAX} characters: letters, digits, '-', '_' or '.', "
            "starting with a letter or digit.",
            field="jobKey",
            code="invalid_job_key",
        )
    return job_key


def check_description(description: str | None) -> str | None:
    if description is not None and len(description) > DESCRIPTION_MAX:
        raise InvalidValueError(
            f"description is longer than {DESCRIPTION_MAX} characters.", field="description"
        )
    return description


def check_status(status: str) -> str:
    if status not in JOB_STATUSES:
        raise InvalidValueError(f"status must be one of {', '.join(JOB_STATUSES)}.", field="status")
    return status


def query_id_of(spec: dict[str, Any]) -> str | None:
    """The saved query a version runs (`config.sql.queryId`), if any."""
    sql = (spec.get("config") or {}).get("sql")
    return sql.get("queryId") if isinstance(sql, dict) else None


def dependency_keys(spec: dict[str, Any]) -> list[str]:
    return [d["jobKey"] for d in spec.get("depends_on") or []]


def max_retries_of(spec: dict[str, Any]) -> int:
    """`config.lakesail.maxRetries` (0 when not set): how often a failed run is retried."""
    lakesail = (spec.get("config") or {}).get("lakesail")
    return int(lakesail.get("maxRetries") or 0) if isinstance(lakesail, dict) else 0


def check_version_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalize any subset of VERSION_FIELDS (the domain's own check; the HTTP
    layer checks types and ranges first)."""
    checked: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in VERSION_FIELDS:
            raise ValueError(f"not a job version field: {key}")
        checked[key] = _CHECKS[key](value)
    return checked


def _cluster_id(value: Any) -> str:
    if not isinstance(value, str) or not is_valid_id(value):
        raise InvalidValueError(f"Not a cluster id: {value!r}.", field="clusterId")
    return value


def _config(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidValueError("config must be an object.", field="config")
    _check_json_size(value, field="config")
    sql = value.get("sql")
    if sql is not None:
        if not isinstance(sql, dict):
            raise InvalidValueError("config.sql must be an object.", field="config.sql")
        query_id = sql.get("queryId")
        if query_id is not None and (not isinstance(query_id, str) or not is_valid_id(query_id)):
            raise InvalidValueError(
                f"Not a saved query id: {query_id!r}.", field="config.sql.queryId"
            )
    python = value.get("python")
    if python is not None and not isinstance(python, dict):
        raise InvalidValueError("config.python must be an object.", field="config.python")
    container = value.get("container")
    if container is not None:
        check_container(container)
    if value.get("tags") is not None:
        check_tags(value["tags"])
    if sum(kind is not None for kind in (sql, python, container)) > 1:
        raise InvalidValueError(
            "config names one kind of work: sql, python or container, not two.", field="config"
        )
    lakesail = value.get("lakesail")
    if lakesail is not None:
        if not isinstance(lakesail, dict):
            raise InvalidValueError("config.lakesail must be an object.", field="config.lakesail")
        retries = lakesail.get("maxRetries")
        if retries is not None and (
            not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100
        ):
            raise InvalidValueError(
                "config.lakesail.maxRetries must be an integer from 0 to 100.",
                field="config.lakesail.maxRetries",
            )
    return dict(value)


def check_container(value: Any) -> dict[str, Any]:
    """`config.container`: an `image`, a `command` (an argument list, run as it is, or a
    string, run by `/bin/sh -c`) and `env` (names to values). Sailplane sets the
    `SAILPLANE_*` variables itself, so a job cannot."""
    field = "config.container"
    if not isinstance(value, dict):
        raise InvalidValueError(f"{field} must be an object.", field=field)
    unknown = sorted(set(value) - {"image", "command", "env"})
    if unknown:
        raise InvalidValueError(
            f"{field} takes image, command and env; not {', '.join(unknown)}.", field=field
        )
    image = value.get("image")
    if not isinstance(image, str) or not 0 < len(image) <= IMAGE_MAX or not image.isprintable():
        raise InvalidValueError(
            f"{field}.image must be an image reference of 1 to {IMAGE_MAX} characters.",
            field=f"{field}.image",
        )
    command = value.get("command")
    if isinstance(command, str):
        if not command.strip() or len(command) > COMMAND_MAX:
            raise InvalidValueError(
                f"{field}.command must be a shell command of 1 to {COMMAND_MAX} characters.",
                field=f"{field}.command",
            )
    elif isinstance(command, list):
        if not command or len(command) > COMMAND_ARGS_MAX:
            raise InvalidValueError(
                f"{field}.command must list 1 to {COMMAND_ARGS_MAX} arguments.",
                field=f"{field}.command",
            )
        if not all(isinstance(a, str) and len(a) <= COMMAND_MAX for a in command) or not command[0]:
            raise InvalidValueError(
                f"{field}.command must be strings of at most {COMMAND_MAX} characters, "
                "the first one not empty.",
                field=f"{field}.command",
            )
    else:
        raise InvalidValueError(
            f"{field}.command must be a list of arguments or a shell command string.",
            field=f"{field}.command",
        )
    env = value.get("env") or {}
    if not isinstance(env, dict) or len(env) > ENV_MAX:
        raise InvalidValueError(
            f"{field}.env must be an object of at most {ENV_MAX} variables.", field=f"{field}.env"
        )
    for name, text in env.items():
        if not _ENV_NAME.fullmatch(name) or name.upper().startswith("SAILPLANE_"):
            raise InvalidValueError(
                f"{field}.env: {name[:64]!r} is not a variable name a job may set "
                "(letters, digits and '_', not starting with a digit or SAILPLANE_).",
                field=f"{field}.env",
            )
        if not isinstance(text, str) or len(text) > ENV_VALUE_MAX or "\0" in text:
            raise InvalidValueError(
                f"{field}.env.{name} must be a string of at most {ENV_VALUE_MAX} characters.",
                field=f"{field}.env",
            )
    return {"image": image, "command": command, "env": dict(env)}


def check_tags(value: Any) -> dict[str, str]:
    """`config.tags`: labels of a job, names to string values."""
    field = "config.tags"
    if not isinstance(value, dict) or len(value) > TAGS_MAX:
        raise InvalidValueError(
            f"{field} must be an object of at most {TAGS_MAX} tags.", field=field
        )
    for name, text in value.items():
        if not 0 < len(name) <= TAG_NAME_MAX or not name.isprintable():
            raise InvalidValueError(
                f"{field}: a tag name has 1 to {TAG_NAME_MAX} printable characters.", field=field
            )
        if not isinstance(text, str) or len(text) > TAG_VALUE_MAX or not text.isprintable():
            raise InvalidValueError(
                f"{field}.{name[:64]} must be a printable string of at most {TAG_VALUE_MAX} "
                "characters.",
                field=field,
            )
    return dict(value)


def container_argv(command: str | list[str]) -> list[str]:
    """The argument list a container's `command` runs as: a string through `/bin/sh -c`."""
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


def _positive(field: str, minimum: int) -> Any:
    def check(value: Any) -> int | None:
        if value is None and field == "timeoutSeconds":
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise InvalidRequestError(
                f"{field} must be an integer of at least {minimum}.", code=f"invalid_{field}"
            )
        return value

    return check


def _choice(field: str, choices: tuple[str, ...]) -> Any:
    def check(value: Any) -> str:
        if value not in choices:
            raise InvalidRequestError(
                f"{field} must be one of {', '.join(choices)}.", code=f"invalid_{field}"
            )
        return str(value)

    return check


def _depends_on(value: Any) -> list[dict[str, str]]:
    keys: list[str] = []
    for i, item in enumerate(value or []):
        key = item.get("jobKey") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key:
            raise InvalidValueError(
                f"dependsOn[{i}] must be an object with a jobKey.", field=f"dependsOn[{i}].jobKey"
            )
        keys.append(key)
    unique = list(dict.fromkeys(keys))
    if len(unique) > DEPENDS_ON_MAX:
        raise InvalidValueError(
            f"A job depends on at most {DEPENDS_ON_MAX} jobs.", field="dependsOn"
        )
    return [{"jobKey": k} for k in unique]


def _source_config(value: Any) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise InvalidValueError("sourceConfig must be an object.", field="sourceConfig")
    if value is not None:
        _check_json_size(value, field="sourceConfig")
    return None if value is None else dict(value)


def _check_json_size(value: dict[str, Any], *, field: str) -> None:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > CONFIG_MAX_BYTES:
        raise InvalidValueError(
            f"{field} is {size} bytes of JSON, at most {CONFIG_MAX_BYTES}.",
            field=field,
            code="value_too_large",
        )


_CHECKS: dict[str, Any] = {
    "cluster_id": _cluster_id,
    "description": check_description,
    "config": _config,
    "timeout_seconds": _positive("timeoutSeconds", 1),
    "source_config": _source_config,
    "depends_on": _depends_on,
    "cron_expression": check_cron_expression,
    "cron_timezone": lambda v: check_timezone(v) or DEFAULT_TIMEZONE,
    "concurrency_policy": _choice("concurrencyPolicy", CONCURRENCY_POLICIES),
    "max_concurrent_runs": _positive("maxConcurrentRuns", 1),
    "missed_schedule_policy": _choice("missedSchedulePolicy", MISSED_SCHEDULE_POLICIES),
}


def spec_of(record: dict[str, Any]) -> dict[str, Any]:
    """Only the execution configuration of a version record."""
    return {k: record[k] for k in VERSION_FIELDS}


def diff_specs(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields that differ between two versions' configurations, by API path
    (`config.sql.queryId`), each with its value in `before` and in `after`."""
    changes: list[dict[str, Any]] = []

    def walk(path: str, old: Any, new: Any) -> None:
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(set(old) | set(new)):
                walk(f"{path}.{key}", old.get(key), new.get(key))
        elif old != new:
            changes.append({"field": path, "from": old, "to": new})

    for name, api_name in VERSION_FIELDS.items():
        walk(api_name, before.get(name), after.get(name))
    return changes


def _record(
    spec: dict[str, Any],
    *,
    status: str,
    based_on: int | None,
    actor: str,
    at: datetime,
) -> dict[str, Any]:
    published = status == "published"
    return {
        **spec,
        "status": status,
        "based_on_version": based_on,
        "created_by": actor,
        "created_at": at,
        "updated_by": actor,
        "updated_at": at,
        "published_by": actor if published else None,
        "published_at": at if published else None,
    }


class VersionAdded(SailplaneAggregate.Event):
    """A new version (a draft, or published at once) copied from `based_on_version`."""

    version: int
    based_on_version: int
    spec: dict[str, Any]

    def add_to(self, aggregate: Any, *, status: str) -> None:
        aggregate.versions[self.version] = _record(
            self.spec,
            status=status,
            based_on=self.based_on_version,
            actor=self.actor,
            at=self.timestamp,
        )


class Job(SharedWithTeams):
    kind = "job"
    job_key: str
    description: str | None
    status: str  # active | paused
    member_id: str  # who created the job
    versions: dict[int, dict[str, Any]]  # number -> spec + status and history fields
    current_version: int
    draft_version: int | None

    class Created(SailplaneAggregate.Created):
        job_key: str
        description: str | None
        status: str
        member_id: str
        team_ids: list[str]
        spec: dict[str, Any]

        def apply(self, aggregate: Job) -> None:
            super().apply(aggregate)
            aggregate.job_key = self.job_key
            aggregate.description = self.description
            aggregate.status = self.status
            aggregate.member_id = self.member_id
            aggregate.team_ids = sorted(self.team_ids)
            aggregate.versions = {
                1: _record(
                    self.spec,
                    status="published",
                    based_on=None,
                    actor=self.actor,
                    at=self.timestamp,
                )
            }
            aggregate.current_version = 1
            aggregate.draft_version = None
            aggregate.deleted = False

    class MetadataUpdated(SailplaneAggregate.Event):
        changes: dict[str, Any]  # any of METADATA_FIELDS

        def apply(self, aggregate: Job) -> None:
            for key, value in self.changes.items():
                setattr(aggregate, key, value)

    class DraftCreated(VersionAdded):
        def apply(self, aggregate: Job) -> None:
            self.add_to(aggregate, status="draft")
            aggregate.draft_version = self.version

    class DraftUpdated(SailplaneAggregate.Event):
        version: int
        changes: dict[str, Any]  # any of VERSION_FIELDS

        def apply(self, aggregate: Job) -> None:
            record = aggregate.versions[self.version]
            record.update(self.changes)
            record.update(updated_by=self.actor, updated_at=self.timestamp)

    class DraftDiscarded(SailplaneAggregate.Event):
        version: int

        def apply(self, aggregate: Job) -> None:
            del aggregate.versions[self.version]
            aggregate.draft_version = None

    class DraftPublished(SailplaneAggregate.Event):
        version: int
        query_id: str | None  # the saved query the now active version runs

        def apply(self, aggregate: Job) -> None:
            aggregate.versions[self.version].update(
                status="published",
                published_by=self.actor,
                published_at=self.timestamp,
                updated_by=self.actor,
                updated_at=self.timestamp,
            )
            aggregate.current_version = self.version
            aggregate.draft_version = None

    class VersionCreated(VersionAdded):
        """A version created and published in one step; it becomes the active one."""

        def apply(self, aggregate: Job) -> None:
            self.add_to(aggregate, status="published")
            aggregate.current_version = self.version

    class VersionActivated(SailplaneAggregate.Event):
        version: int
        query_id: str | None  # the saved query the now active version runs

        def apply(self, aggregate: Job) -> None:
            aggregate.current_version = self.version

    class TeamsGranted(TeamsGrantedEvent):
        pass

    class TeamRevoked(TeamRevokedEvent):
        pass

    class Deleted(DeletedEvent):
        """The job is gone. The runs context reacts to this event: it cancels the job's
        pending and active runs (its consumer follows `sailplane.workloads`)."""

    # --- reading ---------------------------------------------------------------------------

    @property
    def active_spec(self) -> dict[str, Any]:
        return spec_of(self.versions[self.current_version])

    def spec(self, version: int) -> dict[str, Any]:
        return spec_of(self.versions[version])

    @property
    def draft_spec(self) -> dict[str, Any] | None:
        return None if self.draft_version is None else self.spec(self.draft_version)

    def _next_number(self) -> int:
        return max(self.versions) + 1

    # --- changing ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        id: str,
        job_key: str,
        description: str | None,
        status: str,
        spec: dict[str, Any],
        team_ids: list[str],
        by: Actor,
        at: datetime,
    ) -> Job:
        """A new job with version 1 published and active; at least one team."""
        if "cluster_id" not in spec:
            raise InvalidValueError("A job needs a clusterId.", field="clusterId")
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            job_key=check_job_key(job_key),
            description=check_description(description),
            status=check_status(status),
            member_id=by.id,
            team_ids=sorted(check_team_ids(team_ids, required=True)),
            spec={**VERSION_DEFAULTS, "description": description, **check_version_fields(spec)},
        )

    def update_metadata(
        self, changes: dict[str, Any], *, expected_version: int | None, by: Actor, at: datetime
    ) -> None:
        """Change jobKey, description or status; never the configuration version.

        `expected_version`, when given, must be the job's revision (the aggregate's version,
        which every change to the job moves; 409 otherwise): of several edits made from one
        read, exactly one wins. The active configuration's number cannot serve, since
        metadata edits never change it.
        """
        if expected_version is not None and expected_version != self.version:
            raise ConflictError(
                f"Job {self.id} is at version {self.version}, not {expected_version}; "
                "reload it and try again.",
                code="job_version_stale",
            )
        checks = {
            "job_key": check_job_key,
            "description": check_description,
            "status": check_status,
        }
        checked = {k: checks[k](v) for k, v in changes.items()}
        changed = {k: v for k, v in checked.items() if getattr(self, k) != v}
        if changed:
            self._trigger(self.MetadataUpdated, by=by, at=at, changes=changed)

    def create_draft(self, overrides: dict[str, Any], *, by: Actor, at: datetime) -> int:
        """The draft: the active version's configuration with `overrides` (409 if one exists)."""
        self._refuse_with_draft("create another one")
        return self._add_version(self.DraftCreated, overrides, by=by, at=at)

    def update_draft(self, changes: dict[str, Any], *, by: Actor, at: datetime) -> None:
        version = self._require_draft()
        draft = self.versions[version]
        changed = {k: v for k, v in check_version_fields(changes).items() if draft[k] != v}
        if changed:
            self._trigger(self.DraftUpdated, by=by, at=at, version=version, changes=changed)

    def discard_draft(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.DraftDiscarded, by=by, at=at, version=self._require_draft())

    def publish_draft(self, *, by: Actor, at: datetime) -> int:
        if self.draft_version is None:
            raise InvalidRequestError(
                f"Job {self.id} has no draft to publish.", code="job_draft_not_found"
            )
        version = self.draft_version
        self._trigger(
            self.DraftPublished,
            by=by,
            at=at,
            version=version,
            query_id=query_id_of(self.spec(version)),
        )
        return version

    def create_version(self, overrides: dict[str, Any], *, by: Actor, at: datetime) -> int:
        """Create and publish a version (the active one's configuration, overridden)."""
        self._refuse_with_draft("create a version")
        return self._add_version(self.VersionCreated, overrides, by=by, at=at)

    def _add_version(
        self, event: type[VersionAdded], overrides: dict[str, Any], *, by: Actor, at: datetime
    ) -> int:
        version = self._next_number()
        self._trigger(
            event,
            by=by,
            at=at,
            version=version,
            based_on_version=self.current_version,
            spec={**self.active_spec, **check_version_fields(overrides)},
        )
        return version

    def activate_version(self, version: int, *, by: Actor, at: datetime) -> None:
        self._refuse_with_draft("activate a version")
        record = self.versions.get(version)
        if record is None or record["status"] != "published":
            raise NotFoundError(
                f"Job {self.id} has no published version {version}.",
                code="job_version_not_found",
            )
        if version != self.current_version:
            self._trigger(
                self.VersionActivated,
                by=by,
                at=at,
                version=version,
                query_id=query_id_of(self.spec(version)),
            )

    def published_version(self, version: int) -> dict[str, Any]:
        record = self.versions.get(version)
        if record is None or record["status"] != "published":
            raise NotFoundError(
                f"Job {self.id} has no published version {version}.",
                code="job_version_not_found",
            )
        return record

    def _require_draft(self) -> int:
        if self.draft_version is None:
            raise NotFoundError(f"Job {self.id} has no draft.", code="job_draft_not_found")
        return self.draft_version

    def _refuse_with_draft(self, action: str) -> None:
        if self.draft_version is not None:
            raise ConflictError(
                f"Job {self.id} has a draft (version {self.draft_version}); publish or discard "
                f"it before you {action}.",
                code="job_draft_exists",
            )
