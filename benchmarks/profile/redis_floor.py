"""The floor of Redis's work per job: what the data layout alone costs, beside taskemit's real cost.

    python -m benchmarks.profile.redis_floor                 # 5 rounds, 4,000 events of 3 jobs
    python -m benchmarks.profile.redis_floor --rounds 7 --base 1667930

``redis_cost`` measures Redis's CPU per job over a job's whole life (emit, claim, finish, records)
for a commit. This script runs the same scenario (4,000 events, three no-op listeners each, one
emitting process, then one worker until the queue is empty; a fresh redis-server per run) for the
base commit and for this checkout, and beside them two *floors*: three minimal scripts
(``floor/*.lua``) that do only the per-job writes and reads the data layout needs, with no
counters, histories, flow control, fencing of lost replies, error handling or worker upkeep,
driven from this process in batches of 100 (events per emit call, jobs per claim and finish):

- **arq layout**: arq's payload key, arq's queue (a sorted set), arq's in-progress key as the
  lease, plus taskemit's own ready and leased sets, event record and indexes: what a stock arq
  worker needs to run the jobs, and what taskemit needs to route, lease and record them;
- **without arq's keys**: the same with no arq queue and the leases as fields of one hash (what
  a layout of taskemit's own, no longer readable by a stock arq worker, would cost at least).

Rounds alternate between the four, so all see the same machine. Printed: the median CPU per
job of each (emit, drain, total) and its ratio to the base commit's total. A target below the
floor's ratio cannot be met by trimming bookkeeping: it needs a smaller data layout.

``--instructions`` runs each redis-server under valgrind's callgrind and counts the instructions
it ran per job instead of its CPU time: slower, but the same from run to run on a noisy machine
(one round is enough). Needs valgrind (Debian's ``valgrind`` package). With ``--new`` and
``--no-floors`` it measures one change: ``--base C~1 --new C``; ``--keep DIR`` keeps callgrind's
dumps (one file per phase boundary and server: ``callgrind_annotate --inclusive=yes`` reads one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from benchmarks.compare.machine import newest_redis_server
from benchmarks.profile import redis_cost
from taskemit.store.codec import META_KWARG, get_codec
from taskemit.store.redis_server import RedisServer

HERE = Path(__file__).resolve().parent / "floor"
BATCH = 100
LISTENERS = ("redis_cost_app:a", "redis_cost_app:b", "redis_cost_app:c")


def _scripts(client: redis.Redis) -> tuple[object, object, object]:
    return tuple(client.register_script((HERE / f"{name}.lua").read_text()) for name in ("emit", "claim", "finish"))  # type: ignore[return-value]


class Instructions:
    """A meter: redis-server runs under callgrind, and a reading is the instructions it ran so far."""

    def __init__(self, binary: str, into: Path) -> None:
        if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
            raise SystemExit("--instructions needs valgrind (Debian's valgrind package)")
        self.out = into / "callgrind"
        self.binary = into / "redis-server-under-callgrind"
        self.binary.write_text(
            f'#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={self.out}.%p {binary} "$@"\n'
        )
        self.binary.chmod(0o755)
        os.environ["REDIS_COST_PUBLISH_TIMEOUT"] = "600"  # (a redis-server under callgrind is slow)

    def __call__(self, client: redis.Redis) -> float:
        pid = client.info("server")["process_id"]
        dumps = sorted(self.out.parent.glob(f"{self.out.name}.{pid}.*"))
        subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while len(new := sorted(self.out.parent.glob(f"{self.out.name}.{pid}.*"))) == len(dumps):
            if time.monotonic() > deadline:
                raise SystemExit("callgrind wrote no dump in 30 s")
            time.sleep(0.05)
        time.sleep(0.2)  # (the newest dump being written)
        return float(sum(_total(dump) for dump in new))


def _total(dump: Path) -> int:
    """The instructions a callgrind dump counted (since the dump before it)."""
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return 0


def run_floor(
    events: int, arq: bool, binary: str | None, meter: redis_cost.Meter = redis_cost._cpu_us
) -> tuple[float, float]:
    """The floor scenario on a fresh redis-server: (emit, drain) per job, in ``meter``'s unit."""
    codec = get_codec("json")
    layout = "1" if arq else "0"
    jobs = events * len(LISTENERS)
    with RedisServer(binary=binary) as server:
        client = redis.Redis.from_url(server.url)
        emit, claim, finish = _scripts(client)
        before = meter(client)
        now = int(time.time() * 1000)
        for start in range(0, events, BATCH):
            args: list[object] = [layout, 86_400_000, 86_400]
            for n in range(start, min(start + BATCH, events)):
                event = uuid.uuid4().hex
                ids = [f"{{taskemit}}:{event}.{k}" for k in range(len(LISTENERS))]
                meta = {"event": event, "event_id": "ev3", "emitted": now}
                args += [event, now, json.dumps(dict(zip(LISTENERS, ids, strict=True)))]
                for listener, job_id in zip(LISTENERS, ids, strict=True):
                    args += [job_id, codec.encode_job(listener, (), {"n": n, META_KWARG: meta}, enqueue_ms=now)]
            emit(args=args)  # type: ignore[operator]
        middle = meter(client)
        token = f"floor#{uuid.uuid4().hex[:12]}"
        while True:
            claimed = claim(args=[layout, now + 10, BATCH, token, now + 30_000])  # type: ignore[operator]
            if not claimed:
                break
            args = [layout, token]
            for job_id, _payload, _try in claimed:
                started = time.time()
                outcome = {
                    "status": "complete",
                    "listener": LISTENERS[0],
                    "job_try": 1,
                    "max_tries": 5,
                    "started": started,
                    "finished": started + 0.0001,
                    "worker": "floor-worker-1",
                }
                args += [job_id, job_id[11:43], json.dumps(outcome)]
            finish(args=args)  # type: ignore[operator]
        after = meter(client)
        client.close()
    return (middle - before) / jobs, (after - middle) / jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile.redis_floor", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--base", default=redis_cost.BASE, help=f"the commit to compare with (default {redis_cost.BASE})"
    )
    parser.add_argument("--new", default="HEAD", help="the commit to measure against the base (default HEAD)")
    parser.add_argument("--no-floors", action="store_true", help="the two commits only (one change's effect)")
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-server", help="redis-server binary (default: the newest on PATH)")
    parser.add_argument(
        "--instructions", action="store_true", help="count redis-server's instructions (callgrind), not its CPU time"
    )
    parser.add_argument(
        "--keep", type=Path, help="with --instructions: keep callgrind's dumps in this directory (callgrind_annotate)"
    )
    args = parser.parse_args(argv)
    binary = args.redis_server or newest_redis_server()
    unit, scale = ("µs", 1.0) if not args.instructions else ("kIr", 1e-3)
    git = ["git", "-C", str(redis_cost.ROOT), "rev-parse", "--short", args.new]
    new = subprocess.run(git, check=True, capture_output=True, text=True).stdout.strip()
    rows: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="taskemit-redis-floor-") as tmp:
        app_dir = Path(tmp, "app")
        app_dir.mkdir()
        (app_dir / "redis_cost_app.py").write_text(redis_cost.APP)
        meter: redis_cost.Meter = redis_cost._cpu_us
        server = binary
        if args.instructions:
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
            meter = Instructions(binary, args.keep or Path(tmp))
            server = str(meter.binary)
        codes = {
            f"base {args.base}": redis_cost.export(args.base, Path(tmp, "base")),
            f"new {new}": redis_cost.export(new, Path(tmp, "new")),
        }
        print(f"redis-server: {binary}; {args.events} events x 3 jobs; rounds alternate")
        for round_ in range(args.rounds):
            for label, code in codes.items():
                emit, drain = redis_cost.run_once(code, app_dir, args.events, server, meter)
                jobs = args.events * len(LISTENERS)
                rows.setdefault(label, []).append((scale * emit.cpu_us / jobs, scale * drain.cpu_us / jobs))
            for label, arq in () if args.no_floors else (("floor, arq layout", True), ("floor, no arq keys", False)):
                emit_cost, drain_cost = run_floor(args.events, arq, server, meter)
                rows.setdefault(label, []).append((scale * emit_cost, scale * drain_cost))
            line = "  ".join(f"{label} {sum(r[-1]):5.1f}" for label, r in rows.items())
            print(f"round {round_ + 1}: {line} {unit}/job", flush=True)
    base_total = statistics.median(sum(r) for r in rows[f"base {args.base}"])
    what = "CPU" if not args.instructions else "instructions (thousands)"
    print(f"\nredis-server {what} per job (median of {args.rounds} rounds)")
    print(f"{'':<22} {'emit':>8} {'drain':>9} {'total':>9} {'/ base':>7}")
    for label, runs in rows.items():
        emit = statistics.median(r[0] for r in runs)
        drain = statistics.median(r[1] for r in runs)
        total = statistics.median(sum(r) for r in runs)
        print(f"{label:<22} {emit:8.1f} {drain:9.1f} {total:9.1f} {total / base_total:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
