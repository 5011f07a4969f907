"""The cron scheduler: sleeps until the next tick, then emits it, once across all schedulers.

Any number of schedulers may run the same schedules (every worker runs one by default).
Each tick is published with ``Emitter.publish_once`` under a key made of the schedule's
name and the tick, so Redis stores one event per tick however many schedulers race for it.
Redis also holds what all schedulers share: the last tick each schedule emitted (to catch
up after downtime, see ``misfire.plan_fires``) and which schedules are paused. Each scheduler
also registers its schedules there and takes requests to fire them now (``registry.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from redis.exceptions import RedisError

from ..emit import Emitter, Listener, Registry
from ..errors import ListenerArgumentError, PayloadEncodeError, StateError
from ..monitor.schedules import pause_schedule, resume_schedule
from ..settings import Settings, load_settings
from ..store.codec import get_codec
from ..store.connection import raise_if_cancelled, redis_client
from ..store.keys import KeySpace
from ..store.wire import as_text
from .clock import Clock, SystemClock, as_clock
from .cron import CronConfigError, CronSchedule, unique_schedules
from .misfire import plan_fires
from .registry import Registration

__all__ = (
    "CLOCK_CTX_KEY",
    "ScheduleState",
    "Scheduler",
    "check_schedules",
    "collect_schedules",
    "pause_schedule",
    "resume_schedule",
    "schedule_states",
    "scheduler_hooks",
)

logger = logging.getLogger("taskemit.scheduler")

#: the longest the loop sleeps before looking at the clock again (it jumps; laptops sleep)
_MAX_SLEEP = 60.0
_RETRY_FIRST_DELAY = 0.1
_RETRY_MAX_DELAY = 5.0
_CTX_KEY = "taskemit_scheduler"
#: seconds a stopping scheduler gives Redis to remove it from the schedule registry
_LEAVE_TIMEOUT = 2.0
#: an arq worker's ``ctx`` may hold the clock its scheduler runs on (tests: a ``ManualClock``)
CLOCK_CTX_KEY = "taskemit_clock"

Hook = Callable[[dict[Any, Any]], Awaitable[None]]
T = TypeVar("T")


def _moment(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)


# -- shared state in Redis ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What Redis knows about one schedule."""

    name: str
    last_fired: dt.datetime | None = None
    paused_at: dt.datetime | None = None
    resumed_at: dt.datetime | None = None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @property
    def caught_up_to(self) -> dt.datetime | None:
        """Ticks up to here need no catching up: emitted, or before the last resume."""
        known = [moment for moment in (self.last_fired, self.resumed_at) if moment is not None]
        return max(known, default=None)


async def schedule_states(redis: Any, names: Sequence[str], *, space: KeySpace) -> dict[str, ScheduleState]:
    """The state of each named schedule, in one round trip."""
    if not names:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zscore(space.cron_fired, name)
            pipe.hget(space.cron_paused, name)
            pipe.zscore(space.cron_resumed, name)
        replies = await pipe.execute()
    states = {}
    for n, name in enumerate(names):
        fired, paused, resumed = replies[3 * n : 3 * n + 3]
        paused_epoch = None if paused is None else float(as_text(paused))
        states[name] = ScheduleState(name, _moment(fired), _moment(paused_epoch), _moment(resumed))
    return states


# -- which schedules a worker runs ------------------------------------------------------------------


def discover_schedules(modules: Iterable[str]) -> list[CronSchedule]:
    """The schedules defined at the top level of each module."""
    found: list[CronSchedule] = []
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise CronConfigError(f"cannot import module {module_name!r} (from the listeners setting): {exc}") from exc
        found.extend(value for value in vars(module).values() if isinstance(value, CronSchedule))
    return found


def collect_schedules(
    crons: Iterable[CronSchedule] | None, settings: Settings, *, discover: bool = False
) -> tuple[CronSchedule, ...]:
    """``crons`` (or, with ``discover``, those in the ``listeners`` modules) plus settings' ``[[cron]]``."""
    declared = list(crons) if crons is not None else discover_schedules(settings.listeners) if discover else []
    return unique_schedules([*declared, *settings.cron_schedules])


def check_schedules(
    schedules: Iterable[CronSchedule], listeners: Iterable[Any], settings: Settings
) -> tuple[CronSchedule, ...]:
    """The schedules, once each, if every tick can be emitted; else a CronConfigError naming the schedule."""
    registry = listeners if isinstance(listeners, Registry) else Registry(listeners)
    codec = get_codec(settings.serializer)
    checked = unique_schedules(schedules)
    for schedule in checked:
        found = registry.for_event(schedule.event_id)
        if not found:
            raise CronConfigError(
                f"cron schedule {schedule.name!r} emits {schedule.event_id!r}, which none of the listeners "
                "given to this worker or scheduler listens to; add a listener for it or remove the schedule"
            )
        args, kwargs = schedule.arguments(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        try:
            for item in found:
                item.check_arguments(schedule.event_id, args, kwargs)
            codec.encode_job(schedule.event_id, args, kwargs, enqueue_ms=0)
        except (ListenerArgumentError, PayloadEncodeError) as exc:
            raise CronConfigError(f"cron schedule {schedule.name!r}: {exc}") from None
    return checked


# -- the firing loop ------------------------------------------------------------------------------


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the cron scheduler stopped: no ticks are emitted here", exc_info=task.exception())


class Scheduler:
    """Emits the ticks of ``schedules`` from this event loop until stopped.

    ``async with Scheduler(schedules, listeners, settings): ...``, or ``start()`` and
    ``stop()``. ``listeners`` are those of the scheduled events: each tick enqueues one job
    per listener, as ``emit`` does. ``clock`` is what it reads the time from and sleeps on
    until the next tick: a ``Clock`` (tests drive a ``ManualClock``), or a callable giving
    epoch seconds (then it sleeps in real time); default: the system clock.
    """

    def __init__(
        self,
        schedules: Iterable[CronSchedule],
        listeners: Iterable[Any],
        settings: Settings | None = None,
        *,
        clock: Clock | Callable[[], float] | None = None,
    ) -> None:
        settings = settings if settings is not None else load_settings()
        self.registry = listeners if isinstance(listeners, Registry) else Registry(listeners)
        self.schedules = check_schedules(schedules, self.registry, settings)
        self.settings = settings.model_copy(update={"drain_on_exit": False})  # its emits run elsewhere
        self.running_since: dt.datetime | None = None
        self.clock = SystemClock() if clock is None else as_clock(clock)
        #: its entry in the schedule registry (``registration.id`` is this scheduler's id)
        self.registration = Registration(self.schedules, self.settings.keys)
        self._cursors: dict[str, dt.datetime] = {}
        self._task: asyncio.Task[None] | None = None
        for schedule in self.schedules:
            if schedule.max_lateness > settings.event_retention:
                logger.warning(
                    "cron schedule %r: max_lateness (%ss) exceeds event_retention (%ss); a tick caught up "
                    "that late may be emitted twice",
                    schedule.name,
                    schedule.max_lateness,
                    settings.event_retention,
                )

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.now(), dt.UTC)

    async def start(self) -> None:
        if self._task is not None:
            raise StateError("the scheduler is already running")
        self._task = asyncio.create_task(self.run(), name="taskemit-scheduler")
        self._task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        """Stop at once (a tick being published is still stored: publishing is idempotent)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves
        except Exception:
            pass  # logged by _report_crash when it happened

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Emit ticks until cancelled."""
        if not self.schedules:
            return
        async with (
            Emitter(self.registry, self.settings) as emitter,
            redis_client(self.settings) as redis,
        ):
            self.running_since = self._now()
            names = [schedule.name for schedule in self.schedules]
            logger.info("cron scheduler started for %d schedules: %s", len(names), ", ".join(names))
            states = await self._retrying(partial(schedule_states, space=self.settings.keys), redis, names)
            cursors = self._cursors
            for schedule in self.schedules:
                state = states[schedule.name]
                start = state.caught_up_to
                # nothing to catch up for a new schedule, or one that is paused
                cursors[schedule.name] = self.running_since if start is None or state.paused else start
            await self._retrying(self.registration.write, redis, self._next_fires())
            registry = asyncio.create_task(
                self.registration.serve(redis, emitter, self._next_fires), name="taskemit-scheduler-registry"
            )
            try:
                while True:
                    raise_if_cancelled()
                    now = self._now()
                    due = [s for s in self.schedules if s.next_fire(cursors[s.name]) <= now]
                    if due:
                        await self._retrying(self._fire, redis, emitter, due, cursors, now)
                    wake = min(s.next_fire(cursors[s.name]) for s in self.schedules)
                    await self.clock.sleep_until(min(wake.timestamp(), self.clock.now() + _MAX_SLEEP))
            finally:
                await self._leave_registry(redis, registry)

    def _next_fires(self) -> dict[str, dt.datetime]:
        return {s.name: s.next_fire(self._cursors[s.name]) for s in self.schedules}

    async def _leave_registry(self, redis: Any, registry: asyncio.Task[None]) -> None:
        registry.cancel()
        await asyncio.gather(registry, return_exceptions=True)
        try:
            async with asyncio.timeout(_LEAVE_TIMEOUT):
                await self.registration.remove(redis)
        except (RedisError, OSError, TimeoutError) as exc:  # its entry expires on its own
            logger.warning("cron scheduler: could not leave the schedule registry (%s)", exc)

    async def _fire(
        self,
        redis: Any,
        emitter: Emitter,
        due: list[CronSchedule],
        cursors: dict[str, dt.datetime],
        now: dt.datetime,
    ) -> None:
        space = self.settings.keys
        assert self.running_since is not None
        paused = await redis.hmget(space.cron_paused, [schedule.name for schedule in due])
        ticks: list[tuple[CronSchedule, dt.datetime]] = []
        for schedule, paused_at in zip(due, paused, strict=True):
            planned = plan_fires(schedule, after=cursors[schedule.name], now=now, running_since=self.running_since)
            if paused_at is not None:
                logger.debug("cron schedule %r is paused: not emitting %s", schedule.name, planned)
                continue
            if len(planned) > 1 or (planned and planned[-1] < self.running_since):
                logger.info("cron schedule %r: catching up %s", schedule.name, [t.isoformat() for t in planned])
            ticks.extend((schedule, tick) for tick in planned)
        results = await asyncio.gather(*(self._publish(emitter, s, tick) for s, tick in ticks), return_exceptions=True)
        async with redis.pipeline(transaction=False) as pipe:
            for (schedule, tick), result in zip(ticks, results, strict=True):
                if isinstance(result, BaseException):
                    logger.error("cron schedule %r: emitting tick %s failed", schedule.name, tick, exc_info=result)
                else:
                    pipe.zadd(space.cron_fired, {schedule.name: tick.timestamp()}, gt=True)
            self.registration.queue(pipe, {schedule.name: schedule.next_fire(now) for schedule in due})
            await pipe.execute()
        for schedule in due:
            cursors[schedule.name] = now

    async def _publish(self, emitter: Emitter, schedule: CronSchedule, tick: dt.datetime) -> None:
        args, kwargs = schedule.arguments(tick)
        receipt = await emitter.publish_once(schedule.once_key(tick), schedule.event_id, *args, **kwargs)
        if receipt is not None:
            logger.debug("cron schedule %r emitted tick %s as event %s", schedule.name, tick, receipt.event_uuid)

    async def _retrying(self, action: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await action(*args)``, again and again until Redis answers it (waiting in real time)."""
        delay = _RETRY_FIRST_DELAY
        while True:
            raise_if_cancelled()
            try:
                return await action(*args)
            except (RedisError, OSError) as exc:
                logger.warning("cron scheduler: Redis failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_DELAY)


def scheduler_hooks(
    schedules: Sequence[CronSchedule],
    listeners: Sequence[Listener],
    settings: Settings,
    *,
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
) -> tuple[Hook, Hook]:
    """arq ``on_startup``/``on_shutdown`` hooks that run a scheduler in the worker, around the user's own.

    The scheduler runs on the clock in the worker's ``ctx`` under ``CLOCK_CTX_KEY`` if there
    is one (``InProcessWorker(..., ctx={CLOCK_CTX_KEY: ManualClock()})``), else on the system's.
    """

    async def startup(ctx: dict[Any, Any]) -> None:
        if on_startup is not None:
            await on_startup(ctx)
        scheduler = Scheduler(schedules, listeners, settings, clock=ctx.get(CLOCK_CTX_KEY))
        await scheduler.start()
        ctx[_CTX_KEY] = scheduler

    async def shutdown(ctx: dict[Any, Any]) -> None:
        scheduler: Scheduler | None = ctx.pop(_CTX_KEY, None)
        try:
            if scheduler is not None:
                await scheduler.stop()
        finally:
            if on_shutdown is not None:
                await on_shutdown(ctx)

    return startup, shutdown
