"""Reading back flow control: each listener's limits, how much of them is in use, what waits.

What it reads is what the claims keep (``store/lua/claim.lua``, ``lib_flow.lua``): the newest
declaration and the token bucket in the listener's flow hash, its held jobs (its leased set:
the concurrency in use), its due jobs nobody holds (its ready set), the jobs that wait behind
an earlier job of their ordering key (its keys and their lists), and the jobs held back until
their rate key's next token (its delayed set). ``taskemit listeners``, ``taskemit stats``, the
dashboard and the Prometheus collector show these.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..flow import FlowControl, bucket_tokens, next_token_ms
from ..store.keys import KeySpace
from ..store.wire import as_text

__all__ = ("FlowState", "declared_flows", "flow_states", "parse_states", "queue_reads")

#: the keys whose jobs are counted (more are summarised as "at least")
_KEYS_COUNTED = 10_000
#: the keys shown by name, those with the most jobs first
_KEYS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class FlowState:
    """One listener's flow control now."""

    listener: str
    declared: FlowControl
    #: its jobs held by a worker (the concurrency in use)
    running: int
    #: due jobs no worker holds: claimable, or held back by a limit
    ready: int
    #: jobs waiting behind an earlier job of their ordering (or rate) key
    behind_keys: int
    #: jobs waiting for their rate key's next token, or for a retry time their priority is ahead of
    delayed: int
    #: ordering (or rate) keys with jobs, and the busiest ones: (key, its jobs not finished)
    keys: int
    busiest: tuple[tuple[str, int], ...] = field(default=())
    #: the listener's bucket now (None without a rate, or with one per key)
    tokens: float | None = None
    #: when a start is next allowed by its rate (epoch seconds), None when it is now
    next_token_at: float | None = None

    @property
    def waiting(self) -> int:
        """Jobs that wait on a limit or on their key, or are about to be claimed."""
        return self.ready + self.behind_keys + self.delayed

    def in_use(self, now: float | None = None) -> str:
        """What is used of its limits, for people: "2/3 running, next token in 0.04s"."""
        parts = []
        limit = self.declared.concurrency
        parts.append(f"{self.running}/{limit} running" if limit is not None else f"{self.running} running")
        if self.tokens is not None and self.declared.rate is not None:
            parts.append(f"{self.tokens:.2f}/{self.declared.burst} tokens")
        if self.next_token_at is not None:
            parts.append(f"next token in {max(0.0, self.next_token_at - (now or time.time())):.2f}s")
        if self.keys:
            top = ", ".join(f"{key}: {jobs}" for key, jobs in self.busiest)
            parts.append(f"{self.keys} keys ({top})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "listener": self.listener,
            "declared": self.declared.to_dict(),
            "limits": self.declared.describe(),
            "running": self.running,
            "ready": self.ready,
            "behind_keys": self.behind_keys,
            "delayed": self.delayed,
            "waiting": self.waiting,
            "keys": self.keys,
            "busiest": [list(pair) for pair in self.busiest],
            "tokens": self.tokens,
            "next_token_at": self.next_token_at,
        }


async def flow_states(
    redis: Any,
    *,
    space: KeySpace,
    queues: Mapping[str, str],
    declared: Mapping[str, FlowControl],
    now: float | None = None,
) -> dict[str, FlowState]:
    """The flow control of each listener in ``declared`` (name -> its newest declaration; those
    that declare nothing are left out) on its queue (``queues``: name -> queue key); one round trip."""
    names = [name for name in sorted(declared) if declared[name].limits and name in queues]
    if not names:
        return {}
    now = time.time() if now is None else now
    async with redis.pipeline(transaction=False) as pipe:
        queue_reads(pipe, space, names, queues, now)
        replies = await pipe.execute()
    return parse_states(names, declared, replies, now)


def queue_reads(pipe: Any, space: KeySpace, names: list[str], queues: Mapping[str, str], now: float) -> None:
    """Queue what ``parse_states`` reads on a pipeline (redis-py's, sync or asyncio)."""
    now_ms = int(now * 1000)
    for name in names:
        queue = queues[name]
        on = space.space_of(queue)  # the flow hash and keys are on the queue's tag
        pipe.hmget(on.flow(name), "tokens", "tokens_at")
        pipe.zcard(on.leased(queue, name))
        pipe.zcount(on.ready(queue, name), "-inf", now_ms)
        pipe.zcard(on.delayed(queue, name))
        pipe.zcard(on.flow_keys(name))
        pipe.zrevrange(on.flow_keys(name), 0, _KEYS_SHOWN - 1, withscores=True)
        pipe.zrange(on.flow_keys(name), 0, _KEYS_COUNTED - 1, withscores=True)
        pipe.zrange(on.delayed(queue, name), 0, 0, withscores=True)


def parse_states(
    names: list[str], declared: Mapping[str, FlowControl], replies: list[Any], now: float
) -> dict[str, FlowState]:
    """The states of ``names`` from the replies to ``queue_reads``."""
    now_ms = int(now * 1000)
    states = {}
    for n, name in enumerate(names):
        bucket, running, ready, delayed, keys, busiest, counted, next_delayed = replies[8 * n : 8 * n + 8]
        flow = declared[name]
        tokens = next_at = None
        if flow.rate is not None and flow.rate_key is None:
            stored, at = (float(as_text(v)) if v is not None else None for v in bucket)
            tokens = bucket_tokens(stored, None if at is None else int(at), now_ms, flow.rate, flow.burst)
            if tokens < 1:
                next_at = next_token_ms(tokens, now_ms, flow.rate) / 1000
        elif flow.rate is not None and next_delayed:
            next_at = max(now, float(next_delayed[0][1]) / 1000)
        jobs_in_keys = sum(int(score) for _, score in counted)
        states[name] = FlowState(
            listener=name,
            declared=flow,
            running=int(running),
            ready=int(ready),
            behind_keys=max(0, jobs_in_keys - len(counted)),
            delayed=int(delayed),
            keys=int(keys),
            busiest=tuple((as_text(key), int(score)) for key, score in busiest),
            tokens=tokens,
            next_token_at=next_at,
        )
    return states


def declared_flows(
    space: KeySpace, routes: Mapping[Any, Any], catalog: Mapping[Any, Any], declared: Mapping[Any, Any]
) -> tuple[dict[str, str], dict[str, FlowControl]]:
    """The queue key and the newest declaration of each listener, from the raw replies to
    HGETALL of ``KeySpace.routes``, ``catalog`` and ``catalog_flow`` (for readers without the
    catalog's own reader: the Prometheus collector)."""
    queues = {as_text(name): as_text(queue) for name, queue in routes.items()}
    for raw_name, text in catalog.items():
        try:
            queue = json.loads(text).get("queue")
        except ValueError:
            continue
        if queue:
            queues.setdefault(as_text(raw_name), space.queue(queue))
    flows = {}
    for raw_name, stamp in declared.items():
        try:
            flows[as_text(raw_name)] = FlowControl.from_dict(json.loads(as_text(stamp).split("\n")[2]))
        except (ValueError, IndexError):
            continue
    return queues, flows
