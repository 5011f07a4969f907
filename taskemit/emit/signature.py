"""What a listener's signature says: which parameters the worker fills in (an ``Attempt``, an
``Emitter`` for follow-up events), which one takes a typed event, and what an emit must fit."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from ..attempt import Attempt
from .events import is_event_class

__all__ = ("Parameters",)


def _names(annotation: Any, name: str) -> bool:
    """Whether ``annotation`` is taskemit's class ``name`` (or, unresolved, its text)."""
    if isinstance(annotation, str):
        return annotation.rsplit(".", 1)[-1] == name
    return isinstance(annotation, type) and annotation.__name__ == name and annotation.__module__.startswith("taskemit")


def _event_classes(annotation: Any) -> tuple[type, ...]:
    """The event classes an annotation names: one class, or a union of them."""
    if is_event_class(annotation):
        return (annotation,)
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    return tuple(member for member in members if is_event_class(member))


class Parameters:
    """What a listener's signature says: which parameters the worker injects, which takes the event."""

    __slots__ = ("attempt", "emitter", "event", "event_classes", "signature")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.attempt: str | None = None
        self.emitter: str | None = None
        self.event: str | None = None
        self.event_classes: tuple[type, ...] = ()
        try:
            signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have no signature: accept anything
            signature = None
        if signature is None:
            self.signature = None
            return
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable annotations: fall back to their text
            hints = {}
        rest = []
        for param in signature.parameters.values():
            annotation = hints.get(param.name, param.annotation)
            if self.attempt is None and (annotation is Attempt or _names(annotation, "Attempt")):
                self.attempt = param.name
            elif self.emitter is None and _names(annotation, "Emitter"):
                self.emitter = param.name
            else:
                rest.append(param)
                if self.event is None and param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                    classes = _event_classes(annotation)
                    if classes:
                        self.event, self.event_classes = param.name, classes
        # what an emit must fit: the signature without the parameters the worker fills in
        self.signature = signature.replace(parameters=rest)

    def first_positional(self) -> str | None:
        for param in self.signature.parameters.values() if self.signature else ():
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD, param.VAR_POSITIONAL):
                return param.name
        return None
