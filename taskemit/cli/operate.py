"""Operating commands: ``abort`` a job, ``check`` liveness (for probes), serve ``metrics``."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import click
from redis.exceptions import RedisError

from ..engine.heartbeat import HEARTBEAT_INTERVAL
from ..errors import redact_url
from ..monitor.abort import abort_job
from ..monitor.outbox import RelayReport, relay_reports
from ..monitor.server import ServerHealth, server_health, tag_servers
from ..monitor.workers import Waiting, live_workers, waiting_listeners
from ..settings import load_settings
from ..store.connection import redis_client
from ._output import NotFound, full_id
from .monitor import json_option

__all__ = ("COMMANDS",)


@click.command()
@click.argument("job_id")
def abort(job_id: str) -> None:
    """Abort a job: at once if it waits; a running one is cancelled by its worker within seconds."""
    job_id = full_id(job_id)
    settings = load_settings()

    async def main() -> str:
        async with redis_client(settings) as redis:
            return await abort_job(redis, settings, job_id)

    outcome = asyncio.run(main())
    if outcome == "missing":
        raise NotFound(f"no waiting or running job with id {job_id!r} (it may have finished)")
    if outcome == "requested":
        click.echo(f"job {job_id} is running: its worker cancels it at its next lease renewal")
    else:
        click.echo(f"job {job_id} aborted")


@click.command()
@json_option
@click.option(
    "--max-outbox-lag",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Also fail (exit 1) when an outbox relay reports rows waiting longer than this.",
)
def check(as_json: bool, max_outbox_lag: float | None) -> None:
    """Exit 0 if a worker of the queue has a fresh heartbeat and Redis can take taskemit's writes
    (a primary, with the replicas the durability level needs); 1 if not (for liveness probes).

    Also shows each live outbox relay: its database, the rows waiting (backlog), the age of
    the oldest (lag) and its errors.
    """
    settings = load_settings()

    async def main() -> tuple[
        int, bool, list[Waiting], ServerHealth, list[RelayReport], list[tuple[str, list[str], ServerHealth]]
    ]:
        async with redis_client(settings) as redis:
            alive = await live_workers(redis, settings.queue_name, space=settings.keys)
            # a stock `arq` worker has no taskemit heartbeat, only arq's health-check key
            arq_health = await redis.exists(settings.keys.health_check(settings.queue_name))
            waiting = await waiting_listeners(redis, space=settings.keys)
            relays = await relay_reports(redis, space=settings.keys)
            server = await server_health(redis, settings.keys.routes)
            nodes = await tag_servers(redis, settings.keys)  # on a cluster: every primary of the namespace's tags
            return len(alive), bool(arq_health), waiting, server, relays, nodes

    try:
        count, arq_alive, waiting, server, relays, nodes = asyncio.run(main())
    except (RedisError, OSError) as exc:
        click.echo(f"cannot reach Redis at {redact_url(settings.redis_url)}: {exc}", err=True)
        sys.exit(1)
    problems, warnings = server.problems(settings), server.warnings()
    for name, _, health in nodes[1:]:  # (the first is the control tag's: ``server``)
        problems += [f"{name}: {problem}" for problem in health.problems(settings)]
        warnings += [f"{name}: {warning}" for warning in health.warnings()]
    lagging = [r for r in relays if max_outbox_lag is not None and r.lag > max_outbox_lag]
    ok = bool(count or arq_alive) and not problems and not lagging
    if as_json:
        report = {
            "ok": ok,
            "queue": settings.queue_name,
            "live_workers": count,
            "arq_health_check": arq_alive,
            "waiting": [{"listener": w.listener, "queue": w.queue, "jobs": w.jobs} for w in waiting],
            "redis": {
                "version": server.version,
                "role": "primary" if server.primary else "replica",
                "connected_replicas": server.connected_replicas,
                "used_memory": server.used_memory,
                "maxmemory": server.maxmemory,
                "headroom": server.headroom,
                "durability": settings.durability,
                "problems": problems,
                "warnings": warnings,
            },
            "outbox_relays": [relay.to_dict() for relay in relays],
        }
        if nodes:  # a Redis Cluster: each primary of the namespace's tags
            report["redis"]["nodes"] = [  # type: ignore[index]
                {
                    "node": name,
                    "tags": tags,
                    "role": "primary" if health.primary else "replica",
                    "connected_replicas": health.connected_replicas,
                    "headroom": health.headroom,
                }
                for name, tags, health in nodes
            ]
        click.echo(json.dumps(report))
        sys.exit(0 if ok else 1)
    headroom = "no maxmemory" if server.headroom is None else f"{server.headroom:.0%} of maxmemory free"
    click.echo(
        f"redis {server.version} at {redact_url(settings.redis_url)}: "
        f"{'primary' if server.primary else 'replica'}, {server.connected_replicas} replica(s) connected, "
        f"{headroom}, durability {settings.durability}"
    )
    for name, tags, health in nodes:
        click.echo(
            f"  {name} ({', '.join(tags)}): {'primary' if health.primary else 'replica'}, "
            f"{health.connected_replicas} replica(s) connected"
            + ("" if health.headroom is None else f", {health.headroom:.0%} of maxmemory free")
        )
    for line in (*problems, *warnings):
        click.echo(line, err=True)
    for item in waiting:  # jobs no live worker will run: say so, whatever the exit code
        click.echo(str(item), err=True)
    for relay in relays:
        line = (
            f"outbox {relay.table} of {relay.database}: {relay.backlog} waiting, lag {relay.lag:.1f}s, "
            f"{relay.relayed} relayed, {relay.errors} errors (relay {relay.relay_id})"
        )
        if relay.last_error:
            line += f"; last error {time.time() - relay.last_error_at:.0f}s ago: {relay.last_error}"
        click.echo(line, err=relay in lagging or bool(relay.last_error))
    for relay in lagging:
        click.echo(f"the outbox of {relay.database} lags {relay.lag:.1f}s, more than {max_outbox_lag:g}s", err=True)
    if not (count or arq_alive):
        click.echo(f"no worker heartbeat on {settings.queue_name} in the last {HEARTBEAT_INTERVAL * 3:g}s", err=True)
    if ok:
        click.echo(f"ok: {count} live worker(s) on {settings.queue_name}" + ("" if count else " (arq health check)"))
        return
    sys.exit(1)


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=9108, show_default=True)
@click.option("--host", default="0.0.0.0", show_default=True)
def metrics(port: int, host: str) -> None:
    """Serve Prometheus metrics over HTTP (GET /metrics) until stopped."""
    from prometheus_client import start_http_server

    from ..monitor.metrics import metrics_registry

    settings = load_settings()
    server, thread = start_http_server(port, addr=host, registry=metrics_registry(settings))
    click.echo(f"serving taskemit metrics for {settings.queue_name} on http://{host}:{port}/metrics")
    try:
        while thread.is_alive():
            thread.join(1)
    except KeyboardInterrupt:
        server.shutdown()


COMMANDS = [abort, check, metrics]
