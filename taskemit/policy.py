"""Retry policies and backoff curves: pure functions of the attempt number.

No Redis, no clock and no global randomness live here; jitter draws from a
``random.Random`` passed in, so the worker and the property tests control it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from .errors import PolicyError

__all__ = ("Backoff", "Jitter", "RetryPolicy")

Jitter = Literal["none", "full", "equal"]
_Kind = Literal["fixed", "linear", "exponential", "explicit"]
_JITTERS: tuple[str, ...] = ("none", "full", "equal")
# The parameters each kind uses (by its factory's names) and the dataclass field each is kept in.
_PARAMS: dict[str, dict[str, str]] = {
    "fixed": {"seconds": "first"},
    "linear": {"step": "step", "first": "first", "cap": "cap"},
    "exponential": {"first": "first", "factor": "factor", "cap": "cap"},
    "explicit": {"delays": "delays"},
}
_UNUSED: dict[str, object] = {"first": 0.0, "step": 0.0, "factor": 1.0, "cap": None, "delays": ()}


def _seconds(name: str, value: object, minimum: float = 0.0, *, positive: bool = False) -> float:
    """``value`` as a finite float >= ``minimum`` (> 0 if ``positive``); errors name ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number < minimum or (positive and number <= 0.0):
        bound = "> 0" if positive else f">= {minimum:g}"
        raise PolicyError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


@dataclass(frozen=True, slots=True, repr=False)
class Backoff:
    """How long to wait before each retry: an immutable, hashable, JSON-safe curve.

    Build it with ``fixed``, ``linear``, ``exponential`` or ``explicit``; the fields are
    the stored form, and parameters a kind does not use must keep their defaults so that
    equal curves compare equal.
    """

    kind: _Kind
    first: float = 0.0
    step: float = 0.0
    factor: float = 1.0
    cap: float | None = None
    delays: tuple[float, ...] = ()
    jitter: Jitter = "none"

    def __post_init__(self) -> None:
        if self.kind not in tuple(_PARAMS):
            raise PolicyError(f"backoff kind must be one of {', '.join(_PARAMS)}; got {self.kind!r}")
        if self.jitter not in _JITTERS:
            raise PolicyError(f"jitter must be one of 'none', 'full', 'equal'; got {self.jitter!r}")
        for field, default in _UNUSED.items():
            if field not in _PARAMS[self.kind].values() and getattr(self, field) != default:
                raise PolicyError(f"{field} does not apply to kind={self.kind!r}")
        object.__setattr__(self, "step", _seconds("step", self.step))  # before first: its default
        first = _seconds("seconds" if self.kind == "fixed" else "first", self.first)
        object.__setattr__(self, "first", first)
        object.__setattr__(self, "factor", _seconds("factor", self.factor, minimum=1.0))
        if self.cap is not None:
            cap = _seconds("cap", self.cap)
            if cap < first:
                raise PolicyError(f"cap must be >= first ({first:g}) or None, got {self.cap!r}")
            object.__setattr__(self, "cap", cap)
        if self.kind == "explicit":
            if not isinstance(self.delays, tuple) or not self.delays:
                raise PolicyError(f"delays must be a non-empty list of seconds, got {self.delays!r}")
            delays = tuple(_seconds(f"delays[{i}]", d) for i, d in enumerate(self.delays))
            object.__setattr__(self, "delays", delays)

    @classmethod
    def fixed(cls, seconds: float, *, jitter: Jitter = "none") -> Backoff:
        """The same wait before every retry."""
        return cls("fixed", first=seconds, jitter=jitter)

    @classmethod
    def linear(
        cls, step: float, *, first: float | None = None, cap: float | None = None, jitter: Jitter = "none"
    ) -> Backoff:
        """Wait ``first + step * (n - 1)`` before retry ``n`` (``first`` defaults to ``step``)."""
        first = step if first is None else first
        return cls("linear", first=first, step=step, cap=cap, jitter=jitter)

    @classmethod
    def exponential(
        cls, *, first: float = 1.0, factor: float = 2.0, cap: float | None = 300.0, jitter: Jitter = "none"
    ) -> Backoff:
        """Wait ``first * factor ** (n - 1)`` before retry ``n``, at most ``cap``."""
        return cls("exponential", first=first, factor=factor, cap=cap, jitter=jitter)

    @classmethod
    def explicit(cls, delays: Sequence[float], *, jitter: Jitter = "none") -> Backoff:
        """Wait ``delays[n - 1]`` before retry ``n``; retries past the end reuse the last value."""
        if isinstance(delays, (str, bytes)) or not isinstance(delays, Sequence):
            raise PolicyError(f"delays must be a sequence of seconds, got {delays!r}")
        return cls("explicit", delays=tuple(delays), jitter=jitter)

    def delay_for(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1 = after the first failed attempt).

        With jitter, exactly one value is drawn from ``rng`` per call, so a seeded rng
        gives a reproducible schedule.
        """
        rng = self._require_rng(rng)
        delay = self._base(retry_number)
        if rng is None:
            return delay
        fraction = rng.random()
        if math.isinf(delay):  # an uncapped curve overflowed; inf * 0.0 would be nan
            return delay
        if self.jitter == "full":
            return min(delay, delay * fraction)
        return min(delay, delay / 2 + delay / 2 * fraction)

    def describe(self) -> str:
        """Short human text, e.g. ``exponential(first=1s, factor=2, cap=300s, jitter=full)``."""
        if self.kind == "fixed":
            parts = [f"{self.first:g}s"]
        elif self.kind == "explicit":
            parts = [f"{d:g}s" for d in self.delays[:5]]
            if len(self.delays) > 5:
                parts.append(f"... ({len(self.delays)} values)")
        else:
            shape = f"step={self.step:g}s" if self.kind == "linear" else f"factor={self.factor:g}"
            parts = [f"first={self.first:g}s", shape]
            if self.cap is not None:
                parts.append(f"cap={self.cap:g}s")
        if self.jitter != "none":
            parts.append(f"jitter={self.jitter}")
        return f"{self.kind}({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict that ``from_dict`` turns back into an equal ``Backoff``."""
        data: dict[str, Any] = {"kind": self.kind}
        for param, field in _PARAMS[self.kind].items():
            value = getattr(self, field)
            data[param] = list(value) if isinstance(value, tuple) else value
        data["jitter"] = self.jitter
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Backoff:
        """The ``Backoff`` a ``to_dict`` result describes.

        Every malformed input raises ``ValueError`` (never ``TypeError``), which is what
        settings loaders such as pydantic turn into a validation error naming the setting.
        """
        if not isinstance(data, Mapping):  # ValueError on purpose, see above
            raise PolicyError(f"a backoff must be given as a mapping, got {data!r}")
        kind = data.get("kind")
        if kind not in tuple(_PARAMS):
            raise PolicyError(f"backoff kind must be one of {', '.join(_PARAMS)}; got {kind!r}")
        allowed = {"kind", "jitter", *_PARAMS[kind]}
        if unknown := sorted(set(data) - allowed):
            raise PolicyError(f"unknown key(s) {unknown} for kind={kind!r}; use {sorted(allowed)}")
        factory: Callable[..., Backoff] = getattr(cls, kind)
        try:
            return factory(**{k: v for k, v in data.items() if k != "kind"})
        except TypeError as exc:  # a missing key, or a value of the wrong type
            raise PolicyError(f"bad {kind} backoff {dict(data)!r}: {exc}") from exc

    def __repr__(self) -> str:
        # Written as the factory call that rebuilds it; only exponential has no positional.
        positional = self.kind != "exponential"
        args = [
            repr(getattr(self, f)) if positional and i == 0 else f"{p}={getattr(self, f)!r}"
            for i, (p, f) in enumerate(_PARAMS[self.kind].items())
        ]
        return f"Backoff.{self.kind}({', '.join([*args, f'jitter={self.jitter!r}'])})"

    def _require_rng(self, rng: random.Random | None) -> random.Random | None:
        """``rng`` when jitter needs it (error if missing), else ``None``."""
        if self.jitter == "none":
            return None
        if rng is None:
            raise PolicyError(f"jitter={self.jitter!r} needs an rng (a random.Random) to draw from")
        return rng

    def _base(self, n: int) -> float:
        """The un-jittered delay before retry ``n``: the upper bound of the jittered one."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise PolicyError(f"retry number must be an int >= 1 (1 = after the first try), got {n!r}")
        if self.kind == "explicit":
            return self.delays[min(n, len(self.delays)) - 1]
        if self._is_constant():
            return self.first
        try:  # a huge n overflows float arithmetic: the uncapped curve has reached infinity
            if self.kind == "linear":
                delay = self.first + self.step * (n - 1)
            else:
                delay = self.first * self.factor ** (n - 1)
        except OverflowError:
            delay = math.inf
        return delay if self.cap is None else min(delay, self.cap)

    def _base_total(self, count: int) -> float:
        """Sum of the un-jittered delays before retries 1..count, in O(1) once they level off."""
        total = 0.0
        for n in range(1, count + 1):
            delay = self._base(n)
            # From here on every delay is the same: the cap, the last explicit value, or inf.
            if delay in (self.cap, math.inf) or self._is_constant() or n >= len(self.delays) > 0:
                return total + delay * (count - n + 1)
            total += delay
        return total

    def _is_constant(self) -> bool:
        """Whether every retry waits ``first`` (which also keeps 0 * inf out of the maths)."""
        if self.kind == "exponential":
            return self.first == 0.0 or self.factor == 1.0
        return self.kind == "fixed" or (self.kind == "linear" and self.step == 0.0)


def _exception_classes(name: str, value: object) -> tuple[type[BaseException], ...]:
    """``value`` as a tuple of exception classes (one bare class is accepted too)."""
    items = (value,) if isinstance(value, type) else value
    if not isinstance(items, (tuple, list)):
        raise PolicyError(f"{name} must be a tuple of exception classes, got {value!r}")
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise PolicyError(f"{name} entries must be exception classes, got {item!r}")
    return cast("tuple[type[BaseException], ...]", tuple(items))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Whether a failed listener attempt is retried, and after how long.

    ``max_tries`` counts every attempt including the first; ``give_up_on`` beats
    ``retry_on``. A timed-out attempt (``TimeoutError``) is a failure like any other.
    """

    max_tries: int = 5
    # Sharing one default instance is safe: a Backoff is immutable.
    backoff: Backoff = Backoff.exponential(first=1.0, cap=300.0, jitter="none")  # noqa: RUF009
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()
    timeout: float | None = None  # per-attempt seconds; None = the worker's job timeout

    def __post_init__(self) -> None:
        tries = self.max_tries
        if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
            raise PolicyError(f"max_tries must be an int >= 1 (it counts the first try), got {tries!r}")
        if not isinstance(self.backoff, Backoff):
            raise PolicyError(f"backoff must be a Backoff, got {self.backoff!r}")
        object.__setattr__(self, "retry_on", _exception_classes("retry_on", self.retry_on))
        object.__setattr__(self, "give_up_on", _exception_classes("give_up_on", self.give_up_on))
        if self.timeout is not None:
            object.__setattr__(self, "timeout", _seconds("timeout", self.timeout, positive=True))

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether to retry after attempt number ``attempt`` (1-based) failed with ``exc``."""
        if not isinstance(exc, BaseException):
            raise PolicyError(f"exc must be an exception instance, got {exc!r}")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise PolicyError(f"attempt must be an int >= 1, got {attempt!r}")
        if attempt >= self.max_tries or isinstance(exc, self.give_up_on):
            return False
        return isinstance(exc, self.retry_on)

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` before the next one."""
        return self.backoff.delay_for(attempt, rng)

    def schedule(self, rng: random.Random | None = None) -> list[float]:
        """The delays after attempts 1..max_tries-1, in order."""
        self.backoff._require_rng(rng)  # fail the same way even when there are no retries
        return [self.backoff.delay_for(n, rng) for n in range(1, self.max_tries)]

    def total_backoff(self) -> float:
        """Upper bound of the sum of all delays: the un-jittered sum."""
        return self.backoff._base_total(self.max_tries - 1)
