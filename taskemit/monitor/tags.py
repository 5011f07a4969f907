"""The hash tags a namespace's keys are on, for readers that gather what is kept per queue.

On one Redis every key of a namespace carries its one tag (``{namespace}``). On a Redis Cluster
each queue has a tag of its own (``KeySpace.for_queue``): the dead letters' indexes, the
listeners' counters and flow control of a queue are on its tag, so a reader of the whole
namespace reads each queue's space and merges (sums, unions, sorts) what it finds. The queue
tags in use are those of the queues the emitters routed listeners to (``KeySpace.routes``) and
those the catalog's listener descriptions name (their field ``queue``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..store.keys import MAX_SHARDS, KeySpace
from ..store.wire import as_text

__all__ = ("queue_name_of", "queue_of_space", "queue_spaces", "spaces_from")


def spaces_from(keys: KeySpace, queue_keys: Iterable[Any], descriptions: Iterable[Any] = ()) -> list[KeySpace]:
    """The spaces of the queue keys ``queue_keys`` (HVALS of the routes) and of the queues that
    ``descriptions`` (HVALS of the catalog) name (each shard's, for a description with
    ``shards``), the namespace's own first (a job id of no queue tag keeps its keys there);
    ``[keys]`` on one Redis."""
    root = keys.root
    if not keys.sharded:
        return [root]
    spaces = {root}
    for queue_key in queue_keys:
        spaces.add(keys.space_of(as_text(queue_key)))
    for text in descriptions:
        try:
            described = json.loads(text)
            queue, shards = described.get("queue"), described.get("shards")
        except (ValueError, AttributeError):
            continue
        if isinstance(queue, str) and queue:
            # a listener with shards (``shards``: how many) has keys on each shard's tag
            count = shards if isinstance(shards, int) and 0 < shards <= MAX_SHARDS else 1
            spaces.update(keys.for_queue(queue, shard, count) for shard in range(count))
    return [root, *sorted((space for space in spaces if space != root), key=lambda space: space.tag)]


async def queue_spaces(redis: Any, keys: KeySpace) -> list[KeySpace]:
    """Every space with a namespace's per-queue keys (``spaces_from``); no round trip on one Redis,
    one (to the control tag's node) on a cluster."""
    if not keys.sharded:
        return [keys.root]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hvals(keys.routes)
        pipe.hvals(keys.catalog)
        routed, described = await pipe.execute()
    return spaces_from(keys, routed, described)


def queue_name_of(keys: KeySpace, queue_key: str) -> str:
    """The name of the queue whose key is ``queue_key`` (``KeySpace.queue``'s inverse)."""
    root = keys.root
    if not keys.sharded:
        return queue_key.removeprefix(root.queue(""))
    tag = keys.space_of(queue_key).tag
    return queue_key.removeprefix(tag + ":queue:") if queue_key.startswith(tag + ":queue:") else queue_key


def queue_of_space(space: KeySpace) -> str:
    """The key of the queue whose tag ``space`` has (``{ns/queue}``, ``{ns/queue/k}``); for the
    namespace's own space, the default queue's name on its tag (so on its node)."""
    name = "default" if space.is_control else space.tag[len(space.namespace) + 2 : -1].split("/", 1)[0]
    return f"{space.prefix}queue:{name}"
