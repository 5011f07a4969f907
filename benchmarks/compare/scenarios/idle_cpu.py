"""idle_cpu: CPU time of an idle worker (its process tree, all threads), in % of one core.

The worker starts, runs a few warm-up jobs, idles 2 s, then its user+system CPU time is
measured over a window (5 s; quick: 3 s) with nothing queued. For taskemit a second window
follows with 1,000 jobs queued for a listener the worker does not have ("foreign" jobs: a
worker must leave them alone at no cost); the detail shows it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.compare.scenarios.common import QUEUE, Context, running_workers
from benchmarks.compare.systems.base import System

NAME = "idle_cpu"
TITLE = "idle_cpu: % of one core used by an idle worker (lower is better)"
UNIT = "% core"
HIGHER_IS_BETTER = False
SYSTEMS = None
FOREIGN_JOBS = 1000


def rounds(quick: bool) -> int:
    return 1 if quick else 2


async def run(ctx: Context, system: System) -> dict[str, Any]:
    window = 3.0 if ctx.quick else 5.0
    async with running_workers(ctx, system) as workers:
        await asyncio.sleep(2.0)
        workers.check_alive()
        cpu_before, start = workers.cpu_seconds(), time.perf_counter()
        await asyncio.sleep(window)
        cpu_after, elapsed = workers.cpu_seconds(), time.perf_counter() - start
        workers.check_alive()
        figures: dict[str, Any] = {"value": 100 * (cpu_after - cpu_before) / elapsed, "window_s": elapsed}
        queue_foreign = getattr(system, "queue_foreign", None)
        if queue_foreign is not None:
            await queue_foreign(ctx.url, QUEUE, FOREIGN_JOBS)
            await asyncio.sleep(1.0)
            cpu_before, start = workers.cpu_seconds(), time.perf_counter()
            await asyncio.sleep(window)
            foreign = 100 * (workers.cpu_seconds() - cpu_before) / (time.perf_counter() - start)
            workers.check_alive()
            figures["foreign_1k"] = foreign
            figures["detail"] = f"{foreign:.2f} with {FOREIGN_JOBS:,} foreign jobs queued"
    return figures
