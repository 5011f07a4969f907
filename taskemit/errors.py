"""taskemit's exception hierarchy: every error names what is wrong and what to do."""

from __future__ import annotations

import re

__all__ = (
    "AttemptsExhausted",
    "DurabilityUnavailable",
    "EmitBufferFull",
    "EventValidationError",
    "InvalidArgument",
    "JobPayloadError",
    "ListenerArgumentError",
    "ListenerConfigError",
    "ListenerError",
    "ListenerTimeout",
    "MissingExtra",
    "NoLiveScheduler",
    "NotDurable",
    "NotReplayable",
    "OutboxTableMissing",
    "PayloadEncodeError",
    "PayloadTooLarge",
    "PolicyError",
    "RedisUnavailable",
    "ScheduleNotFound",
    "SettingsFileNotFound",
    "StateError",
    "TaskEmitError",
    "UnknownEventError",
    "WaitTimeout",
    "redact_url",
)


class TaskEmitError(Exception):
    """Base class of every error taskemit raises on purpose."""


class ListenerConfigError(TaskEmitError, TypeError):
    """A listener was declared wrongly (at decoration or registration time)."""


class UnknownEventError(TaskEmitError, LookupError):
    """An event was emitted that no registered listener listens to."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(
            f"no event listeners are registered for event ID: {event_id!r} "
            '(register a listener for it, or set on_unknown_event = "ignore")'
        )


class ListenerArgumentError(TaskEmitError, TypeError):
    """The arguments of an emit do not fit the signature of a listener of that event."""


class PayloadEncodeError(TaskEmitError, TypeError):
    """The arguments of an emit cannot be encoded by the configured serializer."""


class PayloadTooLarge(TaskEmitError, ValueError):
    """An emitted job's payload is larger than the ``max_payload_bytes`` setting."""


class JobPayloadError(TaskEmitError, ValueError):
    """A job in Redis cannot be run: its payload does not decode to an arq job, or it expired."""


class EventValidationError(TaskEmitError, ValueError):
    """A typed event's data does not validate as its class (the emitter's and the worker's differ)."""


class EmitBufferFull(TaskEmitError):
    """The emitter's in-memory buffer of events not yet stored in Redis is full."""


class NotDurable(TaskEmitError):
    """An event was stored in Redis, but the durability level (replicas, fsync) did not hold in
    time. It is not lost: the emitter keeps it in its spool and stores it again (once, by its
    uuid) until the level holds."""


class DurabilityUnavailable(TaskEmitError):
    """The Redis server cannot give the durability level the settings ask for at all."""


class NotReplayable(TaskEmitError):
    """A dead letter that cannot be replayed (its job expired, or its payload does not decode)."""


class ListenerError(TaskEmitError):
    """A listener's exception as read back from Redis by a process that did not raise it.

    The JSON serializer stores a failed job's exception as its type name and message; this
    is what ``arq.jobs.Job.result()`` raises for such a job.
    """

    def __init__(self, type_name: str, message: str, *, listener: str | None = None, job_id: str | None = None) -> None:
        self.type_name = type_name
        self.message = message
        #: which listener raised it, and its job (when known: ``publish(..., wait=True)`` sets them)
        self.listener = listener
        self.job_id = job_id
        text = f"{type_name}: {message}" if message else type_name
        super().__init__(f"listener {listener}: {text}" if listener else text)


class MissingExtra(TaskEmitError, ImportError):
    """Something was used that needs an optional dependency which is not installed; the message
    names the extra to install (``pip install 'taskemit[arq]'``...)."""


class StateError(TaskEmitError, RuntimeError):
    """An object was used in a state that does not allow it (an emitter not entered, ...)."""


class InvalidArgument(TaskEmitError, ValueError):
    """A function of taskemit's API was called with a value it does not take."""


class PolicyError(TaskEmitError, ValueError, TypeError):
    """A retry policy or backoff curve was given a wrong value or type."""


class SettingsFileNotFound(TaskEmitError, FileNotFoundError):
    """The settings file named by ``TASKEMIT_SETTINGS`` or ``load_settings(path)`` does not exist."""


class WaitTimeout(TaskEmitError, TimeoutError):
    """Waiting for jobs or events to finish took longer than the caller allowed."""


class ListenerTimeout(TaskEmitError, TimeoutError):
    """A listener attempt ran longer than its timeout and was cancelled."""


class AttemptsExhausted(TaskEmitError, RuntimeError):
    """A job started with no tries left (its last attempts were cut short by a crash or shutdown)."""


class ScheduleNotFound(TaskEmitError, LookupError):
    """No cron schedule of that name is registered in Redis (schedulers register theirs as they run)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no cron schedule named {name!r} is registered in Redis")


class NoLiveScheduler(TaskEmitError, RuntimeError):
    """A cron schedule was asked to fire, but no live scheduler runs it."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"no live scheduler runs cron schedule {name!r}; start a worker or `taskemit scheduler` that has it"
        )


class OutboxTableMissing(TaskEmitError, LookupError):
    """The outbox table is not in the database an emitter or a relay was given."""

    def __init__(self, table: str, database: str) -> None:
        self.table = table
        self.database = database
        super().__init__(
            f"the outbox table {table!r} does not exist in {database}: create it with "
            f"`taskemit outbox create-table --database-url URL`, or add taskemit.outbox.outbox_table(metadata) "
            "to your metadata (create_all, Alembic); the outbox_table setting names it"
        )


def redact_url(url: str) -> str:
    """``url`` without its passwords (``redis://user:***@host``, ``?sentinel_password=***``), for
    messages and logs."""
    url = _PASSWORD_OPTION.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0] if ":" in credentials else ""
    return f"{scheme}{sep}{user}:***@{location}" if user else f"{scheme}{sep}***@{location}"


_PASSWORD_OPTION = re.compile(r"([?&][a-z_]*password=)[^&]*")


class RedisUnavailable(TaskEmitError, ConnectionError):
    """Redis could not be reached (or started); carries the URL with its password redacted."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact_url(url)
        self.reason = reason
        super().__init__(f"Redis at {self.url} is unavailable: {reason}")
