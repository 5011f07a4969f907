"""A TCP proxy the tests control, between taskemit and a redis-server, to make network faults.

It runs its own event loop in a thread, so it keeps forwarding while a test's loop is busy and
for other processes (workers started as subprocesses connect to ``proxy.port``).

- ``pause()``: forward nothing either way, but keep every connection open and accept new ones: a
  partitioned peer, or a half-open connection (writes succeed, no reply ever comes);
- ``reset()``: abort every open connection with a RST: replies in flight are lost;
- ``lose_next_reply()``: forward the next request, then reset that connection before its reply
  reaches the client: the command ran, the client never hears of it;
- ``retarget(port)``: new connections go to another server (a DNS name or a virtual IP moving to a
  new primary); open connections stay where they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Any

__all__ = ("TcpProxy",)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a RST, not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.lose_reply = False

    def abort(self) -> None:
        _abort(self.client)
        _abort(self.server)


class TcpProxy:
    """``TcpProxy(target_port).start()`` listens on 127.0.0.1:``port`` and forwards to the target."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._flowing: asyncio.Event | None = None
        self._lose_next = False
        #: connections made through the proxy so far
        self.connections = 0

    # -- control (from any thread) ---------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def pause(self) -> None:
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        self._call(self._set_flowing(True))

    def reset(self) -> int:
        """Abort every open connection; how many."""
        return int(self._call(self._reset()))

    def retarget(self, port: int) -> None:
        self.target_port = port

    def lose_next_reply(self) -> None:
        self._lose_next = True

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- the proxy (on its own loop) -------------------------------------------------------------

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset()

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _reset(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        self._links.clear()
        return len(links)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        await self._flowing.wait()  # a paused proxy accepts, but connects nowhere
        try:
            server_reader, server_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            _abort(client_writer)
            return
        link = _Link(client_writer, server_writer)
        self._links.add(link)
        self.connections += 1
        try:
            await asyncio.gather(
                self._pump(link, client_reader, server_writer, to_server=True),
                self._pump(link, server_reader, client_writer, to_server=False),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(link)
            link.abort()

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, to_server: bool
    ) -> None:
        assert self._flowing is not None
        while True:
            data = await reader.read(65536)
            if not data:
                link.abort()
                return
            await self._flowing.wait()
            if link not in self._links:
                return
            if to_server and self._lose_next:
                self._lose_next = False
                link.lose_reply = True
            if not to_server and link.lose_reply:
                self._links.discard(link)
                link.abort()  # the command ran; its reply never arrives
                return
            writer.write(data)
            await writer.drain()
