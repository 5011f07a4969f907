"""``JobState``: the one vocabulary for where a listener job is, shared by every layer."""

from __future__ import annotations

from enum import StrEnum

__all__ = ("FINISHED_STATES", "JobState")


class JobState(StrEnum):
    """Where a listener job is. The values are what records, the CLI and the metrics show."""

    #: waiting in its queue, due now
    QUEUED = "queued"
    #: waiting in its queue, due later (emitted with a delay)
    DEFERRED = "deferred"
    #: a worker holds it and runs the listener
    IN_PROGRESS = "in_progress"
    #: an attempt failed; the next one is due later
    RETRYING = "retrying"
    #: the listener returned
    COMPLETE = "complete"
    #: no tries left, or an error that is never retried: it is a dead letter
    FAILED = "failed"
    #: stopped on request before it finished
    ABORTED = "aborted"
    #: Redis holds no trace of it (never existed, or its records expired)
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        """True when nothing more will happen to the job by itself."""
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({JobState.COMPLETE, JobState.FAILED, JobState.ABORTED})
