"""The emitter's view of the listener catalog: listeners it has no code for, and live workers.

``describe`` turns a :class:`Listener` into what a worker registers (``monitor/catalog.py``
writes and reads it). :class:`CatalogView` is one emitter's cached copy, refreshed every
``catalog_refresh`` seconds: :class:`RemoteListener` stands in for a listener whose code the
emitter does not import, checks emitted arguments against the registered parameters, and
resolves typed events through the MRO of the emitted class like the registry does.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ..errors import ListenerArgumentError
from ..monitor.catalog import CatalogEntry
from .events import EventIndex
from .listener import Listener

__all__ = ("CatalogView", "RemoteListener", "describe")

#: the parameter kinds by the ints the catalog stores
_KINDS = {
    int(kind): kind
    for kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.VAR_KEYWORD,
    )
}


def describe(item: Listener, default_queue: str) -> CatalogEntry:
    """What a worker registers about ``item``: with the queue it serves it on (``default_queue``,
    the worker's ``queue_name``, for a listener that names none), where dispatchers send its jobs."""
    return CatalogEntry(
        name=item.name,
        events=tuple(sorted(item.event_ids)),
        typed=item.typed,
        queue=item.queue or default_queue,
        mode=item.mode,
        reliable=item.reliable,
        params=tuple(item.parameters),
        policy=_declared_policy(item),
        flow=item.flow,
        shards=item.shards,
    )


def _type_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _declared_policy(item: Listener) -> dict[str, Any]:
    """The retry options ``item`` sets itself, as JSON (what the dashboard shows beside the settings')."""
    declared: dict[str, Any] = {}
    for name, value in item.policy_options.items():
        if name == "backoff":
            declared[name] = value.to_dict()
        elif name in ("retry_on", "give_up_on"):
            classes = value if isinstance(value, tuple) else (value,)
            declared[name] = [_type_path(cls) for cls in classes]
        else:
            declared[name] = value
    return declared


class RemoteListener:
    """A listener known from the catalog only: enough to route its jobs and check arguments."""

    __slots__ = ("_signature", "entry", "event_ids", "flow", "mode", "name", "queue", "reliable", "shards", "typed")

    def __init__(self, entry: CatalogEntry) -> None:
        self.entry = entry
        self.name = entry.name
        self.queue = entry.queue
        self.mode = entry.mode
        #: the hash tags its jobs spread over (a Redis Cluster)
        self.shards: int = entry.shards
        self.reliable = entry.reliable
        self.typed = entry.typed
        self.event_ids = frozenset(entry.events)
        #: its flow control, as the newest worker declared it
        self.flow = entry.flow
        try:
            params = [
                inspect.Parameter(name, _KINDS[kind], default=None if has_default else inspect.Parameter.empty)
                for name, kind, has_default in entry.params
            ]
            self._signature: inspect.Signature | None = inspect.Signature(params)
        except (ValueError, KeyError):  # a description Python does not accept (a newer version's): check nothing
            self._signature = None

    @property
    def signature(self) -> inspect.Signature | None:
        return self._signature

    def check_arguments(self, event_id: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        if self._signature is None:
            return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ListenerArgumentError(
                f"listener {self.name!r} (from the catalog) cannot accept the arguments emitted with event "
                f"{event_id!r}: {exc}"
            ) from None

    def __repr__(self) -> str:
        return f"<RemoteListener {self.name} on {sorted(self.event_ids)}>"


class CatalogView:
    """An emitter's copy of the catalog: remote listeners by event, live workers by listener."""

    __slots__ = ("_index", "_workers", "loaded")

    def __init__(self) -> None:
        self._index: EventIndex[RemoteListener] = EventIndex()
        self._workers: dict[str, tuple[str, ...]] = {}
        #: False until the catalog was read once
        self.loaded = False

    def update(self, entries: Mapping[str, CatalogEntry]) -> None:
        # whole-attribute swaps: an emit on another thread sees the old view or the new one
        self._index = EventIndex(RemoteListener(entry) for entry in sorted(entries.values(), key=lambda e: e.name))
        self._workers = {name: entry.workers for name, entry in entries.items()}
        self.loaded = True

    def for_event(self, event: str | type) -> tuple[RemoteListener, ...]:
        return self._index.for_event(event)

    def workers(self, name: str) -> tuple[str, ...]:
        """The live workers that serve listener ``name`` (as of the last refresh)."""
        return self._workers.get(name, ())
