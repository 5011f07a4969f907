"""SAQ's benchmark tasks a, b, c, d; ``saq benchmarks.compare.apps.saq_app.settings`` (concurrency 100)."""

from __future__ import annotations

import os
from typing import Any

from saq import Queue

from benchmarks.compare import probe

CONCURRENCY = 100


async def a(ctx: dict[str, Any], *, n: int, t: float) -> None:
    probe.hit(t)


async def b(ctx: dict[str, Any], *, n: int, t: float) -> None:
    probe.hit(t)


async def c(ctx: dict[str, Any], *, n: int, t: float) -> None:
    probe.hit(t)


async def d(ctx: dict[str, Any], *, n: int, t: float) -> None:
    probe.hit(t)


def settings() -> dict[str, Any]:
    queue = Queue.from_url(os.environ["BENCH_REDIS_URL"], name=os.environ["BENCH_QUEUE"])
    return {"queue": queue, "functions": [a, b, c, d], "concurrency": CONCURRENCY}
