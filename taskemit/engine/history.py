"""``HistoryRecorder``: a worker's tallies for the history, written once per ``history_interval``.

The worker hands every outcome it wrote to :meth:`HistoryRecorder.record` (in memory: no Redis
command per job). Its :meth:`~HistoryRecorder.run` task adds the tallies to the time buckets
every ``history_interval`` seconds in one script call, and samples queue depth and busy workers
when it takes the sampler key for that interval (``monitor/history.py``). A write that Redis
refuses is kept and added to the next; a worker that stops writes what it has left
(:meth:`~HistoryRecorder.flush`). A worker killed outright loses at most one interval's tallies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from ..monitor.history import Gauges, HistoryTally, claim_sample, sample_gauges, write_history
from ..settings import Settings
from ..state import JobState
from ..store.connection import raise_if_cancelled
from .batch import Finished
from .link import REDIS_DOWN, RedisLink
from .outcome import Outcome

__all__ = ("CTX_HISTORY", "HistoryRecorder", "history_hooks")

logger = logging.getLogger("taskemit.worker")

#: the ctx key of a worker's HistoryRecorder (the stock arq path finds it there)
CTX_HISTORY = "taskemit_history"


class HistoryRecorder:
    """Tallies of one worker's outcomes for the history, and the task that writes them."""

    __slots__ = ("enabled", "holder", "settings", "tally")

    def __init__(self, settings: Settings, holder: str) -> None:
        self.settings = settings
        #: the worker id: whose turn it is to sample is claimed under it
        self.holder = holder
        self.enabled = settings.history
        self.tally = HistoryTally()

    def record(self, outcome: Outcome) -> None:
        """Count one outcome written to Redis (aborted attempts are not attempts: not counted)."""
        state = outcome.state
        if not self.enabled or state is JobState.ABORTED:
            return
        run = outcome.run
        attempt = run.attempt
        duration = outcome.duration
        latency = None
        finished_at = run.started
        if duration is not None:
            finished_at += duration
            if attempt.number == 1:
                latency = max(0.0, run.started - run.enqueue_ms / 1000)
        if state is JobState.COMPLETE or not outcome.summary:
            self.tally.add(attempt.listener, outcome.counted, finished_at, duration, latency)
            return
        summary = outcome.summary
        self.tally.add(
            attempt.listener,
            outcome.counted,
            finished_at,
            duration,
            latency,
            str(summary.get("type") or "") or None,
            str(summary.get("message") or ""),
        )

    def record_all(self, finished: Iterable[Finished], refused: Collection[str] = ()) -> None:
        """Count the outcomes the worker loop wrote, but those of jobs whose finish was ``refused``
        (taken over by another worker, or written before: a finish sent again counts once)."""
        for item in finished:
            if not refused or item.outcome.run.attempt.job_id not in refused:
                self.record(item.outcome)

    async def flush(self, redis: Any, sample: bool = False) -> None:
        """Write the tallies, and a sample of the gauges if ``sample`` and it is this worker's turn;
        tallies Redis did not take are kept for the next write."""
        if not self.enabled:
            return
        taken = self.tally.take()
        gauges: Gauges | None = None
        now = time.time()
        try:
            if sample and await claim_sample(redis, self.settings.keys, self.holder, self.settings.history_interval):
                gauges = await sample_gauges(redis, self.settings)
            await write_history(redis, self.settings, taken, gauges, now)
        except BaseException:  # Redis away, a cancel: keep it for the next write (the buckets expire anyway)
            taken.merge(self.tally)
            self.tally = taken
            raise

    async def close(self, redis: Any) -> None:
        """Write what is left when the worker stops (best effort: Redis may be away)."""
        try:
            await self.flush(redis)
        except Exception as exc:
            logger.warning("could not write the last history tallies before stopping: %s", exc)

    async def run(self, redis: Any, link: RedisLink | None = None) -> None:
        """Flush every ``history_interval`` seconds until cancelled; an outage is reported to ``link``."""
        if not self.enabled:
            return
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.settings.history_interval)
            try:
                await self.flush(redis, sample=True)
            except REDIS_DOWN as exc:
                if link is not None:
                    link.down(exc)
            except Exception:  # a bug, or a reply taskemit does not expect: the worker goes on
                logger.exception("could not write the history; its tallies are kept for the next write")


Hook = Callable[[dict[Any, Any]], Awaitable[Any]]


def history_hooks(settings: Settings, on_startup: Hook | None, on_shutdown: Hook | None) -> tuple[Hook, Hook]:
    """arq ``on_startup``/``on_shutdown`` hooks that give a stock arq worker a HistoryRecorder
    (``ctx[CTX_HISTORY]``, which its job functions record to) and its writing task, around the
    given hooks. taskemit's own worker has its recorder in ``ctx`` already: they leave it alone."""
    task_key = CTX_HISTORY + "_task"

    async def startup(ctx: dict[Any, Any]) -> None:
        if settings.history and CTX_HISTORY not in ctx and ctx.get("redis") is not None:
            recorder = HistoryRecorder(settings, f"arq:{os.getpid()}:{id(ctx):x}")
            ctx[CTX_HISTORY] = recorder
            ctx[task_key] = asyncio.create_task(recorder.run(ctx["redis"]), name="taskemit-history")
        if on_startup is not None:
            await on_startup(ctx)

    async def shutdown(ctx: dict[Any, Any]) -> None:
        try:
            if on_shutdown is not None:
                await on_shutdown(ctx)
        finally:
            task: asyncio.Task[None] | None = ctx.pop(task_key, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await ctx[CTX_HISTORY].close(ctx["redis"])

    return startup, shutdown
