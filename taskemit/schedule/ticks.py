"""When a cron expression fires: its ticks, as UTC instants, read off the wall clock of its time zone.

Pure: no Redis and no clock. Every time comes in as an argument (aware datetimes; results
are in UTC), so the property tests can hammer it. What a schedule is and how it is declared
is ``cron.py``; offset changes are ``zoneclock.py``.

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
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from ..errors import InvalidArgument
from .zoneclock import offset_change_after, offset_change_at_or_before, utc_offset

__all__ = ("TickNotFound", "Ticks", "as_utc")

_UTC = dt.UTC
#: no zone moves its clocks twice within this long, nor by as much: lookups work in stretches
#: of this length around each change of UTC offset
_NEAR = dt.timedelta(hours=6)
_SECOND = dt.timedelta(seconds=1)
_TINY = dt.timedelta(microseconds=1)
#: stretches of constant offset a lookup may cross before giving up; reached only by a bug
_MAX_STEPS = 1000


class TickNotFound(Exception):
    """No tick within ``_MAX_STEPS`` stretches of constant offset: reached only by a bug."""


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


class Ticks:
    """The ticks of one parsed cron expression (croniter's, at naive wall times) in one time zone."""

    __slots__ = ("_every_hour", "_template", "zone")

    def __init__(self, template: croniter, zone: ZoneInfo) -> None:
        self._template = template
        self.zone = zone
        self._every_hour = template.expanded[1] == ["*"]  # croniter puts hours second

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
        raise TickNotFound  # pragma: no cover

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
        raise TickNotFound  # pragma: no cover

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
