"""OpenAI's ``n``: several answers to one prompt, sharing its prefill (real model)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.backend.sse import chunks, iter_events
from tests.backend_fixtures import AUTH, state_of

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"
PROMPT = "Here is a short list of fruits, one per line:\n"


def _stats(client: Any) -> Any:
    worker = state_of(client).models.worker(MODEL)
    assert worker is not None and worker.engine is not None
    return worker.engine.stats


async def _completion(client: Any, **extra: Any) -> dict[str, Any]:
    response = await client.post("/v1/completions", headers=AUTH, json={
        "prompt": PROMPT, "max_tokens": 10, "temperature": 0, **extra})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_greedy_choices_share_one_prefill_and_match_a_single_answer(make_backend) -> None:
    client = await make_backend(slots=4)
    single = await _completion(client)
    # Another prompt first, so the next request cannot reuse this one's slot.
    await client.post("/v1/completions", headers=AUTH, json={
        "prompt": "Unrelated: the moon is", "max_tokens": 2, "temperature": 0})
    stats = _stats(client)
    prefilled = stats.prefill_tokens
    several = await _completion(client, n=3, seed=7)
    assert [c["index"] for c in several["choices"]] == [0, 1, 2]
    assert all(c["text"] == single["choices"][0]["text"] for c in several["choices"])
    assert several["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]
    assert several["usage"]["completion_tokens"] == 3 * single["usage"]["completion_tokens"]
    # One prefill for three answers: at most the prompt once (less if a slot held part).
    assert stats.prefill_tokens - prefilled <= single["usage"]["prompt_tokens"]


async def test_sampled_choices_differ_and_a_seed_repeats_them(make_backend) -> None:
    client = await make_backend(slots=4)
    body = {"n": 4, "seed": 123, "temperature": 1.2, "max_tokens": 12}
    first = await _completion(client, **body)
    again = await _completion(client, **body)
    texts = [c["text"] for c in first["choices"]]
    assert texts == [c["text"] for c in again["choices"]]
    assert len(set(texts)) > 1  # each choice has its own seed (the request's + index)


async def test_streamed_choices_carry_their_index_and_one_usage(make_backend) -> None:
    client = await make_backend(slots=2)
    chat = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8,
            "temperature": 0}
    alone = await client.post("/v1/chat/completions", headers=AUTH, json=chat)
    single = await alone.json()
    response = await client.post("/v1/chat/completions", headers=AUTH, json={
        **chat, "n": 2, "stream": True, "stream_options": {"include_usage": True}})
    assert response.status == 200
    parsed = chunks([event async for event in iter_events(response)])
    texts = {0: "", 1: ""}
    finishes = {}
    for chunk in parsed[:-1]:
        (choice,) = chunk["choices"]
        texts[choice["index"]] += choice["delta"].get("content") or ""
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    expected = single["choices"][0]["message"]["content"]
    assert texts == {0: expected, 1: expected}
    assert finishes == {0: single["choices"][0]["finish_reason"],
                        1: single["choices"][0]["finish_reason"]}
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"] == {
        "prompt_tokens": single["usage"]["prompt_tokens"],
        "completion_tokens": 2 * single["usage"]["completion_tokens"],
        "total_tokens": single["usage"]["prompt_tokens"]
        + 2 * single["usage"]["completion_tokens"]}


async def test_more_choices_than_slots_is_a_clear_400(make_backend) -> None:
    client = await make_backend(slots=2)
    response = await client.post("/v1/completions", headers=AUTH, json={
        "prompt": PROMPT, "max_tokens": 2, "n": 3})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["param"] == "n" and "CEREBRUM_SLOTS" in error["message"]
    response = await client.post("/v1/completions", headers=AUTH, json={
        "prompt": PROMPT, "max_tokens": 2, "n": 0})
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "n"
