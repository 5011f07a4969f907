"""Event uuids and job ids: ``JobIds``, the id half of ``KeySpace`` (``keys.py``).

A job id is ``{ns}:<event hex>.<suffix>``: the 32 hex digits of the uuid of the job's event,
then a suffix that tells the event's jobs apart, so a job is found by its id alone, through its
event's record, when nothing else of it is left (``event_of_job``).
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Sequence

__all__ = ("ONCE_NAMESPACE", "JobIds", "random_uuid")

#: uuid5 namespace of the event uuids and job ids derived from a key (exactly-once publishing)
ONCE_NAMESPACE = uuid.UUID("5f0b8a8e-2d7c-4c62-9a57-3b1f6d0e4a21")


def random_uuid() -> str:
    """A random (version 4) UUID string, without a system call.

    Ids only need to be unique, not secret: they come from the ``random`` module's generator,
    which Python seeds from the OS and reseeds in a forked child, instead of ``os.urandom``
    per id (a system call that cost more than the rest of an emit's id handling).
    """
    return _uuid4_text(f"{random.getrandbits(128):032x}")


def _uuid4_text(h: str) -> str:
    """The version 4 UUID string made of 32 random hex digits (two of them set to the version
    and the variant)."""
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


#: a random hex digit -> one whose top bits are the RFC 4122 variant (10)
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}

#: a job id's token that names its event: the event uuid's 32 hex digits, '.', the job's suffix
_EVENT_JOB = re.compile(r"([0-9a-f]{32})\.[0-9a-z]{1,32}")
#: hex digits of uuid5(event:listener) in the id of a job of exactly-once publishing
_ONCE_SUFFIX = 8


def _listener_suffix(event_uuid: str, listener: str) -> str:
    """The 32 hex digits that tell ``listener``'s job of the event ``event_uuid`` apart (uuid5)."""
    return uuid.uuid5(ONCE_NAMESPACE, f"{event_uuid}:{listener}").hex


class JobIds:
    """Making job ids and reading them back, for the namespace whose key prefix is ``prefix``."""

    __slots__ = ()
    #: the key prefix of this space, ``{tag}:`` (set by KeySpace)
    prefix: str

    def prefix_of(self, job_id: str) -> str:  # (KeySpace's)
        raise NotImplementedError

    def new_event_ids(self, jobs: int, prefixes: Sequence[str] | None = None) -> tuple[str, list[str]]:
        """A random event uuid and the ids of its ``jobs`` jobs (``<event hex>.<k>``, k the job's
        index in the fan-out), from one draw of the generator; ``prefixes``: each job's (its
        queue's tag, on a Redis Cluster), else this space's."""
        h = "%032x" % random.getrandbits(128)  # noqa: UP031 (cheaper than an f-string's format spec)
        variant = _VARIANT[h[16]]
        event_uuid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"  # as _uuid4_text makes it
        if prefixes is not None:
            tail = f"{h[:12]}4{h[13:16]}{variant}{h[17:]}."
            return event_uuid, [f"{prefix}{tail}{k}" for k, prefix in enumerate(prefixes)]
        if jobs == 1:
            return event_uuid, [f"{self.prefix}{h[:12]}4{h[13:16]}{variant}{h[17:]}.0"]
        stem = f"{self.prefix}{h[:12]}4{h[13:16]}{variant}{h[17:]}."
        return event_uuid, [f"{stem}{k}" for k in range(jobs)]

    def new_job_id(self, event_uuid: str | None) -> str:
        """A new job id of the event ``event_uuid`` beside the ids it has (``<event hex>.r<16 random
        hex digits>``: a replayed dead letter's job). A job of no known event (None, or not a uuid)
        gets 32 random hex digits, the form ids had before they named their event."""
        try:
            event_hex = uuid.UUID(event_uuid or "").hex
        except ValueError:
            return f"{self.prefix}{random.getrandbits(128):032x}"
        return f"{self.prefix}{event_hex}.r{random.getrandbits(64):016x}"

    def once_job_ids(
        self, event_uuid: str, listeners: Sequence[str], prefixes: Sequence[str] | None = None
    ) -> dict[str, str]:
        """The ids of the jobs of ``listeners`` for the event ``event_uuid`` of exactly-once
        publishing: the same in every process, whatever order the listeners were registered in
        (``<event hex>.<8 hex digits of uuid5(event:listener)>``). Should two names' 8 digits
        meet, every job of the event takes all 32 instead, so its ids stay distinct."""
        stem = uuid.UUID(event_uuid).hex + "."
        suffixes = [_listener_suffix(event_uuid, name) for name in listeners]
        short = [suffix[:_ONCE_SUFFIX] for suffix in suffixes]
        chosen = short if len(set(short)) == len(short) else suffixes
        heads = prefixes if prefixes is not None else [self.prefix] * len(listeners)
        return {name: head + stem + suffix for name, head, suffix in zip(listeners, heads, chosen, strict=True)}

    def event_of_job(self, job_id: str) -> str | None:
        """The uuid of the event whose job ``job_id`` is, read off the id (no Redis); None for an id
        of another form: made before ids named their event, or chosen by a user through arq."""
        prefix = self.prefix_of(job_id)
        if not job_id.startswith(prefix):
            return None
        found = _EVENT_JOB.fullmatch(job_id, len(prefix))
        if found is None:
            return None
        h = found.group(1)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
