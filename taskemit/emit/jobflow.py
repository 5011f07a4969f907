"""Flow control at decoration and at emit: a listener's declaration checked against its
signature, and what each emitted job carries for the claim.

``declare_flow`` checks ``@listener(..., concurrency=, rate=, burst=, rate_key=, ordered_by=,
pass_dead=, priority=)``. At emit, ``job_flow`` reads a job's ordering and rate keys from the
emitted arguments (or takes ``emit(..., ordering_key=...)``) and its priority (the listener's,
or ``emit(..., priority=...)``), and ``flow_argument`` turns that into ``emit.lua``'s argument:
the keys of the listener's flow records and of the job's group (``KeySpace``), and the record
itself (``taskemit.flow.JobFlow``). A job without any of it carries nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Protocol

from ..errors import InvalidArgument, ListenerArgumentError, ListenerConfigError
from ..flow import FlowControl, JobFlow, check_priority, key_text
from ..store.keys import KeySpace

__all__ = ("Flowing", "check_emit_options", "declare_flow", "flow_argument", "job_flow")


class Flowing(Protocol):
    """What flow control needs of a listener: a local ``Listener`` or a ``RemoteListener``."""

    name: str
    flow: FlowControl

    @property
    def typed(self) -> bool: ...
    @property
    def signature(self) -> inspect.Signature | None: ...


def declare_flow(
    name: str, mode: str, signature: inspect.Signature | None, typed: bool, options: Mapping[str, Any]
) -> FlowControl:
    """The flow control ``@listener(...)`` declares for listener ``name``; ListenerConfigError
    naming the listener and the option otherwise."""
    try:
        flow = FlowControl.declare(**options)
    except ValueError as exc:
        raise ListenerConfigError(f"listener {name!r}: {exc}") from None
    if flow.limits and mode == "broadcast":
        raise ListenerConfigError(
            f"listener {name!r}: a broadcast listener runs once in every worker; flow control (concurrency, rate, "
            "ordered_by, priority) applies to pool and singleton listeners"
        )
    if signature is not None and not typed:
        params = signature.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for option, argument in (("ordered_by", flow.ordered_by), ("rate_key", flow.rate_key)):
            if argument is not None and argument not in params and not takes_any:
                raise ListenerConfigError(
                    f"listener {name!r}: {option}={argument!r} names no parameter of it; name one of "
                    f"{', '.join(params) or '(none)'}"
                )
    return flow


def check_emit_options(event_id: str, priority: Any, ordering_key: Any) -> tuple[int | None, str | None]:
    """``emit(..., priority=, ordering_key=)`` checked: InvalidArgument naming the event otherwise."""
    try:
        return (
            None if priority is None else check_priority(priority, "priority"),
            None if ordering_key is None else key_text(ordering_key, "ordering_key"),
        )
    except ValueError as exc:
        raise InvalidArgument(
            f"emit of {event_id!r}: {exc} (priority and ordering_key are emit's own options, not event arguments)"
        ) from None


def _argument(item: Flowing, option: str, argument: str, event_id: str, args: tuple[Any, ...], kwargs: Any) -> Any:
    """The value of ``argument`` in what was emitted to ``item``."""
    if item.typed:  # the event's data is its one argument
        data = args[0] if args else None
        if isinstance(data, dict) and argument in data:
            return data[argument]
    elif argument in kwargs:
        return kwargs[argument]
    elif item.signature is not None:
        try:
            bound = item.signature.bind(*args, **kwargs)
        except TypeError:
            bound = None
        if bound is not None:
            bound.apply_defaults()
            if argument in bound.arguments:
                return bound.arguments[argument]
    hint = ", or emit(..., ordering_key=...)" if option == "ordered_by" else ""
    raise ListenerArgumentError(
        f"listener {item.name!r} has {option}={argument!r}, but the event {event_id!r} carries no {argument!r} "
        f"argument; emit one{hint}"
    )


def _key(item: Flowing, option: str, argument: str, event_id: str, args: tuple[Any, ...], kwargs: Any) -> str:
    value = _argument(item, option, argument, event_id, args, kwargs)
    try:
        return key_text(value, f"the {argument!r} argument ({option} of listener {item.name!r})")
    except ValueError as exc:
        raise InvalidArgument(f"event {event_id!r}: {exc}") from None


def job_flow(
    item: Flowing,
    event_id: str,
    args: tuple[Any, ...],
    kwargs: Any,
    priority: int | None,
    ordering_key: str | None,
    priority_step_ms: int,
) -> JobFlow:
    """What a job of ``item`` carries for the claim, for an emit of ``args``/``kwargs`` with the
    emit's own ``priority`` and ``ordering_key`` (None: the listener's)."""
    flow = item.flow
    boost = (flow.priority if priority is None else priority) * priority_step_ms
    rate_key = ""
    if flow.rate_key is not None and flow.rate is not None:
        rate_key = _key(item, "rate_key", flow.rate_key, event_id, args, kwargs)
    ordered = "o" if flow.pass_dead else "O"
    if ordering_key is not None:
        return JobFlow(boost, ordered, ordering_key, rate_key)
    if flow.ordered_by is not None:
        return JobFlow(boost, ordered, _key(item, "ordered_by", flow.ordered_by, event_id, args, kwargs), rate_key)
    if rate_key:
        return JobFlow(boost, "r", rate_key, rate_key)
    return JobFlow(boost)


def flow_argument(space: KeySpace, listener: str, job: JobFlow) -> str:
    """``emit.lua``'s flow argument of a job: '' when it carries nothing."""
    if job.plain:
        return ""
    group = space.flow_group(listener, job.group) if job.mode else ""
    return f"{space.flow_jobs(listener)}\n{space.flow_keys(listener)}\n{group}\n{job.text()}"
