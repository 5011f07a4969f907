"""``taskemit cron`` (list, pause, resume, trigger) and ``taskemit scheduler``: see, steer and run cron schedules.

``cron`` reads and writes the schedule registry through ``taskemit.monitor.schedules``: the
schedulers register their schedules as they run, so no app code is needed. TARGET, where a
command takes it, names the app's schedules instead (module:WorkerSettings).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
from redis import asyncio as aioredis
from rich.table import Table

from ..emit import Listener, discover_listeners
from ..errors import NoLiveScheduler, ScheduleNotFound, TaskEmitError
from ..monitor.schedules import (
    ScheduleView,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    trigger_event_uuid,
    trigger_schedule,
)
from ..monitor.status import event_status
from ..schedule.cron import CronConfigError, CronSchedule
from ..schedule.scheduler import Scheduler, collect_schedules, schedule_states
from ..settings import Settings, load_settings
from ..store.connection import redis_client
from ..store.keys import KeySpace
from ._output import NotFound, make_console

__all__ = ("cron", "scheduler_command")

T = TypeVar("T")

target_argument = click.argument("target", required=False)
_LIST_HINT = "`taskemit cron list` shows the names"


def _load(target: str | None) -> tuple[tuple[CronSchedule, ...], tuple[Listener, ...], Settings]:
    """The schedules, listeners and settings of TARGET, or of the settings alone."""
    from ._setup import import_target

    try:
        if target:
            settings_cls = import_target(target)
            settings = getattr(settings_cls, "taskemit_settings", None)
            if settings is None:
                raise click.BadParameter(f"{target!r} was not made by taskemit.worker_settings()", param_hint="TARGET")
            return tuple(settings_cls.taskemit_crons), tuple(settings_cls.taskemit_listeners), settings
        settings = load_settings()
        listeners = discover_listeners(settings.listeners)  # imports the modules that may declare schedules
        return collect_schedules(None, settings, discover=True), tuple(listeners), settings
    except TaskEmitError as exc:
        raise click.ClickException(str(exc)) from None


def _run(settings: Settings, action: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        async with redis_client(settings) as redis:
            return await action(redis)

    return asyncio.run(main())


def _not_found(name: str) -> NotFound:
    return NotFound(f"no cron schedule is named {name!r}; {_LIST_HINT}")


def _known(name: str, schedules: Sequence[CronSchedule]) -> None:
    if name not in {schedule.name for schedule in schedules}:
        raise _not_found(name)


async def _target_views(redis: Any, schedules: Sequence[CronSchedule], space: KeySpace) -> list[ScheduleView]:
    """TARGET's schedules: as registered where a scheduler registered them, else from the code."""
    registered = {view.name: view for view in await list_schedules(redis, space=space)}
    states = await schedule_states(redis, [s.name for s in schedules if s.name not in registered], space=space)
    views = []
    now = dt.datetime.now(dt.UTC)
    for s in schedules:
        if s.name in registered:
            views.append(registered[s.name])
            continue
        state = states[s.name]
        views.append(
            ScheduleView(
                name=s.name,
                event=s.event_id,
                expression=s.expression,
                tz=s.tz,
                misfire=s.misfire,
                max_lateness=s.max_lateness,
                paused=state.paused,
                paused_at=state.paused_at,
                last_fired=state.last_fired,
                next_fire=s.next_fire(now),
                schedulers=0,
                updated_at=None,
            )
        )
    return views


def _upcoming(view: ScheduleView, count: int, now: dt.datetime) -> list[dt.datetime]:
    """The schedule's next ``count`` ticks: from the one its live schedulers wait for, else from now."""
    start = view.next_fire if view.schedulers and view.next_fire is not None else None
    try:
        schedule = CronSchedule(view.expression, view.event or "event", tz=view.tz, name=view.name)
    except CronConfigError:  # a definition this host cannot read (an unknown zone): what Redis has
        return [] if start is None else [start]
    if start is None:
        return schedule.upcoming(now, count)
    return [start, *schedule.upcoming(start, count - 1)]


def _local(moment: dt.datetime | None, tz: str) -> str:
    if moment is None:
        return ""
    try:
        return moment.astimezone(ZoneInfo(tz)).isoformat(sep=" ")
    except (ValueError, KeyError):
        return moment.isoformat(sep=" ")


@click.group()
def cron() -> None:
    """Cron schedules: list them with their next ticks, pause, resume and trigger them.

    Schedulers (every worker runs one) register their schedules in Redis as they run, so
    these commands need no app code. TARGET, the module:WorkerSettings the workers run,
    names the app's schedules instead.
    """


@cron.command("list")
@target_argument
@click.option("--next", "count", type=click.IntRange(1, 100), default=3, show_default=True, help="Ticks to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_command(target: str | None, count: int, as_json: bool) -> None:
    """Each schedule: its event, time zone, state, live schedulers, last emitted tick and next ticks.

    Without TARGET, the schedules registered in Redis; a schedule no live scheduler runs is
    shown as such for a day after its last scheduler stopped, then forgotten.
    """
    if target:
        schedules, _, settings = _load(target)
        views = _run(settings, lambda redis: _target_views(redis, schedules, settings.keys))
    else:
        settings = load_settings()
        views = _run(settings, lambda redis: list_schedules(redis, space=settings.keys))
    now = dt.datetime.now(dt.UTC)
    if as_json:
        items = [
            {**view.to_dict(), "next": [tick.isoformat() for tick in _upcoming(view, count, now)]} for view in views
        ]
        click.echo(json.dumps(items, indent=2))
        return
    console = make_console()
    table = Table(title="Cron schedules", title_justify="left")
    for column in ("name", "event", "schedule", "time zone", "misfire", "state", "schedulers", "last fired", "next"):
        table.add_column(column, overflow="fold")
    for view in views:
        table.add_row(
            view.name,
            view.event,
            view.expression,
            view.tz,
            view.misfire,
            "[yellow]paused[/]" if view.paused else "[green]active[/]",
            str(view.schedulers) if view.schedulers else "[red]no live scheduler[/]",
            _local(view.last_fired, view.tz),
            "\n".join(_local(tick, view.tz) for tick in _upcoming(view, count, now)),
        )
    console.print(table)
    if not views:
        where = f"in {target}" if target else f"registered in namespace {settings.namespace!r}"
        console.print(f"No cron schedules {where}" + ("" if target else ": schedulers register theirs as they run"))


def _steer(
    name: str, target: str | None, action: Callable[..., Awaitable[bool]], *, known_if_paused: bool = False
) -> bool:
    """Run ``action`` (pause or resume) on schedule ``name``, once it is known: in TARGET, or in Redis."""
    if target:
        schedules, _, settings = _load(target)
        _known(name, schedules)
    else:
        settings = load_settings()

    async def main(redis: aioredis.Redis) -> bool:
        if not target and await get_schedule(redis, name, space=settings.keys) is None:
            states = await schedule_states(redis, [name], space=settings.keys)
            if not (known_if_paused and states[name].paused):  # a paused schedule can be resumed once forgotten
                raise _not_found(name)
        return await action(redis, name, space=settings.keys)

    return _run(settings, main)


@cron.command("pause")
@click.argument("name")
@target_argument
def pause_command(name: str, target: str | None) -> None:
    """Stop every scheduler from emitting schedule NAME until it is resumed."""
    changed = _steer(name, target, pause_schedule)
    click.echo(f"paused {name}" if changed else f"{name} was already paused")


@cron.command("resume")
@click.argument("name")
@target_argument
def resume_command(name: str, target: str | None) -> None:
    """Emit schedule NAME again from its next tick on; ticks passed while paused are not caught up."""
    changed = _steer(name, target, resume_schedule, known_if_paused=True)
    click.echo(f"resumed {name}" if changed else f"{name} was not paused")


@cron.command("trigger")
@click.argument("name")
@click.option(
    "--wait",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for a scheduler to emit the event (0: do not wait).",
)
def trigger_command(name: str, wait: float) -> None:
    """Emit schedule NAME's event now, once, through one of the live schedulers that run it.

    It fires a paused schedule too, and does not change its ticks. The command prints the
    event's uuid (see `taskemit status`).
    """
    settings = load_settings()

    async def main(redis: aioredis.Redis) -> tuple[str, bool]:
        try:
            request_id = await trigger_schedule(redis, name, space=settings.keys)
        except ScheduleNotFound:
            raise _not_found(name) from None
        except NoLiveScheduler as exc:
            raise click.ClickException(str(exc)) from None
        event_uuid = trigger_event_uuid(request_id)
        deadline = time.monotonic() + wait
        while wait:
            if await event_status(redis, settings, event_uuid) is not None:
                return event_uuid, True
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        return event_uuid, False

    event_uuid, stored = _run(settings, main)
    if stored:
        click.echo(f"triggered {name}: event {event_uuid}")
    elif not wait:
        click.echo(f"trigger of {name} requested: event {event_uuid} once a scheduler takes it")
    else:
        raise click.ClickException(
            f"no scheduler emitted the trigger of {name} within {wait:g}s; it stays requested "
            f"(event {event_uuid} once a scheduler takes it)"
        )


@click.command("scheduler")
@target_argument
@click.option("-v", "--verbose", is_flag=True, help="Log every tick.")
def scheduler_command(target: str | None, verbose: bool) -> None:
    """Run the cron scheduler of TARGET (module:WorkerSettings) without running jobs.

    Workers run one by default; a standalone one suits workers started with
    run_scheduler=False. Any number may run on any hosts: each tick is emitted once.
    SIGTERM or SIGINT stops it.
    """
    from ._setup import configure_logging

    configure_logging(verbose)
    schedules, listeners, settings = _load(target)
    if not schedules:
        raise click.UsageError("no cron schedules found; give TARGET (module:WorkerSettings) or add [[cron]] tables")
    try:
        scheduler = Scheduler(schedules, listeners, settings)
    except CronConfigError as exc:
        raise click.ClickException(str(exc)) from None
    asyncio.run(_serve(scheduler))


async def _serve(scheduler: Scheduler) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with scheduler:
        await stop.wait()
