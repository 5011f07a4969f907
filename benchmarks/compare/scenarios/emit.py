"""emit: producer throughput, jobs stored per second by one awaited call after the other.

taskemit: ``Emitter.emit`` in a loop (3 listeners per event, the last event published, so
the time covers every job being stored); the others: their enqueue call per job.
"""

from __future__ import annotations

from typing import Any

from benchmarks.compare.scenarios.common import QUEUE, Context
from benchmarks.compare.systems.base import System

NAME = "emit"
TITLE = "emit: jobs stored per second by the producer (no worker running)"
UNIT = "jobs/s"
HIGHER_IS_BETTER = True
SYSTEMS = None


def jobs(quick: bool) -> int:
    return 6_000 if quick else 30_000


def rounds(quick: bool) -> int:
    return 2 if quick else 3


async def run(ctx: Context, system: System) -> dict[str, Any]:
    total = jobs(ctx.quick)
    await system.emit_loop(ctx.url, QUEUE, 300, 3)  # warm-up: connections, scripts, imports
    await ctx.reset()
    seconds = await system.emit_loop(ctx.url, QUEUE, total, 3)
    return {"value": total / seconds, "jobs": total, "seconds": seconds}
