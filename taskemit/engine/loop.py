"""``Engine``: taskemit's worker loop, on arq's job format.

The loop claims due jobs of its own listeners in batches (one Lua call, ``claim.lua``),
runs each as a task, and writes the outcomes of every job finished meanwhile in the same
round trip as the next claim (``batch.JobStore.exchange``). It never polls busily:

- an emit publishes the names of the listeners it queued on the queue's wake channel, and
  a worker that runs one of them wakes at once;
- jobs due later (delays, retry backoff) and leases about to run out wake it at their time;
- a slow poll (``idle_poll`` seconds) is the safety net for a missed message.

A claimed job holds a lease, arq's in-progress key with a short TTL (``lease_ttl``), which
the worker renews while the listener runs; a killed worker's jobs are claimed again once
their leases run out. A worker only claims jobs of the listeners it has, so jobs it cannot
run stay queued for a worker that can, and cost it nothing.

Redis going away does not stop the worker: it keeps what finished in memory, retries with
backoff, logs once when Redis goes and once when it is back, and records the outage in its
heartbeat.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from ..emit.catalog import describe
from ..emit.listener import Listener
from ..errors import InvalidArgument
from ..settings import Settings
from ..state import JobState
from ..store.codec import get_codec, warn_if_pickle
from .batch import Claim, JobStore
from .heartbeat import beat, new_worker_id, remove_heartbeat
from .history import CTX_HISTORY, HistoryRecorder
from .jobrun import CTX_RUNNING, CTX_WORKER_ID
from .leases import keep_leases
from .link import REDIS_DOWN, RedisLink, listen_for_work
from .outcome import Outcome
from .serving import serve
from .vitals import Vitals, watch_supervisor

__all__ = ("Engine",)

logger = logging.getLogger("taskemit.worker")

Hook = Callable[[dict[Any, Any]], Awaitable[Any]]

#: the most jobs one claim call takes, however many slots are free
_CLAIM_BATCH = 200


class Engine:
    """A worker for ``listeners``: ``await Engine(...).run()`` until stopped.

    Args:
        listeners: the listeners it runs; it claims only their jobs.
        settings: taskemit settings.
        concurrency: jobs it runs at the same time (default: the ``max_jobs`` setting).
        threads: threads for sync listeners (default: the ``sync_threads`` setting).
        queues: serve only the listeners on these queue names (default: every listener's).
        burst: stop once no job of its listeners is left, running, due or scheduled.
        on_startup, on_shutdown: arq-style hooks, called with ``ctx``.
        ctx: the dict the hooks get (``ctx["redis"]`` is the worker's client).
        handle_signals: SIGTERM/SIGINT stop it gracefully (a second one at once).
        grace: seconds a stopping worker lets running listeners finish (default:
            the ``shutdown_grace`` setting); then their leases are given back.
    """

    def __init__(
        self,
        listeners: Sequence[Listener],
        settings: Settings,
        *,
        concurrency: int | None = None,
        threads: int | None = None,
        queues: Sequence[str] | None = None,
        burst: bool = False,
        on_startup: Hook | None = None,
        on_shutdown: Hook | None = None,
        ctx: dict[Any, Any] | None = None,
        handle_signals: bool = True,
        grace: float | None = None,
    ) -> None:
        self.settings = settings
        self.concurrency = concurrency or settings.max_jobs
        if self.concurrency < 1:
            raise InvalidArgument(f"concurrency must be at least 1, got {self.concurrency}")
        self.burst = burst
        self.handle_signals = handle_signals
        self.grace = settings.shutdown_grace if grace is None else grace
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.worker_id = new_worker_id()
        self.codec = get_codec(settings.serializer)
        self.threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads or settings.sync_threads, thread_name_prefix="taskemit-listener"
        )
        served = serve(
            listeners, settings, queues=queues, worker_id=self.worker_id, codec=self.codec, threads=self.threads
        )
        self.listeners = served.listeners
        self.routes, self.runners = served.routes, served.runners
        self.queue_names, self.queues = served.queue_names, served.queues
        self.emitter = served.emitter
        self._broadcast_keys = served.broadcast_keys
        #: listener name -> jobs of it running now
        self.running_listeners: Counter[str] = Counter()
        self.ctx: dict[Any, Any] = dict(ctx or {})
        self.ctx[CTX_WORKER_ID] = self.worker_id
        self.ctx[CTX_RUNNING] = self.running_listeners
        self.history = self.ctx[CTX_HISTORY] = HistoryRecorder(settings, self.worker_id)
        self.jobs_complete = self.jobs_failed = self.jobs_retried = 0
        #: event-loop lag, jobs done, memory: for heartbeats and recycling
        self.vitals = Vitals(settings, self.worker_id, self.listeners, self.running_listeners)
        self.redis: ArqRedis | None = None
        self.link = RedisLink(settings.redis_url)
        self.started = time.time()
        self._store: JobStore | None = None
        self._running: dict[str, tuple[asyncio.Task[None], int]] = {}
        self._finished: list[tuple[Outcome, int]] = []
        self._interrupted: list[tuple[str, int]] = []
        #: running jobs being cancelled because their abort was asked for
        self._aborting: set[str] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_deadline: float | None = None
        self._helpers: list[asyncio.Task[None]] = []
        self._names = {item.name.encode() for item in self.listeners}

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, now: bool = False) -> None:
        """Stop claiming; running listeners get ``grace`` seconds to finish (none if ``now``)."""
        if not self._stopping:
            logger.info("worker %s stopping: %d jobs running", self.worker_id, len(self._running))
        self._stopping = True
        deadline = time.monotonic() + (0 if now else self.grace)
        self._stop_deadline = deadline if self._stop_deadline is None else min(self._stop_deadline, deadline)
        self._wake.set()

    def _on_signal(self, signum: int) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        self.stop(now=self._stopping)  # the second signal stops at once

    async def run(self) -> None:
        """Run until stopped (or, in burst mode, until its listeners have no work left)."""
        warn_if_pickle(self.settings.serializer)
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        self.redis = ArqRedis.from_url(self.settings.redis_url)
        self.ctx["redis"] = self.redis
        self._store = JobStore(self.redis, self.settings, self.codec, self.routes, self.worker_id)
        try:
            if not await self._connect():
                return
            if self.emitter is not None:
                await self.emitter.__aenter__()
            if self.on_startup is not None:
                await self.on_startup(self.ctx)
            logger.info(
                "worker %s started: %d listeners on %s, concurrency %d",
                self.worker_id,
                len(self.listeners),
                ", ".join(self.queue_names) or "no queue",
                self.concurrency,
            )
            self._helpers = [
                asyncio.create_task(self._listen_for_work(), name="taskemit-wake"),
                asyncio.create_task(
                    keep_leases(
                        self._store, self._running, self._aborting, self.link, self.settings.lease_ttl, self.worker_id
                    ),
                    name="taskemit-leases",
                ),
                asyncio.create_task(
                    beat(
                        self.redis,
                        self.settings.keys,
                        self.worker_id,
                        self._heartbeat,
                        self.link,
                        [describe(item, self.settings.queue_name) for item in self.listeners],
                        self.settings.catalog_retention,
                        self._broadcast_keys,
                        self.settings.job_expiry,
                    ),
                    name="taskemit-heartbeat",
                ),
                asyncio.create_task(self.vitals.watch_loop_lag(), name="taskemit-loop-lag"),
                asyncio.create_task(self.history.run(self.redis, self.link), name="taskemit-history"),
                asyncio.create_task(watch_supervisor(self.worker_id, self.stop), name="taskemit-supervisor"),
            ]
            try:
                await self._loop()
            finally:
                await self._wind_down()
                if self.on_shutdown is not None:
                    await self.on_shutdown(self.ctx)
        finally:
            if self.handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            await self._close()

    async def _connect(self) -> bool:
        """Load the scripts, waiting out Redis being unreachable at start; False if stopped first."""
        assert self._store is not None
        while not self._stopping:
            try:
                await self._store.load_scripts()
            except REDIS_DOWN as exc:
                await self._sleep(self.link.down(exc))
                continue
            self.link.up()
            return True
        return False

    async def _wind_down(self) -> None:
        for task in self._helpers:
            task.cancel()
        for task in self._helpers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._helpers = []
        # whatever is still running now (the loop was cancelled) gives its lease back
        for task, _ in self._running.values():
            task.cancel()
        if self._running:
            await asyncio.wait([task for task, _ in self._running.values()])
        assert self._store is not None
        await self._settle(final=True)
        await self.history.close(self.redis)

    async def _settle(self, final: bool = False) -> None:
        """Write what finished and give back the leases of interrupted jobs (best effort)."""
        assert self._store is not None
        for _ in range(3 if final else 1):
            try:
                if self._finished:
                    finished, self._finished = self._finished, []
                    try:
                        await self._store.exchange(finished, 0)
                        self.history.record_all(finished)
                    except BaseException:
                        self._finished = finished + self._finished
                        raise
                if self._interrupted:
                    released = await self._store.release(self._interrupted)
                    logger.info("gave back the leases of %d interrupted jobs", released)
                    self._interrupted = []
                return
            except REDIS_DOWN as exc:
                await asyncio.sleep(self.link.down(exc))
        if self._finished or self._interrupted:
            logger.error(
                "could not write %d finished jobs or give back %d leases before stopping: Redis is unreachable; "
                "their leases run out and they run again",
                len(self._finished),
                len(self._interrupted),
            )

    async def _close(self) -> None:
        if self.emitter is not None and self.emitter._flusher is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.emitter.__aexit__(None, None, None)
        if self._store is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._store.close()
        if self.redis is not None:
            with contextlib.suppress(RedisError, OSError):
                names = [item.name for item in self.listeners]
                await remove_heartbeat(self.redis, self.settings.keys, self.worker_id, names)
            with contextlib.suppress(RedisError, OSError):
                await self.redis.aclose()
            self.redis = None
        self.threads.shutdown(wait=False, cancel_futures=True)

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        store = self._store
        assert store is not None
        while True:
            self._wake.clear()
            if self._stopping:
                if not self._running:
                    break
                if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
                    await self._interrupt_running()
                    continue
            free = 0 if self._stopping else self.vitals.claim_budget(self.concurrency - len(self._running))
            if free <= 0 and not self._finished:
                await self._wait(self._stop_timeout())
                continue
            finished, self._finished = self._finished, []
            limit = min(free, _CLAIM_BATCH)
            try:
                batch = await store.exchange(finished, limit)
            except REDIS_DOWN as exc:
                self._finished = finished + self._finished
                await self._sleep(self.link.down(exc))
                continue
            self.link.up()
            self.history.record_all(finished)
            for claim in batch.claimed:
                self._start(claim)
            for job_id, route in batch.expired:
                self._finished.append((self.runners[route].expired(job_id, self.worker_id), route))
            for claim in batch.aborted:
                self._finished.append((self._aborted(claim, started=False), claim.route))
            if self._stopping:
                continue
            if len(batch.claimed) >= limit:
                continue  # there may be more: claim again as soon as a slot frees
            if self.burst and batch.next_due is None and not self._running and not self._finished:
                logger.info("worker %s: no jobs left (burst)", self.worker_id)
                break
            timeout = self.settings.idle_poll
            if batch.next_due is not None:
                timeout = min(timeout, max(0.0, batch.next_due - time.time()))
            if timeout > 0 or self._finished:
                await self._wait(timeout)

    def _stop_timeout(self) -> float | None:
        if self._stop_deadline is None:
            return None
        return max(0.0, self._stop_deadline - time.monotonic())

    async def _wait(self, timeout: float | None) -> None:
        if self._wake.is_set():
            return
        if timeout is None:
            await self._wake.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _sleep(self, seconds: float) -> None:
        """Back off, but wake early for a stop."""
        await self._wait(min(seconds, self._stop_timeout() or seconds))

    async def _interrupt_running(self) -> None:
        logger.warning(
            "worker %s: %d jobs still running after the %gs grace; stopping them (not counted as attempts)",
            self.worker_id,
            len(self._running),
            self.grace,
        )
        tasks = [task for task, _ in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)

    def _start(self, claim: Claim) -> None:
        self.vitals.job_started(self.routes[claim.route].listener)
        task = asyncio.create_task(self._run_job(claim))
        self._running[claim.job_id] = (task, claim.route)

    async def _run_job(self, claim: Claim) -> None:
        route = claim.route
        try:
            outcome = await self.runners[route].run_payload(
                claim.job_id, claim.job_try, claim.payload, self.worker_id, self.running_listeners
            )
        except asyncio.CancelledError:
            if claim.job_id in self._aborting:  # stopped on request: settled as aborted
                self._aborting.discard(claim.job_id)
                self._finished.append((self._aborted(claim, started=True), route))
                return
            self._interrupted.append((claim.job_id, route))
            raise
        except Exception:  # a bug in taskemit, never the listener's: keep the worker alive
            logger.exception("job %s of %s could not be run", claim.job_id, self.routes[route].listener)
            self._interrupted.append((claim.job_id, route))
        else:
            self._finished.append((outcome, route))
            if not self._stopping and self.vitals.job_finished():
                self.stop()
            if outcome.state is JobState.COMPLETE:
                self.jobs_complete += 1
            elif outcome.state is JobState.RETRYING:
                self.jobs_retried += 1
            else:
                self.jobs_failed += 1
        finally:
            del self._running[claim.job_id]
            self._wake.set()

    def _aborted(self, claim: Claim, started: bool) -> Outcome:
        runner = self.runners[claim.route]
        return runner.aborted(claim.job_id, claim.job_try, claim.payload, self.worker_id, started)

    # -- helpers running beside the loop ---------------------------------------------------------

    async def _listen_for_work(self) -> None:
        assert self.redis is not None
        channels = [self.settings.keys.wake_channel(queue) for queue in self.queues]
        await listen_for_work(self.redis, channels, self._names, self._wake)

    def _heartbeat(self) -> dict[str, Any]:
        """What this worker's heartbeat says about it now."""
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queue": ",".join(self.queue_names),
            "queues": self.queue_names,
            "listeners": sorted(item.name for item in self.listeners),
            "concurrency": self.concurrency,
            "started": self.started,
            "jobs_running": len(self._running),
            "jobs_complete": self.jobs_complete,
            "jobs_failed": self.jobs_failed,
            "jobs_retried": self.jobs_retried,
            "running": {name: n for name, n in self.running_listeners.items() if n > 0},
            "outages": self.link.outages,
            "last_outage": self.link.last_outage,
            "loop_lag": round(self.vitals.take_loop_lag(), 4),
        }
