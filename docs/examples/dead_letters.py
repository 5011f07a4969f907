"""Replay the dead letters whose last error was of one type: `python dead_letters.py TYPE`."""

from __future__ import annotations

import asyncio
import sys

from redis import asyncio as aioredis

from taskemit import Settings, load_settings
from taskemit.monitor.deadletter import iter_dead_letters, replay_dead_letter


async def replay_failed_with(
    error_type: str, listener: str | None = None, settings: Settings | None = None
) -> list[str]:
    """Replay the dead letters (of ``listener``, or all) that died of ``error_type``; returns the new job ids."""
    settings = settings if settings is not None else load_settings()
    async with aioredis.Redis.from_url(settings.redis_url) as redis:
        # collect first: each replay removes a letter from the index that the iterator pages through
        letters = [
            letter
            async for letter in iter_dead_letters(redis, listener=listener, space=settings.keys)
            if letter.error.get("type") == error_type
        ]
        new_job_ids = []
        for letter in letters:
            new_job_id = await replay_dead_letter(redis, settings, letter.job_id)
            if new_job_id is not None:  # None: replayed or purged by someone else meanwhile
                new_job_ids.append(new_job_id)
        return new_job_ids


if __name__ == "__main__":
    for job_id in asyncio.run(replay_failed_with(sys.argv[1])):
        print(f"enqueued {job_id}")
