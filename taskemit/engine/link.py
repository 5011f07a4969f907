"""The worker's link to Redis: noticing outages, backing off, and the wake channel.

Redis going away never stops a worker: every call that finds it unreachable reports to a
:class:`RedisLink`, which logs once when Redis goes and once when it is back (with how long it
was away, which the heartbeat then shows), and says how long to wait before the next try.
``listen_for_work`` keeps a pub/sub subscription to the wake channels, resubscribing after a
lost connection; ``listen_for_queues`` does so for a worker's queues (on a Redis Cluster, a
subscription per queue tag).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import redact_url
from ..store.connection import raise_if_cancelled
from ..store.faults import RedisNotReady
from ..store.keys import KeySpace

__all__ = ("REDIS_DOWN", "RedisLink", "listen_for_queues", "listen_for_work")

logger = logging.getLogger("taskemit.worker")

#: what Redis being away looks like from redis-py, and a reply that says "not now" (out of
#: memory, loading, no longer the primary: ``store/faults.py``)
REDIS_DOWN: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError, RedisNotReady)
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0
#: seconds between checks that the wake channel's subscription is alive
_CHECK_EVERY = 2.0


class RedisLink:
    """The worker's view of its Redis connection: up or down since when, and the last outage."""

    def __init__(self, url: str) -> None:
        self.url = redact_url(url)
        self.down_since: float | None = None
        self.outages = 0
        self.last_outage: dict[str, float] | None = None
        self.delay = _BACKOFF_FIRST

    def down(self, exc: BaseException) -> float:
        """Note a failed call; returns how long to wait before the next try."""
        if self.down_since is None:
            self.down_since = time.time()
            self.outages += 1
            logger.warning("Redis at %s is unavailable (%s); retrying with backoff", self.url, exc)
        delay, self.delay = self.delay, min(self.delay * 2, _BACKOFF_MAX)
        return delay

    def up(self) -> None:
        if self.down_since is not None:
            now = time.time()
            self.last_outage = {"start": self.down_since, "end": now, "seconds": round(now - self.down_since, 3)}
            logger.warning("Redis at %s is available again after %.1fs", self.url, now - self.down_since)
            self.down_since = None
        self.delay = _BACKOFF_FIRST


async def listen_for_work(
    redis: Any,
    channels: Sequence[str],
    names: Collection[bytes],
    wake: asyncio.Event,
    check_every: float = _CHECK_EVERY,
) -> None:
    """Set ``wake`` whenever an emit on ``channels`` queues a job of one of ``names``; runs until cancelled.

    The subscription is checked every ``check_every`` seconds (a PING on it): one that hears
    nothing back, not even the PONG, within as long again is dead (a half-open connection, a
    partition, a failover), and is made again.
    """
    if not channels:
        return
    wanted = frozenset(names)
    delay = _BACKOFF_FIRST
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*channels)
            delay = _BACKOFF_FIRST
            wake.set()  # anything emitted while not subscribed
            heard = pinged = time.monotonic()
            while True:
                raise_if_cancelled()
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=check_every)
                now = time.monotonic()
                if message is not None:
                    heard = now
                    data = message["data"]
                    if (
                        message["type"] in ("message", "smessage")  # smessage: sharded, on a cluster
                        and isinstance(data, bytes)
                        and not wanted.isdisjoint(data.split(b"\n"))
                    ):
                        wake.set()
                if now - pinged >= check_every:
                    if heard < pinged:  # the last PING got no answer
                        raise RedisConnectionError(f"the wake channel heard nothing for {now - pinged:.1f}s")
                    await pubsub.ping()
                    pinged = now
        except REDIS_DOWN as exc:
            logger.debug("wake channel lost (%s); resubscribing in %.2fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)
            wake.set()  # what was emitted meanwhile is claimed now
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


async def listen_for_queues(
    redis: Any, space: KeySpace, queues: Sequence[str], names: Collection[bytes], wake: asyncio.Event
) -> None:
    """``listen_for_work`` on the wake channels of ``queues``; runs until cancelled."""
    channels = [space.wake_channel(queue) for queue in queues]
    if not space.sharded:
        await listen_for_work(redis, channels, names, wake)
        return
    # on a Redis Cluster a queue's channel is on the node of its tag: a subscription per tag
    by_tag: dict[str, list[str]] = {}
    for channel in channels:
        by_tag.setdefault(space.space_of(channel).tag, []).append(channel)
    await asyncio.gather(*(listen_for_work(redis, group, names, wake) for group in by_tag.values()))
