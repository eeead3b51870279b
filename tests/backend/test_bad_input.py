"""Bad input gets a clear OpenAI-style JSON error with the right status."""

from __future__ import annotations

import asyncio
import json

import pytest

from cerebrum import bodies
from tests.backend_fixtures import AUTH, chat_body

CHAT = "/v1/chat/completions"


def _assert_error(body: dict, status: int, response_status: int) -> None:
    assert response_status == status
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]


@pytest.mark.parametrize(("payload", "needle"), [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "JSON object"),
    (b"\xff\xfe\x00", "not valid JSON"),
])
async def test_unparseable_bodies(backend, payload, needle) -> None:
    response = await backend.post(CHAT, headers={**AUTH, "Content-Type": "application/json"},
                                  data=payload)
    body = await response.json()
    _assert_error(body, 400, response.status)
    assert needle in body["error"]["message"]


@pytest.mark.parametrize(("override", "needle"), [
    ({"messages": None}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": 42}]}, "string"),
    ({"max_tokens": "ten"}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": 7}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"stream": "yes"}, "stream"),
    ({"stop": 5}, "stop"),
    ({"seed": 1.5}, "seed"),
    ({"n": 99}, "n"),
])
async def test_wrong_types_and_values(backend, override, needle) -> None:
    response = await backend.post(CHAT, headers=AUTH, json={**chat_body(), **override})
    body = await response.json()
    _assert_error(body, 400, response.status)
    assert needle in body["error"]["message"]


async def test_missing_prompt_for_text_completion(backend) -> None:
    response = await backend.post("/v1/completions", headers=AUTH, json={"max_tokens": 3})
    body = await response.json()
    _assert_error(body, 400, response.status)
    assert body["error"]["param"] == "prompt"


async def test_unknown_model_is_404(backend) -> None:
    response = await backend.post(CHAT, headers=AUTH, json=chat_body(model="gpt-9"))
    body = await response.json()
    _assert_error(body, 404, response.status)
    assert body["error"]["code"] == "model_not_found"
    assert "smollm2-135m" in body["error"]["message"]


@pytest.mark.model
async def test_prompt_longer_than_context_says_by_how_much(backend) -> None:
    long_text = "word " * 3000  # about 3000 tokens, the context is 2048
    response = await backend.post(CHAT, headers=AUTH, json=chat_body(long_text))
    body = await response.json()
    _assert_error(body, 400, response.status)
    assert body["error"]["code"] == "context_length_exceeded"
    assert "over" in body["error"]["message"] and "2048" in body["error"]["message"]


@pytest.mark.model
async def test_prompt_plus_max_tokens_over_context(backend) -> None:
    response = await backend.post(CHAT, headers=AUTH, json=chat_body(max_tokens=5000))
    body = await response.json()
    _assert_error(body, 400, response.status)
    assert body["error"]["param"] == "max_tokens"


async def test_body_over_the_limit_is_413(make_backend) -> None:
    client = await make_backend(max_body_bytes=1000)
    response = await client.post(CHAT, headers=AUTH, json=chat_body("x" * 5000))
    body = await response.json()
    _assert_error(body, 413, response.status)


async def test_chunked_body_over_the_limit_is_413(make_backend) -> None:
    client = await make_backend(max_body_bytes=1000)

    async def chunks():
        for _ in range(10):
            yield b"x" * 500

    response = await client.post(CHAT, headers=AUTH, data=chunks())
    _assert_error(await response.json(), 413, response.status)


async def test_unknown_route_and_wrong_method_are_json(backend) -> None:
    response = await backend.get("/v2/whatever", headers=AUTH)
    _assert_error(await response.json(), 404, response.status)
    response = await backend.get(CHAT, headers=AUTH)
    _assert_error(await response.json(), 405, response.status)
    assert "POST" in response.headers["Allow"]


async def test_large_body_arriving_in_pieces_is_read_whole(backend) -> None:
    # 2 MB in many small writes: the whole body must be parsed (the unknown
    # model is then the only problem), not just the first piece that arrived.
    payload = json.dumps(chat_body("x" * 2_000_000, model="not-a-model")).encode()

    async def pieces():
        for start in range(0, len(payload), 8192):
            yield payload[start:start + 8192]

    response = await backend.post(CHAT, headers={**AUTH, "Content-Type": "application/json"},
                                  data=pieces())
    _assert_error(await response.json(), 404, response.status)


async def test_a_body_that_trickles_in_is_cut_off(backend, monkeypatch) -> None:
    monkeypatch.setattr(bodies, "BODY_TIMEOUT_S", 0.3)

    async def trickle():
        yield b'{"messages": '
        await asyncio.sleep(5)
        yield b"[]}"

    response = await asyncio.wait_for(backend.post(CHAT, headers=AUTH, data=trickle()), 3)
    _assert_error(await response.json(), 408, response.status)
