"""scaling: drain with 2 worker processes against 1 (taskemit, with arq for reference).

Value: rate(2 processes) / rate(1 process); both rates are kept. taskemit runs
``taskemit worker --processes 2``; arq two ``arq`` processes.

Both rates are measured the same way, with every worker process running from the first job
to the last: the workers start and run a few warm-up jobs, and once all of them are idle
(start-up and imports done), they are paused (SIGSTOP) while the jobs are stored and resumed
together (SIGCONT). A drain that starts the processes onto a full queue would time the first
process alone while the second is still importing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.compare import probe
from benchmarks.compare.scenarios.common import (
    QUEUE,
    Context,
    drain_rate,
    redis_cpu_seconds,
    running_workers,
    wait_done,
)
from benchmarks.compare.systems.base import System

NAME = "scaling"
TITLE = "scaling: drain jobs/s with 2 worker processes / with 1"
UNIT = "x (2p/1p)"
HIGHER_IS_BETTER = True
SYSTEMS = ("taskemit", "arq")
SETTLE_TIMEOUT = 60.0


def jobs(quick: bool, system: str = "taskemit") -> int:
    """Jobs per drain: arq, there for reference, drains about a tenth as fast and gets a quarter
    of taskemit's jobs with ``--quick`` (a few seconds per drain, as taskemit's)."""
    if quick:
        return 12_000 if system == "taskemit" else 3_000
    return 30_000


def rounds(quick: bool) -> int:
    return 1 if quick else 2


async def paused_drain(ctx: Context, system: System, processes: int) -> dict[str, Any]:
    """Drain ``jobs`` jobs stored while ``processes`` started, idle workers were paused."""
    total = jobs(ctx.quick, system.name)
    timeout = 60.0 if ctx.quick else 150.0
    async with running_workers(ctx, system, processes, warm_up=True) as workers:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not await asyncio.to_thread(workers.settled):
            workers.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{processes} worker processes still busy after {SETTLE_TIMEOUT:.0f}s")
        workers.pause()
        try:
            await system.fill(ctx.url, QUEUE, total, 3)
            await ctx.redis.delete(probe.DONE_KEY, probe.LATENCY_KEY)
        finally:
            workers.resume()
        worker_cpu, redis_cpu = workers.cpu_seconds(), await redis_cpu_seconds(ctx)
        progress = await wait_done(ctx, total, timeout, workers)
        worker_cpu, redis_cpu = workers.cpu_seconds() - worker_cpu, await redis_cpu_seconds(ctx) - redis_cpu
    return {
        **drain_rate(progress, total, timeout),
        # CPU per job done: the worker processes' and redis-server's (which includes the probe)
        "worker_cpu_us_per_job": worker_cpu / progress.count * 1e6,
        "redis_cpu_us_per_job": redis_cpu / progress.count * 1e6,
    }


async def run(ctx: Context, system: System) -> dict[str, Any]:
    one = await paused_drain(ctx, system, processes=1)
    await ctx.reset()
    two = await paused_drain(ctx, system, processes=2)
    return {
        "value": two["value"] / one["value"],
        "one_process": one,
        "two_processes": two,
        "partial": one["partial"] or two["partial"],
        "detail": f"{one['value']:,.0f} -> {two['value']:,.0f} jobs/s; CPU per job, workers + Redis: "
        + " -> ".join(f"{r['worker_cpu_us_per_job']:.0f} + {r['redis_cpu_us_per_job']:.0f} us" for r in (one, two)),
    }
