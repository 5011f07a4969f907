"""The ``listener`` decorator: Litestar's shape, but the user's function is kept as it is.

Litestar's ``EventListener`` wraps the function in a handler that logs and swallows every
exception; a durable listener needs the exception to reach the worker so the job fails
visibly. :func:`as_listener` also accepts a Litestar ``EventListener`` and unwraps it.
What a declaration may say is checked in ``declaration.py``; the ``Listener`` keeps what it said.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..attempt import Attempt
from ..errors import ListenerArgumentError, ListenerConfigError
from ..flow import FlowControl
from ..policy import Backoff, RetryPolicy
from .declaration import FLOW_OPTIONS, check_declaration, check_event_ids, check_policy_options, check_shards
from .events import event_path, main_module_name
from .jobflow import declare_flow
from .signature import Parameters

__all__ = ("Listener", "as_listener", "listener")


def _default_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "<unknown>"
    if module == "__main__":
        module = main_module_name()
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}:{qualname}"


class Listener:
    """A function registered for one or more event ids, run by a worker as its own arq job.

    ``event_ids`` and ``fn`` match Litestar's ``EventListener`` so ``Litestar(listeners=[...])``
    accepts it; ``fn`` is the user's own function, unwrapped, so its exceptions propagate.
    A listener of event classes has their paths (``module:QualName``) as ``event_ids``, the
    classes in ``event_classes`` and the parameter that receives the instance in ``event_param``.
    """

    __slots__ = (
        "_accepts_anything",
        "_fitting_shapes",
        "_signature",
        "attempt_param",
        "emitter_param",
        "event_classes",
        "event_ids",
        "event_param",
        "flow",
        "fn",
        "is_async",
        "mode",
        "name",
        "policy_options",
        "queue",
        "reliable",
        "shards",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        event_ids: Iterable[str | type],
        *,
        name: str | None = None,
        queue: str | None = None,
        mode: str = "pool",
        reliable_delivery: bool = True,
        shards: int = 1,
        **options: Any,
    ) -> None:
        check_declaration(fn, name, queue, mode, reliable_delivery)
        self.fn = fn
        #: True for ``async def`` functions (awaited); the others run in a worker thread
        self.is_async = inspect.iscoroutinefunction(fn)
        #: the named queue its jobs go to; None: the ``queue_name`` setting's
        self.queue: str | None = queue
        #: "pool" (one worker runs each job), "broadcast" (every live worker), "singleton"
        #: (one listener among the event's singleton listeners)
        self.mode = mode
        #: False: an event is dropped for this listener when no live worker serves it at emit time
        self.reliable = reliable_delivery
        self.name: str = name or _default_name(fn)
        #: the retry options this listener sets; the rest come from settings (see ``policy``)
        policy_options = {key: value for key, value in options.items() if key not in FLOW_OPTIONS}
        self.policy_options: dict[str, Any] = check_policy_options(self.name, policy_options)
        params = Parameters(fn)
        #: the parameters the worker fills in: the Attempt, and an Emitter for follow-up events
        self.attempt_param: str | None = params.attempt
        self.emitter_param: str | None = params.emitter
        events = check_event_ids(tuple(event_ids), allow_none=bool(params.event_classes))
        if not events:  # @listener() on `def f(event: TodoCreated)`: the annotation names the events
            events = params.event_classes
        self.event_classes: tuple[type, ...] = tuple(e for e in events if isinstance(e, type))
        #: the parameter that receives a typed event's instance (None for string ids)
        self.event_param: str | None = None
        if self.event_classes:
            self.event_param = params.event if params.event_classes else params.first_positional()
            if self.event_param is None:
                raise ListenerConfigError(
                    f"listener {self.name!r} listens to event classes but has no positional parameter for the "
                    "event: def listener(event: TodoCreated)"
                )
        self.event_ids: frozenset[str] = frozenset(e if isinstance(e, str) else event_path(e) for e in events)
        signature = params.signature
        self._signature = signature
        self._fitting_shapes: set[tuple[int, frozenset[str]]] = set()
        kinds = {p.kind for p in signature.parameters.values()} if signature else set()
        self._accepts_anything = signature is None or (
            {
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            }
            <= kinds
            and all(
                p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                for p in signature.parameters.values()
            )
        )
        if self.event_classes:  # it is called with the event alone: say so now, not at the first emit
            self.check_arguments(sorted(self.event_ids)[0], (object(),), {})
        #: how its jobs flow: concurrency, rate, ordering, priority (``taskemit.flow``)
        self.flow: FlowControl = declare_flow(
            self.name, mode, signature, self.typed, {k: v for k, v in options.items() if k in FLOW_OPTIONS}
        )
        #: how many hash tags its jobs spread over on a Redis Cluster (one on one Redis)
        self.shards: int = check_shards(self.name, shards, mode, self.flow)

    @property
    def signature(self) -> inspect.Signature | None:
        """What an emit must fit: its signature without the parameters the worker fills in."""
        return self._signature

    @property
    def typed(self) -> bool:
        """True for a listener of event classes (it receives one event instance)."""
        return bool(self.event_classes)

    @property
    def parameters(self) -> list[tuple[str, int, bool]]:
        """(name, kind, has a default) per parameter an emit must fit: the catalog's description."""
        if self._signature is None:
            anything = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            return [(name, int(kind), False) for name, kind in zip(("args", "kwargs"), anything, strict=True)]
        return [
            (p.name, int(p.kind), p.default is not inspect.Parameter.empty) for p in self._signature.parameters.values()
        ]

    def check_arguments(self, event_id: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        """Raise ListenerArgumentError if ``fn(*args, **kwargs)`` would be a TypeError."""
        if self._accepts_anything:
            return
        # binding depends only on how many positional arguments and which names: remember the
        # shapes that fit, so an emit checks each shape once
        shape = (len(args), frozenset(kwargs))
        if shape in self._fitting_shapes:
            return
        assert self._signature is not None
        try:
            self._signature.bind(*args, **kwargs)
            if len(self._fitting_shapes) < 64:
                self._fitting_shapes.add(shape)
        except TypeError as exc:
            raise ListenerArgumentError(
                f"listener {self.name!r} cannot accept the arguments emitted with event {event_id!r}: "
                f"{exc}. Add **kwargs to the listener or emit only the arguments it takes."
            ) from None

    @property
    def timeout(self) -> float | None:
        """Seconds one attempt may take, if this listener sets it."""
        timeout: float | None = self.policy_options.get("timeout")
        return timeout

    def policy(self, defaults: RetryPolicy) -> RetryPolicy:
        """This listener's retry policy: its own options over ``defaults`` (from settings)."""
        return dataclasses.replace(defaults, **self.policy_options) if self.policy_options else defaults

    async def run(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], attempt: Attempt | None = None) -> Any:
        """Call the function (awaited if async, in a worker thread if sync), with ``attempt`` if it asks."""
        if self.attempt_param is not None and attempt is not None:
            kwargs = {**kwargs, self.attempt_param: attempt}
        if self.is_async:
            return await self.fn(*args, **kwargs)
        result = await asyncio.to_thread(self.fn, *args, **kwargs)
        if inspect.isawaitable(result):  # a sync callable returning a coroutine
            return await result
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Listener):
            return NotImplemented
        return (
            self.name == other.name
            and self.fn is other.fn
            and self.event_ids == other.event_ids
            and self.queue == other.queue
        )

    def __repr__(self) -> str:
        return f"<Listener {self.name} on {sorted(self.event_ids)}>"


def listener(
    *event_ids: str | type,
    name: str | None = None,
    queue: str | None = None,
    mode: str = "pool",
    reliable_delivery: bool = True,
    max_tries: int | None = None,
    backoff: Backoff | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    give_up_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    timeout: float | None = None,
    concurrency: int | None = None,
    rate: str | None = None,
    burst: int | None = None,
    rate_key: str | None = None,
    ordered_by: str | None = None,
    pass_dead: bool = False,
    priority: int = 0,
    shards: int = 1,
) -> Callable[[Callable[..., Any]], Listener]:
    """Register the decorated function as a listener of ``event_ids``.

    Args:
        *event_ids: the events it listens to: string ids, or event classes (dataclasses,
            pydantic models, msgspec Structs; their subclasses' events too). None: the event
            class in the annotation of its first parameter, ``@listener()`` on
            ``async def on_created(event: TodoCreated)``.
        name: its stable name, the arq function name of its jobs (default ``module:qualname``).
        queue: the named queue its jobs go to (default: the ``queue_name`` setting); a worker
            serves the queues of its listeners.
        mode: ``"pool"`` (default): one job per event, run by one worker; ``"broadcast"``: run
            once in every live worker process that has it; ``"singleton"``: exactly one of the
            event's singleton listeners runs each event.
        reliable_delivery: False drops the event for this listener when no live worker
            serves it at emit time (default True: the job waits for a worker).
        max_tries: attempts in all, the first included (default: the ``max_tries`` setting).
        backoff: the wait between attempts, a :class:`~taskemit.Backoff` (default: ``backoff`` setting).
        retry_on: retry only these exception types (default: any ``Exception``).
        give_up_on: never retry these; the job goes to the dead letters at once.
        timeout: seconds one attempt may take (default: the ``job_timeout`` setting).
        concurrency: at most this many of its jobs run at once, across all workers.
        rate: at most this many starts per period, across all workers: ``"100/s"``,
            ``"5000/h"``, ``"10/30s"`` (a token bucket of ``burst`` tokens, default 1).
        burst: the rate's bucket size: starts that may follow each other at once.
        rate_key: the argument whose every value gets the rate of its own (per tenant, say).
        ordered_by: the argument whose value orders its jobs: jobs with the same value run one
            at a time, in emit order (a retrying job holds its value until it completes).
        pass_dead: with ``ordered_by``, a dead-lettered job lets the later jobs of its value go
            on (default False: they wait until it is replayed or purged).
        priority: 0 (the lowest, default) to 100: its due jobs are claimed as if they had been
            due ``priority x priority_step`` seconds earlier.
        shards: on a Redis Cluster, spread its jobs over this many hash tags of its queue (1 to
            64, default 1), so that one hot listener uses several nodes; its workers claim from
            all of them. Its jobs then have no order and no limits across shards: ``shards`` does
            not go with ``concurrency``, ``rate`` or ``ordered_by``. On one Redis it changes nothing.
    """
    ids = check_event_ids(event_ids, allow_none=True)
    given = {
        "max_tries": max_tries,
        "backoff": backoff,
        "retry_on": retry_on,
        "give_up_on": give_up_on,
        "timeout": timeout,
    }
    options: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    flow = {
        "concurrency": concurrency,
        "rate": rate,
        "burst": burst,
        "rate_key": rate_key,
        "ordered_by": ordered_by,
        "pass_dead": pass_dead,
        "priority": priority,
    }
    options.update({key: value for key, value in flow.items() if value is not None})

    def decorate(fn: Callable[..., Any]) -> Listener:
        return Listener(
            fn, ids, name=name, queue=queue, mode=mode, reliable_delivery=reliable_delivery, shards=shards, **options
        )

    return decorate


def _unwrap_litestar(fn: Callable[..., Any]) -> Callable[..., Any]:
    # Litestar stores wrap_in_error_handler(ensure_async_callable(user_fn)); the user's function
    # is in the closure, itself inside an AsyncCallable (``.func``) when it was sync.
    for cell in getattr(fn, "__closure__", None) or ():
        inner: Callable[..., Any] = cell.cell_contents
        if callable(inner):
            original: Callable[..., Any] = getattr(inner, "func", inner)
            return original if type(inner).__name__ == "AsyncCallable" else inner
    return fn


def as_listener(obj: Any) -> Listener:
    """A :class:`Listener` for ``obj``: itself, or the unwrapped form of a Litestar ``EventListener``."""
    if isinstance(obj, Listener):
        return obj
    event_ids = getattr(obj, "event_ids", None)
    fn = getattr(obj, "fn", None)
    if event_ids is None or fn is None:
        raise ListenerConfigError(
            f'{obj!r} is not a listener; decorate the function with @taskemit.listener("event_id")'
        )
    return Listener(_unwrap_litestar(fn), event_ids)
