"""Writing batches of emitted events to Redis: one round trip per batch.

``emit.lua`` stores up to 50 events per call, each event's jobs and record together (an
event that fails there is that event's error; the others are stored). Once per batch, after
those calls: the event indexes are trimmed to the retention (at most once a second per
index), the workers of the listeners that got jobs are woken (one PUBLISH per queue, skipped
for a second after a publish that no worker heard), and listeners seen for the first time are
registered with their queue (``KeySpace.routes``, which ``taskemit check`` reads). The emit.lua
calls are encoded from the events' plans (``plan.py``: what all events of a plan share is
encoded once), the other commands by hiredis, and the batch is written on the writer's own
connection (``store/wire.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..settings import Settings
from ..store import scripts as lua
from ..store.arq_format import JOB_KEY_PREFIX
from ..store.cluster import is_cluster
from ..store.codec import json_text
from ..store.connection import drop_connections
from ..store.durability import Level
from ..store.wire import BatchConnection, Command, Packed, bulk
from .plan import Plan
from .receipt import EmitReceipt

__all__ = ("EMIT", "EventWriter", "PendingEvent")

EMIT = lua.script("emit", "lib_flow")
#: events per emit.lua call: a batch is several calls in its round trip, and Redis serves
#: other clients between them
_EVENTS_PER_CALL = 50
#: guards PendingEvent.state between the flusher and a publish giving up (possibly on another thread)
_STATE_LOCK = threading.Lock()
#: seconds between trims of an event index
_TRIM_EVERY = 1.0
#: seconds a wake channel with no worker listening is not published to
_UNHEARD_FOR = 1.0
_EVALSHA = bulk("EVALSHA")
#: EVALSHA, the sha, the number of keys, two keys and five arguments before the events'
_HEAD_ARGC = 10


@dataclass(slots=True)
class PendingEvent:
    """An event prepared by ``emit``, waiting in the buffer to be stored."""

    event_uuid: str
    event_id: str
    #: listener (or listener@worker) -> job id
    jobs: dict[str, str]
    settings: Settings
    emitted_ms: int
    payloads: list[bytes]
    #: its jobs' names (the keys of ``jobs``, in order), listeners and routes
    plan: Plan
    #: what waits for it: a publish (on any thread), or an outbox relay (an asyncio future, resolved
    #: on the emitter's loop like every future here)
    future: concurrent.futures.Future[EmitReceipt | None] | asyncio.Future[EmitReceipt | None] | None = field(
        default=None
    )
    #: publish_once: a key that was used before makes its publish return None
    once: bool = False
    #: the uuid of the event whose listener emitted this one
    cause: str | None = None
    #: when it counts as stored: "memory", "replicated" or "fsync" (the durability setting, or
    #: publish's own)
    durability: Level = "memory"
    #: "buffered", "taken" (the flusher is storing it) or "abandoned" (publish gave up on it)
    state: str = "buffered"
    #: it was sent before without a reply (a lost connection): it may be stored already
    resent: bool = False
    #: it is stored, but its durability level did not hold yet
    unconfirmed: bool = False
    #: the round trip that stored it wrote its record (False: the record was there already)
    recorded: bool = False
    #: its jobs' flow control arguments when the event has its own (keys, emit options), else None
    flows: list[str] | None = None

    def receipt(self) -> EmitReceipt:
        """What ``publish`` returns for it (made when asked for: most emits never are)."""
        return EmitReceipt(self.event_uuid, self.event_id, self.jobs, self.settings)

    def take(self) -> bool:
        """The flusher takes it for a batch; False if publish abandoned it first."""
        with _STATE_LOCK:
            if self.state == "abandoned":
                return False
            self.state = "taken"
            return True

    def abandon(self) -> bool:
        """publish gives up on it; False if the flusher had already taken it (it may be stored)."""
        with _STATE_LOCK:
            if self.state == "taken":
                return False
            self.state = "abandoned"
            return True


class EventWriter:
    """Stores batches of events for one emitter (used by its single flusher task)."""

    def __init__(self, redis: Any, settings: Settings) -> None:
        self.settings = settings
        self._redis = redis
        self._batches = BatchConnection(redis)
        #: wakes go only to the node of the queue's slot on a cluster (sharded pub/sub)
        self._publish = "SPUBLISH" if is_cluster(redis) else "PUBLISH"
        #: listener -> queue key, not yet written to ``KeySpace.routes``
        self._unregistered: dict[str, str] = {}
        #: index key -> when it was last trimmed; wake channel -> when a publish reached no worker
        self._trimmed: dict[str, float] = {}
        self._unheard: dict[str, float] = {}
        space = settings.keys
        #: what every emit.lua call starts with: the sha, its two keys, the prefixes and expiries
        self._head = b"".join(
            bulk(value)
            for value in (
                EMIT.sha,
                2,
                space.events,
                space.event_counts,
                JOB_KEY_PREFIX,
                space.event_prefix,
                space.events_by_id_prefix,
                settings.job_expiry * 1000,
                settings.event_retention,
            )
        )

    def register(self, listener: str, queue: str) -> None:
        """Record ``listener``'s queue with the next batch (thread-safe: a dict store)."""
        self._unregistered[listener] = queue

    async def close(self) -> None:
        await self._batches.close()

    async def reconnect(self) -> None:
        """Drop every connection: the node answered as a replica (a failover); the next batch
        connects again, to the primary."""
        await self._batches.close(broken=True)
        await drop_connections(self._redis)

    async def store(self, batch: list[PendingEvent], wait: tuple[Any, ...] | None = None) -> tuple[list[Any], Any]:
        """Store a batch in one round trip; per event, the number of jobs stored or the error reply,
        and the reply to ``wait`` (a ``WAIT`` or ``WAITAOF`` sent last, covering the whole batch)."""
        settings = self.settings
        space = settings.keys
        plans: dict[int, Plan] = {}
        for pending in batch:
            plans[id(pending.plan)] = pending.plan
        # the emit.lua calls, and the events each is for (first event, how many, step)
        if space.sharded:
            commands, spans = self._sharded_calls(batch)
        else:
            commands, spans = self._calls(batch)
        wakes: dict[str, set[str]] = {}
        event_ids: set[str] = set()
        expiring: set[str] = set()
        for plan in plans.values():
            event_ids.add(plan.event_id)
            expiring.update(plan.expiring)  # a broadcast queue lives while emits reach its worker
            for channel, listener in plan.wakes:
                wakes.setdefault(channel, set()).add(listener)
        calls = len(commands)
        # once per batch: the indexes forget events whose records have expired (so they never
        # outgrow the retention), and the workers of the listeners that got jobs wake up
        now = time.monotonic()
        horizon = f"({int(time.time() * 1000) - settings.event_retention * 1000}"
        for key in (space.events, *(space.events_by_id(event_id) for event_id in event_ids)):
            if self._trimmed.get(key, -_TRIM_EVERY) + _TRIM_EVERY <= now:  # retention is days: once a second does
                self._trimmed[key] = now
                commands.append(("ZREMRANGEBYSCORE", key, "-inf", horizon))
        ttl_ms = settings.job_expiry * 1000
        commands.extend(("PEXPIRE", key, ttl_ms) for key in sorted(expiring))
        published: list[str] = []
        first_publish = len(commands)
        for channel, names in wakes.items():
            if self._unheard.get(channel, -_UNHEARD_FOR) + _UNHEARD_FOR <= now:
                published.append(channel)
                commands.append((self._publish, channel, "\n".join(sorted(names))))
        unregistered = dict(self._unregistered)
        if unregistered:
            commands.append(("HSET", space.routes, *(item for pair in unregistered.items() for item in pair)))
        if wait is not None:
            commands.append(wait)
        results = await self._batches.send(commands)
        for name in unregistered:
            self._unregistered.pop(name, None)
        # a channel no worker listens to is left alone for a while (a worker that subscribes
        # meanwhile claims what is queued at once, and the next emits wake it)
        for channel, receivers in zip(published, results[first_publish:], strict=False):
            if receivers == 0:
                self._unheard[channel] = now
            else:
                self._unheard.pop(channel, None)
        replies: list[Any] = []
        if not space.sharded:  # a call per span of events, a reply per event each
            for events, reply in zip(spans, results[:calls], strict=True):
                # the script's error (NOSCRIPT after a restart, say) is every event's of that call
                replies += [reply] * len(events) if isinstance(reply, Exception) else reply
            return replies, results[-1] if wait is not None else None
        replies = [None] * len(batch)  # each event's record call first, then its queue tags' calls
        for events, reply in zip(spans, results[:calls], strict=True):
            # the script's error (NOSCRIPT after a restart, say) is every event's of that call
            for n, event in enumerate(events):
                own = reply if isinstance(reply, Exception) else reply[n]
                if isinstance(own, Exception):
                    if not isinstance(replies[event], Exception):
                        replies[event] = own  # (an event stored in part is sent again whole)
                elif replies[event] is None:
                    replies[event] = own  # its record's call (the first) says whether it was recorded now
        return replies, results[-1] if wait is not None else None

    def _calls(self, batch: list[PendingEvent]) -> tuple[list[Command], list[Sequence[int]]]:
        """The emit.lua calls of ``batch`` on one slot: each event's jobs and record in one call,
        encoded from the events' plans."""
        head = self._head
        commands: list[Command] = []
        spans: list[Sequence[int]] = []
        for first in range(0, len(batch), _EVENTS_PER_CALL):
            part = batch[first : first + _EVENTS_PER_CALL]
            argc = _HEAD_ARGC
            events = []
            for pending in part:
                plan = pending.plan
                argc += plan.argc
                events.append(
                    plan.resp(
                        pending.event_uuid,
                        pending.emitted_ms,
                        list(pending.jobs.values()),
                        pending.payloads,
                        pending.cause,
                        pending.flows,
                    )
                )
            commands.append(Packed.of(argc, _EVALSHA, head, *events))
            spans.append(range(first, first + len(part)))
        return commands, spans

    def _sharded_calls(self, batch: list[PendingEvent]) -> tuple[list[Command], list[Sequence[int]]]:
        """The emit.lua calls of ``batch`` on a Redis Cluster, each on one slot: the records and
        indexes on the control tag, and per queue tag the jobs there (see emit.lua)."""
        settings = self.settings
        space = settings.keys
        ttls = (settings.job_expiry * 1000, settings.event_retention)
        records: list[Any] = []
        jobs_by_tag: dict[str, list[tuple[int, list[Any]]]] = {}
        for event, pending in enumerate(batch):
            plan = pending.plan
            uuid, emitted, cause = pending.event_uuid, pending.emitted_ms, pending.cause or ""
            records.append((event, [pending.event_id, 0, plan.queues, uuid, emitted, json_text(pending.jobs), cause]))
            own: dict[str, list[Any]] = {}
            for k, job_id in enumerate(pending.jobs.values()):
                route = plan.routes[k]
                flow = pending.flows[k] if pending.flows is not None else route.flow
                tag = space.space_of(route.queue).tag
                own.setdefault(tag, []).extend((route.queue, route.ready, job_id, pending.payloads[k], flow))
            for tag, args in own.items():
                entry = [pending.event_id, len(args) // 5, "", uuid, emitted, "", "", *args]
                jobs_by_tag.setdefault(tag, []).append((event, entry))
        commands: list[Command] = []
        spans: list[Sequence[int]] = []
        groups: list[tuple[tuple[Any, ...], list[tuple[int, list[Any]]]]] = [
            ((2, space.events, space.event_counts, JOB_KEY_PREFIX, space.event_prefix, space.events_by_id_prefix),
             records)
        ]  # fmt: skip
        for tag, entries in jobs_by_tag.items():
            outcomes = space.space_of(tag).outcomes("")
            groups.append(((1, outcomes, JOB_KEY_PREFIX, outcomes, ""), entries))
        for head, entries in groups:
            for first in range(0, len(entries), _EVENTS_PER_CALL):
                part = entries[first : first + _EVENTS_PER_CALL]
                commands.append(("EVALSHA", EMIT.sha, *head, *ttls, *(arg for _, args in part for arg in args)))
                spans.append([event for event, _ in part])
        return commands, spans
