"""What flow control costs, and how well a binding limit is used: ``python -m benchmarks.flow_limits``.

Two measurements, on a private redis-server (the newest on PATH), with ``taskemit worker``
processes as users start them (benchmarks/flow_app.py has the listeners):

1. **drain, a limit that does not bind**: N jobs (N/3 events of three no-op listeners) are
   stored with no worker running, then one worker process drains them; jobs/s from the first job
   done to the last, as the ``drain`` scenario of ``python -m benchmarks compare`` measures it,
   and the CPU time per job of the worker and of redis-server. The same with every listener
   declaring ``concurrency=10_000``. The two alternate round by round (the order flips every
   round); the ratio is the median of the rounds' ratios. Target: >= 0.9.
2. **occupancy of a binding limit**: one listener with ``concurrency=8`` whose jobs sleep 20,
   50 or 100 ms, M jobs stored, two worker processes of ``--concurrency 50`` each. Occupancy is
   the time the listener ran, summed over its runs, over 8 x the time from the first start to
   the last end: 1.0 means no slot was ever idle while jobs waited. Target: >= 0.95. Beside it,
   the same listener without a limit in two workers of ``--concurrency 4``: the same 8 slots,
   bounded by the workers themselves, so what is left is the worker's own work per job, and
   the ratio is what the limit costs.

    python -m benchmarks.flow_limits            # 10 drain rounds of 9,000 jobs; 2,000 jobs per occupancy
    python -m benchmarks.flow_limits --quick    # 4 rounds of 6,000 jobs; 800 jobs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from redis import asyncio as aioredis

from benchmarks import flow_app
from benchmarks.compare import probe
from benchmarks.compare.machine import newest_redis_server
from taskemit import Emitter
from taskemit.store.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def start_worker(url: str, variant: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TASKEMIT_")}
    environ.update(BENCH_REDIS_URL=url, BENCH_FLOW=variant, PYTHONPATH=str(ROOT), **env)
    return subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", "benchmarks.flow_app:WorkerSettings", *args],
        env=environ,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


async def fill(url: str, variant: str, events: int, event: str = "ev3") -> None:
    async with Emitter(flow_app.listeners(variant), flow_app.settings(url)) as emitter:
        for n in range(events):
            if n % 5000 == 4999:  # keep the buffer bounded
                await emitter.publish(event, n=n, **({"t": 0.0} if event == "ev3" else {}))
            else:
                emitter.emit(event, n=n, **({"t": 0.0} if event == "ev3" else {}))


async def redis_cpu(redis: aioredis.Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def drain(redis: aioredis.Redis, url: str, variant: str, jobs: int) -> dict[str, float]:
    """One worker process draining ``jobs`` stored jobs of ``variant``: jobs/s, and the CPU time
    per 1000 jobs of the worker and of redis-server (steadier than wall time on a shared machine)."""
    await redis.flushdb()
    await fill(url, variant, jobs // 3)
    redis_before = await redis_cpu(redis)
    worker = start_worker(url, variant)
    try:
        first_at = last_at = None
        first_count = count = 0
        deadline = time.monotonic() + 300
        while count < jobs:
            assert time.monotonic() < deadline, f"{variant}: {count}/{jobs} jobs done"
            assert worker.poll() is None, f"the {variant} worker exited with {worker.returncode}"
            now = time.perf_counter()
            seen = int(await redis.get(probe.DONE_KEY) or 0)
            if seen and first_at is None:
                first_at, first_count = now, seen
            if seen > count:
                count, last_at = seen, now
            await asyncio.sleep(0.005)
        assert first_at is not None and last_at is not None and last_at > first_at
        times = psutil.Process(worker.pid).cpu_times()
        redis_after = await redis_cpu(redis)
    finally:
        stop(worker)
    return {
        "rate": (count - first_count) / (last_at - first_at),
        "worker_ms": (times.user + times.system) * 1e6 / jobs,
        "redis_ms": (redis_after - redis_before) * 1e6 / jobs,
    }


async def occupancy(
    redis: aioredis.Redis, url: str, variant: str, slots: int, sleep_ms: int, jobs: int
) -> dict[str, Any]:
    """``variant`` "slots": a limit of ``slots`` in 2 workers of 50; "unlimited": no limit in 2
    workers of ``slots / 2``."""
    await redis.flushdb()
    env = {"BENCH_SLOTS": str(slots), "BENCH_SLEEP_MS": str(sleep_ms)}
    os.environ.update(env)  # the fill declares the same listener
    await fill(url, variant, jobs, event="slow")
    per_worker = "50" if variant == "slots" else str(slots // 2)
    workers = [start_worker(url, variant, "--concurrency", per_worker, **env) for _ in range(2)]
    try:
        deadline = time.monotonic() + 300
        while await redis.llen(flow_app.RUNS_KEY) < jobs:
            assert time.monotonic() < deadline
            assert all(w.poll() is None for w in workers)
            await asyncio.sleep(0.05)
    finally:
        for worker in workers:
            stop(worker)
    runs = []
    for item in await redis.lrange(flow_app.RUNS_KEY, 0, -1):
        started, ended = item.decode().split(":")
        runs.append((float(started), float(ended)))
    first, last = min(s for s, _ in runs), max(e for _, e in runs)
    busy = sum(e - s for s, e in runs)
    edges = sorted([(s, 1) for s, _ in runs] + [(e, -1) for _, e in runs])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return {"occupancy": busy / (slots * (last - first)), "seconds": last - first, "peak": peak}


async def main(quick: bool, rounds: int | None, jobs: int | None) -> None:
    binary = newest_redis_server()
    rounds = rounds or (4 if quick else 10)
    jobs = jobs or (6_000 if quick else 9_000)
    slot_jobs = 800 if quick else 2_000
    with RedisServer(binary=binary) as server:
        redis = aioredis.Redis.from_url(server.url)
        print(f"redis-server {binary or '(the test default)'}; {os.cpu_count()} CPUs; commit {_commit()}")
        results: dict[str, list[dict[str, float]]] = {"plain": [], "limit": []}
        print(f"\n1. drain of {jobs:,} stored jobs by one worker process: jobs/s (first done to last done), and CPU")
        print("   ms per 1000 jobs of the worker process (including its start-up) and of redis-server")
        head = f"{'jobs/s':>8} {'worker':>7} {'redis':>6}"
        print(f"{'round':>6}  {'no limits':^23}  {'concurrency=10_000':^23}  {'ratio':>6}")
        print(f"{'':>6}  {head}  {head}  {'jobs/s':>6}")
        for r in range(rounds):
            order = ("plain", "limit") if r % 2 == 0 else ("limit", "plain")
            for variant in order:
                results[variant].append(await drain(redis, server.url, variant, jobs))
            a, b = results["plain"][-1], results["limit"][-1]
            print(f"{r + 1:>6}  {_row(a)}  {_row(b)}  {b['rate'] / a['rate']:>6.3f}")
        med = {v: {k: statistics.median(x[k] for x in rows) for k in rows[0]} for v, rows in results.items()}
        ratios = [b["rate"] / a["rate"] for a, b in zip(results["plain"], results["limit"], strict=True)]
        print(f"{'median':>6}  {_row(med['plain'])}  {_row(med['limit'])}  {statistics.median(ratios):>6.3f}")
        print(
            f"the limit's jobs/s over none's (median of the rounds' ratios): {statistics.median(ratios):.3f} "
            f"(target >= 0.9); CPU per job, limit over none: worker "
            f"{med['limit']['worker_ms'] / med['plain']['worker_ms']:.3f}, redis "
            f"{med['limit']['redis_ms'] / med['plain']['redis_ms']:.3f}"
        )

        slots = 8
        print(f"\n2. {slots} slots, {slot_jobs:,} jobs: occupancy (run time / slots x first start to last end)")
        print(f"{'job':>6}  {'concurrency=8, 2 x 50':>21}  {'no limit, 2 x 4':>15}  {'ratio':>6}  {'at most':>7}")
        for sleep_ms in (20, 50, 100):
            limited = await occupancy(redis, server.url, "slots", slots, sleep_ms, slot_jobs)
            free = await occupancy(redis, server.url, "unlimited", slots, sleep_ms, slot_jobs)
            print(
                f"{sleep_ms:>4}ms  {limited['occupancy']:>21.3f}  {free['occupancy']:>15.3f}  "
                f"{limited['occupancy'] / free['occupancy']:>6.3f}  {limited['peak']:>7}"
            )
        print("(target: occupancy >= 0.95. What a slot loses is the worker's own work per job, with or without a")
        print(" limit: settling it and claiming the next in one round trip, decoding, starting the task)")
        await redis.aclose()


def _row(result: dict[str, float]) -> str:
    return f"{result['rate']:>8,.0f} {result['worker_ms']:>7.1f} {result['redis_ms']:>6.1f}"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flow_limits", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and jobs")
    parser.add_argument("--rounds", type=int, help="drain rounds of each variant")
    parser.add_argument("--jobs", type=int, help="jobs per drain")
    options = parser.parse_args()
    asyncio.run(main(options.quick, options.rounds, options.jobs))
