"""Worker heartbeats: which workers are alive, what they run, when they were last seen.

A ``TaskEmitWorker`` writes its heartbeat with arq's health check (every
``health_check_interval`` seconds): a hash per worker that expires unless renewed, and a
sorted set of worker ids by last-seen time. A worker is live while its hash exists.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import keys

__all__ = ("HEARTBEAT_INTERVAL", "WorkerInfo", "live_workers", "running_listeners", "write_heartbeat")

#: seconds between heartbeats; a worker is dead after missing three
HEARTBEAT_INTERVAL = 5.0
_FORGET_AFTER = 3600.0

#: listener name -> jobs of it running in this process (kept by the job function)
running_listeners: Counter[str] = Counter()


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

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def write_heartbeat(
    redis: Any, worker_id: str, info: dict[str, Any], interval: float, now: float | None = None
) -> None:
    """Record that ``worker_id`` is alive, with ``info``; one round trip."""
    now = time.time() if now is None else now
    fields = {k: json.dumps(v) for k, v in {**info, "last_seen": now}.items()}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.worker_key(worker_id), mapping=fields)
        pipe.expire(keys.worker_key(worker_id), max(1, int(interval * 3)))
        pipe.zadd(keys.WORKERS_INDEX, {worker_id: now})
        pipe.zremrangebyscore(keys.WORKERS_INDEX, "-inf", now - _FORGET_AFTER)
        await pipe.execute()


async def remove_heartbeat(redis: Any, worker_id: str) -> None:
    """Forget a worker that stops cleanly."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.worker_key(worker_id))
        pipe.zrem(keys.WORKERS_INDEX, worker_id)
        await pipe.execute()


async def live_workers(redis: Any, queue: str | None = None) -> list[WorkerInfo]:
    """Workers whose heartbeat has not expired (of ``queue`` if given), most recently seen first."""
    ids = [i.decode() for i in await redis.zrevrange(keys.WORKERS_INDEX, 0, -1)]
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id in ids:
            pipe.hgetall(keys.worker_key(worker_id))
        replies = await pipe.execute()
    workers = []
    for worker_id, raw in zip(ids, replies, strict=True):
        if not raw:
            continue
        data = {k.decode(): json.loads(v) for k, v in raw.items()}
        if queue is not None and data.get("queue") != queue:
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
            )
        )
    return workers
