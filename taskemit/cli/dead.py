"""``taskemit dead``: list, show, replay and purge dead letters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from redis import asyncio as aioredis
from rich.table import Table

from ..monitor.deadletter import (
    DeadLetter,
    NotReplayable,
    get_dead_letter,
    iter_dead_letters,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letter,
)
from ..redact import redact
from ..settings import Settings, load_settings
from ..store.connection import redis_client
from ._output import NotFound, full_id, make_console, when

T = TypeVar("T")


def _run(action: Callable[[aioredis.Redis, Settings], Awaitable[T]]) -> T:
    settings = load_settings()

    async def main() -> T:
        async with redis_client(settings) as redis:
            return await action(redis, settings)

    return asyncio.run(main())


def _as_dict(letter: DeadLetter, settings: Settings) -> dict[str, Any]:
    try:
        args, kwargs = letter.arguments(settings.serializer)
        arguments: Any = redact({"args": list(args), "kwargs": kwargs}, settings.redact_keys)
    except Exception as exc:  # an undecodable payload is one reason a job dies
        arguments = {"undecodable": str(exc)}
    return {
        "job_id": letter.job_id,
        "listener": letter.listener,
        "event_id": letter.event_id,
        "event_uuid": letter.event_uuid,
        "reason": letter.reason,
        "died_at": letter.died_at,
        "enqueued_at": letter.enqueued_at,
        "error": letter.error,
        "attempts": letter.attempts,
        "arguments": arguments,
    }


@click.group()
def dead() -> None:
    """Jobs that will not be tried again: inspect, replay, purge."""


@dead.command("list")
@click.option("--listener", "listener_name", help="Only this listener's dead letters.")
@click.option("--event", help="Only dead letters of this event id.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Page size.")
@click.option("--cursor", type=click.IntRange(0), default=0, help="Cursor printed by the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object with items and next_cursor).")
def list_command(listener_name: str | None, event: str | None, limit: int, cursor: int, as_json: bool) -> None:
    """List dead letters, newest first, one page at a time."""
    page = _run(
        lambda redis, settings: list_dead_letters(
            redis, listener=listener_name, event=event, limit=limit, cursor=cursor, space=settings.keys
        )
    )
    if as_json:
        settings = load_settings()
        click.echo(
            json.dumps(
                {
                    "items": [
                        {k: v for k, v in _as_dict(letter, settings).items() if k != "attempts"}
                        | {"attempts": len(letter.attempts)}
                        for letter in page.items
                    ],
                    "next_cursor": page.next_cursor,
                },
                default=str,
            )
        )
        return
    console = make_console()
    table = Table(title="Dead letters", title_justify="left")
    # a job id is never folded: it is what the other commands take (a narrow terminal folds the rest)
    table.add_column("job id", no_wrap=True, min_width=max((len(letter.job_id) for letter in page.items), default=6))
    for column in ("listener", "event", "died", "tries", "reason", "last error"):
        table.add_column(column, overflow="fold")
    for letter in page.items:
        table.add_row(
            letter.job_id,
            letter.listener,
            letter.event_id or "",
            when(letter.died_at),
            str(sum(1 for a in letter.attempts if a.get("status") == "failed")),
            letter.reason,
            f"{letter.error.get('type', '')}: {letter.error.get('message', '')}",
        )
    console.print(table)
    if page.next_cursor is not None:
        console.print(f"More: taskemit dead list --cursor {page.next_cursor}")


@dead.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(job_id: str, as_json: bool) -> None:
    """Show one dead letter with its arguments and every attempt (8+ characters of its job id do)."""
    job_id = full_id(job_id)
    letter, serializer = _run(
        lambda redis, settings: _with_serializer(get_dead_letter(redis, job_id, space=settings.keys), settings)
    )
    if letter is None:
        raise NotFound(f"no dead letter with job id {job_id!r}")
    data = _as_dict(letter, load_settings(serializer=serializer))
    if as_json:
        click.echo(json.dumps(data, default=str, indent=2))
        return
    console = make_console()
    for key in ("job_id", "listener", "event_id", "event_uuid", "reason", "arguments"):
        console.print(f"[bold]{key}[/]: {data[key]}")
    console.print(f"[bold]enqueued[/]: {when(letter.enqueued_at)}   [bold]died[/]: {when(letter.died_at)}")
    table = Table(title="Attempts", title_justify="left")
    for column in ("#", "status", "started", "took", "worker", "error"):
        table.add_column(column, overflow="fold")
    for entry in letter.attempts:
        error = entry.get("error") or {}
        started, finished = entry.get("started"), entry.get("finished")
        took = f"{(finished - started) * 1000:.0f} ms" if started and finished else ""
        where = ("\n  " + "\n  ".join(error.get("where", []))) if error.get("where") else ""
        table.add_row(
            str(entry.get("attempt", "")),
            entry.get("status", ""),
            when(started or entry.get("at")),
            took,
            entry.get("worker", ""),
            f"{error.get('type', '')}: {error.get('message', '')}{where}" if error else "",
        )
    console.print(table)


async def _with_serializer(lookup: Awaitable[T], settings: Settings) -> tuple[T, str]:
    return await lookup, settings.serializer


@dead.command("replay")
@click.argument("job_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter (matching the filters).")
@click.option("--listener", "listener_name", help="With --all: only this listener's.")
@click.option("--event", help="With --all: only this event id's.")
def replay_command(job_id: str | None, replay_all: bool, listener_name: str | None, event: str | None) -> None:
    """Enqueue dead jobs again with a fresh attempt count (their history is kept)."""
    if bool(job_id) == replay_all:
        raise click.UsageError("give either a JOB_ID or --all")
    if job_id and (listener_name or event):
        raise click.UsageError("--listener and --event filter --all; they do not apply to one JOB_ID")
    if job_id:
        job_id = full_id(job_id)

    async def replay(redis: aioredis.Redis, settings: Settings) -> list[tuple[str, str]]:
        if job_id:
            try:
                new = await replay_dead_letter(redis, settings, job_id)
            except NotReplayable as exc:
                raise click.ClickException(str(exc)) from None
            if new is None:
                raise NotFound(f"no dead letter with job id {job_id!r}")
            return [(job_id, new)]
        # read every page first: replaying removes letters, which would shift later pages
        letters = [
            letter
            async for letter in iter_dead_letters(redis, listener=listener_name, event=event, space=settings.keys)
        ]
        done = []
        for letter in letters:
            try:
                new = await replay_dead_letter(redis, settings, letter.job_id)
            except NotReplayable as exc:
                click.echo(f"skipped: {exc}", err=True)
                continue
            if new is not None:
                done.append((letter.job_id, new))
        return done

    for old, new in _run(replay):
        click.echo(f"replayed {old} as {new}")


@dead.command("purge")
@click.option("--listener", "listener_name", help="Only this listener's dead letters.")
@click.option("--event", help="Only this event id's dead letters.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_command(listener_name: str | None, event: str | None, yes: bool) -> None:
    """Delete dead letters for good."""
    scope = " and ".join(filter(None, [listener_name and f"listener {listener_name}", event and f"event {event}"]))
    if not yes:
        click.confirm(f"Delete every dead letter{' of ' + scope if scope else ''}?", abort=True)
    removed = _run(
        lambda redis, settings: purge_dead_letters(
            redis, listener=listener_name, event=event, space=settings.keys, queue=settings.queue_key
        )
    )
    click.echo(f"purged {removed} dead letters")
