"""streaq's benchmark tasks a, b, c, d; ``streaq run benchmarks.compare.apps.streaq_app:worker`` (concurrency 100)."""

from __future__ import annotations

import os

from streaq import Worker

from benchmarks.compare import probe

CONCURRENCY = 100

worker: Worker = Worker(
    redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"),
    queue_name=os.environ.get("BENCH_QUEUE", "default"),
    concurrency=CONCURRENCY,
)


@worker.task()
async def a(n: int, t: float) -> None:
    probe.hit(t)


@worker.task()
async def b(n: int, t: float) -> None:
    probe.hit(t)


@worker.task()
async def c(n: int, t: float) -> None:
    probe.hit(t)


@worker.task()
async def d(n: int, t: float) -> None:
    probe.hit(t)
