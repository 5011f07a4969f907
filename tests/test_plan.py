"""The RESP an emit batch is sent as: what hiredis would pack for the same arguments, byte for byte."""

from __future__ import annotations

import uuid

from hiredis import pack_command
from hypothesis import given
from hypothesis import strategies as st

from taskemit.emit.plan import Plan, Route
from taskemit.store.codec import json_text
from taskemit.store.wire import Packed, bulk

_text = st.text(max_size=20) | st.text(alphabet='%s\\"é{}', max_size=8)
_names = st.lists(st.text(min_size=1, max_size=12), min_size=0, max_size=4, unique=True)


@given(st.lists(st.one_of(st.binary(max_size=40), _text, st.integers(min_value=-(2**62), max_value=2**62)), max_size=8))
def test_packed_equals_hiredis(arguments: list[bytes | str | int]) -> None:
    command = ("CMD", *arguments)
    assert Packed.of(len(command), *map(bulk, command)) == pack_command(command)


@given(
    event_id=_text,
    names=_names,
    event_uuid=st.uuids().map(str),
    emitted_ms=st.integers(min_value=0, max_value=2**45),
    cause=st.one_of(st.none(), st.uuids().map(str)),
    named=st.booleans(),
    own_flows=st.booleans(),
    data=st.data(),
)
def test_plan_resp_is_the_event_arguments_packed(
    event_id: str,
    names: list[str],
    event_uuid: str,
    emitted_ms: int,
    cause: str | None,
    named: bool,
    own_flows: bool,
    data: st.DataObject,
) -> None:
    """Each job's flow control argument is its route's, or the event's own when it has them."""
    route_flows = data.draw(st.lists(_text, min_size=len(names), max_size=len(names)))
    routes = [
        Route(f"q%{i}", f"ready:{name}", "wake", named, flow=flow)
        for i, (name, flow) in enumerate(zip(names, route_flows, strict=True))
    ]
    flows = data.draw(st.lists(_text, min_size=len(names), max_size=len(names))) if own_flows else None
    plan = Plan(event_id, names, routes)
    job_ids = [f"{{ns}}:{uuid.UUID(event_uuid).hex}.{index}" for index in range(len(names))]
    payloads = data.draw(st.lists(st.binary(max_size=60), min_size=len(names), max_size=len(names)))
    jobs = dict(zip(names, job_ids, strict=True))
    expected: list[bytes | str | int] = [
        event_id,
        len(names),
        plan.queues,
        event_uuid,
        emitted_ms,
        json_text(jobs),
        cause or "",
    ]
    for n, (route, job_id, payload) in enumerate(zip(routes, job_ids, payloads, strict=True)):
        expected += (route.queue, route.ready, job_id, payload, route.flow if flows is None else flows[n])
    assert plan.argc == len(expected)
    resp = plan.resp(event_uuid, emitted_ms, job_ids, payloads, cause, flows)
    assert Packed.of(1 + plan.argc, bulk("EVALSHA"), resp) == pack_command(("EVALSHA", *expected))


def test_plan_groups_wakes_and_broadcast_expiry() -> None:
    routes = [
        Route("q", "q:ready:a", "q:wake", False),
        Route("q", "q:ready:b", "q:wake", False),
        Route("q:w1", "q:w1:ready:c", "q:wake", True, expires=True),
    ]
    plan = Plan("ev", ["a", "b", "c@w1"], routes)
    assert plan.functions == ["a", "b", "c"]
    assert plan.wakes == (("q:wake", "a"), ("q:wake", "b"), ("q:wake", "c"))
    assert plan.expiring == ("q:w1", "q:w1:ready:c")
    assert plan.queues == json_text({"a": "q", "b": "q", "c@w1": "q:w1"})
    assert Plan("ev", ["a"], routes[:1]).queues == ""
