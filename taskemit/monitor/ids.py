"""Ids as people type them: an unambiguous prefix of at least 8 characters of an event uuid or a job id.

The CLI prints full ids; any command that takes one also takes a prefix (``taskemit status
0f0fa426``). A full id is used as it is. A prefix is looked up among the event index and the
keys of jobs, results and dead letters of the namespace (a SCAN: fine for a command, not for a
hot path).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from ..errors import InvalidArgument
from ..settings import Settings
from ..store.arq_format import JOB_KEY_PREFIX, RESULT_KEY_PREFIX
from ..store.keys import KeySpace, tag_of

__all__ = ("MIN_PREFIX", "AmbiguousId", "full_job_id", "resolve_id")

MIN_PREFIX = 8
_FULL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PREFIX = re.compile(r"[0-9a-f-]+")
#: a job id that names its event, shortened: 8+ of the event's hex digits, then the job's suffix
#: (``0f0fa426.1``, or as the dashboard shows it, ``0f0fa426….1``)
_SHORT_JOB = re.compile(r"([0-9a-f]{8,31})(\.[0-9a-z]+)")
#: a whole job id that names its event, without its tag
_FULL_JOB = re.compile(r"[0-9a-f]{32}\.[0-9a-z]{1,32}")


class AmbiguousId(InvalidArgument):
    """A prefix that matches more than one event or job."""


def _tokens(space: KeySpace, ident: str) -> str:
    """``ident`` without the hash tag of this namespace it starts with (a queue's, on a cluster)."""
    tag = tag_of(ident) if ident.startswith("{") else None
    if tag is not None and space.owns(tag):
        return ident[len(tag) :].removeprefix(":")
    return ident.removeprefix(space.prefix)


def _glob_prefix(space: KeySpace) -> str:
    """A SCAN pattern for what job ids of this namespace start with: its prefix on one Redis; on a
    cluster, any of its tags (``{ns}:`` or ``{ns/queue...}:``)."""
    return space.prefix if not space.sharded else space.control[:-2] + "[}/]*"


def _job_id_of_key(kind: str, text: str) -> str:
    """The job id in a key of a job's: arq's (``arq:job:<id>``, ``arq:result:<id>``) or its dead letter's."""
    if kind == "dead":  # ``{tag}:dead:<job id>``
        tag = tag_of(text) or ""
        return text[len(tag) :].removeprefix(":dead:")
    return text.removeprefix(kind)


async def full_job_id(redis: Any, settings: Settings, token: str) -> str:
    """The full job id of ``token``, which may be one already or lack its tag (``<event hex>.<k>``,
    as users type it): on a Redis Cluster the id its event's record lists (its queue's tag), else
    the namespace's prefix before it."""
    space = settings.keys
    if space.owns(token) or not space.sharded:
        return space.job_id(token)
    event_uuid = space.event_of_job(space.control + token)
    if event_uuid is not None:
        listed = await redis.hget(space.event(event_uuid), "jobs")
        for job_id in json.loads(listed).values() if listed else ():
            if str(job_id).endswith(":" + token) and space.owns(str(job_id)):
                return str(job_id)
    return space.job_id(token)


async def resolve_id(redis: Any, settings: Settings, ident: str) -> str:
    """The full event uuid or job id that ``ident`` abbreviates; ``ident`` itself when it is a full id,
    shorter than 8 characters, or matches nothing. AmbiguousId when it matches several."""
    space = settings.keys
    token = _tokens(space, ident)
    short_job = _SHORT_JOB.fullmatch(token.replace("…", ""))
    if short_job is not None:
        return await _resolve_short_job(redis, settings, ident, short_job[1], short_job[2])
    if space.sharded and not space.owns(ident) and _FULL_JOB.fullmatch(token):
        return await full_job_id(redis, settings, token)  # its tag: the one its event's record lists
    if _FULL_UUID.fullmatch(token) or len(token) >= 32 or len(token) < MIN_PREFIX or not _PREFIX.fullmatch(token):
        return ident
    found: set[str] = set()
    async for member, _ in redis.zscan_iter(space.events, match=f"{token}*"):
        found.add(member.decode())
    found.update([job_id async for job_id in _job_keys(redis, space, token, "*")])
    events = {found_id for found_id in found if not space.owns(found_id)}
    if len(events) == 1 and all(space.event_of_job(found_id) in events for found_id in found - events):
        return events.pop()  # an event and its own jobs (their ids begin with its digits): the event shows them
    if len(found) > 1:
        shown = ", ".join(sorted(found)[:5]) + (" ..." if len(found) > 5 else "")
        raise AmbiguousId(f"{ident!r} matches {len(found)} events or jobs ({shown}); give more characters")
    return found.pop() if found else ident


async def _job_keys(redis: Any, space: KeySpace, token: str, rest: str) -> AsyncIterator[str]:
    """The ids of this namespace's jobs whose payload, result or dead letter key matches
    ``<token><rest>`` after the id's tag (SCAN), and whose id's digits begin with ``token``."""
    glob = _glob_prefix(space)
    for kind, pattern in (
        (JOB_KEY_PREFIX, f"{JOB_KEY_PREFIX}{glob}{token}{rest}"),
        (RESULT_KEY_PREFIX, f"{RESULT_KEY_PREFIX}{glob}{token}{rest}"),
        ("dead", f"{glob}dead:{glob}{token}{rest}"),
    ):
        async for key in redis.scan_iter(match=pattern, count=1000):
            job_id = _job_id_of_key(kind, key.decode())
            if space.owns(job_id) and _tokens(space, job_id).startswith(token):
                yield job_id


async def _resolve_short_job(redis: Any, settings: Settings, ident: str, event_hex: str, suffix: str) -> str:
    """The job id ``<event hex>.<suffix>`` whose event's digits begin with ``event_hex``: among the
    events of the index (their records list their jobs) and the jobs' own keys."""
    space = settings.keys
    found: set[str] = set()
    dashed = "-".join(event_hex[start:end] for start, end in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32)))
    events = [member.decode() async for member, _ in redis.zscan_iter(space.events, match=dashed.rstrip("-") + "*")]
    if not space.sharded:
        found.update(space.prefix + event_uuid.replace("-", "") + suffix for event_uuid in events)
    elif events:  # the ids the records list (each on its queue's tag)
        async with redis.pipeline(transaction=False) as pipe:
            for event_uuid in events:
                pipe.hget(space.event(event_uuid), "jobs")
            for event_uuid, jobs in zip(events, await pipe.execute(), strict=True):
                tail = ":" + event_uuid.replace("-", "") + suffix
                found.update(str(j) for j in (json.loads(jobs).values() if jobs else ()) if str(j).endswith(tail))
    found.update([job_id async for job_id in _job_keys(redis, space, event_hex, "*" + suffix)])
    found = {job_id for job_id in found if job_id.endswith(suffix) and space.event_of_job(job_id) is not None}
    if len(found) > 1:  # an event listed without that job is no match
        async with redis.pipeline(transaction=False) as pipe:
            ordered = sorted(found)
            for job_id in ordered:
                pipe.hget(space.event(str(space.event_of_job(job_id))), "jobs")  # (the control tag)
            listed = await pipe.execute()
        found = {job_id for job_id, jobs in zip(ordered, listed, strict=True) if jobs and job_id in jobs.decode()}
    if len(found) > 1:
        shown = ", ".join(sorted(found)[:5]) + (" ..." if len(found) > 5 else "")
        raise AmbiguousId(f"{ident!r} matches {len(found)} jobs ({shown}); give more characters")
    return found.pop() if found else ident
