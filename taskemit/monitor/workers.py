"""Reading worker heartbeats: the live workers, what they run, when they were last seen.

Workers write a hash per worker that expires unless renewed, and a sorted set of worker
ids by last-seen time (``engine/heartbeat.py``). A worker is live while its hash exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..store.keys import KeySpace

__all__ = ("WorkerInfo", "live_workers")


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
