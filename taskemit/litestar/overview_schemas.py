"""The JSON types of the dashboard's overview and listener pages (msgspec structs, so the OpenAPI
schema has them), made from ``taskemit.monitor``'s history and catalog."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from ..monitor.series import History
from ..policy import Backoff, RetryPolicy
from .schemas import DeadLetterOut, ListenerOut

__all__ = (
    "FailureOut",
    "HistoryOut",
    "HistoryPointOut",
    "ListenerDetailOut",
    "ListenerSummaryOut",
    "PolicyOut",
    "history_out",
    "policy_out",
)


class HistoryPointOut(msgspec.Struct, kw_only=True):
    """One time bucket: attempts that finished in it, and the gauges sampled during it.

    Gauges are means of the samples taken in the bucket, with their maximum beside; they are
    null when no sample was taken (no worker and no dashboard was running).
    """

    #: the bucket's start (epoch seconds, UTC) and its length in seconds
    at: int
    seconds: int
    succeeded: int
    failed: int
    retried: int
    dead: int
    succeeded_per_s: float
    failed_per_s: float
    run_time_p50: float | None
    run_time_p95: float | None
    #: from the emit to the start of the first attempt, seconds
    latency_p50: float | None
    latency_p95: float | None
    samples: int
    #: due jobs per queue; for one listener, its own queued jobs under its name
    queued: dict[str, float]
    queued_max: dict[str, int]
    #: jobs of listeners that no live worker serves
    waiting: float | None
    waiting_max: int | None
    workers: float | None
    #: jobs running, and how many the live workers can run at once
    busy: float | None
    busy_max: int | None
    slots: float | None


class ListenerSummaryOut(msgspec.Struct, kw_only=True):
    """One listener over the whole span."""

    listener: str
    succeeded: int
    failed: int
    retried: int
    dead: int
    run_time_p50: float | None
    run_time_p95: float | None
    latency_p50: float | None
    latency_p95: float | None


class FailureOut(msgspec.Struct, kw_only=True):
    """Failed attempts of one listener with one error type over the span."""

    listener: str
    error_type: str
    count: int
    last_message: str
    #: the start of the last bucket with such a failure (epoch seconds)
    last_seen: int


class HistoryOut(msgspec.Struct, kw_only=True):
    """The history over a span: ``1h`` (a point per minute), ``24h`` (per 5 minutes) or ``30d``
    (per hour), oldest point first; of every listener, or of ``listener``."""

    span: str
    step: int
    start: int
    end: int
    listener: str | None
    points: list[HistoryPointOut]
    listeners: list[ListenerSummaryOut]
    failures: list[FailureOut]
    #: the series of ``queued`` (queue names; for one listener, its name)
    queues: list[str]


class PolicyOut(msgspec.Struct, kw_only=True):
    """A listener's retry policy and limits: its own options over the settings' defaults."""

    max_tries: int
    #: the backoff curve, as ``Backoff.describe`` says it, and the waits after attempts
    #: 1..max_tries-1 before jitter (with jitter, each wait is drawn up to that)
    backoff: str
    delays: list[float]
    jitter: str
    retry_on: list[str]
    give_up_on: list[str]
    #: seconds one attempt may run
    timeout: float
    #: the options the listener sets itself (the others are the settings')
    declared: list[str]
    #: False when no worker described the listener in the catalog: the settings' policy is shown
    described: bool


class ListenerDetailOut(msgspec.Struct, kw_only=True):
    """One listener: its counters, policy and newest dead letters."""

    listener: ListenerOut
    reliable: bool
    policy: PolicyOut
    #: its newest dead letters (the dead letters page has them all)
    dead_letters: list[DeadLetterOut]


def history_out(history: History) -> HistoryOut:
    return msgspec.convert(history.to_dict(), HistoryOut)


def _type_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def policy_out(declared: dict[str, Any], defaults: RetryPolicy, job_timeout: float, described: bool) -> PolicyOut:
    """The policy a listener runs with: ``declared`` (its catalog description's) over ``defaults``."""
    max_tries = int(declared.get("max_tries", defaults.max_tries))
    backoff = defaults.backoff
    if "backoff" in declared:
        try:
            backoff = Backoff.from_dict(declared["backoff"])
        except ValueError:  # described by a newer version: show the settings' instead
            declared = {k: v for k, v in declared.items() if k != "backoff"}
    plain = dataclasses.replace(backoff, jitter="none")
    timeout = declared.get("timeout", defaults.timeout)
    return PolicyOut(
        max_tries=max_tries,
        backoff=backoff.describe(),
        delays=[plain.delay_for(n) for n in range(1, max_tries)],
        jitter=backoff.jitter,
        retry_on=list(declared.get("retry_on", [_type_path(c) for c in defaults.retry_on])),
        give_up_on=list(declared.get("give_up_on", [_type_path(c) for c in defaults.give_up_on])),
        timeout=float(timeout if timeout is not None else job_timeout),
        declared=sorted(declared),
        described=described,
    )
