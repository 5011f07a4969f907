"""``Engine``: taskemit's worker loop, on arq's job format.

The loop claims due jobs of its own listeners in batches (one Lua call, ``claim.lua``),
runs each as a task, and writes the outcomes of every job finished meanwhile in the same
round trip as the next claim (``batch.JobStore.exchange``). It never polls busily:

- an emit publishes the names of the listeners it queued on the queue's wake channel, and
  a worker that runs one of them wakes at once;
- jobs due later (delays, retry backoff) and leases about to run out wake it at their time;
- a slow poll (``idle_poll`` seconds) is the safety net for a missed message.

A claimed job holds a lease, arq's in-progress key with a short TTL (``lease_ttl``) holding the
claim's token, which the worker renews while the listener runs (``leases``); a killed worker's
jobs are claimed again once their leases run out, and a worker that cannot renew a lease gives
the job up before then. A worker only claims jobs of the listeners it has, so jobs it cannot
run stay queued for a worker that can, and cost it nothing.

Redis going away (or answering "not now": out of memory, loading, no longer the primary) does
not stop the worker: it keeps what finished in memory, sends it again with backoff (finishes are
fenced by their claim's token, so a second send is refused where the first was applied),
reconnects to the new primary after a failover, logs once when Redis goes and once when it is
back, and records the outage in its heartbeat.

How it stops (the grace for running jobs, what it writes and closes on the way out) is in
``stopping``.
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

from redis import asyncio as aioredis

from ..emit.catalog import describe
from ..emit.listener import Listener
from ..errors import InvalidArgument
from ..settings import Settings
from ..store.codec import get_codec, warn_if_pickle
from ..store.connection import raise_if_cancelled, redis_client
from ..store.durability import check_durability
from ..store.faults import Fault, fault_of
from .arqpath import hook_client_class
from .batch import Claim, JobStore
from .heartbeat import beat, new_worker_id
from .held import HeldClaims
from .history import CTX_HISTORY, HistoryRecorder
from .jobrun import CTX_RUNNING, CTX_WORKER_ID
from .leases import LeaseKeeper
from .limits import FlowDeclarations
from .link import REDIS_DOWN, RedisLink, listen_for_queues
from .outcome import Outcome
from .running import InFlight
from .serving import serve
from .stopping import Stop, close
from .vitals import Vitals, watch_supervisor

__all__ = ("Engine",)

logger = logging.getLogger("taskemit.worker")

Hook = Callable[[dict[Any, Any]], Awaitable[Any]]

#: the most jobs one claim call takes, however many slots are free
_CLAIM_BATCH = 200
#: seconds between two tries while the durability level does not hold (each try's wait for the
#: replicas already takes durability_timeout)
_DURABILITY_RETRY = 0.1


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
        #: event-loop lag, jobs done, memory: for heartbeats and recycling
        self.vitals = Vitals(settings, self.worker_id, self.listeners, self.running_listeners)
        #: also the hooks' ctx["redis"] (arq's ArqRedis where arq is installed)
        self.redis: aioredis.Redis | None = None
        self.link = RedisLink(settings.redis_url)
        self.started = time.time()
        #: its listeners in the catalog, with their flow control (declared before the first claim)
        self.declarations = FlowDeclarations(
            [describe(item, settings.queue_name) for item in self.listeners], self.worker_id, self.started
        )
        self._store: JobStore | None = None
        self._leases: LeaseKeeper | None = None
        #: the jobs running, and what is left to write for them
        self.jobs = InFlight(
            self.worker_id, self.routes, self.runners, self.running_listeners, settings.lease_ttl, self._job_ended
        )
        #: claimed jobs not started until the durability level holds for their claim
        self._held = HeldClaims(self.worker_id, settings)
        #: finishes refused because another worker had taken the job over
        self.fenced = 0
        self._wake = asyncio.Event()
        #: asked to stop, and by when running jobs must be done
        self._stop = Stop(self.worker_id, self.grace, self.jobs, self._wake, self.history, self.link, self._refused)
        self._helpers: list[asyncio.Task[None]] = []
        self._wake_task: asyncio.Task[None] | None = None
        self._names = {item.name.encode() for item in self.listeners}

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, now: bool = False) -> None:
        """Stop claiming; running listeners get ``grace`` seconds to finish (none if ``now``).

        Past the grace, async listeners are cancelled and their jobs given back; sync listeners,
        whose threads cannot be stopped, keep their leases until their threads return. A stop
        with ``now`` while they run leaves them behind: their leases run out and they run again
        elsewhere (``abandoned`` counts them; the process should exit at once).
        """
        self._stop.request(now)

    async def run(self) -> None:
        """Run until stopped (or, in burst mode, until its listeners have no work left)."""
        warn_if_pickle(self.settings.serializer)
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.on_signal, sig)
        # every call bounded well inside a lease (plus the wait for replicas, with a durability level)
        timeout = min(self.settings.redis_timeout, self.settings.lease_ttl / 3)
        if self.settings.durability != "memory":
            timeout += self.settings.durability_timeout
        self.redis = redis_client(self.settings, timeout=timeout, client_class=hook_client_class())
        self.ctx["redis"] = self.redis
        self._store = JobStore(self.redis, self.settings, self.codec, self.routes, self.worker_id)
        self._leases = LeaseKeeper(
            self._store, self.jobs.running, self.link, self.settings.lease_ttl, self.jobs.give_up, self.jobs.abort
        )
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
            self._wake_task = asyncio.create_task(self._listen_for_work(), name="taskemit-wake")
            self._helpers = [
                self._wake_task,
                asyncio.create_task(self._leases.run(), name="taskemit-leases"),
                asyncio.create_task(
                    beat(
                        self.redis,
                        self.settings.keys,
                        self.worker_id,
                        self._heartbeat,
                        self.link,
                        self.declarations,
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
                await self._stop.wind_down(self._helpers, self._held.claims, self._store, self.redis)
                self._helpers, self._held.claims = [], []
                if self.on_shutdown is not None:
                    await self.on_shutdown(self.ctx)
        finally:
            if self.handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            await close(
                self.emitter,
                self._store,
                self.redis,
                self.settings,
                self.worker_id,
                [item.name for item in self.listeners],
                self.threads,
            )
            self.redis = None

    async def _connect(self) -> bool:
        """Load the scripts, waiting out Redis being unreachable at start; False if stopped first."""
        assert self._store is not None
        while not self._stop.requested:
            try:
                await self._store.load_scripts()
                await check_durability(self.redis, self.settings.durability, self.link.url, self.settings.keys.routes)
                # the limits hold from the first claim; the heartbeat registers the listeners
                await self.declarations.declare(self.redis, self.settings.keys, 0, self.settings.catalog_retention)
                # arq's Job.abort() calls made before the first claim: their jobs are settled, not run
                await self._store.take_arq_aborts()
            except REDIS_DOWN as exc:
                await self._sleep(self.link.down(exc))
                continue
            self.link.up()
            return True
        return False

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        store = self._store
        assert store is not None
        jobs = self.jobs
        while True:
            raise_if_cancelled()
            self._wake.clear()
            if self._stop.requested:
                if not jobs.running or self._stop.forced:
                    break
                if self._stop.overdue():
                    await self._stop.interrupt_running()
                    if jobs.running:  # sync listeners: their threads cannot be stopped
                        await self._wait(None)
                    continue
            if self._held.claims and not await self._start_held():
                continue
            busy = len(jobs) + len(self._held.claims)
            free = 0 if self._stop.requested else self.vitals.claim_budget(self.concurrency - busy)
            if free <= 0 and not jobs.finished:
                await self._wait(self._stop.timeout())
                continue
            finished, jobs.finished = jobs.finished, []
            limit = min(free, _CLAIM_BATCH)
            sent = time.monotonic()
            try:
                batch = await store.exchange(finished, limit)
            except REDIS_DOWN as exc:
                jobs.finished = finished + jobs.finished  # sent again: applied once
                await self._back_off(exc)
                continue
            self.link.up()
            if batch.durable:
                self._held.durable()
            self._refused(batch.refused)
            self.history.record_all(finished, batch.refused)  # sent again, a finish is refused: counted once
            for claim in batch.expired:
                jobs.expired(claim)
            for claim in batch.aborted:
                jobs.aborted(claim, started=False)
            if not batch.durable:
                # the level did not hold for this round trip: its finishes are sent again, its claims wait
                jobs.finished = finished + jobs.finished
                self._held.hold(batch.claimed)
                await self._sleep(_DURABILITY_RETRY)
                continue
            for claim in batch.claimed:
                self._start(claim, sent)
            if self._stop.requested:
                continue
            if len(batch.claimed) >= limit:
                continue  # there may be more: claim again as soon as a slot frees
            if self.burst and batch.next_due is None and not jobs.running and not jobs.finished:
                logger.info("worker %s: no jobs left (burst)", self.worker_id)
                break
            timeout = self.settings.idle_poll
            if batch.next_due is not None:
                timeout = min(timeout, max(0.0, batch.next_due - time.time()))
            if timeout > 0 or jobs.finished:
                await self._wait(timeout)

    async def _back_off(self, exc: BaseException) -> None:
        assert self._store is not None
        if fault_of(exc) is Fault.ROLE:  # a failover: the next round trip goes to the new primary
            await self._store.reconnect()
            self._resubscribe()
        await self._sleep(self.link.down(exc))

    def _resubscribe(self) -> None:
        """Subscribe to the wake channels again (on the new primary: a demoted one still answers
        PINGs, but emits no longer reach it)."""
        old = self._wake_task
        if old is None or old not in self._helpers:
            return
        old.cancel()
        self._wake_task = asyncio.create_task(self._listen_for_work(), name="taskemit-wake")
        self._helpers[self._helpers.index(old)] = self._wake_task

    async def _start_held(self) -> bool:
        """Start the claimed jobs held back until their claim was durable; False if not yet."""
        assert self._store is not None
        sent = time.monotonic()
        try:
            ready = await self._held.release(self._store)
        except REDIS_DOWN as exc:
            await self._back_off(exc)
            return False
        if ready is None:
            await self._sleep(_DURABILITY_RETRY)
            return False
        self.link.up()
        for claim in ready:
            self._start(claim, sent)
        return True

    def _refused(self, refused: dict[str, str]) -> None:
        for job_id, reason in refused.items():
            if reason == "taken":
                self.fenced += 1
                logger.warning(
                    "worker %s: the outcome of job %s was refused: another worker took the job over after this "
                    "worker's lease ran out",
                    self.worker_id,
                    job_id,
                )
            else:  # written before (a reply was lost), or claimed again after its lease ran out
                logger.debug("worker %s: the outcome of job %s was written before", self.worker_id, job_id)

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
        await self._wait(min(seconds, self._stop.timeout() or seconds))

    def _start(self, claim: Claim, sent: float) -> None:
        self.vitals.job_started(self.routes[claim.route].listener)
        self.jobs.start(claim, sent)

    def _job_ended(self, outcome: Outcome | None) -> None:
        self._wake.set()
        if outcome is not None and not self._stop.requested and self.vitals.job_finished():
            self.stop()

    @property
    def jobs_complete(self) -> int:
        return self.jobs.complete

    @property
    def jobs_failed(self) -> int:
        return self.jobs.failed

    @property
    def jobs_retried(self) -> int:
        return self.jobs.retried

    @property
    def abandoned(self) -> int:
        """Sync listeners still running in their threads when a stop at once left them behind."""
        return self.jobs.abandoned

    # -- helpers running beside the loop ---------------------------------------------------------

    async def _listen_for_work(self) -> None:
        assert self.redis is not None
        await listen_for_queues(self.redis, self.settings.keys, self.queues, self._names, self._wake)

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
            "jobs_running": len(self.jobs),
            "jobs_complete": self.jobs_complete,
            "jobs_failed": self.jobs_failed,
            "jobs_retried": self.jobs_retried,
            "running": {name: n for name, n in self.running_listeners.items() if n > 0},
            "outages": self.link.outages,
            "last_outage": self.link.last_outage,
            "loop_lag": round(self.vitals.take_loop_lag(), 4),
            "leases_lost": self.jobs.leases_lost,
            "fenced": self.fenced,
        }
