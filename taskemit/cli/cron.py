"""``taskemit cron`` (list, pause, resume) and ``taskemit scheduler``: see, steer and run cron schedules."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import click
from redis import asyncio as aioredis
from rich.table import Table

from ..emit import Listener, discover_listeners
from ..errors import TaskEmitError
from ..schedule.cron import CronConfigError, CronSchedule
from ..schedule.scheduler import (
    Scheduler,
    ScheduleState,
    collect_schedules,
    pause_schedule,
    resume_schedule,
    schedule_states,
)
from ..settings import Settings, load_settings
from ._output import make_console

__all__ = ("cron", "scheduler_command")

T = TypeVar("T")

target_argument = click.argument("target", required=False)


def _load(target: str | None) -> tuple[tuple[CronSchedule, ...], tuple[Listener, ...], Settings]:
    """The schedules, listeners and settings of TARGET, or of the settings alone."""
    from . import _import_target

    try:
        if target:
            settings_cls = _import_target(target)
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
        async with aioredis.Redis.from_url(settings.redis_url) as redis:
            return await action(redis)

    return asyncio.run(main())


def _local(tick: dt.datetime | None, schedule: CronSchedule) -> str:
    return "" if tick is None else tick.astimezone(schedule.zone).isoformat(sep=" ")


def _known(name: str, schedules: Sequence[CronSchedule]) -> None:
    if name not in {schedule.name for schedule in schedules}:
        raise click.ClickException(
            f"no cron schedule is named {name!r}; `taskemit cron list` shows the names"
            + ("" if schedules else " (none found: give TARGET, module:WorkerSettings)")
        )


@click.group()
def cron() -> None:
    """Cron schedules: list them with their next ticks, pause and resume them.

    TARGET is the module:WorkerSettings the workers run; without it, the schedules come from
    the settings ([[cron]] tables, and those declared in the `listeners` modules).
    """


@cron.command("list")
@target_argument
@click.option("--next", "count", type=click.IntRange(1, 100), default=3, show_default=True, help="Ticks to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_command(target: str | None, count: int, as_json: bool) -> None:
    """Each schedule: its event, time zone, state, last emitted tick and next ticks."""
    schedules, _, settings = _load(target)
    states: dict[str, ScheduleState] = _run(
        settings, lambda redis: schedule_states(redis, [s.name for s in schedules], space=settings.keys)
    )
    now = dt.datetime.now(dt.UTC)
    if as_json:
        items = [
            {
                "name": s.name,
                "event": s.event_id,
                "schedule": s.expression,
                "tz": s.tz,
                "misfire": s.misfire,
                "max_lateness": s.max_lateness,
                "paused": states[s.name].paused,
                "paused_at": _iso(states[s.name].paused_at),
                "last_fired": _iso(states[s.name].last_fired),
                "next": [tick.isoformat() for tick in s.upcoming(now, count)],
            }
            for s in schedules
        ]
        click.echo(json.dumps(items, indent=2))
        return
    console = make_console()
    table = Table(title="Cron schedules", title_justify="left")
    for column in ("name", "event", "schedule", "time zone", "misfire", "state", "last fired", "next"):
        table.add_column(column, overflow="fold")
    for s in schedules:
        state = states[s.name]
        table.add_row(
            s.name,
            s.event_id,
            s.expression,
            s.tz,
            s.misfire,
            "[yellow]paused[/]" if state.paused else "[green]active[/]",
            _local(state.last_fired, s),
            "\n".join(_local(tick, s) for tick in s.upcoming(now, count)),
        )
    console.print(table)
    if not schedules:
        console.print("No cron schedules found" + ("" if target else "; give TARGET (module:WorkerSettings)"))


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@cron.command("pause")
@click.argument("name")
@target_argument
def pause_command(name: str, target: str | None) -> None:
    """Stop every scheduler from emitting schedule NAME until it is resumed."""
    schedules, _, settings = _load(target)
    _known(name, schedules)
    changed = _run(settings, lambda redis: pause_schedule(redis, name, space=settings.keys))
    click.echo(f"paused {name}" if changed else f"{name} was already paused")


@cron.command("resume")
@click.argument("name")
@target_argument
def resume_command(name: str, target: str | None) -> None:
    """Emit schedule NAME again from its next tick on; ticks passed while paused are not caught up."""
    schedules, _, settings = _load(target)
    _known(name, schedules)
    changed = _run(settings, lambda redis: resume_schedule(redis, name, space=settings.keys))
    click.echo(f"resumed {name}" if changed else f"{name} was not paused")


@click.command("scheduler")
@target_argument
@click.option("-v", "--verbose", is_flag=True, help="Log every tick.")
def scheduler_command(target: str | None, verbose: bool) -> None:
    """Run the cron scheduler of TARGET (module:WorkerSettings) without running jobs.

    Workers run one by default; a standalone one suits workers started with
    run_scheduler=False. Any number may run on any hosts: each tick is emitted once.
    SIGTERM or SIGINT stops it.
    """
    from . import _configure_logging

    _configure_logging(verbose)
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
