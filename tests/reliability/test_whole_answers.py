"""Item 1: whole (non-streamed) answers across a real network hop.

A Tailscale or SSH hop delivers a backend's answer in many small TCP
segments; the orchestrator must read each body whole (bounded), whatever
its framing, and a body cut short by the network is a 502 for that request
without counting towards opening the backend's circuit.
"""

from __future__ import annotations

import json

import pytest

from tests.reliability.conftest import chat
from tests.reliability.hostile import whole_answer

pytestmark = pytest.mark.reliability

REQUESTS = 5  # more than the breaker's threshold (3): a wrong verdict would open it


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_whole_answers_cross_a_segmenting_hop(hostile, relay_to, make_orchestrator,
                                                    chunked: bool) -> None:
    backend, _ = hostile
    backend.chunked = chunked
    client = await make_orchestrator(relay_to.url)
    expected = whole_answer(backend.tokens)
    for _ in range(REQUESTS):
        response = await client.post("/v1/chat/completions", json=chat(max_tokens=300))
        assert response.status == 200, await response.text()
        assert await response.json() == expected
    # The hop really cut each answer into several segments.
    assert relay_to.segments >= REQUESTS * 2
    health = await (await client.get("/health")).json()
    assert health["backends"][0]["breaker"] == "closed"


async def test_a_4xx_body_is_relayed_whole(hostile, relay_to, make_orchestrator) -> None:
    backend, _ = hostile
    backend.status = 400
    client = await make_orchestrator(relay_to.url)
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.status == 400
    body = await response.json()
    assert body["error"]["message"] == "bad request: " + "x" * 4000


async def test_a_truncated_body_is_a_502_but_not_a_breaker_failure(hostile, relay_to,
                                                                   make_orchestrator) -> None:
    backend, _ = hostile
    backend.completion = "truncated"
    client = await make_orchestrator(relay_to.url)
    for _ in range(REQUESTS):
        response = await client.post("/v1/chat/completions", json=chat())
        assert response.status == 502, await response.text()
        error = (await response.json())["error"]
        assert "cut short" in error["message"], error
    backend.completion = "whole"
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.status == 200, await response.text()


async def test_an_oversized_whole_answer_is_refused(hostile, relay_to, make_orchestrator) -> None:
    backend, _ = hostile
    backend.tokens = 3000
    client = await make_orchestrator(relay_to.url, max_upstream_body_bytes=8192)
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.status == 502
    assert "over 8192 bytes" in (await response.json())["error"]["message"]
    assert json.dumps(whole_answer(3000)).__len__() > 8192
