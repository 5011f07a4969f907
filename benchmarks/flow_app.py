"""The listeners of ``python -m benchmarks.flow_limits``, for its worker processes and its fills.

``BENCH_FLOW`` picks the variant: ``plain`` (three no-op listeners of "ev3", as the drain
scenario of ``python -m benchmarks compare`` runs them), ``limit`` (the same with
``concurrency=10_000``: a limit that never binds), ``slots`` (one listener of "slow" that sleeps
``BENCH_SLEEP_MS`` and allows ``BENCH_SLOTS`` at once, recording when each run started and
ended on ``bench:runs``), ``unlimited`` (the same listener without a limit: its workers'
``--concurrency`` bounds it). ``WorkerSettings`` is built on access, from ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from redis import asyncio as aioredis

from benchmarks.compare import probe
from taskemit import Listener, listener, load_settings, worker_settings

RUNS_KEY = "bench:runs"
_runs: list[str] = []
_flusher: asyncio.Task[None] | None = None


async def _hit(n: int, t: float) -> None:
    probe.hit(t)


async def _slow(n: int) -> None:
    """Sleeps, and leaves its start and end to a flusher task (the listener holds its slot for
    the sleep alone, not for a round trip of its own)."""
    global _flusher
    started = time.time()
    await asyncio.sleep(int(os.environ.get("BENCH_SLEEP_MS", "20")) / 1000)
    _runs.append(f"{started:.6f}:{time.time():.6f}")
    if _flusher is None:
        _flusher = asyncio.get_running_loop().create_task(_flush_runs())


async def _flush_runs() -> None:
    redis = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    while True:
        await asyncio.sleep(0.05)
        if _runs:
            batch = _runs[:]
            del _runs[:]
            await redis.rpush(RUNS_KEY, *batch)


def listeners(variant: str) -> list[Listener]:
    """The variant's listeners (names of their own, so that no two variants share a flow record)."""
    if variant == "slots":
        slots = int(os.environ.get("BENCH_SLOTS", "8"))
        return [listener("slow", name="slots:slow", concurrency=slots)(_slow)]
    if variant == "unlimited":
        return [listener("slow", name="unlimited:slow")(_slow)]
    options: dict[str, Any] = {"concurrency": 10_000} if variant == "limit" else {}
    return [listener("ev3", name=f"{variant}:{letter}", **options)(_hit) for letter in "abc"]


def settings(url: str) -> Any:
    return load_settings(redis_url=url, emit_buffer_size=200_000)


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        url = os.environ["BENCH_REDIS_URL"]
        return worker_settings(listeners(os.environ["BENCH_FLOW"]), settings=settings(url))
    raise AttributeError(name)
