"""Aborting a job: a waiting one at once, a running one at its worker's next lease renewal."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from ..settings import Settings
from ..state import JobState
from ..store import scripts as lua
from ..store.arq_format import result_dict
from ..store.codec import META_KWARG, get_codec
from .ids import full_job_id

__all__ = ("abort_job",)

_ABORT = lua.script("abort", "lib_flow")


async def abort_job(redis: Any, settings: Settings, job_id: str) -> str:
    """Abort ``job_id``: ``"aborted"`` (it was waiting: settled now), ``"requested"`` (it runs: its
    worker cancels it within a third of ``lease_ttl``) or ``"missing"`` (finished, or unknown).

    An aborted job is not retried and not dead-lettered; its status is ``aborted``.
    """
    keys = settings.keys
    job_id = await full_job_id(redis, settings, job_id)
    space = keys.space_of(job_id)  # the job's tag (its queue's): every key of the script call is on it
    codec = get_codec(settings.serializer)
    payload = await redis.get(space.job(job_id))
    listener, result, queue = "", b"", settings.queue_key
    meta: dict[str, Any] = {}
    if payload is not None:
        try:
            job = codec.decode_job(payload)
        except Exception:
            job = {"f": "", "a": [], "k": {}, "et": None, "t": None}
        listener = job["f"]
        meta = job["k"].get(META_KWARG) or {}
        routes = await redis.hget(keys.routes, listener)
        queue = routes.decode() if routes else settings.queue_key
        now_ms = int(time.time() * 1000)
        if settings.result_retention:  # (whatever arq_results says: how the job is found by its id later)
            result = codec.dumps(
                result_dict(
                    listener,
                    job["a"],
                    job["k"],
                    job.get("t") or 0,
                    job.get("et") or now_ms,
                    success=False,
                    result=asyncio.CancelledError("aborted on request"),  # what arq stores for an abort
                    start_ms=now_ms,
                    finish_ms=now_ms,
                    queue=queue,
                    job_id=job_id,
                )
            )
    if keys.space_of(queue) != space:  # no payload to name its queue: one on its tag (only read when it exists)
        queue = space.prefix + "queue:"
    outcome = json.dumps(
        {"status": JobState.ABORTED, "listener": listener, "finished": time.time(), "reason": "aborted on request"}
    )
    reply = await _ABORT(
        redis,
        [
            space.in_progress(job_id),
            space.job(job_id),
            queue,
            space.ready(queue, listener),
            space.outcomes(meta.get("event") or "-"),  # the event record itself on one Redis
            space.result(job_id),
            space.retry(job_id),
            space.abort_requests,
            space.delayed(queue, listener),
            space.flow_jobs(listener),
            space.flow_keys(listener),
        ],
        [
            job_id,
            outcome,
            result,
            settings.result_retention * 1000,
            int(time.time() * 1000),
            space.flow_group_prefix(listener),
        ],
    )
    answer = reply.decode() if isinstance(reply, bytes) else str(reply)
    if answer == "requested":  # a stock arq worker may run it: arq's own set (outside the namespace's slot)
        await redis.zadd(space.arq_abort_requests, {job_id: int(time.time() * 1000)})
    return answer
