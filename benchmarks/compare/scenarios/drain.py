"""drain: N jobs stored with no worker running, then one worker process runs them all.

jobs/s is counted from the first job seen done to the last (worker start-up and imports
excluded); taskemit stores N/3 events of 3 listeners, the others N jobs over 3 tasks.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.compare.scenarios.common import QUEUE, Context, drain_rate, running_workers, wait_done
from benchmarks.compare.systems.base import System

NAME = "drain"
TITLE = "drain: jobs/s, N jobs queued before one worker process starts"
UNIT = "jobs/s"
HIGHER_IS_BETTER = True
SYSTEMS = None  # all


def jobs(quick: bool) -> int:
    # a multiple of 3: N/3 events of 3 listeners (or N jobs over 3 tasks) are exactly N jobs, so
    # the run ends when the last is done instead of at its time limit
    return 3_000 if quick else 9_999


def rounds(quick: bool) -> int:
    return 1 if quick else 3


async def drain(ctx: Context, system: System, processes: int) -> dict[str, Any]:
    """Fill, start ``processes`` workers, time them; a run past its time limit reports the part done."""
    total = jobs(ctx.quick)
    timeout = 40.0 if ctx.quick else 150.0
    await system.fill(ctx.url, QUEUE, total, 3)
    async with running_workers(ctx, system, processes, warm_up=False) as workers:
        started = time.perf_counter()
        progress = await wait_done(ctx, total, timeout, workers)
    rate = drain_rate(progress, total, timeout)
    assert progress.last_at is not None  # else drain_rate raised
    return {**rate, "seconds_from_worker_start": progress.last_at - started}


async def run(ctx: Context, system: System) -> dict[str, Any]:
    return await drain(ctx, system, processes=1)
