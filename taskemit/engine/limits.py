"""A worker's flow control declarations: made before its first claim, and other workers' heard of.

The claims enforce the newest declaration of each listener's limits (``catalog.lua`` writes it
where ``claim.lua`` reads it). A worker declares its listeners' with every catalog registration
(``heartbeat.beat``), stamped with its start time, and once before its first claim (the flow
control alone), so a listener's limits hold from its first job on. A listener that another worker
declares differently is logged as a warning, once per difference: the newest declaration is the
one that applies (a deploy that changes a limit takes effect as its first worker starts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from ..monitor.catalog import CatalogEntry, FlowConflict, register_listeners
from ..store.faults import Fault, RedisNotReady, fault_of
from ..store.keys import KeySpace

__all__ = ("FlowDeclarations",)

logger = logging.getLogger("taskemit.worker")


class FlowDeclarations:
    """The flow control of one worker's listeners (``entries``), declared as of ``started``."""

    def __init__(self, entries: Sequence[CatalogEntry], worker_id: str, started: float) -> None:
        self.entries = list(entries)
        self.worker_id = worker_id
        self.started = started
        self._mine = {entry.name: entry.flow for entry in self.entries}
        self._warned: set[tuple[str, str, str]] = set()

    async def declare(self, redis: Any, space: KeySpace, live_for: float, retention: float) -> None:
        """Register the listeners and their flow control for ``live_for`` seconds (0: declare the
        flow control alone: before the first claim, ahead of the first heartbeat).

        Raises what Redis being away raises, and RedisNotReady for a reply that says "not now"
        (no replicas, out of memory...): the caller backs off and declares again.
        """
        if not self.entries:
            return
        try:
            _, conflicts = await register_listeners(
                redis,
                self.entries,
                space=space,
                worker_id=self.worker_id,
                live_for=live_for,
                retention=retention,
                started=self.started,
            )
        except ResponseError as exc:
            fault = fault_of(exc)
            if fault is Fault.BAD:  # a bug, not the worker's to stop for: logged, declared again next time
                logger.error("worker %s: declaring its listeners failed in Redis: %s", self.worker_id, exc)
                return
            raise RedisNotReady(exc, fault) from exc
        self.heard(conflicts)

    def heard(self, conflicts: Sequence[FlowConflict]) -> None:
        """Log each listener another worker declares differently (once per declaration)."""
        for conflict in conflicts:
            seen = (conflict.name, conflict.other_worker, conflict.other.to_json())
            if seen in self._warned:
                continue
            self._warned.add(seen)
            mine = self._mine.get(conflict.name)
            theirs = conflict.other.describe() or "no limits"
            ours = (mine.describe() if mine is not None else "") or "no limits"
            if conflict.kept:
                logger.warning(
                    "listener %s: worker %s (started later) declares its flow control as %s; this worker "
                    "declares %s. The newest declaration applies: %s",
                    conflict.name,
                    conflict.other_worker,
                    theirs,
                    ours,
                    theirs,
                )
            else:
                logger.warning(
                    "listener %s: this worker's flow control (%s) replaces the one worker %s (started earlier) "
                    "declared (%s): the newest declaration applies",
                    conflict.name,
                    ours,
                    conflict.other_worker,
                    theirs,
                )
