"""When a job's schedule fires: cron in an IANA zone, DST, missed slots, slot ids.

Pure: no clock (the caller passes `now`), no I/O. The scheduler worker, the jobs context
(`nextRunAt`) and the schedule preview all compute fire times here, so there is one
definition of a slot.

A cron expression (five fields, croniter) names *wall-clock* times in `cronTimezone`.
Each wall-clock time becomes one instant (a "slot"):

- A wall-clock time that exists once is that instant.
- A wall-clock time that does not exist (skipped by a spring-forward change, e.g. 02:30
  on 8 March 2026 in America/New_York) fires once, at the first valid instant after it:
  the moment of the change (03:00 EDT). Several skipped times collapse into that one slot.
- A wall-clock time that exists twice (repeated by a fall-back change, e.g. 01:30 on
  1 November 2026 in America/New_York) fires once, at its first occurrence (01:30 EDT);
  the repeated hour fires nothing again.

Wall-clock order equals instant order under this mapping, so iterating the expression
over naive wall-clock times and mapping each gives the slots in order.

Missed slots: the scheduler keeps a cursor per job (the latest slot it fired, or when the
schedule took effect); at each tick the slots in (cursor, now] are due. A slot not older
than `late_tolerance` is on time and always fires; older ones were missed (the scheduler
was down, or the job was paused) and `missedSchedulePolicy` decides: `skip` fires none of
them, `latest` the most recent one, `all` each of them up to `missed_cap` (the most recent
ones; default 10).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter
from croniter.croniter import CroniterBadDateError

from sailplane.domain.ids import derived_id

MISSED_SCHEDULE_POLICIES = ("skip", "latest", "all")
DEFAULT_MISSED_CAP = 10
DEFAULT_LATE_TOLERANCE = timedelta(seconds=60)
_SECOND = timedelta(seconds=1)


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone; pass an aware datetime")
    return value


def wall_clock_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The slot (UTC) of a naive wall-clock time in `zone`, by the DST rules above."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    before, after = first.utcoffset(), second.utcoffset()
    if before == after or before is None or after is None or before > after:
        # Exists once, or twice (fold=0 is the first occurrence).
        return first.astimezone(UTC)
    # Does not exist: the zone moved forward across it. The change happened between
    # `second` (read with the new offset, earlier) and `first` (old offset, later).
    return _transition(second.astimezone(UTC), first.astimezone(UTC), zone, after)


def _transition(low: datetime, high: datetime, zone: ZoneInfo, new_offset: timedelta) -> datetime:
    """The first instant in (low, high] at which `zone` shows `new_offset` (to the second)."""
    while high - low > _SECOND:
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle <= low:
            middle = low + _SECOND
        if middle.astimezone(zone).utcoffset() == new_offset:
            high = middle
        else:
            low = middle
    return high


@dataclass(frozen=True)
class CronSchedule:
    """A five-field cron expression read in an IANA time zone."""

    expression: str
    timezone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def _walls(self, start: datetime, *, backwards: bool) -> Iterator[datetime]:
        it = croniter(self.expression, start)
        step = it.get_prev if backwards else it.get_next
        while True:
            try:
                yield step(datetime)
            except CroniterBadDateError:  # no (further) wall-clock time matches
                return

    def _fold_margin(self, wall: datetime) -> timedelta:
        """How far wall-clock times after `wall` may still map to instants before it."""
        first = wall.replace(tzinfo=self.zone, fold=0).utcoffset()
        second = wall.replace(tzinfo=self.zone, fold=1).utcoffset()
        return abs(first - second) if first is not None and second is not None else timedelta()

    def fire_times_after(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` slots strictly after `after`, in UTC, oldest first."""
        after = _aware(after).astimezone(UTC)
        slots: list[datetime] = []
        if count <= 0:
            return slots
        start = after.astimezone(self.zone).replace(tzinfo=None, fold=0)
        for wall in self._walls(start, backwards=False):
            slot = wall_clock_instant(wall, self.zone)
            if slot <= after or (slots and slot == slots[-1]):
                continue
            slots.append(slot)
            if len(slots) == count:
                break
        return slots

    def next_fire_time(self, after: datetime) -> datetime | None:
        """The first slot strictly after `after`, or None if the expression never matches again."""
        slots = self.fire_times_after(after, 1)
        return slots[0] if slots else None

    def fire_times_between(
        self, after: datetime, until: datetime, *, latest: int | None = None
    ) -> list[datetime]:
        """The slots in (after, until], oldest first; only the `latest` most recent if given.

        Walks backwards from `until`, so the cost depends on how many slots are returned,
        not on how long ago `after` was.
        """
        after = _aware(after).astimezone(UTC)
        until = _aware(until).astimezone(UTC)
        slots: list[datetime] = []
        if until <= after or latest == 0:
            return slots
        wall_until = until.astimezone(self.zone).replace(tzinfo=None, fold=0)
        # get_prev is strict: start just past `until`'s wall time, plus the repeated hour
        # when `until` lies in its second occurrence (those wall times map before it).
        start = wall_until + self._fold_margin(wall_until) + _SECOND
        for wall in self._walls(start, backwards=True):
            slot = wall_clock_instant(wall, self.zone)
            if slot > until or (slots and slot == slots[-1]):
                continue
            if slot <= after:
                break
            slots.append(slot)
            if latest is not None and len(slots) == latest:
                break
        slots.reverse()
        return slots


@dataclass(frozen=True)
class MissedPolicy:
    """What to do with slots the scheduler could not fire on time."""

    policy: str = "skip"
    cap: int = DEFAULT_MISSED_CAP

    def __post_init__(self) -> None:
        if self.policy not in MISSED_SCHEDULE_POLICIES:
            raise ValueError(f"missedSchedulePolicy must be one of {MISSED_SCHEDULE_POLICIES}")
        if self.cap < 1:
            raise ValueError("the missed-run cap must be at least 1")

    @property
    def missed_to_fire(self) -> int:
        return {"skip": 0, "latest": 1, "all": self.cap}[self.policy]


@dataclass(frozen=True)
class Plan:
    """What one tick does for one job."""

    fire: list[datetime]  # slots to create runs for, oldest first
    missed: list[datetime]  # missed slots that are fired (a subset of `fire`)
    # Every slot up to `now` is decided by this plan: nothing changes for the job before
    # its next slot, so a scheduler need not look at it again until then (None: never).
    next_check: datetime | None


def due_slots(
    schedule: CronSchedule,
    *,
    cursor: datetime,
    now: datetime,
    missed: MissedPolicy,
    paused: bool = False,
    late_tolerance: timedelta = DEFAULT_LATE_TOLERANCE,
) -> Plan:
    """The slots to fire at `now` for a job whose latest handled slot is `cursor`.

    A paused job fires nothing and its cursor does not move: when it resumes, the slots
    it slept through are missed slots and the policy decides.
    """
    if paused:
        return Plan(fire=[], missed=[], next_check=None)
    cursor, now = _aware(cursor), _aware(now)
    late_before = now - late_tolerance
    on_time = schedule.fire_times_between(max(cursor, late_before), now)
    missed_fired = (
        schedule.fire_times_between(cursor, late_before, latest=missed.missed_to_fire)
        if missed.missed_to_fire and late_before > cursor
        else []
    )
    return Plan(
        fire=missed_fired + on_time, missed=missed_fired, next_check=schedule.next_fire_time(now)
    )


def slot_run_id(job_id: str, slot: datetime) -> str:
    """The id of the run for (job, slot): a second scheduler or a retry collides on it."""
    return derived_id("scheduled-run", job_id, _aware(slot).astimezone(UTC).isoformat())
