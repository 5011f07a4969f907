"""The history in time buckets: what a worker counts in memory and writes once per interval.

A worker tallies each finished attempt in memory (:class:`HistoryTally`): per minute and
listener, the outcomes (succeeded, failed, retried, dead), a histogram of run times and one of
emit-to-start latencies (first attempts), and the failures by error type. Every
``history_interval`` seconds it adds the tally to three hashes per minute it covers, one per
:data:`RESOLUTIONS` (the minute, its 5 minutes, its hour), in one ``history.lua`` call: the cost
in Redis is per interval and listener, not per job. Each hash expires its resolution's retention
after its bucket ends (the ``history_*_retention`` settings).

Queue depth, jobs waiting for a worker and busy slots are gauges: once per interval, whoever
takes the sampler key (a worker, or a dashboard that is open) reads them (:func:`sample_gauges`)
and adds the sample to the same buckets, which keep each gauge's sum, maximum and the number of
samples. ``series.py`` reads the buckets back.

Field names in a bucket are ``<metric>:<listener>`` (or ``<metric>:<queue>``; metric names
have no ``:``), or a bare metric for the gauges of the whole namespace.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..settings import Settings
from ..store import scripts as lua
from ..store.keys import KeySpace
from .queues import queue_depths
from .stats import BUCKETS
from .workers import listener_views, live_workers

__all__ = (
    "HISTORY",
    "RESOLUTIONS",
    "Gauges",
    "HistoryTally",
    "Resolution",
    "claim_sample",
    "history_call",
    "retention",
    "sample_gauges",
    "sample_if_due",
    "write_history",
)

HISTORY = lua.script("history")


@dataclass(frozen=True, slots=True)
class Resolution:
    """One size of time bucket: its name in the keys and its length in seconds."""

    name: str
    step: int

    def bucket(self, at: float) -> int:
        """The start (epoch seconds) of the bucket ``at`` falls in."""
        return int(at // self.step) * self.step


MINUTE = Resolution("1m", 60)
FIVE_MINUTES = Resolution("5m", 300)
HOUR = Resolution("1h", 3600)
#: every bucket size; each written minute is added to one bucket of each
RESOLUTIONS: tuple[Resolution, ...] = (MINUTE, FIVE_MINUTES, HOUR)

#: the outcome names the stats count -> the metric names in a bucket
COUNTED = {"succeeded": "ok", "failed": "fail", "retried": "retry", "dead": "dead"}
#: histogram metrics: prefix + bucket label (``rt0.05``, ``lat+Inf``: ``stats.BUCKETS``' upper bounds)
RUN_TIME, LATENCY = "rt", "lat"
#: failures by error type: ``err=<type>`` counts, ``msg=<type>`` the last message
ERROR, MESSAGE = "err=", "msg="
_LABELS = (*(f"{b:g}" for b in BUCKETS), "+Inf")
_RUN_TIME_LABELS = tuple(RUN_TIME + label for label in _LABELS)
_LATENCY_LABELS = tuple(LATENCY + label for label in _LABELS)
_MESSAGE_LIMIT = 200


def retention(settings: Settings) -> dict[str, int]:
    """Seconds each resolution's buckets are kept after they end, by resolution name."""
    return {
        MINUTE.name: settings.history_minute_retention,
        FIVE_MINUTES.name: settings.history_five_minute_retention,
        HOUR.name: settings.history_hour_retention,
    }


class HistoryTally:
    """What one worker counted since its last write, per minute and listener (no Redis, no clock)."""

    __slots__ = ("_counts", "_messages")

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], dict[str, int]] = {}
        self._messages: dict[tuple[int, str], dict[str, str]] = {}

    def __bool__(self) -> bool:
        return bool(self._counts)

    def add(
        self,
        listener: str,
        counted: Iterable[str],
        finished_at: float,
        run_time: float | None = None,
        latency: float | None = None,
        error_type: str | None = None,
        error_message: str = "",
    ) -> None:
        """Count one finished attempt of ``listener`` in the minute of ``finished_at``.

        ``counted`` are the stats' outcome names (``succeeded``, ``failed``, ``retried``,
        ``dead``); ``run_time`` the seconds the listener ran, ``latency`` the seconds from the
        emit to the start of its first attempt; ``error_type`` the failure's exception type.
        """
        key = (int(finished_at // 60) * 60, listener)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = {}
        for outcome in counted:
            metric = COUNTED[outcome]
            counts[metric] = counts.get(metric, 0) + 1
        if run_time is not None:
            label = _RUN_TIME_LABELS[bisect.bisect_left(BUCKETS, run_time)]
            counts[label] = counts.get(label, 0) + 1
        if latency is not None:
            label = _LATENCY_LABELS[bisect.bisect_left(BUCKETS, latency)]
            counts[label] = counts.get(label, 0) + 1
        if error_type:
            metric = ERROR + error_type
            counts[metric] = counts.get(metric, 0) + 1
            self._messages.setdefault(key, {})[MESSAGE + error_type] = error_message[:_MESSAGE_LIMIT]

    def take(self) -> HistoryTally:
        """Everything counted so far, leaving this tally empty."""
        taken = HistoryTally()
        taken._counts, self._counts = self._counts, {}
        taken._messages, self._messages = self._messages, {}
        return taken

    def merge(self, other: HistoryTally) -> None:
        """Add ``other``'s counts to this one's (a write that failed is tried again with the next)."""
        for key, counts in other._counts.items():
            mine = self._counts.setdefault(key, {})
            for metric, count in counts.items():
                mine[metric] = mine.get(metric, 0) + count
        for key, messages in other._messages.items():
            self._messages.setdefault(key, {}).update(messages)

    def minutes(self) -> Iterable[tuple[int, str, Mapping[str, int], Mapping[str, str]]]:
        """(minute start, listener, metric counts, last error messages) per minute and listener counted."""
        for key, counts in self._counts.items():
            yield key[0], key[1], counts, self._messages.get(key, {})


@dataclass(frozen=True, slots=True)
class Gauges:
    """One sample of what is waiting and who is busy, across the namespace."""

    #: due jobs per queue (name)
    queued: dict[str, int] = field(default_factory=dict)
    #: jobs per listener in its ready set (due and delayed)
    listener_queued: dict[str, int] = field(default_factory=dict)
    #: jobs of listeners no live worker serves, per listener
    waiting: dict[str, int] = field(default_factory=dict)
    workers: int = 0
    #: jobs the live workers run now, and the jobs they can run at once
    busy: int = 0
    slots: int = 0


async def claim_sample(redis: Any, space: KeySpace, holder: str, interval: float) -> bool:
    """True for the one caller per ``interval`` seconds that takes the sampler key: it samples."""
    return bool(await redis.set(space.history_sampler, holder, nx=True, px=max(1, int(interval * 1000))))


async def sample_gauges(redis: Any, settings: Settings) -> Gauges:
    """Queue depth per queue and per listener, waiting jobs, live workers and their busy slots now."""
    space = settings.keys
    views = await listener_views(redis, space=space)
    queues = await queue_depths(redis, settings)
    workers = await live_workers(redis, space=space)
    return Gauges(
        queued={view.queue: view.queued for view in queues},
        listener_queued={view.listener: view.queued for view in views},
        waiting={view.listener: view.queued for view in views if view.queued and not view.workers},
        workers=len(workers),
        busy=sum(worker.jobs_running for worker in workers),
        slots=sum(worker.concurrency for worker in workers),
    )


async def sample_if_due(redis: Any, settings: Settings, holder: str) -> bool:
    """Sample the gauges and write them to the history if nobody did this interval; True if it did."""
    if not await claim_sample(redis, settings.keys, holder, settings.history_interval):
        return False
    now = time.time()
    await write_history(redis, settings, None, await sample_gauges(redis, settings), now)
    return True


class _Bucket:
    __slots__ = ("expire_at", "incr", "max", "set")

    def __init__(self, expire_at: int) -> None:
        self.expire_at = expire_at
        self.incr: dict[str, int] = {}
        self.max: dict[str, int] = {}
        self.set: dict[str, str] = {}

    def add(self, name: str, count: int) -> None:
        self.incr[name] = self.incr.get(name, 0) + count

    def peak(self, name: str, value: int) -> None:
        self.max[name] = max(value, self.max.get(name, value))


def _gauge(bucket: _Bucket, name: str, value: int) -> None:
    bucket.add(name, value)
    metric, sep, rest = name.partition(":")
    bucket.peak(f"{metric}x{sep}{rest}", value)


def history_call(
    settings: Settings, tally: HistoryTally | None, gauges: Gauges | None = None, now: float = 0.0
) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of one ``history.lua`` call: ``tally`` added to the buckets of its minutes,
    and ``gauges`` (sampled at ``now``) to the buckets of ``now``."""
    space = settings.keys
    kept = retention(settings)
    buckets: dict[str, _Bucket] = {}

    def bucket(resolution: Resolution, at: float) -> _Bucket:
        start = resolution.bucket(at)
        key = space.history(resolution.name, start)
        found = buckets.get(key)
        if found is None:
            found = buckets[key] = _Bucket(start + resolution.step + kept[resolution.name])
        return found

    for minute, listener, counts, messages in tally.minutes() if tally is not None else ():
        for resolution in RESOLUTIONS:
            target = bucket(resolution, minute)
            for metric, count in counts.items():
                target.add(f"{metric}:{listener}", count)
            for metric, message in messages.items():
                target.set[f"{metric}:{listener}"] = message
    if gauges is not None:
        for resolution in RESOLUTIONS:
            target = bucket(resolution, now)
            target.add("n", 1)
            for name, value in (("wk", gauges.workers), ("busy", gauges.busy), ("slots", gauges.slots)):
                _gauge(target, name, value)
            _gauge(target, "wait", sum(gauges.waiting.values()))
            for queue, count in gauges.queued.items():
                _gauge(target, f"q:{queue}", count)
            for listener, count in gauges.listener_queued.items():
                _gauge(target, f"ql:{listener}", count)
            for listener, count in gauges.waiting.items():
                target.add(f"w:{listener}", count)
    keys: list[str] = []
    args: list[Any] = []
    for key, found in buckets.items():
        keys.append(key)
        args += (found.expire_at, len(found.incr), len(found.max), len(found.set))
        pairs: list[Mapping[str, Any]] = [found.incr, found.max, found.set]
        for values in pairs:
            for name, value in values.items():
                args += (name, value)
    return keys, args


async def write_history(
    redis: Any, settings: Settings, tally: HistoryTally | None, gauges: Gauges | None = None, now: float = 0.0
) -> None:
    """Add ``tally`` and ``gauges`` to their buckets: one script call."""
    keys, args = history_call(settings, tally, gauges, now)
    if keys:
        await HISTORY(redis, keys, args)
