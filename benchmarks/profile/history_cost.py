"""Redis CPU per drained job with the history on and off (and, with ``--before DIR``, for the code
before it, which kept per-minute rate hashes instead).

What runs: a private redis-server; per round and variant, N jobs stored with no worker running
(N/3 events of "ev3", three no-op listeners), then one ``taskemit worker`` process drains them,
as ``drain_profile`` does without the profiler. Redis's CPU (its process's user + system time)
over the drain, from the first job done to the last, divided by the jobs done in that window,
is the figure (Redis's own ``used_cpu_user`` + ``used_cpu_sys``). Variants run in turn, round
after round, each leading in turn, so the machine's noise falls on all of them; the median round
of each is reported, with its ratio to "history off".

Run from the repository root in the dev venv::

    python -m benchmarks.profile.history_cost --rounds 5 --jobs 30000

and against the code before the history (``--before``: a checkout of it, e.g.
``git archive main | tar -x -C /tmp/te-before``)::

    python -m benchmarks.profile.history_cost --before /tmp/te-before
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.profile.drain_profile import ROOT, WORKER_TARGET, Drain, _commands, _commit, _cpu, _stop


def _variant(args: argparse.Namespace, label: str, code: Path, env: list[str]) -> argparse.Namespace:
    return argparse.Namespace(
        label=label,
        code=str(code),
        env=env,
        jobs=args.jobs,
        timeout=args.timeout,
        out=args.out,
    )


def _redis_cpu(client: redis.Redis) -> float:
    """redis-server's user + system CPU seconds so far (getrusage, to the microsecond)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _round(drain: Drain) -> dict[str, Any]:
    """One fill and drain; the CPU of redis-server and of the worker from the first job done to the last."""
    jobs = drain.args.jobs - drain.args.jobs % 3
    drain.fill()
    command = [sys.executable, "-m", "taskemit", "worker", WORKER_TARGET]
    with drain.log.open("ab") as log:
        worker = subprocess.Popen(
            command, cwd=drain.code, env=drain.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        first, _ = drain.wait_done(1, worker, 120.0)
        drain.client.config_resetstat()
        redis_cpu, worker_cpu, started = _redis_cpu(drain.client), _cpu(worker.pid), time.perf_counter()
        last, ended = drain.wait_done(jobs, worker, drain.args.timeout)
        redis_cpu, worker_cpu = _redis_cpu(drain.client) - redis_cpu, _cpu(worker.pid) - worker_cpu
        commands = _commands(drain.client.info("commandstats"), last - first)
    finally:
        _stop(worker)
    done = last - first
    return {
        "redis_us_per_job": 1e6 * redis_cpu / done,
        "worker_us_per_job": 1e6 * worker_cpu / done,
        "jobs_per_s": done / (ended - started),
        "commands": commands,
    }


def write_cost(url: str, listeners: int = 4, calls: int = 2000) -> float:
    """Redis CPU microseconds per history write (one ``history.lua`` call, a worker's tallies of
    ``listeners`` listeners over two minutes with a sample of the gauges), over ``calls`` calls."""
    import asyncio

    from redis import asyncio as aioredis

    from taskemit import load_settings
    from taskemit.monitor.history import Gauges, HistoryTally, write_history

    settings = load_settings(redis_url=url)
    gauges = Gauges(queued={"default": 10}, listener_queued={f"l{n}": 3 for n in range(listeners)}, workers=2, busy=5)

    async def main() -> float:
        client = aioredis.Redis.from_url(url)
        before = _redis_cpu(redis.Redis.from_url(url))
        now = time.time()
        for _ in range(calls):
            tally = HistoryTally()
            for n in range(listeners):
                for second in (0.0, 60.0):  # a write covers at most two minutes at the default interval
                    tally.add(f"l{n}", ("succeeded",), now - second, 0.002, 0.01)
                    tally.add(f"l{n}", ("failed", "retried"), now - second, 0.2, 0.5, "builtins.ValueError", "no")
            await write_history(client, settings, tally, gauges, now)
        spent = _redis_cpu(redis.Redis.from_url(url)) - before
        await client.aclose()
        return 1e6 * spent / calls

    return asyncio.run(main())


def run(args: argparse.Namespace) -> int:
    from benchmarks.compare.machine import newest_redis_server
    from taskemit.store.redis_server import RedisServer

    Path(args.out).mkdir(parents=True, exist_ok=True)
    variants = [
        _variant(args, "history on", ROOT, ["TASKEMIT_HISTORY=true"]),
        _variant(args, "history off", ROOT, ["TASKEMIT_HISTORY=false"]),
    ]
    if args.before:
        variants.append(_variant(args, "before (rate hashes)", Path(args.before), []))
    rounds: dict[str, list[dict[str, Any]]] = {v.label: [] for v in variants}
    with RedisServer(binary=newest_redis_server()) as server:
        client = redis.Redis.from_url(server.url)
        info = client.info("server")
        drains = [Drain(v, server.url, client, int(info["process_id"])) for v in variants]
        for drain in drains:
            drain.check_code()
        for n in range(args.rounds):
            for drain in drains[n % len(drains) :] + drains[: n % len(drains)]:  # each variant leads in turn
                found = _round(drain)
                rounds[drain.args.label].append(found)
                print(
                    f"round {n + 1} {drain.args.label}: Redis {found['redis_us_per_job']:.2f} us/job, "
                    f"worker {found['worker_us_per_job']:.1f} us/job, {found['jobs_per_s']:,.0f} jobs/s",
                    flush=True,
                )
        per_write = write_cost(server.url)
        client.close()
    summary = {
        "history_write_redis_us": per_write,
        "redis_version": info["redis_version"],
        "jobs_per_round": args.jobs,
        "rounds": args.rounds,
        "code": {drain.args.label: _commit(drain.code) for drain in drains},
        "variants": rounds,
    }
    (Path(args.out) / "history_cost.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(report(summary))
    return 0


def _median_round(found: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(found, key=lambda r: r["redis_us_per_job"])
    return ordered[len(ordered) // 2]


def report(summary: dict[str, Any]) -> str:
    variants = summary["variants"]
    base = statistics.median(r["redis_us_per_job"] for r in variants["history off"])
    lines = [
        f"redis-server {summary['redis_version']}, {summary['jobs_per_round']:,} jobs per drain, "
        f"{summary['rounds']} rounds per variant (median round shown)",
        "",
        "| variant | code | Redis CPU, us per job | vs history off | worker CPU, us per job | jobs/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, found in variants.items():
        redis_us = statistics.median(r["redis_us_per_job"] for r in found)
        worker_us = statistics.median(r["worker_us_per_job"] for r in found)
        rate = statistics.median(r["jobs_per_s"] for r in found)
        code = summary["code"][label]
        lines.append(f"| {label} | {code} | {redis_us:.2f} | {redis_us / base:.3f} | {worker_us:.1f} | {rate:,.0f} |")
    per_write = summary.get("history_write_redis_us")
    if per_write is not None:
        rate = statistics.median(r["jobs_per_s"] for r in variants["history on"])
        per_job = per_write / (5.0 * rate)  # one write per worker per history_interval (5 s by default)
        lines += [
            "",
            f"One history write (4 listeners, two minutes, a sample of the gauges) costs Redis {per_write:.0f} us; "
            f"one per 5 s at {rate:,.0f} jobs/s is {per_job:.4f} us per job "
            f"({100 * per_job / base:.3f}% of history off).",
        ]
    lines += ["", "Redis commands by server time in each variant's median round (per 1000 jobs, us per job):", ""]
    for label, found in variants.items():
        commands = _median_round(found)["commands"][:6]
        row = ", ".join(
            f"{c['command']} {c['calls_per_1000_jobs']:,.1f} ({c['usec_per_job']:.2f} us)" for c in commands
        )
        lines.append(f"- {label}: {row}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile.history_cost", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--rounds", type=int, default=5, help="drains per variant")
    parser.add_argument("--jobs", type=int, default=30_000, help="jobs queued before each drain")
    parser.add_argument("--before", help="a checkout of the code before the history, run as a third variant")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a drain may take")
    parser.add_argument("--out", default="/tmp/taskemit-profile", help="directory of the JSON summary")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
