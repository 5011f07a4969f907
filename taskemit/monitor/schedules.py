"""Cron schedules as Redis knows them: what each one is, when it fires, which schedulers run it.

Every scheduler registers the schedules it runs (``schedule/registry.py``), so this module
needs neither the app's code nor croniter:

- ``{ns}:cron:schedule:<name>``, a hash per schedule: ``event``, ``expression``, ``tz``,
  ``misfire``, ``max_lateness``, ``next_fire`` and ``updated_at`` (epoch seconds), rewritten
  by each scheduler that runs it every few seconds and at each fire. It expires a day after
  the last scheduler that ran the schedule stopped: until then the schedule is listed with
  ``schedulers == 0`` (no live scheduler), then it is forgotten. ``{ns}:cron:schedules``
  indexes the names.
- ``{ns}:cron:scheduler:<id>``, a hash per live scheduler (``host``, ``pid``, ``started``,
  ``last_seen``, ``schedules``: a JSON list of names) that expires unless renewed; a schedule's
  ``schedulers`` count is the live schedulers whose list names it. ``{ns}:cron:schedulers``
  indexes the ids.
- The state operators change lives beside it: ``{ns}:cron:paused``, ``{ns}:cron:resumed``,
  and ``{ns}:cron:fired`` (the last tick emitted, written by the schedulers).

``trigger_schedule`` asks the live schedulers to fire a schedule now: it stores a request in
``{ns}:cron:triggers`` and wakes them on ``{ns}:cron:wake``; one of them takes the request
and publishes the event through ``Emitter.publish_once`` under ``trigger_once_key``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

from ..errors import NoLiveScheduler, ScheduleNotFound
from ..store.keys import ONCE_NAMESPACE, KeySpace, random_uuid
from ..store.wire import as_text

__all__ = (
    "ScheduleView",
    "get_schedule",
    "list_schedules",
    "pause_schedule",
    "resume_schedule",
    "trigger_event_uuid",
    "trigger_once_key",
    "trigger_schedule",
)


def _number(value: bytes | str | float | None) -> float | None:
    if value is None or value == b"" or value == "":
        return None
    return float(as_text(value) if isinstance(value, bytes | str) else value)


def _moment(value: bytes | str | float | None) -> dt.datetime | None:
    epoch = _number(value)
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)


@dataclass(frozen=True)
class ScheduleView:
    """One cron schedule as its schedulers registered it, with its state.

    Times are aware UTC datetimes. ``next_fire`` is the next tick the schedulers wait for
    (also while paused: a paused schedule skips it). ``last_fired`` is the last scheduled
    tick emitted (a trigger does not move it). ``schedulers`` counts the live schedulers that
    run the schedule: 0 means no live scheduler, and nothing fires it. ``updated_at`` is when
    a scheduler last refreshed the entry.
    """

    name: str
    event: str
    expression: str
    tz: str
    misfire: str
    max_lateness: float | None
    paused: bool
    paused_at: dt.datetime | None
    last_fired: dt.datetime | None
    next_fire: dt.datetime | None
    schedulers: int
    updated_at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values: datetimes as ISO 8601 strings."""
        data: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            data[item.name] = value.isoformat() if isinstance(value, dt.datetime) else value
        return data


def _view(
    name: str, definition: dict[Any, Any], paused: bytes | str | None, fired: float | None, schedulers: int
) -> ScheduleView | None:
    if not definition:
        return None  # never registered, or forgotten
    entry = {as_text(key): as_text(value) for key, value in definition.items()}
    return ScheduleView(
        name=name,
        event=entry.get("event", ""),
        expression=entry.get("expression", ""),
        tz=entry.get("tz", "UTC"),
        misfire=entry.get("misfire", ""),
        max_lateness=_number(entry.get("max_lateness")),
        paused=paused is not None,
        paused_at=_moment(paused),
        last_fired=_moment(fired),
        next_fire=_moment(entry.get("next_fire")),
        schedulers=schedulers,
        updated_at=_moment(entry.get("updated_at")),
    )


def _served(replies: list[Any]) -> Counter[str]:
    """How many live schedulers run each schedule, from their ``schedules`` fields (None: expired)."""
    counts: Counter[str] = Counter()
    for raw in replies:
        if raw is not None:
            counts.update(set(json.loads(as_text(raw))))
    return counts


async def list_schedules(redis: Any, *, space: KeySpace) -> list[ScheduleView]:
    """Every registered schedule, sorted by name; two round trips."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrange(space.cron_schedules, 0, -1)
        pipe.zrange(space.cron_schedulers, 0, -1)
        pipe.hgetall(space.cron_paused)
        pipe.zrange(space.cron_fired, 0, -1, withscores=True)
        names_raw, ids_raw, paused_raw, fired_raw = await pipe.execute()
    names = sorted(as_text(name) for name in names_raw)
    ids = [as_text(scheduler_id) for scheduler_id in ids_raw]
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(space.cron_schedule(name))
        for scheduler_id in ids:
            pipe.hget(space.cron_scheduler(scheduler_id), "schedules")
        replies = await pipe.execute()
    paused = {as_text(name): value for name, value in paused_raw.items()}
    fired = {as_text(name): float(score) for name, score in fired_raw}
    counts = _served(replies[len(names) :])
    views = (
        _view(name, definition, paused.get(name), fired.get(name), counts[name])
        for name, definition in zip(names, replies[: len(names)], strict=True)
    )
    return [view for view in views if view is not None]


async def get_schedule(redis: Any, name: str, *, space: KeySpace) -> ScheduleView | None:
    """The registered schedule ``name``, or None if no scheduler registered it (or it was forgotten)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(space.cron_schedule(name))
        pipe.zrange(space.cron_schedulers, 0, -1)
        pipe.hget(space.cron_paused, name)
        pipe.zscore(space.cron_fired, name)
        definition, ids_raw, paused, fired = await pipe.execute()
    if not definition:
        return None
    async with redis.pipeline(transaction=False) as pipe:
        for scheduler_id in ids_raw:
            pipe.hget(space.cron_scheduler(as_text(scheduler_id)), "schedules")
        replies = await pipe.execute()
    return _view(name, definition, paused, fired, _served(replies)[name])


async def pause_schedule(redis: Any, name: str, *, now: float | None = None, space: KeySpace) -> bool:
    """Stop every scheduler from emitting ``name``'s ticks; False if it was paused already.

    It does not check that ``name`` is registered (a schedule may be paused before it first
    runs); ``get_schedule`` does.
    """
    stamp = time.time() if now is None else now
    return bool(await redis.hsetnx(space.cron_paused, name, repr(stamp)))


async def resume_schedule(redis: Any, name: str, *, now: float | None = None, space: KeySpace) -> bool:
    """Let schedulers emit ``name`` again from now on (paused ticks are never caught up).

    Returns False if it was not paused.
    """
    stamp = time.time() if now is None else now
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(space.cron_paused, name)
        pipe.zadd(space.cron_resumed, {name: stamp}, gt=True)
        removed, _ = await pipe.execute()
    return bool(removed)


def trigger_once_key(request_id: str) -> str:
    """The ``publish_once`` key a trigger's event is published under: one event per request."""
    return f"trigger:{request_id}"


def trigger_event_uuid(request_id: str) -> str:
    """The uuid the event of trigger ``request_id`` gets (``taskemit status`` looks it up)."""
    return str(uuid.uuid5(ONCE_NAMESPACE, trigger_once_key(request_id)))


async def trigger_schedule(redis: Any, name: str, *, space: KeySpace) -> str:
    """Fire schedule ``name`` now, once, as its schedulers would; returns the request id.

    A live scheduler that runs the schedule takes the request (one of them, however many
    run it) and publishes the schedule's event with its arguments through
    ``Emitter.publish_once(trigger_once_key(request_id), ...)``; the event's uuid is
    ``trigger_event_uuid(request_id)``. A trigger fires a paused schedule too, and does not
    move ``last_fired``. With ``tick_kwarg``, listeners get the time of the request as the tick.

    Raises ``ScheduleNotFound`` if no scheduler registered ``name``, and ``NoLiveScheduler``
    if none that runs it is live: nothing is requested then. A request stored while a
    scheduler was live waits for one that runs the schedule if they all stop before taking
    it, and is dropped (with a warning in that scheduler's log) once it is ``max_lateness``
    seconds old.
    """
    view = await get_schedule(redis, name, space=space)
    if view is None:
        raise ScheduleNotFound(name)
    if not view.schedulers:
        raise NoLiveScheduler(name)
    request_id = random_uuid()
    request = json.dumps({"name": name, "requested_at": time.time()})
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(space.cron_triggers, request_id, request)
        pipe.publish(space.cron_wake, name)
        await pipe.execute()
    return request_id
