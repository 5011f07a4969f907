"""The Redis server itself, as taskemit needs it: a primary that takes writes, enough replicas for
the durability level, and room under ``maxmemory``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import Settings
from ..store.cluster import info_of, is_cluster, node_name_of
from ..store.keys import KeySpace
from .tags import queue_spaces

__all__ = ("ServerHealth", "server_health", "tag_servers")

#: below this share of maxmemory left, ``taskemit check`` warns
LOW_HEADROOM = 0.1


@dataclass(frozen=True, slots=True)
class ServerHealth:
    """What INFO says about the Redis server a client is connected to."""

    version: str
    #: "master" (a primary: it takes writes) or "slave" (a replica: it answers READONLY)
    role: str
    connected_replicas: int
    used_memory: int
    #: 0: no limit
    maxmemory: int
    maxmemory_policy: str
    aof_enabled: bool

    @property
    def primary(self) -> bool:
        return self.role == "master"

    @property
    def headroom(self) -> float | None:
        """The share of ``maxmemory`` still free (None without a limit)."""
        if not self.maxmemory:
            return None
        return max(0.0, 1 - self.used_memory / self.maxmemory)

    def problems(self, settings: Settings) -> list[str]:
        """What stops taskemit from working as the settings ask (empty when nothing does)."""
        found = []
        if not self.primary:
            found.append(
                "the server is a replica: every write is refused (READONLY); point redis_url at the primary, "
                "or use a redis+sentinel:// URL"
            )
        if settings.durability != "memory" and self.connected_replicas < settings.min_replicas:
            found.append(
                f'durability = "{settings.durability}" needs {settings.min_replicas} connected replica(s); '
                f"{self.connected_replicas} are: publish raises NotDurable and workers wait"
            )
        if settings.durability == "fsync" and not self.aof_enabled:
            found.append('durability = "fsync" needs appendonly yes on the primary')
        return found

    def warnings(self) -> list[str]:
        """What works now but needs a look."""
        headroom = self.headroom
        if headroom is not None and headroom < LOW_HEADROOM:
            evicting = self.maxmemory_policy != "noeviction"
            return [
                f"memory: {headroom:.0%} of maxmemory left ({self.used_memory:,} of {self.maxmemory:,} bytes); "
                + (
                    f"maxmemory-policy {self.maxmemory_policy} evicts keys: jobs and records can be lost"
                    if evicting
                    else "at the limit, Redis refuses new jobs (OOM) until workers free some"
                )
            ]
        return []


async def server_health(redis: Any, key: str = "") -> ServerHealth:
    """INFO of the server ``redis`` talks to (one round trip); on a cluster, of the primary that
    holds ``key`` (a key of the namespace's control tag; its queues' primaries: ``tag_servers``)."""
    return _health(await info_of(redis, "all", key))


def _health(info: Any) -> ServerHealth:
    return ServerHealth(
        version=str(info.get("redis_version", "")),
        role=str(info.get("role", "")),
        connected_replicas=int(info.get("connected_slaves", 0)),
        used_memory=int(info.get("used_memory", 0)),
        maxmemory=int(info.get("maxmemory", 0)),
        maxmemory_policy=str(info.get("maxmemory_policy", "")),
        aof_enabled=bool(int(info.get("aof_enabled", 0))),
    )


async def tag_servers(redis: Any, keys: KeySpace) -> list[tuple[str, list[str], ServerHealth]]:
    """On a Redis Cluster, each primary that holds a tag of the namespace (its control tag, its
    queues' tags): its address, the tags it holds and what its INFO says, the control tag's
    primary first; [] elsewhere (one server: ``server_health``)."""
    if not is_cluster(redis):
        return []
    by_node: dict[str, list[str]] = {}
    for space in await queue_spaces(redis, keys):
        by_node.setdefault(await node_name_of(redis, space.prefix), []).append(space.tag)
    found = []
    for name, tags in by_node.items():
        found.append((name, tags, await server_health(redis, keys.space_of(tags[0]).prefix)))
    return found
