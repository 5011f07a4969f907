"""OpenTelemetry tracing, when ``opentelemetry-api`` is installed (``pip install 'taskemit[otel]'``).

An emit opens a PRODUCER span ``taskemit emit <event id>``, a child of the current span (the
web request's), and carries that span's context in each of its jobs (W3C trace context, in
taskemit's metadata). Each listener run opens a CONSUMER span ``taskemit run <listener>``
whose parent is the carried context, so one trace goes from the request through the emit to
every listener run, retries included; what the listener does is traced under its run span.

Nothing of this runs, and OpenTelemetry is not even imported, until the app has set a tracer
provider (which imports it), or names one in ``OTEL_PYTHON_TRACER_PROVIDER``; nor with the
``tracing`` setting off.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ("active", "annotate", "available", "emit_span", "run_span")

_SYSTEM = "taskemit"
#: a provider named by OTEL_PYTHON_TRACER_PROVIDER is loaded by the API on first use
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_tracer_of: tuple[Any, Any] = (None, None)


@functools.cache
def available() -> bool:
    """True when opentelemetry-api can be imported."""
    return importlib.util.find_spec("opentelemetry") is not None


@functools.cache
def _release() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("taskemit")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without metadata
        return None


def _trace() -> Any:
    """``opentelemetry.trace`` once something imported it (an app that sets a provider does)."""
    module = sys.modules.get("opentelemetry.trace")
    if module is None and _PROVIDER_FROM_ENV and available():
        import opentelemetry.trace as module
    return module


def _tracer() -> Any:
    """taskemit's tracer from the app's tracer provider; None while none is set (the API alone
    only makes spans that record nothing: skipping them keeps an emit at its cost without it)."""
    global _tracer_of
    trace = _trace()
    # the API's own test of "no provider set" (get_tracer_provider reads os.environ on every call
    # until one is; this runs on every emit)
    if trace is None or (getattr(trace, "_TRACER_PROVIDER", True) is None and not _PROVIDER_FROM_ENV):
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    owner, tracer = _tracer_of
    if owner is not provider:
        tracer = provider.get_tracer("taskemit", _release())
        _tracer_of = (provider, tracer)
    return tracer


def active() -> bool:
    """True when spans would record: the app set a tracer provider."""
    # the common answers without a call (this runs on every emit): OpenTelemetry not imported,
    # or imported with no provider set and none named in the environment
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None and not _PROVIDER_FROM_ENV:
        return False
    if trace is not None and getattr(trace, "_TRACER_PROVIDER", True) is None and not _PROVIDER_FROM_ENV:
        return False
    return _tracer() is not None


@contextlib.contextmanager
def emit_span(event_id: str) -> Iterator[dict[str, str] | None]:
    """A span around preparing one emit; yields the trace context to carry in its jobs (None
    when there is nothing to carry)."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    attributes = {"messaging.system": _SYSTEM, "messaging.operation": "publish", "messaging.destination.name": event_id}
    with tracer.start_as_current_span(f"taskemit emit {event_id}", kind=SpanKind.PRODUCER, attributes=attributes):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield carrier or None


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (the emit's, once its event uuid is known)."""
    trace = _trace()
    if trace is not None:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({f"taskemit.{key}": value for key, value in attributes.items()})


@contextlib.contextmanager
def run_span(listener: str, carrier: Any, attributes: dict[str, Any]) -> Iterator[None]:
    """A span around one listener run, continuing the trace its job carries (if any)."""
    tracer = _tracer()
    if tracer is None:
        yield
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    parent = propagate.extract(carrier) if isinstance(carrier, dict) else None
    attrs = {"messaging.system": _SYSTEM, "messaging.operation": "process", "messaging.destination.name": listener}
    attrs.update({f"taskemit.{key}": value for key, value in attributes.items() if value is not None})
    with tracer.start_as_current_span(
        f"taskemit run {listener}", context=parent, kind=SpanKind.CONSUMER, attributes=attrs
    ):
        yield
