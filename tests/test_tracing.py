"""OpenTelemetry: an emit inside a request's span is a child of it, and each listener run
continues the trace the job carries, retries included (the SDK's in-memory exporter)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from taskemit import Attempt, Emitter, listener
from taskemit.engine import InProcessWorker
from taskemit.settings import Settings

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
runs: list[Any] = []


def _reset_global_provider() -> None:
    """Back to no tracer provider (the API sets one once per process; its own tests reset it so)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _reset_global_provider()
    trace.set_tracer_provider(_PROVIDER)
    _EXPORTER.clear()
    runs.clear()
    yield _EXPORTER
    _reset_global_provider()  # the other tests run without tracing, as an app without a provider does


@listener("order_paid", backoff=None, max_tries=2)
async def ship(order: int, attempt: Attempt) -> None:
    with trace.get_tracer("shop").start_as_current_span("carrier call"):
        runs.append((order, attempt.number))
        if attempt.number == 1:
            raise ConnectionError("carrier down")


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


async def test_listener_runs_continue_the_trace_of_the_request_that_emitted(
    taskemit_settings: Settings, spans: InMemorySpanExporter
) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    async with InProcessWorker([ship], settings), Emitter([ship], settings) as emitter:
        with trace.get_tracer("web").start_as_current_span("POST /orders/7/pay") as request:
            receipt = await emitter.publish("order_paid", 7)
        deadline = time.monotonic() + 10
        while len([s for s in spans.get_finished_spans() if s.name == f"taskemit run {ship.name}"]) < 2:
            assert time.monotonic() < deadline, [s.name for s in spans.get_finished_spans()]
            await asyncio.sleep(0.02)
    assert receipt is not None and runs == [(7, 1), (7, 2)]
    finished = list(spans.get_finished_spans())
    trace_id = request.get_span_context().trace_id
    emit = _one(finished, "taskemit emit order_paid")
    assert emit.kind is SpanKind.PRODUCER and emit.parent is not None
    assert emit.parent.span_id == request.get_span_context().span_id
    assert emit.attributes is not None and emit.attributes["taskemit.event_uuid"] == receipt.event_uuid
    first, second = sorted(
        (s for s in finished if s.name == f"taskemit run {ship.name}"),
        key=lambda s: s.attributes["taskemit.attempt"] if s.attributes else 0,
    )
    for run in (first, second):  # both attempts: children of the emit, in the request's trace
        assert run.kind is SpanKind.CONSUMER and run.context is not None and run.context.trace_id == trace_id
        assert run.parent is not None and run.parent.span_id == emit.context.span_id  # type: ignore[union-attr]
        assert run.attributes is not None and run.attributes["taskemit.job_id"] == receipt.jobs[ship.name]
    assert first.status.status_code is StatusCode.ERROR
    assert any(event.name == "exception" for event in first.events)
    assert second.status.status_code is not StatusCode.ERROR
    carrier_calls = [s for s in finished if s.name == "carrier call"]  # the listener's own spans nest under its run
    assert {s.parent.span_id for s in carrier_calls if s.parent} == {first.context.span_id, second.context.span_id}  # type: ignore[union-attr]


async def test_tracing_off_carries_nothing(taskemit_settings: Settings, spans: InMemorySpanExporter) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False, "tracing": False})
    async with Emitter([ship], settings) as emitter:
        with trace.get_tracer("web").start_as_current_span("request"):
            await emitter.publish("order_paid", 8)
    assert [span.name for span in spans.get_finished_spans()] == ["request"]
