"""Prompt preparation: optimisation, routing and the opt-outs, pure and through the proxy."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import pytest

from cerebrum.openai_wire import structure_request
from cerebrum.orchestrator import preparation
from cerebrum.orchestrator.preparation import (
    Catalogue,
    PreparedRequest,
    prepare_request,
    wants_optimization,
)
from cerebrum.prompt.tokens import estimate_tokens
from cerebrum.protocol import PROMPT_STATS_HEADER as STATS_HEADER
from tests.orchestrator.conftest import BACKEND_KEY, MakeOrchestrator, MakeStub

FUNCTION = ("def fetch_data(url):\n    import requests\n    response = requests.get(url)\n"
            "    response.raise_for_status()\n    return response.json()\n\n\n")
BIG_PROMPT = FUNCTION * 60 + "Refactor fetch_data to use async/await."

CATALOGUE = Catalogue({"small": 2048, "qwen2.5-coder-1.5b-instruct": 4096, "codellama": None},
                      default_model="small",
                      language_models={"python": "qwen2.5-coder-1.5b-instruct"})


def chat_body(content: str, **extra: object) -> dict:
    return {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": content}], **extra}


def prepare(body: dict, optimize: bool = True, kind: Literal["chat", "text"] = "chat"
            ) -> PreparedRequest:
    return prepare_request(body, structure_request(body, kind), optimize=optimize,
                           catalogue=CATALOGUE)


def test_large_code_prompt_shrinks_and_keeps_the_instruction() -> None:
    prepared = prepare(chat_body(BIG_PROMPT))
    sent = prepared.body["messages"][1]["content"]
    assert prepared.optimized
    assert prepared.prompt_chars_after < 0.4 * prepared.prompt_chars_before
    assert "Refactor fetch_data to use async/await." in sent
    assert FUNCTION.strip() in sent
    assert prepared.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert prepared.prompt_chars_before == len(BIG_PROMPT) + len("Be brief.")


def test_auto_routes_by_language_and_explicit_model_wins() -> None:
    assert prepare(chat_body(BIG_PROMPT, model="auto")).model == "qwen2.5-coder-1.5b-instruct"
    assert prepare(chat_body(BIG_PROMPT)).body["model"] == "qwen2.5-coder-1.5b-instruct"
    assert prepare(chat_body("hello", model="auto")).model == "small"  # plain text: default
    assert prepare(chat_body(BIG_PROMPT, model="small")).model == "small"


def test_opt_out_forwards_the_prompt_unchanged() -> None:
    body = chat_body(BIG_PROMPT, model="small", cerebrum={"optimize": False})
    prepared = prepare(body, optimize=wants_optimization(True, {}, body))
    assert prepared.body["messages"] == body["messages"]
    assert "cerebrum" not in prepared.body  # never forwarded
    assert prepared.stats is None and not prepared.optimized
    assert wants_optimization(True, {"X-Cerebrum-Optimize": "off"}, {}) is False
    assert wants_optimization(False, {"X-Cerebrum-Optimize": "on"}, {}) is True
    assert wants_optimization(True, {}, {"cerebrum": {"optimize": "no"}}) is True  # not a bool


def test_text_prompts_are_optimised_too() -> None:
    prepared = prepare({"model": "small", "prompt": BIG_PROMPT}, kind="text")
    assert prepared.optimized and len(prepared.body["prompt"]) < len(BIG_PROMPT)


def test_an_optimiser_crash_falls_back_to_the_original(monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("optimiser bug")

    monkeypatch.setattr(preparation, "optimize_messages", explode)
    body = chat_body(BIG_PROMPT, model="small")
    prepared = prepare(body)
    assert prepared.body["messages"] == body["messages"]
    assert prepared.prompt_chars_after == prepared.prompt_chars_before
    assert any("optimisation failed" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)
    assert prepared.stats is not None and prepared.stats["skipped_reason"] == "error"


def test_the_stats_always_carry_the_same_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """X-Cerebrum-Prompt-Stats has one field set whatever happened (docs/orchestrator.md)."""
    optimised = prepare(chat_body(BIG_PROMPT, model="small")).report
    fits = prepare(chat_body("hello", model="small")).report  # the "already fits" shortcut
    assert optimised is not None and fits is not None and fits.skipped_reason == "fits"
    many = [{"role": "user", "content": f"question {i}: " + "why? " * 40} for i in range(60)]
    conversation = prepare({"model": "small", "messages": many}).report
    assert conversation is not None
    shed = preparation.wire_stats(conversation)  # 60 messages: over the header's 6 KB
    monkeypatch.setattr(preparation, "optimize_messages", lambda *a, **k: 1 / 0)
    failed = prepare(chat_body(BIG_PROMPT, model="small")).stats
    whole = [preparation.wire_stats(report) for report in (optimised, fits)]
    assert shed["detail_shed"] and shed["messages"]
    assert not any(stats["detail_shed"] for stats in whole)
    assert failed is not None
    assert len({frozenset(stats) for stats in [*whole, shed, failed]}) == 1
    message_fields = {frozenset(m) for stats in [*whole, shed] for m in stats["messages"]}
    assert len(message_fields) == 1  # shedding shortens lists, never drops a field


async def test_the_backend_gets_the_optimised_prompt_and_the_client_the_stats(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    response = await client.post("/v1/chat/completions", json=chat_body(BIG_PROMPT, stream=True))
    assert response.status == 200
    await response.read()
    stats = json.loads(response.headers[STATS_HEADER])
    assert stats["skipped_reason"] is None and stats["reduction"] > 0.6
    sent = stub.received[0].body
    assert sent["model"] == "stub-model"  # routed: the only model there is
    assert sum(len(m["content"]) for m in sent["messages"]) == stats["optimized_chars"]
    assert [m["action"] for m in stats["messages"]] == ["kept", "optimized"]
    assert stats["messages"][1]["kept"][0]["name"] == "fetch_data"
    assert "named in the question" in stats["messages"][1]["kept"][0]["why"]
    off = await client.post("/v1/chat/completions", json=chat_body(BIG_PROMPT),
                            headers={"X-Cerebrum-Optimize": "off"})
    assert off.status == 200 and STATS_HEADER not in off.headers
    assert stub.received[1].body["messages"][1]["content"] == BIG_PROMPT


@pytest.mark.parametrize("options, param", [
    ({"bogus": 1}, "cerebrum.bogus"),
    ({"optimize": "false"}, "cerebrum.optimize"),  # a string: optimisation stayed on
    ("workspace", "cerebrum"),
])
async def test_options_the_orchestrator_would_not_read_are_refused(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, options: object,
        param: str) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    for path in ("/v1/chat/completions", "/v1/optimize"):
        response = await client.post(path, json=chat_body("Hi.", cerebrum=options))
        assert response.status == 400, path
        assert (await response.json())["error"]["param"] == param
    assert stub.received == []
    fine = await client.post("/v1/chat/completions",
                             json=chat_body("Hi.", cerebrum={"optimize": False, "session": "s"}))
    assert fine.status == 200


async def test_optimize_dry_run(make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    response = await client.post("/v1/optimize", json={"prompt": BIG_PROMPT})
    assert response.status == 200
    result = await response.json()
    assert result["language"] == "python" and result["model"] == "stub-model"
    assert result["prompt"].startswith("Refactor fetch_data") or \
        "Refactor fetch_data" in result["prompt"]
    assert set(result["stats"]) >= {"original_chars", "optimized_chars", "reduction",
                                    "chunks_total", "chunks_unique", "chunks_kept",
                                    "elapsed_ms", "skipped_reason"}
    assert stub.received == []  # nothing generated
    chat = await (await client.post("/v1/optimize", json=chat_body(BIG_PROMPT))).json()
    assert chat["messages"][0]["role"] == "system"
    for bad in ({}, {"prompt": 5}, {"prompt": "x", "messages": []}):
        assert (await client.post("/v1/optimize", json=bad)).status == 400
    empty = await (await client.post("/v1/optimize", json={"prompt": ""})).json()
    assert empty["stats"]["skipped_reason"] == "empty"


def _gibberish(count: int, seed: int = 7) -> str:
    """Random lower-case "words": BPE vocabularies split them far finer than English."""
    import random

    rng = random.Random(seed)
    return " ".join("".join(rng.choice("bcdfghjkmnpqvwxz") for _ in range(rng.randint(4, 9)))
                    for _ in range(count))


@pytest.mark.model
async def test_the_models_own_count_keeps_the_request_within_its_context(
        make_backend: Any, make_orchestrator: MakeOrchestrator) -> None:
    # Prose the estimate undercounts (made-up words: BPE splits them finely)
    # and nothing to trim by relevance: by the estimate it fits SmolLM2's
    # 2048 tokens, by the model's own count it does not, so the orchestrator
    # prepares it again for a smaller context.
    words = _gibberish(3000).split()
    prompt = "Which of these words could be English?\n\n"
    while estimate_tokens(prompt) < 1850:
        prompt += " ".join(words[:12]) + ".\n"
        words = words[12:]
    backend = await make_backend(api_key=BACKEND_KEY)
    client = await make_orchestrator(str(backend.make_url("")), read_timeout_s=120.0)
    body = {"prompt": prompt, "max_tokens": 8}
    original = await (await backend.post("/tokenize", json=body,
                                         headers={"X-API-Key": BACKEND_KEY})).json()
    assert original["count"] > 2048 - 8  # as sent, the backend would refuse it
    # A dry run: the same preparation a completion gets, without generating.
    dry = await (await client.post("/v1/optimize", json=body)).json()
    stats = dry["stats"]
    assert stats["skipped_reason"] is None
    assert stats["counted_tokens"] is not None and stats["counted_tokens"] <= 2048 - 8
    assert stats["estimated_tokens"] < stats["counted_tokens"]  # the estimate alone is under
    assert dry["prompt"].startswith("Which of these words could be English?")
    assert stats["warnings"]  # cut to fit, and said so


async def test_a_question_the_estimate_overcounts_is_not_cut_when_the_model_says_it_fits(
        make_backend: Any, make_orchestrator: MakeOrchestrator) -> None:
    # One word repeated: the estimate counts ~1.5 tokens a word, SmolLM2's
    # tokenizer one. By the estimate the question is over its budget and was
    # cut to two thirds, by the model's count it fits whole.
    question = "word " * 1500
    body = {"messages": [{"role": "user", "content": question}]}
    assert estimate_tokens(question) > 2048 - preparation.DEFAULT_REPLY_TOKENS
    backend = await make_backend(api_key=BACKEND_KEY)
    client = await make_orchestrator(str(backend.make_url("")), read_timeout_s=120.0)
    dry = await (await client.post("/v1/optimize", json=body)).json()
    assert dry["messages"][0]["content"] == question, dry["stats"]
    stats = dry["stats"]
    assert stats["counted_tokens"] <= 2048 - preparation.DEFAULT_REPLY_TOKENS
    assert stats["budget_tokens"] < 2048  # the real budget, not the one it was regrown with


async def test_a_backend_without_tokenize_keeps_the_estimate(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    from cerebrum.orchestrator.state import ORCHESTRATOR
    from cerebrum.orchestrator.token_count import counter_for

    stub, url = await make_stub()
    client = await make_orchestrator(url)
    # Prose near the budget: worth an exact count, and nothing to trim.
    body = {"prompt": "Summarise these notes. "
            + "The deploy failed because the disk was full. " * 60}
    first = await (await client.post("/v1/optimize", json=body)).json()
    # The stub has no /tokenize: the estimate stands.
    assert first["stats"]["counted_tokens"] is None
    pool = client.app[ORCHESTRATOR].pool
    assert set(counter_for(pool).unsupported) == {url}  # remembered: not asked again for a while
    again = await (await client.post("/v1/optimize", json=body)).json()
    assert again["prompt"] == first["prompt"]
