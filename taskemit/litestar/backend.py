"""The Litestar drop-in: ``Litestar(..., event_emitter_backend=ArqEventEmitter)``.

Litestar constructs the backend with ``listeners=`` only, so the Redis URL and every other
option come from taskemit's settings (``settings.toml`` and ``TASKEMIT_*``), unless the
backend is a ``configured`` subclass (what ``TaskEmitPlugin`` installs).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, ClassVar

try:
    from litestar import Response, get
    from litestar.events import BaseEventEmitterBackend
    from litestar.exceptions import ImproperlyConfiguredException
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("taskemit.litestar needs Litestar: pip install 'taskemit[litestar]'") from exc

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..emit import EmitReceipt, Emitter
from ..errors import UnknownEventError
from ..monitor.metrics import metrics_registry
from ..settings import Settings, load_settings

__all__ = ("ArqEventEmitter", "LitestarUnknownEventError", "metrics_route")


class LitestarUnknownEventError(UnknownEventError, ImproperlyConfiguredException):
    """No listener for an emitted event: Litestar's exception type, and a taskemit error."""

    def __init__(self, event_id: str) -> None:
        UnknownEventError.__init__(self, event_id)
        ImproperlyConfiguredException.__init__(self, str(self.args[0]))


class _LitestarEmitter(Emitter):
    __slots__ = ()

    def _unknown_event(self, event_id: str) -> Exception:
        return LitestarUnknownEventError(event_id)


class ArqEventEmitter(BaseEventEmitterBackend):
    """Litestar event emitter backend that stores one arq job per listener in Redis."""

    __slots__ = ("_emitter",)

    #: the settings a ``configured`` subclass was made with (None: read them at construction)
    default_settings: ClassVar[Settings | None] = None

    def __init__(self, listeners: Sequence[Any], settings: Settings | None = None) -> None:
        self._emitter = _LitestarEmitter(listeners, settings if settings is not None else self.default_settings)
        # Litestar's base keeps event id -> listeners; taskemit's Listener has the same shape
        super().__init__(listeners=list(self._emitter.registry.listeners))  # type: ignore[arg-type]

    @classmethod
    def configured(cls, settings: Settings) -> type[ArqEventEmitter]:
        """A subclass that Litestar can construct with ``listeners=`` alone and that uses ``settings``."""
        return type(cls.__name__, (cls,), {"__slots__": (), "default_settings": settings})

    @property
    def emitter(self) -> Emitter:
        """The framework-free :class:`~taskemit.Emitter` doing the work."""
        return self._emitter

    async def __aenter__(self) -> ArqEventEmitter:
        await self._emitter.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._emitter.__aexit__(exc_type, exc, tb)

    def emit(self, event_id: str, *args: Any, **kwargs: Any) -> None:
        """Enqueue one job per listener of ``event_id`` and return at once (see ``Emitter.emit``)."""
        self._emitter.emit(event_id, *args, **kwargs)

    async def publish(self, event_id: str, *args: Any, **kwargs: Any) -> EmitReceipt | None:
        """Enqueue and wait until the jobs are stored; returns their ids."""
        return await self._emitter.publish(event_id, *args, **kwargs)


def metrics_route(path: str = "/metrics", settings: Settings | None = None) -> Any:
    """A Litestar route serving taskemit's Prometheus metrics: ``route_handlers=[metrics_route()]``."""
    registry = metrics_registry(settings if settings is not None else load_settings())

    # sync_to_thread: the collector reads Redis with a blocking client at scrape time
    @get(path, sync_to_thread=True, include_in_schema=False)
    def taskemit_metrics() -> Response[bytes]:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return taskemit_metrics
