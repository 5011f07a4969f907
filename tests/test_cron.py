"""Cron schedules (pure): parsing, next-fire times across DST, misfire plans; property-tested."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from taskemit import CronConfigError, CronSchedule, cron
from taskemit.schedule.misfire import plan_fires

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def local(zone: ZoneInfo, ticks: list[dt.datetime]) -> list[str]:
    return [tick.astimezone(zone).isoformat() for tick in ticks]


# -- declaring ------------------------------------------------------------------------------


def test_cron_declares_a_schedule_with_arguments() -> None:
    schedule = cron("*/5 * * * *", "cache_warm", "eu", tz="Europe/Berlin", size=3)
    assert schedule.event_id == "cache_warm"
    assert schedule.args == ("eu",) and schedule.kwargs == {"size": 3}
    assert schedule.tz == "Europe/Berlin" and schedule.zone == BERLIN
    assert schedule.name == "cache_warm@*/5 * * * * Europe/Berlin"
    assert schedule.misfire == "once" and schedule.max_lateness == 3600
    # the default name is stable: another process declaring the same gets the same name
    assert cron("*/5  *  * * *", "cache_warm", tz="Europe/Berlin").name == schedule.name
    assert cron("@daily", "report", name="nightly").name == "nightly"


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/5 * * * *", utc(2026, 1, 1, 0, 3), utc(2026, 1, 1, 0, 5)),
        ("*/10 * * * * *", utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 0, 0, 10)),  # seconds first
        ("30 12 * * *", utc(2026, 1, 1, 12, 30), utc(2026, 1, 2, 12, 30)),  # strictly after
        ("@hourly", utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 1)),
        ("@weekly", utc(2026, 1, 1), utc(2026, 1, 4)),  # Sunday
        ("0 9 * jan-mar mon-fri", utc(2026, 1, 2, 10), utc(2026, 1, 5, 9)),
        ("0 0 L * *", utc(2026, 2, 3), utc(2026, 2, 28)),
        ("0 0 * * 5#2", utc(2026, 2, 3), utc(2026, 2, 13)),
        ("0 0 29 2 *", utc(2026, 3, 1), utc(2028, 2, 29)),
    ],
)
def test_next_fire(expression: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert cron(expression, "e").next_fire(after) == expected


@pytest.mark.parametrize(
    ("expression", "options", "message"),
    [
        ("61 * * * *", {}, r"'e@61 \* \* \* \*': invalid cron expression"),
        ("* * * *", {}, "has 4 fields"),
        ("0 0 1 1 * 2030", {}, "invalid cron expression"),
        ("* * * * * * *", {}, "has 7 fields"),
        ("@reboot", {}, "invalid cron expression"),
        ("0 0 30 2 *", {}, "never fires"),
        ("@daily", {"tz": "Mars/Olympus_Mons"}, "'nightly': unknown time zone 'Mars/Olympus_Mons'"),
        ("@daily", {"misfire": "twice"}, "misfire must be one of skip, once, all"),
        ("@daily", {"max_lateness": 0}, "max_lateness must be"),
        ("@daily", {"tick_kwarg": "not a name"}, "tick_kwarg must be a keyword name"),
        ("@daily", {"tick_kwarg": "size", "size": 1}, "also one of its kwargs"),
        ("@daily", {"__taskemit__": 1}, "reserved"),
    ],
)
def test_invalid_schedules_are_errors_naming_the_schedule(
    expression: str, options: dict[str, object], message: str
) -> None:
    options = {"name": "nightly", **options} if "tz" in options else options
    with pytest.raises(CronConfigError, match=message):
        cron(expression, "e", **options)  # type: ignore[arg-type]


def test_table_form_round_trips_and_rejects_unknown_keys() -> None:
    table = {"schedule": "30 2 * * *", "event": "report", "tz": "Europe/Berlin", "kwargs": {"fmt": "pdf"}}
    schedule = CronSchedule.from_table(table)
    assert schedule.kwargs == {"fmt": "pdf"} and schedule.tz == "Europe/Berlin"
    assert CronSchedule.from_table(schedule.to_table()) == schedule
    with pytest.raises(CronConfigError, match=r"'report@30 2 \* \* \*': unknown key\(s\) \['timezone'\]"):
        CronSchedule.from_table({"schedule": "30 2 * * *", "event": "report", "timezone": "UTC"})
    with pytest.raises(CronConfigError, match=r"missing key\(s\) \['event'\]"):
        CronSchedule.from_table({"schedule": "30 2 * * *"})


def test_once_key_and_tick_argument() -> None:
    schedule = cron("@hourly", "sync", 1, tick_kwarg="tick", full=True)
    tick = dt.datetime(2026, 5, 1, 14, tzinfo=BERLIN)
    assert schedule.once_key(tick) == "cron:sync@@hourly:2026-05-01T12:00:00+00:00"
    assert schedule.arguments(tick) == ((1,), {"full": True, "tick": utc(2026, 5, 1, 12)})
    assert cron("@hourly", "sync").arguments(tick) == ((), {})


# -- time zones and DST -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expression", "after", "expected"),
    [
        # Berlin, 2026-03-29: 02:00 -> 03:00. 02:30 does not exist: it fires at 03:30, once.
        (
            "Europe/Berlin",
            "30 2 * * *",
            utc(2026, 3, 27, 12),
            ["2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"],
        ),
        # Berlin, 2026-10-25: 03:00 -> 02:00. 02:30 happens twice: it fires at the first, once.
        (
            "Europe/Berlin",
            "30 2 * * *",
            utc(2026, 10, 23, 12),
            ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ),
        (
            "America/New_York",
            "30 2 * * *",
            utc(2026, 3, 6, 12),
            ["2026-03-07T02:30:00-05:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"],
        ),
        # New York falls back at 02:00 -> 01:00, so 01:30 is the repeated time there
        (
            "America/New_York",
            "30 1 * * *",
            utc(2026, 10, 30, 12),
            ["2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        ),
    ],
)
def test_daily_schedule_fires_once_on_the_days_the_clocks_change(
    zone: str, expression: str, after: dt.datetime, expected: list[str]
) -> None:
    schedule = cron(expression, "report", tz=zone)
    assert local(ZoneInfo(zone), schedule.upcoming(after, 3)) == expected


def test_hourly_schedule_keeps_real_hours_across_both_changes() -> None:
    hourly = cron("@hourly", "sync", tz="Europe/Berlin")
    spring = list(hourly.fires_between(utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)))  # one local day
    autumn = list(hourly.fires_between(utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)))
    assert len(spring) == 23 and len(autumn) == 25
    for ticks in (spring, autumn):
        assert all(b - a == dt.timedelta(hours=1) for a, b in itertools.pairwise(ticks))


def test_repeated_hour_fires_twice_only_for_every_hour_schedules() -> None:
    start = utc(2026, 10, 24, 23, 30)
    every_20 = cron("*/20 * * * *", "e", tz="Europe/Berlin").upcoming(start, 8)
    assert local(BERLIN, every_20) == [
        "2026-10-25T01:40:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:20:00+02:00",
        "2026-10-25T02:40:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:20:00+01:00",
        "2026-10-25T02:40:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]
    in_hour_two = cron("*/20 2 * * *", "e", tz="Europe/Berlin").upcoming(start, 4)
    assert local(BERLIN, in_hour_two)[2:] == ["2026-10-25T02:40:00+02:00", "2026-10-26T02:00:00+01:00"]


def test_per_second_schedule_through_a_change_is_fast_and_gapless() -> None:
    every_second = cron("* * * * * *", "e", tz="Europe/Berlin")
    ticks = list(every_second.fires_between(utc(2026, 10, 25, 0, 59, 50), utc(2026, 10, 25, 1, 0, 10)))
    assert [tick.second for tick in ticks] == [*range(51, 60), *range(0, 11)]
    ticks = list(every_second.fires_between(utc(2026, 3, 29, 0, 59, 50), utc(2026, 3, 29, 1, 0, 10)))
    assert len(ticks) == 20 and len(set(ticks)) == 20


# -- properties -------------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata"]


def _changes(zone_name: str, year: int = 2026) -> list[dt.datetime]:
    """The instants (to the second) at which the zone changes its UTC offset in ``year``."""
    zone, found = ZoneInfo(zone_name), []
    hour = utc(year, 1, 1)
    while hour.year == year:
        low, high = hour, hour + dt.timedelta(hours=1)
        if low.astimezone(zone).utcoffset() != high.astimezone(zone).utcoffset():
            while high - low > dt.timedelta(seconds=1):
                middle = low + (high - low) / 2
                same = middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset()
                low, high = (middle, high) if same else (low, middle)
            found.append(high.replace(microsecond=0))
        hour += dt.timedelta(hours=1)
    return found or [utc(year, 6, 1)]  # zones without changes: anywhere


#: (zone, instant near one of its own clock changes): where the hard cases are
ZONE_CHANGES = [(zone, change) for zone in ZONES for change in _changes(zone)]
MINUTES = ["*", "0", "30", "*/15", "5,35", "0-10", "59"]
HOURS = ["*", "*", "*", "0", "1", "2", "3", "23", "*/2", "1-3", "0,12"]
WEEKDAYS = ["*", "*", "mon-fri", "sun", "sat"]

expressions = st.builds(
    lambda m, h, d: f"{m} {h} * * {d}", st.sampled_from(MINUTES), st.sampled_from(HOURS), st.sampled_from(WEEKDAYS)
)
zoned_moments = st.builds(
    lambda pair, seconds: (pair[0], pair[1] + dt.timedelta(seconds=seconds)),
    st.sampled_from(ZONE_CHANGES),
    st.integers(-2 * 3600, 2 * 3600) | st.integers(-2 * 86_400, 2 * 86_400),
) | st.tuples(
    st.sampled_from(ZONES), st.datetimes(dt.datetime(2025, 1, 1), dt.datetime(2028, 1, 1), timezones=st.just(UTC))
)
property_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def _fields(expression: str) -> tuple[frozenset[int] | None, ...]:
    """croniter's parse of a 5-field expression (no L or #), as sets; None for a field's ``*``."""
    fields = croniter(expression).expanded
    return tuple(None if field == ["*"] else frozenset(int(v) for v in field) for field in fields)


def _matches(expression: str, wall: dt.datetime) -> bool:
    """A matcher of our own over croniter's parsed fields, for an oracle independent of its iteration."""
    minute, hour, day, month, weekday = _fields(expression)[:5]
    dow = (wall.weekday() + 1) % 7
    day_ok, weekday_ok = day is None or wall.day in day, weekday is None or dow in weekday
    days = (day_ok or weekday_ok) if day is not None and weekday is not None else (day_ok and weekday_ok)
    return (
        (minute is None or wall.minute in minute)
        and (hour is None or wall.hour in hour)
        and (month is None or wall.month in month)
        and days
    )


def _fires_at(expression: str, zone: ZoneInfo, instant: dt.datetime) -> bool:
    """Brute force, minute by minute: is ``instant`` a tick, by the rules in the cron module docstring?"""
    seen = instant.astimezone(zone)
    every_hour = expression.split()[1] == "*"
    if _matches(expression, seen.replace(tzinfo=None)) and (seen.fold == 0 or every_hour):
        return True
    # a wall time the clocks skipped fires at its instant under the offset from before the jump
    before = (instant - dt.timedelta(hours=6)).astimezone(zone).utcoffset()
    assert before is not None
    skipped = (instant + before).replace(tzinfo=None)
    as_wall = skipped.replace(tzinfo=zone)
    exists = as_wall.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == skipped
    return not exists and as_wall.astimezone(UTC) == instant and _matches(expression, skipped)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.builds(
        lambda m, h, d: f"{m} {h} * * {d}",
        st.sampled_from(MINUTES),
        st.sampled_from(HOURS),
        st.sampled_from(["*", "mon-fri"]),
    ),
    zoned_moments,
)
@example("* 1 * * *", ("America/New_York", utc(2026, 11, 2, 5, 59, 59)))
@example("*/15 * * * *", ("Europe/Berlin", utc(2026, 10, 25, 0, 50)))
@example("30 2 * * *", ("Europe/Berlin", utc(2026, 3, 29, 0, 50)))
def test_next_fire_equals_a_minute_by_minute_scan(expression: str, zoned: tuple[str, dt.datetime]) -> None:
    zone_name, after = zoned
    schedule = cron(expression, "e", tz=zone_name)
    found = schedule.next_fire(after)
    assert found > after
    minute = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    # every minute between after and the next fire is no tick, and the next fire is one
    while minute < found:
        assert not _fires_at(expression, schedule.zone, minute), f"missed a tick at {minute}"
        minute += dt.timedelta(minutes=1)
    assert _fires_at(expression, schedule.zone, found)


@property_settings
@given(expressions, zoned_moments, st.integers(1, 3 * 86_400))
@example("* 1 * * *", ("America/New_York", utc(2026, 11, 1, 6)), 1)
def test_next_and_previous_fire_agree_and_are_monotone(
    expression: str, zoned: tuple[str, dt.datetime], later_by: int
) -> None:
    zone_name, moment = zoned
    schedule = cron(expression, "e", tz=zone_name)
    following = schedule.next_fire(moment)
    previous = schedule.previous_fire(moment)
    assert previous is not None and previous <= moment < following
    assert schedule.next_fire(previous) == following  # nothing fires in (previous, moment]
    assert schedule.previous_fire(following) == following
    assert schedule.previous_fire(following - dt.timedelta(microseconds=1)) == previous
    assert schedule.next_fire(moment + dt.timedelta(seconds=later_by)) >= following  # monotone
    assert schedule.previous_fire(moment, after=previous) is None


@property_settings
@given(
    st.integers(0, 23),
    st.sampled_from([0, 15, 30, 59]),
    st.sampled_from(ZONE_CHANGES),
)
def test_daily_schedules_fire_once_per_local_day_across_changes(
    hour: int, minute: int, zoned: tuple[str, dt.datetime]
) -> None:
    zone_name, change = zoned
    schedule = cron(f"{minute} {hour} * * *", "e", tz=zone_name)
    ticks = list(schedule.fires_between(change - dt.timedelta(days=3), change + dt.timedelta(days=3)))
    days = Counter(tick.astimezone(schedule.zone).date() for tick in ticks)
    inner = sorted(days)[1:-1]  # the first and last local day may be cut off by the window
    assert inner and all(days[day] == 1 for day in inner), days


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["*/7 * * * * *", "30 * * * * *", "0,20,40 */2 * * * *"]), zoned_moments)
def test_seconds_schedules_are_ordered_and_exact(expression: str, zoned: tuple[str, dt.datetime]) -> None:
    zone_name, moment = zoned
    schedule = cron(expression, "e", tz=zone_name)
    ticks = schedule.upcoming(moment, 5)
    assert moment < ticks[0] and ticks == sorted(set(ticks))
    fields = croniter(expression, second_at_beginning=True).expanded
    assert all(tick.microsecond == 0 and (fields[5] == ["*"] or tick.second in fields[5]) for tick in ticks)


# -- misfire plans ----------------------------------------------------------------------------

EVERY_SECOND = "* * * * * *"


@pytest.mark.parametrize(
    ("misfire", "lateness", "expected_seconds"),
    [
        ("skip", 3600, []),
        ("once", 3600, [4]),
        ("all", 3600, [1, 2, 3, 4]),
        ("all", 2.6, [2, 3, 4]),  # ticks late by less than 2.6 s at now (:04.5)
        ("once", 0.4, []),  # the latest missed tick, 4, is already 0.5 s late
    ],
)
def test_plan_after_downtime(misfire: str, lateness: float, expected_seconds: list[int]) -> None:
    schedule = cron(EVERY_SECOND, "e", misfire=misfire, max_lateness=lateness)  # type: ignore[arg-type]
    start = utc(2026, 1, 1, 12, 0, 0)
    now = start + dt.timedelta(seconds=4.5)  # last fired at :00, restarted at :04.5
    plan = plan_fires(schedule, after=start, now=now, running_since=now)
    assert [tick.second for tick in plan] == expected_seconds


@pytest.mark.parametrize(("misfire", "expected_seconds"), [("skip", [3]), ("once", [2, 3]), ("all", [1, 2, 3])])
def test_plan_for_a_running_scheduler_emits_the_current_tick(misfire: str, expected_seconds: list[int]) -> None:
    schedule = cron(EVERY_SECOND, "e", misfire=misfire)  # type: ignore[arg-type]
    start = utc(2026, 1, 1, 12, 0, 0)
    # on time: only the current tick is due
    one = plan_fires(schedule, after=start, now=start + dt.timedelta(seconds=1.01), running_since=start)
    assert [tick.second for tick in one] == [1]
    # held up for 3 s (Redis away, loop blocked): the latest tick is current, the rest were missed
    held = plan_fires(schedule, after=start, now=start + dt.timedelta(seconds=3.2), running_since=start)
    assert [tick.second for tick in held] == expected_seconds


def test_plan_is_empty_when_nothing_is_due() -> None:
    schedule = cron("@daily", "e")
    now = utc(2026, 1, 1, 12)
    assert plan_fires(schedule, after=utc(2026, 1, 1, 0), now=now, running_since=utc(2025, 1, 1)) == ()
