"""Reading worker heartbeats: the live workers, what they run, when they were last seen.

Workers write a hash per worker that expires unless renewed, and a sorted set of worker
ids by last-seen time (``engine/heartbeat.py``). A worker is live while its hash exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..store.keys import KeySpace
from .catalog import read_catalog
from .flow import FlowState, flow_states
from .tags import queue_name_of, spaces_from

__all__ = ("ListenerView", "Waiting", "WorkerInfo", "listener_views", "live_workers", "waiting_listeners")


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker, from its last heartbeat."""

    worker_id: str
    host: str
    pid: int
    queue: str
    started: float
    last_seen: float
    jobs_running: int
    jobs_complete: int
    jobs_failed: int
    jobs_retried: int
    running: dict[str, int] = field(default_factory=dict)
    #: the listeners it runs and the queues it serves
    listeners: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    concurrency: int = 0
    #: times Redis was unreachable since it started, and the last such outage (start, end, seconds)
    outages: int = 0
    last_outage: dict[str, float] | None = None
    #: the longest its event loop was blocked between its last two heartbeats, seconds
    loop_lag: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


async def live_workers(redis: Any, queue: str | None = None, *, space: KeySpace) -> list[WorkerInfo]:
    """Workers whose heartbeat has not expired (of ``queue`` if given), most recently seen first."""
    ids = [i.decode() for i in await redis.zrevrange(space.workers, 0, -1)]
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id in ids:
            pipe.hgetall(space.worker(worker_id))
        replies = await pipe.execute()
    workers = []
    for worker_id, raw in zip(ids, replies, strict=True):
        if not raw:
            continue
        data = {k.decode(): json.loads(v) for k, v in raw.items()}
        queues = data.get("queues") or [data.get("queue", "")]
        if queue is not None and queue not in queues:
            continue
        workers.append(
            WorkerInfo(
                worker_id=worker_id,
                host=data.get("host", ""),
                pid=int(data.get("pid", 0)),
                queue=data.get("queue", ""),
                started=float(data.get("started", 0)),
                last_seen=float(data.get("last_seen", 0)),
                jobs_running=int(data.get("jobs_running", 0)),
                jobs_complete=int(data.get("jobs_complete", 0)),
                jobs_failed=int(data.get("jobs_failed", 0)),
                jobs_retried=int(data.get("jobs_retried", 0)),
                running=dict(data.get("running", {})),
                listeners=list(data.get("listeners", [])),
                queues=list(queues),
                concurrency=int(data.get("concurrency", 0)),
                outages=int(data.get("outages", 0)),
                last_outage=data.get("last_outage"),
                loop_lag=float(data.get("loop_lag", 0.0)),
            )
        )
    return workers


@dataclass(frozen=True, slots=True)
class Waiting:
    """Jobs of a listener that no live worker serves: they wait until one starts."""

    listener: str
    queue: str
    jobs: int

    def __str__(self) -> str:
        return f"waiting: no live worker serves listener {self.listener} ({self.jobs} jobs queued on {self.queue})"


async def waiting_listeners(redis: Any, *, space: KeySpace) -> list[Waiting]:
    """Listeners with queued jobs and no live worker that runs them."""
    return [
        Waiting(view.listener, view.queue, view.queued)
        for view in await listener_views(redis, space=space)
        if view.queued and not view.workers
    ]


@dataclass(frozen=True, slots=True)
class ListenerView:
    """One listener as operators see it: where its jobs go, how many wait, who runs them."""

    listener: str
    queue: str
    queued: int
    running: int
    workers: int
    dead: int
    #: from the listener catalog: its delivery mode and its events (ids or class paths)
    mode: str = "pool"
    events: tuple[str, ...] = ()
    #: its flow control (limits, what is used of them, what waits), when it declares any
    flow: FlowState | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["flow"] = self.flow.to_dict() if self.flow is not None else None
        return data


async def listener_views(redis: Any, *, space: KeySpace) -> list[ListenerView]:
    """Every listener emitters registered, live workers run or the catalog describes, sorted by
    name, with their flow control; four round trips plus one per live worker's heartbeat."""
    routes = {k.decode(): v.decode() for k, v in (await redis.hgetall(space.routes)).items()}
    workers = await live_workers(redis, space=space)
    catalog = await read_catalog(redis, space=space)
    for entry in catalog.values():  # described by the catalog (with the queue its workers serve)
        if entry.queue:
            routes.setdefault(entry.name, space.queue(entry.queue))
    for worker in workers:  # a listener no emitter has emitted to yet: its worker's queue
        for name in worker.listeners:
            if name not in routes and len(worker.queues) == 1:
                routes[name] = space.queue(worker.queues[0])
    names = sorted(routes)
    # a sharded listener (a Redis Cluster) has its jobs on each shard's tag of its queue
    queue_keys: dict[str, list[str]] = {}
    for name in names:
        shards = catalog[name].shards if name in catalog else 1
        queue_keys[name] = space.queue_shards(queue_name_of(space, routes[name]), shards)
    # a listener's dead letters: on its queues' tags
    spaces = spaces_from(space, [key for keys in queue_keys.values() for key in keys])
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            for queue_key in queue_keys[name]:
                pipe.zcard(space.ready(queue_key, name))
            for queue_space in spaces:
                pipe.zcard(queue_space.dead_by_listener(name))
        counts = [int(count) for count in await pipe.execute()]
    flows = await flow_states(
        redis, space=space, queues=routes, declared={name: entry.flow for name, entry in catalog.items()}
    )
    views = []
    at = 0
    for name in names:
        queued = sum(counts[at : at + len(queue_keys[name])])
        at += len(queue_keys[name])
        dead = sum(counts[at : at + len(spaces)])
        at += len(spaces)
        views.append(
            ListenerView(
                listener=name,
                queue=queue_name_of(space, routes[name]),
                queued=queued,
                running=sum(worker.running.get(name, 0) for worker in workers),
                workers=sum(name in worker.listeners for worker in workers),
                dead=dead,
                mode=catalog[name].mode if name in catalog else "pool",
                events=catalog[name].events if name in catalog else (),
                flow=flows.get(name),
            )
        )
    return views
