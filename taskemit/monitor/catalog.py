"""The listener catalog: what the live workers serve, as they register it in Redis.

Every taskemit worker registers, with each heartbeat, each of its listeners: the events it
listens to (string ids or event class paths), its name, queue, delivery mode and the
parameters an emit must fit. A registration lives three heartbeats unless renewed, so the
catalog says which workers serve each listener now. A listener's description outlives its
last worker for ``catalog_retention`` seconds: a dispatcher keeps queueing reliable events
for it while its workers restart, and ``taskemit status`` says they wait for a worker.

Readers: an :class:`~taskemit.Emitter` without listeners (a dispatcher that does not import
the handlers' code) fans out from it; broadcast, singleton and unreliable listeners read
their live workers from it; ``taskemit listeners`` and the dashboard show it.

Each registration also declares the listener's flow control (``taskemit.flow``). The newest
declaration (by the start time of the worker that made it) is the one that applies: it is
written where the claims read it (``KeySpace.flow``), and a worker whose declaration differs
hears of it (``FlowConflict``) and logs a warning.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from redis.exceptions import NoScriptError

from ..flow import FlowControl
from ..store import scripts as lua
from ..store.keys import KeySpace
from ..store.wire import as_text, send_batch

__all__ = ("CatalogEntry", "FlowConflict", "read_catalog", "register_listeners", "unregister_worker")

_REGISTER = lua.script("catalog")
_LIMITS = lua.script("flow_limits")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One listener as the catalog describes it, with the live workers that serve it."""

    name: str
    events: tuple[str, ...]
    #: True: it takes one typed event (``events`` are class paths); False: keyword arguments
    typed: bool
    queue: str | None
    mode: str
    reliable: bool
    #: (name, inspect.Parameter kind as an int, has a default) per parameter an emit must fit
    params: tuple[tuple[str, int, bool], ...]
    workers: tuple[str, ...] = field(default=())
    #: the retry options the listener sets itself (``max_tries``, ``backoff`` as ``Backoff.to_dict``,
    #: ``retry_on`` and ``give_up_on`` as type paths, ``timeout``); the rest are the settings'
    policy: dict[str, Any] = field(default_factory=dict, compare=False)
    #: its flow control: the newest declaration of the workers that registered it
    flow: FlowControl = field(default=FlowControl())
    #: the hash tags of its queue its jobs spread over on a Redis Cluster (``listener(shards=)``)
    shards: int = 1

    @classmethod
    def from_json(cls, name: str, text: str | bytes, workers: tuple[str, ...] = ()) -> CatalogEntry:
        data = json.loads(text)
        return cls(
            name=name,
            events=tuple(data.get("events", ())),
            typed=bool(data.get("typed", False)),
            queue=data.get("queue"),
            mode=str(data.get("mode", "pool")),
            reliable=bool(data.get("reliable", True)),
            params=tuple((str(p[0]), int(p[1]), bool(p[2])) for p in data.get("params", ())),
            workers=workers,
            policy=dict(data.get("policy") or {}),
            flow=FlowControl.from_dict(data.get("flow")),
            shards=_shards(data.get("shards")),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "events": list(self.events),
                "typed": self.typed,
                "queue": self.queue,
                "mode": self.mode,
                "reliable": self.reliable,
                "params": [list(p) for p in self.params],
                "policy": self.policy,
                "flow": self.flow.to_dict(),
                **({"shards": self.shards} if self.shards > 1 else {}),
            },
            sort_keys=True,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "events": list(self.events),
            "typed": self.typed,
            "queue": self.queue,
            "mode": self.mode,
            "reliable": self.reliable,
            "params": [p[0] for p in self.params],
            "workers": list(self.workers),
            "flow": self.flow.to_dict(),
            "shards": self.shards,
        }


def _shards(value: Any) -> int:
    """A description's ``shards`` (1 when it has none, or one this version cannot use)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1024 else 1


@dataclass(frozen=True, slots=True)
class FlowConflict:
    """Another worker declared listener ``name``'s flow control differently."""

    name: str
    #: the worker whose declaration differs, and that declaration
    other_worker: str
    other: FlowControl
    #: True: the other declaration is newer, and applies; False: this worker's replaced it
    kept: bool


async def read_catalog(redis: Any, *, space: KeySpace, now: float | None = None) -> dict[str, CatalogEntry]:
    """Every described listener by name, with its live workers and its newest flow declaration;
    one round trip."""
    now_ms = int((time.time() if now is None else now) * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(space.catalog)
        pipe.zrangebyscore(space.catalog_live, f"({now_ms}", "+inf")
        pipe.hgetall(space.catalog_flow)
        described, live, declared = await pipe.execute()
    workers: dict[str, list[str]] = {}
    for member in live:
        name, _, worker_id = as_text(member).partition("\n")
        workers.setdefault(name, []).append(worker_id)
    flows = {as_text(name): _declared(as_text(stamp)) for name, stamp in declared.items()}
    entries = {}
    for raw_name, text in described.items():
        name = as_text(raw_name)
        try:
            entry = CatalogEntry.from_json(name, text, tuple(sorted(workers.get(name, ()))))
        except (ValueError, TypeError, IndexError, AttributeError):  # a description from a newer version
            continue
        if name in flows:
            entry = replace(entry, flow=flows[name])
        entries[name] = entry
    return entries


def _declared(stamp: str) -> FlowControl:
    """The declaration in a stamp of ``catalog.lua`` (started, worker, JSON, fields...)."""
    try:
        return FlowControl.from_dict(json.loads(stamp.split("\n")[2]))
    except (ValueError, IndexError):
        return FlowControl()


async def register_listeners(
    redis: Any,
    entries: list[CatalogEntry],
    *,
    space: KeySpace,
    worker_id: str,
    live_for: float,
    retention: float,
    started: float = 0.0,
    now: float | None = None,
) -> tuple[int, list[FlowConflict]]:
    """Register ``entries`` as served by ``worker_id`` for ``live_for`` seconds (0: declare their
    flow control alone), with their flow control declared as of ``started`` (the worker's start:
    the newest declaration applies): one script call on the control tag, then one batch that writes
    each listener's winning limits to its flow hash (on its queue's tag). Returns how many were
    registered and the listeners declared differently."""
    now_ms = int((time.time() if now is None else now) * 1000)
    args: list[Any] = [now_ms, int(live_for * 1000), int(retention * 1000), worker_id, int(started * 1000)]
    for entry in entries:
        args += (entry.name, entry.to_json(), entry.flow.to_json(), *entry.flow.claim_fields())
    keys = [space.catalog, space.catalog_seen, space.catalog_live, space.catalog_flow]
    count, conflicts, limits = await _REGISTER(redis, keys, args)
    await _write_limits(
        redis,
        [
            (space.for_queue(entry.queue).flow(entry.name) if entry.queue else space.root.flow(entry.name), written)
            for entry, written in zip(entries, limits, strict=True)
        ],
    )
    return int(count), [
        FlowConflict(
            as_text(name),
            as_text(other_worker),
            FlowControl.from_dict(json.loads(as_text(declaration))),
            as_text(kept) == "kept",
        )
        for name, other_worker, declaration, kept in conflicts
    ]


async def _write_limits(redis: Any, writes: list[tuple[str, list[Any]]]) -> None:
    """Each listener's limits (``catalog.lua``'s choice) into its flow hash: one ``flow_limits.lua``
    call each, in one batch (on a cluster, one per node); the script is loaded when Redis lacks it."""
    if not writes:
        return
    commands = [_LIMITS.command([key], list(written)) for key, written in writes]
    replies = await send_batch(redis, commands)
    if any(isinstance(reply, NoScriptError) for reply in replies):
        await _LIMITS.load(redis)
        replies = await send_batch(redis, commands)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


async def unregister_worker(redis: Any, names: list[str], *, space: KeySpace, worker_id: str) -> None:
    """A worker that stops cleanly no longer serves ``names`` (their descriptions stay)."""
    if names:
        await redis.zrem(space.catalog_live, *(f"{name}\n{worker_id}" for name in names))
