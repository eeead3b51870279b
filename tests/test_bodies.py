"""Bounded body reading (cerebrum.bodies.read_at_most), on aiohttp's own stream reader."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from cerebrum.bodies import read_at_most


def _stream(*pieces: bytes, end: bool = True) -> aiohttp.StreamReader:
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.connection_made(asyncio.Transport())  # a live connection, still sending
    stream = aiohttp.StreamReader(protocol, 2**16, loop=loop)
    for piece in pieces:
        stream.feed_data(piece)
    if end:
        stream.feed_eof()
    return stream


async def _read_then_cut(limit: int, *, keep_cut: bool) -> bytes:
    """What arrived is read, then the connection breaks (as aiohttp reports a cut)."""
    stream = _stream(b"abc", end=False)
    reading = asyncio.ensure_future(read_at_most(stream, limit, keep_cut=keep_cut))
    for _ in range(5):  # the reader takes what was there and waits for more
        await asyncio.sleep(0)
    stream.set_exception(aiohttp.ClientPayloadError("cut"))
    return await reading


async def test_it_reads_across_segments_and_stops_at_the_limit() -> None:
    assert await read_at_most(_stream(b"abc", b"def", b"g"), 100) == b"abcdefg"
    assert await read_at_most(_stream(b"abc", b"def", b"g"), 5) == b"abcde"
    assert await read_at_most(_stream(), 5) == b""


async def test_a_cut_body_raises_unless_asked_to_keep_it() -> None:
    with pytest.raises(aiohttp.ClientPayloadError):
        await _read_then_cut(100, keep_cut=False)
    assert await _read_then_cut(100, keep_cut=True) == b"abc"
