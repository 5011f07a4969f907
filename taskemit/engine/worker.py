"""Worker entry points: ``worker_settings()``, ``engine_for()`` and ``InProcessWorker``.

``worker_settings()`` builds an arq ``WorkerSettings`` class. ``taskemit worker`` runs it on
taskemit's own loop (:class:`~taskemit.engine.loop.Engine`, via ``engine_for``); the stock
``arq`` CLI runs the same class on arq's loop, as the compatibility path: each listener is
then one arq function named after the listener (see ``arqpath.job_function``). That path needs
arq (the ``arq`` extra); without it the class's ``functions`` and ``redis_settings`` say so
when read, and ``taskemit worker`` runs the class all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from ..emit import Registry, discover_listeners
from ..errors import StateError
from ..schedule.cron import CronSchedule
from ..schedule.scheduler import check_schedules, collect_schedules, scheduler_hooks
from ..settings import Settings, load_settings
from ..store.codec import get_codec
from ..store.connection import parse_redis_url
from .arqpath import (
    ARQ_MAX_TRIES,
    ARQ_TIMEOUT_MARGIN,
    NeedsArq,
    NotOnCluster,
    arq_functions,
    arq_installed,
    arq_redis_settings,
)
from .heartbeat import HEARTBEAT_INTERVAL
from .history import history_hooks
from .loop import Engine

__all__ = ("InProcessWorker", "engine_for", "worker_settings")

logger = logging.getLogger("taskemit.worker")


def engine_for(settings_cls: Any, **options: Any) -> Engine:
    """An :class:`Engine` for a ``WorkerSettings`` class made by :func:`worker_settings`.

    It runs the class's listeners with its taskemit settings, ``max_jobs``, ``ctx`` and
    ``on_startup``/``on_shutdown`` hooks (which run the cron scheduler, if any); ``options``
    are :class:`Engine` keywords and win over the class.
    """
    settings = getattr(settings_cls, "taskemit_settings", None)
    if not isinstance(settings, Settings):
        raise StateError(
            f"{settings_cls!r} was not made by taskemit.worker_settings(); run a plain arq WorkerSettings with `arq`"
        )
    defaults: dict[str, Any] = {
        "concurrency": getattr(settings_cls, "max_jobs", None),
        "on_startup": getattr(settings_cls, "on_startup", None),
        "on_shutdown": getattr(settings_cls, "on_shutdown", None),
        "ctx": getattr(settings_cls, "ctx", None),
    }
    return Engine(settings_cls.taskemit_listeners, settings, **{**defaults, **options})


def worker_settings(
    listeners: Iterable[Any] | None = None,
    *,
    settings: Settings | None = None,
    crons: Iterable[CronSchedule] | None = None,
    run_scheduler: bool = True,
    **arq_options: Any,
) -> type:
    """An arq ``WorkerSettings`` class that runs ``listeners``: with ``taskemit worker``, or with the
    stock ``arq`` CLI where arq is installed (``pip install 'taskemit[arq]'``).

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
        # read by arq's worker alone: without arq, reading them says to install it
        "functions": arq_functions(registry, settings, codec) if arq_installed() else NeedsArq("functions"),
        "queue_name": settings.queue_key,
        "redis_settings": (
            NotOnCluster("redis_settings")
            if parse_redis_url(settings.redis_url).cluster
            else arq_redis_settings(settings)
            if arq_installed()
            else NeedsArq("redis_settings")
        ),
        "job_serializer": codec.dumps,
        "job_deserializer": codec.loads,
        "job_timeout": settings.job_timeout + ARQ_TIMEOUT_MARGIN,
        "max_tries": ARQ_MAX_TRIES,
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
    if settings.history:  # a stock arq worker keeps it too (taskemit's own worker has its recorder already)
        attributes["on_startup"], attributes["on_shutdown"] = history_hooks(
            settings, attributes.get("on_startup"), attributes.get("on_shutdown")
        )
    return type("WorkerSettings", (), attributes)


class InProcessWorker:
    """A real taskemit worker (:class:`Engine`) for ``listeners``, running as a task in this event loop.

    ``async with InProcessWorker(listeners, settings): ...`` runs it for the block; leaving
    lets running jobs finish (up to ``grace`` seconds) before the worker stops. ``crons``
    runs a cron scheduler in it; other keywords are :class:`Engine`'s (``concurrency``,
    ``queues``, ``ctx``, ...), and ``max_jobs`` is arq's name for ``concurrency``.
    """

    def __init__(
        self,
        listeners: Sequence[Any],
        settings: Settings,
        *,
        grace: float = 10.0,
        crons: Sequence[CronSchedule] = (),
        max_jobs: int | None = None,
        on_startup: Any = None,
        on_shutdown: Any = None,
        **options: Any,
    ) -> None:
        hooks = {"on_startup": on_startup, "on_shutdown": on_shutdown}
        # a cron scheduler runs only when given schedules (then with the settings' [[cron]] too)
        cls = worker_settings(
            listeners,
            settings=settings,
            crons=crons,
            run_scheduler=bool(crons),
            **{name: hook for name, hook in hooks.items() if hook is not None},
        )
        options.setdefault("handle_signals", False)
        if max_jobs is not None:
            options.setdefault("concurrency", max_jobs)
        self.engine = engine_for(cls, grace=grace, **options)
        self._task: asyncio.Task[None] | None = None

    @property
    def worker_id(self) -> str:
        return self.engine.worker_id

    async def __aenter__(self) -> InProcessWorker:
        self._task = asyncio.create_task(self.engine.run(), name="taskemit-in-process-worker")
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
            if not self.engine.burst:
                raise StateError("the in-process worker stopped unexpectedly")

    async def close(self) -> None:
        """Stop the worker: running jobs get ``grace`` seconds, then their leases are given back."""
        task, self._task = self._task, None
        if task is None:
            return
        self.engine.stop()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                raise  # we are being cancelled ourselves
