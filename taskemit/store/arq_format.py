"""arq's job format and key names, as taskemit's own constants: no arq needed to write or read them.

taskemit's jobs are arq jobs, so that a stock ``arq`` worker runs them and arq's ``Job`` API
reads them (both with the ``arq`` extra). Everything else works from this module alone:

- a job's payload is the serializer's bytes of ``{"t": try, "f": function, "a": args,
  "k": kwargs, "et": enqueue time (ms)}`` (arq's ``serialize_job``);
- a finished job's result adds ``"s"`` (success), ``"r"`` (the return value, or the exception),
  ``"st"`` and ``"ft"`` (start and finish, ms), ``"q"`` (the queue) and ``"id"`` (the job id)
  (arq's ``serialize_result``);
- the keys of a job are ``arq:job:<id>`` (payload), ``arq:in-progress:<id>`` (a worker runs
  it), ``arq:result:<id>`` and ``arq:retry:<id>`` (the try counter); ``Job.abort()`` adds the job
  id to the sorted set ``arq:abort``; a worker's health check is ``<queue>:health-check``.

tests/test_arq_format.py checks all of it against arq's own code when arq is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import JobPayloadError

__all__ = (
    "ABORT_JOBS_SS",
    "HEALTH_CHECK_SUFFIX",
    "IN_PROGRESS_KEY_PREFIX",
    "JOB_KEY_PREFIX",
    "RESULT_KEY_PREFIX",
    "RETRY_KEY_PREFIX",
    "ArqResult",
    "decode_result",
    "job_dict",
    "result_dict",
)

JOB_KEY_PREFIX = "arq:job:"
IN_PROGRESS_KEY_PREFIX = "arq:in-progress:"
RESULT_KEY_PREFIX = "arq:result:"
RETRY_KEY_PREFIX = "arq:retry:"
#: the sorted set of abort requests (job id -> when, ms), one for every queue and namespace
ABORT_JOBS_SS = "arq:abort"
HEALTH_CHECK_SUFFIX = ":health-check"


def job_dict(
    function: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], job_try: int | None, enqueue_ms: int
) -> dict[str, Any]:
    """What a job payload is the serialized form of."""
    return {"t": job_try, "f": function, "a": args, "k": kwargs, "et": enqueue_ms}


def result_dict(
    function: str,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    job_try: int,
    enqueue_ms: int,
    *,
    success: bool,
    result: Any,
    start_ms: int,
    finish_ms: int,
    queue: str,
    job_id: str,
) -> dict[str, Any]:
    """What a finished job's result (``arq:result:<id>``) is the serialized form of: the job's own
    fields and the outcome (``result`` is the exception when ``success`` is false)."""
    return {
        **job_dict(function, args, kwargs, job_try, enqueue_ms),
        "s": success,
        "r": result,
        "st": start_ms,
        "ft": finish_ms,
        "q": queue,
        "id": job_id,
    }


@dataclass(frozen=True, slots=True)
class ArqResult:
    """A finished job's result as arq stores it; times in epoch seconds."""

    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    job_try: int
    enqueue_time: float
    success: bool
    #: the return value, or the exception (as the serializer gives it back)
    result: Any
    start_time: float
    finish_time: float
    queue_name: str
    job_id: str


def decode_result(data: bytes, loads: Callable[[bytes], Any]) -> ArqResult:
    """The result stored as ``data`` (by a stock arq worker or by taskemit), decoded by ``loads``
    (the serializer's); JobPayloadError when it is not one."""
    try:
        d = loads(data)
        return ArqResult(
            function=d["f"],
            args=tuple(d["a"]),
            kwargs=d["k"],
            job_try=d["t"],
            enqueue_time=d["et"] / 1000,
            success=d["s"],
            result=d["r"],
            start_time=d["st"] / 1000,
            finish_time=d["ft"] / 1000,
            # arq's older results have neither
            queue_name=d.get("q", "<unknown>"),
            job_id=d.get("id", "<unknown>"),
        )
    except Exception as exc:  # whatever the bytes hold: the serializer's error, a missing or odd field
        raise JobPayloadError(f"not an arq job result: {exc!r}") from None
