"""The chaos run: faults production Redis makes, one after the other, under steady load.

Two worker processes, each behind its own TCP proxy, and an emitter behind a third, put 50 events a
second through a primary with one replica for a minute. In turn:

1. every connection is reset every 0.5 s for 5 s (replies lost in flight);
2. one worker's proxy is paused for two leases (a partitioned worker, its connections half-open);
3. ``maxmemory`` is set below what Redis uses for 5 s (OOM);
4. the primary hands over to its replica (``FAILOVER``) and is demoted, answering READONLY on the
   connections still open, while the proxies send new connections to the new primary (how a
   managed endpoint fails over).

Then: every event ``emit`` accepted completed (recorded once by taskemit; a listener may have run a
second time only where its first run was cut off by the partition, as a later attempt), every
worker is alive, and work went on within 5 s of each fault's end. It prints the timeline.

Run it with ``python -m pytest -m chaos tests/test_chaos.py -s``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from children import TESTS, child_env, stop
from fault_listeners import read_ledger, record
from proxy import TcpProxy
from topology import replica_of, wait_until

from taskemit import Emitter
from taskemit.settings import Settings, load_settings
from taskemit.store.redis_server import RedisServer

pytestmark = pytest.mark.chaos

RATE = 50  # events per second
LEASE = 3.0
DURATION = 62.0  # seconds of load
RESUME_WITHIN = 5.0


@dataclass
class Fault:
    name: str
    at: float  # seconds into the run
    apply: Callable[[], Awaitable[None]]
    started: float = 0.0
    ended: float = 0.0
    accepted: int = 0
    notes: list[str] = field(default_factory=list)


def start_worker(settings: Settings, proxy: TcpProxy, ledger: Path) -> subprocess.Popen[bytes]:
    behind = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{proxy.port}/0"})
    return subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", "fault_listeners:WorkerSettings"],
        env=child_env(behind, TASKEMIT_LEASE_TTL=str(LEASE), LEDGER_PATH=str(ledger)),
        cwd=TESTS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def test_chaos(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    primary = RedisServer().start()
    replica = replica_of(primary)
    to_emitter, to_first, to_second = (TcpProxy(primary.port).start() for _ in range(3))
    proxies = (to_emitter, to_first, to_second)
    settings = load_settings(
        redis_url=f"redis://127.0.0.1:{to_emitter.port}/0",
        namespace="chaos",
        lease_ttl=LEASE,
        spool_dir=str(tmp_path / "spool"),
        publish_timeout=10,
    )
    workers = [start_worker(settings, to_first, ledger), start_worker(settings, to_second, ledger)]
    primary_client = redis.Redis(port=primary.port)

    async def resets() -> None:
        for _ in range(10):
            for proxy in proxies:
                proxy.reset()
            await asyncio.sleep(0.5)

    async def partition() -> None:
        to_first.pause()
        await asyncio.sleep(2 * LEASE)
        to_first.resume()

    async def out_of_memory() -> None:
        primary_client.config_set("maxmemory-policy", "noeviction")
        primary_client.config_set("maxmemory", int(primary_client.info("memory")["used_memory"]) - 1024)
        await asyncio.sleep(5)
        primary_client.config_set("maxmemory", 0)

    async def failover() -> None:
        primary_client.execute_command("FAILOVER")
        for proxy in proxies:
            proxy.retarget(replica.port)
        wait_until(lambda: primary_client.info("replication")["role"] == "slave", what="the old primary's demotion")

    faults = [
        Fault("connection resets every 0.5 s for 5 s", 5, resets),
        Fault(f"worker partitioned for {2 * LEASE:g} s (2 leases)", 15, partition),
        Fault("maxmemory below used memory for 5 s", 28, out_of_memory),
        Fault("failover: old primary demoted (READONLY), endpoint moved", 40, failover),
    ]
    accepted: list[tuple[int, float]] = []
    try:
        async with Emitter([record], settings) as emitter:
            begun = time.monotonic()
            running: asyncio.Task[None] | None = None
            current: Fault | None = None
            pending = list(faults)
            n = 0
            while time.monotonic() - begun < DURATION:
                elapsed = time.monotonic() - begun
                if running is None and pending and elapsed >= pending[0].at:
                    current = pending.pop(0)
                    current.started = time.time()
                    running = asyncio.create_task(current.apply())
                if running is not None and running.done():
                    running.result()
                    assert current is not None
                    current.ended = time.time()
                    running = current = None
                emitter.emit("fault_tick", n)  # emit() accepting it: it must complete
                accepted.append((n, time.time()))
                if current is not None:
                    current.accepted += 1
                n += 1
                await asyncio.sleep(max(0.0, begun + n / RATE - time.monotonic()))
            assert not pending and running is None, "the run ended before every fault did"
        deadline = time.monotonic() + 90
        while len({row[0] for row in read_ledger(ledger)}) < len(accepted):
            assert time.monotonic() < deadline, f"{len({r[0] for r in read_ledger(ledger)})} of {len(accepted)} ran"
            await asyncio.sleep(0.25)
        await asyncio.sleep(2 * LEASE)  # anything still to run twice
        rows = read_ledger(ledger)
        alive = [worker.poll() is None for worker in workers]
        new_primary = redis.Redis(port=replica.port)
        raw = new_primary.hgetall(settings.keys.listener_stats(record.name))
        stats = {k.decode(): int(float(v)) for k, v in raw.items()}
    finally:
        stop(*workers)
        for proxy in proxies:
            proxy.stop()
        replica.stop()
        primary.stop()

    runs = Counter(row[0] for row in rows)
    twice = {n for n, count in runs.items() if count > 1}
    table = ["", f"{'fault':58} {'from':>6} {'to':>6} {'emitted':>8} {'work after':>10}"]
    t0 = accepted[0][1]
    for fault in faults:
        after = min((row[3] for row in rows if row[3] > fault.ended), default=float("inf"))
        fault.notes.append(f"{after - fault.ended:.2f}s")
        table.append(
            f"{fault.name:58} {fault.started - t0:6.1f} {fault.ended - t0:6.1f} {fault.accepted:8} "
            f"{after - fault.ended:9.2f}s"
        )
    table.append(
        f"{len(accepted)} events accepted; {len(runs)} ran; lost {len({n for n, _ in accepted} - set(runs))}; "
        f"recorded complete {stats.get('succeeded', 0)}; listener ran twice for {len(twice)} (cut off by the "
        f"partition); fenced {stats.get('fenced', 0)}; workers alive {sum(alive)}/{len(alive)}"
    )
    print("\n".join(table))

    assert {n for n, _ in accepted} <= set(runs), "an accepted event never ran"
    assert stats.get("succeeded") == len(accepted), "taskemit recorded a completion twice (or not at all)"
    assert all(alive), "a worker died"
    partition = faults[1]
    for n in twice:  # only a run the partition cut off runs again, as a later attempt
        attempts = [(number, at) for m, number, _, at in rows if m == n]
        assert len({number for number, _ in attempts}) == len(attempts), f"event {n} ran the same attempt twice"
        assert min(at for _, at in attempts) <= partition.ended + LEASE, f"event {n} ran twice outside the partition"
    for fault in faults:
        after = min((row[3] for row in rows if row[3] > fault.ended), default=float("inf"))
        assert after - fault.ended <= RESUME_WITHIN, f"no work within {RESUME_WITHIN}s of the end of: {fault.name}"
