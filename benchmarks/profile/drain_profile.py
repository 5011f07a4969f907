"""Profile one taskemit worker process draining a queue, with py-spy.

What runs: a private redis-server; N jobs stored with no worker running (N/3 events of
"ev3", whose three listeners are the benchmark adapter's no-op async listeners a, b, c);
then one worker process, ``python -m taskemit worker
benchmarks.compare.systems.taskemit:WorkerSettings``, as the ``drain`` scenario of
``python -m benchmarks compare`` runs it. The drain runs twice: once without the profiler
(the unprofiled jobs/s), then, refilled, with ``py-spy record`` attached to the worker
from its first finished job until its last.

Reported (printed, and written to OUT/LABEL.json): jobs/s with and without the profiler;
the CPU share (of one core) of the worker and of redis-server over the profiled window; the
Redis commands that took the server's time (INFO commandstats, reset when py-spy starts);
the worker's main-thread samples by bucket of own time (asyncio, redis-py, JSON, taskemit,
arq, the listeners, waiting in epoll...); the top functions by own and by cumulative time.
OUT/LABEL.raw is py-spy's collapsed stacks (``flamegraph.pl OUT/LABEL.raw > LABEL.svg``).

Run from the repository root in the dev venv, with py-spy installed (``pip install py-spy``;
attaching needs root or ptrace permission)::

    python -m benchmarks.profile.drain_profile run --label after

The code profiled comes from ``--code DIR`` (default: this checkout), which supplies both
``taskemit`` and the benchmark adapter (the fill uses DIR's emitter too), run with DIR as
the working directory and on PYTHONPATH. The worker before the rewrite (commit 78624e3,
arq's polling loop), tuned as it had to be (max_jobs=100, poll_delay=0.01: that commit's
adapter reads BENCH_TUNED=1)::

    git worktree add /tmp/te-before 78624e3
    python -m benchmarks.profile.drain_profile run --label before --code /tmp/te-before --env BENCH_TUNED=1
    git worktree remove /tmp/te-before

Both side by side, as Markdown::

    python -m benchmarks.profile.drain_profile report /tmp/taskemit-profile/before.json /tmp/taskemit-profile/after.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import redis

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "bench:q"
DONE_KEY = "bench:done"  # benchmarks/compare/probe.py: the listeners count themselves here
WORKER_TARGET = "benchmarks.compare.systems.taskemit:WorkerSettings"
FILL = (
    "import asyncio, sys\n"
    "from benchmarks.compare import systems\n"
    "asyncio.run(systems.create('taskemit').fill(sys.argv[1], sys.argv[2], int(sys.argv[3]), 3))\n"
)
WHERE = "import benchmarks, taskemit; print(taskemit.__file__); print(benchmarks.__file__)"

#: own-time buckets: the first whose test matches a sample's innermost frame wins
IDLE = "waiting in epoll (Redis replies, or no work)"
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("redis-py (command packing, reply parsing, connections)", ("redis/", "hiredis")),
    ("JSON encode/decode", ("json/",)),
    ("pickle/msgpack", ("pickle", "msgpack")),
    ("taskemit: engine (loop, batches, job runs)", ("taskemit/engine/",)),
    ("taskemit: store (codec, scripts, records)", ("taskemit/store/",)),
    ("taskemit: other", ("taskemit/",)),
    ("arq internals", ("arq/",)),
    ("listeners + probe (benchmark code)", ("benchmarks/",)),
    ("asyncio / event loop machinery", ("asyncio/", "selectors.py", "contextvars", "heapq")),
    ("logging", ("logging/",)),
)
OTHER = "other (stdlib, builtins)"


# -- running ------------------------------------------------------------------------------


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Drain:
    """One code directory's fill and worker against one Redis."""

    def __init__(self, args: argparse.Namespace, url: str, client: redis.Redis, redis_pid: int) -> None:
        self.args = args
        self.code = Path(args.code).resolve()
        self.client = client
        self.redis_pid = redis_pid
        extra = dict(item.split("=", 1) for item in args.env)
        self.env = {
            **os.environ,
            "BENCH_REDIS_URL": url,
            "BENCH_QUEUE": QUEUE,
            "PYTHONPATH": str(self.code),
            **extra,
        }
        self.log = Path(args.out) / f"{args.label}-worker.log"

    def check_code(self) -> list[str]:
        """Where the children import taskemit and the adapter from (must be the code directory)."""
        out = subprocess.run(
            [sys.executable, "-c", WHERE], cwd=self.code, env=self.env, capture_output=True, text=True, check=True
        ).stdout.split()
        for path in out:
            if not Path(path).resolve().is_relative_to(self.code):
                raise RuntimeError(f"the children import {path}, not from {self.code}")
        return out

    def fill(self) -> float:
        self.client.flushall()
        start = time.perf_counter()
        command = [sys.executable, "-c", FILL, self.env["BENCH_REDIS_URL"], QUEUE, str(self.args.jobs)]
        subprocess.run(command, cwd=self.code, env=self.env, check=True, timeout=600)
        return time.perf_counter() - start

    def done(self) -> int:
        return int(self.client.get(DONE_KEY) or 0)

    def wait_done(self, target: int, worker: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
        deadline = time.monotonic() + timeout
        while True:
            count = self.done()
            if count >= target:
                return count, time.perf_counter()
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count}/{target} jobs done after {timeout:.0f}s; see {self.log}")
            time.sleep(0.005)

    def run(self, profile: bool) -> dict[str, Any]:
        jobs = self.args.jobs - self.args.jobs % 3
        fill_s = self.fill()
        command = [sys.executable, "-m", "taskemit", "worker", WORKER_TARGET]
        with self.log.open("ab") as log:
            log.write(f"$ {' '.join(command)}  (cwd {self.code}, profile={profile})\n".encode())
            log.flush()
            started = time.perf_counter()
            worker = subprocess.Popen(
                command, cwd=self.code, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        spy: subprocess.Popen[bytes] | None = None
        try:
            first_count, first_at = self.wait_done(1, worker, 120.0)
            raw = Path(self.args.out) / f"{self.args.label}.raw"
            if profile:
                spy_command = [
                    *(self.args.py_spy, "record", "--pid", str(worker.pid), "--rate", str(self.args.rate)),
                    *("--format", "raw", "--idle", "--threads", "--function", "-o", str(raw)),
                ]
                spy = subprocess.Popen(spy_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.client.config_resetstat()
            window_count, window_at = self.done(), time.perf_counter()
            cpu_worker, cpu_redis = _cpu(worker.pid), _cpu(self.redis_pid)
            last_count, last_at = self.wait_done(jobs, worker, self.args.timeout)
            cpu_worker, cpu_redis = _cpu(worker.pid) - cpu_worker, _cpu(self.redis_pid) - cpu_redis
            commandstats = self.client.info("commandstats")
            spy_output = ""
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
                spy_output = spy.communicate(timeout=60)[0].decode(errors="replace")
        finally:
            if spy is not None and spy.poll() is None:
                spy.kill()
            _stop(worker)
        window_s = last_at - window_at
        result: dict[str, Any] = {
            "jobs": jobs,
            "fill_s": round(fill_s, 2),
            "worker_start_to_first_job_s": round(first_at - started, 3),
            "jobs_per_s_from_first_job": (last_count - first_count) / (last_at - first_at),
            "window_s": window_s,
            "window_jobs": last_count - window_count,
            "jobs_per_s_window": (last_count - window_count) / window_s,
            "worker_cpu_share": cpu_worker / window_s,
            "redis_cpu_share": cpu_redis / window_s,
            "redis_commands": _commands(commandstats, last_count - window_count),
        }
        if profile:
            result["py_spy"] = spy_output.strip().splitlines()[-2:]
            result["raw"] = str(raw)
        return result


def _commands(stats: dict[str, Any], jobs: int) -> list[dict[str, Any]]:
    """Redis commands by server time during the window, with their cost per job run.

    A script's EVALSHA time includes the commands it runs, which are listed on their own too.
    """
    rows = []
    for name, entry in stats.items():
        command = name.removeprefix("cmdstat_")
        if command.startswith("config") or command == "info":
            continue
        rows.append(
            {
                "command": command,
                "calls": int(entry["calls"]),
                "usec": float(entry["usec"]),
                "usec_per_job": float(entry["usec"]) / jobs if jobs else 0.0,
                "calls_per_1000_jobs": 1000 * int(entry["calls"]) / jobs if jobs else 0.0,
            }
        )
    return sorted(rows, key=lambda row: -row["usec"])[:10]


def _commit(code: Path) -> str:
    """The code directory's commit, marked ``+changes`` when taskemit/ differs from it."""
    git = ["git", "-C", str(code)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "taskemit"], capture_output=True, text=True).stdout
    return (head or "?") + (" +changes" if dirty.strip() else "")


def run(args: argparse.Namespace) -> int:
    from benchmarks.compare.machine import newest_redis_server
    from taskemit.store.redis_server import RedisServer

    Path(args.out).mkdir(parents=True, exist_ok=True)
    with RedisServer(binary=newest_redis_server()) as server:
        client = redis.Redis.from_url(server.url)
        info = client.info("server")
        drain = Drain(args, server.url, client, int(info["process_id"]))
        where = drain.check_code()
        plain = drain.run(profile=False)
        profiled = drain.run(profile=True)
        client.close()
    summary = {
        "label": args.label,
        "code": str(drain.code),
        "imports": where,
        "commit": _commit(drain.code),
        "redis_version": info["redis_version"],
        "env": args.env,
        "rate_hz": args.rate,
        "unprofiled": plain,
        "profiled": profiled,
        "profile": analyze(Path(profiled["raw"]), args.top),
    }
    path = Path(args.out) / f"{args.label}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(markdown([summary]))
    print(f"written: {path}")
    return 0


# -- reading py-spy's raw output ----------------------------------------------------------


def _file(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``path/file.py``."""
    start = frame.rfind(" (")
    return frame[start + 2 : frame.rfind(":")] if start >= 0 else ""


def _bucket(stack: list[str]) -> str:
    leaf = stack[-1]
    if leaf.split(" (")[0].endswith(".select") and _file(leaf) == "selectors.py":
        return IDLE
    path = _file(leaf)
    for name, needles in BUCKETS:
        if any(needle in path for needle in needles):
            return name
    return OTHER


def _caller_chain(stack: list[str], depth: int = 3) -> str:
    """The ``depth`` frames above the innermost one, innermost first, without line numbers."""
    return " <- ".join(frame.split(" (")[0] for frame in reversed(stack[-1 - depth : -1]))


def analyze(raw: Path, top: int) -> dict[str, Any]:
    """Main-thread samples of py-spy's raw output: buckets, the top functions, their callers."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text:
            continue
        count = int(count_text)
        thread, *stack = stack_text.split(";")
        name = thread.partition(": ")[2] or thread
        threads[name] += count
        if name != "MainThread" or not stack:
            continue
        total += count
        own[stack[-1]] += count
        callers.setdefault(stack[-1], Counter())[_caller_chain(stack)] += count
        for frame in set(stack):
            cumulative[frame] += count
        buckets[_bucket(stack)] += count
    # frames on (nearly) every sample are the entry chain (runpy, click, the loop): no information
    chain = {frame for frame, count in cumulative.items() if count >= 0.98 * total}
    top_own = own.most_common(top)
    return {
        "main_thread_samples": total,
        "busy_samples": total - buckets[IDLE],
        "threads": dict(threads),
        "buckets": dict(buckets.most_common()),
        "own": top_own,
        "cumulative": [(frame, count) for frame, count in cumulative.most_common() if frame not in chain][:top],
        "callers": {frame: callers[frame].most_common(2) for frame, _ in top_own[:6]},
    }


# -- Markdown -----------------------------------------------------------------------------


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _short(frame: str, width: int = 90) -> str:
    return frame if len(frame) <= width else frame[: width - 1] + "…"


def markdown(summaries: list[dict[str, Any]]) -> str:
    """The summaries side by side: figures, buckets, then each one's top functions."""
    labels = [s["label"] for s in summaries]
    lines = ["| | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]

    def row(title: str, values: list[str]) -> None:
        lines.append(f"| {title} | " + " | ".join(values) + " |")

    row("code (commit)", [s.get("commit", "?") for s in summaries])
    row("redis-server", [s.get("redis_version", "?") for s in summaries])
    row("jobs drained", [f"{s['profiled']['jobs']:,}" for s in summaries])
    row(
        "jobs/s, no profiler (first job -> last)",
        [f"{s['unprofiled']['jobs_per_s_from_first_job']:,.0f}" for s in summaries],
    )
    row("jobs/s, profiled window", [f"{s['profiled']['jobs_per_s_window']:,.0f}" for s in summaries])
    row("profiled window, s", [f"{s['profiled']['window_s']:.2f}" for s in summaries])
    row("worker CPU, % of a core", [f"{100 * s['profiled']['worker_cpu_share']:.0f}%" for s in summaries])
    row("redis-server CPU, % of a core", [f"{100 * s['profiled']['redis_cpu_share']:.0f}%" for s in summaries])
    row(
        "redis-server CPU, no profiler",
        [f"{100 * s['unprofiled']['redis_cpu_share']:.0f}%" for s in summaries],
    )
    row("main-thread samples (rate Hz)", [f"{s['profile']['main_thread_samples']} ({s['rate_hz']})" for s in summaries])
    names = [IDLE, *(name for name, _ in BUCKETS), OTHER]
    lines += ["", "Own time of the worker's main thread by bucket: % of all its samples (% of its busy ones):", ""]
    lines += ["| bucket | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for name in names:
        counts = [s["profile"]["buckets"].get(name, 0) for s in summaries]
        if any(counts):
            cells = []
            for count, s in zip(counts, summaries, strict=True):
                busy = "" if name == IDLE else f" ({_pct(count, s['profile']['busy_samples'])})"
                cells.append(_pct(count, s["profile"]["main_thread_samples"]) + busy)
            row(name, cells)
    title = "Redis server time by command during the profiled window"
    lines += ["", f"{title} (a script's EVALSHA includes the commands it runs, listed too):", ""]
    for s in summaries:
        lines += [f"{s['label']}:", "", "| command | calls / 1000 jobs | server us / job |", "|---|---:|---:|"]
        for c in s["profiled"]["redis_commands"][:8]:
            per_job = f"{c['usec_per_job']:.2f}"
            lines.append(f"| {c['command']} | {c['calls_per_1000_jobs']:,.1f} | {per_job} |")
        lines.append("")
    for s in summaries:
        total = s["profile"]["main_thread_samples"]
        lines += [f"Top functions, {s['label']} (% of main-thread samples):", ""]
        lines += ["| own | function | | cumulative | function |", "|---:|---|---|---:|---|"]
        for own, cumulative in zip(s["profile"]["own"], s["profile"]["cumulative"], strict=False):
            mine = f"| {_pct(own[1], total)} | `{_short(own[0])}` |"
            lines.append(f"{mine} | {_pct(cumulative[1], total)} | `{_short(cumulative[0])}` |")
        lines += ["", f"Callers of the top functions, {s['label']} (% of main-thread samples):", ""]
        for frame, chains in s["profile"]["callers"].items():
            called = "; ".join(f"{chain} {_pct(count, total)}" for chain, count in chains)
            lines.append(f"- `{_short(frame, 70)}` <- {called}")
        lines.append("")
    return "\n".join(lines)


def report(args: argparse.Namespace) -> int:
    print(markdown([json.loads(Path(path).read_text()) for path in args.summaries]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile.drain_profile", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="fill, drain without and with py-spy, summarize")
    one.add_argument("--label", required=True, help="name of the run: OUT/LABEL.json, OUT/LABEL.raw")
    one.add_argument("--code", default=str(ROOT), help="checkout whose taskemit and adapter run (default: this one)")
    one.add_argument("--env", action="append", default=[], help="NAME=VALUE for the fill and the worker")
    one.add_argument("--jobs", type=int, default=30_000, help="jobs queued before the worker starts")
    one.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    one.add_argument("--timeout", type=float, default=300.0, help="seconds a drain may take")
    one.add_argument("--top", type=int, default=12, help="functions listed")
    one.add_argument("--out", default="/tmp/taskemit-profile", help="directory of the outputs")
    one.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy", help="the py-spy binary")
    both = commands.add_parser("report", help="summaries side by side, as Markdown")
    both.add_argument("summaries", nargs="+", help="LABEL.json files of earlier runs")
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
