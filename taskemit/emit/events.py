"""Typed events: an instance of a class as the event, and its listeners by class.

An event may be an instance of a dataclass, a pydantic model or a msgspec ``Struct``:
``emit(TodoCreated(name="a"))``. Its event id is the class's path, ``module:QualName``.
A listener of a class also receives its subclasses' events (``for_event`` walks the MRO).

On the wire a typed event's job carries the instance dumped to JSON-ready data as its one
argument, and the concrete class's path in taskemit's metadata. The worker validates the
data back into an instance of that class (or of the listener's class when the concrete one
cannot be imported there); data that no longer validates raises :class:`EventValidationError`.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ..errors import EventValidationError, ListenerConfigError

T = TypeVar("T")


class _Subscriber(Protocol):
    """What an ``EventIndex`` needs of a listener (a local one or one from the catalog)."""

    @property
    def name(self) -> str: ...
    @property
    def typed(self) -> bool: ...
    @property
    def event_ids(self) -> frozenset[str]: ...


S = TypeVar("S", bound=_Subscriber)

__all__ = (
    "EventIndex",
    "dump_event",
    "event_path",
    "import_event_class",
    "is_event_class",
    "load_event",
    "main_module_name",
    "mro_paths",
    "through_mro",
)

try:  # msgspec Structs are supported when msgspec is installed (Litestar depends on it)
    import msgspec
except ImportError:  # pragma: no cover - msgspec is present wherever Litestar is
    msgspec = None  # type: ignore[assignment]


def main_module_name() -> str:
    """The importable name of ``__main__``: workers import listeners by module, never as __main__."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:  # python -m package.module
        return str(spec.name)
    path = getattr(main, "__file__", None)
    return Path(path).stem if path else "__main__"  # python path/to/module.py


def _is_pydantic(cls: type) -> bool:
    from pydantic import BaseModel

    return issubclass(cls, BaseModel)


def _is_struct(cls: type) -> bool:
    return msgspec is not None and issubclass(cls, msgspec.Struct)


def is_event_class(obj: Any) -> bool:
    """True for a class whose instances can be events: a dataclass, pydantic model or msgspec Struct."""
    if not isinstance(obj, type):
        return False
    return dataclasses.is_dataclass(obj) or _is_pydantic(obj) or _is_struct(obj)


def _module_name(cls: type) -> str:
    module = cls.__module__
    if module == "__main__":  # workers import it by its module name, never as __main__
        return main_module_name()
    return module


_paths: dict[type, str] = {}


def event_path(cls: type) -> str:
    """The event id of a class's events: ``module:QualName``.

    A worker imports the concrete class by this path to decode an event as that class; a
    class defined inside a function cannot be imported, so its events decode as the
    listener's own class.
    """
    path = _paths.get(cls)
    if path is None:
        path = _paths[cls] = f"{_module_name(cls)}:{cls.__qualname__}"
    return path


def mro_paths(cls: type) -> list[str]:
    """The event ids a ``cls`` event goes to: its own path, then its bases' (MRO order)."""
    return [event_path(klass) for klass in cls.__mro__ if klass is not object]


def through_mro(by_path: Mapping[str, tuple[T, ...]], cls: type) -> tuple[T, ...]:
    """The listeners of a ``cls`` event in ``by_path`` (class path -> listeners): those of the
    class, then of each base, each listener (by name) once."""
    seen: dict[str, T] = {}
    for path in mro_paths(cls):
        for item in by_path.get(path, ()):
            seen.setdefault(item.name, item)  # type: ignore[attr-defined]
    return tuple(seen.values())


_adapters: dict[type, Any] = {}


def _adapter(cls: type) -> Any:
    """pydantic's TypeAdapter of ``cls`` (built once per class: building one is slow)."""
    adapter = _adapters.get(cls)
    if adapter is None:
        from pydantic import TypeAdapter

        adapter = _adapters[cls] = TypeAdapter(cls)
    return adapter


def dump_event(event: Any) -> dict[str, Any]:
    """The instance as JSON-ready data (what the job carries)."""
    cls = type(event)
    if _is_struct(cls):
        data = msgspec.to_builtins(event)
    else:  # dataclasses and pydantic models: pydantic's JSON mode (datetimes, UUIDs, nested models...)
        data = _adapter(cls).dump_python(event, mode="json")
    if not isinstance(data, dict):
        raise ListenerConfigError(f"event {cls.__qualname__} does not dump to an object of fields")
    return data


def load_event(cls: type, data: Any) -> Any:
    """Validate ``data`` into an instance of ``cls``; EventValidationError when it does not fit."""
    try:
        if _is_struct(cls):
            return msgspec.convert(data, cls)
        return _adapter(cls).validate_python(data)
    except Exception as exc:  # pydantic's ValidationError, msgspec's ValidationError, TypeError...
        raise EventValidationError(
            f"the data of event {event_path(cls)} does not validate as {cls.__qualname__}: {exc}"
        ) from exc


def import_event_class(path: str) -> type | None:
    """The class at ``module:QualName`` if it can be imported here, else None."""
    module_name, _, qualname = path.partition(":")
    try:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
    except Exception:
        return None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if is_event_class(obj) else None


class EventIndex(Generic[S]):
    """Listeners by event: by string id, by event class path, and by event class through its
    MRO (``for_event``: one lookup, cached per class). A registry's own listeners and an
    emitter's copy of the catalog both resolve events with it."""

    __slots__ = ("_by_class", "_by_event", "_by_path")

    def __init__(self, listeners: Iterable[S] = ()) -> None:
        #: string event id -> listeners; event class path -> listeners of that class
        self._by_event: dict[str, tuple[S, ...]] = {}
        self._by_path: dict[str, tuple[S, ...]] = {}
        #: event class -> its listeners through the MRO (filled as classes are emitted)
        self._by_class: dict[type, tuple[S, ...]] = {}
        for item in listeners:
            self.index(item)

    def index(self, item: S) -> None:
        """Add ``item`` under each of its events."""
        by = self._by_path if item.typed else self._by_event
        for event_id in sorted(item.event_ids):
            by[event_id] = (*by.get(event_id, ()), item)
        self._by_class.clear()

    def for_event(self, event: str | type) -> tuple[S, ...]:
        """The listeners an event goes to (empty if none): a string id's, or an event class's
        and its bases', the class's own first, each listener once."""
        if isinstance(event, str):
            return self._by_event.get(event, ())
        found = self._by_class.get(event)
        if found is None:
            found = self._by_class[event] = through_mro(self._by_path, event)
        return found

    @property
    def event_ids(self) -> frozenset[str]:
        """The string event ids and the event class paths it has listeners for."""
        return frozenset(self._by_event) | frozenset(self._by_path)

    def by_event(self) -> Mapping[str, tuple[S, ...]]:
        """Event id (or class path) -> listeners."""
        return {**self._by_event, **self._by_path}
