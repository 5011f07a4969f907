"""A Sentinel failover under load: one primary, one replica, three Sentinels, two worker processes
and an emitter, all on ``redis+sentinel://``. The primary is SIGKILLed mid-run and restarted a
moment later (a supervisor would), as the replica the Sentinels make of it. With
``durability = "replicated"``: every accepted event runs, none twice, nothing restarted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from children import TESTS, child_env, stop
from fault_listeners import read_ledger, record
from topology import Sentinels, replica_of, wait_until

from taskemit import Emitter
from taskemit.settings import Settings, load_settings
from taskemit.store.redis_server import RedisServer

pytestmark = pytest.mark.chaos

RATE = 50  # events per second
BEFORE, AFTER = 4.0, 10.0  # seconds of load before the kill and after it


def _promoted(sentinels: Sentinels, replica: RedisServer) -> bool:
    try:
        return sentinels.primary_port() == replica.port
    except redis.RedisError:
        return False


def start_worker(settings: Settings, ledger: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", "fault_listeners:WorkerSettings"],
        env=child_env(settings, TASKEMIT_DURABILITY="replicated", LEDGER_PATH=str(ledger)),
        cwd=TESTS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def test_a_sentinel_failover_loses_nothing_and_runs_nothing_twice(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    primary = RedisServer().start()
    replica = replica_of(primary)
    sentinels = Sentinels(primary).start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        settings = load_settings(
            redis_url=sentinels.url(),
            namespace="sentinel",
            durability="replicated",
            min_replicas=1,
            spool_dir=str(tmp_path / "spool"),
            publish_timeout=10,
        )
        workers = [start_worker(settings, ledger) for _ in range(2)]
        accepted: list[int] = []
        async with Emitter([record], settings) as emitter:
            started = time.monotonic()
            killed_at = None
            n = 0
            while time.monotonic() - started < BEFORE + AFTER:
                if killed_at is None and time.monotonic() - started >= BEFORE:
                    primary.stop()  # SIGKILL
                    killed_at = time.time()
                emitter.emit("fault_tick", n)
                accepted.append(n)
                n += 1
                await asyncio.sleep(1 / RATE)
                if killed_at is not None and not primary.running and n % 10 == 0 and _promoted(sentinels, replica):
                    # back once the Sentinels promoted the replica, as a replica of the new primary (a
                    # primary without persistence restarted before that would come back empty)
                    primary = RedisServer(port=primary.port, extra_args=["--replicaof", "127.0.0.1", str(replica.port)])
                    primary.start()
            # on a loaded machine the Sentinels' first election can fail: they try again after
            # failover-timeout, while the emitter keeps what it accepted
            deadline = time.monotonic() + 30
            while not _promoted(sentinels, replica):
                assert time.monotonic() < deadline, "the Sentinels did not promote the replica"
                await asyncio.sleep(0.2)
            if not primary.running:
                primary = RedisServer(port=primary.port, extra_args=["--replicaof", "127.0.0.1", str(replica.port)])
                primary.start()
        assert killed_at is not None
        assert sentinels.primary_port() == replica.port, "the replica was promoted"
        deadline = time.monotonic() + 60
        while len({row[0] for row in read_ledger(ledger)}) < len(accepted):
            assert time.monotonic() < deadline, f"{len(read_ledger(ledger))} of {len(accepted)} ran"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything that would run twice
        rows = read_ledger(ledger)
        runs = Counter(row[0] for row in rows)
        resumed = min(row[3] for row in rows if row[3] > killed_at)
        print(
            f"\nsentinel failover: {len(accepted)} events accepted, {len(runs)} ran, "
            f"{sum(1 for c in runs.values() if c > 1)} ran twice; first job done {resumed - killed_at:.2f}s "
            "after the primary was killed"
        )
        assert set(runs) == set(accepted), "an accepted event was lost"
        assert max(runs.values()) == 1, "an event ran twice"
        assert all(worker.poll() is None for worker in workers), "a worker died"
        new_primary = redis.Redis(port=replica.port)
        wait_until(lambda: new_primary.zcard(settings.queue_key) == 0, what="the queue to empty")
    finally:
        stop(*workers)
        sentinels.stop()
        replica.stop()
        primary.stop()
