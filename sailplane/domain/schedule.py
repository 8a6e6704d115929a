"""Job schedules: checking a version's schedule fields and computing its next fire time.

Pure functions (no clock: the caller passes `after`), shared by the jobs context (which
validates versions and shows `nextRunAt`) and the scheduler (which fires runs).

- `cronExpression`: five fields (minute hour day-of-month month day-of-week), parsed by
  croniter; `None` means the job runs only when asked (manual or API runs).
- `cronTimezone`: an IANA zone name (zoneinfo); the expression is read in that zone, so
  `0 2 * * *` in `America/New_York` fires at 02:00 New York time across DST changes.

Fire times come from the scheduler's engine (`scheduling.CronSchedule`, with its DST
rules), so `nextRunAt` and the scheduler always agree.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter
from croniter.croniter import CroniterError

from sailplane.domain import scheduling
from sailplane.domain.errors import InvalidRequestError
from sailplane.domain.scheduling import CronSchedule

DEFAULT_TIMEZONE = "UTC"
CONCURRENCY_POLICIES = ("allow", "skip", "queue", "replace")
MISSED_SCHEDULE_POLICIES = scheduling.MISSED_SCHEDULE_POLICIES


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


def next_fire(expression: str, timezone: str | None, after: datetime) -> datetime | None:
    """The first slot strictly after `after`, in UTC (the scheduler's engine and DST rules)."""
    return CronSchedule(expression, timezone or DEFAULT_TIMEZONE).next_fire_time(after)


def fires_between(
    expression: str, timezone: str | None, after: datetime, until: datetime, *, limit: int
) -> list[datetime]:
    """The slots in (after, until], in UTC, oldest first; at most the `limit` latest."""
    schedule = CronSchedule(expression, timezone or DEFAULT_TIMEZONE)
    return schedule.fire_times_between(after, until, latest=limit)
