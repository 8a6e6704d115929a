"""Fire times, DST rules and missed-schedule policies of the scheduling engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sailplane.domain.scheduling import (
    CronSchedule,
    MissedPolicy,
    due_slots,
    slot_run_id,
    wall_clock_instant,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- DST: a wall-clock time that does not exist fires once at the first valid instant after it;
# one that exists twice fires once (its first occurrence). -----------------------------------


def test_new_york_spring_forward_fires_the_skipped_time_at_the_change() -> None:
    # 8 March 2026: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 does not exist.
    schedule = CronSchedule("30 2 * * *", "America/New_York")
    assert schedule.fire_times_after(utc(2026, 3, 7), 3) == [
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 8, 7, 0),  # 03:00 EDT, the first valid instant after 02:30
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]


def test_new_york_spring_forward_collapses_every_skipped_time_into_one_slot() -> None:
    quarter_hours = CronSchedule("*/15 2 * * *", "America/New_York")
    assert quarter_hours.fire_times_between(utc(2026, 3, 8), utc(2026, 3, 8, 12)) == [
        utc(2026, 3, 8, 7, 0)
    ]
    hourly = CronSchedule("0 * * * *", "America/New_York")
    # 01:00 EST, then 02:00 (skipped) and 03:00 EDT are the same instant: one slot.
    assert hourly.fire_times_after(utc(2026, 3, 8, 5, 30), 3) == [
        utc(2026, 3, 8, 6, 0),
        utc(2026, 3, 8, 7, 0),
        utc(2026, 3, 8, 8, 0),
    ]


def test_new_york_fall_back_fires_the_repeated_time_once() -> None:
    # 1 November 2026: 02:00 EDT falls back to 01:00 EST (06:00 UTC); 01:30 happens twice.
    schedule = CronSchedule("30 1 * * *", "America/New_York")
    assert schedule.fire_times_after(utc(2026, 10, 31), 3) == [
        utc(2026, 10, 31, 5, 30),  # 01:30 EDT
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT, the first occurrence; not again at 01:30 EST
        utc(2026, 11, 2, 6, 30),  # 01:30 EST
    ]
    hourly = CronSchedule("0 * * * *", "America/New_York")
    assert hourly.fire_times_after(utc(2026, 11, 1, 3, 30), 3) == [
        utc(2026, 11, 1, 4, 0),  # 00:00 EDT
        utc(2026, 11, 1, 5, 0),  # 01:00 EDT; the repeated 01:00 EST (06:00 UTC) does not fire
        utc(2026, 11, 1, 7, 0),  # 02:00 EST
    ]


def test_new_york_fall_back_from_inside_the_repeated_hour() -> None:
    half_hours = CronSchedule("*/30 * * * *", "America/New_York")
    # 06:45 UTC is 01:45 EST, the second pass: its wall times already fired in the first.
    assert half_hours.fire_times_between(utc(2026, 11, 1, 4, 45), utc(2026, 11, 1, 6, 45)) == [
        utc(2026, 11, 1, 5, 0),
        utc(2026, 11, 1, 5, 30),
    ]
    assert half_hours.next_fire_time(utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 1, 7, 0)


def test_berlin_spring_forward() -> None:
    # 29 March 2026: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    schedule = CronSchedule("30 2 * * *", "Europe/Berlin")
    assert schedule.fire_times_after(utc(2026, 3, 28), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_berlin_fall_back() -> None:
    # 25 October 2026: 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:30 happens twice.
    schedule = CronSchedule("30 2 * * *", "Europe/Berlin")
    assert schedule.fire_times_after(utc(2026, 10, 24), 3) == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, first occurrence only
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]


def test_a_skipped_wall_time_maps_to_the_change_even_for_half_hour_shifts() -> None:
    # Lord Howe Island moves by 30 minutes: 02:00 -> 02:30 on 4 October 2026.
    zone = ZoneInfo("Australia/Lord_Howe")
    slot = wall_clock_instant(datetime(2026, 10, 4, 2, 10), zone)
    assert slot.astimezone(zone).replace(tzinfo=None) == datetime(2026, 10, 4, 2, 30)


def test_an_expression_that_never_matches_has_no_next_fire_time() -> None:
    assert CronSchedule("0 0 30 2 *").next_fire_time(utc(2026, 1, 1)) is None


# --- missed slots ------------------------------------------------------------------------------

HOURLY = CronSchedule("0 * * * *", "UTC")


@pytest.mark.parametrize(
    ("policy", "now", "fired"),
    [
        # 14:00 is 20 s old at 14:00:20: on time, it fires whatever the policy.
        ("skip", utc(2026, 5, 1, 14, 0, 20), [14]),
        ("latest", utc(2026, 5, 1, 14, 0, 20), [13, 14]),
        ("all", utc(2026, 5, 1, 14, 0, 20), [11, 12, 13, 14]),
        # At 14:30 every slot since 10:00 was missed.
        ("skip", utc(2026, 5, 1, 14, 30), []),
        ("latest", utc(2026, 5, 1, 14, 30), [14]),
        ("all", utc(2026, 5, 1, 14, 30), [11, 12, 13, 14]),
    ],
)
def test_missed_schedule_policies(policy: str, now: datetime, fired: list[int]) -> None:
    plan = due_slots(HOURLY, cursor=utc(2026, 5, 1, 10), now=now, missed=MissedPolicy(policy))
    assert [s.hour for s in plan.fire] == fired
    assert all(s <= now - timedelta(seconds=60) for s in plan.missed)


def test_all_is_capped_to_the_most_recent_missed_slots() -> None:
    plan = due_slots(
        HOURLY,
        cursor=utc(2026, 5, 1),
        now=utc(2026, 5, 2, 0, 0, 5),
        missed=MissedPolicy("all", cap=3),
    )
    assert [s.hour for s in plan.missed] == [21, 22, 23]
    assert plan.fire == [*plan.missed, utc(2026, 5, 2)]
    default = due_slots(
        HOURLY, cursor=utc(2026, 5, 1), now=utc(2026, 5, 2, 0, 30), missed=MissedPolicy("all")
    )
    assert len(default.fire) == 10 and default.fire[-1] == utc(2026, 5, 2)


def test_a_paused_job_fires_nothing_and_resuming_applies_the_policy() -> None:
    cursor = utc(2026, 5, 1, 9)  # paused after its 09:00 run
    assert (
        due_slots(
            HOURLY, cursor=cursor, now=utc(2026, 5, 1, 12), missed=MissedPolicy("all"), paused=True
        ).fire
        == []
    )
    resumed = due_slots(
        HOURLY, cursor=cursor, now=utc(2026, 5, 1, 12, 10), missed=MissedPolicy("latest")
    )
    assert resumed.fire == [utc(2026, 5, 1, 12)]


def test_the_cost_does_not_grow_with_the_length_of_the_outage() -> None:
    every_minute = CronSchedule("* * * * *")
    plan = due_slots(
        every_minute, cursor=utc(2016, 1, 1), now=utc(2026, 1, 1), missed=MissedPolicy("all")
    )
    assert len(plan.missed) == 10 and plan.missed[-1] == utc(2025, 12, 31, 23, 59)
    assert plan.fire[-1] == utc(2026, 1, 1)  # on time


def test_policies_are_checked() -> None:
    with pytest.raises(ValueError):
        MissedPolicy("sometimes")
    with pytest.raises(ValueError):
        MissedPolicy("all", cap=0)


def test_slot_run_ids_are_deterministic_per_job_and_instant() -> None:
    slot = utc(2026, 3, 8, 7)
    same_instant = slot.astimezone(ZoneInfo("America/New_York"))
    assert slot_run_id("JOB1", slot) == slot_run_id("JOB1", same_instant)
    assert slot_run_id("JOB1", slot) != slot_run_id("JOB1", slot + timedelta(minutes=1))
    assert slot_run_id("JOB1", slot) != slot_run_id("JOB2", slot)


# --- property: the engine against an independent brute-force reference ---------------------------
#
# The reference walks every UTC minute, reads the wall clock in the zone, and matches the
# expression's expanded fields (croniter's parser, not its iterator): a minute fires when its
# wall time matches and is not the second pass of a repeated hour, or when the zone just jumped
# over a wall time that matches. Policies are applied to the ticks the simulation made.

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kolkata",
    "Pacific/Chatham",
]
# DST changes of 2026 in those zones (UTC), so windows often cross one.
CHANGES = [
    utc(2026, 3, 8, 7),
    utc(2026, 11, 1, 6),
    utc(2026, 3, 29, 1),
    utc(2026, 10, 25, 1),
    utc(2026, 4, 4, 15),
    utc(2026, 10, 3, 15),
    utc(2026, 4, 5, 3),
    utc(2026, 9, 6, 4),
    utc(2026, 4, 4, 14),
    utc(2026, 9, 26, 14),
]
MINUTES = ["*", "0", "30", "*/15", "0,30", "5-10", "45", "*/7"]
HOURS = ["*", "2", "1", "3", "0-3", "*/2", "1,2,3", "2-4", "0", "12"]
DOMS = ["*", "*", "*", "1-7", "25-31", "*/2"]
DOWS = ["*", "*", "*", "0", "1-5", "6,0"]
TOLERANCE = timedelta(seconds=60)


def reference_slots(
    expression: str, zone_name: str, after: datetime, until: datetime
) -> list[datetime]:
    minute, hour, dom, month, dow = croniter(expression).expanded
    zone = ZoneInfo(zone_name)

    def matches(wall: datetime) -> bool:
        def has(field: list, value: int) -> bool:
            return field == ["*"] or value in field

        day_of_month, day_of_week = has(dom, wall.day), has(dow, (wall.weekday() + 1) % 7)
        if dom != ["*"] and dow != ["*"]:
            day = day_of_month or day_of_week
        else:
            day = day_of_month and day_of_week
        return has(minute, wall.minute) and has(hour, wall.hour) and has(month, wall.month) and day

    slots = []
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    previous = (t - timedelta(minutes=1)).astimezone(zone)
    while t <= until:
        local = t.astimezone(zone)
        fires = matches(local.replace(tzinfo=None)) and local.fold == 0
        wall = previous.replace(tzinfo=None) + timedelta(minutes=1)
        while not fires and wall < local.replace(tzinfo=None):  # wall times the zone jumped over
            fires = matches(wall)
            wall += timedelta(minutes=1)
        if fires:
            slots.append(t)
        previous, t = local, t + timedelta(minutes=1)
    return slots


def reference_fired(
    slots: list[datetime], ticks: list[datetime], policy: MissedPolicy
) -> list[datetime]:
    fired: list[datetime] = []
    missed_by_tick: dict[datetime, list[datetime]] = {}
    for slot in slots:
        tick = next((t for t in ticks if t >= slot), None)
        if tick is None:
            continue
        if tick - slot < TOLERANCE:
            fired.append(slot)
        else:
            missed_by_tick.setdefault(tick, []).append(slot)
    keep = {"skip": 0, "latest": 1, "all": policy.cap}[policy.policy]
    for group in missed_by_tick.values():
        fired.extend(group[-keep:] if keep else [])
    return sorted(fired)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[CronSchedule, MissedPolicy, list[datetime]]:
    expression = " ".join(
        [
            draw(st.sampled_from(MINUTES)),
            draw(st.sampled_from(HOURS)),
            draw(st.sampled_from(DOMS)),
            "*",
            draw(st.sampled_from(DOWS)),
        ]
    )
    schedule = CronSchedule(expression, draw(st.sampled_from(ZONES)))
    policy = MissedPolicy(
        draw(st.sampled_from(["skip", "latest", "all"])), cap=draw(st.integers(1, 12))
    )
    start = draw(st.sampled_from(CHANGES)) - timedelta(minutes=draw(st.integers(0, 30 * 60)))
    length = timedelta(hours=draw(st.integers(2, 30)))
    step = timedelta(seconds=draw(st.integers(5, 59)))  # under the 60 s tolerance
    # Up to two outages (downtime or a pause), each up to 10 hours.
    outages = [
        (
            start + timedelta(minutes=draw(st.integers(0, int(length.total_seconds() // 60)))),
            timedelta(minutes=draw(st.integers(1, 600))),
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    ticks, t = [], start + timedelta(seconds=draw(st.integers(0, 59)))
    while t <= start + length:
        if not any(begin <= t < begin + duration for begin, duration in outages):
            ticks.append(t)
        t += step
    return schedule, policy, [start, *ticks]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_fired_slots_equal_the_reference(
    scenario: tuple[CronSchedule, MissedPolicy, list[datetime]],
) -> None:
    schedule, policy, (start, *ticks) = scenario
    cursor, fired, next_check = start, [], schedule.next_fire_time(start)
    for now in ticks:
        if next_check is None or now < next_check:
            continue  # what the worker does: nothing can be due before the next slot
        plan = due_slots(schedule, cursor=cursor, now=now, missed=policy, late_tolerance=TOLERANCE)
        fired.extend(plan.fire)
        cursor, next_check = max([cursor, *plan.fire]), plan.next_check
    slots = reference_slots(
        schedule.expression, schedule.timezone, start, ticks[-1] if ticks else start
    )
    assert fired == reference_fired(slots, ticks, policy)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(MINUTES),
    st.sampled_from(HOURS),
    st.sampled_from(ZONES),
    st.sampled_from(CHANGES),
    st.integers(0, 48 * 60),
)
def test_forward_and_backward_iteration_agree_with_the_reference(
    minute: str, hour: str, zone: str, change: datetime, offset: int
) -> None:
    schedule = CronSchedule(f"{minute} {hour} * * *", zone)
    after = change - timedelta(minutes=offset) + timedelta(seconds=offset % 60)
    until = after + timedelta(hours=36)
    expected = reference_slots(schedule.expression, zone, after, until)
    assert schedule.fire_times_between(after, until) == expected
    forward = schedule.fire_times_after(after, len(expected) + 1)
    assert forward[: len(expected)] == expected
    assert len(forward) == len(expected) + 1 and forward[-1] > until
