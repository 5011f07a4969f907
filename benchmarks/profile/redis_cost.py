"""Redis's own CPU per job over a job's whole life, for two commits side by side.

    python -m benchmarks.profile.redis_cost                       # this checkout against 1667930
    python -m benchmarks.profile.redis_cost --base 1667930 --rounds 5 --events 4000

The scenario, as a new user meets it: 4,000 events of ``ev3``, whose three listeners do
nothing, emitted by one ``Emitter`` (the emit phase: ``emit()`` for each, ``publish()`` for the
last, so everything is stored when it returns); then one ``taskemit worker`` process started on
those listeners, with the default settings, until the queue is empty (the drain phase: claims,
finishes, records, counters, its start-up and heartbeats). Each run has a fresh redis-server.
redis-server's CPU (``INFO cpu``: used_cpu_user + used_cpu_sys, the whole process) is read
before and after each phase, and its ``INFO commandstats``: commands run inside scripts count
there too, so "commands per job" is everything Redis executed, divided by the jobs (12,000).

Both commits run the same scenario from their own code: ``git archive`` of the base commit (and
of HEAD, unless ``--code`` gives this checkout's work tree) into a temporary directory, put first
on PYTHONPATH of the emitting and the worker process (checked: the ``taskemit`` they import is
that directory's). The rounds alternate base/new, so both see the same machine. Printed: per
commit the median over the rounds of µs per job (emit, drain, total), commands per job, and
the commands that took Redis's time in each phase; last the ratio new/base.

The live variant (``--live-events``, 1,000 by default; 0 leaves it out) measures a job at low
load: the worker runs first, and the events come at ``--pace`` per second (500), so each claim
and finish carries a few jobs; one phase, from the first emit until the queue is empty.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from benchmarks.compare.machine import newest_redis_server
from taskemit.store.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
BASE = "1667930"
QUEUE = "bench"
LISTENERS = 3

#: the app both commits run: three no-op listeners of one event, and the worker's settings
APP = textwrap.dedent(
    '''
    """Three no-op listeners of ``ev3``; WorkerSettings from REDIS_COST_URL."""
    import os

    from taskemit import listener, load_settings, worker_settings


    @listener("ev3")
    async def a(n: int) -> None:
        pass


    @listener("ev3")
    async def b(n: int) -> None:
        pass


    @listener("ev3")
    async def c(n: int) -> None:
        pass


    def settings():
        return load_settings(
            redis_url=os.environ["REDIS_COST_URL"],
            queue_name="{queue}",
            emit_buffer_size=200_000,
            publish_timeout=float(os.environ.get("REDIS_COST_PUBLISH_TIMEOUT", "5")),
        )


    def __getattr__(name):
        if name == "WorkerSettings":
            return worker_settings([a, b, c], settings=settings())
        raise AttributeError(name)
    '''
).format(queue=QUEUE)

#: the emit phase, in a process of its own: prints where taskemit came from and the queue's key
EMIT = textwrap.dedent(
    """
    import asyncio, sys
    import taskemit
    from taskemit import Emitter
    from taskemit.store.keys import KeySpace
    import redis_cost_app as app

    async def main(events, pace):
        async with Emitter([app.a, app.b, app.c], app.settings()) as emitter:
            for n in range(events - 1):
                emitter.emit("ev3", n=n)
                if pace and n % 10 == 9:  # paced: ten events, then a pause
                    await asyncio.sleep(10 / pace)
            await emitter.publish("ev3", n=events - 1)

    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
    print(taskemit.__file__)
    print(KeySpace().queue("{queue}"))
    """
).format(queue=QUEUE)


@dataclass
class Phase:
    """What one phase of one run cost Redis."""

    cpu_us: float
    commands: Counter[str]
    usec: Counter[str]  # commandstats' own time per command


@dataclass
class Result:
    label: str
    emit_us: list[float] = field(default_factory=list)
    drain_us: list[float] = field(default_factory=list)
    emit_cmds: list[float] = field(default_factory=list)
    drain_cmds: list[float] = field(default_factory=list)
    emit_usec: Counter[str] = field(default_factory=Counter)
    drain_usec: Counter[str] = field(default_factory=Counter)
    emit_calls: Counter[str] = field(default_factory=Counter)
    drain_calls: Counter[str] = field(default_factory=Counter)
    live_us: list[float] = field(default_factory=list)
    live_cmds: list[float] = field(default_factory=list)

    def total(self) -> list[float]:
        return [e + d for e, d in zip(self.emit_us, self.drain_us, strict=True)]


def _cpu_us(client: redis.Redis) -> float:
    info = client.info("cpu")
    return (float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1e6


def _commandstats(client: redis.Redis) -> tuple[Counter[str], Counter[str]]:
    calls: Counter[str] = Counter()
    usec: Counter[str] = Counter()
    for name, stats in client.info("commandstats").items():
        command = name.removeprefix("cmdstat_")
        calls[command] = int(stats["calls"])
        usec[command] = int(stats["usec"])
    return calls, usec


#: what a phase is measured in: redis-server's CPU (µs), or another meter (see redis_floor)
Meter = Callable[[redis.Redis], float]


def _snapshot(client: redis.Redis, meter: Meter = _cpu_us) -> tuple[float, Counter[str], Counter[str]]:
    calls, usec = _commandstats(client)
    return meter(client), calls, usec


def _phase(
    before: tuple[float, Counter[str], Counter[str]], after: tuple[float, Counter[str], Counter[str]], own: Counter[str]
) -> Phase:
    calls = after[1] - before[1]
    calls.subtract(own)  # the benchmark's own reads (INFO, the polls)
    return Phase(after[0] - before[0], +calls, after[2] - before[2])


def export(commit: str, into: Path) -> Path:
    """``commit``'s files (from this repository) in ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _env(code: Path, app_dir: Path, url: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(app_dir)]), "REDIS_COST_URL": url}
    return {name: value for name, value in env.items() if not name.startswith("TASKEMIT_")}


def _emit(code: Path, app_dir: Path, env: dict[str, str], events: int, pace: float) -> str:
    """Run the emit phase's process; returns the queue's key."""
    emitted = subprocess.run(
        [sys.executable, "-c", EMIT, str(events), str(pace)], cwd=app_dir, env=env, capture_output=True, text=True
    )
    if emitted.returncode != 0:
        raise SystemExit(f"the emit phase failed ({code}):\n{emitted.stderr}")
    where, queue_key = emitted.stdout.split()[-2:]
    if not Path(where).resolve().is_relative_to(code.resolve()):
        raise SystemExit(f"the emit phase imported taskemit from {where}, not from {code}")
    return queue_key


@contextlib.contextmanager
def _worker(app_dir: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``taskemit worker`` on the app's listeners, with the default settings; SIGTERM at the end."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", "redis_cost_app:WorkerSettings"],
        cwd=app_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _wait_drained(client: redis.Redis, queue_key: str, worker: subprocess.Popen[str], own: Counter[str]) -> None:
    deadline = time.monotonic() + 600
    while True:
        own["zcard"] += 1
        if client.zcard(queue_key) == 0:
            return
        if worker.poll() is not None:
            raise SystemExit(f"the worker stopped:\n{worker.stderr.read() if worker.stderr else ''}")
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not drain the queue in 10 minutes")
        time.sleep(0.01)


def run_once(code: Path, app_dir: Path, events: int, binary: str | None, meter: Meter = _cpu_us) -> tuple[Phase, Phase]:
    """The scenario with ``code``'s taskemit on a fresh redis-server: (emit phase, drain phase)."""
    with RedisServer(binary=binary) as server:
        env = _env(code, app_dir, server.url)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        own: Counter[str] = Counter(info=3)  # INFO cpu + commandstats of the snapshot after
        before = _snapshot(client, meter)
        queue_key = _emit(code, app_dir, env, events, 0)
        middle = _snapshot(client, meter)
        emit = _phase(before, middle, own)
        own = Counter(info=3)
        with _worker(app_dir, env) as worker:
            _wait_drained(client, queue_key, worker, own)
            after = _snapshot(client, meter)
        client.close()
        return emit, _phase(middle, after, own)


def run_live(code: Path, app_dir: Path, events: int, pace: float, binary: str | None) -> Phase:
    """The live variant: the worker runs first, the events come at ``pace`` per second, so claims
    and finishes are small (a job's cost at low load); one phase, from the first emit until the
    queue is empty."""
    with RedisServer(binary=binary) as server:
        env = _env(code, app_dir, server.url)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        with _worker(app_dir, env) as worker:
            time.sleep(2.0)  # started: registered, scripts loaded, waiting for work
            own: Counter[str] = Counter(info=3)
            before = _snapshot(client)
            queue_key = _emit(code, app_dir, env, events, pace)
            _wait_drained(client, queue_key, worker, own)
            after = _snapshot(client)
        client.close()
        return _phase(before, after, own)


def _top(usec: Counter[str], calls: Counter[str], jobs: int, rounds: int, n: int = 8) -> str:
    total = sum(usec.values()) or 1
    rows = []
    for command, spent in usec.most_common(n):
        rows.append(f"{command} {100 * spent / total:.0f}% ({calls[command] / jobs / rounds:.2f}/job)")
    return ", ".join(rows)


def report(results: list[Result], events: int) -> None:
    jobs = events * LISTENERS
    rounds = len(results[0].emit_us)
    print(f"\nRedis CPU per job (median of {rounds} rounds; {events} events x {LISTENERS} listeners = {jobs} jobs)")
    print(
        f"{'commit':<22} {'emit µs':>8} {'drain µs':>9} {'total µs':>9} {'cmds/job emit':>14} {'drain':>6} {'total':>6}"
    )
    for result in results:
        emit_cmds, drain_cmds = statistics.median(result.emit_cmds), statistics.median(result.drain_cmds)
        emit_us, drain_us = statistics.median(result.emit_us), statistics.median(result.drain_us)
        print(
            f"{result.label:<22} {emit_us:8.1f} {drain_us:9.1f} {statistics.median(result.total()):9.1f} "
            f"{emit_cmds:14.2f} {drain_cmds:6.2f} {emit_cmds + drain_cmds:6.2f}"
        )
    base, new = results
    print(
        f"{'ratio new/base':<22} {statistics.median(new.emit_us) / statistics.median(base.emit_us):8.2f} "
        f"{statistics.median(new.drain_us) / statistics.median(base.drain_us):9.2f} "
        f"{statistics.median(new.total()) / statistics.median(base.total()):9.2f} "
        f"{statistics.median(new.emit_cmds) / statistics.median(base.emit_cmds):14.2f} "
        f"{statistics.median(new.drain_cmds) / statistics.median(base.drain_cmds):6.2f}"
    )
    print("\nwhere Redis's time went (commandstats' own time, share of the phase; calls per job)")
    for result in results:
        print(f"{result.label}")
        print(f"  emit:  {_top(result.emit_usec, result.emit_calls, jobs, rounds)}")
        print(f"  drain: {_top(result.drain_usec, result.drain_calls, jobs, rounds)}")
    if results[0].live_us:
        base, new = results
        print("\nlive: the worker running, events emitted at a pace (low load: small claims)")
        for result in results:
            print(
                f"{result.label:<22} {statistics.median(result.live_us):8.1f} µs/job "
                f"{statistics.median(result.live_cmds):6.2f} commands/job"
            )
        print(
            f"{'ratio new/base':<22} {statistics.median(new.live_us) / statistics.median(base.live_us):8.2f}        "
            f"{statistics.median(new.live_cmds) / statistics.median(base.live_cmds):6.2f}"
        )


def run(args: argparse.Namespace) -> int:
    binary = args.redis_server or newest_redis_server()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="taskemit-redis-cost-") as tmp:
        app_dir = Path(tmp, "app")
        app_dir.mkdir()
        (app_dir / "redis_cost_app.py").write_text(APP)
        base_code = export(args.base, Path(tmp, "base"))
        if args.code == "HEAD":
            new_code, new_label = export("HEAD", Path(tmp, "new")), f"new {head}"
        else:
            new_code, new_label = Path(args.code).resolve(), f"new {head}+work tree"
        results = [Result(f"base {args.base}"), Result(new_label)]
        print(f"redis-server: {binary}; rounds alternate base/new")
        for round_ in range(args.rounds):
            for result, code in zip(results, (base_code, new_code), strict=True):
                emit, drain = run_once(code, app_dir, args.events, binary)
                jobs = args.events * LISTENERS
                result.emit_us.append(emit.cpu_us / jobs)
                result.drain_us.append(drain.cpu_us / jobs)
                result.emit_cmds.append(sum(emit.commands.values()) / jobs)
                result.drain_cmds.append(sum(drain.commands.values()) / jobs)
                result.emit_usec.update(emit.usec)
                result.drain_usec.update(drain.usec)
                result.emit_calls.update(emit.commands)
                result.drain_calls.update(drain.commands)
                line = (
                    f"round {round_ + 1} {result.label:<22} emit {emit.cpu_us / jobs:6.1f} µs/job  "
                    f"drain {drain.cpu_us / jobs:6.1f} µs/job"
                )
                if args.live_events:
                    live = run_live(code, app_dir, args.live_events, args.pace, binary)
                    live_jobs = args.live_events * LISTENERS
                    result.live_us.append(live.cpu_us / live_jobs)
                    result.live_cmds.append(sum(live.commands.values()) / live_jobs)
                    line += f"  live {live.cpu_us / live_jobs:6.1f} µs/job"
                print(line, flush=True)
        report(results, args.events)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile.redis_cost", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--base", default=BASE, help=f"the commit to compare with (default {BASE})")
    parser.add_argument(
        "--code",
        default="HEAD",
        help="the new side: HEAD (default: the committed code) or a directory (e.g. . for the work tree)",
    )
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--live-events", type=int, default=1000, help="events of the live variant (0: leave it out; default 1000)"
    )
    parser.add_argument("--pace", type=float, default=500.0, help="events per second in the live variant")
    parser.add_argument("--redis-server", help="redis-server binary (default: the newest on PATH)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
