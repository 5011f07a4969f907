"""latency: emit -> listener start, at a steady 200 one-listener events per second.

The producer stamps time.time() into each job; the listener's probe records now - stamp.
Value: p50 in ms (p99 alongside). Workers are warmed up first.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.compare import probe
from benchmarks.compare.scenarios.common import QUEUE, Context, running_workers, wait_done
from benchmarks.compare.systems.base import System

NAME = "latency"
TITLE = "latency: emit -> listener start, ms at 200 events/s (lower is better)"
UNIT = "ms p50"
HIGHER_IS_BETTER = False
SYSTEMS = None
RATE = 200.0


def seconds(quick: bool) -> float:
    return 4.0 if quick else 10.0


def rounds(quick: bool) -> int:
    return 1 if quick else 2


async def run(ctx: Context, system: System) -> dict[str, Any]:
    async with running_workers(ctx, system) as workers:
        sent = await system.paced(ctx.url, QUEUE, RATE, seconds(ctx.quick))
        progress = await wait_done(ctx, sent, 20.0, workers)
    if progress.timed_out:
        raise TimeoutError(f"only {progress.count}/{sent} jobs ran")
    values = sorted(float(v) * 1000 for v in await ctx.redis.lrange(probe.LATENCY_KEY, 0, -1))
    if len(values) < sent:
        raise RuntimeError(f"{len(values)} latencies recorded for {sent} jobs")
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "value": cuts[49],
        "p50_ms": cuts[49],
        "p90_ms": cuts[89],
        "p99_ms": cuts[98],
        "max_ms": values[-1],
        "mean_ms": statistics.fmean(values),
        "events": sent,
        "detail": f"p99 {cuts[98]:.1f}",
    }
