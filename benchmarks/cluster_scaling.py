"""Redis Cluster: Redis CPU per job per shard for 1 and 3 shards, calls that reach another shard,
and the throughput a cluster of N primaries would give, as a model.

What runs: a private Redis Cluster of three primaries (no replicas) on 127.0.0.1, from the newest
redis-server on PATH (Redis 7+). A shard here is a namespace: every key of a namespace carries
its hash tag, so all of a namespace's work lands on the primary that holds its slot. Per phase
(1 shard, then 3 shards, each on its own primary), the shards' emitters store ``--events`` events
of three no-op listeners in all (split evenly), then one in-process worker per shard drains them.
Each primary's CPU (``used_cpu_user`` + ``used_cpu_sys``) over the phase, less what it spends idle
(the cluster bus; measured for a second before), divided by the jobs of its shard, is its CPU per
job. Calls per job on the primaries that hold no shard of the phase (``INFO commandstats``) are the
calls that reached another shard.

The model: N primaries, each as busy as one Redis core allows, run N / (CPU per job) jobs a
second, as long as the CPU per job stays flat from 1 to 3 shards (no cross-shard work). This
machine has two cores shared by the cluster, the emitters and the workers, so the throughput
itself is not measured here: only the Redis CPU each job costs.

Run from the repository root in the dev venv::

    python -m benchmarks.cluster_scaling --events 3000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import subprocess
import sys
import time
from typing import Any

import redis

from benchmarks.compare.machine import newest_redis_server, server_version
from taskemit import Emitter, listener
from taskemit.engine import InProcessWorker
from taskemit.settings import Settings, load_settings
from taskemit.store.redis_server import RedisServer

SLOTS = 16384


@listener("ev3", name="bench.a")
async def first(n: int) -> None: ...


@listener("ev3", name="bench.b")
async def second(n: int) -> None: ...


@listener("ev3", name="bench.c")
async def third(n: int) -> None: ...


LISTENERS = [first, second, third]


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 above it) is free too, and below 65536."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        with contextlib.suppress(OSError), socket.socket() as probe, socket.socket() as bus:
            probe.bind(("127.0.0.1", port))
            bus.bind(("127.0.0.1", port + 10000))
            return port
    raise RuntimeError("no free port pair for a cluster node")


def start_cluster(binary: str, primaries: int = 3) -> list[RedisServer]:
    """``primaries`` cluster-enabled servers, each with an even share of the slots."""
    nodes = [
        RedisServer(
            port=cluster_port(),
            binary=binary,
            extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
        )
        for _ in range(primaries)
    ]
    for node in nodes:
        node.start()
    clients = [redis.Redis(port=node.port, decode_responses=True) for node in nodes]
    for client in clients[1:]:
        client.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[0].port)
    per = SLOTS // primaries
    for index, client in enumerate(clients):
        last = SLOTS - 1 if index == primaries - 1 else (index + 1) * per - 1
        client.execute_command("CLUSTER", "ADDSLOTS", *range(index * per, last + 1))
    deadline = time.monotonic() + 30
    while not all(client.cluster("info")["cluster_state"] == "ok" for client in clients):
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster did not form")
        time.sleep(0.1)
    for client in clients:
        client.close()
    return nodes


def owner(clients: dict[int, redis.Redis], key: str) -> int:
    """The port of the primary that holds ``key``'s slot."""
    any_client = next(iter(clients.values()))
    slot = any_client.execute_command("CLUSTER", "KEYSLOT", key)
    for start, end, primary, *_ in any_client.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return int(primary[1])
    raise RuntimeError(f"no node holds {key}")


def namespaces_on(clients: dict[int, redis.Redis], ports: list[int]) -> list[str]:
    """One namespace per port whose keys land on that port's primary."""
    found: dict[int, str] = {}
    for n in range(1000):
        name = f"bench{n}"
        port = owner(clients, "{" + name + "}")
        if port in ports and port not in found:
            found[port] = name
        if len(found) == len(ports):
            return [found[port] for port in ports]
    raise RuntimeError("no namespace found for every primary")


def cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def calls(client: redis.Redis) -> int:
    return sum(int(stat["calls"]) for stat in client.info("commandstats").values())


async def fill(settings: Settings, events: int) -> None:
    async with Emitter(LISTENERS, settings) as emitter:
        for n in range(events):
            emitter.emit("ev3", n)


async def drain(settings: Settings, queue: redis.RedisCluster, jobs: int) -> None:
    async with InProcessWorker(LISTENERS, settings, queues=["default"]):
        deadline = time.monotonic() + 600
        while queue.zcard(settings.queue_key):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{settings.namespace}: the jobs were not drained")
            await asyncio.sleep(0.05)


async def phase(url: str, clients: dict[int, redis.Redis], shards: int, events: int) -> dict[str, Any]:
    ports = sorted(clients)[:shards]
    names = namespaces_on(clients, ports)
    settings = [load_settings(redis_url=url, namespace=name, drain_on_exit=False) for name in names]
    per_shard = events // shards
    jobs = 3 * per_shard
    idle_before = {port: cpu(client) for port, client in clients.items()}
    time.sleep(1.0)
    idle = {port: cpu(client) - idle_before[port] for port, client in clients.items()}
    cpu_before = {port: cpu(client) for port, client in clients.items()}
    calls_before = {port: calls(client) for port, client in clients.items()}
    started = time.monotonic()
    await asyncio.gather(*(fill(s, per_shard) for s in settings))
    checker = redis.RedisCluster(host="127.0.0.1", port=ports[0])
    await asyncio.gather(*(drain(s, checker, jobs) for s in settings))
    checker.close()
    elapsed = time.monotonic() - started
    per_port: dict[int, dict[str, float]] = {}
    for port, client in clients.items():
        used = cpu(client) - cpu_before[port] - idle[port] * elapsed
        per_port[port] = {"cpu_s": used, "calls": calls(client) - calls_before[port]}
    shard_cpu = [per_port[port]["cpu_s"] / jobs * 1e6 for port in ports]
    others = [port for port in clients if port not in ports]
    cross_calls = sum(per_port[port]["calls"] for port in others)
    return {
        "shards": shards,
        "jobs_per_shard": jobs,
        "redis_cpu_us_per_job_per_shard": [round(value, 1) for value in shard_cpu],
        "redis_calls_per_job_per_shard": [round(per_port[port]["calls"] / jobs, 2) for port in ports],
        "calls_on_other_primaries_per_job": round(cross_calls / (jobs * shards), 3) if others else None,
        "seconds": round(elapsed, 1),
    }


def _commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "taskemit"], capture_output=True, text=True).stdout
    return (head or "?") + (" +changes" if dirty.strip() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster_scaling", description=__doc__)
    parser.add_argument("--events", type=int, default=3000, help="events per phase (3 jobs each)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    binary = newest_redis_server()
    if binary is None or server_version(binary) < (7,):
        print("needs a redis-server 7 or newer on PATH", file=sys.stderr)
        return 2
    nodes = start_cluster(binary)
    try:
        clients = {node.port: redis.Redis(port=node.port, decode_responses=True) for node in nodes}
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in clients) + "/"
        results = [asyncio.run(phase(url, clients, shards, args.events)) for shards in (1, 3)]
    finally:
        for node in nodes:
            node.stop()
    version = ".".join(map(str, server_version(binary)))
    report = {"commit": _commit(), "server": f"{binary} {version}", "events": args.events, "phases": results}
    one = results[0]["redis_cpu_us_per_job_per_shard"][0]
    three = results[1]["redis_cpu_us_per_job_per_shard"]
    worst = max(three)
    report["model_jobs_per_second"] = {str(n): round(n / (worst / 1e6)) for n in (1, 3, 6, 12)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"commit {report['commit']}, {report['server']}, {args.events} events x 3 listeners per phase")
    for result in results:
        print(
            f"{result['shards']} shard(s): Redis CPU per job per shard {result['redis_cpu_us_per_job_per_shard']} us, "
            f"calls per job per shard {result['redis_calls_per_job_per_shard']}, "
            f"calls on the other primaries per job {result['calls_on_other_primaries_per_job']}"
        )
    print(f"1 -> 3 shards: {one:.1f} us -> {', '.join(f'{v:.1f}' for v in three)} us per job")
    print(
        "model (not measured): N primaries run N / (Redis CPU per job) jobs/s: "
        + ", ".join(f"{n}: {rate:,}/s" for n, rate in report["model_jobs_per_second"].items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
