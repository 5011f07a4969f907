"""Every Redis key taskemit reads or writes, in one place.

arq's own keys (job payloads, in-progress markers, results) keep arq's prefixes so a stock
arq worker and arq's ``Job`` API see taskemit's jobs as ordinary arq jobs.
"""

from __future__ import annotations

from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

__all__ = (
    "CRON_FIRED",
    "CRON_PAUSED",
    "CRON_RESUMED",
    "DEAD_INDEX",
    "DEAD_PREFIX",
    "EVENTS_INDEX",
    "EVENT_COUNTS",
    "EVENT_PREFIX",
    "LISTENER_NAMES",
    "META_KWARG",
    "attempts_key",
    "dead_by_event_key",
    "dead_by_listener_key",
    "dead_key",
    "event_key",
    "events_by_id_key",
    "in_progress_key",
    "job_key",
    "listener_rate_key",
    "listener_stats_key",
    "result_key",
    "retry_key",
)

EVENT_PREFIX = "taskemit:event:"
#: Sorted set of event uuids scored by emit time (ms), trimmed to the event retention.
EVENTS_INDEX = "taskemit:events"

DEAD_PREFIX = "taskemit:dead:"
#: Sorted set of dead-lettered job ids scored by the time they died (ms).
DEAD_INDEX = "taskemit:dead"

#: The keyword under which a job carries taskemit's own metadata (event uuid, ...).
#: The job wrapper removes it before the listener is called.
META_KWARG = "__taskemit__"

#: Sorted set: cron schedule name -> its last emitted tick (epoch seconds; only ever raised).
CRON_FIRED = "taskemit:cron:fired"
#: Hash: paused cron schedule name -> when it was paused (epoch seconds). Every scheduler obeys it.
CRON_PAUSED = "taskemit:cron:paused"
#: Sorted set: cron schedule name -> when it was last resumed; ticks before it are never caught up.
CRON_RESUMED = "taskemit:cron:resumed"


def event_key(event_uuid: str) -> str:
    """Hash with an emitted event's record: event id, time, jobs and their outcomes."""
    return EVENT_PREFIX + event_uuid


def attempts_key(job_id: str) -> str:
    """List of a job's attempts (JSON each): outcome, error, timings; kept across replays."""
    return "taskemit:attempts:" + job_id


def dead_key(job_id: str) -> str:
    """Hash with a dead letter: the job's payload, listener, event and attempt history."""
    return DEAD_PREFIX + job_id


def dead_by_listener_key(listener: str) -> str:
    """Sorted set of the dead letters of one listener."""
    return "taskemit:dead-by-listener:" + listener


def dead_by_event_key(event_id: str) -> str:
    """Sorted set of the dead letters of one event id."""
    return "taskemit:dead-by-event:" + event_id


#: Set of listener names that have counters.
LISTENER_NAMES = "taskemit:listeners"
#: Hash of events emitted per event id.
EVENT_COUNTS = "taskemit:stats:events"


#: Sorted set of worker ids by the time of their last heartbeat.
WORKERS_INDEX = "taskemit:workers"


def worker_key(worker_id: str) -> str:
    """Hash with a worker's last heartbeat (expires when the worker stops renewing it)."""
    return "taskemit:worker:" + worker_id


def events_by_id_key(event_id: str) -> str:
    """Sorted set of the uuids of one event id's events, scored by emit time (ms)."""
    return "taskemit:events-by-id:" + event_id


def listener_stats_key(listener: str) -> str:
    """Hash of a listener's counters and duration histogram (see lib_stats.lua)."""
    return "taskemit:stats:listener:" + listener


def listener_rate_key(listener: str, minute: int) -> str:
    """Hash of a listener's counters during one minute (epoch minutes), for rates."""
    return f"taskemit:rate:{listener}:{minute}"


def job_key(job_id: str) -> str:
    """arq's job payload (deleted by arq when the job finishes)."""
    return job_key_prefix + job_id


def in_progress_key(job_id: str) -> str:
    """arq's marker that a worker is running the job."""
    return in_progress_key_prefix + job_id


def result_key(job_id: str) -> str:
    """arq's stored result of a finished job."""
    return result_key_prefix + job_id


def retry_key(job_id: str) -> str:
    """arq's try counter of a job."""
    return retry_key_prefix + job_id
