"""What one emit costs the emitting process, in CPU time: preparing it, and storing it in batches.

    python -m benchmarks.profile.emit_cost

Starts a private redis-server and prints, per event: the CPU microseconds
``emit`` spends before returning (checking the arguments, encoding the job, buffering it), and
the CPU microseconds of storing it with batches of 1, 3, 10 and 30 events (packing, the socket,
reading the replies; Redis's own time is not counted: it is another process). A web app that
emits once per request pays both; its batches grow with its load. Last, Redis's own time per
event in ``emit.lua`` (``INFO commandstats``), in batches of 20.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.compare.machine import newest_redis_server
from taskemit import Emitter, listener, load_settings
from taskemit.store.redis_server import RedisServer


@listener("ev1")
async def handler(n: int, t: float) -> None:
    """The benchmark's one-listener event (the web scenario's)."""


async def measure(url: str) -> None:
    settings = load_settings(redis_url=url, emit_buffer_size=200_000, spool=False)
    async with Emitter([handler], settings) as emitter:
        count = 20_000
        started = time.process_time()
        for _ in range(count):
            emitter._prepare("ev1", (), {"n": 1, "t": 0.0})
        per_event = (time.process_time() - started) / count * 1e6
        print(f"prepare (emit before it returns): {per_event:6.1f} us CPU per event")
        assert emitter._writer is not None
        for size in (1, 3, 10, 30):
            batch = [emitter._prepare("ev1", (), {"n": 1, "t": 0.0}) for _ in range(size)]
            rounds = max(100, 6000 // size)
            started = time.process_time()
            for _ in range(rounds):
                await emitter._writer.store(batch)
            per_event = (time.process_time() - started) / (rounds * size) * 1e6
            print(f"store, batches of {size:2d}:             {per_event:6.1f} us CPU per event")
        # Redis's side: the time emit.lua takes per event (INFO commandstats), batches of 20
        await emitter.redis.config_resetstat()
        count = 6000
        for n in range(count // 20):
            for _ in range(19):
                emitter.emit("ev1", n=n, t=0.0)
            await emitter.publish("ev1", n=n, t=0.0)
        stats = await emitter.redis.info("commandstats")
        print(f"Redis, emit.lua:                  {stats['cmdstat_evalsha']['usec'] / count:6.1f} us per event")


def main() -> None:
    with RedisServer(binary=newest_redis_server()) as server:
        asyncio.run(measure(server.url))


if __name__ == "__main__":
    main()
