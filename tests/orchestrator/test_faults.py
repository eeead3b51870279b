"""Backend faults against real stub servers: refused, timeouts, 5xx, dying or garbled
streams, failover before the first byte, and the breaker opening and recovering."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import ClientResponse

from tests.backend.sse import chunks, read_events
from tests.orchestrator.conftest import FakeClock, MakeOrchestrator, MakeStub, chat
from tests.orchestrator.stub_upstream import Behaviour


async def error_of(response: ClientResponse) -> dict[str, Any]:
    body = await response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


async def test_refused_backend_is_a_fast_503(refused_url: str,
                                             make_orchestrator: MakeOrchestrator) -> None:
    client = await make_orchestrator(refused_url, models_refresh_s=3600)
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert (await error_of(response))["code"] == "backend_unreachable"


async def test_breaker_opens_then_refuses_without_calling_the_backend(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    stub.default = Behaviour(status=500)
    client = await make_orchestrator(url, breaker_failure_threshold=2)
    for _ in range(2):
        response = await client.post("/v1/chat/completions", json=chat())
        assert response.status == 502
        assert (await error_of(response))["code"] == "bad_gateway"
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.status == 503
    assert response.headers["Retry-After"] == "10"
    assert (await error_of(response))["code"] == "circuit_open"
    assert len(stub.received) == 2


async def test_500s_then_recovery_after_the_cooldown(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, clock: FakeClock) -> None:
    stub, url = await make_stub()
    stub.then(Behaviour(status=500), Behaviour(status=500))
    client = await make_orchestrator(url, breaker_failure_threshold=2)
    for _ in range(2):
        assert (await client.post("/v1/chat/completions", json=chat())).status == 502
    clock.advance(4)
    refused = await client.post("/v1/chat/completions", json=chat())
    assert refused.status == 503 and refused.headers["Retry-After"] == "6"
    health = await (await client.get("/health")).json()
    assert health["backends"][0]["breaker"] == "open"
    clock.advance(6)
    response = await client.post("/v1/chat/completions", json=chat(stream=True))
    assert response.status == 200
    assert chunks(await read_events(response))[-1]["usage"]["completion_tokens"] == 3
    health = await (await client.get("/health")).json()
    assert health["backends"][0]["breaker"] == "closed"
    assert health["status"] == "ok"


async def test_client_errors_do_not_open_the_circuit(make_stub: MakeStub,
                                                     make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    stub.default = Behaviour(status=400)
    client = await make_orchestrator(url, breaker_failure_threshold=2)
    for _ in range(4):
        response = await client.post("/v1/chat/completions", json=chat(stream=True))
        assert response.status == 400  # the backend's own error, passed through
        assert (await error_of(response))["message"] == "stub says 400"
    assert len(stub.received) == 4


async def test_read_timeout_before_headers_is_504(make_stub: MakeStub,
                                                  make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    stub.then(Behaviour(hang_after=-1))
    client = await make_orchestrator(url, read_timeout_s=0.2)
    response = await client.post("/v1/chat/completions", json=chat(stream=True))
    assert response.status == 504
    assert (await error_of(response))["code"] == "upstream_timeout"


async def test_failover_before_the_first_byte(make_stub: MakeStub, refused_url: str,
                                              make_orchestrator: MakeOrchestrator) -> None:
    dying, dying_url = await make_stub(name="dying")
    dying.default = Behaviour(die_after=0)
    garbled, garbled_url = await make_stub(name="garbled")
    garbled.default = Behaviour(garbage_after=0)
    failing, failing_url = await make_stub(name="failing")
    failing.default = Behaviour(status=502)
    healthy, healthy_url = await make_stub(name="healthy")
    client = await make_orchestrator(refused_url, dying_url, garbled_url, failing_url,
                                     healthy_url, breaker_failure_threshold=5)
    response = await client.post("/v1/chat/completions", json=chat(stream=True))
    assert response.status == 200
    events = await read_events(response)
    assert [e for e in events if e[0] == "error"] == []
    assert events[-1] == ("message", "[DONE]")
    assert [len(s.received) for s in (dying, garbled, failing, healthy)] == [1, 1, 1, 1]


async def test_busy_backend_is_skipped_without_counting_as_a_failure(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    busy, busy_url = await make_stub(name="busy")
    busy.default = Behaviour(status=503, headers={"Retry-After": "7"})
    client = await make_orchestrator(busy_url, breaker_failure_threshold=1)
    for _ in range(2):
        response = await client.post("/v1/chat/completions", json=chat())
        assert response.status == 503
        assert response.headers["Retry-After"] == "7"
        assert (await error_of(response))["code"] == "backend_busy"
    assert len(busy.received) == 2  # the circuit stayed closed


# The delay makes each chunk arrive on its own, so the first is relayed before the fault.
@pytest.mark.parametrize("fault", [Behaviour(die_after=2, chunks=5, delay_s=0.02),
                                   Behaviour(garbage_after=2, chunks=5, delay_s=0.02),
                                   Behaviour(hang_after=2, chunks=5, delay_s=0.02)],
                         ids=["dies", "garbles", "hangs"])
async def test_failure_after_the_first_byte_ends_with_an_error_event(
        fault: Behaviour, make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    other, other_url = await make_stub(name="other")
    stub.then(fault)
    client = await make_orchestrator(url, other_url, read_timeout_s=0.3)
    response = await client.post("/v1/chat/completions", json=chat(stream=True))
    assert response.status == 200
    events = await read_events(response)  # returns: the stream was closed cleanly
    contents = [c["choices"][0]["delta"]["content"] for c in chunks(events[:-1])]
    assert contents == ["tok0 ", "tok1 "]
    name, data = events[-1]
    assert name == "error"
    error = json.loads(data)["error"]
    assert error["type"] == "upstream_error"
    assert other.received == []  # no failover once the client has bytes
    health = await (await client.get("/health")).json()
    assert health["backends"][0]["consecutive_failures"] == 1


async def test_client_disconnect_closes_the_upstream_request(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    stub.then(Behaviour(chunks=10_000, delay_s=0.01))
    client = await make_orchestrator(url)
    response = await client.post("/v1/chat/completions", json=chat(stream=True))
    assert response.status == 200
    await response.content.readuntil(b"\n\n")
    response.close()  # the client goes away mid-stream
    await asyncio.wait_for(stub.disconnected.wait(), timeout=5)
    health = await (await client.get("/health")).json()
    assert health["in_flight"] == 0
    assert health["backends"][0]["in_flight"] == 0
    assert health["backends"][0]["breaker"] == "closed"
