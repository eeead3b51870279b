"""The orchestrator's middleware stack, each piece on a bare web.Application."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cerebrum.errors import BadGateway
from cerebrum.middlewares import setup_errors, setup_request_id
from cerebrum.orchestrator.shedding import Concurrency, setup_load_shedding

_LOGGER = logging.getLogger("tests.orchestrator.handler")


async def test_request_id_echoed_and_bound_to_log_lines(aiohttp_client: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: web.Request) -> web.Response:
        _LOGGER.info("inside the handler")
        return web.Response(text="ok")

    app = web.Application()
    setup_request_id(app)
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    caplog.set_level(logging.INFO, logger="tests.orchestrator.handler")
    given = await client.get("/", headers={"X-Request-ID": "abc-123"})
    made = await client.get("/")
    unsafe = await client.get("/", headers={"X-Request-ID": "bad id\twith spaces"})
    assert given.headers["X-Request-ID"] == "abc-123"
    assert len(made.headers["X-Request-ID"]) == 32
    assert unsafe.headers["X-Request-ID"] not in ("bad id\twith spaces",
                                                  made.headers["X-Request-ID"])
    lines = [r for r in caplog.records if r.getMessage() == "inside the handler"]
    assert [r.__dict__["request_id"] for r in lines] == [given.headers["X-Request-ID"],
                                             made.headers["X-Request-ID"],
                                             unsafe.headers["X-Request-ID"]]


@pytest.fixture
async def shedding_app(aiohttp_client: Any) -> tuple[Any, asyncio.Event, list[asyncio.Event]]:
    release = asyncio.Event()
    entered: list[asyncio.Event] = [asyncio.Event() for _ in range(2)]

    async def slow(request: web.Request) -> web.Response:
        entered[int(request.query["n"])].set()
        await release.wait()
        return web.Response(text="done")

    async def fast(request: web.Request) -> web.Response:
        return web.Response(text="fine")

    app = web.Application()
    setup_errors(app)
    setup_load_shedding(app, Concurrency(2))
    app.router.add_get("/slow", slow)
    app.router.add_get("/health", fast)
    app.router.add_get("/metrics", fast)
    app.router.add_get("/other", fast)
    return await aiohttp_client(app), release, entered


async def test_sheds_past_the_limit_with_retry_after(shedding_app: Any) -> None:
    client, release, entered = shedding_app
    held = [asyncio.create_task(client.get("/slow", params={"n": n})) for n in range(2)]
    await asyncio.gather(*(event.wait() for event in entered))
    refused = await client.get("/other")
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "1"
    error = (await refused.json())["error"]
    assert error["code"] == "overloaded" and error["type"] == "server_error"
    for path in ("/health", "/metrics"):
        assert (await client.get(path)).status == 200  # never shed
    release.set()
    assert [r.status for r in await asyncio.gather(*held)] == [200, 200]
    assert (await client.get("/other")).status == 200  # slots are given back


async def test_a_failing_handler_gives_its_slot_back(aiohttp_client: Any) -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    concurrency = Concurrency(1)
    app = web.Application()
    setup_errors(app)
    setup_load_shedding(app, concurrency)
    app.router.add_get("/", boom)
    client = await aiohttp_client(app)
    for _ in range(3):
        assert (await client.get("/")).status == 500
    assert concurrency.count == 0


@pytest.mark.parametrize("error", [RuntimeError("a bug"), BadGateway("the backend failed")])
async def test_a_failure_after_the_response_began_cuts_the_connection(
        aiohttp_client: Any, error: Exception) -> None:
    """Bytes already sent cannot be followed by a JSON error: the client must see the
    answer end broken, at once, not wait on an open connection (it did, for ever)."""

    async def half_a_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: {}\r\n\r\n")
        raise error

    async def plain(request: web.Request) -> web.Response:
        raise error

    app = web.Application()
    setup_errors(app)
    app.router.add_get("/stream", half_a_stream)
    app.router.add_get("/plain", plain)
    client = await aiohttp_client(app)
    response = await client.get("/stream")
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(response.content.read(), 5)
    # Before any byte, the same failure is still a JSON error.
    answered = await client.get("/plain")
    assert answered.status in (500, 502)
    assert "error" in await answered.json()
