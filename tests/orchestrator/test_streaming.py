"""Streaming and pass-through against a real stub upstream."""

from __future__ import annotations

import asyncio
import json

from cerebrum.orchestrator.sse_relay import SseRelayParser
from tests.backend.sse import chunks, read_events
from tests.orchestrator.conftest import BACKEND_KEY, MakeOrchestrator, MakeStub, chat
from tests.orchestrator.stub_upstream import Behaviour


async def test_stream_is_relayed_with_usage_and_done(make_stub: MakeStub,
                                                     make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    async with client.post("/v1/chat/completions", json=chat(stream=True)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = await read_events(response)
    assert events[-1] == ("message", "[DONE]")
    parsed = chunks(events)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in parsed) == "tok0 tok1 tok2 "
    assert parsed[-1]["usage"]["completion_tokens"] == 3


async def test_non_stream_passes_through(make_stub: MakeStub,
                                         make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    response = await client.post("/v1/completions", json={"model": "stub-model", "prompt": "hi"})
    assert response.status == 200
    body = await response.json()
    assert body["choices"][0]["text"] == "tok0 tok1 tok2 "
    assert stub.received[0].path == "/v1/completions"


async def test_backend_gets_key_request_id_and_body(make_stub: MakeStub,
                                                    make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    response = await client.post("/v1/chat/completions", json=chat(temperature=0.2, user="u"),
                                 headers={"X-Request-ID": "corr-42"})
    assert response.status == 200
    assert response.headers["X-Request-ID"] == "corr-42"
    got = stub.received[0]
    assert got.headers["X-Request-ID"] == "corr-42"
    assert got.headers["X-API-Key"] == BACKEND_KEY
    assert got.headers["Authorization"] == f"Bearer {BACKEND_KEY}"
    assert got.body["temperature"] == 0.2 and got.body["user"] == "u"
    assert json.dumps(got.body["messages"]) == json.dumps(chat()["messages"])


async def test_stream_ends_at_done_without_waiting_for_the_backend_to_close(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    stub.then(Behaviour(hang_after_done=True))
    client = await make_orchestrator(url, read_timeout_s=30)
    async with client.post("/v1/chat/completions", json=chat(stream=True)) as response:
        events = await asyncio.wait_for(read_events(response), timeout=5)
    assert events[-1] == ("message", "[DONE]")


async def test_a_bug_mid_relay_ends_the_stream_with_an_error_event(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, monkeypatch) -> None:
    fed = []
    original = SseRelayParser.feed

    def fails_at_the_second_read(self, data):
        fed.append(data)
        if len(fed) > 1:
            raise RuntimeError("a bug in the relay")
        return original(self, data)

    monkeypatch.setattr(SseRelayParser, "feed", fails_at_the_second_read)
    stub, url = await make_stub()
    stub.then(Behaviour(delay_s=0.05))
    client = await make_orchestrator(url)
    async with client.post("/v1/chat/completions", json=chat(stream=True)) as response:
        assert response.status == 200
        events = await asyncio.wait_for(read_events(response), timeout=5)
    assert events[-1][0] == "error"
    assert json.loads(events[-1][1])["error"]["message"] == "internal server error"
    assert ("message", "[DONE]") not in events
