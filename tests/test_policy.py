"""Tests for taskemit.policy: backoff curves and retry decisions (pure, no Redis needed)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskemit.policy import Backoff, Jitter, RetryPolicy

SECONDS = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
JITTERS: tuple[Jitter, ...] = ("none", "full", "equal")
SEEDS = st.integers(min_value=0, max_value=2**32)
RETRY_NUMBERS = st.integers(min_value=1, max_value=200)
# No deadline: these are microsecond calls, and a busy CI machine must not make them flaky.
PROPERTY = settings(max_examples=100, deadline=None)


@st.composite
def backoffs(
    draw: st.DrawFn,
    kinds: tuple[str, ...] = ("fixed", "linear", "exponential", "explicit"),
    jitters: tuple[Jitter, ...] = JITTERS,
    sorted_explicit: bool = False,
) -> Backoff:
    kind = draw(st.sampled_from(kinds))
    jitter = draw(st.sampled_from(jitters))
    if kind == "fixed":
        return Backoff.fixed(draw(SECONDS), jitter=jitter)
    if kind == "explicit":
        delays = draw(st.lists(SECONDS, min_size=1, max_size=6))
        return Backoff.explicit(sorted(delays) if sorted_explicit else delays, jitter=jitter)
    first = draw(SECONDS)
    cap = draw(st.none() | st.floats(min_value=first, max_value=2e6))
    if kind == "linear":
        return Backoff.linear(draw(SECONDS), first=first, cap=cap, jitter=jitter)
    factor = draw(st.floats(min_value=1, max_value=10))
    return Backoff.exponential(first=first, factor=factor, cap=cap, jitter=jitter)


def ceiling(backoff: Backoff) -> float:
    """The largest delay a backoff may ever produce."""
    if backoff.kind == "fixed":
        return backoff.first
    if backoff.kind == "explicit":
        return max(backoff.delays)
    return math.inf if backoff.cap is None else backoff.cap


# --- properties of every curve -------------------------------------------------------------


@PROPERTY
@given(backoffs(), SEEDS, RETRY_NUMBERS)
def test_delay_is_never_negative_nor_above_the_cap(backoff: Backoff, seed: int, n: int) -> None:
    delay = backoff.delay_for(n, random.Random(seed))
    assert 0.0 <= delay <= ceiling(backoff)


@PROPERTY
@given(backoffs(jitters=("none",)), st.sampled_from(("full", "equal")), SEEDS, RETRY_NUMBERS)
def test_jitter_stays_within_its_band(backoff: Backoff, mode: Jitter, seed: int, n: int) -> None:
    plain = backoff.delay_for(n)
    jittered = dataclasses.replace(backoff, jitter=mode).delay_for(n, random.Random(seed))
    low = 0.0 if mode == "full" else plain / 2
    assert low <= jittered <= plain


@PROPERTY
@given(backoffs(jitters=("none",), sorted_explicit=True))
def test_unjittered_delays_never_decrease(backoff: Backoff) -> None:
    delays = [backoff.delay_for(n) for n in range(1, 60)]
    assert delays == sorted(delays)


@PROPERTY
@given(backoffs(), SEEDS)
def test_same_seed_gives_the_same_delays(backoff: Backoff, seed: int) -> None:
    first = [backoff.delay_for(n, random.Random(seed)) for n in range(1, 10)]
    again = [backoff.delay_for(n, random.Random(seed)) for n in range(1, 10)]
    assert first == again
    policy = RetryPolicy(max_tries=8, backoff=backoff)
    assert policy.schedule(random.Random(seed)) == policy.schedule(random.Random(seed))


@PROPERTY
@given(st.lists(SECONDS, min_size=1, max_size=6), st.integers(min_value=1, max_value=50))
def test_explicit_list_is_followed_then_its_last_value_reused(delays: list[float], n: int) -> None:
    expected = delays[n - 1] if n <= len(delays) else delays[-1]
    assert Backoff.explicit(delays).delay_for(n) == expected


def test_jitter_actually_spreads_the_delays() -> None:
    rng = random.Random(0)
    full = [Backoff.fixed(10, jitter="full").delay_for(1, rng) for _ in range(500)]
    equal = [Backoff.fixed(10, jitter="equal").delay_for(1, rng) for _ in range(500)]
    assert min(full) < 1 and max(full) > 9 and len(set(full)) == 500
    assert 5 <= min(equal) < 5.5 and max(equal) > 9.5
    backoff = Backoff.exponential(jitter="full")
    assert backoff.delay_for(3, random.Random(1)) != backoff.delay_for(3, random.Random(2))


@pytest.mark.parametrize("jitter", ["full", "equal"])
def test_jitter_without_an_rng_is_an_error(jitter: Jitter) -> None:
    backoff = Backoff.exponential(jitter=jitter)
    with pytest.raises(ValueError, match=rf"jitter='{jitter}' needs an rng"):
        backoff.delay_for(1)
    with pytest.raises(ValueError, match="needs an rng"):
        RetryPolicy(max_tries=1, backoff=backoff).schedule()  # even with no retries to schedule


# --- exact values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        (Backoff.exponential(), [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]),
        (Backoff.exponential(first=0.5, factor=3, cap=10), [0.5, 1.5, 4.5, 10, 10]),
        (Backoff.exponential(first=2, factor=1, cap=None), [2, 2, 2]),
        (Backoff.exponential(first=0, cap=None), [0, 0, 0]),
        (Backoff.linear(2), [2, 4, 6, 8]),
        (Backoff.linear(1, first=5, cap=7), [5, 6, 7, 7, 7]),
        (Backoff.linear(0, first=3), [3, 3]),
        (Backoff.fixed(3), [3, 3, 3]),
        (Backoff.explicit([1, 5, 30]), [1, 5, 30, 30, 30]),
    ],
)
def test_exact_delays(backoff: Backoff, expected: list[float]) -> None:
    assert [backoff.delay_for(n) for n in range(1, len(expected) + 1)] == expected


def test_huge_retry_numbers_stay_at_the_cap_without_overflowing() -> None:
    assert Backoff.exponential(cap=300).delay_for(10**6) == 300
    assert Backoff.exponential(cap=300).delay_for(10**400) == 300
    assert Backoff.linear(1, cap=60).delay_for(10**400) == 60
    assert Backoff.exponential(cap=None).delay_for(10**6) == math.inf
    assert Backoff.exponential(first=0, cap=None).delay_for(10**6) == 0


@pytest.mark.parametrize("bad", [0, -1, True, 1.0])
def test_retry_number_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"retry number must be an int >= 1"):
        Backoff.fixed(1).delay_for(bad)


# --- should_retry ---------------------------------------------------------------------------


class _ListenerTimeout(TimeoutError):
    """Like the worker's timeout error: a TimeoutError subclass."""


@pytest.mark.parametrize(
    ("policy", "exc", "attempt", "expected"),
    [
        (RetryPolicy(), ValueError(), 1, True),
        (RetryPolicy(), ValueError(), 4, True),
        (RetryPolicy(), ValueError(), 5, False),  # the fifth of five tries was the last
        (RetryPolicy(), ValueError(), 9, False),
        (RetryPolicy(max_tries=1), ValueError(), 1, False),
        (RetryPolicy(), TimeoutError(), 1, True),
        (RetryPolicy(), asyncio.TimeoutError(), 1, True),  # noqa: UP041 - the name asyncio code uses
        (RetryPolicy(), _ListenerTimeout("took too long"), 1, True),
        (RetryPolicy(), asyncio.CancelledError(), 1, False),  # BaseException, not Exception
        (RetryPolicy(), KeyboardInterrupt(), 1, False),
        (RetryPolicy(retry_on=(ConnectionError,)), ConnectionRefusedError(), 1, True),
        (RetryPolicy(retry_on=(ConnectionError,)), ValueError(), 1, False),
        (RetryPolicy(retry_on=(ConnectionError,)), TimeoutError(), 1, False),
        (RetryPolicy(retry_on=(ConnectionError, TimeoutError)), TimeoutError(), 1, True),
        (RetryPolicy(give_up_on=(KeyError,)), KeyError(), 1, False),
        (RetryPolicy(give_up_on=(KeyError,)), IndexError(), 1, True),
        (RetryPolicy(retry_on=(LookupError,), give_up_on=(KeyError,)), KeyError(), 1, False),
        (RetryPolicy(retry_on=(KeyError,), give_up_on=(KeyError,)), KeyError(), 1, False),
        (RetryPolicy(retry_on=(LookupError,), give_up_on=(KeyError,)), IndexError(), 1, True),
    ],
)
def test_should_retry(policy: RetryPolicy, exc: BaseException, attempt: int, expected: bool) -> None:
    assert policy.should_retry(exc, attempt) is expected


@PROPERTY
@given(st.integers(min_value=1, max_value=20), st.integers(min_value=1, max_value=40))
def test_should_retry_stops_exactly_at_max_tries(max_tries: int, attempt: int) -> None:
    policy = RetryPolicy(max_tries=max_tries)
    assert policy.should_retry(RuntimeError("boom"), attempt) is (attempt < max_tries)


def test_should_retry_rejects_misuse() -> None:
    with pytest.raises(TypeError, match="exc must be an exception instance"):
        RetryPolicy().should_retry(ValueError, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempt must be an int >= 1, got 0"):
        RetryPolicy().should_retry(ValueError(), 0)


# --- RetryPolicy schedules ------------------------------------------------------------------


@PROPERTY
@given(backoffs(), st.integers(min_value=1, max_value=30), SEEDS)
def test_schedule_and_total_backoff(backoff: Backoff, max_tries: int, seed: int) -> None:
    policy = RetryPolicy(max_tries=max_tries, backoff=backoff)
    schedule = policy.schedule(random.Random(seed))
    rng = random.Random(seed)
    assert schedule == [policy.delay_for(n, rng) for n in range(1, max_tries)]
    plain = RetryPolicy(max_tries=max_tries, backoff=dataclasses.replace(backoff, jitter="none"))
    assert policy.total_backoff() == pytest.approx(sum(plain.schedule()), rel=1e-12)
    assert sum(schedule) <= policy.total_backoff() * (1 + 1e-12)


def test_policy_delay_for_and_schedule_use_the_backoff() -> None:
    policy = RetryPolicy(max_tries=4, backoff=Backoff.linear(10))
    assert [policy.delay_for(n) for n in (1, 2, 3)] == [10, 20, 30]
    assert policy.schedule() == [10, 20, 30]
    assert policy.total_backoff() == 60
    assert RetryPolicy(max_tries=1).schedule() == []
    assert RetryPolicy(max_tries=1).total_backoff() == 0


def test_total_backoff_of_a_huge_policy_is_computed_quickly() -> None:
    # 1 + 2 + ... + 256 = 511 over the first 9 retries, then 300 s for each of the rest.
    assert RetryPolicy(max_tries=10**9).total_backoff() == 511 + 300 * (10**9 - 1 - 9)
    assert RetryPolicy(max_tries=10**9, backoff=Backoff.explicit([1, 2])).total_backoff() == 1 + 2 * (10**9 - 2)
    assert RetryPolicy(max_tries=10**9, backoff=Backoff.exponential(cap=None)).total_backoff() == math.inf


def test_retry_on_accepts_a_single_class_or_a_list() -> None:
    assert RetryPolicy(retry_on=ValueError).retry_on == (ValueError,)  # type: ignore[arg-type]
    assert RetryPolicy(give_up_on=[KeyError, OSError]).give_up_on == (KeyError, OSError)  # type: ignore[arg-type]


def test_timeout_is_kept_as_float_seconds() -> None:
    assert RetryPolicy(timeout=30).timeout == 30.0
    assert isinstance(RetryPolicy(timeout=30).timeout, float)
    assert RetryPolicy().timeout is None


# --- validation ------------------------------------------------------------------------------


# Untyped aliases: several calls below pass wrong types on purpose.
AnyBackoff: Any = Backoff
AnyPolicy: Any = RetryPolicy


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: AnyBackoff.fixed(-1), ValueError, r"seconds must be a finite number >= 0, got -1"),
        (lambda: AnyBackoff.fixed(math.nan), ValueError, r"seconds must be a finite number >= 0, got nan"),
        (lambda: AnyBackoff.fixed(math.inf), ValueError, r"seconds must be a finite number >= 0, got inf"),
        (lambda: AnyBackoff.fixed("5"), TypeError, r"seconds must be a number, got '5'"),
        (lambda: AnyBackoff.linear(-2), ValueError, r"step must be a finite number >= 0, got -2"),
        (lambda: AnyBackoff.linear(1, first=-1), ValueError, r"first must be a finite number >= 0, got -1"),
        (
            lambda: AnyBackoff.linear(1, first=5, cap=2),
            ValueError,
            r"cap must be >= first \(5\) or None, got 2",
        ),
        (lambda: AnyBackoff.exponential(first=-1), ValueError, r"first must be a finite number >= 0, got -1"),
        (
            lambda: AnyBackoff.exponential(factor=0.5),
            ValueError,
            r"factor must be a finite number >= 1, got 0.5",
        ),
        (lambda: AnyBackoff.exponential(cap=-1), ValueError, r"cap must be a finite number >= 0, got -1"),
        (
            lambda: AnyBackoff.exponential(first=500),
            ValueError,
            r"cap must be >= first \(500\) or None, got 300",
        ),
        (
            lambda: AnyBackoff.exponential(jitter="half"),
            ValueError,
            r"jitter must be one of 'none', 'full', 'equal'; got 'half'",
        ),
        (lambda: AnyBackoff.explicit([]), ValueError, r"delays must be a non-empty list of seconds"),
        (
            lambda: AnyBackoff.explicit([1, -3]),
            ValueError,
            r"delays\[1\] must be a finite number >= 0, got -3",
        ),
        (lambda: AnyBackoff.explicit(5), TypeError, r"delays must be a sequence of seconds, got 5"),
        (lambda: AnyBackoff("fixed", first=1, step=2), ValueError, r"step does not apply to kind='fixed'"),
        (lambda: AnyBackoff("curvy"), ValueError, r"backoff kind must be one of .*got 'curvy'"),
        (lambda: AnyPolicy(max_tries=0), ValueError, r"max_tries must be an int >= 1 .*got 0"),
        (lambda: AnyPolicy(max_tries=2.5), ValueError, r"max_tries must be an int >= 1 .*got 2.5"),
        (lambda: AnyPolicy(backoff=5), TypeError, r"backoff must be a Backoff, got 5"),
        (lambda: AnyPolicy(retry_on=(ValueError, 3)), TypeError, r"retry_on entries must be exception"),
        (lambda: AnyPolicy(retry_on=(int,)), TypeError, r"retry_on entries must be exception classes"),
        (lambda: AnyPolicy(give_up_on=(ValueError(),)), TypeError, r"give_up_on entries must be exception"),
        (lambda: AnyPolicy(give_up_on="KeyError"), TypeError, r"give_up_on must be a tuple of exception"),
        (lambda: AnyPolicy(timeout=0), ValueError, r"timeout must be a finite number > 0, got 0"),
        (lambda: AnyPolicy(timeout=-5), ValueError, r"timeout must be a finite number > 0, got -5"),
    ],
)
def test_bad_parameters_are_rejected_with_a_clear_message(make: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()


# --- values: equality, hashing, repr, describe, dicts ----------------------------------------


def test_backoff_is_an_immutable_hashable_value() -> None:
    backoff = Backoff.exponential(jitter="full")
    with pytest.raises(dataclasses.FrozenInstanceError):
        backoff.cap = 10  # type: ignore[misc]
    assert Backoff.fixed(5) == Backoff.fixed(5.0)
    assert Backoff.fixed(5) != Backoff.fixed(6)
    assert Backoff.fixed(5) != Backoff.fixed(5, jitter="full")
    assert Backoff.linear(2) == Backoff.linear(2, first=2)
    assert {Backoff.fixed(5): "a"}[Backoff.fixed(5.0)] == "a"
    assert RetryPolicy() == RetryPolicy(backoff=Backoff.exponential(first=1, cap=300))
    assert hash(RetryPolicy()) == hash(RetryPolicy())
    assert not hasattr(backoff, "__dict__")  # slots


@PROPERTY
@given(backoffs())
def test_repr_rebuilds_an_equal_backoff(backoff: Backoff) -> None:
    text = repr(backoff)
    assert text.startswith(f"Backoff.{backoff.kind}(")
    assert eval(text, {"Backoff": Backoff}) == backoff


@PROPERTY
@given(backoffs())
def test_to_dict_from_dict_round_trip_through_json(backoff: Backoff) -> None:
    data = json.loads(json.dumps(backoff.to_dict(), allow_nan=False))
    rebuilt = Backoff.from_dict(data)
    assert rebuilt == backoff
    assert hash(rebuilt) == hash(backoff)
    assert data["kind"] == backoff.kind


def test_to_dict_shape() -> None:
    assert Backoff.fixed(5).to_dict() == {"kind": "fixed", "seconds": 5.0, "jitter": "none"}
    assert Backoff.exponential(jitter="full").to_dict() == {
        "kind": "exponential",
        "first": 1.0,
        "factor": 2.0,
        "cap": 300.0,
        "jitter": "full",
    }
    assert Backoff.explicit((1, 2)).to_dict() == {"kind": "explicit", "delays": [1.0, 2.0], "jitter": "none"}
    assert Backoff.from_dict({"kind": "linear", "step": 3}) == Backoff.linear(3)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([("kind", "fixed")], r"a backoff must be given as a mapping"),
        ({"seconds": 5}, r"backoff kind must be one of fixed, linear, exponential, explicit; got None"),
        ({"kind": "zigzag"}, r"got 'zigzag'"),
        ({"kind": "fixed", "seconds": 1, "cap": 3}, r"unknown key\(s\) \['cap'\] for kind='fixed'"),
        ({"kind": "fixed"}, r"bad fixed backoff .*missing 1 required .*'seconds'"),
        ({"kind": "fixed", "seconds": "5"}, r"bad fixed backoff .*seconds must be a number"),
        ({"kind": "explicit", "delays": 5}, r"delays must be a sequence"),
        ({"kind": "fixed", "seconds": -5}, r"seconds must be a finite number >= 0, got -5"),
        ({"kind": "fixed", "seconds": 5, "jitter": "most"}, r"jitter must be one of"),
    ],
)
def test_from_dict_reports_every_bad_input_as_value_error(data: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff.from_dict(data)


@pytest.mark.parametrize(
    ("backoff", "text"),
    [
        (Backoff.exponential(jitter="full"), "exponential(first=1s, factor=2, cap=300s, jitter=full)"),
        (Backoff.exponential(first=0.5, factor=3, cap=None), "exponential(first=0.5s, factor=3)"),
        (Backoff.linear(2, cap=10), "linear(first=2s, step=2s, cap=10s)"),
        (Backoff.fixed(5, jitter="equal"), "fixed(5s, jitter=equal)"),
        (Backoff.explicit([1, 5, 30]), "explicit(1s, 5s, 30s)"),
        (Backoff.explicit(range(1, 6)), "explicit(1s, 2s, 3s, 4s, 5s)"),
        (Backoff.explicit(range(1, 7)), "explicit(1s, 2s, 3s, 4s, 5s, ... (6 values))"),
        (Backoff.explicit(range(1, 9)), "explicit(1s, 2s, 3s, 4s, 5s, ... (8 values))"),
    ],
)
def test_describe(backoff: Backoff, text: str) -> None:
    assert backoff.describe() == text
