"""scaling: drain with 2 worker processes against 1 (taskemit, with arq for reference).

Value: rate(2 processes) / rate(1 process); both rates are kept. taskemit runs
``taskemit worker --processes 2``; arq two ``arq`` processes.
"""

from __future__ import annotations

from typing import Any

from benchmarks.compare.scenarios.common import Context
from benchmarks.compare.scenarios.drain import drain
from benchmarks.compare.systems.base import System

NAME = "scaling"
TITLE = "scaling: drain jobs/s with 2 worker processes / with 1"
UNIT = "x (2p/1p)"
HIGHER_IS_BETTER = True
SYSTEMS = ("taskemit", "arq")


def rounds(quick: bool) -> int:
    return 1 if quick else 2


async def run(ctx: Context, system: System) -> dict[str, Any]:
    one = await drain(ctx, system, processes=1)
    await ctx.reset()
    two = await drain(ctx, system, processes=2)
    return {
        "value": two["value"] / one["value"],
        "one_process": one,
        "two_processes": two,
        "partial": one["partial"] or two["partial"],
        "detail": f"{one['value']:,.0f} -> {two['value']:,.0f} jobs/s",
    }
