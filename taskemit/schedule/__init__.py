"""Events on a clock: cron schedules (pure: ``cron``), when they fire (``ticks``), misfire
planning (``misfire``), UTC offset changes (``zoneclock``), and the scheduler loop with its
state in Redis (``scheduler``).

Only the pure schedule model is imported here: settings validate ``[[cron]]`` tables with it.
"""

from __future__ import annotations

from .cron import CronConfigError, CronSchedule, cron

__all__ = ("CronConfigError", "CronSchedule", "cron")
