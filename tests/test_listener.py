"""The listener decorator: Litestar's shape, the user's function kept, errors at decoration."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar.events import listener as litestar_listener

from taskemit import Listener, ListenerArgumentError, ListenerConfigError, listener
from taskemit.emit import Registry, as_listener


@listener("user_created")
async def welcome(email: str) -> str:
    return f"hi {email}"


@listener("user_created", "password_changed", name="mailer")
def send_email(email: str, message: str = "") -> str:
    raise ConnectionError("smtp down")


def test_decorator_has_litestar_shape_and_keeps_the_function() -> None:
    assert isinstance(welcome, Listener)
    assert welcome.event_ids == frozenset({"user_created"})
    assert welcome.name == f"{__name__}:welcome"
    assert asyncio.run(welcome.fn("a@b")) == "hi a@b"
    assert send_email.event_ids == frozenset({"user_created", "password_changed"})
    assert send_email.name == "mailer"


def test_exceptions_are_not_swallowed() -> None:
    with pytest.raises(ConnectionError, match="smtp down"):
        asyncio.run(send_email.run(("a@b",), {}))


@pytest.mark.parametrize(
    ("event_ids", "match"),
    [((), "at least one event id"), (("",), "non-empty string ids"), ((3,), "non-empty string ids")],
)
def test_bad_event_ids_fail_at_decoration(event_ids: tuple[Any, ...], match: str) -> None:
    async def untyped(email: str) -> None: ...

    with pytest.raises(ListenerConfigError, match=match):
        listener(*event_ids)(untyped)  # no ids and no event class in the annotations either


def test_bare_decorator_use_is_explained() -> None:
    with pytest.raises(ListenerConfigError, match="call it with the event ids"):
        listener(welcome.fn)  # type: ignore[arg-type]


def test_bad_options_fail_at_decoration() -> None:
    with pytest.raises(ListenerConfigError, match="timeout"):
        listener("e", timeout=0)(welcome.fn)
    with pytest.raises(ListenerConfigError, match="name"):
        listener("e", name="")(welcome.fn)
    with pytest.raises(ListenerConfigError, match="must be a function"):
        Listener("not callable", ["e"])  # type: ignore[arg-type]


def test_litestar_event_listener_is_unwrapped() -> None:
    seen: list[str] = []

    async def async_fn(email: str) -> None:
        seen.append(email)
        raise RuntimeError("boom")

    def sync_fn(email: str) -> None:
        raise KeyError(email)

    for fn in (async_fn, sync_fn):
        converted = as_listener(litestar_listener("user_created")(fn))
        assert converted.fn is fn  # the original, not Litestar's exception-swallowing wrapper
        assert converted.event_ids == frozenset({"user_created"})
        assert converted.name.endswith(fn.__qualname__)
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(as_listener(litestar_listener("x")(async_fn)).run(("a",), {}))


def test_non_listener_is_rejected() -> None:
    with pytest.raises(ListenerConfigError, match="not a listener"):
        as_listener(print)


def test_duplicate_names_are_rejected() -> None:
    other = listener("user_created", name=welcome.name)(lambda email: None)
    with pytest.raises(ListenerConfigError, match="two listeners are named"):
        Registry([welcome, other])
    # the same listener twice is harmless
    assert Registry([welcome, welcome]).by_event() == {"user_created": (welcome,)}


def test_registry_resolves_events_and_names() -> None:
    registry = Registry([welcome, send_email])
    assert registry.by_event() == {"user_created": (welcome, send_email), "password_changed": (send_email,)}
    assert registry.for_event("user_created") == (welcome, send_email)
    assert registry.for_event("nobody_listens") == ()
    assert registry.get(send_email.name) is send_email
    assert registry.get("missing") is None
    assert registry.listeners == (welcome, send_email)
    assert send_email.name in registry and len(registry) == 2


def test_check_arguments() -> None:
    welcome.check_arguments("user_created", (), {"email": "a"})
    with pytest.raises(ListenerArgumentError, match="unexpected keyword argument 'reason'"):
        welcome.check_arguments("user_created", (), {"email": "a", "reason": "x"})
    with pytest.raises(ListenerArgumentError, match="missing a required argument: 'email'"):
        welcome.check_arguments("user_created", (), {})

    @listener("any")
    def takes_all(*args: Any, **kwargs: Any) -> None: ...

    takes_all.check_arguments("any", (1, 2), {"x": 3})


def test_listener_is_hashable_for_litestar() -> None:
    assert len({welcome, welcome, send_email}) == 2


def test_listeners_of_a_script_are_named_after_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    def handler(email: str) -> None: ...

    handler.__module__ = "__main__"
    script = types.ModuleType("__main__")
    script.__file__ = "/srv/app/quickstart.py"
    monkeypatch.setitem(sys.modules, "__main__", script)
    # `python quickstart.py`: a worker imports it as `quickstart`, never as `__main__`
    assert (
        listener("e")(handler).name
        == "quickstart:test_listeners_of_a_script_are_named_after_its_module.<locals>.handler"
    )
    script.__spec__ = types.SimpleNamespace(name="app.quickstart")  # type: ignore[assignment]
    assert listener("e")(handler).name.startswith("app.quickstart:")


# -- shards (a Redis Cluster) ------------------------------------------------------------------


async def _hot(n: int) -> None:
    return None


@pytest.mark.parametrize("shards", [0, 65, 1.5, True, "3"])
def test_shards_out_of_range_is_refused_at_decoration(shards: object) -> None:
    with pytest.raises(ListenerConfigError, match="shards must be a whole number from 1 to 64"):
        listener("hot", shards=shards)(_hot)  # type: ignore[arg-type]


@pytest.mark.parametrize("option", [{"concurrency": 2}, {"rate": "10/s"}, {"ordered_by": "n"}])
def test_shards_with_a_limit_is_refused_at_decoration_naming_the_limit(option: dict[str, object]) -> None:
    with pytest.raises(ListenerConfigError, match=f"so {next(iter(option))} could not hold across them"):
        listener("hot", shards=3, **option)(_hot)  # type: ignore[arg-type]


def test_shards_on_a_broadcast_listener_is_refused() -> None:
    with pytest.raises(ListenerConfigError, match="shards applies to pool and singleton listeners"):
        listener("hot", shards=2, mode="broadcast")(_hot)


def test_a_sharded_listener_keeps_its_priority() -> None:
    item = listener("hot", shards=4, priority=5)(_hot)
    assert (item.shards, item.flow.priority) == (4, 5)


def test_shards_change_no_key_on_one_redis_and_spread_tags_on_a_cluster() -> None:
    from redis.crc import key_slot

    from taskemit.store.keys import KeySpace

    one = KeySpace("app")
    assert {one.queue("hot", shard, 3) for shard in range(3)} == {"{app}:queue:hot"}
    cluster = KeySpace("app", sharded=True)
    tags = [cluster.queue_tag("hot", shard, 3) for shard in range(3)]
    assert tags[0] == "{app/hot}"
    # each shard's slot in another third of the slots: on other primaries of an even three-node cluster
    assert sorted(key_slot(tag.encode()) * 3 // 16384 for tag in tags) == [0, 1, 2]
    job = cluster.new_event_ids(1, [cluster.for_queue("hot", 2, 3).prefix])[1][0]
    assert job.startswith(tags[2] + ":")
    assert cluster.attempts(job).startswith(tags[2] + ":")


def test_an_ordering_key_is_refused_for_an_event_of_a_sharded_listener() -> None:
    from taskemit.emit.fanout import Fanout
    from taskemit.errors import InvalidArgument
    from taskemit.settings import load_settings

    fanout = Fanout(Registry([listener("hot", shards=2)(_hot)]), load_settings(), use_catalog=False)
    with pytest.raises(InvalidArgument, match="ordering_key cannot hold for listener"):
        fanout.prepare("hot", (), {"n": 1}, ordering_key="k")
    assert fanout.prepare("hot", (), {"n": 1}) is not None
