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
    return str((await response.json())["choices"][0]["message"]["content"])


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


async def test_a_request_cancelled_before_its_first_step_leaves_the_cache_as_it_was(
        make_backend) -> None:
    # A slot's old state is saved, and a cached one restored, only at the
    # request's first step: a request that ends before it must put back the
    # state it took out of the cache, and leave its slot's state alone.
    client = await make_backend(slots=1, prompt_cache_mb=64)
    fruits = "Here is a list of fruits: apple, banana,"
    first = await _whole(client, fruits, 10)
    await _whole(client, "Unrelated: the sky is blue because", 10)  # fruits to the cache
    engine = _engine(client)
    assert len(engine.cache) == 1
    admit = engine._admit

    def admit_then_cancel(req: Any) -> None:
        admit(req)
        req.generation.cancel_event.set()  # the client leaves before the first step

    engine._admit = admit_then_cancel  # type: ignore[method-assign]
    response = await client.post("/v1/completions", headers=AUTH, json={
        "prompt": fruits, "max_tokens": 10, "temperature": 0})
    await response.read()
    assert response.status != 401
    engine._admit = admit  # type: ignore[method-assign]
    assert engine.stats.restores == 0 and len(engine.cache) == 1
    unrelated_left = engine.stats.prefill_tokens
    again = await _whole(client, fruits, 10)
    assert engine.stats.restores == 1 and again == first
    assert engine.stats.prefill_tokens - unrelated_left < 5  # only the last prompt token


async def test_a_state_spilled_to_disk_restores_the_same_output(make_backend, tmp_path) -> None:
    # No RAM for saved states at all: the displaced conversation goes to a
    # file, and comes back from it.
    client = await make_backend(slots=1, prompt_cache_mb=0, prompt_cache_disk_mb=256,
                                prompt_cache_dir=tmp_path)
    fruits = "Here is a list of fruits: apple, banana, cherry, grape,"
    first = await _whole(client, fruits, 10)
    await _whole(client, "Unrelated: the sky is blue because", 10)
    engine = _engine(client)
    assert engine.cache.size_bytes == 0 and engine.cache.disk_bytes > 100_000
    assert len(list((tmp_path / MODEL).glob("*.kv"))) == 1
    prefilled = engine.stats.prefill_tokens
    again = await _whole(client, fruits, 10)
    assert again == first
    assert engine.stats.restores == 1 and engine.cache.stats.disk_hits == 1
    assert engine.stats.prefill_tokens - prefilled == 1  # only the last prompt token
    from tests.backend.test_metrics import scrape, value

    samples = await scrape(client)
    assert value(samples, "cerebrum_prompt_cache_disk_hits_total", model=MODEL) == 1


async def test_saved_state_restores_into_another_slot(make_backend) -> None:
    client = await make_backend(slots=2, prompt_cache_mb=64)
    fruits = "Here is a list of fruits, in no particular order: apple, banana,"
    first = await _whole(client, fruits, 10)                        # slot 0
    await _whole(client, "Unrelated: the sky is blue because", 10)  # slot 1 (empty)
    await _whole(client, "Another topic: a good cup of tea", 10)   # slot 0 (LRU): saved
    engine = _engine(client)
    assert engine.cache.stats.saves == 1
    again = await _whole(client, fruits, 10)  # restored into slot 1, the LRU one now
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
    # A saved state is given back when RAM later falls below the floor.
    reader.ram_mb = floor + 200
    await _whole(client, "Yet another prompt about something else, " * 4, 4)
    await _whole(client, "And a last one on a different subject, " * 4, 4)
    assert len(engine.cache) >= 1
    reader.ram_mb = floor - 1  # (the guard would refuse requests; the engine trims anyway)
    engine.cache.trim()
    assert len(engine.cache) == 0


async def test_metrics_show_prefill_reuse_cache_and_slots(make_backend) -> None:
    from tests.backend.test_metrics import scrape, value

    client = await make_backend(slots=1, prompt_cache_mb=64)
    fruits = "Here is a list of fruits, in no particular order: apple, banana, cherry,"
    first = await _whole(client, fruits, 4)
    await _whole(client, "Unrelated to fruit: the sky is blue during the day because", 4)
    await _whole(client, fruits, 4)
    samples = await scrape(client)
    model = {"model": MODEL}
    engine = _engine(client)
    assert value(samples, "cerebrum_prompt_tokens_computed_total", **model) == \
        engine.stats.prefill_tokens
    # The third request reused all of the first one's prompt but its last token.
    assert value(samples, "cerebrum_prompt_tokens_reused_total", **model) == \
        first["usage"]["prompt_tokens"] - 1
    assert value(samples, "cerebrum_prompt_cache_saves_total", **model) == 2
    assert value(samples, "cerebrum_prompt_cache_hits_total", **model) == 1
    assert value(samples, "cerebrum_prompt_cache_entries", **model) == 1
    assert value(samples, "cerebrum_prompt_cache_bytes", **model) > 100_000
    assert value(samples, "cerebrum_engine_slots", model=MODEL, state="idle") == 1
    assert value(samples, "cerebrum_engine_threads", **model) >= 1
    assert value(samples, "cerebrum_engine_thread_switches_total", **model) == \
        engine.threads.switches
    assert value(samples, "cerebrum_engine_thread_probes_total", **model) == \
        engine.threads.probes
    assert value(samples, "cerebrum_engine_steps_total", **model) >= 12


class _ScriptedTuner:
    """Stands in for the ThreadTuner: alternates 1 and 2 threads, records what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[int | None, int]] = []
        self._next = 1

    def choose(self, key: int | None) -> int:
        self._next = 3 - self._next
        return self._next

    def observe(self, key: int | None, threads: int, seconds: float) -> None:
        assert seconds > 0
        self.seen.append((key, threads))


async def test_each_step_runs_on_the_tuners_thread_count_with_the_same_text(make_backend) -> None:
    # How the tuner decides is tested without a model (test_scheduler.py);
    # here: the engine applies its choice step by step, reports every decode
    # step back to it (prompt chunks as key None, decode steps by batch
    # size), and a change of thread count does not change greedy text.
    client = await make_backend(slots=2, threads=2)
    fixed = await _whole(client, PROMPTS[0], 12)
    engine = _engine(client)
    tuner = _ScriptedTuner()
    engine.threads = tuner  # type: ignore[assignment]
    await _whole(client, PROMPTS[1], 2)  # another prompt: a prefill step of many tokens
    switching = await _whole(client, PROMPTS[0], 12)
    assert switching == fixed
    assert {threads for _, threads in tuner.seen} == {1, 2}
    assert (None, 1) in tuner.seen or (None, 2) in tuner.seen  # a prompt chunk
    assert (1, 1) in tuner.seen and (1, 2) in tuner.seen  # decode steps of one sequence
    assert engine.stats.threads in (1, 2)


async def test_logprobs_ride_on_the_text_pieces_when_asked() -> None:
    # The hook issue 15 builds the API's `logprobs` on: the engine computes them
    # from the logits row each token was sampled from.
    from cerebrum.backend.generation import Finished, GenerationJob, TextPiece
    from cerebrum.backend.registry import embedded_registry
    from cerebrum.backend.worker import ModelWorker
    from cerebrum.openai_wire import SamplingParams

    worker = ModelWorker(embedded_registry().default, threads=2, slots=2)
    await worker.load()
    try:
        plain = worker.start(GenerationJob(SamplingParams(max_tokens=6, temperature=0),
                                           prompt=PROMPTS[0]))
        asked = worker.start(GenerationJob(SamplingParams(max_tokens=6, temperature=0),
                                           prompt=PROMPTS[0], logprobs=3))
        pieces: dict[str, list[TextPiece]] = {"plain": [], "asked": []}
        for name, generation in (("plain", plain), ("asked", asked)):
            while not isinstance(event := await generation.next_event(), Finished):
                if isinstance(event, TextPiece):
                    pieces[name].append(event)
        assert [p.text for p in pieces["plain"]] == [p.text for p in pieces["asked"]]
        assert all(p.logprobs == () for p in pieces["plain"])
        tokens = [lp for p in pieces["asked"] for lp in p.logprobs]
        assert len(tokens) == 6
        for lp in tokens:
            assert len(lp.top) == 3
            assert lp.logprob <= 0.0
            # Greedy: the sampled token is the most likely one.
            assert lp.top[0] == (lp.token, lp.logprob)
            assert lp.top[0][1] >= lp.top[1][1] >= lp.top[2][1]
    finally:
        await worker.close()


async def _worker_recording_layouts() -> tuple[Any, list[list[int]]]:
    """A loaded 2-slot worker and, filled step by step, each step's sequence ids."""
    from cerebrum.backend.registry import embedded_registry
    from cerebrum.backend.worker import ModelWorker

    layouts: list[list[int]] = []

    def record(engine: Engine) -> None:
        batch = engine._batch
        layouts.append([batch.seq_id[i][0] for i in range(batch.n_tokens)])

    worker = ModelWorker(embedded_registry().default, threads=2, slots=2, on_step=record)
    await worker.load()
    return worker, layouts


async def test_a_step_lays_its_batch_out_in_sequence_order() -> None:
    # With a KV stream per sequence, llama.cpp cuts a batch wherever the
    # sequence id goes down, and each piece is a pass over all the weights.
    # Two requests whose prefixes live in slots 1 and 0, arriving in that
    # order, must still be decoded as one batch laid out 0, 1.
    from cerebrum.backend.generation import Finished, GenerationJob
    from cerebrum.openai_wire import SamplingParams

    worker, layouts = await _worker_recording_layouts()

    def job(prompt: str) -> GenerationJob:
        return GenerationJob(SamplingParams(max_tokens=6, temperature=0), prompt=prompt)

    async def finish(*prompts: str) -> None:
        for generation in [worker.start(job(p)) for p in prompts]:
            while not isinstance(await generation.next_event(), Finished):
                pass

    try:
        first, second = "def fibonacci(n):\n    a, b =", "The capital of France is Paris, and"
        await finish(first)   # slot 0 keeps its tokens
        await finish(second)  # slot 1
        engine = worker.engine
        assert engine is not None
        held = [engine._slots[i].cached[:4] for i in range(2)]
        layouts.clear()
        await finish(second + " the", first + " 1")  # slot 1 arrives first
        assert [s.cached[:4] for s in engine._slots] == held  # each went back to its slot
        both = [layout for layout in layouts if len(set(layout)) == 2]
        assert both, "the two requests never shared a step"
        assert all(layout == sorted(layout) for layout in both), both
    finally:
        await worker.close()


async def test_a_request_arriving_while_another_is_admitted_shares_its_first_step() -> None:
    # Requests of a burst reach the engine a fraction of a millisecond apart,
    # while the first of them is being admitted. They must be planned with
    # it; a new engine, which has not yet measured its step cost, puts them
    # in the first decode step rather than a whole step (15-50 ms) behind it.
    import threading

    from cerebrum.backend.generation import Finished, GenerationJob
    from cerebrum.openai_wire import SamplingParams

    worker, layouts = await _worker_recording_layouts()
    engine = worker.engine
    assert engine is not None
    admitting, second_sent = threading.Event(), threading.Event()
    tokenize = engine._tokenize

    def slow_first_tokenize(job: GenerationJob) -> Any:
        if not admitting.is_set():
            admitting.set()
            second_sent.wait(5)  # the second request is submitted meanwhile
        return tokenize(job)

    engine._tokenize = slow_first_tokenize

    def job(prompt: str) -> GenerationJob:
        return GenerationJob(SamplingParams(max_tokens=4, temperature=0), prompt=prompt)

    try:
        first = worker.start(job(PROMPTS[0]))
        assert await asyncio.get_running_loop().run_in_executor(None, admitting.wait, 5)
        second = worker.start(job(PROMPTS[1]))
        second_sent.set()
        for generation in (first, second):
            while not isinstance(event := await generation.next_event(), Finished):
                pass
            assert event.reason == "length"
        assert len(set(layouts[0])) == 2, layouts[:2]
    finally:
        await worker.close()


class _LinearStepCost:
    """A step cost where each token costs more than the step's fixed part (a 2-core VPS)."""

    def observe(self, tokens: int, seconds: float) -> None:
        pass

    def estimate(self) -> Any:
        from cerebrum.backend.scheduler import StepCost

        return StepCost(fixed=0.004, per_token=0.005)


async def test_where_tokens_cost_most_a_burst_is_prefilled_shortest_first() -> None:
    # Two prompts planned together on a host where each prompt token costs
    # nearly a step: the shorter one is prefilled alone and streams first;
    # its second token waits for the other's first (asked for before it).
    import threading

    from cerebrum.backend.generation import Finished, GenerationJob
    from cerebrum.openai_wire import SamplingParams

    worker, layouts = await _worker_recording_layouts()
    engine = worker.engine
    assert engine is not None
    engine.step_costs = _LinearStepCost()
    admitting, second_sent = threading.Event(), threading.Event()
    tokenize = engine._tokenize

    def slow_first_tokenize(job: GenerationJob) -> Any:
        if not admitting.is_set():
            admitting.set()
            second_sent.wait(5)
        return tokenize(job)

    engine._tokenize = slow_first_tokenize
    long_prompt = ('def fibonacci(n):\n'
                   '    """Return the n-th Fibonacci number, counting from 0."""\n')

    def job(prompt: str) -> GenerationJob:
        return GenerationJob(SamplingParams(max_tokens=3, temperature=0), prompt=prompt)

    try:
        first = worker.start(job(long_prompt))
        assert await asyncio.get_running_loop().run_in_executor(None, admitting.wait, 5)
        second = worker.start(job("Once upon a time"))
        second_sent.set()
        for generation in (first, second):
            while not isinstance(event := await generation.next_event(), Finished):
                pass
            assert event.reason == "length"
    finally:
        await worker.close()
    short_seq, long_seq = layouts[0][0], layouts[1][0]
    assert set(layouts[0]) == {short_seq} and set(layouts[1]) == {long_seq} != {short_seq}
    assert len(layouts[0]) < len(layouts[1])  # the short prompt went first
    assert set(layouts[2]) == {short_seq, long_seq}  # then both decode
