"""Durability levels: when a write counts as done, and the command that waits for it.

- ``memory``: when the primary has it (Redis's own acknowledgement; nothing to wait for).
- ``replicated``: when ``min_replicas`` replicas have it too: ``WAIT min_replicas timeout``.
- ``fsync``: when the primary's append-only file has it on disk, and that many replicas' files
  too: ``WAITAOF 1 min_replicas timeout`` (Redis 7.2 and newer, with ``appendonly yes``).

A wait covers every earlier write of the connection it is sent on, so it goes last in a batch, on
the batch's connection. Pure, but for :func:`check_durability`, which asks the server whether it
can give the level at all.
"""

from __future__ import annotations

from typing import Any, Literal

from ..errors import DurabilityUnavailable
from .cluster import info_of

__all__ = ("Level", "check_durability", "durability_holds", "wait_command")

Level = Literal["memory", "replicated", "fsync"]
#: the levels, weakest first
LEVELS: tuple[Level, ...] = ("memory", "replicated", "fsync")


def strongest(levels: Any) -> Level:
    """The strongest of ``levels`` ("memory" for none)."""
    return max(levels, key=LEVELS.index, default="memory")


def wait_command(level: Level, min_replicas: int, timeout: float) -> tuple[Any, ...] | None:
    """The command that waits until the level holds for the connection's writes so far, at most
    ``timeout`` seconds; None for "memory"."""
    ms = max(1, int(timeout * 1000))
    if level == "replicated":
        return ("WAIT", min_replicas, ms)
    if level == "fsync":
        return ("WAITAOF", 1, min_replicas, ms)
    return None


def durability_holds(level: Level, min_replicas: int, reply: Any) -> bool:
    """Whether the reply to :func:`wait_command`'s command says the level holds."""
    if level == "replicated":
        return isinstance(reply, int) and reply >= min_replicas
    if level == "fsync":
        return isinstance(reply, list) and len(reply) == 2 and reply[0] >= 1 and reply[1] >= min_replicas
    return True


async def check_durability(redis: Any, level: Level, url: str, key: str = "") -> None:
    """Raise DurabilityUnavailable when the server at ``url`` cannot give ``level`` at all (an
    old server for "fsync", or one that writes no append-only file); on a cluster, the primary
    that holds ``key`` (a key of the namespace)."""
    if level != "fsync":
        return
    info = await info_of(redis, "server", key)
    version = str(info.get("redis_version", "0"))
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if numbers < (7, 2):
        raise DurabilityUnavailable(
            f'durability = "fsync" waits with WAITAOF, which needs Redis 7.2 or newer; the server at {url} '
            f'runs {version} (use "replicated", or upgrade)'
        )
    persistence = await info_of(redis, "persistence", key)
    if not int(persistence.get("aof_enabled", 0)):
        raise DurabilityUnavailable(
            f'durability = "fsync" needs the append-only file on the primary; the server at {url} has '
            "appendonly no (CONFIG SET appendonly yes, or choose another level)"
        )
