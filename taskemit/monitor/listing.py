"""Listing events: newest first a page at a time (by event id, status, time window), or the
uuids emitted between two times. Pages cost a bounded number of round trips: the statuses of a
page are read together (``status.event_statuses``), never one event at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument
from ..settings import Settings
from ..store.keys import KeySpace
from ..store.wire import as_text
from .status import EventStatus, event_statuses

__all__ = ("EventPage", "events_between", "recent_events")


@dataclass(frozen=True, slots=True)
class EventPage:
    items: list[EventStatus]
    next_cursor: str | None


async def events_between(redis: Any, start: float, end: float, limit: int = 1000, *, space: KeySpace) -> list[str]:
    """Uuids of events emitted between ``start`` and ``end`` (epoch seconds), oldest first."""
    members = await redis.zrangebyscore(space.events, int(start * 1000), int(end * 1000), start=0, num=limit)
    return [as_text(member) for member in members]


async def recent_events(
    redis: Any,
    settings: Settings,
    *,
    event_id: str | None = None,
    status: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
    scan_limit: int = 1000,
    since: float | None = None,
    until: float | None = None,
) -> EventPage:
    """Events newest first, optionally of one event id and/or one status, a page at a time.

    ``cursor`` is the ``next_cursor`` of the previous page. A status filter reads at most
    ``scan_limit`` events per call; the cursor resumes where it stopped. ``since`` and
    ``until`` (epoch seconds, inclusive) keep the events emitted between them.
    """
    space = settings.keys
    if limit < 1:
        raise InvalidArgument(f"limit must be >= 1, got {limit}")
    index = space.events_by_id(event_id) if event_id else space.events
    max_score, skip = ("+inf" if until is None else str(int(until * 1000)), 0)
    min_score = "-inf" if since is None else str(int(since * 1000))
    if cursor:
        score_text, _, skip_text = cursor.partition(":")
        max_score, skip = score_text, int(skip_text or 0)
    items: list[EventStatus] = []
    scanned = 0
    while len(items) < limit and scanned < scan_limit:
        batch = await redis.zrevrangebyscore(index, max_score, min_score, start=skip, num=limit, withscores=True)
        if not batch:
            return EventPage(items, None)
        statuses = await event_statuses(redis, settings, [as_text(member) for member, _ in batch])
        for (_, score), event in zip(batch, statuses, strict=True):
            scanned += 1
            # the cursor: the score of the last event read and how many at that score were read
            skip = skip + 1 if str(int(score)) == str(max_score) else 1
            max_score = str(int(score))
            if event is not None and (status is None or event.status == status):
                items.append(event)
                if len(items) == limit:
                    break
    return EventPage(items, f"{max_score}:{skip}")
