"""Prometheus metrics, read from Redis at scrape time by a prometheus-client collector.

Any process can serve them (``taskemit metrics --port``, or a Litestar route from
``taskemit.litestar.metrics_route``): the numbers are the ones workers record in Redis, so
every worker process is counted, whichever process is scraped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis

from ..settings import Settings
from ..store.connection import sync_client
from ..store.keys import KeySpace
from ..store.wire import as_text
from .flow import declared_flows, parse_states, queue_reads
from .outbox import report_from_hash
from .stats import BUCKETS, merged_counters
from .tags import spaces_from

__all__ = ("TaskEmitCollector", "metrics_registry")


class TaskEmitCollector(Collector):
    """Collects taskemit's counters, histograms, queue depth and worker liveness from Redis."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._redis: Redis | None = None

    def _client(self) -> Redis:
        if self._redis is None:
            self._redis = sync_client(self.settings)
        return self._redis

    def collect(self) -> Iterator[Metric]:
        redis = self._client()
        space = self.settings.keys
        queue = self.settings.queue_key
        now = time.time()
        spaces = self._queue_spaces(redis)
        pipe = redis.pipeline(transaction=False)
        for queue_space in spaces:
            pipe.smembers(queue_space.listener_names)
        # a listener's counters: on the tag of each queue it ran on (one on one Redis)
        reads = [(as_text(n), s) for s, members in zip(spaces, pipe.execute(), strict=True) for n in members]
        pipe = redis.pipeline(transaction=False)
        pipe.hgetall(space.event_counts)
        pipe.zcount(queue, "-inf", now * 1000)
        pipe.zcount(queue, f"({now * 1000}", "+inf")
        pipe.zrevrange(space.workers, 0, -1)
        for queue_space in spaces:
            pipe.zcard(queue_space.dead_index)
        for name, queue_space in reads:
            pipe.hgetall(queue_space.listener_stats(name))
        replies: list[Any] = pipe.execute()
        event_counts, ready, deferred, worker_ids = replies[:4]
        dead = sum(int(n) for n in replies[4 : 4 + len(spaces)])
        found: dict[str, list[Any]] = {}
        for (name, _), raw in zip(reads, replies[4 + len(spaces) :], strict=True):
            found.setdefault(name, []).append(raw)
        names = sorted(found)
        listener_stats = [merged_counters(found[name]) for name in names]

        emitted = CounterMetricFamily("taskemit_events_emitted", "Events emitted, per event id.", labels=["event"])
        for event, count in sorted(event_counts.items()):
            emitted.add_metric([event.decode()], int(count))
        yield emitted

        jobs = CounterMetricFamily(
            "taskemit_listener_attempts",
            "Finished listener attempts per listener and outcome (failed = retried + dead after running).",
            labels=["listener", "outcome"],
        )
        durations = HistogramMetricFamily(
            "taskemit_listener_duration_seconds", "Duration of listener attempts.", labels=["listener"]
        )
        fenced = CounterMetricFamily(
            "taskemit_listener_fenced",
            "Outcomes refused because another worker had taken the job over after the first one's lease ran out.",
            labels=["listener"],
        )
        for name, fields in zip(names, listener_stats, strict=True):
            for outcome in ("succeeded", "failed", "retried", "dead"):
                jobs.add_metric([name, outcome], int(fields.get(outcome, 0)))
            cumulative, buckets = 0, []
            for bound in (*BUCKETS, math.inf):
                label = "+Inf" if bound == math.inf else f"{bound:g}"
                cumulative += int(fields.get("le:" + label, 0))
                buckets.append((label, cumulative))
            durations.add_metric([name], buckets, float(fields.get("duration_sum", 0.0)))
            fenced.add_metric([name], int(fields.get("fenced", 0)))
        yield jobs
        yield durations
        yield fenced

        depth = GaugeMetricFamily("taskemit_queue_jobs", "Jobs in the queue by state.", labels=["queue", "state"])
        depth.add_metric([self.settings.queue_name, "ready"], int(ready))
        depth.add_metric([self.settings.queue_name, "deferred"], int(deferred))
        yield depth
        yield GaugeMetricFamily("taskemit_dead_letters", "Dead letters kept for replay.", value=int(dead))

        pipe = redis.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.hgetall(space.worker(worker_id.decode()))
        heartbeats = pipe.execute()
        live = GaugeMetricFamily("taskemit_worker_up", "1 for each worker with a fresh heartbeat.", labels=["worker"])
        running = GaugeMetricFamily("taskemit_worker_jobs_running", "Jobs a worker is running.", labels=["worker"])
        lag = GaugeMetricFamily(
            "taskemit_worker_loop_lag_seconds",
            "The longest a worker's event loop was blocked between its last two heartbeats.",
            labels=["worker"],
        )
        lost = CounterMetricFamily(
            "taskemit_worker_leases_lost",
            "Running jobs a worker gave up because it could not keep their leases (Redis unreachable, a "
            "partition), since it started.",
            labels=["worker"],
        )
        for worker_id, beat in zip(worker_ids, heartbeats, strict=True):
            if not beat:
                continue
            queues = json.loads(beat.get(b"queues", b"null")) or [json.loads(beat.get(b"queue", b'""'))]
            if self.settings.queue_name in queues:
                name = worker_id.decode()
                live.add_metric([name], 1)
                running.add_metric([name], int(json.loads(beat.get(b"jobs_running", b"0"))))
                lag.add_metric([name], float(json.loads(beat.get(b"loop_lag", b"0"))))
                lost.add_metric([name], int(json.loads(beat.get(b"leases_lost", b"0"))))
        yield live
        yield running
        yield lag
        yield lost
        yield from self._outbox(redis)
        yield from self._flow(redis, now)

    def _queue_spaces(self, redis: Redis) -> list[KeySpace]:
        """The spaces with per-queue keys (``tags.queue_spaces``, for a sync client)."""
        space = self.settings.keys
        if not space.sharded:
            return [space.root]
        pipe = redis.pipeline(transaction=False)
        pipe.hvals(space.routes)
        pipe.hvals(space.catalog)
        routed, described = pipe.execute()
        return spaces_from(space, routed, described)

    def _outbox(self, redis: Redis) -> Iterator[Metric]:
        """The outbox relays' last reports (they expire when a relay stops reporting)."""
        space = self.settings.keys
        relay_ids = [i.decode() for i in redis.zrevrange(space.outbox_relays, 0, -1)]  # type: ignore[union-attr]
        pipe = redis.pipeline(transaction=False)
        for relay_id in relay_ids:
            pipe.hgetall(space.outbox_relay(relay_id))
        reports = [report_from_hash(i, raw) for i, raw in zip(relay_ids, pipe.execute(), strict=True) if raw]
        labels = ["relay", "database", "table"]
        backlog = GaugeMetricFamily("taskemit_outbox_backlog", "Events waiting in an outbox table.", labels=labels)
        lag = GaugeMetricFamily(
            "taskemit_outbox_lag_seconds", "How long the oldest event in an outbox table has waited.", labels=labels
        )
        relayed = CounterMetricFamily(
            "taskemit_outbox_relayed", "Events an outbox relay stored in Redis since it started.", labels=labels
        )
        errors = CounterMetricFamily(
            "taskemit_outbox_relay_errors",
            "Errors of an outbox relay since it started (database, Redis, rows that do not decode).",
            labels=labels,
        )
        for report in reports:
            values = [report.relay_id, report.database, report.table]
            backlog.add_metric(values, report.backlog)
            lag.add_metric(values, report.lag)
            relayed.add_metric(values, report.relayed)
            errors.add_metric(values, report.errors)
        yield from (backlog, lag, relayed, errors)

    def _flow(self, redis: Redis, now: float) -> Iterator[Metric]:
        """Per listener that declares flow control: its limits, what is in use, what waits (no
        families at all while no listener declares any)."""
        space = self.settings.keys
        pipe = redis.pipeline(transaction=False)
        pipe.hgetall(space.routes)
        pipe.hgetall(space.catalog)
        pipe.hgetall(space.catalog_flow)
        queues, declared = declared_flows(space, *pipe.execute())
        names = [name for name in sorted(declared) if declared[name].limits and name in queues]
        if not names:
            return
        pipe = redis.pipeline(transaction=False)
        queue_reads(pipe, space, names, queues, now)
        states = parse_states(names, declared, pipe.execute(), now)
        if not states:
            return
        label = ["listener"]
        limit = GaugeMetricFamily(
            "taskemit_flow_concurrency_limit", "Jobs of the listener allowed to run at once.", labels=label
        )
        rate = GaugeMetricFamily("taskemit_flow_rate_per_second", "Starts per second its rate allows.", labels=label)
        held = GaugeMetricFamily("taskemit_flow_running", "Jobs of the listener held by workers.", labels=label)
        waiting = GaugeMetricFamily(
            "taskemit_flow_waiting", "Jobs waiting on the listener's limits or ordering keys.", labels=label
        )
        behind = GaugeMetricFamily(
            "taskemit_flow_waiting_behind_keys", "Jobs waiting behind an earlier job of their key.", labels=label
        )
        keys = GaugeMetricFamily("taskemit_flow_keys", "Ordering (or rate) keys with jobs.", labels=label)
        tokens = GaugeMetricFamily("taskemit_flow_tokens", "Tokens in the listener's rate bucket.", labels=label)
        next_token = GaugeMetricFamily(
            "taskemit_flow_next_token_seconds", "Seconds until its rate allows the next start (0: now).", labels=label
        )
        for name, state in states.items():
            flow = state.declared
            if flow.concurrency is not None:
                limit.add_metric([name], flow.concurrency)
            if flow.rate is not None:
                rate.add_metric([name], flow.rate.per_second)
                next_token.add_metric([name], max(0.0, (state.next_token_at or now) - now))
            if state.tokens is not None:
                tokens.add_metric([name], state.tokens)
            held.add_metric([name], state.running)
            waiting.add_metric([name], state.waiting)
            behind.add_metric([name], state.behind_keys)
            keys.add_metric([name], state.keys)
        yield from (limit, rate, held, waiting, behind, keys, tokens, next_token)


def metrics_registry(settings: Settings) -> CollectorRegistry:
    """A registry holding only taskemit's collector (serve it with prometheus-client)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskEmitCollector(settings))
    return registry
