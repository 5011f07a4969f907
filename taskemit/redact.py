"""Redaction: what taskemit shows of listener arguments, with secrets masked.

``redact(value, keys)`` returns a copy of ``value`` in which the value of every dict key that
contains one of ``keys`` (case-insensitive: ``password``, ``api_token``, ``Authorization``...)
is replaced by ``"[redacted]"``, at any depth. The CLI shows dead letters' arguments through it
(the ``redact_keys`` setting); the data in Redis is left as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ("MASK", "redact")

MASK = "[redacted]"


def redact(value: Any, keys: Iterable[str]) -> Any:
    """``value`` with the values of secret-looking keys masked (see the module)."""
    needles = tuple(key.lower() for key in keys if key)
    if not needles:
        return value
    return _redact(value, needles)


def _redact(value: Any, needles: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {
            key: MASK if isinstance(key, str) and any(n in key.lower() for n in needles) else _redact(item, needles)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(item, needles) for item in value)
    return value
