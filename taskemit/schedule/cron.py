"""Cron schedules: what a schedule is, when it fires, and which ticks a scheduler emits.

Pure: no Redis and no clock. Every time comes in as an argument (aware datetimes; results
are in UTC), so the property tests can hammer it. The firing loop is ``scheduler.py``; which
due ticks it emits after downtime is ``misfire.py``; offset changes are ``zoneclock.py``.

Expressions are matched against the local wall clock of the schedule's time zone (croniter
does the calendar arithmetic on naive wall times; croniter's own time-zone handling is not
used because it fires twice in a repeated hour). Wall times map to instants like this:

- a wall time that does not exist (clocks jump forward) fires at the instant it would have
  been with the offset from before the jump: 02:30 on a 02:00 -> 03:00 day fires at 03:30;
- a wall time that happens twice (clocks go back) fires at its first occurrence, unless the
  schedule fires in every hour (hour field ``*``), which then keeps its pace through both.

So a daily schedule fires once on every local day, and an hourly one once every real hour.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from ..errors import InvalidArgument, TaskEmitError
from ..store.codec import META_KWARG
from .zoneclock import offset_change_after, offset_change_at_or_before, utc_offset

__all__ = ("CronConfigError", "CronSchedule", "MisfirePolicy", "cron", "unique_schedules")

MisfirePolicy = Literal["skip", "once", "all"]
_POLICIES: tuple[str, ...] = get_args(MisfirePolicy)
DEFAULT_MISFIRE: MisfirePolicy = "once"
DEFAULT_MAX_LATENESS = 3600.0

_UTC = dt.UTC
#: no zone moves its clocks twice within this long, nor by as much: lookups work in stretches
#: of this length around each change of UTC offset
_NEAR = dt.timedelta(hours=6)
_SECOND = dt.timedelta(seconds=1)
_TINY = dt.timedelta(microseconds=1)
#: stretches of constant offset a lookup may cross before giving up; reached only by a bug
_MAX_STEPS = 1000
#: the keys of a ``[[cron]]`` table besides schedule, event, args and kwargs: the options of cron()
_OPTIONS = ("tz", "name", "misfire", "max_lateness", "tick_kwarg")
_TABLE_KEYS = frozenset({"schedule", "event", "args", "kwargs", *_OPTIONS})


class CronConfigError(TaskEmitError, ValueError):
    """A cron schedule was declared wrongly (expression, time zone, options, or its event)."""


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def as_utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidArgument(f"cron times must be timezone-aware datetimes, got naive {moment!r}")
    return moment.astimezone(_UTC)


def _naive(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=None)


_Bound = tuple[dt.datetime, bool]


def _tighter(one: _Bound, other: _Bound, *, later: bool) -> _Bound:
    """Of two (time, inclusive) bounds, the one that admits less: the later lower bound, or the earlier upper one."""
    if one[0] == other[0]:
        return one[0], one[1] and other[1]
    return max(one, other) if later else min(one, other)


class CronSchedule:
    """Emit ``event_id`` with ``args`` and ``kwargs`` at each tick of a cron expression.

    Immutable. Create it with :func:`cron` (code) or ``[[cron]]`` tables in settings.toml;
    every error says which schedule is wrong. Ticks are returned as UTC datetimes.
    """

    __slots__ = (
        "_every_hour",
        "_template",
        "args",
        "event_id",
        "expression",
        "kwargs",
        "max_lateness",
        "misfire",
        "name",
        "tick_kwarg",
        "tz",
        "zone",
    )

    def __init__(
        self,
        expression: str,
        event_id: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        tz: str | ZoneInfo = "UTC",
        name: str | None = None,
        misfire: MisfirePolicy = DEFAULT_MISFIRE,
        max_lateness: float = DEFAULT_MAX_LATENESS,
        tick_kwarg: str | None = None,
    ) -> None:
        if not isinstance(event_id, str) or not event_id:
            raise CronConfigError(f"cron schedule {expression!r}: the event id must be a non-empty string")
        if not isinstance(expression, str) or not expression.strip():
            raise CronConfigError(f"cron schedule for event {event_id!r}: the expression must be a non-empty string")
        self.expression = " ".join(expression.split())
        self.event_id = event_id
        self.tz = tz.key if isinstance(tz, ZoneInfo) else tz
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise CronConfigError(f"cron schedule {self._default_name()!r}: name must be a non-empty string")
        self.name: str = name or self._default_name()
        label = f"cron schedule {self.name!r}"
        self.args: tuple[Any, ...] = tuple(args)
        self.kwargs: dict[str, Any] = dict(kwargs or {})
        try:
            self.zone = _zone(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise CronConfigError(
                f"{label}: unknown time zone {tz!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
            ) from None
        self._template = self._parse(label)
        self._every_hour = self._template.expanded[1] == ["*"]  # croniter puts hours second
        if misfire not in _POLICIES:
            raise CronConfigError(f"{label}: misfire must be one of {', '.join(_POLICIES)}; got {misfire!r}")
        self.misfire: MisfirePolicy = misfire
        if isinstance(max_lateness, bool) or not isinstance(max_lateness, int | float) or not max_lateness > 0:
            raise CronConfigError(f"{label}: max_lateness must be a number of seconds > 0, got {max_lateness!r}")
        self.max_lateness = float(max_lateness)
        if tick_kwarg is not None and (not isinstance(tick_kwarg, str) or not tick_kwarg.isidentifier()):
            raise CronConfigError(f"{label}: tick_kwarg must be a keyword name, got {tick_kwarg!r}")
        if tick_kwarg is not None and tick_kwarg in self.kwargs:
            raise CronConfigError(f"{label}: tick_kwarg {tick_kwarg!r} is also one of its kwargs")
        self.tick_kwarg = tick_kwarg
        if META_KWARG in self.kwargs or tick_kwarg == META_KWARG:
            raise CronConfigError(f"{label}: {META_KWARG!r} is reserved by taskemit")
        try:  # a valid expression that never matches (February 30th) is an error too
            self.next_fire(dt.datetime(2000, 1, 1, tzinfo=_UTC))
        except CroniterBadDateError:
            raise CronConfigError(f"{label}: {self.expression!r} never fires") from None

    def _default_name(self) -> str:
        """Stable across processes and deploys, as long as event, expression and zone stay."""
        suffix = "" if self.tz == "UTC" else f" {self.tz}"
        return f"{self.event_id}@{self.expression}{suffix}"

    def _parse(self, label: str) -> croniter:
        fields = self.expression.split()
        if not self.expression.startswith("@") and len(fields) not in (5, 6):
            raise CronConfigError(
                f"{label}: {self.expression!r} has {len(fields)} fields; use 5 (minute hour day month weekday), "
                "6 (second first), or @hourly, @daily, @weekly, @monthly, @yearly"
            )
        try:
            return croniter(self.expression, dt.datetime(2000, 1, 1), second_at_beginning=True)
        except (CroniterBadCronError, CroniterError, ValueError, KeyError, TypeError) as exc:
            raise CronConfigError(f"{label}: invalid cron expression {self.expression!r}: {exc}") from None

    # -- table form (settings.toml) ------------------------------------------------------

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> CronSchedule:
        """A schedule from a ``[[cron]]`` table: ``schedule``, ``event`` and optional keys."""
        unknown = sorted(set(table) - _TABLE_KEYS)
        label = table.get("name") or f"{table.get('event')}@{table.get('schedule')}"
        if unknown:
            raise CronConfigError(
                f"cron schedule {label!r}: unknown key(s) {unknown}; the keys are {sorted(_TABLE_KEYS)}"
            )
        missing = [key for key in ("schedule", "event") if key not in table]
        if missing:
            raise CronConfigError(f"cron schedule {label!r}: missing key(s) {missing}")
        args, kwargs = table.get("args", []), table.get("kwargs", {})
        if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping):
            raise CronConfigError(f"cron schedule {label!r}: args must be a list and kwargs a table")
        options = {key: table[key] for key in _OPTIONS if key in table}
        return cls(table["schedule"], table["event"], args, kwargs, **options)

    def to_table(self) -> dict[str, Any]:
        """The ``[[cron]]`` table that makes this schedule again."""
        table = {"schedule": self.expression, "event": self.event_id, "args": list(self.args)}
        table |= {"kwargs": dict(self.kwargs)} | {key: getattr(self, key) for key in _OPTIONS}
        return {key: value for key, value in table.items() if value is not None}

    # -- what one tick emits ---------------------------------------------------------------

    def once_key(self, tick: dt.datetime) -> str:
        """The ``publish_once`` key of a tick: one event per schedule and tick, whoever emits it."""
        return f"cron:{self.name}:{as_utc(tick).isoformat()}"

    def arguments(self, tick: dt.datetime) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The ``args`` and ``kwargs`` emitted for ``tick`` (with the tick itself if asked for)."""
        if self.tick_kwarg is None:
            return self.args, dict(self.kwargs)
        return self.args, {**self.kwargs, self.tick_kwarg: as_utc(tick)}

    # -- when it fires ---------------------------------------------------------------------

    def next_fire(self, after: dt.datetime) -> dt.datetime:
        """The first tick strictly after ``after``, in UTC."""
        bound, inclusive = as_utc(after), False
        for _ in range(_MAX_STEPS):
            offset = self._offset(bound)
            change = self._change_after(bound)
            began = self._change_at_or_before(bound)
            limit = change if change is not None else bound + _NEAR
            candidates = []
            first, first_inclusive = _naive(bound + offset), inclusive
            if began is not None and began[1] > offset and not self._every_hour:
                repeat_end = _naive(began[0] + began[1])  # walls before it fired in the first pass
                if repeat_end > first:
                    first, first_inclusive = repeat_end, True
            wall = self._wall_after(first, first_inclusive)
            regular = (wall - offset).replace(tzinfo=_UTC)
            if (regular < limit or (change is None and regular == limit)) and self._fires_at(wall, regular):
                candidates.append(regular)
            if began is not None and began[1] < offset:  # walls skipped by a jump forward
                gap = self._gap_after(bound, inclusive, began, offset)
                if gap is not None:
                    candidates.append(gap)
            if candidates:
                return min(candidates)
            if change is not None:
                bound, inclusive = change, True
            else:  # nothing near: no tick before the next matching wall time, give or take a day
                bound, inclusive = max(bound + _NEAR, regular - 2 * _NEAR), False
        raise CronConfigError(f"cron schedule {self.name!r}: no next tick found after {after}")  # pragma: no cover

    def previous_fire(self, at: dt.datetime, *, after: dt.datetime | None = None) -> dt.datetime | None:
        """The last tick at or before ``at`` (and strictly after ``after``, if given), in UTC."""
        bound, inclusive = as_utc(at), True
        floor = None if after is None else as_utc(after)
        for _ in range(_MAX_STEPS):
            if floor is not None and bound <= floor:
                return None
            offset = self._offset(bound)
            began = self._change_at_or_before(bound)
            limit = began[0] if began is not None else bound - _NEAR
            candidates = []
            wall = self._wall_before(_naive(bound + offset), inclusive)
            regular = None if wall is None else (wall - offset).replace(tzinfo=_UTC)
            if wall is not None and regular is not None and regular >= limit and self._fires_at(wall, regular):
                candidates.append(regular)
            if began is not None and began[1] < offset:
                gap = self._gap_before(bound, inclusive, began, offset)
                if gap is not None:
                    candidates.append(gap)
            if candidates:
                best = max(candidates)
                return None if floor is not None and best <= floor else best
            if began is not None:  # go on before the change, with the offset from then
                bound, inclusive = began[0] - _TINY, True
            elif regular is None:
                return None
            else:
                bound, inclusive = min(bound - _NEAR, regular + 2 * _NEAR), True
        raise CronConfigError(f"cron schedule {self.name!r}: no previous tick found before {at}")  # pragma: no cover

    def fires_between(self, after: dt.datetime, until: dt.datetime) -> Iterator[dt.datetime]:
        """Every tick in ``(after, until]``, oldest first."""
        until = as_utc(until)
        tick = self.next_fire(after)
        while tick <= until:
            yield tick
            tick = self.next_fire(tick)

    def upcoming(self, after: dt.datetime, count: int) -> list[dt.datetime]:
        """The next ``count`` ticks after ``after``."""
        ticks: list[dt.datetime] = []
        tick = as_utc(after)
        for _ in range(count):
            tick = self.next_fire(tick)
            ticks.append(tick)
        return ticks

    # -- wall times and offsets ----------------------------------------------------------------

    def _gap_after(
        self, bound: dt.datetime, inclusive: bool, began: tuple[dt.datetime, dt.timedelta], offset: dt.timedelta
    ) -> dt.datetime | None:
        """The first skipped wall time firing after ``bound`` (it fires with the old offset)."""
        change, old = began
        start, inclusive = _tighter((_naive(change + old), True), (_naive(bound + old), inclusive), later=True)
        wall = self._wall_after(start, inclusive)
        return (wall - old).replace(tzinfo=_UTC) if wall < _naive(change + offset) else None

    def _gap_before(
        self, bound: dt.datetime, inclusive: bool, began: tuple[dt.datetime, dt.timedelta], offset: dt.timedelta
    ) -> dt.datetime | None:
        """The last skipped wall time firing at or before ``bound``."""
        change, old = began
        end, inclusive = _tighter((_naive(change + offset), False), (_naive(bound + old), inclusive), later=False)
        wall = self._wall_before(end, inclusive)
        return None if wall is None or wall < _naive(change + old) else (wall - old).replace(tzinfo=_UTC)

    def _wall_after(self, start: dt.datetime, inclusive: bool) -> dt.datetime:
        """The first matching wall time after (or at) the naive ``start``."""
        iterator = copy.copy(self._template)  # shares the parsed fields, not the position
        second = start.replace(microsecond=0)
        iterator.set_current(second - _SECOND if inclusive and second == start else second, force=True)
        wall: dt.datetime = iterator.get_next(dt.datetime)
        return wall

    def _wall_before(self, start: dt.datetime, inclusive: bool) -> dt.datetime | None:
        """The last matching wall time before (or at) the naive ``start``; None if there is none."""
        iterator = copy.copy(self._template)
        second = start.replace(microsecond=0)
        iterator.set_current(second + _SECOND if inclusive or second != start else second, force=True)
        try:
            wall: dt.datetime = iterator.get_prev(dt.datetime)
        except CroniterBadDateError:
            return None
        return wall

    def _offset(self, moment: dt.datetime) -> dt.timedelta:
        return utc_offset(self.zone, moment)

    def _change_after(self, moment: dt.datetime) -> dt.datetime | None:
        return offset_change_after(self.zone, moment, _NEAR)

    def _change_at_or_before(self, moment: dt.datetime) -> tuple[dt.datetime, dt.timedelta] | None:
        return offset_change_at_or_before(self.zone, moment, _NEAR)

    def _fires_at(self, wall: dt.datetime, instant: dt.datetime) -> bool:
        """Whether an existing ``wall`` time fires at ``instant``: its first pass, or any in every-hour schedules."""
        return self._every_hour or wall.replace(tzinfo=self.zone, fold=0).astimezone(_UTC) == instant

    # -- identity ----------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronSchedule):
            return NotImplemented
        return self.to_table() == other.to_table()

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        zone = "" if self.tz == "UTC" else f" {self.tz}"
        return f"<CronSchedule {self.name!r}: {self.event_id} at {self.expression!r}{zone}, misfire={self.misfire}>"


def cron(
    expression: str,
    event_id: str,
    /,
    *args: Any,
    tz: str = "UTC",
    name: str | None = None,
    misfire: MisfirePolicy = DEFAULT_MISFIRE,
    max_lateness: float = DEFAULT_MAX_LATENESS,
    tick_kwarg: str | None = None,
    **kwargs: Any,
) -> CronSchedule:
    """A schedule that emits ``event_id`` with ``*args, **kwargs`` at each tick of ``expression``.

    Args:
        expression: 5 fields (minute hour day month weekday), 6 with seconds first, or
            ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``.
        event_id: the event to emit; every listener of it gets its own job.
        tz: IANA time zone the expression is read in (default UTC).
        name: stable name, used for its Redis state and exactly-once keys (default
            ``event@expression [tz]``); give one when two schedules would share it.
        misfire: what to do with ticks missed while no scheduler ran: "skip", "once"
            (one catch-up emit, the default) or "all".
        max_lateness: seconds after its time a tick may still be emitted (default one hour).
        tick_kwarg: a keyword under which listeners receive the tick (UTC datetime).

    Pass the other arguments of ``CronSchedule`` (``args=``, ``kwargs=``) to emit keyword
    arguments named like these options.
    """
    options: dict[str, Any] = dict(tz=tz, name=name, misfire=misfire, max_lateness=max_lateness, tick_kwarg=tick_kwarg)
    return CronSchedule(expression, event_id, args, kwargs, **options)


def unique_schedules(schedules: Iterable[CronSchedule]) -> tuple[CronSchedule, ...]:
    """The schedules, each once; two different schedules under one name are an error."""
    by_name: dict[str, CronSchedule] = {}
    for schedule in schedules:
        if not isinstance(schedule, CronSchedule):
            raise CronConfigError(f"{schedule!r} is not a cron schedule; make one with taskemit.cron(...)")
        seen = by_name.setdefault(schedule.name, schedule)
        if seen != schedule:
            raise CronConfigError(
                f"two different cron schedules are named {schedule.name!r} (event {schedule.event_id!r}); "
                'give one of them name="..."'
            )
    return tuple(by_name.values())
