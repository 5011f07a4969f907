"""Jobs stored per second: taskemit's emit against arq's enqueue_job, side by side.

Each event has two listeners, so every event is two arq jobs. Against one private
redis-server, in one process, it times:

- arq: a loop of ``await pool.enqueue_job(...)`` (two per event), as an app would write it;
- arq, concurrent: the same calls in ``asyncio.gather`` batches of 100 events;
- taskemit emit: ``emitter.emit(...)`` in a loop (batched by the flusher), until all are stored;
- taskemit publish: ``await emitter.publish(...)`` one event at a time.

Run:  python benchmarks/emit_throughput.py [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from arq import create_pool
from arq.connections import RedisSettings
from redis import asyncio as aioredis

from taskemit import Emitter, listener, load_settings
from taskemit.store.codec import get_codec
from taskemit.store.redis_server import RedisServer


@listener("user_created")
async def welcome(email: str) -> None: ...


@listener("user_created")
async def crm(email: str) -> None: ...


async def arq_loop(url: str, events: int) -> float:
    codec = get_codec("json")
    pool = await create_pool(RedisSettings.from_dsn(url), job_serializer=codec.dumps, default_queue_name="arq-loop")
    start = time.perf_counter()
    for n in range(events):
        await pool.enqueue_job(welcome.name, email=f"u{n}@example.com")
        await pool.enqueue_job(crm.name, email=f"u{n}@example.com")
    elapsed = time.perf_counter() - start
    await pool.aclose()
    return elapsed


async def arq_gather(url: str, events: int) -> float:
    codec = get_codec("json")
    pool = await create_pool(RedisSettings.from_dsn(url), job_serializer=codec.dumps, default_queue_name="arq-gather")
    start = time.perf_counter()
    for first in range(0, events, 100):
        calls = []
        for n in range(first, min(first + 100, events)):
            calls.append(pool.enqueue_job(welcome.name, email=f"u{n}@example.com"))
            calls.append(pool.enqueue_job(crm.name, email=f"u{n}@example.com"))
        await asyncio.gather(*calls)
    elapsed = time.perf_counter() - start
    await pool.aclose()
    return elapsed


async def taskemit_emit(url: str, events: int) -> float:
    settings = load_settings(redis_url=url, queue_name="te-emit", emit_buffer_size=max(10_000, events))
    async with Emitter([welcome, crm], settings) as emitter:
        start = time.perf_counter()
        for n in range(events - 1):
            emitter.emit("user_created", email=f"u{n}@example.com")
        await emitter.publish("user_created", email="last@example.com")  # FIFO: all before it are stored
        return time.perf_counter() - start


async def taskemit_publish(url: str, events: int) -> float:
    settings = load_settings(redis_url=url, queue_name="te-publish")
    async with Emitter([welcome, crm], settings) as emitter:
        start = time.perf_counter()
        for n in range(events):
            await emitter.publish("user_created", email=f"u{n}@example.com")
        return time.perf_counter() - start


async def main(events: int) -> None:
    with RedisServer() as server:
        results = {}
        for name, run in (
            ("arq enqueue_job loop", arq_loop),
            ("arq enqueue_job gather(100)", arq_gather),
            ("taskemit emit", taskemit_emit),
            ("taskemit publish (awaited each)", taskemit_publish),
        ):
            results[name] = await run(server.url, events)
        async with aioredis.Redis.from_url(server.url) as redis:
            for queue in ("arq-loop", "arq-gather", "te-emit", "te-publish"):
                assert await redis.zcard(queue) == 2 * events, queue
        baseline = 2 * events / results["arq enqueue_job loop"]
        print(f"{events:,} events x 2 listeners = {2 * events:,} jobs each run")
        for name, elapsed in results.items():
            rate = 2 * events / elapsed
            print(f"{name:<34} {elapsed:7.2f} s  {rate:10,.0f} jobs/s  {rate / baseline:6.1f}x arq loop")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().events))
