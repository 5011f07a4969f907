"""Monitoring views: ``status``, ``events``, ``workers``, ``listeners`` (table, --json, --watch); ``stats`` is
in ``stats.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import click
from redis import asyncio as aioredis
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table

from ..monitor.listing import recent_events
from ..monitor.status import EventStatus, JobStatus, event_status, job_status
from ..monitor.workers import ListenerView, WorkerInfo, listener_views, live_workers
from ..settings import Settings, load_settings
from ..state import JobState
from ..store.connection import redis_client
from ._output import NotFound, full_id, make_console, when

T = TypeVar("T")
_MS = "milliseconds"  # event and job times are shown to the millisecond
_STYLE: dict[str, str] = {
    JobState.COMPLETE: "green",
    JobState.FAILED: "red",
    JobState.ABORTED: "red",
    JobState.UNKNOWN: "red",
    JobState.RETRYING: "yellow",
    JobState.IN_PROGRESS: "cyan",
    JobState.QUEUED: "white",
    JobState.DEFERRED: "white",
}

watch_option = click.option("--watch", "-w", is_flag=True, help="Refresh in place until Ctrl-C.")
interval_option = click.option(
    "--interval",
    type=click.FloatRange(0.2),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _status(status: str) -> str:
    return f"[{_STYLE.get(status, 'white')}]{status}[/]"


@contextlib.contextmanager
def _until_ctrl_c() -> Iterator[asyncio.Event]:
    """An event set by Ctrl-C (SIGINT), for a loop that stops between two refreshes: a Ctrl-C
    never lands inside a call to Redis (which redis-py can swallow, or turn into a timeout). A
    second Ctrl-C cancels the task at once. Off the main thread (no signals), an event never set."""
    stop = asyncio.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_sigint() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _show(
    fetch: Callable[[aioredis.Redis, Settings], Awaitable[T]],
    render: Callable[[T], RenderableType],
    to_json: Callable[[T], Any],
    *,
    as_json: bool,
    watch: bool,
    interval: float,
) -> T:
    """Fetch once and print (table or JSON), or keep refreshing a live table with --watch."""
    settings = load_settings()

    async def main() -> T:
        async with redis_client(settings) as redis:
            data = await fetch(redis, settings)
            if as_json:
                click.echo(json.dumps(to_json(data), default=str, indent=2))
                return data
            if not watch:
                make_console().print(render(data))
                return data
            with Live(render(data), console=make_console(), auto_refresh=False) as live, _until_ctrl_c() as stop:
                try:
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), interval)
                        if stop.is_set():
                            break
                        data = await fetch(redis, settings)
                        live.update(render(data), refresh=True)
                except (KeyboardInterrupt, asyncio.CancelledError):
                    pass
            return data

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)


def _jobs_table(jobs: list[JobStatus], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("listener", "job id", "status", "tries", "started", "took", "worker", "outcome"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        outcome = job.result or ""
        if job.error:
            outcome = f"{job.error.get('type', '')}: {job.error.get('message', '')}"
        if job.next_attempt_at:
            outcome += f" (next attempt {when(job.next_attempt_at, 'milliseconds')})"
        if job.note:
            outcome = f"[yellow]{job.note}[/]" + (f"; {outcome}" if outcome else "")
        tries = f"{job.attempts}/{job.max_tries}" if job.max_tries else str(job.attempts or "")
        table.add_row(
            job.listener,
            job.job_id,
            _status(job.status),
            tries,
            when(job.started, _MS),
            _ms(job.duration),
            job.worker or "",
            outcome,
        )
    return table


@click.command()
@click.argument("ident", metavar="ID")
@json_option
@watch_option
@interval_option
def status(ident: str, as_json: bool, watch: bool, interval: float) -> None:
    """What happened to an event (its uuid) or a listener job (its job id); 8+ characters of either do."""
    ident = full_id(ident)

    async def fetch(redis: aioredis.Redis, settings: Settings) -> EventStatus | JobStatus:
        event = await event_status(redis, settings, ident)
        if event is not None:
            return event
        job = await job_status(redis, settings, ident)
        if job.status == JobState.UNKNOWN and not job.listener:
            raise NotFound(f"no event or job with id {ident!r} (or its records have expired)")
        return job

    def render(found: EventStatus | JobStatus) -> RenderableType:
        if isinstance(found, EventStatus):
            emitted = when(found.emitted_at, _MS)
            title = f"Event {found.event_id} {found.event_uuid} emitted {emitted}: {_status(found.status)}"
            if found.cause:
                title += f"\ncaused by event {found.cause}"
            return _jobs_table(found.jobs, title)
        return _jobs_table(
            [found], f"Job {found.job_id}" + (f" of event {found.event_uuid}" if found.event_uuid else "")
        )

    _show(fetch, render, lambda f: f.to_dict(), as_json=as_json, watch=watch, interval=interval)


@click.command()
@click.option("--event", "event_id", help="Only events with this event id.")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice([state.value for state in JobState]),
    help="Only events in this status.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", help="Cursor printed by the previous page.")
@json_option
@watch_option
@interval_option
def events(
    event_id: str | None,
    status_filter: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    watch: bool,
    interval: float,
) -> None:
    """Recent events, newest first, with the status of their listener jobs."""

    async def fetch(redis: aioredis.Redis, settings: Settings) -> Any:
        return await recent_events(redis, settings, event_id=event_id, status=status_filter, limit=limit, cursor=cursor)

    def render(page: Any) -> RenderableType:
        table = Table(title="Events", title_justify="left")
        for column in ("emitted", "event", "uuid", "status", "jobs"):
            table.add_column(column, overflow="fold")
        for event in page.items:
            jobs = ", ".join(f"{j.listener.rsplit(':', 1)[-1]}={_status(j.status)}" for j in event.jobs)
            table.add_row(when(event.emitted_at, _MS), event.event_id, event.event_uuid, _status(event.status), jobs)
        more = ""
        if page.next_cursor:  # a status filter may scan a window with no match: there can still be more
            more = f"\nMore (or older): taskemit events --cursor {page.next_cursor}"
        return Group(table, more) if more else table

    _show(
        fetch,
        render,
        lambda p: {"items": [e.to_dict() for e in p.items], "next_cursor": p.next_cursor},
        as_json=as_json,
        watch=watch,
        interval=interval,
    )


@click.command()
@json_option
@watch_option
@interval_option
def workers(as_json: bool, watch: bool, interval: float) -> None:
    """Live workers, from their heartbeats: host, pid, jobs running, last seen."""

    async def fetch(redis: aioredis.Redis, settings: Settings) -> Any:
        return await live_workers(redis, space=settings.keys)

    def render(found: Any) -> RenderableType:
        table = Table(title="Workers", title_justify="left")
        for column in (
            "worker",
            "host",
            "pid",
            "queue",
            "running",
            "complete",
            "failed",
            "retried",
            "up since",
            "last seen",
            "redis outages",
        ):
            table.add_column(column, overflow="fold")
        now = time.time()
        for w in found:
            table.add_row(
                w.worker_id,
                w.host,
                str(w.pid),
                w.queue,
                str(w.jobs_running),
                str(w.jobs_complete),
                str(w.jobs_failed),
                str(w.jobs_retried),
                when(w.started, _MS),
                f"{now - w.last_seen:.1f} s ago",
                _outages(w),
            )
        return table

    _show(fetch, render, lambda ws: [w.to_dict() for w in ws], as_json=as_json, watch=watch, interval=interval)


def _outages(worker: WorkerInfo) -> str:
    if not worker.outages:
        return "0"
    last = worker.last_outage
    if not last:  # Redis is unreachable from the worker right now (this heartbeat was written before)
        return str(worker.outages)
    return f"{worker.outages} (last {last['seconds']:.1f} s, ended {when(last['end'], _MS)})"


@click.command()
@json_option
@watch_option
@interval_option
def listeners(as_json: bool, watch: bool, interval: float) -> None:
    """Listeners: their queue, delivery mode and events, jobs waiting and running, live workers
    that run them, dead letters; and their flow control: limits, what is in use of them (running
    of the concurrency, tokens, the next token, the busiest ordering keys), jobs waiting on them."""

    async def fetch(redis: aioredis.Redis, settings: Settings) -> list[ListenerView]:
        return await listener_views(redis, space=settings.keys)

    def render(found: list[ListenerView]) -> RenderableType:
        table = Table(title="Listeners", title_justify="left")
        left = ("listener", "queue", "mode", "events", "limits", "in use")
        columns = ("listener", "queue", "mode", "events", "queued", "running", "live workers", "dead")
        limited = any(view.flow is not None for view in found)
        for column in (*columns, "limits", "in use", "waiting") if limited else columns:
            table.add_column(column, overflow="fold", justify="left" if column in left else "right")
        now = time.time()
        for view in found:
            workers = str(view.workers) if view.workers or not view.queued else "[red]0: waiting[/]"
            dead = f"[red]{view.dead}[/]" if view.dead else "0"
            events = ", ".join(view.events)
            row = [view.listener, view.queue, view.mode, events, str(view.queued), str(view.running), workers, dead]
            if limited:
                flow = view.flow
                row += [flow.declared.describe(), flow.in_use(now), str(flow.waiting)] if flow else ["", "", ""]
            table.add_row(*row)
        return table

    _show(fetch, render, lambda views: [v.to_dict() for v in views], as_json=as_json, watch=watch, interval=interval)


COMMANDS = [status, events, workers, listeners]
