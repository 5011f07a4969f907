"""The worker side: ``worker_settings()`` for arq, and the worker class taskemit runs.

Each listener becomes one arq function named after the listener (see ``jobrun`` for what
that function does). The settings are plain arq ``WorkerSettings``: the stock ``arq`` CLI
runs them. ``TaskEmitWorker`` adds dead letters for jobs arq fails before any listener runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from arq.connections import RedisSettings
from arq.jobs import deserialize_result
from arq.worker import Function, Worker, func, get_kwargs
from redis.exceptions import RedisError

from ..emit import Listener, Registry, discover_listeners
from ..errors import ListenerError, StateError
from ..monitor.deadletter import record_dead_letter
from ..monitor.stats import outcome_args
from ..schedule.cron import CronSchedule
from ..schedule.scheduler import check_schedules, collect_schedules, scheduler_hooks
from ..settings import Settings, load_settings
from ..state import JobState
from ..store.codec import META_KWARG, Codec, get_codec
from ..store.keys import DEFAULT_KEYS, KeySpace
from .heartbeat import HEARTBEAT_INTERVAL, new_worker_id, remove_heartbeat, write_heartbeat
from .jobrun import CTX_RUNNING, CTX_WORKER_ID, job_function

__all__ = ("InProcessWorker", "TaskEmitWorker", "create_taskemit_worker", "worker_settings")

logger = logging.getLogger("taskemit.worker")

#: arq's own timeout sits above the listener's so the listener's fires first and is recorded.
_ARQ_TIMEOUT_MARGIN = 5.0


#: arq's own try limit is set out of reach: the job function applies the listener's policy
#: and dead-letters the job itself, which arq's limit would pre-empt without a record.
_ARQ_MAX_TRIES = 2**31


class TaskEmitWorker(Worker):
    """arq's Worker, plus dead letters for jobs arq fails before a listener runs.

    arq fails a job without calling any function when the function name is unknown (deploy
    skew), the payload cannot be decoded, or the job expired. ``taskemit worker`` and the
    in-process workers use this class so those jobs are dead-lettered too; the stock
    ``arq`` CLI stores them as failed arq results only.
    """

    def __init__(self, *args: Any, taskemit_settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taskemit_settings = taskemit_settings
        if taskemit_settings is not None:
            # a lease instead of arq's fixed in-progress TTL (job timeout + 10 s): renewed by
            # _renew_leases while the job runs, so a killed worker's jobs come back within it
            self.in_progress_timeout_s = taskemit_settings.lease_ttl
        self._lease_renewer: asyncio.Task[None] | None = None
        #: this worker's one id: in heartbeats, attempt records and dead letters
        self.worker_id = new_worker_id()
        #: listener name -> jobs of it running now (kept by the job function)
        self.running_listeners: Counter[str] = Counter()
        self.ctx[CTX_WORKER_ID] = self.worker_id
        self.ctx[CTX_RUNNING] = self.running_listeners
        self._taskemit_started = time.time()
        self._taskemit_last_beat = 0.0

    async def main(self) -> None:
        if self.taskemit_settings is not None:
            self._lease_renewer = asyncio.create_task(self._renew_leases(), name="taskemit-lease-renewer")
        try:
            await super().main()
        finally:
            if self._lease_renewer is not None:
                self._lease_renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._lease_renewer
                self._lease_renewer = None

    async def _renew_leases(self) -> None:
        """Extend the lease of every job this worker runs, three times per lease."""
        lease = self.in_progress_timeout_s
        while True:
            await asyncio.sleep(lease / 3)
            running = [job_id for job_id, task in self.tasks.items() if not task.done()]
            if not running:
                continue
            try:
                async with self.pool.pipeline(transaction=False) as pipe:
                    for job_id in running:
                        pipe.pexpire(self.keys.in_progress(job_id), int(lease * 1000))
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                logger.warning("could not renew the leases of %d running jobs: %s", len(running), exc)

    @property
    def _queue_label(self) -> str:
        """The queue as settings name it (``default``); arq's full key for stock settings."""
        settings = self.taskemit_settings
        return settings.queue_name if settings is not None else self.queue_name

    @property
    def keys(self) -> KeySpace:
        settings = self.taskemit_settings
        return settings.keys if settings is not None else DEFAULT_KEYS

    async def record_health(self) -> None:
        await super().record_health()  # arq's own health-check key (``arq --check``)
        now = time.time()
        if now - self._taskemit_last_beat < HEARTBEAT_INTERVAL:
            return
        self._taskemit_last_beat = now
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queue": self._queue_label,
            "started": self._taskemit_started,
            "jobs_running": sum(not t.done() for t in self.tasks.values()),
            "jobs_complete": self.jobs_complete,
            "jobs_failed": self.jobs_failed,
            "jobs_retried": self.jobs_retried,
            "running": {name: n for name, n in self.running_listeners.items() if n > 0},
        }
        try:
            await write_heartbeat(self.pool, self.keys, self.worker_id, info, HEARTBEAT_INTERVAL, now)
        except (RedisError, OSError):
            logger.warning("could not record the heartbeat of worker %s", self.worker_id, exc_info=True)

    async def close(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(RedisError, OSError):
                await remove_heartbeat(self.pool, self.keys, self.worker_id)
        await super().close()

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        try:
            await self._dead_letter_unrun(job_id, result_data)
        except Exception:  # never let bookkeeping kill the worker
            logger.exception("could not dead-letter job %s", job_id)
        await super().finish_failed_job(job_id, result_data)

    async def _dead_letter_unrun(self, job_id: str, result_data: bytes | None) -> None:
        settings = self.taskemit_settings
        if settings is None or result_data is None:
            return
        result = deserialize_result(result_data, deserializer=self.job_deserializer)
        failure = result.result
        if isinstance(failure, ListenerError):  # read back through the JSON serializer
            kind, message = failure.type_name, failure.message
        else:
            kind, message = f"{type(failure).__module__}.{type(failure).__qualname__}", str(failure)
        if kind.endswith("CancelledError"):
            return  # aborted on request: not a failure to keep
        payload = await self.pool.get(self.keys.job(job_id)) or b""
        meta: dict[str, Any] = {}
        if isinstance(result.kwargs, dict):
            meta = result.kwargs.get(META_KWARG) or {}
        error = {"type": kind, "message": message, "where": []}
        reason = message or kind
        outcome = json.dumps(
            {
                "status": JobState.FAILED,
                "dead_letter": True,
                "listener": result.function,
                "reason": reason,
                "error": error,
                "finished": time.time(),
                "worker": self.worker_id,
            }
        )
        await record_dead_letter(
            self.pool,
            settings,
            job_id=job_id,
            listener=result.function,
            event_uuid=meta.get("event"),
            event_id=meta.get("event_id"),
            reason=reason,
            payload=payload,
            error=error,
            final_attempt="",
            outcome=outcome,
            enqueued_ms=int(result.enqueue_time.timestamp() * 1000),
            stats=outcome_args(self.keys, result.function, ["dead"], None),
        )


def create_taskemit_worker(settings_cls: Any, **overrides: Any) -> TaskEmitWorker:
    """A :class:`TaskEmitWorker` from an arq WorkerSettings, as ``arq.worker.create_worker`` does."""
    settings = getattr(settings_cls, "taskemit_settings", None)
    return TaskEmitWorker(**{**get_kwargs(settings_cls), **overrides}, taskemit_settings=settings)


def _arq_function(item: Listener, settings: Settings, codec: Codec) -> Function:
    policy = item.policy(settings.default_policy)
    timeout = (policy.timeout or settings.job_timeout) + _ARQ_TIMEOUT_MARGIN
    return func(
        job_function(item, settings, codec),  # type: ignore[arg-type]  # arq's WorkerCoroutine is a Protocol
        name=item.name,
        timeout=timeout,
        keep_result=settings.result_retention,
        max_tries=_ARQ_MAX_TRIES,
    )


def worker_settings(
    listeners: Iterable[Any] | None = None,
    *,
    settings: Settings | None = None,
    crons: Iterable[CronSchedule] | None = None,
    run_scheduler: bool = True,
    **arq_options: Any,
) -> type:
    """An arq ``WorkerSettings`` class that runs ``listeners``.

    Args:
        listeners: the listeners this worker runs; default: those found in the modules of
            the ``listeners`` setting.
        settings: taskemit settings (default: ``load_settings()``).
        crons: cron schedules (``taskemit.cron(...)``), besides the ``[[cron]]`` tables of
            the settings; default: those found in the modules of the ``listeners`` setting
            when ``listeners`` is not given.
        run_scheduler: run a cron scheduler in the worker (any number may run; default True).
        **arq_options: any other ``arq.worker.Worker`` option (``on_startup``, ``max_jobs``, ...).
    """
    settings = settings if settings is not None else load_settings()
    schedules = collect_schedules(crons, settings, discover=listeners is None)
    if listeners is None:
        listeners = discover_listeners(settings.listeners)
    registry = listeners if isinstance(listeners, Registry) else Registry(listeners)
    if schedules and run_scheduler:  # a schedule whose event has no listener fails here, at import
        schedules = check_schedules(schedules, registry, settings)
        arq_options["on_startup"], arq_options["on_shutdown"] = scheduler_hooks(
            schedules,
            registry.listeners,
            settings,
            on_startup=arq_options.get("on_startup"),
            on_shutdown=arq_options.get("on_shutdown"),
        )
    codec = get_codec(settings.serializer)
    attributes: dict[str, Any] = {
        "functions": [_arq_function(item, settings, codec) for item in registry],
        "queue_name": settings.queue_key,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "job_serializer": codec.dumps,
        "job_deserializer": codec.loads,
        "job_timeout": settings.job_timeout + _ARQ_TIMEOUT_MARGIN,
        "max_tries": _ARQ_MAX_TRIES,
        "expires_extra_ms": settings.job_expiry * 1000,
        "keep_result": settings.result_retention,
        "max_jobs": settings.max_jobs,
        "poll_delay": settings.poll_delay,
        "health_check_key": settings.keys.health_check(settings.queue_name),
        "health_check_interval": HEARTBEAT_INTERVAL,
        # not arq options: what taskemit's own commands read back
        "taskemit_settings": settings,
        "taskemit_listeners": registry.listeners,
        "taskemit_crons": schedules,
    }
    attributes.update(arq_options)
    return type("WorkerSettings", (), attributes)


class InProcessWorker:
    """A real arq worker (``TaskEmitWorker``) for ``listeners``, running as a task in this event loop.

    ``async with InProcessWorker(listeners, settings): ...`` runs it for the block; leaving
    lets running jobs finish (up to ``grace`` seconds) before the worker stops.
    """

    def __init__(
        self,
        listeners: Sequence[Any],
        settings: Settings,
        *,
        grace: float = 10.0,
        crons: Sequence[CronSchedule] = (),
        **arq_options: Any,
    ) -> None:
        options = {"handle_signals": False, "poll_delay": 0.02, **arq_options}
        # a cron scheduler runs only when given schedules (then with the settings' [[cron]] too)
        cls = worker_settings(listeners, settings=settings, crons=crons, run_scheduler=bool(crons))
        self.worker = create_taskemit_worker(cls, **options)
        self.grace = grace
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InProcessWorker:
        self._task = asyncio.create_task(self.worker.async_run(), name="taskemit-in-process-worker")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def raise_if_crashed(self) -> None:
        """Re-raise the worker's own error if it stopped by itself."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._task.result()
            raise StateError("the in-process worker stopped unexpectedly")

    async def close(self) -> None:
        running = [task for task in self.worker.tasks.values() if not task.done()]
        if running:
            await asyncio.wait(running, timeout=self.grace)
        try:
            with warnings.catch_warnings():  # arq calls redis-py's deprecated close()
                warnings.filterwarnings("ignore", "Call to deprecated close", DeprecationWarning)
                await self.worker.close()  # cancels what is still running
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
