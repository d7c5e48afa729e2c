"""A loopback TCP proxy in front of PostgreSQL that counts client round trips.

It reads the frontend side of the wire protocol: every `Sync` (extended protocol) or `Query`
(simple protocol) message ends a request the client then waits on, i.e. one round trip.
https://www.postgresql.org/docs/current/protocol-message-formats.html
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class RoundTripProxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.round_trips = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _pump_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # StartupMessage: untagged (int32 length, then body).
        head = await reader.readexactly(4)
        (length,) = struct.unpack("!i", head)
        writer.write(head + await reader.readexactly(length - 4))
        while True:
            tag = await reader.readexactly(1)
            head = await reader.readexactly(4)
            (length,) = struct.unpack("!i", head)
            body = await reader.readexactly(length - 4)
            if tag in (b"S", b"Q"):
                self.round_trips += 1
            writer.write(tag + head + body)
            await writer.drain()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection(*self.upstream)
        up = asyncio.ensure_future(self._pump_client(c_reader, s_writer))
        down = asyncio.ensure_future(self._pump(s_reader, c_writer))
        with contextlib.suppress(Exception):
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for w in (c_writer, s_writer):
            w.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RoundTripProxy]:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await self._handle(r, w)
            finally:
                self._tasks.discard(task)

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
