"""Running one attempt of a listener job: call the listener, apply its retry policy.

:class:`ListenerRunner` runs one attempt (from a claimed job's payload, or decoded arguments)
and returns an :class:`~taskemit.engine.outcome.Outcome`: what happened and every record of it,
ready to write. Nothing here writes to Redis: taskemit's worker
(``engine/loop.py``) writes a batch of outcomes per round trip (``engine/batch.py``), the arq
path (``engine/arqpath.py``, for stock arq workers) each outcome as it comes.

Per attempt the runner strips taskemit's metadata keyword, hands the listener an
:class:`~taskemit.Attempt` if it asks, enforces the per-attempt timeout, and decides one of:

- complete: the listener returned;
- retry: it failed and its policy retries it after a delay, with the next attempt's payload;
- dead: it failed for good, or has no tries left; the job goes to the dead letters.

A sync listener runs in a thread, which cannot be stopped: when it overruns its timeout the
runner waits for the thread to return before it reports the timeout, so the job keeps its
lease and is not started again while the first run is still going.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import datetime as dt
import functools
import inspect
import logging
import random
import time
from collections import Counter
from typing import Any

from ..attempt import Attempt, Retry
from ..emit.emitter import Emitter
from ..emit.events import event_path, import_event_class, load_event
from ..emit.listener import Listener
from ..errors import AttemptsExhausted, EventValidationError, JobPayloadError, ListenerTimeout, StateError
from ..policy import RetryPolicy
from ..settings import Settings
from ..state import JobState
from ..store.codec import META_KWARG, Codec
from ..tracing import active as tracing_active
from ..tracing import available as tracing_available
from ..tracing import run_span
from .outcome import JobRun, Outcome, error_summary, short_repr

__all__ = ("ListenerRunner",)

logger = logging.getLogger("taskemit.worker")

#: ctx keys taskemit's worker fills in: its id, and a Counter of the listeners it runs now
CTX_WORKER_ID = "taskemit_worker_id"
CTX_RUNNING = "taskemit_running"
_jitter = random.Random()


class ListenerRunner:
    """Runs attempts of one listener under its policy and timeout."""

    __slots__ = ("_classes", "codec", "emitter", "item", "name", "policy", "settings", "threads", "timeout", "tracing")

    def __init__(
        self,
        item: Listener,
        settings: Settings,
        codec: Codec,
        threads: concurrent.futures.Executor | None = None,
    ) -> None:
        self.item = item
        self.name = item.name
        self.settings = settings
        self.codec = codec
        self.policy: RetryPolicy = item.policy(settings.default_policy)
        self.timeout: float = self.policy.timeout or settings.job_timeout
        #: the pool sync listeners run in (None: asyncio's default executor)
        self.threads = threads
        #: what a parameter annotated ``Emitter`` receives (the worker's emitter; set by the worker)
        self.emitter: Emitter | None = None
        #: a typed event's class path -> the class its data validates as here
        self._classes: dict[str, type] = {}
        #: a span per run, continuing the emitting request's trace (opentelemetry installed)
        self.tracing = settings.tracing and tracing_available()

    def new_run(
        self,
        job_id: str,
        job_try: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        worker: str,
        enqueue_ms: int | None,
    ) -> JobRun:
        """A JobRun for a job's decoded arguments; takes taskemit's metadata out of ``kwargs``."""
        meta = kwargs.pop(META_KWARG, None) or {}
        if not isinstance(meta, dict):
            meta = {}
        attempt = Attempt(
            event_uuid=meta.get("event"),
            event_id=meta.get("event_id"),
            listener=self.name,
            job_id=job_id,
            number=job_try,
            max_tries=self.policy.max_tries,
            enqueued_at=dt.datetime.fromtimestamp(enqueue_ms / 1000, dt.UTC) if enqueue_ms else None,
        )
        return JobRun(args, kwargs, attempt, meta, worker, enqueue_ms)

    def run_of(self, job_id: str, job_try: int, payload: bytes, worker: str) -> JobRun:
        """A JobRun for a claimed job's payload; JobPayloadError when it does not decode to an arq job."""
        job = self.codec.decode_job(payload)
        job_try = max(job_try, job.get("t") or 0)  # arq's rule: the payload's try when it is ahead
        return self.new_run(job_id, job_try, tuple(job["a"]), dict(job["k"]), worker, job.get("et"))

    async def run_payload(
        self, job_id: str, job_try: int, payload: bytes, worker: str, running: Counter[str] | None = None
    ) -> Outcome:
        """Run a claimed job from its payload; one that cannot be decoded is dead, with its bytes kept."""
        try:
            run = self.run_of(job_id, job_try, payload, worker)
        except JobPayloadError as exc:  # what is in Redis never stops the worker: the job is dead-lettered
            run = self.new_run(job_id, job_try, (), {}, worker, None)
            error = JobPayloadError(f"job {job_id} has a payload that cannot be run: {exc}")
            outcome = self.dead(run, error, "undecodable payload", ran=False)
            outcome.next_payload = payload
            return outcome
        return await self.attempt(run, running)

    def expired(self, job_id: str, worker: str) -> Outcome:
        """A job whose payload expired in the queue before a worker took it."""
        run = self.new_run(job_id, 1, (), {}, worker, None)
        error = JobPayloadError(f"job {job_id} expired in the queue before a worker took it (job_expiry)")
        return self.dead(run, error, "expired", ran=False)

    async def attempt(self, run: JobRun, running: Counter[str] | None = None) -> Outcome:
        """Run the listener once for ``run``; never raises what the listener raises."""
        attempt = run.attempt
        if attempt.number > self.policy.max_tries:
            exhausted = AttemptsExhausted(
                f"listener {self.name!r} job {attempt.job_id} has no tries left: attempt {attempt.number} of "
                f"{self.policy.max_tries} (earlier attempts were cut short by a crash or shutdown)"
            )
            return self.dead(run, exhausted, "attempts exhausted", ran=False)
        if self.item.typed:
            try:
                event = self._event(run)
            except EventValidationError as exc:  # schema drift between emitter and worker: replay after a fix
                return self.dead(run, exc, "event does not validate", ran=True)
            run = run.with_event(event)
        if running is not None:
            running[self.name] += 1
        try:
            if self.tracing and tracing_active():
                span = {"event_uuid": attempt.event_uuid, "job_id": attempt.job_id, "attempt": attempt.number}
                with run_span(self.name, run.meta.get("trace"), span):
                    result = await self._call(run)
            else:
                result = await self._call(run)
        except asyncio.CancelledError:
            raise  # the worker is stopping, or the job was aborted: not an attempt that counts
        except BaseException as exc:  # SystemExit and the like too: a listener never stops the worker
            return self._failed(run, exc)
        finally:
            if running is not None:
                running[self.name] -= 1
        # a job's attempt history is kept once it has one: a first try that succeeds (the common
        # case) is recorded on the event record only
        history = attempt.number > 1 or "replay_of" in run.meta
        return Outcome(
            JobState.COMPLETE,
            run,
            run.attempt_json(JobState.COMPLETE) if history else "",
            run.outcome_json(JobState.COMPLETE, result=short_repr(result)),
            ("succeeded",),
            time.time() - run.started,
            result=result,
        )

    def _event(self, run: JobRun) -> Any:
        """A typed event's data as an instance of its class: the concrete one if it can be imported
        here and is one of the listener's, else the listener's own class."""
        path = run.attempt.event_id or ""
        cls = self._classes.get(path)
        if cls is None:
            listened = self.item.event_classes
            cls = next((c for c in listened if event_path(c) == path), None)
            if cls is None:
                found = import_event_class(path)
                cls = found if found is not None and issubclass(found, listened) else listened[0]
            self._classes[path] = cls
        if len(run.args) != 1:
            raise EventValidationError(f"a job of typed event {path} carries {len(run.args)} arguments, not 1")
        return load_event(cls, run.args[0])

    async def _call(self, run: JobRun) -> Any:
        item = self.item
        kwargs = run.kwargs
        if item.attempt_param is not None:
            kwargs = {**kwargs, item.attempt_param: run.attempt}
        if item.emitter_param is not None:
            if self.emitter is None:
                raise StateError(
                    f"listener {self.name!r} asks for an Emitter, which taskemit's worker provides "
                    "(`taskemit worker`; a stock arq worker does not)"
                )
            kwargs = {**kwargs, item.emitter_param: self.emitter.caused_by(run.attempt.event_uuid)}
        if item.is_async:
            deadline = asyncio.timeout(self.timeout)
            try:
                async with deadline:
                    return await item.fn(*run.call_args, **kwargs)
            except TimeoutError as exc:
                if not deadline.expired():
                    raise  # the listener's own TimeoutError, not ours
                raise self._timed_out() from exc
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, item.fn, *run.call_args, **kwargs)
        thread = loop.run_in_executor(self.threads, call)
        done, _ = await asyncio.wait((thread,), timeout=self.timeout)
        if not done:
            logger.warning(
                "listener %s job %s overran its %gs timeout; its thread is still running, and the job "
                "keeps its lease until the thread returns",
                self.name,
                run.attempt.job_id,
                self.timeout,
            )
            await asyncio.wait((thread,))
            if not thread.cancelled():
                thread.exception()  # retrieved: what it raised after its timeout is not reported
            raise self._timed_out()
        result = thread.result()
        if inspect.isawaitable(result):  # a sync callable returning a coroutine
            async with asyncio.timeout(self.timeout):
                return await result
        return result

    def aborted(self, job_id: str, job_try: int, payload: bytes, worker: str, started: bool) -> Outcome:
        """The outcome of a job stopped on request (``taskemit abort``, arq's ``Job.abort()``)."""
        try:
            run = self.run_of(job_id, max(job_try, 1), payload, worker)
        except JobPayloadError:
            run = self.new_run(job_id, max(job_try, 1), (), {}, worker, None)
        logger.info("listener %s job %s aborted on request", self.name, run.attempt.job_id)
        return Outcome(
            JobState.ABORTED,
            run,
            "",
            run.outcome_json(JobState.ABORTED, reason="aborted on request", started_before=started),
            (),
            None,
            error=asyncio.CancelledError("aborted on request"),
        )

    def _timed_out(self) -> ListenerTimeout:
        return ListenerTimeout(f"listener {self.name!r} timed out after {self.timeout:g}s")

    def _failed(self, run: JobRun, error: BaseException) -> Outcome:
        """A retry or a dead letter, by the policy."""
        attempt = run.attempt
        policy = self.policy
        # a listener's own Retry asks for a retry whatever retry_on / give_up_on say
        retry = (
            attempt.number < policy.max_tries
            if isinstance(error, Retry)
            else policy.should_retry(error, attempt.number)
        )
        if not retry:
            return self.dead(run, error, _death_reason(policy, error, attempt.number), ran=True)
        summary = error_summary(error)
        delay = (
            error.after
            if isinstance(error, Retry) and error.after is not None
            else policy.delay_for(attempt.number, _jitter)
        )
        next_at = time.time() + delay
        logger.info(
            "listener %s job %s attempt %d/%d failed (%s); retrying in %.2fs",
            attempt.listener,
            attempt.job_id,
            attempt.number,
            policy.max_tries,
            summary["type"],
            delay,
        )
        return Outcome(
            JobState.RETRYING,
            run,
            run.attempt_json(JobState.FAILED, error=summary, next_attempt_at=next_at),
            run.outcome_json(JobState.RETRYING, error=summary, next_attempt_at=next_at),
            ("failed", "retried"),
            time.time() - run.started,
            error=error,
            next_payload=run.payload(self.codec, attempt.number + 1),
            ttl_ms=int((delay + self.settings.job_expiry) * 1000),
            run_at_ms=int(next_at * 1000),
            summary=summary,
        )

    def dead(self, run: JobRun, error: BaseException, reason: str, *, ran: bool) -> Outcome:
        attempt = run.attempt
        summary = error_summary(error)
        logger.warning(
            "listener %s job %s is dead after attempt %d/%d: %s (%s: %s)",
            attempt.listener,
            attempt.job_id,
            attempt.number,
            attempt.max_tries,
            reason,
            summary["type"],
            summary["message"],
        )
        return Outcome(
            JobState.FAILED,
            run,
            run.attempt_json(JobState.FAILED, error=summary) if ran else "",
            run.outcome_json(JobState.FAILED, error=summary, reason=reason, dead_letter=True),
            ("failed", "dead") if ran else ("dead",),
            time.time() - run.started if ran else None,
            error=error,
            next_payload=run.payload(self.codec),
            reason=reason,
            summary=summary,
        )


def _death_reason(policy: RetryPolicy, error: BaseException, attempt: int) -> str:
    if not isinstance(error, Retry) and isinstance(error, policy.give_up_on):
        return "gave up on " + type(error).__qualname__
    if attempt >= policy.max_tries:
        return "attempts exhausted"
    return f"{type(error).__qualname__} is not in retry_on"
