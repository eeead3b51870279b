"""Huge bodies are refused from their headers, and slow clients are cut off by timeouts,
on both services (raw sockets: an HTTP client library would not misbehave on purpose)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cerebrum.backend.app import create_backend_app
from cerebrum.backend.config import BackendConfig
from cerebrum.orchestrator.app import create_orchestrator_app
from cerebrum.orchestrator.config import OrchestratorConfig

pytestmark = pytest.mark.reliability

KEY = "slow-and-huge-key"


def _apps() -> dict[str, Any]:
    return {
        "backend": lambda: create_backend_app(BackendConfig(api_key=KEY)),
        "orchestrator": lambda: create_orchestrator_app(OrchestratorConfig(
            backend_url=("http://127.0.0.1:9",), client_api_keys=(KEY,))),
    }


@pytest.fixture(params=["backend", "orchestrator"])
async def server(request, aiohttp_server) -> Any:
    # A short keep-alive timeout stands in for the production one (75 s), which
    # also bounds a connection that never completes its request headers.
    return await aiohttp_server(_apps()[request.param](), keepalive_timeout=1.0)


async def _response_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)


async def test_huge_body_is_refused_from_its_headers(server) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    started = time.monotonic()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nX-API-Key: " + KEY.encode() + b"\r\n"
                 b"Content-Length: 1000000000\r\n\r\n{\"messages\": [")
    await writer.drain()
    head = await _response_head(reader)  # answered without the other 999,999,985 bytes
    assert head.startswith(b"HTTP/1.1 413"), head
    assert time.monotonic() - started < 5
    writer.close()


async def test_headers_that_never_finish_are_cut_off(server) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    for _ in range(20):  # one header byte every 0.25 s: a slowloris
        try:
            writer.write(b"X")
            await writer.drain()
        except ConnectionError:
            break
        if reader.at_eof():
            break
        try:
            await asyncio.wait_for(reader.read(1), 0.25)
            break  # the server answered or closed
        except TimeoutError:
            continue
    elapsed = time.monotonic() - started
    assert elapsed < 4, f"the connection was still open after {elapsed:.1f} s"
    writer.close()


async def test_a_trickling_body_is_cut_off(server, monkeypatch) -> None:
    from cerebrum import bodies

    monkeypatch.setattr(bodies, "BODY_TIMEOUT_S", 0.5)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nX-API-Key: " + KEY.encode() + b"\r\n"
                 b"Content-Length: 100\r\n\r\n{")
    await writer.drain()
    head = await _response_head(reader)
    assert head.startswith(b"HTTP/1.1 408"), head
    writer.close()
