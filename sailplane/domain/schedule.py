"""Job schedules: checking a version's schedule fields and computing its next fire time.

Pure functions (no clock: the caller passes `after`), shared by the jobs context (which
validates versions and shows `nextRunAt`) and the scheduler (which fires runs).

- `cronExpression`: five fields (minute hour day-of-month month day-of-week), parsed by
  croniter; `None` means the job runs only when asked (manual or API runs).
- `cronTimezone`: an IANA zone name (zoneinfo); the expression is read in that zone, so
  `0 2 * * *` in `America/New_York` fires at 02:00 New York time across DST changes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter
from croniter.croniter import CroniterError

from sailplane.domain.errors import InvalidRequestError

DEFAULT_TIMEZONE = "UTC"
CONCURRENCY_POLICIES = ("allow", "skip", "queue", "replace")
MISSED_SCHEDULE_POLICIES = ("skip", "latest", "all")
# `missedSchedulePolicy: all` fires at most this many missed slots after an outage.
MISSED_RUNS_CAP = 10


def check_cron_expression(expression: str | None) -> str | None:
    """The expression, normalized (single spaces), or InvalidRequestError naming the field."""
    if expression is None:
        return None
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidRequestError(
            f"cronExpression {expression!r} must have five fields "
            "(minute hour day-of-month month day-of-week).",
            code="invalid_cron_expression",
        )
    normalized = " ".join(fields)
    try:
        valid = croniter.is_valid(normalized)
    except CroniterError:
        valid = False
    if not valid:
        raise InvalidRequestError(
            f"cronExpression {expression!r} is not a valid cron expression.",
            code="invalid_cron_expression",
        )
    return normalized


def check_timezone(name: str | None) -> str | None:
    """An IANA time zone name, or InvalidRequestError naming the field."""
    if name is None:
        return None
    try:
        if name not in _zones():
            raise ZoneInfoNotFoundError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequestError(
            f"cronTimezone {name!r} is not an IANA time zone such as UTC or America/New_York.",
            code="invalid_cron_timezone",
        ) from None
    return name


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def next_fire(expression: str, timezone: str | None, after: datetime) -> datetime:
    """The first time strictly after `after` that the expression names, in UTC."""
    zone = ZoneInfo(timezone or DEFAULT_TIMEZONE)
    start = after.astimezone(zone)
    fire = croniter(expression, start).get_next(datetime)
    return fire.astimezone(UTC)


def fires_between(
    expression: str, timezone: str | None, after: datetime, until: datetime, *, limit: int
) -> list[datetime]:
    """The fire times in (after, until], in UTC, oldest first; at most the `limit` latest."""
    zone = ZoneInfo(timezone or DEFAULT_TIMEZONE)
    it = croniter(expression, after.astimezone(zone))
    fires: list[datetime] = []
    while True:
        fire = it.get_next(datetime).astimezone(UTC)
        if fire > until:
            return fires
        fires.append(fire)
        if len(fires) > limit:
            fires.pop(0)
