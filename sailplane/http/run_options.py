"""The queue options a run is created with, as both run dialects accept them.

`run_create_body` builds a request Struct from the one table of option fields: the
seed-004 create body (camelCase) and the seed-003 `POST /v1/runs` body (snake_case), each
with its own other fields. `queue_options` turns either into the one `RunRequest` the run
use cases take.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, overload

import msgspec

from sailplane.commands.runs import RunRequest
from sailplane.domain.errors import InvalidValueError
from sailplane.domain.runs import MAX_PRIORITY, RunOptions

Priority = Annotated[int, msgspec.Meta(ge=-MAX_PRIORITY, le=MAX_PRIORITY)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
DelaySecs = Annotated[float, msgspec.Meta(ge=0, le=86_400)]


# Every optional field of a run create besides the job: (name, type, default).
OPTION_FIELDS: list[tuple[str, Any, Any]] = [
    ("payload", dict[str, Any] | None, None),
    ("priority", Priority, 0),
    ("concurrency_key", Key | None, None),
    ("idempotency_key", Key | None, None),
    ("scheduled_at", datetime | None, None),
    ("expires_at", datetime | None, None),
    ("tags", dict[str, str] | None, None),
    ("metadata", dict[str, str] | None, None),
    ("max_attempts_override", Positive | None, None),
    ("timeout_secs_override", Positive | None, None),
    ("retry_backoff", Literal["fixed", "exponential"] | None, None),
    ("retry_initial_delay_secs", DelaySecs | None, None),
    ("retry_max_delay_secs", DelaySecs | None, None),
    ("debug_mode", bool, False),
]


def run_create_body(
    name: str, own_fields: list[tuple[str, Any, Any]], *, rename: str | None, doc: str
) -> type[msgspec.Struct]:
    """A create body: `own_fields` of the dialect, then every option field."""
    body = msgspec.defstruct(
        name,
        [*own_fields, *OPTION_FIELDS],
        kw_only=True,
        forbid_unknown_fields=True,
        rename=rename,
        module=__name__,
    )
    body.__doc__ = doc
    return body


@overload
def aware_utc(value: datetime, name: str) -> datetime: ...
@overload
def aware_utc(value: None, name: str) -> None: ...
def aware_utc(value: datetime | None, name: str) -> datetime | None:
    """A client's time in UTC (422 without a time zone)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidValueError(f"{name} must carry a time zone (e.g. Z).", field=name)
    return value.astimezone(UTC)


def queue_options(job_id: str, fields: Any) -> RunRequest:
    """The run request the option fields of a `run_create_body` body describe (422 on a
    value the domain refuses)."""
    return RunRequest(
        job_id=job_id,
        options=RunOptions(
            payload=fields.payload,
            tags=fields.tags or {},
            metadata=fields.metadata or {},
            priority=fields.priority,
            concurrency_key=fields.concurrency_key,
            idempotency_key=fields.idempotency_key,
            max_attempts_override=fields.max_attempts_override,
            timeout_secs_override=fields.timeout_secs_override,
            retry_backoff=fields.retry_backoff,
            retry_initial_delay_secs=fields.retry_initial_delay_secs,
            retry_max_delay_secs=fields.retry_max_delay_secs,
            debug_mode=fields.debug_mode,
        ),
        not_before=aware_utc(fields.scheduled_at, "scheduled_at"),
        expires_at=aware_utc(fields.expires_at, "expires_at"),
    )
