"""A segmenting TCP relay: what a Tailscale or SSH hop does to a backend's bytes.

The relay listens on a loopback port and forwards each connection to a
target. Bytes from the client go through as they come; bytes back from the
target are cut into ``segment``-byte pieces written ``gap_s`` apart, with
``TCP_NODELAY``, so the reader sees many small reads instead of one large
one (a loopback connection otherwise delivers a whole answer at once, which
hides every "one read is the whole body" bug).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import attrs


@attrs.define
class SegmentingRelay:
    """``async with SegmentingRelay(port) as relay:`` then talk to ``relay.port``."""

    target_port: int
    target_host: str = "127.0.0.1"
    segment: int = 1400
    gap_s: float = 0.003
    segments: int = 0
    """Pieces written back to clients so far (a test checks the relay really cut)."""
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = attrs.field(factory=set)

    async def __aenter__(self) -> SegmentingRelay:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _connection(self, client_reader: asyncio.StreamReader,
                          client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            target_reader, target_writer = await asyncio.open_connection(
                self.target_host, self.target_port)
        except OSError:
            client_writer.close()
            self._tasks.discard(task)
            return
        for writer in (client_writer, target_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream = asyncio.create_task(self._pipe(client_reader, target_writer, cut=False))
        downstream = asyncio.create_task(self._pipe(target_reader, client_writer, cut=True))
        try:
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in (upstream, downstream):
                pipe.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await pipe
            for writer in (client_writer, target_writer):
                writer.close()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    cut: bool) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                # HTTP does not half-close: one side ending ends the connection.
                return
            if not cut:
                writer.write(data)
                await writer.drain()
                continue
            for start in range(0, len(data), self.segment):
                writer.write(data[start:start + self.segment])
                await writer.drain()
                self.segments += 1
                await asyncio.sleep(self.gap_s)
