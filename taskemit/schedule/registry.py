"""A scheduler's entry in the schedule registry, and the trigger requests it takes.

Each scheduler registers, every ``REFRESH_INTERVAL`` seconds and at each fire, the schedules
it runs (definition and next tick) and itself (host, pid, the names of its schedules), so that
``taskemit.monitor.schedules`` and ``taskemit cron`` show them without the app's code. Its own
entry expires after three missed refreshes; a schedule's expires ``FORGET_AFTER`` seconds after
the last refresh, so a schedule whose schedulers are all gone is listed with no live scheduler
for a day, then forgotten. A scheduler that stops cleanly removes its own entry at once.

The same task takes trigger requests (``taskemit.monitor.trigger_schedule``) for the schedules
it runs: each request is taken by one scheduler (``SET NX`` on the request's lease) and
published through ``Emitter.publish_once``, so a taker that crashes before publishing leaves
the request to be taken again when its lease expires, and the event is still stored once.

Liveness and requests are in real time (``time.time()``, asyncio's sleep) whatever clock the
scheduler fires ticks on: they are for people watching the registry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis.exceptions import RedisError

from ..emit import Emitter
from ..monitor.schedules import trigger_once_key
from ..store.connection import raise_if_cancelled
from ..store.keys import KeySpace
from .cron import CronSchedule

__all__ = ("FORGET_AFTER", "REFRESH_INTERVAL", "TRIGGER_LEASE", "Registration", "new_scheduler_id")

logger = logging.getLogger("taskemit.scheduler")

#: seconds between two refreshes of a scheduler's entry; it is dead after missing three
REFRESH_INTERVAL = 5.0
#: seconds a schedule stays listed after its last scheduler stopped; also how long a trigger
#: request for a schedule no scheduler runs is kept
FORGET_AFTER = 86_400.0
#: seconds a taken trigger request stays with its taker; then another scheduler may take it
TRIGGER_LEASE = 30.0
#: schedulers not seen for this long leave the index of scheduler ids
_FORGET_SCHEDULER_AFTER = 3600.0


def new_scheduler_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _definition(schedule: CronSchedule, next_fire: dt.datetime | None, now: float) -> dict[str, str]:
    return {
        "event": schedule.event_id,
        "expression": schedule.expression,
        "tz": schedule.tz,
        "misfire": schedule.misfire,
        "max_lateness": repr(schedule.max_lateness),
        "next_fire": "" if next_fire is None else repr(next_fire.timestamp()),
        "updated_at": repr(now),
    }


class Registration:
    """One scheduler's registration of ``schedules``, and its handling of their trigger requests."""

    def __init__(self, schedules: Iterable[CronSchedule], space: KeySpace) -> None:
        self.id = new_scheduler_id()
        self.space = space
        self.schedules = {schedule.name: schedule for schedule in schedules}
        self.interval = REFRESH_INTERVAL
        self.started = time.time()

    def queue(self, pipe: Any, next_fires: Mapping[str, dt.datetime | None]) -> None:
        """Add the writes that register the schedules in ``next_fires`` and this scheduler to ``pipe``."""
        space, now = self.space, time.time()
        for name, next_fire in next_fires.items():
            pipe.hset(space.cron_schedule(name), mapping=_definition(self.schedules[name], next_fire, now))
            pipe.expire(space.cron_schedule(name), int(FORGET_AFTER))
            pipe.zadd(space.cron_schedules, {name: now})
        entry = {
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "started": repr(self.started),
            "last_seen": repr(now),
            "schedules": json.dumps(sorted(self.schedules)),
        }
        pipe.hset(space.cron_scheduler(self.id), mapping=entry)
        pipe.pexpire(space.cron_scheduler(self.id), max(1, int(self.interval * 3 * 1000)))
        pipe.zadd(space.cron_schedulers, {self.id: now})
        pipe.zremrangebyscore(space.cron_schedules, "-inf", now - FORGET_AFTER)
        pipe.zremrangebyscore(space.cron_schedulers, "-inf", now - _FORGET_SCHEDULER_AFTER)

    async def write(self, redis: Any, next_fires: Mapping[str, dt.datetime | None]) -> None:
        """Register the schedules and this scheduler; one round trip."""
        async with redis.pipeline(transaction=False) as pipe:
            self.queue(pipe, next_fires)
            await pipe.execute()

    async def remove(self, redis: Any) -> None:
        """Leave the registry (a clean stop): its schedules stay, without this scheduler."""
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.space.cron_scheduler(self.id))
            pipe.zrem(self.space.cron_schedulers, self.id)
            await pipe.execute()

    async def serve(
        self, redis: Any, emitter: Emitter, next_fires: Callable[[], Mapping[str, dt.datetime | None]]
    ) -> None:
        """Refresh the registration every ``interval`` seconds and take trigger requests as they come,
        until cancelled. The caller wrote the first registration."""
        loop = asyncio.get_running_loop()
        refreshed = loop.time()
        pubsub = redis.pubsub()
        try:
            while True:
                raise_if_cancelled()
                try:
                    if not pubsub.subscribed:
                        await pubsub.subscribe(self.space.cron_wake)
                    if loop.time() - refreshed >= self.interval:
                        await self.write(redis, next_fires())
                        refreshed = loop.time()
                    await self.take_triggers(redis, emitter)
                    wait = max(self.interval - (loop.time() - refreshed), 0.0)
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                except (RedisError, OSError) as exc:
                    logger.warning("cron scheduler: the schedule registry failed (%s); retrying", exc)
                    await asyncio.sleep(self.interval)
                except Exception:  # a bug here must not stop the registry for good
                    logger.exception("cron scheduler: the schedule registry failed; retrying")
                    await asyncio.sleep(self.interval)
        finally:
            await pubsub.aclose()

    async def take_triggers(self, redis: Any, emitter: Emitter) -> int:
        """Take the pending trigger requests of this scheduler's schedules and publish their events.

        Returns how many it published.
        """
        space, now = self.space, time.time()
        pending = await redis.hgetall(space.cron_triggers)
        mine: list[tuple[str, CronSchedule, float]] = []
        forget: list[str] = []
        for raw_id, raw in pending.items():
            request_id = raw_id.decode()
            try:
                request = json.loads(raw)
                name, requested_at = str(request["name"]), float(request["requested_at"])
            except (ValueError, KeyError, TypeError):
                logger.warning("cron scheduler: dropping malformed trigger request %s: %r", request_id, raw)
                forget.append(request_id)
                continue
            if name in self.schedules:
                mine.append((request_id, self.schedules[name], requested_at))
            elif now - requested_at > FORGET_AFTER:
                forget.append(request_id)  # its schedule is no longer run anywhere
        if forget:
            await redis.hdel(space.cron_triggers, *forget)
        if not mine:
            return 0
        async with redis.pipeline(transaction=False) as pipe:
            for request_id, _, _ in mine:
                pipe.set(space.cron_trigger_lease(request_id), self.id, nx=True, px=int(TRIGGER_LEASE * 1000))
            leases = await pipe.execute()
        published = 0
        for (request_id, schedule, requested_at), taken in zip(mine, leases, strict=True):
            if taken:
                published += await self._fire_trigger(redis, emitter, request_id, schedule, requested_at)
        return published

    async def _fire_trigger(
        self, redis: Any, emitter: Emitter, request_id: str, schedule: CronSchedule, requested_at: float
    ) -> int:
        late = time.time() - requested_at
        if late >= schedule.max_lateness:
            logger.warning(
                "cron schedule %r: dropping trigger %s, requested %.0fs ago (max_lateness is %gs)",
                schedule.name,
                request_id,
                late,
                schedule.max_lateness,
            )
            await redis.hdel(self.space.cron_triggers, request_id)
            return 0
        args, kwargs = schedule.arguments(dt.datetime.fromtimestamp(requested_at, dt.UTC))
        logger.info("cron schedule %r: took trigger %s; emitting %s", schedule.name, request_id, schedule.event_id)
        try:
            receipt = await emitter.publish_once(trigger_once_key(request_id), schedule.event_id, *args, **kwargs)
        except Exception:
            # the lease expires and the request is taken again; publish_once keeps it to one event
            logger.exception("cron schedule %r: emitting trigger %s failed", schedule.name, request_id)
            return 0
        # the lease stays until it expires: a scheduler that read the request before it was
        # removed cannot take it again
        await redis.hdel(self.space.cron_triggers, request_id)
        return 0 if receipt is None else 1
