"""Fan-out: which listeners an event goes to, which jobs that makes, and where each job goes.

:meth:`Fanout.prepare` turns what ``emit`` got into a :class:`PendingEvent`, ready to store:

- listeners: the registry's (by string id, or by event class through its MRO), and, for an
  emitter that reads the catalog, those the live workers registered that it has no code for;
- delivery modes: a pool listener gets one job; a broadcast listener one job per live worker
  that serves it (on that worker's own queue; a worker down at emit time never gets it); the
  event's singleton listeners one job between them (a listener with a live worker first); an
  unreliable listener (``reliable_delivery=False``) none while no live worker serves it;
- routes: a job's queue, its listener's ready set there and the queue's wake channel;
- flow control: a job's priority, and its ordering and rate keys read from the arguments
  (``jobflow``), or the emit's own ``priority`` and ``ordering_key``;
- checks, before anything is stored: the arguments against every listener, the payload size.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import InvalidArgument, ListenerConfigError, PayloadTooLarge, UnknownEventError
from ..flow import FlowControl, JobFlow
from ..settings import Settings
from ..store.codec import META_KWARG, get_codec
from ..store.keys import ONCE_NAMESPACE
from ..tracing import active as tracing_active
from ..tracing import annotate, emit_span
from ..tracing import available as tracing_available
from .catalog import CatalogView
from .events import dump_event, event_path, is_event_class
from .jobflow import check_emit_options, flow_argument, job_flow
from .plan import Plan, Route
from .registry import Registry
from .writer import PendingEvent

logger = logging.getLogger("taskemit.emitter")

__all__ = ("Fanout", "Target")


class Target(Protocol):
    """What fan-out needs of a listener: a local ``Listener`` or a ``RemoteListener``."""

    name: str
    queue: str | None
    mode: str
    reliable: bool
    flow: FlowControl
    shards: int

    @property
    def typed(self) -> bool: ...
    @property
    def signature(self) -> inspect.Signature | None: ...

    def check_arguments(self, event_id: str, args: tuple[Any, ...], kwargs: Any) -> None: ...


class Fanout:
    """One emitter's fan-out over its registry and, optionally, the catalog."""

    __slots__ = (
        "_codec",
        "_plans",
        "_routes",
        "_sharded_keys",
        "_spread",
        "_turn",
        "catalog",
        "needs_catalog",
        "on_new_route",
        "registry",
        "settings",
        "tracing",
        "unknown_event",
        "use_catalog",
    )

    def __init__(self, registry: Registry, settings: Settings, *, use_catalog: bool) -> None:
        self.registry = registry
        self.settings = settings
        self._codec = get_codec(settings.serializer)
        #: spans for emits, with the trace context carried in the jobs (opentelemetry installed)
        self.tracing = settings.tracing and tracing_available()
        #: the error for an event without listeners (Litestar's backend raises its own type)
        self.unknown_event: Callable[[str], Exception] = UnknownEventError
        #: called with (listener, queue key) the first time a listener's jobs go to its queue
        self.on_new_route: Callable[[str, str], None] | None = None
        #: listeners come from the catalog too (a dispatcher without the handlers' code)
        self.use_catalog = use_catalog
        self.catalog = CatalogView()
        #: the catalog must be read: for its listeners, or for live workers of special modes
        self.needs_catalog = use_catalog or any(item.mode != "pool" or not item.reliable for item in registry)
        self._routes: dict[tuple[str, str | None, int], Route] = {}
        #: (id(listeners tuple), event id, turn) -> (the tuple, the plan, its jobs), for pool listeners
        self._plans: dict[tuple[int, str, int], tuple[tuple[Target, ...], Plan, list[tuple[Target, str | None]]]] = {}
        self._turn = itertools.count()
        #: which shard the next event's jobs of sharded listeners go to (in turns), on a Redis Cluster
        self._spread = itertools.count()
        self._sharded_keys = settings.keys.sharded

    def listeners(self, event: str | type) -> tuple[Target, ...]:
        """The listeners of ``event`` (a string id or an event class)."""
        local: tuple[Target, ...] = self.registry.for_event(event)
        if not self.use_catalog:
            return local
        names = {item.name for item in local}
        return local + tuple(remote for remote in self.catalog.for_event(event) if remote.name not in names)

    def jobs(self, listeners: tuple[Target, ...]) -> list[tuple[Target, str | None]]:
        """(listener, worker id for a broadcast job, else None) per job the event makes."""
        if all(item.mode == "pool" and item.reliable for item in listeners):
            return [(item, None) for item in listeners]
        jobs: list[tuple[Target, str | None]] = []
        singletons: list[Target] = []
        for item in listeners:
            if item.mode == "singleton":
                singletons.append(item)
            elif item.mode == "broadcast":
                jobs.extend((item, worker) for worker in self.catalog.workers(item.name))
            elif item.reliable or self.catalog.workers(item.name):
                jobs.append((item, None))
        if singletons:
            served = [item for item in singletons if self.catalog.workers(item.name)]
            if served or all(item.reliable for item in singletons):
                pool = served or singletons
                jobs.append((pool[next(self._turn) % len(pool)], None))
        return jobs

    def prepare(
        self,
        event: str | object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        once_key: str | None = None,
        cause: str | None = None,
        priority: Any = None,
        ordering_key: Any = None,
    ) -> PendingEvent | None:
        """The event as a PendingEvent to store; None for an event without listeners that the
        ``on_unknown_event`` setting ignores. Raises what ``Emitter.emit`` documents."""
        if isinstance(event, str):
            event_id = event
            listeners = self.listeners(event) if self.use_catalog else self.registry.for_event(event)
        else:
            event_id, args = self._typed(event, args, kwargs)
            listeners = self.listeners(type(event))
        if not listeners:
            if self.settings.on_unknown_event == "ignore":
                logger.info("ignoring event %r: no listener is registered for it", event_id)
                return None
            raise self.unknown_event(event_id)
        if META_KWARG in kwargs:
            raise ListenerConfigError(f"{META_KWARG!r} is reserved by taskemit and cannot be emitted")
        for item in listeners:
            item.check_arguments(event_id, args, kwargs)
        if priority is not None or ordering_key is not None:
            priority, ordering_key = check_emit_options(event_id, priority, ordering_key)
            sharded = [item.name for item in listeners if item.shards > 1]
            if ordering_key is not None and sharded:
                raise InvalidArgument(
                    f"emit of {event_id!r}: ordering_key cannot hold for listener {sharded[0]!r}, whose jobs "
                    "spread over shards"
                )
        plan, jobs_of = self._plan(event_id, listeners)
        flows = None
        if plan.keyed or priority is not None or ordering_key is not None:
            flows = self._flows(event_id, args, kwargs, plan, jobs_of, priority, ordering_key)
        if self.tracing and tracing_active():
            with emit_span(event_id) as carrier:
                return self._pending(event_id, args, kwargs, plan, once_key, cause, carrier, flows)
        return self._pending(event_id, args, kwargs, plan, once_key, cause, None, flows)

    def _flows(
        self,
        event_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        plan: Plan,
        jobs_of: list[tuple[Target, str | None]],
        priority: int | None,
        ordering_key: str | None,
    ) -> list[str]:
        """Each job's flow control argument for this event (a broadcast job has none), on the tag
        of the job's queue."""
        space = self.settings.keys
        step_ms = int(self.settings.priority_step * 1000)
        return [
            ""
            if worker is not None
            else flow_argument(
                space.space_of(route.queue),
                item.name,
                job_flow(item, event_id, args, kwargs, priority, ordering_key, step_ms),
            )
            for (item, worker), route in zip(jobs_of, plan.routes, strict=True)
        ]

    def _plan(self, event_id: str, listeners: tuple[Target, ...]) -> tuple[Plan, list[tuple[Target, str | None]]]:
        """The jobs an event of ``listeners`` makes, their names and their routes; remembered
        for a registry's tuple of pool listeners, which always make the same jobs."""
        # sharded listeners on a Redis Cluster: their jobs go to the shards in turns (a plan per
        # turn); on one Redis a listener's shards are one queue
        spread = 0
        if self._sharded_keys:
            sharded = [item.shards for item in listeners if item.shards > 1]
            spread = next(self._spread) % math.lcm(*sharded) if sharded else 0
        key = (id(listeners), event_id, spread)
        known = self._plans.get(key)
        if known is not None and known[0] is listeners:
            return known[1], known[2]
        jobs_of = self.jobs(listeners)
        plan = Plan(
            event_id,
            [item.name if worker is None else f"{item.name}@{worker}" for item, worker in jobs_of],
            [self.route(item, worker, spread % item.shards) for item, worker in jobs_of],
            [item.name for item, _ in jobs_of],
            keyed=any(item.flow.keyed for item, worker in jobs_of if worker is None),
            space=self.settings.keys,
        )
        if len(self._plans) < 1024 and all(item.mode == "pool" and item.reliable for item in listeners):
            self._plans[key] = (listeners, plan, jobs_of)  # holds the tuple: its id is not reused
        return plan, jobs_of

    def _pending(
        self,
        event_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        plan: Plan,
        once_key: str | None,
        cause: str | None,
        carrier: dict[str, str] | None,
        flows: list[str] | None = None,
    ) -> PendingEvent:
        space = self.settings.keys
        names, functions = plan.names, plan.functions
        if once_key is None:
            event_uuid, job_ids = space.new_event_ids(len(names), plan.prefixes)
            jobs = {names[0]: job_ids[0]} if len(names) == 1 else dict(zip(names, job_ids, strict=True))
        else:
            event_uuid = str(uuid.uuid5(ONCE_NAMESPACE, once_key))
            jobs = space.once_job_ids(event_uuid, names, plan.prefixes)
        emitted_ms = int(time.time() * 1000)
        meta = {"event": event_uuid, "event_id": event_id}
        if cause:
            meta["cause"] = cause
        if carrier:  # the emit span's trace context, continued by each listener run
            meta["trace"] = carrier  # type: ignore[assignment]
            annotate(event_uuid=event_uuid, jobs=len(jobs))
        payloads = self._codec.encode_jobs(functions, args, kwargs, enqueue_ms=emitted_ms, meta=meta)
        limit = self.settings.max_payload_bytes
        for function, payload in zip(functions, payloads, strict=True):
            if len(payload) > limit:
                raise PayloadTooLarge(
                    f"the job of listener {function!r} for event {event_id!r} is {len(payload):,} bytes, more "
                    f"than max_payload_bytes={limit:,}; store large data elsewhere and emit a reference to it"
                )
        return PendingEvent(
            event_uuid,
            event_id,
            jobs,
            self.settings,
            emitted_ms,
            payloads,
            plan,
            once=once_key is not None,
            cause=cause,
            durability=self.settings.durability,
            flows=flows,
        )

    @staticmethod
    def _typed(event: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """A typed event's id (its class path) and its one argument (the instance as data)."""
        cls = type(event)
        if not is_event_class(cls):
            raise InvalidArgument(
                "an event is a string id or an instance of an event class (a dataclass, pydantic model or "
                f"msgspec Struct), got {event!r}"
                + (": emit an instance, not the class" if is_event_class(event) else "")
            )
        if args or kwargs:
            raise InvalidArgument(
                f"a typed event carries its own data: emit({cls.__qualname__}(...)) takes no other arguments"
            )
        return event_path(cls), (dump_event(event),)

    def routes(self) -> list[tuple[tuple[str, str | None, int], Route]]:
        """The routes used so far: ((listener, broadcast worker or None, shard), route)."""
        return list(self._routes.items())

    def route(self, item: Target, worker: str | None, shard: int = 0) -> Route:
        """Where a job of ``item`` goes: its queue (``worker``'s own for broadcast; ``shard``'s
        for a sharded listener), its ready set there, the queue's wake channel."""
        key = (item.name, worker, shard)
        route = self._routes.get(key)
        if route is not None:
            return route
        space = self.settings.keys
        queue_name = item.queue or self.settings.queue_name
        queue = space.queue(queue_name, shard, item.shards)
        wake = space.wake_channel(queue)
        if worker is None:
            flow = ""
            if item.flow.priority and not item.flow.keyed:  # the same for each of its jobs
                boost = item.flow.priority * int(self.settings.priority_step * 1000)
                flow = flow_argument(space.for_queue(queue_name, shard, item.shards), item.name, JobFlow(boost))
            route = Route(queue, space.ready(queue, item.name), wake, item.queue is not None, flow=flow)
        else:
            own = space.broadcast_queue(queue, worker)
            route = Route(own, space.ready(own, item.name), wake, True, expires=True)
        if len(self._routes) < 10_000:  # broadcast routes come and go with workers
            self._routes[key] = route
        if worker is None and shard == 0 and self.on_new_route is not None:
            self.on_new_route(item.name, route.queue)
        return route
