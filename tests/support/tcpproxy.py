"""A loopback TCP proxy that can take its upstream "down" and bring it back, to play a
database outage: while down, the port refuses connections and open ones are cut."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class OutageProxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.replies_muted = False

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool = False
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if replies and self.replies_muted:
                    continue  # lost on the way back to the client
                writer.write(data)
                await writer.drain()

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            c_writer.close()
            self._tasks.discard(task)
            return
        self._writers |= {c_writer, s_writer}
        pumps = {
            asyncio.ensure_future(self._pump(c_reader, s_writer)),
            asyncio.ensure_future(self._pump(s_reader, c_writer, replies=True)),
        }
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (c_writer, s_writer):
                self._writers.discard(w)
                w.close()
            self._tasks.discard(task)

    async def up(self) -> None:
        """Accept connections (on the same port as before, if there was one)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        """Reset the open connections (new ones are still accepted), as a network blip would.
        Synchronous, so a SQLAlchemy event hook can call it at an exact point."""
        self.replies_muted = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def lose_replies_then_cut(self, after: float) -> None:
        """From now on drop what the server sends (requests still reach it), and cut the
        connections `after` seconds later: the server acts, the client never hears of it."""
        self.replies_muted = True
        asyncio.get_running_loop().call_later(after, self.cut)

    async def down(self) -> None:
        """Refuse new connections and cut the open ones, as a crashed server would."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.cut()
        if server is not None:
            await server.wait_closed()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[OutageProxy]:
        await self.up()
        try:
            yield self
        finally:
            await self.down()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
