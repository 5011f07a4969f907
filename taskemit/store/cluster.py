"""Redis Cluster: the client taskemit uses on a cluster, and raw batches sent node by node.

A ``redis+cluster://host:port,host:port/`` URL (``rediss+cluster://`` for TLS) gives a
:class:`ClusterClient`, redis-py's asyncio ``RedisCluster`` with what taskemit needs beside it:

- ``pipeline(transaction=True)``: the commands of taskemit's transactions all carry one hash
  tag, so they sit on one node; redis-py's cluster pipeline has no transactions, so there they
  are sent as a plain pipeline (each command still applied whole, only not as one step);
- ``pubsub()``: a subscription on a connection of its own to one primary (redis-py's asyncio
  cluster client has none); classic ``PUBLISH`` reaches every node's subscribers.

:func:`send_cluster_batch` is ``store.wire``'s batch on a cluster: the commands are grouped by
the node that holds their first key's slot, each node's group is sent on one of its connections,
all groups at once, and the replies are put back in order. A ``MOVED`` reply (the slot has
another owner: the command did not run) sends the command again to the new owner and updates
the client's view of the cluster; a node that cannot be reached has the slots read again
before the next batch (a failover promotes its replica), and the batch fails as a lost connection
(its caller knows whether to send it again); an ``ASK`` reply (the slot is being migrated) sends it
to the node named, after ``ASKING``. ``WAIT`` and ``WAITAOF`` (durability) go to every node the
batch wrote to; their reply is the smallest.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from typing import Any

from hiredis import pack_command
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, ConnectionPool
from redis.exceptions import AskError, MovedError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import InvalidArgument

__all__ = ("ClusterClient", "info_of", "is_cluster", "node_name_of", "send_cluster_batch")

#: commands whose first argument is not a key and that go to every node written to
_EVERY_NODE = frozenset({"WAIT", "WAITAOF"})
#: commands whose key is the third argument (after the script and the number of keys)
_SCRIPT = frozenset({"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"})
#: times a command is sent again after MOVED or ASK before its error stands
_REDIRECTS = 5


def is_cluster(client: Any) -> bool:
    """Whether ``client`` talks to a Redis Cluster (redis-py's cluster client, asyncio or not)."""
    return hasattr(client, "nodes_manager")


async def _node_of(client: Any, key: str) -> Any:
    """The primary that holds ``key``'s slot on a cluster (the slots learnt first, if not yet)."""
    if client._initialize:
        await client.initialize()
    return client.nodes_manager.get_node_from_slot(client.keyslot(key))


async def node_name_of(client: Any, key: str) -> str:
    """``host:port`` of the primary that holds ``key``'s slot on a cluster."""
    return str((await _node_of(client, key)).name)


async def info_of(client: Any, section: str, key: str) -> Any:
    """``INFO section`` of the server that holds ``key``: on a cluster, the primary of its slot;
    else the one server."""
    if not is_cluster(client):
        return await client.info(section)
    return await client.info(section, target_nodes=await _node_of(client, key))


class ClusterClient(RedisCluster):
    """redis-py's asyncio cluster client with taskemit's pipelines and subscriptions (see above)."""

    _version_checked = False

    async def initialize(self, *args: Any, **kwargs: Any) -> ClusterClient:
        """Learn the slots; the first time, refuse a cluster older than Redis 7 (no sharded pub/sub)."""
        await super().initialize(*args, **kwargs)
        if not self._version_checked:
            node = self.get_default_node()
            info = await self.info("server", target_nodes=node)
            version = str(info.get("redis_version", "0"))
            if tuple(int(part) for part in version.split(".")[:1] if part.isdigit()) < (7,):
                raise InvalidArgument(
                    f"taskemit on a Redis Cluster needs Redis 7 or newer (sharded pub/sub); the node at "
                    f"{node.host}:{node.port} runs {version}"
                )
            self._version_checked = True
        return self

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if _SENT_BY_STACK:  # redis-py 5: no transactions, and none of the retries
            return _Pipeline(self)  # type: ignore[abstract]
        # redis-py 6+: a transaction of one slot is a MULTI on its node (taskemit's are: one namespace)
        return super().pipeline(transaction, shard_hint)

    def pubsub(self, **kwargs: Any) -> PubSub:
        """A subscription on a connection of its own to the primary that holds its channels' slot
        (taskemit's channels of one namespace share one): ``subscribe`` takes both the sharded
        messages (``SPUBLISH``, which reach only that node) and the classic ones (``PUBLISH``,
        which reach every node)."""
        return _ClusterPubSub(_NodePool(self), **kwargs)


#: redis-py 5's cluster pipeline (a stack of commands it sends itself); 6+ has execution strategies
_SENT_BY_STACK = not hasattr(ClusterPipeline, "_execution_strategy") and hasattr(ClusterPipeline, "_execute")


class _Pipeline(ClusterPipeline):
    """redis-py's cluster pipeline, sent once: no resending after a lost connection (as every
    taskemit client), and none of the redis-py 5 pipeline's failure with no retries configured."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        if not self._command_stack:
            return []
        try:
            if self._client._initialize:
                await self._client.initialize()
            try:
                return await self._execute(
                    self._client,
                    self._command_stack,
                    raise_on_error=raise_on_error,
                    allow_redirections=allow_redirections,
                )
            except tuple(self.ERRORS_ALLOW_RETRY):  # type: ignore[misc]
                await self._client.aclose()  # the slots are read again by the next call
                raise
        finally:
            self._command_stack = []


class _NodePool(ConnectionPool):
    """A pool for one pub/sub connection: to the primary that holds ``channel``'s slot now."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self.channel: str | None = None
        kwargs: dict[str, Any] = dict(client.get_connection_kwargs())
        connection_class = kwargs.pop("connection_class", Connection)
        accepted = set(inspect.signature(AbstractConnection.__init__).parameters) | set(
            inspect.signature(connection_class.__init__).parameters
        )
        super().__init__(
            connection_class=connection_class, **{name: value for name, value in kwargs.items() if name in accepted}
        )

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._client._initialize:
            await self._client.initialize()
        if self.channel is not None:
            node = self._client.nodes_manager.get_node_from_slot(self._client.keyslot(self.channel))
        else:
            node = self._client.get_default_node()
        self.connection_kwargs.update(host=node.host, port=node.port)
        return await super().get_connection(*args, **kwargs)


class _ClusterPubSub(PubSub):
    """Sharded and classic subscriptions to the same channels, on their slot's primary."""

    PUBLISH_MESSAGE_TYPES = ("message", "pmessage", "smessage")  # type: ignore[assignment]
    UNSUBSCRIBE_MESSAGE_TYPES = ("unsubscribe", "punsubscribe", "sunsubscribe")  # type: ignore[assignment]

    async def subscribe(self, *args: Any, **kwargs: Any) -> None:
        channels = [_text(channel) for channel in args]
        pool = self.connection_pool
        if isinstance(pool, _NodePool) and pool.channel is None and channels:
            pool.channel = channels[0]
        if channels:
            await self.execute_command("SSUBSCRIBE", *channels)
        await super().subscribe(*args, **kwargs)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bulks(packed: bytes, count: int) -> list[bytes]:
    """The first ``count`` arguments of a command encoded in RESP (an array of bulk strings)."""
    parts: list[bytes] = []
    at = packed.index(b"\r\n") + 2
    while len(parts) < count and at < len(packed):
        end = packed.index(b"\r\n", at)
        size = int(packed[at + 1 : end])
        parts.append(packed[end + 2 : end + 2 + size])
        at = end + 2 + size + 2
    return parts


def key_of(command: Any) -> str | None:
    """The key that decides where ``command`` goes (its first); None for one sent to every node."""
    if isinstance(command, bytes):  # store.wire.Packed
        head = _bulks(command, 4)
        args: Sequence[Any] = head
    else:
        args = command
    name = _text(args[0]).upper()
    if name in _EVERY_NODE:
        return None
    if name in _SCRIPT:
        if int(_text(args[2])) == 0:
            raise ValueError(f"a script call without keys has no node on a cluster: {name}")
        return _text(args[3])
    return _text(args[1])


def _release(node: ClusterNode, connection: Any) -> None:
    release = getattr(node, "release", None)
    if release is not None:
        release(connection)
    else:
        node._free.append(connection)


async def _exchange(node: ClusterNode, commands: Sequence[Any]) -> list[Any]:
    connection = node.acquire_connection()
    try:
        packed = b"".join(command if isinstance(command, bytes) else pack_command(command) for command in commands)
        await connection.send_packed_command(packed, False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except (Exception, asyncio.CancelledError):
        await connection.disconnect()  # replies may still be on their way: never reuse it
        _release(node, connection)
        raise
    _release(node, connection)
    return replies


def _redirect(reply: Any) -> tuple[str, str] | None:
    """('MOVED' | 'ASK', 'host:port') for a redirection reply (redis-py's MovedError or
    AskError, or the reply's own words), else None."""
    if isinstance(reply, AskError):
        return ("MOVED" if isinstance(reply, MovedError) else "ASK"), f"{reply.host}:{reply.port}"
    if isinstance(reply, ResponseError):
        words = str(reply).split()
        if len(words) == 3 and words[0] in ("MOVED", "ASK"):
            return words[0], words[2]
    return None


def _node_at(client: RedisCluster, address: str) -> ClusterNode:
    host, _, port = address.rpartition(":")
    node = client.get_node(host=host, port=int(port))
    if node is None:
        kwargs: dict[str, Any] = dict(client.get_connection_kwargs())
        node = ClusterNode(host, int(port), **kwargs)
        client.nodes_manager.nodes_cache[node.name] = node
    return node


async def send_cluster_batch(client: RedisCluster, commands: Sequence[Any]) -> list[Any]:
    """``store.wire.send_batch`` on a cluster: one round trip per node, all nodes at once (see above)."""
    if client._initialize:
        await client.initialize()
    replies: list[Any] = [None] * len(commands)
    todo = list(range(len(commands)))
    waits = [index for index in todo if key_of(commands[index]) is None]
    redirected: dict[int, ClusterNode] = {}  # command -> the node a MOVED or ASK reply named
    asking: set[int] = set()
    for attempt in range(_REDIRECTS + 1):
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        everywhere: list[int] = []
        for index in todo:
            if index in redirected:
                node = redirected[index]
            else:
                key = key_of(commands[index])
                if key is None:
                    everywhere.append(index)
                    continue
                node = client.nodes_manager.get_node_from_slot(client.keyslot(key))
            groups.setdefault(node.name, (node, []))[1].append(index)
        if not groups and everywhere:  # nothing written: the WAIT goes to one node
            node = client.get_default_node()
            groups[node.name] = (node, [])
        sent = {
            name: [("ASKING",) if i in asking else None for i in indexes] for name, (node, indexes) in groups.items()
        }
        batches = []
        for name, (node, indexes) in groups.items():
            batch: list[Any] = []
            for index, ask in zip(indexes, sent[name], strict=True):
                if ask is not None:
                    batch.append(ask)
                batch.append(commands[index])
            batch.extend(commands[index] for index in everywhere)
            batches.append(_exchange(node, batch))
        try:
            results = await asyncio.gather(*batches)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            # a node went away (a failover, say): read the slots again before the next batch
            client._initialize = True
            raise
        redirected, asking = {}, set()
        again: list[int] = []
        for (name, (_, indexes)), result in zip(groups.items(), results, strict=True):
            position = 0
            for index, ask in zip(indexes, sent[name], strict=True):
                if ask is not None:
                    position += 1  # ASKING's own OK
                reply = result[position]
                position += 1
                redirect = _redirect(reply)
                if redirect is not None and attempt < _REDIRECTS:
                    kind, address = redirect
                    again.append(index)
                    redirected[index] = _node_at(client, address)
                    if kind == "ASK":
                        asking.add(index)
                    else:
                        await _moved(client, reply)
                else:
                    replies[index] = reply
            for index, reply in zip(everywhere, result[position:], strict=True):
                previous = replies[index]
                if previous is None or isinstance(reply, Exception):
                    replies[index] = reply
                elif not isinstance(previous, Exception) and isinstance(reply, int | list):
                    replies[index] = _least(previous, reply)
        if not again:
            break
        todo = sorted({*again, *waits})  # a WAIT covers the writes sent again too
    return replies


def _least(first: Any, second: Any) -> Any:
    """The weaker of two WAIT (a count) or WAITAOF (a pair of counts) replies."""
    if isinstance(first, list) and isinstance(second, list):
        return [min(a, b) for a, b in zip(first, second, strict=False)]
    return min(first, second)


async def _moved(client: RedisCluster, reply: Any) -> None:
    """Tell the client's slot map that a slot moved (redis-py's own way where it has one), and
    have the whole map read again before the next batch."""
    manager = client.nodes_manager
    if isinstance(reply, MovedError):
        move = getattr(manager, "move_slot", None)  # redis-py 6+
        if move is not None:
            done = move(reply)
            if inspect.isawaitable(done):
                await done
        else:
            manager._moved_exception = reply
    client._initialize = True
