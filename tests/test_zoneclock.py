"""UTC offset changes of a time zone, found to the second."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from taskemit.schedule.zoneclock import offset_change_after, offset_change_at_or_before, utc_offset

BERLIN = ZoneInfo("Europe/Berlin")
SIX_HOURS = dt.timedelta(hours=6)


def test_spring_forward_and_fall_back_in_berlin() -> None:
    before = dt.datetime(2026, 3, 29, 0, 0, tzinfo=dt.UTC)
    change = offset_change_after(BERLIN, before, SIX_HOURS)
    assert change == dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)  # 02:00 CET -> 03:00 CEST
    assert utc_offset(BERLIN, before) == dt.timedelta(hours=1)
    assert utc_offset(BERLIN, change) == dt.timedelta(hours=2)
    assert offset_change_at_or_before(BERLIN, change + dt.timedelta(hours=2), SIX_HOURS) == (
        change,
        dt.timedelta(hours=1),
    )
    autumn = offset_change_after(BERLIN, dt.datetime(2026, 10, 24, 23, 0, tzinfo=dt.UTC), SIX_HOURS)
    assert autumn == dt.datetime(2026, 10, 25, 1, 0, tzinfo=dt.UTC)  # 03:00 CEST -> 02:00 CET


def test_no_change_in_a_quiet_stretch() -> None:
    quiet = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
    assert offset_change_after(BERLIN, quiet, SIX_HOURS) is None
    assert offset_change_at_or_before(BERLIN, quiet, SIX_HOURS) is None
    assert offset_change_after(ZoneInfo("UTC"), quiet, SIX_HOURS) is None
