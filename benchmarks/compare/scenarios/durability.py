"""durability: what each durability level costs the producer, with one local replica.

The same loop as the emit scenario (``Emitter.emit`` of events with 3 listeners each, the last one
published) at ``durability = "memory"``, ``"replicated"`` (a WAIT for the replica after every
batch) and ``"fsync"`` (WAITAOF, when the server has it: 7.2 or newer, with ``appendonly yes`` and
``appendfsync always``). A replica of the benchmark's redis-server runs during every variant, so
each pays for replication alike. The variants run back to back in each round, in turns.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.compare.machine import newest_redis_server, server_version
from benchmarks.compare.scenarios.common import QUEUE, Context
from benchmarks.compare.systems.taskemit import EVENTS, LISTENERS
from taskemit import Emitter, load_settings
from taskemit.store.redis_server import RedisServer

NAME = "durability"
TITLE = "durability: jobs stored per second by the producer at each level (one local replica)"
UNIT = "jobs/s"
HIGHER_IS_BETTER = True
SYSTEMS = ("taskemit",)
#: "taskemit" is the default level, memory: the others' cost is the ratio to it
VARIANTS = ("taskemit", "taskemit-replicated", "taskemit-fsync")
_LEVELS = {"taskemit": "memory", "taskemit-replicated": "replicated", "taskemit-fsync": "fsync"}


def events(quick: bool) -> int:
    return 2_000 if quick else 10_000


def rounds(quick: bool) -> int:
    return 3 if quick else 5


async def _emit(url: str, level: str, count: int) -> float:
    settings = load_settings(
        redis_url=url, queue_name=QUEUE, durability=level, min_replicas=1, emit_buffer_size=200_000, spool=False
    )
    async with Emitter(list(LISTENERS), settings) as emitter:
        await emitter.publish(EVENTS[3], n=-1, t=0.0)  # connected, scripts loaded
        started = time.perf_counter()
        for n in range(count - 1):
            emitter.emit(EVENTS[3], n=n, t=0.0)
        await emitter.publish(EVENTS[3], n=count, t=0.0)  # FIFO: everything before is stored, and durable
        return time.perf_counter() - started


async def run(ctx: Context, variant: str) -> dict[str, Any]:
    level = _LEVELS[variant]
    port = int(ctx.url.rsplit(":", 1)[1].split("/")[0])
    binary = newest_redis_server()
    if level == "fsync":
        if binary is None or server_version(binary) < (7, 2):
            raise RuntimeError("fsync needs WAITAOF: a redis-server 7.2 or newer")
        await ctx.redis.config_set("appendonly", "yes")
        await ctx.redis.config_set("appendfsync", "always")
    replica = RedisServer(binary=binary, extra_args=["--replicaof", "127.0.0.1", str(port)]).start()
    try:
        while (await ctx.redis.info("replication")).get("slave0", {}).get("state") != "online":
            time.sleep(0.05)
        count = events(ctx.quick)
        seconds = await _emit(ctx.url, level, count)
    finally:
        replica.__exit__(None, None, None)
        if level == "fsync":
            await ctx.redis.config_set("appendonly", "no")
    jobs = 3 * count
    return {"value": jobs / seconds, "jobs": jobs, "seconds": seconds, "detail": f"durability={level}"}
