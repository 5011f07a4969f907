"""store/arq_format: arq's job format and key names, kept by taskemit without arq, checked against arq's.

The tests marked ``needs_arq`` compare with arq's own constants and its own encoder and reader
of jobs and results (they skip where arq is not installed); the others pin the format itself,
so a change to it fails on every leg.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import pickle
from typing import Any

import pytest
from arq_support import HAVE_ARQ, needs_arq
from hypothesis import given
from hypothesis import strategies as st

from taskemit import JobPayloadError, ListenerError
from taskemit.store import arq_format
from taskemit.store.arq_format import decode_result, job_dict, result_dict
from taskemit.store.codec import META_KWARG, get_codec
from taskemit.store.keys import KeySpace

if HAVE_ARQ:
    from arq import constants as arq_constants
    from arq.jobs import deserialize_job, deserialize_result, serialize_job, serialize_result

json_codec = get_codec("json")
pickle_codec = get_codec("pickle")

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False) | st.datetimes() | st.uuids(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=8,
)
_args = st.lists(_values, max_size=3)
_kwargs = st.dictionaries(st.text().filter(lambda key: key != META_KWARG), _values, max_size=3)


def _a_result(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "success": True,
        "result": {"sent": 1},
        "start_ms": 1_700_000_000_500,
        "finish_ms": 1_700_000_001_250,
        "queue": "{ns}:queue:default",
        "job_id": "{ns}:abc",
    }
    fields.update(changes)
    return result_dict("send_email", (1, "a"), {"to": "a@b"}, 2, 1_700_000_000_000, **fields)


# -- the format, on every leg -------------------------------------------------------------


def test_a_job_is_arqs_five_fields_in_arqs_order() -> None:
    assert json_codec.encode_job("mod:fn", (1, "x"), {"k": True}, enqueue_ms=123) == (
        b'{"t":null,"f":"mod:fn","a":[1,"x"],"k":{"k":true},"et":123}'
    )
    assert json_codec.encode_jobs(["a", "b"], (), {}, enqueue_ms=5) == [
        b'{"t":null,"f":"a","a":[],"k":{},"et":5}',
        b'{"t":null,"f":"b","a":[],"k":{},"et":5}',
    ]
    assert job_dict("f", [1], {}, 3, 9) == {"t": 3, "f": "f", "a": [1], "k": {}, "et": 9}


def test_a_result_is_the_job_and_its_outcome() -> None:
    assert _a_result() == {
        "t": 2,
        "f": "send_email",
        "a": (1, "a"),
        "k": {"to": "a@b"},
        "et": 1_700_000_000_000,
        "s": True,
        "r": {"sent": 1},
        "st": 1_700_000_000_500,
        "ft": 1_700_000_001_250,
        "q": "{ns}:queue:default",
        "id": "{ns}:abc",
    }


@pytest.mark.parametrize("codec", [json_codec, pickle_codec], ids=["json", "pickle"])
def test_a_stored_result_reads_back(codec: Any) -> None:
    result = decode_result(codec.dumps(_a_result()), codec.loads)
    assert result == arq_format.ArqResult(
        function="send_email",
        args=(1, "a"),
        kwargs={"to": "a@b"},
        job_try=2,
        enqueue_time=1_700_000_000.0,
        success=True,
        result={"sent": 1},
        start_time=1_700_000_000.5,
        finish_time=1_700_000_001.25,
        queue_name="{ns}:queue:default",
        job_id="{ns}:abc",
    )
    failed = decode_result(codec.dumps(_a_result(success=False, result=ValueError("no"))), codec.loads)
    assert failed.success is False
    assert isinstance(failed.result, ListenerError if codec is json_codec else ValueError)
    assert str(failed.result.message if codec is json_codec else failed.result) == "no"


def test_an_old_result_without_queue_and_id_reads_back() -> None:
    data = {key: value for key, value in _a_result().items() if key not in ("q", "id")}
    result = decode_result(json_codec.dumps(data), json_codec.loads)
    assert (result.queue_name, result.job_id, result.function) == ("<unknown>", "<unknown>", "send_email")


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'{"t": 1, "f": "x"}', b'{"f": "x", "a": [], "k": {}}'])
def test_what_is_not_a_result_is_a_job_payload_error(data: bytes) -> None:
    with pytest.raises(JobPayloadError, match="not an arq job result"):
        decode_result(data, json_codec.loads)


def test_keys_carry_arqs_prefixes_and_the_namespace() -> None:
    space = KeySpace("shop")
    job_id = space.job_id("0f0fa426")
    assert space.job(job_id) == "arq:job:{shop}:0f0fa426"
    assert space.in_progress(job_id) == "arq:in-progress:{shop}:0f0fa426"
    assert space.result(job_id) == "arq:result:{shop}:0f0fa426"
    assert space.retry(job_id) == "arq:retry:{shop}:0f0fa426"
    assert space.arq_abort_requests == "arq:abort"
    assert space.health_check("default") == "{shop}:queue:default:health-check"


# -- against arq's own code, where arq is installed ---------------------------------------------


@needs_arq
def test_the_constants_are_arqs() -> None:
    assert arq_constants.job_key_prefix == arq_format.JOB_KEY_PREFIX
    assert arq_constants.in_progress_key_prefix == arq_format.IN_PROGRESS_KEY_PREFIX
    assert arq_constants.result_key_prefix == arq_format.RESULT_KEY_PREFIX
    assert arq_constants.retry_key_prefix == arq_format.RETRY_KEY_PREFIX
    assert arq_constants.abort_jobs_ss == arq_format.ABORT_JOBS_SS
    assert arq_constants.health_check_key_suffix == arq_format.HEALTH_CHECK_SUFFIX


@needs_arq
@given(args=_args, kwargs=_kwargs, job_try=st.none() | st.integers(1, 50), enqueue_ms=st.integers(0, 2**41))
def test_arq_reads_taskemits_jobs_and_taskemit_reads_arqs(
    args: list[Any], kwargs: dict[str, Any], job_try: int | None, enqueue_ms: int
) -> None:
    for codec in (json_codec, pickle_codec):
        ours = codec.encode_job("mod:fn", tuple(args), kwargs, enqueue_ms=enqueue_ms, job_try=job_try)
        theirs = serialize_job("mod:fn", tuple(args), kwargs, job_try, enqueue_ms, serializer=codec.dumps)
        assert ours == theirs, "the same bytes as arq's serialize_job"
        job = deserialize_job(ours, deserializer=codec.loads)  # arq's own reader
        assert (job.function, list(job.args), job.kwargs, job.job_try) == ("mod:fn", list(args), kwargs, job_try)
        assert job.enqueue_time.timestamp() == pytest.approx(enqueue_ms / 1000)
        fan_out = codec.encode_jobs(["a", "b"], tuple(args), kwargs, enqueue_ms=enqueue_ms, meta={"event": "e"})
        for function, data in zip(["a", "b"], fan_out, strict=True):
            job = deserialize_job(data, deserializer=codec.loads)
            assert (job.function, job.kwargs) == (function, {**kwargs, META_KWARG: {"event": "e"}})
        assert codec.decode_job(theirs) == job_dict(
            "mod:fn", args if codec is json_codec else tuple(args), kwargs, job_try, enqueue_ms
        )


@needs_arq
@pytest.mark.parametrize("codec", [json_codec, pickle_codec], ids=["json", "pickle"])
@pytest.mark.parametrize("success", [True, False])
def test_results_are_arqs_both_ways(codec: Any, success: bool) -> None:
    outcome = {"sent": 1} if success else asyncio.CancelledError("aborted on request")
    ours = codec.dumps(_a_result(success=success, result=outcome))
    theirs = serialize_result(
        "send_email",
        (1, "a"),
        {"to": "a@b"},
        2,
        1_700_000_000_000,
        success,
        outcome,
        1_700_000_000_500,
        1_700_000_001_250,
        "ref",
        "{ns}:queue:default",
        "{ns}:abc",
        serializer=codec.dumps,
    )
    if codec is pickle_codec and not success:  # an exception compares by identity: compare its pieces
        mine, arqs = pickle.loads(ours), pickle.loads(theirs)
        assert (type(mine.pop("r")), mine) == (type(arqs.pop("r")), arqs)
    else:
        assert ours == theirs, "the same bytes as arq's serialize_result"
    read_by_arq = deserialize_result(ours, deserializer=codec.loads)
    read_by_us = decode_result(theirs, codec.loads)
    for name in ("function", "kwargs", "job_try", "success", "queue_name", "job_id"):
        assert getattr(read_by_arq, name) == getattr(read_by_us, name), name
    assert tuple(read_by_arq.args) == read_by_us.args == (1, "a")
    for name in ("enqueue_time", "start_time", "finish_time"):
        arq_time: dt.datetime = getattr(read_by_arq, name)
        assert arq_time.timestamp() == pytest.approx(getattr(read_by_us, name)), name
    if success:
        assert read_by_arq.result == read_by_us.result == {"sent": 1}
    else:
        assert type(read_by_arq.result) is type(read_by_us.result)
