"""flow.py, the pure part of flow control: rates as written, the token bucket's arithmetic (the
same in Python and in Lua), declarations and their checks at decoration and at emit."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import Redis

from taskemit import Emitter, listener
from taskemit.errors import InvalidArgument, ListenerArgumentError, ListenerConfigError
from taskemit.flow import MAX_PRIORITY, FlowControl, JobFlow, Rate, bucket_tokens, key_text, next_token_ms, parse_rate
from taskemit.settings import Settings
from taskemit.store.scripts import _read

UNITS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "sec": 1000,
    "min": 60_000,
    "day": 86_400_000,
}
rates = st.builds(
    lambda count, every, unit: Rate(count, every * UNITS[unit], f"{count}/{every}{unit}"),
    st.integers(1, 10_000),
    st.integers(1, 60),
    st.sampled_from(sorted(UNITS)),
)


@given(st.integers(1, 10**9), st.one_of(st.none(), st.integers(1, 1000)), st.sampled_from(sorted(UNITS)), st.booleans())
def test_a_rate_reads_as_written(count: int, every: int | None, unit: str, spaces: bool) -> None:
    gap = " " if spaces else ""
    text = f"{count}{gap}/{gap}{'' if every is None else every}{unit}"
    period = (every or 1) * UNITS[unit]
    if period > 366 * 86_400_000:
        with pytest.raises(ValueError, match="at most a year"):
            parse_rate(text)
        return
    rate = parse_rate(text)
    assert (rate.count, rate.period_ms) == (count, period)
    assert math.isclose(rate.per_second, count * 1000 / period)


@pytest.mark.parametrize("text", ["", "10", "10/", "/s", "0/s", "10/0s", "10/w", "ten/s", "-1/s", "1.5/s", 10])
def test_a_bad_rate_says_what_a_rate_looks_like(text: object) -> None:
    with pytest.raises(ValueError, match=r"100/s|at least 1"):
        parse_rate(text)  # type: ignore[arg-type]


@given(
    rates,
    st.integers(1, 50),
    st.one_of(st.none(), st.floats(0, 50)),
    st.integers(0, 2**40),
    st.integers(-(10**6), 10**8),
)
def test_the_bucket_never_holds_more_than_its_burst_nor_refills_backwards(
    rate: Rate, burst: int, tokens: float | None, at: int, elapsed: int
) -> None:
    held = None if tokens is None else min(tokens, burst)
    now = at + elapsed
    value = bucket_tokens(held, at, now, rate, burst)
    assert value <= burst
    if held is None:
        assert value == burst
    else:
        assert value >= held if elapsed >= 0 else value == held
        assert value == min(burst, held + max(0, elapsed) * rate.count / rate.period_ms)


@given(rates, st.floats(0, 0.999), st.integers(0, 2**40))
def test_the_next_token_is_the_first_moment_the_bucket_holds_one(rate: Rate, tokens: float, now: int) -> None:
    """Never early; at most a millisecond late (the product of floats rounded up)."""
    at = next_token_ms(tokens, now, rate)
    assert bucket_tokens(tokens, now, at, rate, 10**9) >= 1 - 1e-9
    assert at <= now + 1 or bucket_tokens(tokens, now, at - 2, rate, 10**9) < 1
    assert next_token_ms(1.0, now, rate) == now


@settings(deadline=None)
@given(rates, st.integers(1, 20), st.lists(st.integers(0, 5000), min_size=1, max_size=40))
def test_starts_in_any_window_are_at_most_burst_plus_the_rate(rate: Rate, burst: int, gaps: list[int]) -> None:
    """The guarantee docs/flow-control.md states: in any window of T ms, at most
    burst + count x T / period starts, however the claims are spaced."""
    tokens: float | None = None
    at: int | None = None
    now = 0
    starts: list[int] = []
    for gap in gaps:
        now += gap
        held = bucket_tokens(tokens, at, now, rate, burst)
        take = math.floor(held)
        starts += [now] * take
        tokens, at = held - take, now
    # the fullest windows start and end at a start: starts[i..j] are j - i + 1 starts in starts[j] - starts[i] ms
    for i, first in enumerate(starts):
        for j in range(i, len(starts)):
            assert j - i + 1 <= burst + (starts[j] - first) * rate.count / rate.period_ms + 1e-9


def test_the_lua_bucket_is_the_python_bucket(taskemit_redis_url: str) -> None:
    """lib_flow.lua's refill and next_token give the same numbers as flow.py's, on a real Redis."""
    script = (
        _read("lib_flow")
        + "\nlocal t = refill(tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), "
        + (
            "tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))\n"
            "return {tostring(t), tostring(next_token(t, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])))}"
        )
    )
    with Redis.from_url(taskemit_redis_url) as redis:

        @given(rates, st.integers(1, 50), st.floats(0, 50), st.integers(0, 2**40), st.integers(-1000, 10**7))
        def agree(rate: Rate, burst: int, tokens: float, at: int, elapsed: int) -> None:
            held = min(tokens, burst)
            held = float(f"{held:.14g}")  # what a Lua number stored in Redis reads back as
            args = [repr(held), at, at + elapsed, rate.count, rate.period_ms, burst]
            lua_tokens, lua_next = redis.eval(script, 0, *args)  # type: ignore[misc]
            python = bucket_tokens(held, at, at + elapsed, rate, burst)
            assert math.isclose(float(lua_tokens), python, rel_tol=1e-12, abs_tol=1e-12)
            assert int(float(lua_next)) == next_token_ms(python, at + elapsed, rate)

        agree()


def test_declarations_are_checked_at_decoration() -> None:
    cases = {
        "concurrency must be at least 1": {"concurrency": 0},
        "concurrency must be an int": {"concurrency": 2.5},
        "a rate is": {"rate": "fast"},
        "burst sizes a rate's bucket": {"burst": 3},
        "give rate= too": {"rate_key": "tenant"},
        "pass_dead is about": {"pass_dead": True},
        f"from 0 .* to {MAX_PRIORITY}": {"priority": MAX_PRIORITY + 1},
        "ordered_by must name an argument": {"ordered_by": "not a name"},
    }
    for message, options in cases.items():
        with pytest.raises(ListenerConfigError, match=f"listener 'checked': .*{message}"):
            listener("e", name="checked", **options)(lambda **kwargs: None)


def test_a_key_must_name_a_parameter_and_a_broadcast_listener_takes_no_limits() -> None:
    with pytest.raises(ListenerConfigError, match="ordered_by='order' names no parameter of it; name one of order_id"):

        @listener("e", ordered_by="order")
        async def one(order_id: int) -> None: ...

    @listener("e", ordered_by="order")  # **kwargs may carry it
    async def other(**kwargs: object) -> None: ...

    assert other.flow.ordered_by == "order"
    with pytest.raises(ListenerConfigError, match="broadcast listener runs once in every worker"):
        listener("e", mode="broadcast", concurrency=2)(lambda: None)


def test_a_declaration_round_trips_through_the_catalog() -> None:
    flow = FlowControl.declare(
        concurrency=3, rate="20/s", burst=5, rate_key="tenant", ordered_by="order_id", pass_dead=True, priority=7
    )
    assert FlowControl.from_dict(flow.to_dict()) == flow
    assert flow.describe() == "3 at once, 20/s (burst 5) per tenant, ordered by order_id, dead pass, priority 7"
    assert flow.claim_fields() == ["3", "20", "1000", "5", "1"]
    assert FlowControl().claim_fields() == ["", "", "", "", ""]
    assert not FlowControl().limits and FlowControl.from_dict({"rate": "someday"}) == FlowControl()


def test_job_flow_records_read_back() -> None:
    job = JobFlow(120_000, "O", "order-17", "tenant a")
    assert JobFlow.parse(job.text()) == job and JobFlow().plain
    assert key_text(17, "k") == "17"
    for bad in (True, 1.5, None, "", "a\nb", "x" * 257, b"bytes"):
        with pytest.raises(ValueError, match="k must be"):
            key_text(bad, "k")


@listener("order_changed", ordered_by="order_id")
async def on_order(order_id: int, change: str = "") -> None: ...


@listener("loose", ordered_by="order")
async def loose(**kwargs: object) -> None: ...


async def test_emit_options_and_keys_are_checked_at_emit(taskemit_settings: Settings) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    async with Emitter([on_order, loose], settings) as emitter:
        with pytest.raises(InvalidArgument, match=r"emit of 'order_changed': priority must be an int from 0"):
            emitter.emit("order_changed", order_id=1, priority="high")
        with pytest.raises(InvalidArgument, match="ordering_key must be a str, an int or a UUID"):
            emitter.emit("order_changed", order_id=1, ordering_key=2.5)
        with pytest.raises(InvalidArgument, match=r"the 'order_id' argument \(ordered_by of listener .*on_order"):
            emitter.emit("order_changed", order_id=[1])
        with pytest.raises(ListenerArgumentError, match=r"has ordered_by='order', but the event 'loose' carries no"):
            emitter.emit("loose", x=1)
        emitter.emit("loose", x=1, ordering_key="given")  # the emit's own key
        emitter.emit("order_changed", 5, change="x", priority=3)  # positional: bound to order_id
