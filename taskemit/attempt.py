"""What a listener can know about, and ask of, the attempt that is running it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .errors import InvalidArgument

__all__ = ("Attempt", "Retry")


@dataclass(frozen=True, slots=True)
class Attempt:
    """The run of a listener job in progress; declare ``attempt: Attempt`` to receive it.

    ``idempotency_key`` is the same for every attempt (and replay) of one listener on one
    event, so a listener can make its side effect happen once even when it is retried.
    """

    event_uuid: str | None
    event_id: str | None
    listener: str
    job_id: str
    number: int
    max_tries: int
    enqueued_at: dt.datetime | None = None

    @property
    def is_last(self) -> bool:
        """True when a failure now sends the job to the dead letters."""
        return self.number >= self.max_tries

    @property
    def idempotency_key(self) -> str:
        return f"{self.event_uuid or self.job_id}:{self.listener}"


class Retry(Exception):
    """Raise from a listener to be retried after ``after`` seconds (default: the policy's delay).

    It counts as a failed attempt: when the listener has no tries left, the job goes to the
    dead letters. ``retry_on`` and ``give_up_on`` do not apply to it.
    """

    def __init__(self, after: float | None = None, reason: str = "") -> None:
        if after is not None and not after >= 0:
            raise InvalidArgument(f"Retry(after=...) must be a number of seconds >= 0, got {after!r}")
        self.after = after
        self.reason = reason
        super().__init__(reason or (f"retry requested in {after:g}s" if after is not None else "retry requested"))
