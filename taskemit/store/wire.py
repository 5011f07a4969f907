"""Many commands in one write: a pipeline packed by hiredis instead of redis-py.

redis-py's asyncio client packs every argument of every command in Python, which costs more
than the rest of an emit or a job finish together (a Lua call with twenty arguments takes about
20 µs to pack). A batch here is packed by hiredis, written at once and its replies read in
order: on a pooled connection (``send_batch``), or on a connection one task keeps for itself
(``BatchConnection``: an emitter's flusher, a worker's claim loop), which also saves taking a
connection from the pool and checking it for every batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from hiredis import pack_command
from redis.exceptions import ResponseError

from .cluster import is_cluster, send_cluster_batch

__all__ = ("BatchConnection", "Command", "Packed", "as_text", "bulk", "send_batch")


def as_text(value: bytes | str) -> str:
    """A Redis reply (bytes from a client without decode_responses) as text."""
    return value.decode() if isinstance(value, bytes) else value


class Packed(bytes):
    """A whole command already encoded in RESP (an array of bulk strings): written as it is."""

    __slots__ = ()

    @classmethod
    def of(cls, argc: int, *parts: bytes) -> Packed:
        """The command of ``argc`` arguments whose ``bulk`` encodings are ``parts``, in order."""
        return cls(b"*%d\r\n%s" % (argc, b"".join(parts)))


def bulk(value: bytes | str | int) -> bytes:
    """One argument in RESP (a bulk string), as ``hiredis.pack_command`` writes it."""
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


#: a command and its arguments (str, bytes, int or float each), or one already packed
Command = tuple[Any, ...] | Packed


async def _take(pool: Any) -> Any:
    try:
        return await pool.get_connection()
    except TypeError:  # redis-py before 5.3 wants a command name
        return await pool.get_connection("BATCH")


async def _exchange(connection: Any, commands: Sequence[Command]) -> list[Any]:
    packed = b"".join([command if isinstance(command, Packed) else pack_command(command) for command in commands])
    await connection.send_packed_command(packed, check_health=False)
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(await connection.read_response())
        except ResponseError as exc:
            replies.append(exc)
    return replies


async def send_batch(client: Any, commands: Sequence[Command]) -> list[Any]:
    """Run ``commands`` in one round trip on a pooled connection; their replies in order.

    An error reply (``ResponseError``, ``NoScriptError``, ...) is returned in its place, not
    raised, so the caller sees which commands ran. A lost connection raises (redis-py's
    ``ConnectionError`` or ``TimeoutError``), and then any of the commands may have run.
    """
    if not commands:
        return []
    if is_cluster(client):
        return await send_cluster_batch(client, commands)
    pool = client.connection_pool
    connection = await _take(pool)
    try:
        return await _exchange(connection, commands)
    except (Exception, asyncio.CancelledError):
        await connection.disconnect()  # replies may still be on their way: never reuse it
        raise
    finally:
        await pool.release(connection)


class BatchConnection:
    """A connection of ``client``'s pool kept by one task for its batches (not shared between tasks).

    On a cluster, each batch is sent as ``send_batch`` sends it (a connection per node it reaches).
    """

    def __init__(self, client: Any) -> None:
        self._cluster = client if is_cluster(client) else None
        self._pool = None if self._cluster is not None else client.connection_pool
        self._connection: Any = None

    async def send(self, commands: Sequence[Command]) -> list[Any]:
        """As ``send_batch``, on the kept connection (taken again after it failed)."""
        if not commands:
            return []
        if self._cluster is not None:
            return await send_cluster_batch(self._cluster, commands)
        if self._connection is None:
            self._connection = await _take(self._pool)
        try:
            return await _exchange(self._connection, commands)
        except (Exception, asyncio.CancelledError):
            await self.close(broken=True)
            raise

    async def close(self, broken: bool = False) -> None:
        """Give the connection back to the pool (disconnected when ``broken``)."""
        connection, self._connection = self._connection, None
        if connection is not None and self._pool is not None:
            if broken:
                await connection.disconnect()
            await self._pool.release(connection)
