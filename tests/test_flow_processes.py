"""Flow control with real worker processes (``taskemit worker``) on a real redis-server: a global
concurrency limit, a crash while holding slots, a rate, ordering by key with a retrying job,
priorities over a backlog. Each listener records when it started and ended
(tests/flow_listeners.py); each test prints the table it asserts on.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import flow_listeners
import pytest
from children import TESTS, child_env, served_by, stop
from redis import asyncio as aioredis

from taskemit import Emitter
from taskemit.monitor.deadletter import list_dead_letters
from taskemit.settings import Settings


@dataclass(frozen=True)
class Run:
    listener: str
    key: str
    n: int
    pid: int
    start: float
    end: float


def start(settings: Settings, target: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", f"flow_listeners:{target}", *args],
        env=child_env(settings, **env),
        cwd=TESTS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def runs(redis: aioredis.Redis, count: int, kind: Callable[[Run], bool], timeout: float = 60) -> list[Run]:
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for item in await redis.lrange(flow_listeners.RUNS, 0, -1):
            listener, key, n, pid, started, ended = item.decode().split(":")
            found.append(Run(listener, key, int(n), int(pid), float(started), float(ended)))
        if sum(map(kind, found)) >= count:
            return found
        assert time.monotonic() < deadline, f"{sum(map(kind, found))} of {count} runs after {timeout}s"
        await asyncio.sleep(0.05)


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at the same instant)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    return taskemit_settings.model_copy(update={"drain_on_exit": False})


async def test_concurrency_3_across_4_processes_of_50(settings: Settings, redis: aioredis.Redis) -> None:
    workers = [start(settings, "Limited", "--concurrency", "50") for _ in range(4)]
    try:
        await served_by(redis, settings, flow_listeners.limited.name, 4)
        async with Emitter([flow_listeners.limited], settings) as emitter:
            for n in range(200):
                emitter.emit("conc", n=n)
        done = await runs(redis, 200, lambda run: True)
        peak = peak_overlap([(run.start, run.end) for run in done])
        by_worker = Counter(run.pid for run in done)
        print(f"\n200 jobs, concurrency=3, 4 workers of 50: at most {peak} at once; runs per worker {dict(by_worker)}")
        assert sorted(run.n for run in done) == list(range(200))
        assert peak == 3  # the limit held, and was used
    finally:
        stop(*workers)


async def test_a_killed_workers_slots_come_back_within_a_lease(settings: Settings, redis: aioredis.Redis) -> None:
    lease = 2.0
    victim = start(settings, "Slots", FLOW_HOLD="1", TASKEMIT_LEASE_TTL=str(lease))
    other: subprocess.Popen[bytes] | None = None
    try:
        await served_by(redis, settings, flow_listeners.slot.name)
        async with Emitter([flow_listeners.slot], settings) as emitter:
            for n in range(2):
                await emitter.publish("slots", n=n)
            deadline = time.monotonic() + 20
            while await redis.llen("flow:started") < 2:  # the victim holds both slots
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            for n in range(2, 8):
                emitter.emit("slots", n=n)
        other = start(settings, "Slots", TASKEMIT_LEASE_TTL=str(lease))
        await served_by(redis, settings, flow_listeners.slot.name, 2)
        await asyncio.sleep(0.5)
        assert await redis.llen("flow:started") == 2  # the other worker is held back by the limit
        os.killpg(victim.pid, signal.SIGKILL)
        killed = time.time()
        victim.wait()
        done = await runs(redis, 8, lambda run: True, timeout=30)
        first_after = min(run.start for run in done)
        print(
            f"\nkilled holding 2 of 2 slots at {killed:.2f}; first run after: +{first_after - killed:.2f}s "
            f"(lease {lease}s); {len(done)} jobs done by pid {sorted({run.pid for run in done})}"
        )
        assert sorted(run.n for run in done) == list(range(8))  # nothing stuck, nothing lost
        assert {run.pid for run in done} == {other.pid}
        assert first_after - killed < lease + 1.5  # the slots came back within the lease (and a claim)
        assert peak_overlap([(run.start, run.end) for run in done]) <= 2
        assert (await list_dead_letters(redis, space=settings.keys)).items == []
    finally:
        stop(victim, *([other] if other else []))


async def test_a_rate_of_20_per_second_over_3_processes(settings: Settings, redis: aioredis.Redis) -> None:
    workers = [start(settings, "Rated") for _ in range(3)]
    try:
        await served_by(redis, settings, flow_listeners.rated.name, 3)
        async with Emitter([flow_listeners.rated], settings) as emitter:
            for n in range(200):
                emitter.emit("rated", n=n)
        done = await runs(redis, 200, lambda run: True, timeout=40)
        starts = sorted(run.start for run in done)
        busiest = max(sum(s <= t < s + 1 for t in starts) for s in starts)
        total = starts[-1] - starts[0]
        per_second = Counter(math.floor(t - starts[0]) for t in starts)
        print(
            f"\nrate 20/s (burst 1), 3 workers, 200 jobs: {total:.2f}s from first to last start; the busiest 1s "
            f"window had {busiest}; per second: {[per_second[s] for s in sorted(per_second)]}"
        )
        assert sorted(run.n for run in done) == list(range(200))
        # 20 per second and the bucket's burst of 1; one more for the time between a claim and its start
        assert busiest <= 20 + 1 + 1
        assert 199 / 20 * 0.95 <= total <= 199 / 20 * 1.25  # about 10 s: the rate, not slower
    finally:
        stop(*workers)


async def test_ordering_by_key_across_4_processes(settings: Settings, redis: aioredis.Redis) -> None:
    workers = [start(settings, "Ordered") for _ in range(4)]
    try:
        await served_by(redis, settings, flow_listeners.ordered.name, 4)
        async with Emitter([flow_listeners.ordered], settings) as emitter:
            for n in range(30):
                for k in range(20):
                    emitter.emit("ordered", key=f"k{k}", n=n)
        done = await runs(redis, 600, lambda run: run.listener == "ordered", timeout=90)
        by_key: defaultdict[str, list[Run]] = defaultdict(list)
        for run in done:
            by_key[run.key].append(run)
        overlapping_keys = peak_overlap([(run.start, run.end) for run in done if run.listener == "ordered"])
        failed = [run for run in done if run.listener == "ordered-failed"]
        print(
            f"\n20 keys x 30 events, 4 workers: {len(done)} runs by {len({r.pid for r in done})} workers; up to "
            f"{overlapping_keys} keys at once; k0 #5 failed {len(failed)}x before it ran"
        )
        for key, key_runs in by_key.items():
            key_runs.sort(key=lambda run: run.start)
            succeeded = [run.n for run in key_runs if run.listener == "ordered"]
            assert succeeded == list(range(30)), key  # in emit order
            assert all(a.end <= b.start for a, b in itertools.pairwise(key_runs)), key  # one at a time
        assert overlapping_keys > 1  # across keys, side by side
        assert len(failed) == 2
        k0 = by_key["k0"]
        six = next(run for run in k0 if run.n == 6)
        assert all(run.end <= six.start for run in k0 if run.n == 5)  # #6 waited for #5's retries
    finally:
        stop(*workers)


async def test_high_priority_jobs_overtake_a_backlog(settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([flow_listeners.low, flow_listeners.high], settings) as emitter:
        for n in range(1000):
            emitter.emit("backlog", n=n)
    workers = [start(settings, "Prioritized", "--concurrency", "5") for _ in range(2)]
    try:
        await runs(redis, 50, lambda run: run.listener == "low")  # the backlog is being worked off
        async with Emitter([flow_listeners.low, flow_listeners.high], settings) as emitter:
            for n in range(10):
                emitter.emit("urgent", n=n)
        done = await runs(redis, 1010, lambda run: True, timeout=90)
        last_high = max(run.start for run in done if run.listener == "high")
        lows_before = sum(run.start < last_high for run in done if run.listener == "low")
        print(f"\n1000 low jobs, then 10 of priority 10: {lows_before} low jobs had started when the last high did")
        assert sorted(run.n for run in done if run.listener == "high") == list(range(10))
        assert lows_before < 900
    finally:
        stop(*workers)
