"""``taskemit emit EVENT --data JSON``: emit an event from the shell, checked against the catalog."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click
from redis import asyncio as aioredis

from ..emit import EmitReceipt, Emitter
from ..emit.events import import_event_class, load_event
from ..errors import EventValidationError, InvalidArgument, ListenerArgumentError, UnknownEventError
from ..flow import MAX_PRIORITY
from ..monitor.catalog import read_catalog
from ..settings import Settings, load_settings
from ..store.connection import redis_client
from ._output import NotFound

__all__ = ("emit_command",)


def _arguments(data: str | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if data is None:
        return (), {}
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    if isinstance(value, dict):
        return (), value
    if isinstance(value, list):
        return tuple(value), {}
    raise click.BadParameter("give a JSON object (keyword arguments) or array (positional ones)", param_hint="--data")


async def _typed_event(redis: aioredis.Redis, settings: Settings, event: str, data: dict[str, Any]) -> object | None:
    """The event as an instance when EVENT is the path of an event class that imports here (or a
    typed event of the catalog, which then must); None for a string event id."""
    cls = import_event_class(event) if ":" in event else None
    if cls is None:
        catalog = await read_catalog(redis, space=settings.keys)
        if any(entry.typed and event in entry.events for entry in catalog.values()):
            raise click.UsageError(
                f"{event} is a typed event, and its class cannot be imported here; run taskemit from the "
                "app's directory (or set PYTHONPATH) so that its module imports"
            )
        return None
    try:
        instance: object = load_event(cls, data)
    except EventValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    return instance


@click.command("emit")
@click.argument("event")
@click.option(
    "--data", help='The arguments as JSON: an object for keywords ({"email": "a@b"}), an array for positions.'
)
@click.option("--wait", is_flag=True, help="Wait until every listener has finished; exit 1 if one failed.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds --wait waits at most.")
@click.option(
    "--priority", type=click.IntRange(0, MAX_PRIORITY), help="The jobs' priority (instead of their listeners')."
)
@click.option("--ordering-key", help="Order the jobs with the others of this key (one at a time, in emit order).")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON.")
def emit_command(
    event: str,
    data: str | None,
    wait: bool,
    timeout: float,
    priority: int | None,
    ordering_key: str | None,
    as_json: bool,
) -> None:
    """Emit EVENT to the listeners the live workers registered (the listener catalog).

    EVENT is an event id, or a typed event's class path (module:Class, whose module must
    import here). The arguments are checked against the listeners' parameters first; the
    event goes nowhere if a listener could not take them. Prints the event's uuid and its jobs.
    """
    args, kwargs = _arguments(data)
    settings = load_settings()

    async def main() -> EmitReceipt | None:
        async with redis_client(settings) as redis:
            await redis.ping()  # unreachable: exit 3, rather than "no listener" from an empty catalog
            typed = await _typed_event(redis, settings, event, kwargs) if not args else None
            options: dict[str, Any] = {"wait": wait, "timeout": timeout if wait else None}
            options.update(priority=priority, ordering_key=ordering_key)
            async with Emitter(settings=settings, redis=redis) as emitter:
                if typed is not None:
                    return await emitter.publish(typed, **options)
                return await emitter.publish(event, *args, **options, **kwargs)

    try:
        receipt = asyncio.run(main())
    except UnknownEventError:
        raise NotFound(
            f"no listener of {event!r} is in the catalog (no worker serving one has run in the last "
            "catalog_retention seconds); `taskemit listeners` shows the events listeners take"
        ) from None
    except ListenerArgumentError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    except InvalidArgument as exc:
        raise click.UsageError(str(exc)) from None
    except ExceptionGroup as group:
        for error in group.exceptions:
            click.echo(f"failed: {error}", err=True)
        raise SystemExit(1) from None
    if receipt is None:  # on_unknown_event = "ignore"
        click.echo(f"no listener of {event!r}: ignored (on_unknown_event)")
        return
    if as_json:
        click.echo(json.dumps({"event_uuid": receipt.event_uuid, "event_id": receipt.event_id, "jobs": receipt.jobs}))
        return
    click.echo(
        f"event {receipt.event_uuid} ({receipt.event_id}): {len(receipt.jobs)} jobs" + (" finished" if wait else "")
    )
    for name, job_id in receipt.jobs.items():
        click.echo(f"  {name}: {job_id}")
