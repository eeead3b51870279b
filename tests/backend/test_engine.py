"""The batching engine on the real model, through the real app: slots, fairness, prompt cache."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cerebrum.backend.engine import Engine
from cerebrum.backend.models import estimated_ram_mb
from cerebrum.backend.worker import kv_mb_per_slot
from tests.backend.sse import chunks, iter_events
from tests.backend_fixtures import AUTH, state_of

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time", "1, 2, 3,"]


def _engine(client: Any) -> Engine:
    worker = state_of(client).models.worker(MODEL)
    assert worker is not None and worker.engine is not None
    return worker.engine


async def _whole(client: Any, prompt: str, max_tokens: int = 12, **extra: Any) -> dict[str, Any]:
    response = await client.post("/v1/completions", headers=AUTH, json={
        "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra})
    assert response.status == 200, await response.text()
    body = await response.json()
    return {"text": body["choices"][0]["text"], "usage": body["usage"]}


async def _streamed(client: Any, prompt: str, max_tokens: int = 12,
                    seen: list[str] | None = None, tag: str = "") -> dict[str, Any]:
    response = await client.post("/v1/completions", headers=AUTH, json={
        "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True})
    assert response.status == 200
    events = []
    async for event in iter_events(response):
        events.append(event)
        if seen is not None and event[0] == "message":
            seen.append(f"{tag}:{'done' if event[1] == '[DONE]' else 'chunk'}")
    parsed = chunks(events)
    return {"text": "".join(c["choices"][0]["text"] for c in parsed),
            "usage": parsed[-1]["usage"]}


async def _chat(client: Any, messages: list[dict[str, str]], max_tokens: int = 8) -> str:
    response = await client.post("/v1/chat/completions", headers=AUTH, json={
        "model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 0})
    assert response.status == 200, await response.text()
    return (await response.json())["choices"][0]["message"]["content"]


@pytest.mark.parametrize("concurrency", [2, 4])
async def test_concurrent_streams_are_batched_and_match_their_solo_runs(
        make_backend, concurrency: int) -> None:
    client = await make_backend(slots=4)
    prompts = PROMPTS[:concurrency]
    alone = [await _whole(client, prompt) for prompt in prompts]
    engine = _engine(client)
    batched_before = engine.stats.batched_steps
    together = await asyncio.gather(*(_streamed(client, prompt) for prompt in prompts))
    assert together == alone  # same text, same exact usage
    assert all(result["usage"]["completion_tokens"] == 12 for result in together)
    # They really shared decode steps (not one after the other).
    assert engine.stats.batched_steps - batched_before >= 12 - 1


async def test_request_arriving_mid_generation_streams_before_the_running_one_ends(
        make_backend) -> None:
    client = await make_backend(slots=2)
    seen: list[str] = []
    # Counting never reaches an end token within the budget.
    long = asyncio.create_task(_streamed(client, "1, 2, 3, 4,", 60, seen, "long"))
    while "long:chunk" not in seen:  # it is generating
        await asyncio.sleep(0.01)
    short = await _streamed(client, "Hello", 3, seen, "short")
    assert short["usage"]["completion_tokens"] == 3
    assert "long:done" not in seen  # the short one finished while the long one ran
    first_short = seen.index("short:chunk")
    assert seen[first_short:].count("long:chunk") > 0  # and the long one kept streaming
    result = await long
    assert result["usage"]["completion_tokens"] == 60


async def test_interleaved_conversations_reuse_their_prefix(make_backend) -> None:
    # One slot for two chats: each turn of the other chat displaces this one
    # into the prompt cache, and its next turn restores it.
    client = await make_backend(slots=1, prompt_cache_mb=64)
    system = {"role": "system", "content": "You are a helpful coding assistant."}
    chats = {
        "a": [system, {"role": "user", "content": "What does this Python code do? "
                                                  "def area(r): return 3.14159 * r * r"}],
        "b": [system, {"role": "user", "content": "Explain this shell line: "
                                                  "find . -name '*.py' | xargs wc -l"}],
    }
    for name in "ab":  # turn 1 of each
        chats[name].append({"role": "assistant", "content": await _chat(client, chats[name])})
    engine = _engine(client)
    for turn in range(2):
        for name in "ab":
            chats[name].append({"role": "user", "content": f"And follow-up number {turn}?"})
            before_prefill = engine.stats.prefill_tokens
            before_reused = engine.stats.reused_tokens
            hits = engine.cache.stats.hits
            chats[name].append({"role": "assistant",
                                "content": await _chat(client, chats[name])})
            prefilled = engine.stats.prefill_tokens - before_prefill
            reused = engine.stats.reused_tokens - before_reused
            # The history came back from the cache: only the new turn was prefilled.
            assert engine.cache.stats.hits == hits + 1
            assert reused > 40
            assert prefilled < 30


async def test_evicted_and_restored_state_gives_the_same_output(make_backend) -> None:
    client = await make_backend(slots=1, prompt_cache_mb=64)
    first = await _whole(client, "Here is a list of fruits: apple, banana,", 10)
    await _whole(client, "Unrelated: the sky is blue because", 10)  # evicts it to the cache
    engine = _engine(client)
    assert len(engine.cache) == 1 and engine.cache.stats.saves == 1
    again = await _whole(client, "Here is a list of fruits: apple, banana,", 10)
    assert engine.stats.restores == 1
    assert again == first


async def test_one_of_four_streams_disconnecting_leaves_the_others_intact(
        make_backend) -> None:
    client = await make_backend(slots=4)
    alone = [await _whole(client, prompt, 16) for prompt in PROMPTS[1:]]

    async def quitter() -> None:
        response = await client.post("/v1/completions", headers=AUTH, json={
            "prompt": PROMPTS[0], "max_tokens": 400, "temperature": 0, "stream": True})
        seen = 0
        async for _ in iter_events(response):
            seen += 1
            if seen == 3:
                break
        response.close()

    results = await asyncio.gather(quitter(), *(_streamed(client, p, 16) for p in PROMPTS[1:]))
    assert list(results[1:]) == alone

    async def slots_free() -> None:
        while _engine(client).slot_states()["idle"] != 4:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(slots_free(), timeout=30)  # the quitter's slot was freed too


async def test_slots_and_prompt_cache_stay_above_the_ram_floor(make_backend, reader) -> None:
    floor = 1024
    spec = state_of(await make_backend()).models.registry.default
    kv = 45.0  # SmolLM2-135M at 2048 tokens: 30 layers x 3 KV heads x 64 x f16, K and V
    reader.ram_mb = floor + estimated_ram_mb(spec) + 2.5 * kv
    client = await make_backend(slots=4, min_free_ram_mb=floor, prompt_cache_mb=64)
    await _whole(client, "Hi", 2)
    worker = state_of(client).models.worker(MODEL)
    assert worker is not None and worker.engine is not None
    assert kv_mb_per_slot(worker._model.model, spec.context_size) == pytest.approx(kv)
    assert worker.slots == 2  # only two slots' KV fit above the floor
    # Now RAM is just above the floor: a saved state (MBs) does not fit, so
    # the cache refuses it and generation goes on without it.
    reader.ram_mb = floor + 0.5
    await asyncio.gather(*(_whole(client, p * 8, 4) for p in PROMPTS[:2]))
    await _whole(client, "Something else entirely, " * 8, 4)
    engine = worker.engine
    assert len(engine.cache) == 0
    assert engine.cache.stats.refused >= 1
