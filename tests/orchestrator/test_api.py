"""The orchestrator's own routes and its answers to bad input."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.orchestrator.conftest import FakeClock, MakeOrchestrator, MakeStub, chat


async def test_models_is_the_union_plus_aliases(make_stub: MakeStub,
                                                make_orchestrator: MakeOrchestrator) -> None:
    _, first = await make_stub(models=("a", "shared"))
    _, second = await make_stub(models=("b", "shared"))
    client = await make_orchestrator(first, second)
    models = {m["id"]: m for m in (await (await client.get("/v1/models")).json())["data"]}
    assert set(models) == {"a", "b", "shared", "auto"}
    assert len(models["shared"]["backends"]) == 2
    assert models["a"]["context_length"] == 2048


async def test_health_reports_each_backend(make_stub: MakeStub, refused_url: str,
                                           make_orchestrator: MakeOrchestrator) -> None:
    _, url = await make_stub()
    client = await make_orchestrator(url, refused_url, client_api_keys=("client-key",))
    await client.get("/v1/models", headers={"X-API-Key": "client-key"})  # waits for a refresh
    health = await client.get("/health")  # public even with client keys
    assert health.status == 200
    body = await health.json()
    assert body["status"] == "ok" and body["max_concurrent"] == 2
    up, down = body["backends"]
    assert up["breaker"] == "closed" and up["models"] == ["stub-model"]
    assert up["last_contact"] is not None
    assert down["last_contact"] is None and "Connect" in down["models_error"]


async def test_client_keys_are_enforced_when_set(make_stub: MakeStub,
                                                 make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url, client_api_keys=("k1", "k2"))
    refused = await client.post("/v1/chat/completions", json=chat())
    assert refused.status == 401
    ok = await client.post("/v1/chat/completions", json=chat(),
                           headers={"Authorization": "Bearer k2"})
    assert ok.status == 200
    assert stub.received[0].headers["X-API-Key"] != "k2"  # the client's key stays here


@pytest.mark.parametrize("body, status, fragment", [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"model": "stub-model", "messages": "hi"}', 400, "messages"),
    (b'{"model": "stub-model", "messages": [{"role": "user", "content": 5}]}', 400,
     "messages[0].content"),
    (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', 400, "model"),
    (b'{"model": "stub-model", "messages": [], "max_tokens": "9"}', 400, ""),
    (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "nope"),
])
async def test_bad_input_gets_a_clear_4xx(body: bytes, status: int, fragment: str,
                                          make_stub: MakeStub,
                                          make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    response = await client.post("/v1/chat/completions", data=body,
                                  headers={"Content-Type": "application/json"})
    assert response.status == status
    error = (await response.json())["error"]
    assert fragment in error["message"]
    assert stub.received == []


async def test_too_large_is_413_before_reading_it(make_stub: MakeStub,
                                                  make_orchestrator: MakeOrchestrator) -> None:
    _, url = await make_stub()
    client = await make_orchestrator(url, max_body_bytes=1000)
    response = await client.post("/v1/chat/completions", json=chat("x" * 2000))
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"


async def test_unknown_model_triggers_one_refresh(make_stub: MakeStub,
                                                  make_orchestrator: MakeOrchestrator,
                                                  clock: FakeClock) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    await client.get("/v1/models")
    reads = stub.model_reads
    clock.advance(5)  # past the refresh rate limit
    stub.models = ("stub-model", "new-model")  # the backend gained a model
    response = await client.post("/v1/chat/completions", json=chat(model="new-model"))
    assert response.status == 200
    assert stub.model_reads == reads + 1
    for _ in range(3):  # unknown: 404, without asking again so soon (rate limited)
        response = await client.post("/v1/chat/completions", json=chat(model="gone"))
        assert response.status == 404
    assert stub.model_reads == reads + 1


async def test_one_completion_log_line_per_request(make_stub: MakeStub,
                                                   make_orchestrator: MakeOrchestrator,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    _, url = await make_stub()
    client = await make_orchestrator(url)
    caplog.set_level(logging.INFO, logger="cerebrum.orchestrator.proxy")
    response = await client.post("/v1/chat/completions", json=chat(stream=True),
                                 headers={"X-Request-ID": "line-1"})
    await response.read()
    lines = [r for r in caplog.records if r.getMessage().startswith("completion")]
    assert len(lines) == 1
    line: Any = lines[0]
    assert line.request_id == "line-1"
    assert (line.model, line.outcome, line.status) == ("stub-model", "ok", 200)
    assert (line.prompt_tokens, line.completion_tokens) == (7, 3)
    assert line.prompt_chars_before == line.prompt_chars_after == len("Say hello.")
    assert 0 < line.ttfb_ms <= line.duration_ms
    assert line.backend.startswith("127.0.0.1:")
