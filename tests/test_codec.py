"""Job payload codec: arq's wire format, JSON by default, clear errors."""

from __future__ import annotations

import datetime as dt
import pickle
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskemit import JobPayloadError, ListenerError, PayloadEncodeError
from taskemit.store.codec import META_KWARG, get_codec

json_codec = get_codec("json")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False)
    | st.datetimes()
    | st.uuids()
    | st.binary()
    | st.dates()
    | st.decimals(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(args=st.lists(json_values, max_size=3), kwargs=st.dictionaries(st.text(), json_values, max_size=3))
def test_json_round_trip(args: list[object], kwargs: dict[str, object]) -> None:
    """(arq's own reader of the same bytes: tests/test_arq_format.py)"""
    data = json_codec.encode_job("mod:fn", tuple(args), kwargs, enqueue_ms=123)
    job = json_codec.decode_job(data)
    assert (job["f"], job["a"], job["k"], job["t"], job["et"]) == ("mod:fn", args, kwargs, None, 123)


_metas = st.one_of(
    st.none(),
    st.fixed_dictionaries({"event": st.uuids().map(str), "event_id": st.text()}),
    st.fixed_dictionaries({"event": st.uuids().map(str), "event_id": st.text(), "cause": st.uuids().map(str)}),
)


@given(
    args=st.lists(json_values, max_size=3),
    kwargs=st.dictionaries(st.text().filter(lambda key: key != META_KWARG), json_values, max_size=3),
    functions=st.lists(st.text(min_size=1), min_size=1, max_size=4),
    meta=_metas,
)
def test_an_events_payloads_are_each_listeners_own(
    args: list[object], kwargs: dict[str, object], functions: list[str], meta: dict[str, str] | None
) -> None:
    """encode_jobs (an event's fan-out, the arguments encoded once, taskemit's metadata added)
    writes, byte for byte, what encode_job writes for each listener alone, with either serializer."""
    named = kwargs if meta is None else {**kwargs, META_KWARG: meta}
    for codec in (json_codec, get_codec("pickle")):
        payloads = codec.encode_jobs(functions, tuple(args), kwargs, enqueue_ms=1_700_000_000_123, meta=meta)
        assert payloads == [codec.encode_job(f, tuple(args), named, enqueue_ms=1_700_000_000_123) for f in functions]


def test_an_unencodable_fan_out_names_its_listeners() -> None:
    with pytest.raises(PayloadEncodeError, match=r"listeners 'm:a', 'm:b' with the 'json' serializer.*object"):
        json_codec.encode_jobs(["m:a", "m:b"], (object(),), {}, enqueue_ms=1)
    circular: list[object] = []
    circular.append(circular)
    with pytest.raises(PayloadEncodeError, match=r"listener 'm:a' with the 'json'"):
        json_codec.encode_jobs(["m:a"], (circular,), {}, enqueue_ms=1)


def test_json_is_inspectable_text() -> None:
    data = json_codec.encode_job("m:f", (1,), {"when": dt.datetime(2026, 1, 1)}, enqueue_ms=5)
    assert data.decode() == (
        '{"t":null,"f":"m:f","a":[1],"k":{"when":{"__taskemit_type__":"datetime","v":"2026-01-01T00:00:00"}},"et":5}'
    )


def test_unencodable_value_names_listener_and_type() -> None:
    with pytest.raises(PayloadEncodeError, match=r"'m:f'.*json.*object"):
        json_codec.encode_job("m:f", (object(),), {}, enqueue_ms=1)


def test_exceptions_come_back_as_listener_error() -> None:
    decoded = json_codec.loads(json_codec.dumps({"r": ValueError("bad card")}))
    assert isinstance(decoded["r"], ListenerError)
    assert decoded["r"].type_name == "builtins.ValueError"
    assert str(decoded["r"]) == "builtins.ValueError: bad card"


def test_pickle_codec_keeps_python_types() -> None:
    codec = get_codec("pickle")
    data = codec.encode_job("m:f", ((1, 2),), {"u": uuid.UUID(int=1), "d": Decimal("1.5")}, enqueue_ms=1)
    assert pickle.loads(data)["a"] == ((1, 2),)
    with pytest.raises(PayloadEncodeError, match="pickle"):
        codec.encode_job("m:f", (lambda: None,), {}, enqueue_ms=1)


def test_unknown_serializer() -> None:
    with pytest.raises(ValueError, match="unknown serializer 'yaml'"):
        get_codec("yaml")


# -- decoding what is in Redis: only JobPayloadError may come out ------------------------------

_TAG = "__taskemit_type__"
_tagged = st.fixed_dictionaries(
    {
        _TAG: st.sampled_from(["datetime", "date", "time", "uuid", "decimal", "bytes", "exception", "other"]),
        "v": st.one_of(st.text(), st.integers(), st.none(), st.lists(st.integers())),
    }
)
_json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | _tagged,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
_job_like = st.fixed_dictionaries(
    {},
    optional={"t": _json_like, "f": _json_like, "a": _json_like, "k": _json_like, "et": _json_like},
)


def _decodes_cleanly(data: bytes) -> None:
    try:
        job = json_codec.decode_job(data)
    except JobPayloadError:
        return
    assert isinstance(job, dict) and isinstance(job["f"], str)
    assert isinstance(job["a"], list) and isinstance(job["k"], dict)


@given(st.binary(max_size=200))
def test_decode_job_of_any_bytes_is_a_job_or_a_job_payload_error(data: bytes) -> None:
    _decodes_cleanly(data)


@given(st.one_of(_json_like, _job_like))
def test_decode_job_of_any_json_is_a_job_or_a_job_payload_error(value: object) -> None:
    import json

    _decodes_cleanly(json.dumps(value).encode())


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000,  # recursion
        b'{"f":"x","a":[],"k":{"d":{"__taskemit_type__":"decimal","v":"not a number"}}}',
        b'{"f":"x","a":[],"k":{"b":{"__taskemit_type__":"bytes","v":"abcde"}}}',
        b'{"f":"x","a":[],"k":{"d":{"__taskemit_type__":"datetime"}}}',
        b'{"f":"x","a":[],"k":{"1":1},"t":-1}',
        b'{"f":"x","a":[],"k":{},"et":true}',
        b'{"f":1,"a":[],"k":{}}',
        b"\xff",
        b"null",
    ],
)
def test_known_bad_payloads_are_job_payload_errors(data: bytes) -> None:
    with pytest.raises(JobPayloadError):
        json_codec.decode_job(data)


def test_pickle_payloads_that_do_not_decode_are_job_payload_errors() -> None:
    codec = get_codec("pickle")
    for data in (b"garbage", pickle.dumps([1, 2]), pickle.dumps({"f": "x", "a": "no", "k": {}})):
        with pytest.raises(JobPayloadError):
            codec.decode_job(data)
