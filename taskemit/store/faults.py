"""What a Redis error means for the call that got it: every reply has a defined outcome.

An error reply either says "not done yet" (the server is out of memory, loading, busy with a
script, short of replicas, or no longer the primary) or proves the call itself bad (a key of the
wrong type, a script error). Only the second may ever drop, park or dead-letter anything; the
first is backed off and tried again, after reconnecting when the node changed role. A lost
connection or a timeout is different again: the call may or may not have run, so what is sent
again must be idempotent (events by uuid, finishes by their claim's token).

Pure: no I/O. redis-py turns a top-level error reply into an exception it raises; an error
inside a script's reply array (``redis.pcall``) arrives as an exception object in the array.
Both are classified here, as is the text of a Lua error that wraps another (Redis 6 reports a
``redis.call`` failure as ``ERR Error running script ... -OOM ...``).
"""

from __future__ import annotations

import enum
import re

from redis.exceptions import (
    AskError,
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ("Fault", "NotPrimary", "RedisNotReady", "fault_of", "is_transient")


class Fault(enum.Enum):
    """What an error means for the call that got it."""

    #: the connection was lost or timed out: the call may or may not have run
    LOST = "lost"
    #: the server did not run it and says so (OOM, LOADING, BUSY, TRYAGAIN, NOREPLICAS, MISCONF,
    #: CLUSTERDOWN): back off, then send it again
    BUSY = "busy"
    #: the node is not (or no longer) the primary (READONLY, MASTERDOWN, MOVED, ASK): drop the
    #: connections to it, reconnect (to the new primary), send it again
    ROLE = "role"
    #: the server lost its script cache (a restart, SCRIPT FLUSH): load the script, send it again
    NOSCRIPT = "noscript"
    #: the reply proves the call bad (WRONGTYPE, a script error): sending it again cannot help
    BAD = "bad"


#: error codes (the first word of an error reply) and what they mean
_CODES: dict[str, Fault] = {
    "OOM": Fault.BUSY,
    "LOADING": Fault.BUSY,
    "BUSY": Fault.BUSY,
    "TRYAGAIN": Fault.BUSY,
    "NOREPLICAS": Fault.BUSY,
    "MISCONF": Fault.BUSY,
    "CLUSTERDOWN": Fault.BUSY,
    "READONLY": Fault.ROLE,
    "MASTERDOWN": Fault.ROLE,
    "MOVED": Fault.ROLE,
    "ASK": Fault.ROLE,
    "NOSCRIPT": Fault.NOSCRIPT,
}
#: a code quoted inside a Lua error's text: "-OOM command not allowed ..." (Redis 6), or the
#: code first and the script's place after it (Redis 7: "OOM command not allowed ... script: ...")
_WRAPPED = re.compile(r"(?:^|[\s:-])-?(" + "|".join(_CODES) + r")\s")


class RedisNotReady(Exception):
    """Redis answered a call with "not done yet" (see :class:`Fault`); carries the reply.

    Raised by taskemit's own batch code for an error reply that is not the caller's fault, so
    the callers' outage handling (back off, keep what is unwritten, retry) covers it. Never
    reaches users: it is handled like a lost connection.
    """

    def __init__(self, reply: BaseException, fault: Fault) -> None:
        self.reply = reply
        self.fault = fault
        super().__init__(f"{fault.value}: {reply}")


class NotPrimary(RedisConnectionError):
    """The server answered READONLY: it is no longer the primary. Its connection is closed."""


def fault_of(error: BaseException) -> Fault:
    """What ``error`` (raised by redis-py, or an error object in a reply) means."""
    if isinstance(error, RedisNotReady):
        return error.fault
    if isinstance(error, NotPrimary):
        return Fault.ROLE
    # redis-py takes the code off the message of the errors it has a class for
    if isinstance(error, NoScriptError):
        return Fault.NOSCRIPT
    if isinstance(error, (ReadOnlyError, AskError, MasterDownError)):  # MovedError is an AskError
        return Fault.ROLE
    if isinstance(error, (OutOfMemoryError, TryAgainError, ClusterDownError)):
        return Fault.BUSY
    if isinstance(error, ResponseError):
        return _fault_of_text(str(error))
    if isinstance(error, (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)):
        # redis-py raises ConnectionError for LOADING (BusyLoadingError) and for a Sentinel
        # primary that turned replica: both mean "reconnect and send again"
        return Fault.LOST
    return Fault.BAD


def _fault_of_text(message: str) -> Fault:
    code = message.split(" ", 1)[0]
    fault = _CODES.get(code)
    if fault is not None:
        return fault
    wrapped = _WRAPPED.search(message)
    return _CODES[wrapped.group(1)] if wrapped is not None else Fault.BAD


def is_transient(error: BaseException) -> bool:
    """True when sending the call again (after a backoff or a reconnect) may succeed."""
    return fault_of(error) is not Fault.BAD
