"""How a worker stops: the grace its running jobs get, and what it writes and closes before it exits.

A stop (``Engine.stop``, SIGTERM or SIGINT, the supervisor gone, a worker due for recycling)
ends claiming at once. The jobs running get ``grace`` seconds to finish; past it, async
listeners are cancelled and their jobs given back (not counted as attempts), while sync
listeners, whose threads cannot be stopped, keep their leases until their threads return. A
second signal, or a stop with ``now``, stops at once and leaves such threads behind.

Once the loop has ended, the helpers beside it are cancelled, whatever still runs gives its lease
back, what finished is written and the leases of interrupted jobs are released (with a few tries
while Redis is away: what is left then runs again once its leases run out), and last the
worker's emitter, job store, heartbeat and Redis client are closed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import RedisError

from ..emit.emitter import Emitter
from ..settings import Settings
from .batch import Claim, JobStore
from .heartbeat import remove_heartbeat
from .history import HistoryRecorder
from .link import REDIS_DOWN, RedisLink
from .running import InFlight

__all__ = ("Stop", "close")

logger = logging.getLogger("taskemit.worker")


class Stop:
    """Whether a worker was asked to stop, by when its running jobs must be done, and stopping them then."""

    def __init__(
        self,
        worker_id: str,
        grace: float,
        jobs: InFlight,
        wake: asyncio.Event,
        history: HistoryRecorder,
        link: RedisLink,
        refused: Callable[[dict[str, str]], None],
    ) -> None:
        self.worker_id = worker_id
        self.grace = grace
        self.jobs = jobs
        #: set on a stop, so that the loop sees it at once
        self.wake = wake
        self.history = history
        self.link = link
        #: told about the finishes Redis refused
        self.refused = refused
        self.requested = False
        #: a stop at once while sync listeners run: the loop ends without them
        self.forced = False
        self.deadline: float | None = None
        self._warned_threads = False

    def request(self, now: bool = False) -> None:
        """Stop claiming; running listeners get ``grace`` seconds to finish (none if ``now``)."""
        if not self.requested:
            logger.info("worker %s stopping: %d jobs running", self.worker_id, len(self.jobs))
        elif now:
            self.forced = True
        self.requested = True
        deadline = time.monotonic() + (0 if now else self.grace)
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        self.wake.set()

    def on_signal(self, signum: int) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        self.request(now=self.requested)  # the second signal stops at once

    def timeout(self) -> float | None:
        """Seconds left of the grace (None if no stop was asked for)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def overdue(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    async def interrupt_running(self) -> None:
        """Past the grace: cancel the async listeners still running (sync ones run on)."""
        stoppable = self.jobs.stoppable()
        threads = len(self.jobs) - len(stoppable)
        if stoppable or (threads and not self._warned_threads):
            logger.warning(
                "worker %s: %d jobs still running after the %gs grace; stopping %d (not counted as attempts)%s",
                self.worker_id,
                len(self.jobs),
                self.grace,
                len(stoppable),
                f"; {threads} sync listeners keep their leases until their threads return (a second signal "
                "leaves them behind)"
                if threads
                else "",
            )
            self._warned_threads = self._warned_threads or bool(threads)
        for task in stoppable:
            task.cancel()
        if stoppable:
            await asyncio.wait(stoppable)

    async def wind_down(
        self, helpers: Sequence[asyncio.Task[None]], unconfirmed: Sequence[Claim], store: JobStore, redis: Any
    ) -> None:
        """After the loop: cancel the helpers, give back what still runs, write what finished.

        ``unconfirmed`` are claims never started (their durability did not hold): their leases are
        given back too.
        """
        for task in helpers:
            task.cancel()
        for task in helpers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # whatever is still running now (the loop was cancelled, or stopped at once) gives its
        # lease back; a sync listener's thread runs on, so its lease is left to run out
        jobs = self.jobs
        running = jobs.cancel_all()
        if running:
            await asyncio.wait(running)
        jobs.interrupted += [(claim.job_id, claim.route, claim.token) for claim in unconfirmed]
        await self.settle(store, final=True)
        await self.history.close(redis)

    async def settle(self, store: JobStore, final: bool = False) -> None:
        """Write what finished and give back the leases of interrupted jobs (best effort)."""
        jobs = self.jobs
        for _ in range(3 if final else 1):
            try:
                if jobs.finished:
                    finished, jobs.finished = jobs.finished, []
                    try:
                        batch = await store.exchange(finished, 0)
                    except BaseException:
                        jobs.finished = finished + jobs.finished
                        raise
                    self.refused(batch.refused)
                    self.history.record_all(finished, batch.refused)
                if jobs.interrupted:
                    released = await store.release(jobs.interrupted)
                    logger.info("gave back the leases of %d interrupted jobs", released)
                    jobs.interrupted = []
                return
            except REDIS_DOWN as exc:
                await asyncio.sleep(self.link.down(exc))
        if jobs.finished or jobs.interrupted:
            logger.error(
                "could not write %d finished jobs or give back %d leases before stopping: Redis is unreachable; "
                "their leases run out and they run again",
                len(jobs.finished),
                len(jobs.interrupted),
            )


async def close(
    emitter: Emitter | None,
    store: JobStore | None,
    redis: Any,
    settings: Settings,
    worker_id: str,
    listener_names: list[str],
    threads: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """Last: close the emitter and the job store, remove the heartbeat, close the client and the threads."""
    if emitter is not None and emitter._flusher is not None:
        with contextlib.suppress(RedisError, OSError):
            await emitter.__aexit__(None, None, None)
    if store is not None:
        with contextlib.suppress(RedisError, OSError):
            await store.close()
    if redis is not None:
        with contextlib.suppress(RedisError, OSError):
            await remove_heartbeat(redis, settings.keys, worker_id, listener_names)
        with contextlib.suppress(RedisError, OSError):
            await redis.aclose()
    threads.shutdown(wait=False, cancel_futures=True)
