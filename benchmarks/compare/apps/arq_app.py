"""arq's benchmark tasks a, b, c, d; ``arq benchmarks.compare.apps.arq_app.WorkerSettings``.

Tuned as arq's docs allow: max_jobs=100, poll_delay=0.01, keep_result=0 (no result kept).
"""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings

from benchmarks.compare import probe

SETTINGS = {"max_jobs": 100, "poll_delay": 0.01, "keep_result": 0}


async def a(ctx: dict[str, Any], n: int, t: float) -> None:
    probe.hit(t)


async def b(ctx: dict[str, Any], n: int, t: float) -> None:
    probe.hit(t)


async def c(ctx: dict[str, Any], n: int, t: float) -> None:
    probe.hit(t)


async def d(ctx: dict[str, Any], n: int, t: float) -> None:
    probe.hit(t)


class WorkerSettings:
    functions = (a, b, c, d)
    redis_settings = RedisSettings.from_dsn(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"))
    queue_name = os.environ.get("BENCH_QUEUE", "arq:queue")
    max_jobs = SETTINGS["max_jobs"]
    poll_delay = SETTINGS["poll_delay"]
    keep_result = SETTINGS["keep_result"]
