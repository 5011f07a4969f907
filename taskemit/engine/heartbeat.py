"""Writing worker heartbeats: which workers are alive, what they run, when they were last seen;
and, with each heartbeat, the worker's listeners in the catalog (``monitor/catalog.py``).

taskemit's worker (``loop.Engine``) writes its heartbeat every ``HEARTBEAT_INTERVAL`` seconds:
a hash per worker (what it serves, what it runs, its counts and Redis outages) that expires
unless renewed, and a sorted set of worker ids by last-seen time. A worker is live while its
hash exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ..monitor.catalog import unregister_worker
from ..store.connection import raise_if_cancelled
from ..store.keys import KeySpace
from .limits import FlowDeclarations
from .link import REDIS_DOWN, RedisLink

__all__ = ("HEARTBEAT_INTERVAL", "beat", "new_worker_id", "remove_heartbeat", "write_heartbeat")

#: seconds between heartbeats; a worker is dead after missing three
HEARTBEAT_INTERVAL = 5.0
_FORGET_AFTER = 3600.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def write_heartbeat(
    redis: Any, space: KeySpace, worker_id: str, info: dict[str, Any], interval: float, now: float | None = None
) -> None:
    """Record that ``worker_id`` is alive, with ``info``; one round trip."""
    now = time.time() if now is None else now
    fields = {k: json.dumps(v) for k, v in {**info, "last_seen": now}.items()}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(space.worker(worker_id), mapping=fields)
        pipe.expire(space.worker(worker_id), max(1, int(interval * 3)))
        pipe.zadd(space.workers, {worker_id: now})
        pipe.zremrangebyscore(space.workers, "-inf", now - _FORGET_AFTER)
        await pipe.execute()


async def remove_heartbeat(redis: Any, space: KeySpace, worker_id: str, listeners: Sequence[str] = ()) -> None:
    """Forget a worker that stops cleanly, and its registrations in the listener catalog."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(space.worker(worker_id))
        pipe.zrem(space.workers, worker_id)
        await pipe.execute()
    await unregister_worker(redis, list(listeners), space=space, worker_id=worker_id)


async def beat(
    redis: Any,
    space: KeySpace,
    worker_id: str,
    info: Callable[[], dict[str, Any]],
    link: RedisLink,
    declarations: FlowDeclarations | None = None,
    catalog_retention: float = 86400,
    own_keys: Sequence[str] = (),
    own_keys_ttl: float = 86400,
) -> None:
    """Write ``info()`` as the heartbeat every HEARTBEAT_INTERVAL seconds and register the
    listeners of ``declarations`` (with their flow control) in the catalog as served by this
    worker for three heartbeats, until cancelled; a failed write is reported to ``link`` (the
    worker's RedisLink) and tried again next time. ``own_keys`` (its broadcast queue and sets) expire
    ``own_keys_ttl`` seconds after the last heartbeat: they go some time after a crash."""
    while True:
        raise_if_cancelled()
        try:
            await write_heartbeat(redis, space, worker_id, info(), HEARTBEAT_INTERVAL)
            if own_keys:
                async with redis.pipeline(transaction=False) as pipe:
                    for key in own_keys:
                        pipe.pexpire(key, int(own_keys_ttl * 1000))
                    await pipe.execute()
            if declarations is not None:
                await declarations.declare(redis, space, HEARTBEAT_INTERVAL * 3, catalog_retention)
            link.up()
        except REDIS_DOWN as exc:
            link.down(exc)
        await asyncio.sleep(HEARTBEAT_INTERVAL)
