"""What the scenarios share: the run context, worker start-up, waiting on the probe counter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import asyncio as aioredis

from benchmarks.compare import probe
from benchmarks.compare.process import WorkerGroup
from benchmarks.compare.systems.base import ROOT, System

QUEUE = "bench:q"
POLL = 0.005  # seconds between reads of the done counter
WARMUP_JOBS = 6
WARMUP_TIMEOUT = 60.0  # worker start-up (imports) + a few jobs


@dataclass
class Context:
    url: str
    redis: aioredis.Redis
    quick: bool
    logs: Path
    run_id: str = ""

    async def reset(self) -> None:
        """An empty Redis for the next run (scripts and functions loaded by a system stay)."""
        await self.redis.flushall()


async def done_count(ctx: Context) -> int:
    return int(await ctx.redis.get(probe.DONE_KEY) or 0)


@dataclass
class Progress:
    """What wait_done saw: when the first and the last job were counted."""

    started: float  # perf_counter when waiting began
    first_at: float | None = None
    first_count: int = 0
    last_at: float | None = None
    count: int = 0
    timed_out: bool = False


def drain_rate(progress: Progress, total: int, timeout: float) -> dict[str, Any]:
    """jobs/s from the first job seen done to the last, with what was seen; a run past its
    time limit reports the part done (partial), one that saw too few jobs raises TimeoutError."""
    if progress.first_at is None or progress.last_at is None or progress.count <= progress.first_count:
        raise TimeoutError(f"{progress.count}/{total} jobs done in {timeout:.0f}s")
    return {
        "value": (progress.count - progress.first_count) / (progress.last_at - progress.first_at),
        "jobs": total,
        "done": progress.count,
        "partial": progress.timed_out,
        "seconds_from_first_job": progress.last_at - progress.first_at,
    }


async def wait_done(ctx: Context, target: int, timeout: float, workers: WorkerGroup) -> Progress:
    """Poll the done counter until it reaches ``target`` or ``timeout`` passes (then timed_out)."""
    progress = Progress(started=time.perf_counter())
    deadline = progress.started + timeout
    checked = progress.started
    while True:
        count = await done_count(ctx)
        now = time.perf_counter()
        if count and progress.first_at is None:
            progress.first_at, progress.first_count = now, count
        if count > progress.count:
            progress.count, progress.last_at = count, now
        if count >= target:
            return progress
        if now > deadline:
            progress.timed_out = True
            return progress
        if now - checked > 0.5:
            workers.check_alive()
            checked = now
        await asyncio.sleep(POLL)


@asynccontextmanager
async def running_workers(
    ctx: Context, system: System, processes: int = 1, warm_up: bool = True
) -> AsyncIterator[WorkerGroup]:
    """Start ``system``'s workers; with ``warm_up``, return once they ran a few jobs (counters reset)."""
    env = {"BENCH_REDIS_URL": ctx.url, "BENCH_QUEUE": QUEUE, **system.worker_env()}
    log = ctx.logs / f"{ctx.run_id or 'run'}-{system.name}.log"
    group = WorkerGroup(system.worker_commands(processes), env, ROOT, log)
    try:
        group.start()
        if warm_up:
            await system.fill(ctx.url, QUEUE, WARMUP_JOBS, 3)
            progress = await wait_done(ctx, WARMUP_JOBS, WARMUP_TIMEOUT, group)
            if progress.timed_out:
                raise TimeoutError(f"warm-up: {progress.count}/{WARMUP_JOBS} jobs done in {WARMUP_TIMEOUT:.0f}s")
            await asyncio.sleep(0.05)
            await ctx.redis.delete(probe.DONE_KEY, probe.LATENCY_KEY)
        yield group
    finally:
        await asyncio.to_thread(group.stop)


async def redis_cpu_seconds(ctx: Context) -> float:
    """redis-server's CPU time so far (user + system), from INFO."""
    info = await ctx.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
