"""A time zone's UTC offset at an instant, and the instants where it changes (DST and the like).

Pure: instants come in as aware datetimes (or epoch seconds). Cron schedules use this to map
local wall times to instants across clock changes.
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

__all__ = ("offset_change_after", "offset_change_at_or_before", "utc_offset")

_UTC = dt.UTC


def utc_offset(zone: ZoneInfo, moment: dt.datetime | int) -> dt.timedelta:
    """The zone's offset from UTC at ``moment`` (an aware datetime or epoch seconds)."""
    if isinstance(moment, int):
        moment = dt.datetime.fromtimestamp(moment, _UTC)
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def offset_change_after(zone: ZoneInfo, moment: dt.datetime, within: dt.timedelta) -> dt.datetime | None:
    """The first instant in ``(moment, moment + within]`` where the offset changes, if any.

    Assumes at most one change in that stretch (true of real zones for ``within`` of hours).
    """
    offset = utc_offset(zone, moment)
    low, high = math.floor(moment.timestamp()), math.ceil((moment + within).timestamp())
    if utc_offset(zone, high) == offset:
        return None
    while high - low > 1:  # bisect to the second
        middle = (low + high) // 2
        low, high = (middle, high) if utc_offset(zone, middle) == offset else (low, middle)
    return dt.datetime.fromtimestamp(high, _UTC)


def offset_change_at_or_before(
    zone: ZoneInfo, moment: dt.datetime, within: dt.timedelta
) -> tuple[dt.datetime, dt.timedelta] | None:
    """The latest instant in ``(moment - within, moment]`` where the offset changed, and the offset before it."""
    offset = utc_offset(zone, moment)
    low, high = math.floor((moment - within).timestamp()), math.floor(moment.timestamp())
    if utc_offset(zone, low) == offset:
        return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if utc_offset(zone, middle) == offset else (middle, high)
    return dt.datetime.fromtimestamp(high, _UTC), utc_offset(zone, low)
