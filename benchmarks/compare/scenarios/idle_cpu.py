"""idle_cpu: CPU time of an idle worker (its process tree, all threads), in % of one core.

The worker starts, runs a few warm-up jobs, idles 2 s, then its user+system CPU time is
measured over a window (5 s; quick: 3 s) with nothing queued.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.compare.scenarios.common import Context, running_workers
from benchmarks.compare.systems.base import System

NAME = "idle_cpu"
TITLE = "idle_cpu: % of one core used by an idle worker (lower is better)"
UNIT = "% core"
HIGHER_IS_BETTER = False
SYSTEMS = None


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
    return {"value": 100 * (cpu_after - cpu_before) / elapsed, "window_s": elapsed}
