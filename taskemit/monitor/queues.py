"""Queue depth per queue: jobs waiting and due, waiting for a later time, and running.

Each listener has, on its queue, a ready set (jobs no worker holds, by run time) and a leased
set (jobs a worker holds, by lease expiry); see ``store/lua/claim.lua``. The depth of a queue
sums them over the listeners routed to it, in one pipelined round trip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..settings import Settings
from .catalog import read_catalog
from .tags import queue_name_of
from .workers import live_workers

__all__ = ("QueueView", "queue_depths")


@dataclass(frozen=True, slots=True)
class QueueView:
    """One queue: its jobs by state, its listeners, and the live workers serving it."""

    queue: str
    #: due and waiting for a worker
    queued: int
    #: claimed by a worker now
    running: int
    #: due later: deferred jobs and retries waiting out their backoff
    delayed: int
    listeners: int
    workers: int

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


async def queue_depths(redis: Any, settings: Settings, now: float | None = None) -> list[QueueView]:
    """Every queue that emitters routed a listener to, live workers serve, or the settings name,
    sorted by name (a sharded listener's jobs counted over its shards); four round trips whatever
    the number of queues and listeners (five on a Redis Cluster: the catalog says which listeners
    have shards)."""
    space = settings.keys
    routes = {k.decode(): v.decode() for k, v in (await redis.hgetall(space.routes)).items()}
    workers = await live_workers(redis, space=space)
    by_queue: dict[str, list[str]] = {settings.queue_key: []}
    for worker in workers:
        for name in worker.queues:
            by_queue.setdefault(space.queue(name), [])
    for listener, queue_key in sorted(routes.items()):
        by_queue.setdefault(queue_key, []).append(listener)
    # a sharded listener (a Redis Cluster) has its jobs on each shard's tag of its queue
    shards = {}
    if space.sharded:
        shards = {name: entry.shards for name, entry in (await read_catalog(redis, space=space)).items()}
    now_ms = (now if now is not None else time.time()) * 1000
    queues = sorted(by_queue)
    reads: dict[str, list[tuple[str, str]]] = {}  # queue key -> (a shard's queue key, listener) per set pair
    for queue_key in queues:
        name = queue_name_of(space, queue_key)
        reads[queue_key] = [
            (key, listener)
            for listener in by_queue[queue_key]
            for key in space.queue_shards(name, shards.get(listener, 1))
        ]
    async with redis.pipeline(transaction=False) as pipe:
        for queue_key in queues:
            for key, listener in reads[queue_key]:
                pipe.zcount(space.ready(key, listener), "-inf", now_ms)
                pipe.zcount(space.ready(key, listener), f"({now_ms}", "+inf")
                pipe.zcard(space.leased(key, listener))
        counts = [int(count) for count in await pipe.execute()]
    views = []
    n = 0
    for queue_key in queues:
        listeners = by_queue[queue_key]
        mine = counts[n : n + 3 * len(reads[queue_key])]
        n += 3 * len(reads[queue_key])
        name = queue_name_of(space, queue_key)
        views.append(
            QueueView(
                queue=name,
                queued=sum(mine[0::3]),
                running=sum(mine[2::3]),
                delayed=sum(mine[1::3]),
                listeners=len(listeners),
                workers=sum(name in worker.queues for worker in workers),
            )
        )
    return views
