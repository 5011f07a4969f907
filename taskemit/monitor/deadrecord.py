"""Recording a dead letter: the fields it is stored with, and the one atomic step that writes it.

When a job will not be tried again, its dead letter is stored with the fields below and its
payload, indexed (all, by listener, by event id), the job's final attempt added to its
attempts, and its outcome written on its event and counted, all on the job's queue tag: by the
``dead_letter`` script on the stock arq path, by the worker's own finishing script (with the same
fields) otherwise. ``monitor.deadletter`` reads, replays and purges what is written here.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..settings import Settings
from ..store import scripts as lua

__all__ = ("DEAD_LETTER", "dead_letter_call", "dead_letter_fields", "record_dead_letter")

DEAD_LETTER = lua.script("dead_letter", "lib_stats", "lib_dead")


def dead_letter_fields(
    settings: Settings,
    *,
    job_id: str,
    listener: str,
    event_uuid: str | None,
    event_id: str | None,
    reason: str,
    error: dict[str, Any],
    enqueued_ms: int | None,
    died_ms: int,
    queue: str | None = None,
) -> list[Any]:
    """A dead letter's field/value pairs (the payload and the attempts apart)."""
    return [
        "job_id",
        job_id,
        "queue",
        queue or settings.queue_key,
        "listener",
        listener,
        "event_uuid",
        event_uuid or "",
        "event_id",
        event_id or "",
        "reason",
        reason,
        "died_at",
        died_ms,
        "enqueued_at",
        enqueued_ms or "",
        "error",
        json.dumps(error),
    ]


def dead_letter_call(
    settings: Settings,
    *,
    job_id: str,
    listener: str,
    event_uuid: str | None,
    event_id: str | None,
    reason: str,
    payload: bytes,
    error: dict[str, Any],
    final_attempt: str,
    outcome: str,
    enqueued_ms: int | None,
    stats: tuple[list[str], list[Any]],
    queue: str | None = None,
) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of the ``dead_letter`` script for one job (see ``record_dead_letter``)."""
    space = settings.keys.space_of(job_id)  # its dead letter, indexes and counters: on its queue's tag
    now_ms = int(time.time() * 1000)
    fields = dead_letter_fields(
        settings,
        job_id=job_id,
        listener=listener,
        event_uuid=event_uuid,
        event_id=event_id,
        reason=reason,
        error=error,
        enqueued_ms=enqueued_ms,
        died_ms=now_ms,
        queue=queue,
    )
    keys = [
        space.dead(job_id),
        space.dead_index,
        space.dead_by_listener(listener),
        space.dead_by_event(event_id or ""),
        space.attempts(job_id),
        space.outcomes(event_uuid or "-"),
        # the counters of the job's tag (``stats`` names the listener first)
        *([space.listener_stats(str(stats[1][0])), space.listener_names] if stats[1] else stats[0]),
    ]
    args = [
        job_id,
        now_ms,
        settings.dead_letter_retention,
        final_attempt,
        settings.event_retention,
        "job:" + job_id,
        outcome,
        *stats[1],
        *fields,
        "payload",
        payload,
    ]
    return keys, args


async def record_dead_letter(redis: Any, settings: Settings, **details: Any) -> None:
    """Store a dead letter (and the job's final attempt and its counters) in one atomic step.

    ``details`` are ``dead_letter_call``'s keywords; ``stats`` is ``stats.outcome_args(...)``
    for the outcome being recorded.
    """
    keys, args = dead_letter_call(settings, **details)
    await DEAD_LETTER(redis, keys, args)
