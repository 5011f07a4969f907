"""Dead letters: jobs that will not be tried again, kept for inspection and replay.

A dead letter holds the job's payload, its listener and event, why it died, and every
attempt's error (``monitor.deadrecord`` writes it). Listing walks sorted-set indexes (all, by
listener, by event id) page by page, never ``KEYS``; replay enqueues a new job with a fresh
attempt count and carries the history over; purging deletes letters and lets an ordering key
the dead job held go on.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument, NotReplayable
from ..settings import Settings
from ..store import scripts as lua
from ..store.codec import META_KWARG, get_codec
from ..store.keys import KeySpace
from .tags import queue_of_space, queue_spaces

__all__ = (
    "DeadLetter",
    "DeadLetterPage",
    "NotReplayable",
    "count_dead_letters",
    "get_dead_letter",
    "iter_dead_letters",
    "list_dead_letters",
    "purge_dead_letters",
    "replay_dead_letter",
)

_REPLAY = lua.script("replay", "lib_flow")
_PURGE = lua.script("purge", "lib_flow")
_RECORD_JOB = lua.script("record_job")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job that will not be tried again, and why."""

    job_id: str
    listener: str
    event_uuid: str | None
    event_id: str | None
    reason: str
    died_at: float
    enqueued_at: float | None
    error: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    payload: bytes = b""
    queue: str | None = None

    def arguments(self, serializer: str = "json") -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The ``(args, kwargs)`` the listener was emitted with (taskemit's metadata removed)."""
        if not self.payload:
            return (), {}
        job = get_codec(serializer).decode_job(self.payload)
        kwargs = {k: v for k, v in job["k"].items() if k != META_KWARG}
        return tuple(job["a"]), kwargs


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    items: list[DeadLetter]
    next_cursor: int | None


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _index_for(space: KeySpace, listener: str | None, event: str | None) -> str:
    if listener is not None:
        return space.dead_by_listener(listener)
    if event is not None:
        return space.dead_by_event(event)
    return space.dead_index


def _parse(raw: dict[bytes, bytes]) -> DeadLetter:
    fields = {k.decode(): v for k, v in raw.items()}

    def text(name: str) -> str:
        return _text(fields.get(name)) or ""

    enqueued = text("enqueued_at")
    return DeadLetter(
        job_id=text("job_id"),
        listener=text("listener"),
        event_uuid=text("event_uuid") or None,
        event_id=text("event_id") or None,
        reason=text("reason"),
        died_at=int(text("died_at")) / 1000,
        enqueued_at=int(enqueued) / 1000 if enqueued else None,
        error=json.loads(text("error") or "{}"),
        attempts=json.loads(text("attempts") or "[]"),
        payload=fields.get("payload", b""),
        queue=text("queue") or None,
    )


async def get_dead_letter(redis: Any, job_id: str, *, space: KeySpace) -> DeadLetter | None:
    """The dead letter of ``job_id``, or None."""
    raw = await redis.hgetall(space.dead(job_id))
    return _parse(raw) if raw else None


async def _newest(
    redis: Any, indexes: list[tuple[KeySpace, str]], start: int, count: int
) -> list[tuple[KeySpace, str]]:
    """Entries ``start`` to ``start + count - 1`` of ``indexes`` merged, newest first: of one
    index as it is; of several (one per queue tag), the newest ``start + count`` of each merged by
    score, as one index would order them."""
    if len(indexes) == 1:
        space, index = indexes[0]
        return [(space, str(_text(i))) for i in await redis.zrevrange(index, start, start + count - 1)]
    async with redis.pipeline(transaction=False) as pipe:
        for _, index in indexes:
            pipe.zrevrange(index, 0, start + count - 1, withscores=True)
        replies = await pipe.execute()
    merged = [
        (float(score), str(_text(member)), space)
        for (space, _), entries in zip(indexes, replies, strict=True)
        for member, score in entries
    ]
    merged.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
    return [(space, job_id) for _, job_id, space in merged[start : start + count]]


async def _dead_indexes(
    redis: Any, space: KeySpace, listener: str | None, event: str | None
) -> list[tuple[KeySpace, str]]:
    """The index to list (all, by listener, by event id) on each queue space."""
    return [(queue_space, _index_for(queue_space, listener, event)) for queue_space in await queue_spaces(redis, space)]


async def count_dead_letters(
    redis: Any, *, listener: str | None = None, event: str | None = None, space: KeySpace
) -> int:
    """How many dead letters the index (all, by listener, by event id) holds, over every queue tag."""
    indexes = await _dead_indexes(redis, space, listener, event)
    async with redis.pipeline(transaction=False) as pipe:
        for _, index in indexes:
            pipe.zcard(index)
        return sum(int(n) for n in await pipe.execute())


async def list_dead_letters(
    redis: Any,
    *,
    listener: str | None = None,
    event: str | None = None,
    limit: int = 50,
    cursor: int = 0,
    space: KeySpace,
) -> DeadLetterPage:
    """One page of dead letters, newest first; pass ``next_cursor`` back for the next page. On a
    Redis Cluster the indexes of every queue tag are read, merged by when the jobs died."""
    if limit < 1:
        raise InvalidArgument(f"limit must be >= 1, got {limit}")
    indexes = await _dead_indexes(redis, space, listener, event)
    index_of = dict(indexes)
    items: list[DeadLetter] = []
    position = cursor
    while len(items) < limit:
        entries = await _newest(redis, indexes, position, limit)
        if not entries:
            return DeadLetterPage(items, None)
        position += len(entries)
        async with redis.pipeline(transaction=False) as pipe:
            for _, job_id in entries:
                pipe.hgetall(space.dead(job_id))
            records = await pipe.execute()
        expired = [entry for entry, raw in zip(entries, records, strict=True) if not raw]
        if expired:  # the record outlived by its index entry: tidy the index as we go
            async with redis.pipeline(transaction=False) as pipe:
                for queue_space, job_id in expired:
                    pipe.zrem(index_of[queue_space], job_id)
                await pipe.execute()
            position -= len(expired)
        for raw in records:
            if raw:
                letter = _parse(raw)
                if event is None or letter.event_id == event:
                    items.append(letter)
    async with redis.pipeline(transaction=False) as pipe:
        for _, index in indexes:
            pipe.zcard(index)
        more = sum(int(n) for n in await pipe.execute()) > position
    return DeadLetterPage(items, position if more else None)


async def iter_dead_letters(
    redis: Any,
    *,
    listener: str | None = None,
    event: str | None = None,
    page_size: int = 100,
    space: KeySpace,
) -> AsyncIterator[DeadLetter]:
    """Every dead letter matching the filters, page by page."""
    cursor: int | None = 0
    while cursor is not None:
        page = await list_dead_letters(
            redis, listener=listener, event=event, limit=page_size, cursor=cursor, space=space
        )
        for letter in page.items:
            yield letter
        cursor = page.next_cursor


async def replay_dead_letter(redis: Any, settings: Settings, job_id: str) -> str | None:
    """Enqueue the dead job again with a fresh attempt count; returns the new job id.

    The new job goes to the queue the job died on, keeps the old one's attempt history (plus
    a "replayed" entry) and replaces it on the event record. Returns None if there is no such
    dead letter; raises NotReplayable if it has no payload that decodes.
    """
    keys = settings.keys
    space = keys.space_of(job_id)  # the dead job's tag: every key of the script call is on it
    letter = await get_dead_letter(redis, job_id, space=keys)
    if letter is None:
        return None
    if not letter.payload:
        raise NotReplayable(f"dead letter {job_id} has no payload to replay (it died of: {letter.reason})")
    codec = get_codec(settings.serializer)
    try:
        job = codec.decode_job(letter.payload)
        args, kwargs, function = tuple(job["a"]), dict(job["k"]), str(job["f"])
    except Exception as exc:
        raise NotReplayable(
            f"dead letter {job_id} cannot be replayed: its payload does not decode with the "
            f"{settings.serializer!r} serializer ({exc}); inspect it with `taskemit dead show {job_id}`"
        ) from None
    meta = dict(kwargs.get(META_KWARG) or {})
    meta["replay_of"] = job_id
    queue = letter.queue or settings.queue_key
    if keys.space_of(queue) != space:  # a letter that names no queue: the one of its job's tag
        queue = queue_of_space(space)
    # names the event, so it is found by its id once done; on the dead job's tag (its queue's)
    new_job_id = space.new_job_id(letter.event_uuid)
    now_ms = int(time.time() * 1000)
    payload = codec.encode_job(function, args, {**kwargs, META_KWARG: meta}, enqueue_ms=now_ms)
    entry = json.dumps({"status": "replayed", "at": now_ms / 1000, "replay_of": job_id, "new_job_id": new_job_id})
    stored = await _REPLAY(
        redis,
        [
            space.dead(job_id),
            space.dead_index,
            space.dead_by_listener(letter.listener),
            space.dead_by_event(letter.event_id or ""),
            queue,  # back to the queue it died on
            space.job(new_job_id),
            space.attempts(new_job_id),
            space.outcomes(letter.event_uuid or "-"),  # the event record itself on one Redis
            space.ready(queue, letter.listener),
            space.flow_jobs(letter.listener),
            space.delayed(queue, letter.listener),
        ],
        [
            job_id,
            new_job_id,
            payload,
            now_ms,
            settings.job_expiry * 1000,
            entry,
            settings.event_retention,
            letter.listener,
            space.wake_channel(queue),
            space.flow_group_prefix(letter.listener),
        ],
    )
    if stored and not space.is_control and letter.event_uuid:
        # the record (on the control tag) lists the new job in the dead one's place
        await _RECORD_JOB(redis, [keys.event(letter.event_uuid)], [letter.listener, new_job_id])
    return new_job_id if stored else None


async def purge_dead_letters(
    redis: Any, *, listener: str | None = None, event: str | None = None, space: KeySpace, queue: str | None = None
) -> int:
    """Delete the dead letters matching the filters (all by default); returns how many.

    A dead job that held its ordering key (``pass_dead=False``) lets the key's next job go on.
    ``queue`` is the queue key of letters that do not say theirs (the ``queue_name`` setting's).
    """
    removed = 0
    while page := (await list_dead_letters(redis, listener=listener, event=event, limit=100, space=space)).items:
        # always the first page: each round removes what it read
        now_ms = int(time.time() * 1000)
        async with redis.pipeline(transaction=False) as pipe:
            for letter in page:
                on = letter.queue or queue or space.queue("default")
                mine = space.space_of(letter.job_id)  # each call's keys: on the dead job's tag
                if space.space_of(on) != mine:  # a letter that names no queue: its tag's
                    on = queue_of_space(mine)
                _PURGE.queue(
                    pipe,
                    [
                        mine.dead(letter.job_id),
                        mine.dead_index,
                        mine.dead_by_listener(letter.listener),
                        mine.dead_by_event(letter.event_id or ""),
                        mine.flow_jobs(letter.listener),
                        mine.flow_keys(letter.listener),
                        mine.ready(on, letter.listener),
                        on,
                        mine.delayed(on, letter.listener),
                    ],
                    [
                        letter.job_id,
                        mine.flow_group_prefix(letter.listener),
                        now_ms,
                        mine.wake_channel(on),
                        letter.listener,
                    ],
                )
            await _PURGE.load(redis)
            await pipe.execute()
        removed += len(page)
    return removed
