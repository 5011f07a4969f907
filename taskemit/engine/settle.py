"""What a batch of finished attempts writes: the KEYS and ARGV of one ``finish.lua`` call.

Per job: its keys, its claim's token, its mode (done, retry, dead) and records; per dead job its
dead letter; per route (a listener on a queue) its counters and the keys it shares. Pure: no Redis, the
clock read once per batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..monitor.deadrecord import dead_letter_fields
from ..monitor.stats import bucket_for
from ..settings import Settings
from ..state import JobState
from ..store.arq_format import result_dict
from ..store.codec import META_KWARG, Codec
from ..store.keys import KeySpace
from .claims import Finished, Route
from .outcome import Outcome

__all__ = ("arq_result", "finish_call")


def finish_call(
    finished: Sequence[Finished], routes: Sequence[Route], settings: Settings, codec: Codec, space: KeySpace
) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of one finish.lua call for ``finished``, whose jobs are all on the tag of
    ``space`` (see the script's layout: the keys a route or an event record shares are sent once,
    and a job's own keys only where it needs them)."""
    now = time.time()
    used: dict[int, int] = {}  # route index -> its place in the call (1-based)
    records: dict[str, int] = {}  # event record key -> its place (1-based)
    job_keys: list[str] = []
    job_args: list[Any] = []
    dead_keys: list[str] = []
    dead_args: list[Any] = []
    for item in finished:
        outcome, route = item.outcome, routes[item.route]
        run = outcome.run
        job_id = run.attempt.job_id
        listener = run.attempt.listener
        place = used.setdefault(item.route, len(used) + 1)
        record = records.setdefault(space.outcomes(run.meta.get("event") or "-"), len(records) + 1)
        if outcome.state is JobState.RETRYING:
            mode, extra, result = "retry", [outcome.next_payload, outcome.ttl_ms, outcome.run_at_ms], ["", 0]
        elif outcome.state is JobState.FAILED:
            fields = dead_letter_fields(
                settings,
                job_id=job_id,
                listener=listener,
                event_uuid=run.meta.get("event"),
                event_id=run.meta.get("event_id"),
                reason=outcome.reason,
                error=outcome.summary,
                enqueued_ms=run.enqueue_ms,
                died_ms=int(now * 1000),
                queue=route.queue,
            )
            fields += ("payload", outcome.next_payload)
            mode, result = "dead", arq_result(outcome, route, settings, codec)
            extra = [len(fields) // 2]
            dead_keys += (
                space.dead(job_id),
                space.dead_by_listener(listener),
                space.dead_by_event(run.meta.get("event_id") or ""),
            )
            dead_args += fields
        else:
            mode, extra, result = "done", [], arq_result(outcome, route, settings, codec)
        # the job's own keys: its lease and payload, then what it needs of these (flags, in order)
        flags = ""
        job_keys += (space.in_progress(job_id), space.job(job_id))
        if outcome.attempt_json or mode == "dead":
            flags += "a"
            job_keys.append(space.attempts(job_id))
        # arq's try counter exists from a job's second try on (a first try that ran has none)
        if mode == "retry" or run.attempt.number != 1 or outcome.duration is None:
            flags += "t"
            job_keys.append(space.retry(job_id))
        if result[0]:
            flags += "r"
            job_keys.append(space.result(job_id))
            extra += result
        duration = outcome.duration
        job_args += (
            job_id,
            item.token,
            mode,
            flags,
            place,
            record,
            outcome.attempt_json,
            outcome.outcome_json,
            ",".join(outcome.counted),
            "" if duration is None else f"{duration:.6f}",
            "" if duration is None else bucket_for(duration),
            *extra,
        )
    route_keys: list[str] = []
    for index in used:
        r = routes[index]
        route_keys += (
            space.listener_stats(r.listener),
            r.flow,
            r.flow_jobs,
            r.flow_keys,
            r.delayed,
            r.queue,
            r.leased,
            r.ready,
        )
    keys = [space.dead_index, space.listener_names, *route_keys, *records, *job_keys, *dead_keys]
    args = [
        settings.event_retention,
        len(finished),
        int(now * 1000),
        settings.dead_letter_retention,
        len(used),
        *(routes[index].listener for index in used),
        *(routes[index].group_prefix for index in used),
        len(records),
        *job_args,
        *dead_args,
    ]
    return keys, args


def arq_result(outcome: Outcome, route: Route, settings: Settings, codec: Codec) -> list[Any]:
    """arq's result of a finished job (what arq's ``Job.result()`` reads), and its TTL; none
    (``''``, 0) unless the ``arq_results`` setting asks for them."""
    retention_ms = settings.result_retention * 1000
    if not retention_ms or not settings.arq_results:
        return ["", 0]
    run = outcome.run
    success = outcome.state is JobState.COMPLETE
    data = result_dict(
        run.attempt.listener,
        run.args,
        {**run.kwargs, META_KWARG: run.meta},
        run.attempt.number,
        run.enqueue_ms,
        success=success,
        result=outcome.result if success else outcome.error,
        start_ms=int(run.started * 1000),
        finish_ms=int(time.time() * 1000),
        queue=route.queue,
        job_id=run.attempt.job_id,
    )
    try:
        return [codec.dumps(data), retention_ms]
    except Exception:  # a result the serializer cannot store: keep its repr
        data["r"] = repr(data["r"])[:1000]
        try:
            return [codec.dumps(data), retention_ms]
        except Exception:
            return ["", 0]
