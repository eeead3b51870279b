"""Completions against the real embedded model: streamed and whole, chat and text."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from cerebrum.backend.registry import embedded_model_path
from tests.backend.sse import chunks, iter_events, read_events
from tests.backend_fixtures import AUTH, chat_body, state_of

pytestmark = pytest.mark.model


def _prompt_token_count(text: str) -> int:
    """Tokenize independently of the service (vocab only: no weights loaded)."""
    import llama_cpp

    llama = llama_cpp.Llama(str(embedded_model_path()), vocab_only=True, verbose=False)
    try:
        return len(llama.tokenize(text.encode(), add_bos=llama._model.add_bos_token(),
                                  special=True))
    finally:
        llama.close()


async def test_streamed_chat_has_content_usage_and_done_last(backend) -> None:
    response = await backend.post("/v1/chat/completions", headers=AUTH,
                                  json=chat_body(stream=True, max_tokens=12))
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = await read_events(response)
    assert events[-1] == ("message", "[DONE]")
    parsed = chunks(events)
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in parsed)
    assert len({chunk["id"] for chunk in parsed}) == 1
    assert parsed[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in parsed)
    assert text.strip()
    final = parsed[-1]
    assert final["choices"][0]["finish_reason"] in ("stop", "length")
    usage = final["usage"]
    assert 0 < usage["completion_tokens"] <= 12
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # usage only on the final chunk
    assert all("usage" not in chunk for chunk in parsed[:-1])


async def test_whole_chat_completion(backend) -> None:
    response = await backend.post("/v1/chat/completions", headers=AUTH,
                                  json=chat_body(max_tokens=8))
    assert response.status == 200
    body = await response.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    assert body["usage"]["completion_tokens"] <= 8


async def test_text_completion_counts_prompt_tokens_exactly(backend) -> None:
    prompt = "def fibonacci(n):\n    "
    response = await backend.post("/v1/completions", headers=AUTH,
                                  json={"prompt": prompt, "max_tokens": 6, "temperature": 0})
    assert response.status == 200
    body = await response.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"]
    assert body["usage"]["prompt_tokens"] == _prompt_token_count(prompt)
    # Greedy and not cut by an end token within 6 tokens: the budget is used up.
    assert body["usage"]["completion_tokens"] == 6
    assert body["choices"][0]["finish_reason"] == "length"


async def test_streamed_text_completion(backend) -> None:
    response = await backend.post("/v1/completions", headers=AUTH, json={
        "prompt": "The capital of France is", "max_tokens": 5, "temperature": 0, "stream": True})
    events = await read_events(response)
    assert events[-1] == ("message", "[DONE]")
    parsed = chunks(events)
    assert all(chunk["object"] == "text_completion" for chunk in parsed)
    assert "".join(c["choices"][0]["text"] for c in parsed).strip()
    assert parsed[-1]["usage"]["completion_tokens"] == 5


async def test_temperature_zero_is_deterministic_and_seed_repeats(backend) -> None:
    async def once(**extra) -> str:
        response = await backend.post("/v1/completions", headers=AUTH, json={
            "prompt": "Once upon a time", "max_tokens": 10, **extra})
        return str((await response.json())["choices"][0]["text"])

    assert await once(temperature=0) == await once(temperature=0)
    assert await once(temperature=1.0, seed=42) == await once(temperature=1.0, seed=42)


async def test_stop_sequence_ends_generation_and_is_not_shown(backend) -> None:
    # Without a stop this prompt continues with a newline within a few tokens.
    response = await backend.post("/v1/completions", headers=AUTH, json={
        "prompt": "1, 2, 3, 4,", "max_tokens": 30, "temperature": 0, "stop": [","]})
    body = await response.json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert "," not in body["choices"][0]["text"]
    assert body["usage"]["completion_tokens"] < 30


async def test_client_disconnect_stops_generation_and_frees_the_model(backend, caplog) -> None:
    caplog.set_level(logging.INFO, logger="cerebrum.backend.views")
    state = state_of(backend)
    response = await backend.post("/v1/chat/completions", headers=AUTH, json=chat_body(
        "Write a very long story about a dragon.", stream=True, max_tokens=1500))
    seen = 0
    async for _ in iter_events(response):
        seen += 1
        if seen == 4:
            break
    response.close()  # the client leaves mid-stream

    async def record():
        while True:
            for rec in caplog.records:
                if getattr(rec, "outcome", None) == "client_disconnected":
                    return rec
            await asyncio.sleep(0.02)

    # Generous bounds: they catch a hang, not slowness on a busy CI machine.
    rec = await asyncio.wait_for(record(), timeout=30)
    assert rec.finish_reason == "cancelled"
    # It stopped within a token or two of the disconnect, far from the budget.
    assert rec.completion_tokens < 50
    assert not state.models.busy("smollm2-135m")
    # And the model serves the next request at once.
    follow = await asyncio.wait_for(backend.post(
        "/v1/completions", headers=AUTH, json={"prompt": "Hi", "max_tokens": 3}), timeout=60)
    assert follow.status == 200


async def test_request_id_is_echoed_and_logged(backend, caplog) -> None:
    caplog.set_level(logging.INFO, logger="cerebrum.backend.views")
    response = await backend.post("/v1/completions", headers={**AUTH, "X-Request-ID": "abc-123"},
                                  json={"prompt": "Hi", "max_tokens": 2})
    assert response.headers["X-Request-ID"] == "abc-123"
    await response.read()
    records = [r for r in caplog.records if getattr(r, "event", None) == "completion"]
    assert any(r.request_id == "abc-123" for r in records)


async def test_health_and_models_report_load_state(backend) -> None:
    health = await (await backend.get("/health")).json()
    assert health["status"] == "ready"
    assert health["models"] == {"smollm2-135m": "unloaded"}
    models = await (await backend.get("/v1/models", headers=AUTH)).json()
    assert models["object"] == "list"
    (entry,) = models["data"]
    assert entry["id"] == "smollm2-135m" and entry["state"] == "unloaded"
    assert entry["context_length"] == 2048
    await (await backend.post("/v1/completions", headers=AUTH,
                              json={"prompt": "Hi", "max_tokens": 1})).read()
    health = await (await backend.get("/health")).json()
    assert health["loaded"] == ["smollm2-135m"]
    assert json.dumps(health)  # plain JSON
