"""Reading back what happened: event and job statuses, dead letters, stats, live workers, queues.

Everything here reads the records that emitters and workers write; the CLI, the Litestar
routes and the Prometheus collector are thin layers over these functions.
"""

from __future__ import annotations

from .abort import abort_job
from .catalog import CatalogEntry, read_catalog
from .deadletter import (
    DeadLetter,
    DeadLetterPage,
    get_dead_letter,
    iter_dead_letters,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letter,
)
from .flow import FlowState, flow_states
from .history import Gauges, sample_gauges, sample_if_due
from .listing import EventPage, events_between, recent_events
from .queues import QueueView, queue_depths
from .schedules import (
    ScheduleView,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    trigger_event_uuid,
    trigger_schedule,
)
from .series import SPANS, FailureCount, History, HistoryPoint, ListenerSummary, Span, read_history
from .server import ServerHealth, server_health
from .stats import ListenerStats, quantile, read_listener_stats
from .status import (
    EventStatus,
    JobStatus,
    event_status,
    job_attempts,
    job_status,
    wait_for_event,
)
from .workers import ListenerView, WorkerInfo, listener_views, live_workers, waiting_listeners

__all__ = (
    "SPANS",
    "CatalogEntry",
    "DeadLetter",
    "DeadLetterPage",
    "EventPage",
    "EventStatus",
    "FailureCount",
    "FlowState",
    "Gauges",
    "History",
    "HistoryPoint",
    "JobStatus",
    "ListenerStats",
    "ListenerSummary",
    "ListenerView",
    "QueueView",
    "ScheduleView",
    "ServerHealth",
    "Span",
    "WorkerInfo",
    "abort_job",
    "event_status",
    "events_between",
    "flow_states",
    "get_dead_letter",
    "get_schedule",
    "iter_dead_letters",
    "job_attempts",
    "job_status",
    "list_dead_letters",
    "list_schedules",
    "listener_views",
    "live_workers",
    "pause_schedule",
    "purge_dead_letters",
    "quantile",
    "queue_depths",
    "read_catalog",
    "read_history",
    "read_listener_stats",
    "recent_events",
    "replay_dead_letter",
    "resume_schedule",
    "sample_gauges",
    "sample_if_due",
    "server_health",
    "trigger_event_uuid",
    "trigger_schedule",
    "wait_for_event",
    "waiting_listeners",
)
