"""How taskemit keeps things in Redis: the key space, the payload codec, the Lua scripts,
and an embedded redis-server for demos and tests. No policy lives here."""

from __future__ import annotations

from .codec import Codec, get_codec
from .redis_server import RedisServer, find_redis_server

__all__ = ("Codec", "RedisServer", "find_redis_server", "get_codec")
