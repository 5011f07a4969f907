"""What one worker serves: its listeners (those on the queues it was told to serve), a route per
listener (its queue's ready and leased sets) plus one on the worker's own broadcast queue per
broadcast listener, a runner per route, the queues whose wake channels it listens to, and the
emitter its listeners' ``Emitter`` parameters receive.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass

from ..emit.emitter import Emitter
from ..emit.listener import Listener
from ..errors import InvalidArgument
from ..settings import Settings
from ..store.codec import Codec
from .batch import Route
from .jobrun import ListenerRunner

__all__ = ("Served", "serve")


@dataclass(slots=True)
class Served:
    listeners: list[Listener]
    #: the routes the worker claims from, and the runner of each (index for index)
    routes: list[Route]
    runners: list[ListenerRunner]
    #: the queues it serves: their names and their keys (whose wake channels it listens to; a
    #: sharded listener's shards on a Redis Cluster too)
    queue_names: list[str]
    queues: list[str]
    #: its own broadcast queue and sets, which expire some time after the worker is gone
    broadcast_keys: list[str]
    #: what a listener's parameter annotated ``Emitter`` receives (entered while the worker runs)
    emitter: Emitter | None


def serve(
    listeners: Sequence[Listener],
    settings: Settings,
    *,
    queues: Sequence[str] | None,
    worker_id: str,
    codec: Codec,
    threads: concurrent.futures.Executor,
) -> Served:
    """What a worker with ``worker_id`` serves of ``listeners`` (those on ``queues``, if given)."""
    if queues:
        listeners = [item for item in listeners if (item.queue or settings.queue_name) in set(queues)]
        if not listeners:
            raise InvalidArgument(f"none of the listeners is on the queues {sorted(set(queues))}")
    listeners = list(listeners)
    routes = [Route.of(item, settings) for item in listeners]
    runners = [ListenerRunner(item, settings, codec, threads) for item in listeners]
    broadcast_keys: set[str] = set()
    queue_keys: dict[str, None] = {}
    for item in listeners:
        queue_keys[settings.keys.queue(item.queue or settings.queue_name)] = None
    for item, runner in zip(listeners, list(runners), strict=True):
        if item.shards > 1 and settings.keys.sharded:  # its jobs spread over its queue's shards
            for shard in range(1, item.shards):
                route = Route.of(item, settings, shard=shard)
                routes.append(route)
                runners.append(runner)
                queue_keys[route.queue] = None
        if item.mode == "broadcast":  # its broadcast jobs wait on this worker's own queue
            route = Route.of(item, settings, broadcast_to=worker_id)
            routes.append(route)
            runners.append(runner)
            broadcast_keys.update((route.queue, route.ready, route.leased))
    emitter = None
    if any(item.emitter_param is not None for item in listeners):
        emitter = Emitter(listeners, settings, catalog=True)
        for runner in runners:
            runner.emitter = emitter
    queue_names = sorted({item.queue or settings.queue_name for item in listeners})
    return Served(
        listeners=listeners,
        routes=routes,
        runners=runners,
        queue_names=queue_names,
        queues=sorted(queue_keys),
        broadcast_keys=sorted(broadcast_keys),
        emitter=emitter,
    )
