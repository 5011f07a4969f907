"""Flow control, the pure part: what a listener's limits are, and the arithmetic of its rate.

A listener may declare (``@listener(..., concurrency=3, rate="20/s", ordered_by="order_id",
priority=5)``) how its jobs flow: at most N running at once across all workers, at most a
rate of starts (a token bucket, shared by all workers, optionally one per value of an
argument), one job at a time per ordering key in emit order, and its place among due jobs.
Redis enforces them inside the claim (``store/lua/claim.lua`` with ``lib_flow.lua``), atomically
across workers; this module says what they are, checks them where the user writes them, and
computes what the claim computes for the monitor (``bucket_tokens``, ``next_token_ms``).

Nothing here does I/O or reads a clock: times come in as arguments.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = (
    "MAX_PRIORITY",
    "FlowControl",
    "JobFlow",
    "Rate",
    "bucket_tokens",
    "check_priority",
    "key_text",
    "next_token_ms",
    "parse_rate",
)

#: the highest priority; 0 (the default) is the lowest
MAX_PRIORITY = 100
#: the longest ordering or rate key, in characters
MAX_KEY_LENGTH = 256

_UNITS = {
    **dict.fromkeys(("ms",), 1),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1000),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60_000),
    **dict.fromkeys(("h", "hour", "hours"), 3_600_000),
    **dict.fromkeys(("d", "day", "days"), 86_400_000),
}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*", re.IGNORECASE)
_RATE_HELP = (
    'a rate is "<count>/<unit>" or "<count>/<n><unit>", e.g. "100/s", "5000/h", "10/30s" (units: ms, s, m, h, d)'
)


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` starts per ``period_ms`` milliseconds, refilled continuously (``text`` as written)."""

    count: int
    period_ms: int
    text: str

    @property
    def per_second(self) -> float:
        return self.count * 1000 / self.period_ms

    @property
    def ms_per_token(self) -> float:
        return self.period_ms / self.count


def parse_rate(text: str) -> Rate:
    """``"100/s"`` -> Rate(100, 1000); ValueError saying what a rate looks like for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"{_RATE_HELP}; got {text!r}")
    match = _RATE.fullmatch(text)
    unit = match and _UNITS.get(match.group(3).lower())
    if match is None or unit is None:
        raise ValueError(f"{_RATE_HELP}; got {text!r}")
    count, every = int(match.group(1)), int(match.group(2) or 1)
    if count < 1 or every < 1:
        raise ValueError(f"a rate's count and period must be at least 1; got {text!r}")
    period = every * unit
    if period > 366 * 86_400_000 or count > 10**9:
        raise ValueError(f"a rate's period is at most a year and its count at most 10^9; got {text!r}")
    return Rate(count, period, text.strip())


def bucket_tokens(tokens: float | None, at_ms: int | None, now_ms: int, rate: Rate, burst: int) -> float:
    """The tokens of a bucket that held ``tokens`` at ``at_ms`` (None: a full bucket), at ``now_ms``.

    The bucket holds at most ``burst`` tokens and gains ``rate.count`` per ``rate.period_ms``,
    continuously; a start takes one. It never refills backwards (a clock behind ``at_ms``).
    The same arithmetic as ``refill`` in ``store/lua/lib_flow.lua``.
    """
    if tokens is None or at_ms is None:
        return float(burst)
    elapsed = max(0, now_ms - at_ms)
    return min(float(burst), tokens + elapsed * rate.count / rate.period_ms)


def next_token_ms(tokens: float, now_ms: int, rate: Rate) -> int:
    """When a bucket that holds ``tokens`` at ``now_ms`` holds one (``now_ms`` if it does)."""
    if tokens >= 1:
        return now_ms
    return now_ms + math.ceil((1 - tokens) * rate.period_ms / rate.count)


def check_priority(value: Any, where: str) -> int:
    """``value`` as a priority (an int from 0 to MAX_PRIORITY); ValueError naming ``where`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        raise ValueError(f"{where} must be an int from 0 (the lowest, the default) to {MAX_PRIORITY}, got {value!r}")
    return value


def key_text(value: Any, where: str) -> str:
    """An ordering or rate key's value as the text Redis keeps it under: a str, an int or a
    UUID; ValueError naming ``where`` for anything else."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | uuid.UUID) and not isinstance(value, bool):
        text = str(value)
    else:
        raise ValueError(f"{where} must be a str, an int or a UUID, got {type(value).__name__} {value!r}")
    if not text or len(text) > MAX_KEY_LENGTH or "\n" in text:
        raise ValueError(f"{where} must be 1 to {MAX_KEY_LENGTH} characters on one line, got {text!r}")
    return text


@dataclass(frozen=True, slots=True)
class FlowControl:
    """How a listener's jobs flow, as declared by ``@listener(...)``; the defaults limit nothing."""

    #: at most this many of its jobs run at once, across all workers
    concurrency: int | None = None
    #: at most this many starts per period (a token bucket shared by all workers)
    rate: Rate | None = None
    #: the bucket's size: starts that may follow each other at once after a quiet spell
    burst: int = 1
    #: the argument whose value has a bucket of its own (the rate per tenant, say)
    rate_key: str | None = None
    #: the argument whose value orders its jobs: one at a time per value, in emit order
    ordered_by: str | None = None
    #: a dead-lettered job of an ordered listener lets the later jobs of its key go on
    pass_dead: bool = False
    #: its jobs' place among due jobs: claimed as if due ``priority x priority_step`` earlier
    priority: int = 0

    @classmethod
    def declare(
        cls,
        *,
        concurrency: Any = None,
        rate: Any = None,
        burst: Any = None,
        rate_key: Any = None,
        ordered_by: Any = None,
        pass_dead: Any = False,
        priority: Any = 0,
    ) -> FlowControl:
        """The options of ``@listener(...)``, checked; ValueError saying which is wrong."""
        if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)):
            raise ValueError(f"concurrency must be an int of at least 1 (jobs at once), got {concurrency!r}")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be at least 1 (jobs at once), got {concurrency!r}")
        parsed = parse_rate(rate) if rate is not None else None
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
            raise ValueError(f"burst must be an int of at least 1 (tokens the bucket holds), got {burst!r}")
        if burst is not None and parsed is None:
            raise ValueError("burst sizes a rate's bucket: give rate= too")
        if rate_key is not None and parsed is None:
            raise ValueError("rate_key gives each value of an argument its own rate: give rate= too")
        for name, value in (("rate_key", rate_key), ("ordered_by", ordered_by)):
            if value is not None and (not isinstance(value, str) or not value.isidentifier()):
                raise ValueError(f"{name} must name an argument of the listener, got {value!r}")
        if not isinstance(pass_dead, bool):
            raise ValueError(f"pass_dead must be True or False, got {pass_dead!r}")
        if pass_dead and ordered_by is None:
            raise ValueError("pass_dead is about the jobs of an ordering key: give ordered_by= too")
        return cls(
            concurrency=concurrency,
            rate=parsed,
            burst=1 if burst is None else burst,
            rate_key=rate_key,
            ordered_by=ordered_by,
            pass_dead=pass_dead,
            priority=check_priority(priority, "priority"),
        )

    @property
    def limits(self) -> bool:
        """True when it declares anything at all."""
        return self != _NONE

    @property
    def keyed(self) -> bool:
        """True when each job's key must be read from its arguments at emit."""
        return self.ordered_by is not None or self.rate_key is not None

    def to_dict(self) -> dict[str, Any]:
        """Its declaration as JSON data (what the catalog keeps); only what it sets."""
        data: dict[str, Any] = {}
        if self.concurrency is not None:
            data["concurrency"] = self.concurrency
        if self.rate is not None:
            data["rate"] = self.rate.text
            data["burst"] = self.burst
        if self.rate_key is not None:
            data["rate_key"] = self.rate_key
        if self.ordered_by is not None:
            data["ordered_by"] = self.ordered_by
        if self.pass_dead:
            data["pass_dead"] = True
        if self.priority:
            data["priority"] = self.priority
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> FlowControl:
        """A declaration read back (from the catalog); one it cannot read limits nothing."""
        if not isinstance(data, dict) or not data:
            return _NONE
        try:
            return cls.declare(
                concurrency=data.get("concurrency"),
                rate=data.get("rate"),
                burst=data.get("burst") if data.get("rate") is not None else None,
                rate_key=data.get("rate_key"),
                ordered_by=data.get("ordered_by"),
                pass_dead=bool(data.get("pass_dead", False)),
                priority=data.get("priority", 0),
            )
        except ValueError:  # a newer version's declaration
            return _NONE

    def claim_fields(self) -> list[str]:
        """What the claim reads of it, in ``catalog.lua``'s order: concurrency, rate count, rate
        period (ms), burst, per key ('1'); '' for what it does not set."""
        rate = self.rate
        return [
            "" if self.concurrency is None else str(self.concurrency),
            "" if rate is None else str(rate.count),
            "" if rate is None else str(rate.period_ms),
            "" if rate is None else str(self.burst),
            "1" if rate is not None and self.rate_key is not None else "",
        ]

    def describe(self) -> str:
        """One line for people: "3 at once, 20/s (burst 1) per tenant, ordered by order_id, priority 5"."""
        parts = []
        if self.concurrency is not None:
            parts.append(f"{self.concurrency} at once")
        if self.rate is not None:
            per = f" per {self.rate_key}" if self.rate_key else ""
            parts.append(f"{self.rate.text} (burst {self.burst}){per}")
        if self.ordered_by is not None:
            parts.append(f"ordered by {self.ordered_by}" + (", dead pass" if self.pass_dead else ""))
        if self.priority:
            parts.append(f"priority {self.priority}")
        return ", ".join(parts)


_NONE = FlowControl()


@dataclass(frozen=True, slots=True)
class JobFlow:
    """What one job carries for the claim (``lib_flow.lua`` reads it back): its priority boost,
    the group it waits in (its ordering key, or its rate key when only the rate is keyed), and
    its rate key."""

    #: milliseconds it is claimed ahead of its run time (priority x priority_step)
    boost_ms: int = 0
    #: '' (no group), 'o' (ordered; a dead job lets the key go on), 'O' (ordered; a dead job
    #: holds its key), 'r' (waits behind its rate key's earlier jobs until claimed)
    mode: str = ""
    group: str = ""
    rate_key: str = ""

    @property
    def plain(self) -> bool:
        return not (self.boost_ms or self.mode or self.rate_key)

    def text(self) -> str:
        """The job's flow record as ``lib_flow.lua``'s ``job_flow`` parses it."""
        return f"{self.boost_ms}\n{self.mode}\n{self.group}\n{self.rate_key}"

    @classmethod
    def parse(cls, text: str) -> JobFlow:
        boost, mode, group, rate_key = text.split("\n", 3)
        return cls(int(boost), mode, group, rate_key)
