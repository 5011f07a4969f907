"""Checks on a listener's declaration, made when the function is decorated: its name, queue,
mode, event ids or classes, retry options and shards. Each error says what the user wrote wrong
and how to write it, before any worker or emit meets the listener.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from ..errors import ListenerConfigError
from ..flow import FlowControl
from ..policy import RetryPolicy
from ..store.keys import MAX_SHARDS
from .events import is_event_class

__all__ = (
    "FLOW_OPTIONS",
    "MODES",
    "check_declaration",
    "check_event_ids",
    "check_policy_options",
    "check_shards",
)

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]+")

#: the options of ``listener()`` that are flow control (``taskemit.flow.FlowControl``)
FLOW_OPTIONS = frozenset(("concurrency", "rate", "burst", "rate_key", "ordered_by", "pass_dead", "priority"))

MODES = ("pool", "broadcast", "singleton")


def check_declaration(
    fn: Callable[..., Any], name: str | None, queue: str | None, mode: str, reliable_delivery: bool
) -> None:
    """ListenerConfigError unless ``fn`` and these ``Listener`` arguments can make a listener."""
    if not callable(fn):
        raise ListenerConfigError(f"a listener must be a function, got {fn!r}")
    if name is not None and (not isinstance(name, str) or not name or "\n" in name or "@" in name):
        raise ListenerConfigError(f"listener name must be a non-empty string on one line without '@', got {name!r}")
    if queue is not None and (not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue)):
        raise ListenerConfigError(
            f"listener queue must be a queue name of letters, digits, '_', '.', ':' or '-', got {queue!r}"
        )
    if mode not in MODES:
        raise ListenerConfigError(f"listener mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not isinstance(reliable_delivery, bool):
        raise ListenerConfigError(f"reliable_delivery must be True or False, got {reliable_delivery!r}")


def check_event_ids(event_ids: tuple[Any, ...], *, allow_none: bool = False) -> tuple[str | type, ...]:
    """Event ids (strings) or event classes, not both; none only where annotations may name them."""
    if not event_ids and not allow_none:
        raise ListenerConfigError(
            'listener() needs at least one event id, e.g. @listener("user_created"), or an event class: '
            "@listener(TodoCreated), or @listener() on a function whose first parameter is annotated with one"
        )
    for event_id in event_ids:
        if is_event_class(event_id):
            continue
        if callable(event_id) and not isinstance(event_id, str):
            raise ListenerConfigError(
                f"listener() was applied to {event_id!r} directly; call it with the event ids "
                'first: @listener("user_created"), or @listener() for an event class in the annotation'
            )
        if not isinstance(event_id, str) or not event_id:
            raise ListenerConfigError(
                "events must be non-empty string ids or event classes (a dataclass, pydantic model or "
                f"msgspec Struct), got {event_id!r}"
            )
    kinds = {isinstance(event_id, str) for event_id in event_ids}
    if len(kinds) > 1:
        raise ListenerConfigError(
            f"listener() got both string event ids and event classes ({event_ids!r}); a listener takes "
            "either keyword arguments (string ids) or one event instance (classes): make two listeners"
        )
    return tuple(dict.fromkeys(event_ids))


def check_policy_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The retry options listener ``name`` sets, normalised; ListenerConfigError if one is unknown or wrong."""
    unknown = sorted(set(options) - {"max_tries", "backoff", "retry_on", "give_up_on", "timeout"})
    if unknown:
        raise ListenerConfigError(f"listener {name!r}: unknown option(s) {unknown}")
    try:  # validate now, at decoration, against the built-in defaults
        policy = dataclasses.replace(RetryPolicy(), **options)
    except (TypeError, ValueError) as exc:
        raise ListenerConfigError(f"listener {name!r}: {exc}") from None
    # keep the normalised values (a bare exception class becomes a tuple, ...)
    return {key: getattr(policy, key) for key in options}


def check_shards(name: str, shards: Any, mode: str, flow: FlowControl) -> int:
    """``shards`` if listener ``name`` can have it; else ListenerConfigError saying why."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ListenerConfigError(
            f"listener {name!r}: shards must be a whole number from 1 to {MAX_SHARDS}, got {shards!r}"
        )
    if shards > 1 and mode == "broadcast":
        raise ListenerConfigError(
            f"listener {name!r}: a broadcast listener's jobs go to each worker's own queue; shards applies to "
            "pool and singleton listeners"
        )
    limits = [option for option, value in (("concurrency", flow.concurrency), ("rate", flow.rate),
              ("ordered_by", flow.ordered_by)) if value is not None]  # fmt: skip
    if shards > 1 and limits:
        raise ListenerConfigError(
            f"listener {name!r}: shards={shards} spreads its jobs over {shards} shards, each claimed on its own, "
            f"so {' and '.join(limits)} could not hold across them; use shards=1 for a listener with limits"
        )
    return shards
