"""Reading the history back as series: one point per time bucket over a span (the last hour per
minute, the last 24 hours per 5 minutes, the last 30 days per hour).

Workers write the buckets (``history.py``); reading a span is one pipelined round trip of one
``HGETALL`` per bucket. Percentiles come from the buckets' histograms, as Prometheus'
``histogram_quantile`` estimates them (``stats.quantile``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument
from ..settings import Settings
from .history import COUNTED, ERROR, FIVE_MINUTES, HOUR, LATENCY, MESSAGE, MINUTE, RUN_TIME, Resolution
from .stats import quantile

__all__ = ("SPANS", "FailureCount", "History", "HistoryPoint", "ListenerSummary", "Span", "read_history")


@dataclass(frozen=True, slots=True)
class Span:
    """What a chart shows: ``points`` buckets of one resolution, up to now."""

    name: str
    resolution: Resolution
    points: int

    @property
    def step(self) -> int:
        return self.resolution.step


#: the spans by name: ``1h`` (per minute), ``24h`` (per 5 minutes), ``30d`` (per hour)
SPANS: dict[str, Span] = {
    "1h": Span("1h", MINUTE, 60),
    "24h": Span("24h", FIVE_MINUTES, 288),
    "30d": Span("30d", HOUR, 720),
}


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One time bucket: attempts finished in it, and the gauges sampled during it.

    Counts and percentiles are of every listener, or of the one the history was read for.
    Gauges are the mean of the samples taken during the bucket (None when none was taken:
    no worker and no dashboard was running), with their maximum beside.
    """

    #: the bucket's start (epoch seconds) and length
    at: int
    seconds: int
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    run_time_p50: float | None = None
    run_time_p95: float | None = None
    latency_p50: float | None = None
    latency_p95: float | None = None
    #: samples of the gauges taken during the bucket
    samples: int = 0
    #: due jobs per queue (for one listener: its own jobs, under its name), mean and maximum
    queued: dict[str, float] = field(default_factory=dict)
    queued_max: dict[str, int] = field(default_factory=dict)
    #: jobs waiting with no live worker that serves their listener
    waiting: float | None = None
    waiting_max: int | None = None
    workers: float | None = None
    busy: float | None = None
    busy_max: int | None = None
    slots: float | None = None

    @property
    def succeeded_per_s(self) -> float:
        return self.succeeded / self.seconds

    @property
    def failed_per_s(self) -> float:
        return self.failed / self.seconds

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["succeeded_per_s"] = self.succeeded_per_s
        data["failed_per_s"] = self.failed_per_s
        return data


@dataclass(frozen=True, slots=True)
class ListenerSummary:
    """One listener over a whole span: its outcomes and percentiles."""

    listener: str
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    run_time_p50: float | None = None
    run_time_p95: float | None = None
    latency_p50: float | None = None
    latency_p95: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Failed attempts of one listener with one error type over a span, and the last message seen."""

    listener: str
    error_type: str
    count: int
    last_message: str
    #: the start of the last bucket it failed in
    last_seen: int

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class History:
    """A span of the history, oldest point first."""

    span: str
    step: int
    #: the start of the first bucket and the end of the last (epoch seconds)
    start: int
    end: int
    #: the listener it was read for (None: every listener)
    listener: str | None
    points: list[HistoryPoint]
    #: per listener with attempts in the span, by name
    listeners: list[ListenerSummary]
    #: failures by listener and error type, most first
    failures: list[FailureCount]
    #: the names of the series in ``HistoryPoint.queued``
    queues: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "span": self.span,
            "step": self.step,
            "start": self.start,
            "end": self.end,
            "listener": self.listener,
            "points": [point.to_dict() for point in self.points],
            "listeners": [summary.to_dict() for summary in self.listeners],
            "failures": [failure.to_dict() for failure in self.failures],
            "queues": self.queues,
        }


def span_of(name: str) -> Span:
    """The span called ``name``; InvalidArgument naming the spans there are otherwise."""
    try:
        return SPANS[name]
    except KeyError:
        raise InvalidArgument(f"unknown history span {name!r}: use one of {', '.join(SPANS)}") from None


class _Listener:
    """One listener's fields of one bucket, parsed."""

    __slots__ = ("counts", "errors", "latency", "messages", "run_time")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.run_time: dict[str, int] = {}
        self.latency: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.messages: dict[str, str] = {}


_METRIC_NAMES = {metric: name for name, metric in COUNTED.items()}


def _parse(raw: Mapping[bytes, bytes]) -> tuple[dict[str, _Listener], dict[str, dict[str, int]]]:
    """A bucket's fields: per listener, and the gauges (metric -> {name or '': value})."""
    listeners: dict[str, _Listener] = {}
    gauges: dict[str, dict[str, int]] = {}
    for raw_name, raw_value in raw.items():
        name = raw_name.decode()
        metric, sep, owner = name.partition(":")
        if metric.startswith(MESSAGE):
            listeners.setdefault(owner, _Listener()).messages[metric[len(MESSAGE) :]] = raw_value.decode()
            continue
        value = int(raw_value)
        if metric in _METRIC_NAMES:
            listeners.setdefault(owner, _Listener()).counts[_METRIC_NAMES[metric]] = value
        elif metric.startswith(ERROR):
            listeners.setdefault(owner, _Listener()).errors[metric[len(ERROR) :]] = value
        elif metric.startswith(LATENCY):
            listeners.setdefault(owner, _Listener()).latency[metric[len(LATENCY) :]] = value
        elif metric.startswith(RUN_TIME):
            listeners.setdefault(owner, _Listener()).run_time[metric[len(RUN_TIME) :]] = value
        else:
            gauges.setdefault(metric, {})[owner if sep else ""] = value
    return listeners, gauges


def _add(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, count in counts.items():
        into[key] = into.get(key, 0) + count


def _mean(gauges: Mapping[str, Mapping[str, int]], metric: str, samples: int, name: str = "") -> float | None:
    if not samples or metric not in gauges:
        return None
    return gauges[metric].get(name, 0) / samples


def _peak(gauges: Mapping[str, Mapping[str, int]], metric: str, name: str = "") -> int | None:
    values = gauges.get(metric + "x")
    return None if values is None else values.get(name)


class _Totals:
    """Counts and histograms summed over listeners or buckets."""

    __slots__ = ("counts", "latency", "run_time")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.run_time: dict[str, int] = {}
        self.latency: dict[str, int] = {}

    def add(self, parsed: _Listener) -> None:
        _add(self.counts, parsed.counts)
        _add(self.run_time, parsed.run_time)
        _add(self.latency, parsed.latency)

    def figures(self) -> dict[str, Any]:
        return {
            "succeeded": self.counts.get("succeeded", 0),
            "failed": self.counts.get("failed", 0),
            "retried": self.counts.get("retried", 0),
            "dead": self.counts.get("dead", 0),
            "run_time_p50": quantile(0.5, self.run_time),
            "run_time_p95": quantile(0.95, self.run_time),
            "latency_p50": quantile(0.5, self.latency),
            "latency_p95": quantile(0.95, self.latency),
        }


def _point(
    at: int, step: int, listeners: dict[str, _Listener], gauges: dict[str, dict[str, int]], only: str | None
) -> HistoryPoint:
    totals = _Totals()
    for name, parsed in listeners.items():
        if only is None or name == only:
            totals.add(parsed)
    samples = gauges.get("n", {}).get("", 0)
    if only is None:
        queue_names: Iterable[str] = gauges.get("q", {})
        queued = {q: gauges["q"][q] / samples for q in queue_names} if samples else {}
        queued_max = dict(gauges.get("qx", {})) if samples else {}
        waiting, waiting_max = _mean(gauges, "wait", samples), _peak(gauges, "wait")
    else:
        mine = gauges.get("ql", {})
        queued = {only: mine.get(only, 0) / samples} if samples and "ql" in gauges else {}
        queued_max = {only: gauges.get("qlx", {}).get(only, 0)} if queued else {}
        waiting = gauges.get("w", {}).get(only, 0) / samples if samples else None
        waiting_max = None
    return HistoryPoint(
        at=at,
        seconds=step,
        **totals.figures(),
        samples=samples,
        queued=queued,
        queued_max=queued_max,
        waiting=waiting,
        waiting_max=waiting_max,
        workers=_mean(gauges, "wk", samples),
        busy=_mean(gauges, "busy", samples),
        busy_max=_peak(gauges, "busy"),
        slots=_mean(gauges, "slots", samples),
    )


async def read_history(
    redis: Any, settings: Settings, span: str = "1h", *, listener: str | None = None, now: float | None = None
) -> History:
    """The history over ``span`` (``1h``, ``24h`` or ``30d``), of every listener or of ``listener``;
    one round trip."""
    chosen = span_of(span)
    step = chosen.step
    now = time.time() if now is None else now
    last = chosen.resolution.bucket(now)
    starts = [last - step * back for back in range(chosen.points - 1, -1, -1)]
    space = settings.keys
    async with redis.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.hgetall(space.history(chosen.resolution.name, start))
        replies = await pipe.execute()
    points = []
    per_listener: dict[str, _Totals] = {}
    failures: dict[tuple[str, str], list[Any]] = {}
    queues: set[str] = set()
    for start, raw in zip(starts, replies, strict=True):
        parsed, gauges = _parse(raw)
        points.append(_point(start, step, parsed, gauges, listener))
        queues.update(points[-1].queued)
        for name, fields in parsed.items():
            if listener is not None and name != listener:
                continue
            per_listener.setdefault(name, _Totals()).add(fields)
            for error_type, count in fields.errors.items():
                seen = failures.setdefault((name, error_type), [0, "", start])
                seen[0] += count
                seen[1] = fields.messages.get(error_type, seen[1])
                seen[2] = start
    summaries = [
        ListenerSummary(listener=name, **totals.figures())
        for name, totals in sorted(per_listener.items())
        if totals.counts
    ]
    counted = [
        FailureCount(name, error_type, count, message, seen)
        for (name, error_type), (count, message, seen) in failures.items()
    ]
    counted.sort(key=lambda f: (-f.count, f.listener, f.error_type))
    return History(
        span=chosen.name,
        step=step,
        start=starts[0],
        end=last + step,
        listener=listener,
        points=points,
        listeners=summaries,
        failures=counted,
        queues=sorted(queues),
    )
