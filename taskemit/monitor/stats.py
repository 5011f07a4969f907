"""Per-listener counters and duration histograms: what workers record, and reading them back.

Workers count every finished attempt in the same Lua call that records it (see
``lua/lib_stats.lua``): succeeded, failed (attempts), retried, dead, and a duration
histogram with fixed buckets. Percentiles are estimated from the buckets, as Prometheus'
``histogram_quantile`` does. The pure part (buckets, quantiles) has no Redis in it.

The recent rates come from the per-minute buckets of the history (``history.py``), which
workers write once per ``history_interval``: the counters here are totals since the first
attempt, and cost no per-minute keys.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument
from ..store.keys import KeySpace
from ..store.wire import as_text
from .tags import queue_spaces

__all__ = (
    "BUCKETS",
    "ListenerStats",
    "OutcomeTally",
    "bucket_for",
    "listener_counters",
    "merged_counters",
    "outcome_args",
    "quantile",
    "read_listener_stats",
)

#: Upper bounds (seconds) of the duration buckets; the last bucket is +Inf.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
RATE_WINDOW_MINUTES = 5
_LABELS = (*(f"{b:g}" for b in BUCKETS), "+Inf")


def bucket_for(duration: float) -> str:
    """The label of the bucket ``duration`` falls in: its upper bound, or ``+Inf``."""
    return _LABELS[bisect.bisect_left(BUCKETS, duration)]


def quantile(q: float, counts: Mapping[str, int]) -> float | None:
    """Estimate the ``q`` quantile (0..1) from per-bucket counts, interpolating in the bucket."""
    if not 0 <= q <= 1:
        raise InvalidArgument(f"q must be within [0, 1], got {q}")
    bounds = [*BUCKETS, math.inf]
    per_bucket = [counts.get(f"{b:g}" if b != math.inf else "+Inf", 0) for b in bounds]
    total = sum(per_bucket)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(per_bucket):
        if count and seen + count >= rank:
            lower = bounds[i - 1] if i else 0.0
            upper = bounds[i]
            if upper == math.inf:
                return lower  # nothing to interpolate towards
            return lower + (upper - lower) * ((rank - seen) / count)
        seen += count
    return bounds[-2]


def outcome_args(
    space: KeySpace, listener: str, outcomes: Sequence[str], duration: float | None
) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV that ``count_outcome`` (lib_stats.lua) takes, for a script call."""
    return (
        [space.listener_stats(listener), space.listener_names],
        [
            listener,
            ",".join(outcomes),
            "" if duration is None else f"{duration:.6f}",
            "" if duration is None else bucket_for(duration),
        ],
    )


class OutcomeTally:
    """Counts of finished attempts per listener, summed in memory and written in one call each.

    A worker finishing a batch of jobs adds each attempt here and writes one ``count.lua``
    call per listener (``calls``) instead of one per attempt.
    """

    __slots__ = ("_tallies",)

    def __init__(self) -> None:
        # listener -> [outcome counts, duration sum, duration count, bucket counts]
        self._tallies: dict[str, tuple[dict[str, int], list[float], dict[str, int]]] = {}

    def __bool__(self) -> bool:
        return bool(self._tallies)

    def add(self, listener: str, outcomes: Sequence[str], duration: float | None) -> None:
        tally = self._tallies.get(listener)
        if tally is None:
            tally = self._tallies[listener] = ({}, [0.0, 0], {})
        counts, sums, buckets = tally
        for outcome in outcomes:
            counts[outcome] = counts.get(outcome, 0) + 1
        if duration is not None:
            sums[0] += duration
            sums[1] += 1
            label = "le:" + bucket_for(duration)
            buckets[label] = buckets.get(label, 0) + 1

    def calls(self, space: KeySpace) -> list[tuple[list[str], list[Any]]]:
        """The KEYS and ARGV of one ``count.lua`` call per listener counted."""
        calls = []
        for listener, (counts, sums, buckets) in self._tallies.items():
            args: list[Any] = [listener, f"{sums[0]:.6f}", int(sums[1]), len(counts)]
            for pair in (*counts.items(), *buckets.items()):
                args += pair
            calls.append(([space.listener_stats(listener), space.listener_names], args))
        return calls


@dataclass(frozen=True, slots=True)
class ListenerStats:
    """A listener's counters since they were first recorded, and its recent rates."""

    listener: str
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    duration_count: int = 0
    duration_sum: float = 0.0
    buckets: dict[str, int] = field(default_factory=dict)
    #: per second over the last RATE_WINDOW_MINUTES minutes (from the history: 0 with it off)
    succeeded_rate: float = 0.0
    failed_rate: float = 0.0

    @property
    def p50(self) -> float | None:
        return quantile(0.5, self.buckets)

    @property
    def p95(self) -> float | None:
        return quantile(0.95, self.buckets)

    @property
    def mean(self) -> float | None:
        return self.duration_sum / self.duration_count if self.duration_count else None


def _ints(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def merged_counters(hashes: Sequence[Mapping[bytes, bytes]]) -> dict[str, str]:
    """One listener's counter hashes (one per queue tag it has counters on) as one: each field
    summed (``duration_sum`` as a float, the rest as integers)."""
    if len(hashes) == 1:
        return _ints(hashes[0])
    totals: dict[str, float] = {}
    floats: set[str] = set()
    for raw in hashes:
        for key, value in _ints(raw).items():
            try:
                number: float = int(value)
            except ValueError:
                try:
                    number = float(value)
                except ValueError:  # not a counter: not summed
                    continue
                floats.add(key)
            totals[key] = totals.get(key, 0) + number
    return {key: repr(float(total)) if key in floats else str(int(total)) for key, total in totals.items()}


async def listener_counters(
    redis: Any, spaces: Sequence[KeySpace], also: Callable[[Any, list[str]], None] | None = None
) -> tuple[dict[str, dict[str, str]], list[Any]]:
    """Every listener with counters, by name, with its counters summed over ``spaces`` (the queue
    spaces: ``tags.queue_spaces``); two round trips. ``also(pipe, names)`` queues more reads on the
    second one (of the sorted names), whose replies come back second."""
    async with redis.pipeline(transaction=False) as pipe:
        for space in spaces:
            pipe.smembers(space.listener_names)
        members = await pipe.execute()
    reads = [(as_text(name), space) for space, names in zip(spaces, members, strict=True) for name in names]
    if not reads:
        return {}, []
    names = sorted({name for name, _ in reads})
    async with redis.pipeline(transaction=False) as pipe:
        for name, space in reads:
            pipe.hgetall(space.listener_stats(name))
        if also is not None:
            also(pipe, names)
        replies = await pipe.execute()
    found: dict[str, list[Mapping[bytes, bytes]]] = {}
    for (name, _), raw in zip(reads, replies[: len(reads)], strict=True):
        found.setdefault(name, []).append(raw)
    return {name: merged_counters(found[name]) for name in names}, replies[len(reads) :]


async def read_listener_stats(redis: Any, now: float | None = None, *, space: KeySpace) -> list[ListenerStats]:
    """Counters of every listener that has any, sorted by name (summed over the queue tags it has
    counters on, on a Redis Cluster), with their rates over the last ``RATE_WINDOW_MINUTES``
    minutes from the history's minute buckets; two round trips (three on a cluster)."""
    minute = int((now if now is not None else time.time()) // 60) * 60

    def rates_of(pipe: Any, names: list[str]) -> None:
        fields = [f"{metric}:{name}" for name in names for metric in ("ok", "fail")]
        for back in range(RATE_WINDOW_MINUTES):
            pipe.hmget(space.history("1m", minute - 60 * back), fields)

    counters, replies = await listener_counters(redis, await queue_spaces(redis, space), rates_of)
    names = list(counters)
    rate_fields = [f"{metric}:{name}" for name in names for metric in ("ok", "fail")]
    window = RATE_WINDOW_MINUTES * 60
    rates = [0] * len(rate_fields)
    for minute_counts in replies:
        for i, count in enumerate(minute_counts):
            rates[i] += int(count or 0)
    result = []
    for i, name in enumerate(names):
        fields = counters[name]
        result.append(
            ListenerStats(
                listener=name,
                succeeded=int(fields.get("succeeded", 0)),
                failed=int(fields.get("failed", 0)),
                retried=int(fields.get("retried", 0)),
                dead=int(fields.get("dead", 0)),
                duration_count=int(fields.get("duration_count", 0)),
                duration_sum=float(fields.get("duration_sum", 0.0)),
                buckets={k[3:]: int(v) for k, v in fields.items() if k.startswith("le:")},
                succeeded_rate=rates[2 * i] / window,
                failed_rate=rates[2 * i + 1] / window,
            )
        )
    return result
