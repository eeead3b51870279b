"""``POST /tokenize``: the model's own token count, the one a completion would use."""

from __future__ import annotations

import pytest

from tests.backend_fixtures import AUTH

pytestmark = pytest.mark.model

DIGITS = "values = [" + ", ".join(str(1000 + i * 37) for i in range(60)) + "]\n"


async def test_counts_are_the_completions_prompt_tokens(backend) -> None:
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Explain this:\n" + DIGITS}]
    counted = await backend.post("/tokenize", headers=AUTH, json={"messages": messages})
    assert counted.status == 200
    answer = await counted.json()
    assert "tokens" not in answer and answer["model"]
    done = await backend.post("/v1/chat/completions", headers=AUTH,
                              json={"messages": messages, "max_tokens": 1})
    assert done.status == 200
    assert answer["count"] == (await done.json())["usage"]["prompt_tokens"]
    # One model load for both: a text prompt, and raw content as llama.cpp's server takes it.
    counted = await (await backend.post("/tokenize", headers=AUTH, json={"prompt": DIGITS})).json()
    done = await backend.post("/v1/completions", headers=AUTH,
                              json={"prompt": DIGITS, "max_tokens": 1})
    assert counted["count"] == (await done.json())["usage"]["prompt_tokens"]
    raw = await (await backend.post("/tokenize", headers=AUTH, json={"content": DIGITS})).json()
    assert raw["count"] == len(raw["tokens"]) > len(DIGITS) // 3  # digits are single tokens here
    assert raw["count"] <= counted["count"]  # no BOS on raw content
    # Tools are written into the chat prompt: counted as the completion counts them.
    tool = {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
    with_tools = await (await backend.post("/tokenize", headers=AUTH, json={
        "messages": messages, "tools": [tool]})).json()
    done = await backend.post("/v1/chat/completions", headers=AUTH,
                              json={"messages": messages, "tools": [tool], "max_tokens": 1})
    assert with_tools["count"] == (await done.json())["usage"]["prompt_tokens"]
    assert with_tools["count"] > answer["count"]


@pytest.mark.parametrize(("body", "param"), [
    ({}, None), ({"content": 5}, "content"), ({"content": "a", "prompt": "b"}, None),
    ({"messages": "nope"}, "messages"), ({"content": "a", "model": "nope"}, "model"),
    # Nothing is ignored silently: a field is checked as a completion's, or refused.
    ({"messages": [{"role": "user", "content": "hi"}], "bogus": 1}, "bogus"),
    ({"prompt": "hi", "temperature": "abc"}, "temperature"), ({"content": "a", "x": 1}, "x"),
])
async def test_bad_bodies_get_clear_errors(backend, body: dict, param: str | None) -> None:
    response = await backend.post("/tokenize", headers=AUTH, json=body)
    assert response.status in (400, 404)
    error = (await response.json())["error"]
    assert error["message"]
    assert error.get("param") == param


async def test_needs_the_key(backend) -> None:
    response = await backend.post("/tokenize", json={"content": "hi"})
    assert response.status == 401
