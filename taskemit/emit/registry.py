"""``Registry``: which listeners an event goes to, and each listener by its name.

Every part of taskemit that needs "the listeners of this event" or "the listener called X"
asks a ``Registry``: the emitter fans out with ``for_event``, a worker runs jobs by
``get(name)``, a scheduler checks its schedules against ``for_event``. Resolution lives in
``for_event`` alone, so event kinds other than string ids resolve without touching callers.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import ListenerConfigError
from .events import EventIndex
from .listener import Listener, as_listener

__all__ = ("Registry", "discover_listeners")


class Registry(EventIndex[Listener]):
    """Listeners by event id and by name; two different functions may not share a name."""

    __slots__ = ("_by_name",)

    def __init__(self, listeners: Iterable[Any] = ()) -> None:
        super().__init__()
        self._by_name: dict[str, Listener] = {}
        for obj in listeners:
            self.add(obj)

    def add(self, obj: Any) -> Listener:
        """Register a listener (or a Litestar ``EventListener``); adding the same one twice is a no-op."""
        item = as_listener(obj)
        seen = self._by_name.get(item.name)
        if seen is not None:
            if seen.fn is item.fn and seen.event_ids == item.event_ids:
                return seen
            raise ListenerConfigError(f'two listeners are named {item.name!r}; give one of them name="..."')
        self._by_name[item.name] = item
        self.index(item)
        return item

    def get(self, name: str) -> Listener | None:
        """The listener called ``name``, or None."""
        return self._by_name.get(name)

    @property
    def listeners(self) -> tuple[Listener, ...]:
        """Every listener once, in registration order."""
        return tuple(self._by_name.values())

    def __iter__(self) -> Iterator[Listener]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __repr__(self) -> str:
        return f"<Registry {sorted(self._by_name)}>"


def discover_listeners(modules: Iterable[str]) -> list[Listener]:
    """Import each module and collect the listeners defined at its top level."""
    found: list[Listener] = []
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ListenerConfigError(
                f"cannot import listener module {module_name!r} (from the listeners setting): {exc}"
            ) from exc
        found.extend(value for value in vars(module).values() if isinstance(value, Listener))
    return found
