"""``python -m benchmarks outbox [--quick]``: what emitting in a transaction costs, side by side in one run.

- web: requests/s of a Litestar handler (uvicorn, one process, advanced-alchemy's session)
  that inserts a row and emits through the outbox, against the same handler that commits the
  row and then emits directly (the dual write the outbox replaces); on SQLite (aiosqlite) and
  PostgreSQL (asyncpg); short alternating rounds, the median of each pair's ratio. Target >= 0.9.
- relay: events/s one relay (``relay_outbox(central=True)``, what ``taskemit outbox relay`` runs)
  takes from a PostgreSQL outbox table to Redis. Target >= 10,000.
- latency: commit -> listener start, through the in-process relay (worker in its own process),
  at 200 events/s, against emitting directly after the commit; SQLite and PostgreSQL. Target p50 <= 10 ms.

Redis is a private redis-server, PostgreSQL a private cluster (tests/pgcluster.py, fsync on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from benchmarks.compare.machine import newest_redis_server
from benchmarks.compare.process import WorkerGroup
from benchmarks.compare.scenarios.web import _httpx, _wait_listening, _wrk
from benchmarks.compare.systems.base import PYTHON, ROOT
from taskemit import Emitter, load_settings
from taskemit.store.redis_server import RedisServer, free_port

sys.path.insert(0, str(ROOT / "tests"))
from pgcluster import PostgresCluster

RESULTS = ROOT / "benchmarks" / "results"
SCENARIOS = ("web", "relay", "latency")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer rounds and events (about 3 minutes)")
    parser.add_argument("--only", help=f"scenarios, comma-separated: {','.join(SCENARIOS)}")
    parser.add_argument("--json", type=Path, default=RESULTS / "outbox.json", help="where to write the figures")


def run(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the load loop's requests
    results = asyncio.run(main(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"figures written to {args.json}")
    return 0


async def main(args: argparse.Namespace) -> dict[str, Any]:
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    results: dict[str, Any] = {"quick": args.quick}
    with (
        tempfile.TemporaryDirectory(prefix="taskemit-bench-") as tmp,
        PostgresCluster(options=()) as pg,
        RedisServer(binary=newest_redis_server()) as redis_server,
    ):
        databases = {"sqlite": f"sqlite+aiosqlite:///{tmp}/bench.db", "postgres": pg.url("asyncpg")}
        for url in databases.values():
            await _create_tables(url)
        if "web" in chosen:
            results["web"] = await web(databases, redis_server, args.quick)
        if "relay" in chosen:
            results["relay"] = await relay(databases["postgres"], redis_server, args.quick)
        if "latency" in chosen:
            results["latency"] = await latency(databases, redis_server, args.quick)
    return results


async def _create_tables(url: str) -> None:
    from benchmarks.outbox.app import Base

    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.run_sync(Base.metadata.create_all)
    if url.startswith("sqlite"):
        async with engine.connect() as connection:
            await connection.exec_driver_sql("PRAGMA journal_mode=WAL")  # kept in the file
    await engine.dispose()


def _settings(server: RedisServer, **more: Any) -> Any:
    return load_settings(redis_url=server.url, namespace="bench-outbox", spool=False, **more)


# -- web ------------------------------------------------------------------------------------------


async def web(databases: dict[str, str], server: RedisServer, quick: bool) -> dict[str, Any]:
    seconds, rounds = (3.0, 3) if quick else (6.0, 5)
    load = _wrk if shutil.which("wrk") else _httpx
    figures: dict[str, Any] = {}
    for name, url in databases.items():
        rates: dict[str, list[float]] = {"outbox": [], "dual": []}
        for turn in range(rounds):
            order = ("outbox", "dual") if turn % 2 == 0 else ("dual", "outbox")
            for variant in order:
                rates[variant].append(await _web_round(url, variant, server, seconds, load))
        ratios = [o / d for o, d in zip(rates["outbox"], rates["dual"], strict=True)]
        figures[name] = {
            "outbox_req_s": statistics.median(rates["outbox"]),
            "dual_req_s": statistics.median(rates["dual"]),
            "ratio": statistics.median(ratios),
            "rounds": rates,
        }
        print(
            f"web {name:<8} outbox {figures[name]['outbox_req_s']:7.0f} req/s   dual write "
            f"{figures[name]['dual_req_s']:7.0f} req/s   ratio {figures[name]['ratio']:.2f} (target >= 0.90)"
        )
    return figures


async def _web_round(url: str, variant: str, server: RedisServer, seconds: float, load: Any) -> float:
    await _create_tables(url)  # no rows left by an earlier round (an app stopped mid-relay) to relay now
    port = free_port()
    env = {
        "BENCH_DB_URL": url,
        "BENCH_VARIANT": variant,
        "BENCH_REDIS_URL": server.url,
        "TASKEMIT_REDIS_URL": server.url,
        "TASKEMIT_NAMESPACE": "bench-outbox",
        "TASKEMIT_SPOOL": "false",
    }
    command = [PYTHON, "-m", "uvicorn", "benchmarks.outbox.app:app", "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log"]
    logs = RESULTS / "logs" / f"outbox-web-{variant}.log"
    with WorkerGroup([command], env, ROOT, logs) as app:
        await _wait_listening(port, app)
        target = f"http://127.0.0.1:{port}/orders"
        try:
            await load(target, 2.0)  # warm-up: the pool's connections are opened here, some slowly
        except RuntimeError as exc:
            print(f"  (warm-up: {str(exc).splitlines()[-1].strip()})")
        rate: float = await load(target, seconds)
        app.check_alive()
    return rate


# -- relay ----------------------------------------------------------------------------------------


async def relay(url: str, server: RedisServer, quick: bool) -> dict[str, Any]:
    from benchmarks.outbox.app import order_placed

    events = 20_000 if quick else 100_000
    settings = _settings(server, outbox_relay=False)
    engine = create_async_engine(url)
    async with Emitter([order_placed], settings) as emitter:  # rows only: no relay in this emitter
        for first in range(0, events, 1000):
            async with AsyncSession(engine) as session:
                for n in range(first, min(first + 1000, events)):
                    emitter.emit("order_placed", order=n, session=session)
                await session.commit()
    async with Emitter([], settings) as emitter:
        started = time.perf_counter()
        (running,) = await emitter.relay_outbox(engine, central=True)
        while running.relayed < events:
            await asyncio.sleep(0.005)
        stored = time.perf_counter() - started
        while True:
            await running.look()
            if not running.backlog:
                break
            await asyncio.sleep(0.01)
        deleted = time.perf_counter() - started
    await engine.dispose()
    async with aioredis.Redis.from_url(server.url) as redis:
        counted = int((await redis.hget(settings.keys.event_counts, "order_placed")) or 0)
        await redis.flushdb()
    figures = {"events": events, "stored_per_s": events / stored, "deleted_per_s": events / deleted, "stored": counted}
    print(
        f"relay    PostgreSQL -> Redis, one relay: {figures['stored_per_s']:,.0f} events/s stored, "
        f"{figures['deleted_per_s']:,.0f}/s with their rows deleted ({events:,} events; target >= 10,000)"
    )
    return figures


# -- latency --------------------------------------------------------------------------------------


async def latency(databases: dict[str, str], server: RedisServer, quick: bool) -> dict[str, Any]:
    seconds = 4.0 if quick else 10.0
    figures: dict[str, Any] = {}
    env = {"BENCH_REDIS_URL": server.url, "TASKEMIT_REDIS_URL": server.url, "TASKEMIT_NAMESPACE": "bench-outbox"}
    os.environ["BENCH_REDIS_URL"] = server.url
    command = [PYTHON, "-m", "taskemit", "worker", "benchmarks.outbox.app:WorkerSettings"]
    with WorkerGroup([command], env, ROOT, RESULTS / "logs" / "outbox-latency-worker.log"):
        await _worker_up(server)
        for name, url in databases.items():
            for variant in ("outbox", "direct"):
                values = await _paced(url, variant, server, seconds)
                cuts = statistics.quantiles(values, n=100, method="inclusive")
                figures[f"{name}-{variant}"] = {"p50_ms": cuts[49], "p90_ms": cuts[89], "p99_ms": cuts[98]}
                print(
                    f"latency  {name:<8} {variant:<6} commit -> listener start: p50 {cuts[49]:5.1f} ms  "
                    f"p90 {cuts[89]:5.1f}  p99 {cuts[98]:5.1f}"
                    + ("   (target p50 <= 10 ms)" if variant == "outbox" else "")
                )
    return figures


async def _worker_up(server: RedisServer, timeout: float = 60.0) -> None:
    """Wait until the worker's heartbeat is in Redis (it imports Litestar and SQLAlchemy: seconds on a
    busy machine), then a moment for its wake subscription."""
    from taskemit.monitor.workers import live_workers

    space = _settings(server).keys
    deadline = time.monotonic() + timeout
    async with aioredis.Redis.from_url(server.url) as redis:
        while not await live_workers(redis, space=space):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker heartbeat within {timeout:g}s")
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)


async def _paced(url: str, variant: str, server: RedisServer, seconds: float, rate: float = 200.0) -> list[float]:
    from benchmarks.outbox.app import Order, order_placed
    from benchmarks.outbox.probe import KEY

    await _create_tables(url)  # only this run's rows in the outbox
    settings = _settings(server)
    engine = create_async_engine(url)
    committed: dict[int, float] = {}
    count = int(seconds * rate)
    async with aioredis.Redis.from_url(server.url) as redis:
        await redis.delete(KEY)
        async with Emitter([order_placed], settings, outbox=engine if variant == "outbox" else None) as emitter:
            start = time.perf_counter()
            for n in range(count):
                await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
                async with AsyncSession(engine) as session:
                    session.add(Order(item="book"))
                    if variant == "outbox":
                        emitter.emit("order_placed", order=n, session=session)
                        await session.commit()
                        committed[n] = time.time()
                    else:
                        await session.commit()
                        committed[n] = time.time()
                        emitter.emit("order_placed", order=n)
            deadline = time.monotonic() + 60
            while await redis.llen(KEY) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        entries = [entry.decode().split() for entry in await redis.lrange(KEY, 0, -1)]
    await engine.dispose()
    if len(entries) < count:
        missing = sorted(set(range(count)) - {int(n) for n, _ in entries})
        raise RuntimeError(f"{len(entries)} of {count} listener runs recorded within 60 s; missing {missing[:20]}")
    return sorted((float(at) - committed[int(n)]) * 1000 for n, at in entries)
