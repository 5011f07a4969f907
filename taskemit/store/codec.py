"""Job payload encoding: arq's wire format with a JSON (default) or pickle serializer.

A job is what arq's ``serialize_job`` writes (``arq_format.job_dict``): ``{"t": try,
"f": function, "a": args, "k": kwargs, "et": enqueue ms}``. The serializer is shared by emitters and workers through
settings (arq's ``job_serializer`` / ``job_deserializer``), so a stock arq worker started with
taskemit's WorkerSettings decodes the same bytes.

JSON carries the JSON types plus datetime, date, time, UUID, Decimal and bytes (tagged
objects); tuples and sets arrive as lists. Exceptions in results become
:class:`~taskemit.errors.ListenerError` when read back.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any
from uuid import UUID

try:
    from json.encoder import c_make_encoder  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - a Python without the _json accelerator
    c_make_encoder = None

from ..errors import InvalidArgument, JobPayloadError, ListenerError, PayloadEncodeError
from .arq_format import job_dict

__all__ = ("META_KWARG", "Codec", "get_codec", "json_text", "warn_if_pickle")

_TAG = "__taskemit_type__"

#: The keyword under which a job carries taskemit's own metadata (event uuid, ...).
#: The job wrapper removes it before the listener is called.
META_KWARG = "__taskemit__"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, dt.datetime):
        return {_TAG: "datetime", "v": obj.isoformat()}
    if isinstance(obj, dt.date):
        return {_TAG: "date", "v": obj.isoformat()}
    if isinstance(obj, dt.time):
        return {_TAG: "time", "v": obj.isoformat()}
    if isinstance(obj, UUID):
        return {_TAG: "uuid", "v": str(obj)}
    if isinstance(obj, Decimal):
        return {_TAG: "decimal", "v": str(obj)}
    if isinstance(obj, bytes):
        return {_TAG: "bytes", "v": base64.b64encode(obj).decode("ascii")}
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, BaseException):
        kind = type(obj)
        return {_TAG: "exception", "type": f"{kind.__module__}.{kind.__qualname__}", "message": str(obj)}
    raise TypeError(f"Object of type {type(obj).__qualname__} is not JSON serializable")


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "datetime": lambda d: dt.datetime.fromisoformat(d["v"]),
    "date": lambda d: dt.date.fromisoformat(d["v"]),
    "time": lambda d: dt.time.fromisoformat(d["v"]),
    "uuid": lambda d: UUID(d["v"]),
    "decimal": lambda d: Decimal(d["v"]),
    "bytes": lambda d: base64.b64decode(d["v"]),
    "exception": lambda d: ListenerError(d["type"], d["message"]),
}


def _json_object_hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    decode = _DECODERS.get(tag)
    return obj if decode is None else decode(obj)


#: one encoder for every payload: ``json.dumps`` with options builds a new one per call
_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"), ensure_ascii=False)
#: the same encoder's C part, built once (``JSONEncoder.encode`` builds it again per call); no
#: check for circular references (``check_circular=False``): those end in a RecursionError
_C_ENCODE = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _json_default, encode_basestring, None, ":", ",", False, False, True)
)


def json_text(obj: Any) -> str:
    """``obj`` as compact JSON text, with the payloads' tags for datetimes, UUIDs, bytes, ..."""
    if _C_ENCODE is None:  # pragma: no cover - a Python without the _json accelerator
        return _ENCODER.encode(obj)
    return "".join(_C_ENCODE(obj, 0))


def _json_dumps(obj: Any) -> bytes:
    return json_text(obj).encode()


#: the usual metadata: an event's uuid and id, nothing else
_PLAIN_META = ("event", "event_id")


@lru_cache(maxsize=10_000)
def _text_of_name(name: str) -> str:
    """A listener's or an event id's JSON text (the same few names come again and again)."""
    return json_text(name)


def _json_jobs(
    functions: Sequence[str],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    meta: dict[str, Any] | None,
    enqueue_ms: int,
) -> list[bytes]:
    """What ``_json_dumps`` makes of each job dict (``meta`` in the named arguments), with the
    arguments encoded once for all."""
    named = json_text(kwargs)
    if meta is not None:  # {..., "__taskemit__": meta}, as json_text writes a dict's last item
        if tuple(meta) == _PLAIN_META:  # from a template: a UUID string needs no escaping
            meta_text = f'{{"event":"{meta["event"]}","event_id":{_text_of_name(meta["event_id"])}}}'
        else:
            meta_text = json_text(meta)
        named = f'{named[:-1]}{"," if len(named) > 2 else ""}"{META_KWARG}":{meta_text}}}'
    tail = f',"a":{json_text(args) if args else "[]"},"k":{named},"et":{enqueue_ms}}}'
    return [f'{{"t":null,"f":{_text_of_name(function)}{tail}'.encode() for function in functions]


#: one decoder for every payload: ``json.loads`` with an object hook builds a new one per call
_DECODER = json.JSONDecoder(object_hook=_json_object_hook)


def _json_loads(data: bytes | str) -> Any:
    """``json.loads(data, object_hook=...)``, on the shared decoder."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    return _DECODER.decode(data)


@dataclass(frozen=True, slots=True)
class Codec:
    """A named pair of functions that turn job payloads into bytes and back."""

    name: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]
    #: the payloads of jobs that differ only in their listener (None: ``dumps`` per job)
    dumps_jobs: (
        Callable[[Sequence[str], tuple[Any, ...], dict[str, Any], dict[str, Any] | None, int], list[bytes]] | None
    ) = None

    def encode_job(
        self,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        enqueue_ms: int,
        job_try: int | None = None,
    ) -> bytes:
        """arq's job payload for one listener call; raises PayloadEncodeError if it cannot be encoded."""
        try:
            return self.dumps(job_dict(function, args, kwargs, job_try, enqueue_ms))
        except _ENCODE_ERRORS as exc:
            raise self._encode_error((function,), exc) from exc

    def encode_jobs(
        self,
        functions: Sequence[str],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        enqueue_ms: int,
        meta: dict[str, Any] | None = None,
    ) -> list[bytes]:
        """One first-try payload per listener in ``functions``, all of the same call: what
        ``encode_job`` gives each, with the arguments encoded once (an event's fan-out).

        ``meta``: taskemit's metadata, added to the named arguments as ``META_KWARG`` (which
        ``kwargs`` must not have); its ``event``, if any, is a UUID string.
        """
        try:
            if self.dumps_jobs is not None:
                return self.dumps_jobs(functions, args, kwargs, meta, enqueue_ms)
            if meta is not None:
                kwargs = {**kwargs, META_KWARG: meta}
            return [self.dumps(job_dict(f, args, kwargs, None, enqueue_ms)) for f in functions]
        except _ENCODE_ERRORS as exc:
            raise self._encode_error(functions, exc) from exc

    def _encode_error(self, functions: Sequence[str], exc: BaseException) -> PayloadEncodeError:
        who = ("listener " if len(functions) == 1 else "listeners ") + ", ".join(map(repr, functions))
        return PayloadEncodeError(
            f"cannot encode the arguments for {who} with the {self.name!r} serializer: {exc}. "
            "Pass JSON-friendly values (str, int, float, bool, None, "
            'list, dict, datetime, UUID, Decimal, bytes) or set serializer = "pickle".'
        )

    def decode_job(self, data: bytes) -> dict[str, Any]:
        """The job dict from its stored bytes: ``f`` a str, ``a`` a list, ``k`` a dict of names,
        ``t`` and ``et`` an int or None.

        Raises JobPayloadError, and nothing else, when the bytes do not decode to such a job
        (a job in Redis is data from outside: whatever it holds must not stop a worker).
        """
        try:
            job = self.loads(data)
        except Exception as exc:  # JSON, base64, Decimal, recursion, pickle: any of them
            raise JobPayloadError(
                f"the job payload does not decode with the {self.name!r} serializer: {exc!r}"
            ) from None
        if not isinstance(job, dict):
            raise JobPayloadError(f"a job payload decodes to a dict, this one to {type(job).__name__}")
        function, args, kwargs = job.get("f"), job.get("a"), job.get("k")
        if not isinstance(function, str):
            raise JobPayloadError(f"'f' (the listener) is not a name: {_short(function)}")
        if not isinstance(args, (list, tuple)):
            raise JobPayloadError(f"'a' (the arguments) is not a list: {_short(args)}")
        if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
            raise JobPayloadError(f"'k' (the keyword arguments) is not a dict of names: {_short(kwargs)}")
        for field in ("t", "et"):
            value = job.get(field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise JobPayloadError(f"{field!r} is not a count or a time in ms: {_short(value)}")
        return job


#: what a serializer raises for a value it cannot encode
_ENCODE_ERRORS = (TypeError, ValueError, pickle.PicklingError, AttributeError, RecursionError)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


_CODECS = {
    "json": Codec("json", _json_dumps, _json_loads, _json_jobs),
    "pickle": Codec("pickle", pickle.dumps, pickle.loads),
}


def warn_if_pickle(name: str) -> None:
    """Log, at each emitter and worker start, that the pickle serializer trusts whatever is in Redis."""
    if name == "pickle":
        logging.getLogger("taskemit").warning(
            'serializer = "pickle": decoding a job runs whatever code its bytes say, so anyone who can write '
            "to this Redis can run code in every worker; use it only when everything that can write to this "
            'Redis is trusted, else serializer = "json"'
        )


def get_codec(name: str) -> Codec:
    """The codec called ``name`` (``"json"`` or ``"pickle"``)."""
    try:
        return _CODECS[name]
    except KeyError:
        raise InvalidArgument(f"unknown serializer {name!r}; choose one of {sorted(_CODECS)}") from None
