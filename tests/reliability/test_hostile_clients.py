"""Items 9, 10, 16: what one client can do to another, or to the services, with a body.

Item 10 runs against both real apps (the backend without loading its model:
the bodies are refused before generation)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cerebrum.backend.app import create_backend_app
from cerebrum.backend.config import BackendConfig
from cerebrum.orchestrator.app import create_orchestrator_app
from cerebrum.orchestrator.config import OrchestratorConfig
from tests.reliability.conftest import CLIENT_KEY, chat

pytestmark = pytest.mark.reliability

OTHER_KEY = "another-client-key-for-hardening"


# -- item 9: the response cache across client keys --------------------------------------

@pytest.mark.parametrize("shared", [False, True])
async def test_the_cache_is_per_client_unless_shared(hostile, make_orchestrator,
                                                     shared: bool) -> None:
    backend, url = hostile
    client = await make_orchestrator(url, client_api_keys=(CLIENT_KEY, OTHER_KEY),
                                     cache_shared=shared)
    body = chat("what is my secret plan?", temperature=0)
    first = await client.post("/v1/chat/completions", json=body)
    assert first.headers["X-Cerebrum-Cache"] == "miss"
    again = await client.post("/v1/chat/completions", json=body)
    assert again.headers["X-Cerebrum-Cache"] == "hit"
    other = await client.post("/v1/chat/completions", json=body,
                              headers={"X-API-Key": OTHER_KEY})
    assert other.status == 200
    assert other.headers["X-Cerebrum-Cache"] == ("hit" if shared else "miss")
    assert backend.requests == (1 if shared else 2)


# -- item 10: bodies json accepts that nothing downstream can use ---------------------

KEY = "hardening-bad-input-key"

BODIES = {
    "nested 100k deep": b'{"messages": [{"role": "user", "content": "hi"}], "x": '
                        + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "a 5000-digit integer in an unknown field": b'{"messages": [{"role": "user", '
                                                b'"content": "hi"}], "x": ' + b"7" * 5000
                                                + b"}",
    "a lone surrogate in content": b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}',
    "a lone surrogate in stop": b'{"messages": [{"role": "user", "content": "hi"}], '
                                b'"stop": ["\\udc00"]}',
    "a user message without content": b'{"messages": [{"role": "user"}]}',
}


def _apps() -> dict[str, Any]:
    return {
        "backend": lambda: create_backend_app(BackendConfig(api_key=KEY)),
        "orchestrator": lambda: create_orchestrator_app(OrchestratorConfig(
            backend_url=("http://127.0.0.1:9",), client_api_keys=(KEY,))),
    }


@pytest.fixture(params=["backend", "orchestrator"])
async def service(request, aiohttp_client) -> Any:
    return await aiohttp_client(_apps()[request.param]())


@pytest.mark.parametrize("name", sorted(BODIES))
async def test_unusable_json_is_a_400(service, name: str) -> None:
    response = await service.post("/v1/chat/completions", data=BODIES[name],
                                  headers={"X-API-Key": KEY,
                                           "Content-Type": "application/json"})
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"


# -- item 16: Expect: 100-continue -----------------------------------------------------

async def _expect(service, headers: bytes) -> bytes:
    server = service.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nExpect: 100-continue\r\n" + headers
                 + b"\r\n")
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return line


async def test_100_continue_is_not_sent_before_auth(service) -> None:
    line = await _expect(service, b"Content-Length: 20\r\n")
    assert line.startswith(b"HTTP/1.1 401"), line


async def test_100_continue_is_not_sent_before_the_size_check(service) -> None:
    line = await _expect(service, b"X-API-Key: " + KEY.encode()
                         + b"\r\nContent-Length: 1000000000\r\n")
    assert line.startswith(b"HTTP/1.1 413"), line


async def test_100_continue_is_sent_to_an_authorised_small_request(service) -> None:
    line = await _expect(service, b"X-API-Key: " + KEY.encode() + b"\r\nContent-Length: 20\r\n")
    assert line.startswith(b"HTTP/1.1 100"), line
