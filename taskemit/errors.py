"""taskemit's exception hierarchy: every error names what is wrong and what to do."""

from __future__ import annotations

__all__ = (
    "EmitBufferFull",
    "ListenerArgumentError",
    "ListenerConfigError",
    "ListenerError",
    "NotReplayable",
    "PayloadEncodeError",
    "TaskEmitError",
    "UnknownEventError",
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


class EmitBufferFull(TaskEmitError):
    """The emitter's in-memory buffer of events not yet stored in Redis is full."""


class NotReplayable(TaskEmitError):
    """A dead letter that cannot be replayed (its job expired, or its payload does not decode)."""


class ListenerError(TaskEmitError):
    """A listener's exception as read back from Redis by a process that did not raise it.

    The JSON serializer stores a failed job's exception as its type name and message; this
    is what ``arq.jobs.Job.result()`` raises for such a job.
    """

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        self.message = message
        super().__init__(f"{type_name}: {message}" if message else type_name)
