"""The ``taskemit`` command group: ``worker`` and every command but ``demo`` (``taskemit.cli``
adds it). ``litestar taskemit ...`` (``taskemit.litestar.cli``) hands Litestar these commands;
this module imports nothing that imports Litestar, so the two never import each other.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click
from pydantic import ValidationError
from redis.exceptions import RedisError

from .. import __version__
from ..errors import redact_url
from ..settings import load_settings
from ._output import REDIS_UNREACHABLE, USAGE
from ._setup import configure_logging, import_target
from .cron import cron, scheduler_command
from .dead import dead
from .emit import emit_command
from .monitor import COMMANDS as MONITOR_COMMANDS
from .operate import COMMANDS as OPERATE_COMMANDS
from .outbox import outbox
from .spool import spool
from .stats import stats

__all__ = ("cli", "main")


#: --debug: errors print their traceback instead of one line
_debug = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="taskemit")
@click.option("--redis-url", metavar="URL", help="Redis to use (instead of the redis_url setting).")
@click.option("--namespace", metavar="NAME", help="The namespace (instead of the namespace setting).")
@click.option("--debug", is_flag=True, help="Print the traceback of an error, not one line.")
def cli(redis_url: str | None, namespace: str | None, debug: bool) -> None:
    """Durable, retrying, scheduled events on arq and Redis.

    \b
    Exit codes: 0 ok, 1 a check failed (check: no live worker), 2 usage or settings error,
    3 Redis unreachable, 4 not found.
    """
    global _debug
    _debug = debug
    # through the environment, so that every command's settings and any child process see them
    if redis_url:
        os.environ["TASKEMIT_REDIS_URL"] = redis_url
    if namespace:
        os.environ["TASKEMIT_NAMESPACE"] = namespace


@cli.command()
@click.argument("target", required=False)
@click.option(
    "-p",
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes to run and supervise.",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs each process runs at the same time [default: the max_jobs setting, 100].",
)
@click.option(
    "-t",
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads each process runs sync listeners in [default: the sync_threads setting, 32].",
)
@click.option(
    "-q",
    "--queue",
    "queues",
    multiple=True,
    help="Serve only the listeners on this queue (repeatable) [default: the queues of all its listeners].",
)
@click.option("--burst", is_flag=True, help="Exit once its listeners have no job left, as arq's --burst does.")
@click.option("-v", "--verbose", is_flag=True, help="Log every job.")
def worker(
    target: str | None,
    processes: int,
    concurrency: int | None,
    threads: int | None,
    queues: tuple[str, ...],
    burst: bool,
    verbose: bool,
) -> None:
    """Run worker processes for TARGET (module:WorkerSettings).

    Without TARGET the listeners come from the modules of the `listeners` setting.
    With --processes N > 1, N processes run under a supervisor that restarts a crashed one
    and forwards SIGTERM/SIGINT for a graceful stop.
    """
    configure_logging(verbose)
    if processes > 1:
        from ..engine.pool import WorkerPool

        command = [sys.executable, "-m", "taskemit", "worker"]
        command += [target] if target else []
        command += ["--burst"] if burst else []
        command += ["--concurrency", str(concurrency)] if concurrency else []
        command += ["--threads", str(threads)] if threads else []
        for queue in queues:
            command += ["--queue", queue]
        command += ["--verbose"] if verbose else []
        # children get shutdown_grace to let their listeners finish, and a little more to give back the rest
        stop_timeout = load_settings().shutdown_grace + 10
        sys.exit(WorkerPool(command, processes, burst=burst, stop_timeout=stop_timeout).run())

    import asyncio

    from ..engine.worker import engine_for, worker_settings
    from ..errors import TaskEmitError

    if target:
        settings_cls = import_target(target)
    else:
        settings = load_settings()
        if not settings.listeners:
            raise click.UsageError(
                "give a TARGET (module:WorkerSettings) or set `listeners` (modules) in settings.toml"
            )
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        settings_cls = worker_settings(settings=settings)
    options: dict[str, Any] = {"burst": burst, "queues": queues or None}
    if concurrency:
        options["concurrency"] = concurrency
    if threads:
        options["threads"] = threads
    try:
        engine = engine_for(settings_cls, **options)
    except TaskEmitError as exc:
        raise click.UsageError(str(exc)) from None
    asyncio.run(engine.run())
    if engine.abandoned:  # sync listeners still in their threads, which would keep the process alive
        logging.shutdown()
        os._exit(1)
    if engine.vitals.recycled:
        from ..engine.pool import RECYCLE_EXIT_CODE

        sys.exit(RECYCLE_EXIT_CODE)


cli.add_command(dead)
cli.add_command(emit_command)
cli.add_command(cron)
cli.add_command(scheduler_command)
cli.add_command(spool)
cli.add_command(stats)
cli.add_command(outbox)
for _command in (*MONITOR_COMMANDS, *OPERATE_COMMANDS):
    cli.add_command(_command)


def main() -> None:
    try:
        cli()
    except ValidationError as exc:
        click.echo(f"Error: invalid taskemit settings:\n{exc}", err=True)
        sys.exit(USAGE)
    except FileNotFoundError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(USAGE)
    except (RedisError, ConnectionError, TimeoutError) as exc:
        if _debug:
            raise
        url = redact_url(os.environ.get("TASKEMIT_REDIS_URL") or _configured_url())
        click.echo(
            f"Error: cannot reach Redis at {url}: {exc}\n"
            "Hint: is it running? Set redis_url (settings.toml, TASKEMIT_REDIS_URL or --redis-url); "
            "--debug shows the traceback.",
            err=True,
        )
        sys.exit(REDIS_UNREACHABLE)


def _configured_url() -> str:
    try:
        return load_settings().redis_url
    except Exception:
        return "(unknown)"
