"""The emitter's limits while Redis does not take its events: the spool's size (``spool_size``),
what an emit does when the buffer and the spool are both full (``on_spool_full``,
``spool_block_timeout``), and the events logged as lost at close when the spool is full or
cannot be written."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import asyncio as aioredis

from taskemit import Emitter, listener
from taskemit.emit.backlog import Backlog
from taskemit.emit.spool import Spool
from taskemit.errors import EmitBufferFull
from taskemit.settings import Settings
from taskemit.store.redis_server import RedisServer


@listener("note_taken")
async def file_note(n: int) -> None: ...


#: an address where no Redis listens
NOWHERE = "redis://127.0.0.1:1/0"


def limited(settings: Settings, **changes: object) -> Settings:
    """Two events in memory, three in the spool."""
    return settings.model_copy(
        update={"drain_on_exit": False, "emit_buffer_size": 2, "spool_size": 3, "connect_timeout": 0.2, **changes}
    )


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.parametrize("on_spool_full", ["raise", "block"])
async def test_past_the_buffer_and_the_spool_an_emit_on_the_loop_raises_and_the_rest_is_lost_at_close(
    taskemit_settings: Settings, caplog: pytest.LogCaptureFixture, on_spool_full: str
) -> None:
    # "block" never blocks the emitter's own loop (its flusher is what makes room)
    settings = limited(taskemit_settings, redis_url=NOWHERE, shutdown_timeout=0.3, on_spool_full=on_spool_full)
    caplog.set_level(logging.WARNING, logger="taskemit.emitter")
    async with Emitter([file_note], settings) as emitter:
        for n in range(5):  # no await: the flusher has not run; 2 in memory, 3 in the spool
            emitter.emit("note_taken", n)
        assert Spool(settings).count() == 3  # spool_size
        with pytest.raises(EmitBufferFull, match=r"emit_buffer_size=2\) and the spool .* is full or unwritable"):
            emitter.emit("note_taken", 5)
    # closing: the two in memory find no room in the spool, and are logged as lost
    assert Spool(settings).count() == 3
    assert "2 emitted events were not stored" in caplog.text


async def test_an_unwritable_spool_at_close_logs_the_events_as_lost(
    taskemit_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = limited(taskemit_settings, redis_url=NOWHERE, shutdown_timeout=0.3, spool_dir=str(blocker / "spool"))
    caplog.set_level(logging.WARNING, logger="taskemit.emitter")
    async with Emitter([file_note], settings) as emitter:
        emitter.emit("note_taken", 1)
        emitter.emit("note_taken", 2)
    assert "cannot write to the spool" in caplog.text
    assert "2 emitted events were not stored" in caplog.text


async def test_block_waits_off_the_loop_for_room_then_the_events_are_stored(
    taskemit_settings: Settings, own_redis: RedisServer
) -> None:
    settings = limited(taskemit_settings, redis_url=own_redis.url, on_spool_full="block", spool_block_timeout=60.0)
    redis = aioredis.Redis.from_url(own_redis.url)
    errors: list[BaseException] = []
    took: list[float] = []
    try:
        async with Emitter([file_note], settings) as emitter:
            own_redis.stop()

            def emit_many() -> None:  # a thread of the app's, not the emitter's loop
                started = time.monotonic()
                try:
                    for n in range(200):
                        emitter.emit("note_taken", n)
                except BaseException as exc:
                    errors.append(exc)
                took.append(time.monotonic() - started)

            thread = threading.Thread(target=emit_many)
            thread.start()
            await asyncio.sleep(1.0)
            assert thread.is_alive()  # blocked: 2 in memory and 3 in the spool while Redis is down
            own_redis.start()
            await asyncio.to_thread(thread.join, 60)
            assert not thread.is_alive()
        assert errors == []
        assert took[0] >= 1.0
        assert await redis.zcard(settings.keys.events) == 200  # every one, once
    finally:
        await redis.aclose()


async def test_block_gives_up_after_spool_block_timeout(taskemit_settings: Settings) -> None:
    settings = limited(
        taskemit_settings, redis_url=NOWHERE, shutdown_timeout=0.3, on_spool_full="block", spool_block_timeout=0.5
    )
    async with Emitter([file_note], settings) as emitter:
        for n in range(5):  # 2 in memory, 3 in the spool
            emitter.emit("note_taken", n)
        took: list[float] = []
        errors: list[BaseException] = []

        def sixth() -> None:
            started = time.monotonic()
            try:
                emitter.emit("note_taken", 5)
            except EmitBufferFull as exc:
                errors.append(exc)
            took.append(time.monotonic() - started)

        thread = threading.Thread(target=sixth)
        thread.start()
        # joined without awaiting: the emitter's loop (this one) is held meanwhile, so its flusher
        # takes nothing out of the buffer and no room comes, as when Redis never answers
        thread.join(30)
    assert len(errors) == 1 and "is full or unwritable" in str(errors[0])
    assert took[0] >= 0.5  # it waited for room that never came


async def test_a_batch_given_back_moves_the_newest_events_to_the_spool_so_the_buffer_keeps_its_size(
    taskemit_settings: Settings,
) -> None:
    # While a batch is out to Redis its room is free, and new emits take it; when Redis does not
    # take the batch it goes first again, and the events past emit_buffer_size go to the spool
    # (they would otherwise stay in memory, one batch more at each failed round trip).
    settings = limited(taskemit_settings, redis_url=NOWHERE, spool_size=100)
    async with Emitter([file_note], settings) as emitter:
        first, second, third, fourth = (emitter._prepare("note_taken", (n,), {}) for n in range(4))
    backlog = Backlog(settings)
    assert backlog.spool is not None
    for pending in (first, second):
        assert pending is not None
        backlog.add(pending, on_loop=True)
    taken = backlog.next_batch(2)
    assert taken is not None and not taken[1]
    for pending in (third, fourth):
        assert pending is not None
        backlog.add(pending, on_loop=True)  # the batch's room, taken while it is out
    backlog.give_back(*taken)
    assert [p.event_uuid for p in backlog.buffer] == [first.event_uuid, second.event_uuid]  # type: ignore[union-attr]
    assert backlog.spool.count() == 2
    assert {p.event_uuid for p in backlog.spool.read(10)} == {third.event_uuid, fourth.event_uuid}  # type: ignore[union-attr]
