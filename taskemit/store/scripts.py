"""The Lua scripts taskemit runs in Redis: one ``.lua`` file each under ``store/lua/``, called by SHA."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files
from typing import Any

from redis.exceptions import NoScriptError

__all__ = ("LuaScript", "script")


def _read(name: str) -> str:
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


class LuaScript:
    """One script from ``taskemit/store/lua/<name>.lua``: EVALSHA, loading it when Redis lacks it.

    ``libraries`` are files of shared local functions (``lib_*.lua``) put in front of it, and
    in front of all, ``prelude.lua`` (the globals the scripts read, as locals).
    """

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, libraries: tuple[str, ...] = ()) -> None:
        self.name = name
        self.source = "\n".join([_read("prelude"), *(_read(lib) for lib in libraries), _read(name)])
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)

    def command(self, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
        """The EVALSHA command for ``store.wire.send_batch``; the caller loads the script first."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def queue(self, pipe: Any, keys: list[str], args: list[Any]) -> None:
        """Add a call to a pipeline; the caller loads the script first (``load``). (As a plain
        command: redis-py's cluster pipeline refuses its ``evalsha`` method, not the command.)"""
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    async def load(self, client: Any) -> None:
        await client.script_load(self.source)


@cache
def script(name: str, *libraries: str) -> LuaScript:
    """The shared :class:`LuaScript` for ``taskemit/store/lua/<name>.lua`` (after ``libraries``)."""
    return LuaScript(name, libraries)
