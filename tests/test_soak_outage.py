"""Soak (slow): 20,000 events x 3 listeners through 2 worker processes, one worker SIGKILLed and
restarted every few seconds, Redis restarted once (appendonly on) and frozen for 5 s while the
emitting goes on. Afterwards every (event, listener) pair has run at least once, nothing is left
queued or running, and interrupted jobs ran again within 15 s. Duplicates are counted and
printed. Run with ``python -m pytest -m slow -s``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import outage_listeners
import pytest
from children import TESTS, child_env
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from taskemit import Emitter
from taskemit.settings import Settings
from taskemit.store.redis_server import RedisServer

pytestmark = pytest.mark.slow
EVENTS = 20_000
LISTENERS = ("reserve", "receipt", "ledger")


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", "outage_listeners:WorkerSettings"],
        env=child_env(settings),
        cwd=TESTS,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def restart_gracefully(server: RedisServer) -> None:
    """SHUTDOWN (the AOF is written out), then start again from the same directory."""
    client = aioredis.Redis.from_url(server.url)
    try:
        await client.shutdown()
    except RedisError:
        pass  # the server closes the connection as it goes
    finally:
        await client.aclose()
    server.stop()
    server.start()


async def test_soak_with_killed_workers_and_a_redis_outage(taskemit_settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "workers.log"
    with RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        settings = taskemit_settings.model_copy(update={"redis_url": server.url, "drain_on_exit": False})
        workers = [start_worker(settings, log) for _ in range(2)]
        kills = 0
        killed: dict[int, float] = {}  # pid -> when it was killed
        outages: list[float] = []  # start, end, start, end: Redis restarted, Redis frozen
        started_at = time.monotonic()
        try:
            async with Emitter(outage_listeners.WorkerSettings.taskemit_listeners, settings) as emitter:
                for order in range(EVENTS):
                    emitter.emit("order_placed", order)
                    if order % 1000 == 999:
                        await asyncio.sleep(0.3)
                    if order % 3000 == 2999:  # a worker dies (OOM, a lost machine) and comes back
                        victim = kills % 2
                        killed[workers[victim].pid] = time.time()
                        os.kill(workers[victim].pid, signal.SIGKILL)
                        workers[victim].wait()
                        workers[victim] = start_worker(settings, log)
                        kills += 1
                    if order == 8000:
                        outages.append(time.time())
                        await restart_gracefully(server)
                        outages.append(time.time())
                    if order == 14000:  # frozen for 5 s while the emits go on
                        assert server._process is not None
                        os.kill(server._process.pid, signal.SIGSTOP)
                        outages.append(time.time())
                        await asyncio.sleep(5)
                        os.kill(server._process.pid, signal.SIGCONT)
                        outages.append(time.time())
                await emitter.flush_spool(timeout=60)
            redis = aioredis.Redis.from_url(server.url)
            try:
                deadline = time.monotonic() + 180
                done: dict[tuple[int, str], list[tuple[int, float]]] = defaultdict(list)
                while time.monotonic() < deadline:
                    done.clear()
                    for entry in await redis.lrange("outage:done", 0, -1):
                        order, name, pid, start, _ = entry.decode().split(":")
                        done[(int(order), name)].append((int(pid), float(start)))
                    if len(done) == EVENTS * len(LISTENERS):
                        break
                    await asyncio.sleep(1)
                missing = EVENTS * len(LISTENERS) - len(done)
                assert missing == 0, f"{missing} (event, listener) pairs never ran; see {log}"
                queue = settings.queue_key
                assert await redis.zcard(queue) == 0  # nothing queued or retrying
                running = [k async for k in redis.scan_iter(match=f"arq:in-progress:{{{settings.namespace}}}:*")]
                assert running == []
                starts: dict[tuple[int, str], list[tuple[int, float]]] = defaultdict(list)
                for entry in await redis.lrange("outage:started", 0, -1):
                    order, name, pid, start = entry.decode().split(":")
                    starts[(int(order), name)].append((int(pid), float(start)))
            finally:
                await redis.aclose()
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(60)
    duplicates = Counter(len(runs) for runs in done.values() if len(runs) > 1)
    # a run on a worker that was killed before it finished: how long after the kill the job started again
    # (kills whose lease ran out while Redis was away wait for Redis too: they are reported, not bounded)
    lease = settings.lease_ttl
    windows = list(zip(outages[::2], outages[1::2], strict=True))

    def during_an_outage(kill: float) -> bool:
        return any(start - lease <= kill <= end for start, end in windows)

    interrupted, near_outage = [], []
    for pair, runs in starts.items():
        finished = set(done[pair])
        for pid, start in runs:
            if pid in killed and (pid, start) not in finished:
                later = [s for _, s in runs if s > start]
                wait = min(later) - killed[pid] if later else float("inf")
                (near_outage if during_an_outage(killed[pid]) else interrupted).append(wait)
    print(
        f"\nsoak: {EVENTS:,} events x {len(LISTENERS)} listeners in {time.monotonic() - started_at:.0f}s, "
        f"{kills} workers killed; pairs run more than once: {sum(duplicates.values())} ({dict(duplicates)}); "
        f"interrupted jobs: {len(interrupted)}, longest wait from the kill to the next run "
        f"{max(interrupted, default=0):.1f}s ({len(near_outage)} more killed near an outage waited up to "
        f"{max(near_outage, default=0):.1f}s)"
    )
    assert kills >= 5
    assert interrupted and max(interrupted) <= 15
