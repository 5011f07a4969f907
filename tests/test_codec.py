"""Job payload codec: arq's wire format, JSON by default, clear errors."""

from __future__ import annotations

import datetime as dt
import pickle
import uuid
from decimal import Decimal

import pytest
from arq.jobs import deserialize_job
from hypothesis import given
from hypothesis import strategies as st

from taskemit import ListenerError, PayloadEncodeError
from taskemit.store.codec import get_codec

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
def test_json_round_trip_through_arq(args: list[object], kwargs: dict[str, object]) -> None:
    data = json_codec.encode_job("mod:fn", tuple(args), kwargs, enqueue_ms=123)
    job = deserialize_job(data, deserializer=json_codec.loads)  # arq's own reader
    assert job.function == "mod:fn"
    assert list(job.args) == args
    assert job.kwargs == kwargs


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
