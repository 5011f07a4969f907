"""Redis Cluster: Redis CPU and calls per job on each primary when one namespace's jobs sit on one
queue tag, on three queue tags on three primaries, and on the three shards of one listener; the
calls that reach the control tag, those that reach another queue tag's primary, and the
throughput a cluster of N primaries would give, as a model.

What runs: a private Redis Cluster of three primaries (no replicas, each an equal range of slots)
on 127.0.0.1, from the newest redis-server on PATH (Redis 7+). A shard here is a queue tag of ONE
namespace: on a cluster each queue's keys (its queue, ready and leased sets, its jobs) carry the
tag ``{namespace/queue}`` and sit on the primary that holds its slot, while the namespace-wide
keys (event records and indexes, catalog, routes, workers, history) carry the control tag
``{namespace}``. Each phase takes a namespace of its own and an emitter stores its events, then
one in-process worker per queue drains them:

- ``1 shard``: three no-op listeners of the event ``ev3`` on one queue, whose tag is on the first
  primary; the namespace is chosen so that its control tag is on another primary, which then does
  the control work alone (measured apart);
- ``3 shards``: the same three listeners, each on a queue of its own, the three queues' tags on
  the three primaries (queue names picked by their slot's owner, ``CLUSTER KEYSLOT``); with three
  primaries the control tag has to share one of them;
- ``1 listener, shards=3``: one no-op listener of the event ``hot`` with ``shards=3``: its jobs
  take the three tags of its queue in turns, one on each primary; ``3 x --events`` events, so the
  phase has as many jobs as the others (one job per event: the control work per job is three
  times the others').

Per primary: the tags it holds; its CPU (``used_cpu_user`` + ``used_cpu_sys``) over the phase,
less what it spends idle (the cluster bus; measured for a second before); its calls (``INFO
commandstats``: the commands it ran, those a script runs included, less the benchmark's own
INFO and ZCARD probes); each per job of the phase and per job of the queue tags it holds (all of
its CPU and calls, the control tag's too where it holds it).

How the control tag's share is attributed: Redis counts CPU and calls per primary, not per tag.
In ``1 shard`` the control tag's primary holds no queue tag: its CPU and calls are the control
tag's, measured. Where the control tag shares a primary with a queue tag, its share is estimated
as that primary's CPU (calls) less the mean of the other queue primaries' (the queue tags have
as many jobs each). Control work is the emits' event records and indexes, heartbeats, history and
registrations.

Commands sent, counted exactly: the benchmark counts in its own process every command the
taskemit clients write to a connection (redis-py's asyncio ``send_packed_command``, which every
taskemit call on a cluster goes through), by the node the connection is to and the hash tag of
the command's first key (a script's first key; a key-less command written in one write with
keyed ones, as MULTI, EXEC, ASKING and WAIT are, goes with them): to the control tag, to a queue
tag the primary holds, to a queue tag it does not hold (cross-shard: calls on a queue-tag primary
for the jobs of another queue tag; must be 0), other (key-less ones such as reading the slots,
INFO and PING; keys of no tag such as arq's abort set). A script's own commands run on its
keys' slot (a cluster refuses others), so they go where the script went.

The model: N primaries, each as busy as one Redis core allows, run N / (Redis CPU per job) jobs a
second, the Redis CPU per job being all primaries' CPU over the ``3 shards`` phase divided by its
jobs, as long as it stays flat from 1 to 3 shards (no cross-shard work). The control tag is one
slot: whatever N, its primary caps a namespace at 1 / (control CPU per job) jobs a second (less
when it shares its primary). This machine has two cores shared by the cluster, the emitter and the
workers, so the throughput itself is not measured here: only the Redis CPU each job costs.

Run from the repository root in the dev venv::

    python -m benchmarks.cluster_scaling --events 3000

It prints the figures as text, then one JSON object per phase and a summary object, one per line
(``--json``: the JSON lines alone).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.asyncio.connection import AbstractConnection

from benchmarks.compare.machine import newest_redis_server, server_version
from taskemit import Emitter
from taskemit.emit.listener import Listener
from taskemit.engine import InProcessWorker
from taskemit.settings import Settings, load_settings
from taskemit.store.keys import tag_of
from taskemit.store.redis_server import RedisServer

SLOTS = 16384


async def noop(n: int) -> None: ...


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


# -- counting the commands the taskemit clients send, by node and hash tag ----------------------

#: commands whose key is the fourth argument (after the script and the number of keys)
_SCRIPT = frozenset({b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO", b"FCALL", b"FCALL_RO"})
#: commands without a key (those sent alone are counted as key-less)
_KEYLESS = frozenset(
    {
        b"ASKING",
        b"AUTH",
        b"CLIENT",
        b"CLUSTER",
        b"COMMAND",
        b"CONFIG",
        b"DISCARD",
        b"ECHO",
        b"EXEC",
        b"HELLO",
        b"INFO",
        b"MULTI",
        b"PING",
        b"READONLY",
        b"READWRITE",
        b"SCRIPT",
        b"SELECT",
        b"TIME",
        b"WAIT",
        b"WAITAOF",
    }
)
KEYLESS = "(key-less)"
UNTAGGED = "(no tag)"


def _heads(buffer: bytes) -> list[list[bytes]]:
    """The first four arguments of each command in ``buffer`` (RESP arrays of bulk strings)."""
    commands: list[list[bytes]] = []
    at, size = 0, len(buffer)
    while at < size and buffer[at] == 42:  # b"*"
        end = buffer.index(b"\r\n", at)
        count = int(buffer[at + 1 : end])
        at = end + 2
        args: list[bytes] = []
        for index in range(count):
            end = buffer.index(b"\r\n", at)
            length = int(buffer[at + 1 : end])
            if index < 4:
                args.append(buffer[end + 2 : end + 2 + length])
            at = end + 2 + length + 2
        commands.append(args)
    return commands


def _tag(args: list[bytes]) -> str | None:
    """The hash tag of the command's first key (UNTAGGED for a key without one), None without a key."""
    if not args:
        return None
    name = args[0].upper()
    if name in _SCRIPT:
        key = args[3] if len(args) > 3 and int(args[2]) > 0 else None
    elif name in _KEYLESS or len(args) < 2:
        key = None
    else:
        key = args[1]
    if key is None:
        return None
    return tag_of(key.decode(errors="replace")) or UNTAGGED


class Tally:
    """Commands written by redis-py's asyncio connections in this process, by (port, tag)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[int, str]] = collections.Counter()
        self._original: Any = None

    def record(self, port: int, packed: Any) -> None:
        if isinstance(packed, str):
            packed = packed.encode()
        buffer = packed if isinstance(packed, bytes) else b"".join(bytes(part) for part in packed)
        tags = [_tag(args) for args in _heads(buffer)]
        keyed = [tag for tag in tags if tag is not None]
        last = keyed[0] if keyed else KEYLESS  # a key-less command goes with the keyed ones around it
        for tag in tags:
            if tag is not None:
                last = tag
            self.counts[(port, last)] += 1

    def install(self) -> None:
        self._original = original = AbstractConnection.send_packed_command
        tally = self

        async def send_packed_command(connection: Any, command: Any, check_health: bool = True) -> None:
            with contextlib.suppress(Exception):  # counting never breaks a send
                tally.record(int(getattr(connection, "port", 0) or 0), command)
            await original(connection, command, check_health)

        AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._original is not None:
            AbstractConnection.send_packed_command = self._original  # type: ignore[method-assign]
            self._original = None


TALLY = Tally()


# -- the phases ------------------------------------------------------------------------------


@dataclass
class Layout:
    """One phase's namespace, listeners and the tags its jobs go to."""

    name: str
    namespace: str
    listeners: list[Listener]
    event: str
    events: int
    #: queue names, one worker each
    queues: list[str]
    #: queue tag -> the primary that holds it
    queue_tags: dict[str, int]
    control_port: int
    jobs: int
    notes: list[str] = field(default_factory=list)

    @property
    def control_tag(self) -> str:
        return "{" + self.namespace + "}"


def _queue_on(clients: dict[int, redis.Redis], namespace: str, port: int, taken: set[str]) -> str:
    for i in range(2000):
        name = f"q{i}"
        if name not in taken and owner(clients, f"{{{namespace}/{name}}}") == port:
            return name
    raise RuntimeError(f"no queue of {namespace} on :{port}")


def listeners_layout(clients: dict[int, redis.Redis], name: str, prefix: str, ports: list[int], events: int) -> Layout:
    """Three listeners of ``ev3``, on one queue per port of ``ports`` (in turn), in a namespace whose
    control tag is on a primary of its own when there is one."""
    first: tuple[str, int] | None = None
    for k in range(200):
        namespace = f"{prefix}{k}"
        control = owner(clients, "{" + namespace + "}")
        if first is None:
            first = (namespace, control)
        if control not in ports:
            break
    else:  # every primary holds a queue: the control tag shares one (the first namespace tried)
        assert first is not None
        namespace, control = first
    queues: list[str] = []
    for port in ports:
        queues.append(_queue_on(clients, namespace, port, set(queues)))
    listeners = [
        Listener(noop, ["ev3"], name=f"bench.{letter}", queue=queues[i % len(queues)]) for i, letter in enumerate("abc")
    ]
    tags = {f"{{{namespace}/{queue}}}": port for queue, port in zip(queues, ports, strict=True)}
    layout = Layout(name, namespace, listeners, "ev3", events, queues, tags, control, 3 * events)
    if control in ports:
        layout.notes.append("the control tag shares a primary with a queue tag (three queues on three primaries)")
    return layout


def sharded_layout(clients: dict[int, redis.Redis], name: str, prefix: str, events: int) -> Layout:
    """One listener of ``hot`` with shards=3, in a namespace whose three shard tags are on three primaries."""
    for k in range(200):
        namespace = f"{prefix}{k}"
        settings = load_settings(redis_url="redis+cluster://127.0.0.1:1/", namespace=namespace)
        tags = {settings.keys.queue_tag("hot", shard, 3): 0 for shard in range(3)}
        for tag in tags:
            tags[tag] = owner(clients, tag)
        if len(set(tags.values())) == 3:
            break
    else:
        raise RuntimeError("no namespace whose three shards of 'hot' are on three primaries")
    hot = Listener(noop, ["hot"], name="bench.hot", queue="hot", shards=3)
    control = owner(clients, "{" + namespace + "}")
    layout = Layout(name, namespace, [hot], "hot", 3 * events, ["hot"], tags, control, 3 * events)
    layout.notes.append("the control tag shares a primary with a shard of the queue; one job per event")
    return layout


def cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def calls(client: redis.Redis) -> int:
    return sum(int(stat["calls"]) for stat in client.info("commandstats").values())


async def fill(settings: Settings, layout: Layout) -> None:
    async with Emitter(layout.listeners, settings) as emitter:
        for n in range(layout.events):
            emitter.emit(layout.event, n)


async def drain(settings: Settings, layout: Layout, queue: str, check: Any) -> None:
    keys = [key for key in _queue_keys(settings, layout) if key.endswith(f":queue:{queue}")]
    async with InProcessWorker(layout.listeners, settings, queues=[queue]):
        deadline = time.monotonic() + 600
        while any(check(key) for key in keys):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{layout.namespace}: the jobs of {queue} were not drained")
            await asyncio.sleep(0.05)


def _queue_keys(settings: Settings, layout: Layout) -> list[str]:
    keys = []
    for item in layout.listeners:
        for shard in range(item.shards):
            keys.append(settings.keys.queue(item.queue or settings.queue_name, shard, item.shards))
    return sorted(set(keys))


async def phase(url: str, clients: dict[int, redis.Redis], layout: Layout) -> dict[str, Any]:
    settings = load_settings(redis_url=url, namespace=layout.namespace, drain_on_exit=False)
    for key in _queue_keys(settings, layout):
        assert tag_of(key) in layout.queue_tags, (key, layout.queue_tags)
    probes: collections.Counter[int] = collections.Counter()

    def check(key: str) -> int:
        port = layout.queue_tags[tag_of(key) or ""]
        probes[port] += 1
        return int(clients[port].zcard(key))

    idle_before = {port: cpu(client) for port, client in clients.items()}
    time.sleep(1.0)
    idle = {port: cpu(client) - idle_before[port] for port, client in clients.items()}
    cpu_before = {port: cpu(client) for port, client in clients.items()}
    calls_before = {port: calls(client) for port, client in clients.items()}
    probes.update({port: 1 for port in clients})  # the INFO that read calls_before counts after it
    TALLY.counts.clear()
    started = time.monotonic()
    await fill(settings, layout)
    await asyncio.gather(*(drain(settings, layout, queue, check) for queue in layout.queues))
    elapsed = time.monotonic() - started
    seen = collections.Counter(TALLY.counts)
    used = {port: cpu(client) - cpu_before[port] - idle[port] * elapsed for port, client in clients.items()}
    probes.update({port: 1 for port in clients})  # the INFO that read the CPU
    counted = {port: calls(client) - calls_before[port] - probes[port] for port, client in clients.items()}
    jobs = layout.jobs
    primaries = []
    sent_totals: collections.Counter[str] = collections.Counter()
    holders = set(layout.queue_tags.values()) | {layout.control_port}
    for port in sorted(clients):
        own = [tag for tag, at in layout.queue_tags.items() if at == port]
        tags = own + ([layout.control_tag] if port == layout.control_port else [])
        sent: collections.Counter[str] = collections.Counter({"control": 0, "queue": 0, "cross_shard": 0, "other": 0})
        for (at, tag), count in seen.items():
            if at != port:
                continue
            if tag == layout.control_tag:
                sent["control"] += count
            elif tag in own:
                sent["queue"] += count
            elif tag in layout.queue_tags:
                sent["cross_shard"] += count
            else:
                sent["other"] += count  # key-less, no tag, or another namespace's
        sent_totals.update(sent)
        own_jobs = jobs * len(own) // len(layout.queue_tags) if own else 0
        primaries.append(
            {
                "port": port,
                "tags": tags,
                "jobs_on_its_queue_tags": own_jobs,
                "redis_cpu_us_per_job": round(used[port] / jobs * 1e6, 1),
                "redis_cpu_us_per_job_of_its_tags": round(used[port] / own_jobs * 1e6, 1) if own_jobs else None,
                "calls_per_job": round(counted[port] / jobs, 3),
                "calls_per_job_of_its_tags": round(counted[port] / own_jobs, 3) if own_jobs else None,
                "sent_per_job": {kind: round(sent[kind] / jobs, 4) for kind in sent},
            }
        )
    queue_ports = set(layout.queue_tags.values())
    if layout.control_port not in queue_ports:
        control_cpu = used[layout.control_port]
        control_calls = counted[layout.control_port]
        control_how = "measured: the control tag's primary holds no queue tag"
    else:  # the queues have as many jobs each: the other queue primaries' mean is a queue tag's share
        others = [port for port in queue_ports if port != layout.control_port]
        control_cpu = used[layout.control_port] - sum(used[port] for port in others) / len(others)
        control_calls = counted[layout.control_port] - sum(counted[port] for port in others) / len(others)
        control_how = "estimated: its primary's less the mean of the other queue primaries'"
    queue_calls = sum(counted[port] for port in queue_ports)
    if layout.control_port in queue_ports:
        queue_calls -= control_calls
    without = [port for port in clients if port not in holders]
    return {
        "phase": layout.name,
        "namespace": layout.namespace,
        "events": layout.events,
        "jobs": jobs,
        "control_tag": layout.control_tag,
        "control_primary": layout.control_port,
        "queue_tags": layout.queue_tags,
        "primaries": primaries,
        "redis_cpu_us_per_job": round(sum(used.values()) / jobs * 1e6, 1),
        "control_cpu_us_per_job": round(control_cpu / jobs * 1e6, 1),
        "calls_per_job": round(sum(counted.values()) / jobs, 3),
        "control_calls_per_job": round(control_calls / jobs, 3),
        "queue_calls_per_job": round(queue_calls / jobs, 3),
        "control_how": control_how,
        "calls_on_primaries_without_a_tag_per_job": (
            round(sum(counted[port] for port in without) / jobs, 4) if without else None
        ),
        "sent_per_job": {kind: round(count / jobs, 4) for kind, count in sent_totals.items()},
        "cross_shard_calls_per_job": round(sent_totals["cross_shard"] / jobs, 4),
        "notes": layout.notes,
        "seconds": round(elapsed, 1),
    }


def _commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "taskemit"], capture_output=True, text=True).stdout
    return (head or "?") + (" +changes" if dirty.strip() else "")


def _print_phase(result: dict[str, Any]) -> None:
    print(
        f"{result['phase']}: namespace {result['namespace']}, {result['events']} events, {result['jobs']} jobs, "
        f"{result['seconds']} s; control tag {result['control_tag']} on :{result['control_primary']}"
    )
    for primary in result["primaries"]:
        cpu_own = primary["redis_cpu_us_per_job_of_its_tags"]
        calls_own = primary["calls_per_job_of_its_tags"]
        sent = primary["sent_per_job"]
        print(
            f"  :{primary['port']} holds {' '.join(primary['tags']) or 'no tag of it'}: "
            f"Redis CPU {primary['redis_cpu_us_per_job']} us per job"
            + (f" ({cpu_own} per job of its queue tags)" if cpu_own is not None else "")
            + f", {primary['calls_per_job']} calls per job"
            + (f" ({calls_own} per job of its queue tags)" if calls_own is not None else "")
            + "; commands sent per job: "
            + ", ".join(f"{kind} {value}" for kind, value in sent.items())
        )
    sent = result["sent_per_job"]
    without = result["calls_on_primaries_without_a_tag_per_job"]
    print(
        f"  per job: Redis CPU {result['redis_cpu_us_per_job']} us, control tag's "
        f"{result['control_cpu_us_per_job']} us; calls {result['calls_per_job']}: queue tags "
        f"{result['queue_calls_per_job']}, control tag {result['control_calls_per_job']} "
        f"(control: {result['control_how']})"
        + (f", on the primary without a tag {without}" if without is not None else "")
        + f"; commands sent: control tag {sent['control']}, queue tags {sent['queue']}, "
        f"cross-shard {sent['cross_shard']}, other {sent['other']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster_scaling", description=__doc__)
    parser.add_argument("--events", type=int, default=3000, help="events of ev3 per phase (3 jobs each)")
    parser.add_argument("--json", action="store_true", help="print the JSON lines alone")
    parser.add_argument(
        "--no-sharded-listener", action="store_true", help="leave out the phase of one listener with shards=3"
    )
    args = parser.parse_args(argv)
    binary = newest_redis_server()
    if binary is None or server_version(binary) < (7,):
        print("needs a redis-server 7 or newer on PATH", file=sys.stderr)
        return 2
    nodes = start_cluster(binary)
    TALLY.install()
    try:
        clients = {node.port: redis.Redis(port=node.port, decode_responses=True) for node in nodes}
        ports = sorted(clients)
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports) + "/"
        layouts = [
            listeners_layout(clients, "1 shard", "one", ports[:1], args.events),
            listeners_layout(clients, "3 shards", "three", ports, args.events),
        ]
        if not args.no_sharded_listener:
            layouts.append(sharded_layout(clients, "1 listener, shards=3", "hot", args.events))
        results = [asyncio.run(phase(url, clients, layout)) for layout in layouts]
    finally:
        TALLY.uninstall()
        for node in nodes:
            node.stop()
    version = ".".join(map(str, server_version(binary)))
    one, three = results[0], results[1]
    per_job = three["redis_cpu_us_per_job"]
    control = one["control_cpu_us_per_job"]
    summary: dict[str, Any] = {
        "summary": True,
        "commit": _commit(),
        "server": f"{binary} {version}",
        "events": args.events,
        "redis_cpu_us_per_job": {result["phase"]: result["redis_cpu_us_per_job"] for result in results},
        "cross_shard_calls_per_job": {result["phase"]: result["cross_shard_calls_per_job"] for result in results},
        "model_jobs_per_second": {str(n): round(n / (per_job / 1e6)) for n in (1, 3, 6, 12)},
        "model_control_tag_cap_jobs_per_second": round(1 / (control / 1e6)) if control and control > 0 else None,
    }
    lines = [json.dumps(result) for result in results] + [json.dumps(summary)]
    if args.json:
        print("\n".join(lines))
        return 0
    print(f"commit {summary['commit']}, {summary['server']}, {args.events} events x 3 listeners per phase")
    for result in results:
        _print_phase(result)
    print(
        f"1 -> 3 shards: Redis CPU per job (all primaries) {one['redis_cpu_us_per_job']} -> "
        f"{three['redis_cpu_us_per_job']} us; cross-shard calls per job "
        + ", ".join(f"{result['phase']}: {result['cross_shard_calls_per_job']}" for result in results)
    )
    print(
        f"model (not measured): N primaries run N / (Redis CPU per job, {per_job} us) jobs/s: "
        + ", ".join(f"{n}: {rate:,}/s" for n, rate in summary["model_jobs_per_second"].items())
        + (
            f"; the control tag (one slot, {control} us per job in '1 shard') caps a namespace at "
            f"{summary['model_control_tag_cap_jobs_per_second']:,}/s whatever N"
            if summary["model_control_tag_cap_jobs_per_second"]
            else ""
        )
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
