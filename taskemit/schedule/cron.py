"""Cron schedules: what a schedule is, how it is declared and checked, and what one tick emits.

Pure: no Redis and no clock. A schedule comes from :func:`cron` or a ``[[cron]]`` table in
settings; a wrong expression, time zone, option or event is a ``CronConfigError`` that names
the schedule. When it fires is ``ticks.py``; the firing loop is ``scheduler.py``; which due
ticks it emits after downtime is ``misfire.py``; offset changes are ``zoneclock.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from ..errors import TaskEmitError
from ..store.codec import META_KWARG
from .ticks import TickNotFound, Ticks, as_utc

__all__ = ("CronConfigError", "CronSchedule", "MisfirePolicy", "cron", "unique_schedules")

MisfirePolicy = Literal["skip", "once", "all"]
_POLICIES: tuple[str, ...] = get_args(MisfirePolicy)
DEFAULT_MISFIRE: MisfirePolicy = "once"
DEFAULT_MAX_LATENESS = 3600.0

_UTC = dt.UTC
#: the keys of a ``[[cron]]`` table besides schedule, event, args and kwargs: the options of cron()
_OPTIONS = ("tz", "name", "misfire", "max_lateness", "tick_kwarg")
_TABLE_KEYS = frozenset({"schedule", "event", "args", "kwargs", *_OPTIONS})


class CronConfigError(TaskEmitError, ValueError):
    """A cron schedule was declared wrongly (expression, time zone, options, or its event)."""


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


class CronSchedule:
    """Emit ``event_id`` with ``args`` and ``kwargs`` at each tick of a cron expression.

    Immutable. Create it with :func:`cron` (code) or ``[[cron]]`` tables in settings.toml;
    every error says which schedule is wrong. Ticks are returned as UTC datetimes.
    """

    __slots__ = (
        "_ticks",
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
        self._ticks = Ticks(self._parse(label), self.zone)
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
        try:
            return self._ticks.next_fire(after)
        except TickNotFound:  # pragma: no cover
            raise CronConfigError(f"cron schedule {self.name!r}: no next tick found after {after}") from None

    def previous_fire(self, at: dt.datetime, *, after: dt.datetime | None = None) -> dt.datetime | None:
        """The last tick at or before ``at`` (and strictly after ``after``, if given), in UTC."""
        try:
            return self._ticks.previous_fire(at, after=after)
        except TickNotFound:  # pragma: no cover
            raise CronConfigError(f"cron schedule {self.name!r}: no previous tick found before {at}") from None

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
