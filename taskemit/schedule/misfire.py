"""Which ticks a scheduler emits when it wakes: the current one, and missed ones by policy.

Pure: the schedule, the last tick dealt with, ``now`` and when the scheduler started all
come in as arguments.
"""

from __future__ import annotations

import datetime as dt

from .cron import CronSchedule
from .ticks import as_utc

__all__ = ("plan_fires",)


def plan_fires(
    schedule: CronSchedule, *, after: dt.datetime, now: dt.datetime, running_since: dt.datetime
) -> tuple[dt.datetime, ...]:
    """The ticks in ``(after, now]`` a scheduler emits at ``now``, oldest first.

    ``after`` is the last tick already dealt with; ``running_since`` is when this scheduler
    started. The latest due tick is *current* if the scheduler was running when it came:
    it is emitted. Every other due tick was *missed* (no scheduler ran, or this one was held
    up past the next tick), and the misfire policy decides: "skip" emits none, "once" the
    latest, "all" each. No tick is emitted ``max_lateness`` seconds or more after its time.
    """
    now = as_utc(now)
    horizon = max(as_utc(after), now - dt.timedelta(seconds=schedule.max_lateness))
    latest = schedule.previous_fire(now, after=horizon)
    if latest is None:
        return ()
    current = latest if latest >= as_utc(running_since) else None
    missed_until = latest - dt.timedelta(microseconds=1) if current is not None else latest
    missed: tuple[dt.datetime, ...]
    if schedule.misfire == "skip":
        missed = ()
    elif schedule.misfire == "once":
        last_missed = schedule.previous_fire(missed_until, after=horizon)
        missed = () if last_missed is None else (last_missed,)
    else:
        missed = tuple(schedule.fires_between(horizon, missed_until))
    return missed if current is None else (*missed, current)
