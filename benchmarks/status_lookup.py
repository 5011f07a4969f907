"""How long `taskemit status` takes for one event when Redis holds many event records.

Looking one event up must stay O(listeners), whatever the history size: this stores N events
(default 100,000; two listeners each), then times event_status() and job_status() of an
old event and a recent one, and the first page of recent_events(), against a private
redis-server. Run:  python benchmarks/status_lookup.py [--events N] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis import asyncio as aioredis

from taskemit import Emitter, listener, load_settings
from taskemit.monitor import event_status, job_status, recent_events
from taskemit.store.redis_server import RedisServer


@listener("user_created")
async def welcome(email: str) -> None: ...


@listener("user_created")
async def crm(email: str) -> None: ...


async def timed(label: str, repeat: int, call: Callable[[], Awaitable[Any]]) -> None:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    p95 = sorted(samples)[int(0.95 * len(samples))]
    print(f"{label:<38} median {statistics.median(samples):7.3f} ms   p95 {p95:7.3f} ms")


async def main(events: int, repeat: int) -> None:
    with RedisServer() as server:
        settings = load_settings(redis_url=server.url, queue_name="bench")
        start = time.perf_counter()
        async with Emitter([welcome, crm], settings) as emitter:
            first = await emitter.publish("user_created", email="first@example.com")
            for n in range(events - 2):
                if n % 2000 == 1999:  # backpressure: wait until everything before is stored
                    await emitter.publish("user_created", email=f"u{n}@example.com")
                else:
                    emitter.emit("user_created", email=f"u{n}@example.com")
            last = await emitter.publish("user_created", email="last@example.com")
        stored = time.perf_counter() - start
        assert first is not None and last is not None
        async with aioredis.Redis.from_url(server.url) as redis:
            info = await redis.info("memory")
            print(
                f"stored {events:,} events ({2 * events:,} jobs) in {stored:.1f} s; "
                f"redis used_memory {info['used_memory_human']}, keys {await redis.dbsize():,}"
            )
            await timed("event_status(oldest event)", repeat, lambda: event_status(redis, settings, first.event_uuid))
            await timed("event_status(newest event)", repeat, lambda: event_status(redis, settings, last.event_uuid))
            job_id = next(iter(first.jobs.values()))
            await timed("job_status(job of the oldest event)", repeat, lambda: job_status(redis, settings, job_id))
            await timed(
                "recent_events(limit=20)", max(1, repeat // 10), lambda: recent_events(redis, settings, limit=20)
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.repeat))
