"""taskiq's benchmark tasks a, b, c, d on a RedisStreamBroker (acknowledged delivery, no result backend).

Runs in benchmarks/.venv-taskiq: ``taskiq worker benchmarks.compare.apps.taskiq_app:broker --workers 1``.
"""

from __future__ import annotations

import os

from taskiq_redis import RedisStreamBroker

from benchmarks.compare import probe

broker = RedisStreamBroker(
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"), queue_name=os.environ.get("BENCH_QUEUE", "taskiq")
)


@broker.task(task_name="a")
async def a(n: int, t: float) -> None:
    probe.hit(t)


@broker.task(task_name="b")
async def b(n: int, t: float) -> None:
    probe.hit(t)


@broker.task(task_name="c")
async def c(n: int, t: float) -> None:
    probe.hit(t)


@broker.task(task_name="d")
async def d(n: int, t: float) -> None:
    probe.hit(t)


TASKS = {"a": a, "b": b, "c": c, "d": d}
