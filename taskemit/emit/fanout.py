"""Fan-out: which listeners an event goes to, which jobs that makes, and where each job goes.

- listeners: the registry's (by string id, or by event class through its MRO), and, for an
  emitter that reads the catalog, those the live workers registered that it has no code for;
- delivery modes: a pool listener gets one job; a broadcast listener one job per live worker
  that serves it (on that worker's own queue; a worker down at emit time never gets it); the
  event's singleton listeners one job between them (a listener with a live worker first); an
  unreliable listener (``reliable_delivery=False``) none while no live worker serves it;
- routes: a job's queue, its listener's ready set there and the queue's wake channel.
"""

from __future__ import annotations

import itertools
from typing import Any, Protocol

from ..settings import Settings
from .catalog import CatalogView
from .registry import Registry
from .writer import Route

__all__ = ("Fanout", "Target")


class Target(Protocol):
    """What fan-out needs of a listener: a local ``Listener`` or a ``RemoteListener``."""

    name: str
    queue: str | None
    mode: str
    reliable: bool

    def check_arguments(self, event_id: str, args: tuple[Any, ...], kwargs: Any) -> None: ...


class Fanout:
    """One emitter's fan-out over its registry and, optionally, the catalog."""

    __slots__ = ("_routes", "_turn", "catalog", "needs_catalog", "registry", "settings", "use_catalog")

    def __init__(self, registry: Registry, settings: Settings, *, use_catalog: bool) -> None:
        self.registry = registry
        self.settings = settings
        #: listeners come from the catalog too (a dispatcher without the handlers' code)
        self.use_catalog = use_catalog
        self.catalog = CatalogView()
        #: the catalog must be read: for its listeners, or for live workers of special modes
        self.needs_catalog = use_catalog or any(item.mode != "pool" or not item.reliable for item in registry)
        self._routes: dict[tuple[str, str | None], Route] = {}
        self._turn = itertools.count()

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

    def routes(self) -> list[tuple[tuple[str, str | None], Route]]:
        """The routes used so far: ((listener, broadcast worker or None), route)."""
        return list(self._routes.items())

    def route(self, item: Target, worker: str | None) -> tuple[Route, bool]:
        """Where a job of ``item`` goes (on ``worker``'s own queue for broadcast); and whether the
        route is new to this emitter (the writer registers it)."""
        key = (item.name, worker)
        route = self._routes.get(key)
        if route is not None:
            return route, False
        space = self.settings.keys
        queue = space.queue(item.queue or self.settings.queue_name)
        wake = space.wake_channel(queue)
        if worker is None:
            route = Route(queue, space.ready(queue, item.name), wake, item.queue is not None)
        else:
            own = space.broadcast_queue(queue, worker)
            route = Route(own, space.ready(own, item.name), wake, True, expires=True)
        if len(self._routes) < 10_000:  # broadcast routes come and go with workers
            self._routes[key] = route
        return route, worker is None
