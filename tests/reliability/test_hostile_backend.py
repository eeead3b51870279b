"""Items 3-6, 11, 13-15: a hostile backend costs the orchestrator bounded memory and time.

Each test points the real orchestrator at the stand-in hostile backend (or a
port where connects never complete) and checks the client gets a clean,
prompt error and the orchestrator holds no more than its limits allow.
"""

from __future__ import annotations

import asyncio

import pytest

from cerebrum.orchestrator.backends import BackendPool
from cerebrum.orchestrator.response_cache import is_cacheable
from tests.reliability.conftest import chat
from tests.reliability.hostile import Blackhole

pytestmark = pytest.mark.reliability

BOUND_S = 20  # a request must end well within this; before the fixes some never did


async def _stream_text(response) -> str:
    async with asyncio.timeout(BOUND_S):
        body: bytes = await response.read()
        return body.decode()


async def _post(client, body):
    async with asyncio.timeout(BOUND_S):
        return await client.post("/v1/chat/completions", json=body)


# -- item 3: an SSE line without a newline -----------------------------------------

async def test_an_endless_sse_line_fails_fast_at_the_event_cap(hostile, make_orchestrator) -> None:
    backend, url = hostile
    backend.completion = "endless_line"
    client = await make_orchestrator(url, max_sse_event_bytes=256 * 1024)
    response = await _post(client, chat(stream=True))
    assert response.status == 502
    assert "over 262144 bytes" in (await response.json())["error"]["message"]
    await asyncio.wait_for(backend.disconnected.wait(), BOUND_S)
    # The orchestrator stopped reading soon after the cap (socket buffers aside).
    assert backend.sent_bytes < 16 * 1024 * 1024


async def test_an_endless_line_mid_stream_ends_with_an_error_event(hostile,
                                                                 make_orchestrator) -> None:
    backend, url = hostile
    backend.completion = "good_then_endless_line"
    client = await make_orchestrator(url, max_sse_event_bytes=256 * 1024)
    response = await _post(client, chat(stream=True))
    assert response.status == 200
    text = await _stream_text(response)
    assert text.startswith("data: ") and "event: error" in text
    assert backend.sent_bytes < 16 * 1024 * 1024


# -- item 4: the cache capture of a temperature-0 stream ---------------------------

def test_the_capture_stops_at_its_limit() -> None:
    from cerebrum.orchestrator.response_cache import Capture

    capture = Capture(64 * 1024)
    event = b'data: {"choices": []}\n\n'
    for _ in range(100_000):  # 2.3 MB of an endless stream
        capture.add(event)
    assert capture.overflowed and len(capture.data) == 0 and not capture.complete()


async def test_a_stream_over_the_entry_limit_is_relayed_but_not_cached(hostile,
                                                                      make_orchestrator) -> None:
    backend, url = hostile
    backend.completion, backend.tokens = "stream", 5000  # about 700 KB of events
    client = await make_orchestrator(url, cache_max_entry_bytes=64 * 1024)
    for _ in range(2):
        response = await _post(client, chat(stream=True, temperature=0))
        text = await _stream_text(response)
        assert text.endswith("data: [DONE]\n\n")
        assert response.headers["X-Cerebrum-Cache"] == "miss"
    assert backend.requests == 2


# -- item 5: /v1/models without a cap -------------------------------------------------

async def test_a_huge_model_list_is_refused_unread(hostile, make_orchestrator) -> None:
    backend, url = hostile
    backend.models, backend.models_bytes = "huge", 64 * 1024 * 1024
    client = await make_orchestrator(url, max_models_bytes=256 * 1024)
    async with asyncio.timeout(BOUND_S):
        await client.get("/v1/models")  # waits for the first read of the list
        health = await (await client.get("/health")).json()
    (state,) = health["backends"]
    assert "over 262144 bytes" in state["models_error"]
    assert backend.sent_bytes < 16 * 1024 * 1024


async def test_a_model_list_is_cut_to_max_models(hostile, make_orchestrator) -> None:
    backend, url = hostile
    backend.models, backend.models_count = "many", 100_000
    client = await make_orchestrator(url, max_models_bytes=8 * 1024 * 1024, max_models=50)
    async with asyncio.timeout(BOUND_S):
        await client.get("/v1/models")
        response = await client.get("/health")
        health = await response.json()
    (state,) = health["backends"]
    assert len(state["models"]) == 50
    assert "100000 models" in state["models_error"]
    assert len(await response.read()) < 16 * 1024


# -- item 6: keep-alive comments forever ----------------------------------------------

async def test_only_pings_time_out_and_count_against_the_breaker(hostile,
                                                                 make_orchestrator) -> None:
    backend, url = hostile
    backend.completion = "pings"
    client = await make_orchestrator(url, sse_event_timeout_s=0.5)
    response = await _post(client, chat(stream=True))
    assert response.status == 504
    health = await (await client.get("/health")).json()
    assert health["backends"][0]["consecutive_failures"] == 1


# -- item 11: Retry-After from a backend ------------------------------------------------

@pytest.mark.parametrize("value", ["inf", "1e300", "nan", "-inf", "Wed, 21 Oct 2015 07:28:00 GMT"])
async def test_a_backends_retry_after_is_clamped(hostile, make_orchestrator, value: str) -> None:
    backend, url = hostile
    backend.completion, backend.retry_after = "busy", value
    client = await make_orchestrator(url, max_retry_after_s=120)
    response = await _post(client, chat())
    assert response.status == 503
    assert 1 <= int(response.headers["Retry-After"]) <= 120


# -- item 13: random seeds ------------------------------------------------------------------

@pytest.mark.parametrize("seed", [-1, 4294967295, 2**40])
def test_random_seeds_are_not_deterministic(seed: int) -> None:
    assert not is_cacheable({"seed": seed, "temperature": 0.8})
    assert is_cacheable({"seed": 42, "temperature": 0.8})


async def test_a_random_seed_is_not_served_from_the_cache(hostile, make_orchestrator) -> None:
    backend, url = hostile
    client = await make_orchestrator(url)
    for _ in range(2):
        response = await _post(client, chat(seed=-1, temperature=0.8))
        assert response.status == 200
        assert "X-Cerebrum-Cache" not in response.headers
    assert backend.requests == 2


# -- item 14: invalid events, events after [DONE], a text/html answer -------------------

async def test_an_invalid_event_after_a_good_one_is_not_cached(hostile, make_orchestrator) -> None:
    backend, url = hostile
    backend.completion = "bad_after_good"
    client = await make_orchestrator(url)
    for _ in range(2):
        response = await _post(client, chat(stream=True, temperature=0))
        await _stream_text(response)
        assert response.headers["X-Cerebrum-Cache"] == "miss"
    assert backend.requests == 2


async def test_nothing_after_done_is_relayed(hostile, make_orchestrator) -> None:
    backend, url = hostile
    backend.completion = "after_done"
    client = await make_orchestrator(url)
    text = await _stream_text(await _post(client, chat(stream=True)))
    assert "INJECTED" not in text
    assert text.count("[DONE]") == 1 and text.endswith("data: [DONE]\n\n")


async def test_a_text_html_whole_answer_is_a_502(hostile, make_orchestrator) -> None:
    backend, url = hostile
    backend.content_type = "text/html"
    client = await make_orchestrator(url)
    response = await _post(client, chat())
    assert response.status == 502
    assert response.content_type == "application/json"
    assert "text/html" in (await response.json())["error"]["message"]


async def test_a_non_json_4xx_is_relayed_as_an_openai_error(hostile, make_orchestrator) -> None:
    backend, url = hostile
    backend.status, backend.content_type = 400, "text/html"
    client = await make_orchestrator(url)
    response = await _post(client, chat())
    assert response.status == 400 and response.content_type == "application/json"
    assert (await response.json())["error"]["type"] == "invalid_request_error"


# -- item 15: a connect that never completes ------------------------------------------

async def test_a_blackholed_backend_is_503_unreachable_then_skipped(make_orchestrator,
                                                                   monkeypatch) -> None:
    refreshes = 0
    original = BackendPool._refresh_one

    async def counting(self, *args, **kwargs):
        nonlocal refreshes
        refreshes += 1
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(BackendPool, "_refresh_one", counting)
    hole = Blackhole()
    try:
        client = await make_orchestrator(hole.url, connect_timeout_s=0.3,
                                         breaker_failure_threshold=2, breaker_cooldown_s=60)
        codes = []
        for _ in range(2):
            response = await _post(client, chat())
            assert response.status == 503
            codes.append((await response.json())["error"]["code"])
        assert codes == ["backend_unreachable", "backend_unreachable"]
        before = refreshes
        for _ in range(3):
            response = await _post(client, chat())
            assert response.status == 503
            assert (await response.json())["error"]["code"] == "circuit_open"
        # The open circuit's backend was not asked for its models again.
        assert refreshes == before
    finally:
        hole.close()


# -- session 13's review: encodings, redirects, errors dressed as answers, usage ------

async def test_answers_are_asked_for_uncompressed(hostile, make_orchestrator) -> None:
    # The session reads bodies as sent; a backend behind a compressing proxy must
    # not be asked for gzip (every such answer was a 502 that opened the circuit).
    backend, url = hostile
    backend.completion = "gzip_if_asked"
    client = await make_orchestrator(url)
    for _ in range(4):
        response = await _post(client, chat())
        assert response.status == 200
        assert (await response.json())["choices"][0]["message"]["content"].startswith("word0")
    assert backend.accept_encoding == "identity"


async def test_a_redirect_is_not_followed(hostile, make_orchestrator, aiohttp_server) -> None:
    from aiohttp import web

    stolen: list[bytes] = []

    async def steal(request: web.Request) -> web.Response:
        stolen.append(await request.read())
        return web.json_response({"choices": [{"message": {"content": "from elsewhere"}}]})

    elsewhere = web.Application()
    elsewhere.router.add_post("/steal", steal)
    server = await aiohttp_server(elsewhere)
    backend, url = hostile
    backend.completion, backend.redirect_to = "redirect", str(server.make_url("/steal"))
    client = await make_orchestrator(url)
    for stream in (False, True):
        response = await _post(client, chat("my secret prompt", stream=stream))
        assert response.status == 502
        assert "redirect" in (await response.json())["error"]["message"]
    assert stolen == []


async def test_an_error_dressed_as_an_answer_is_a_502_and_not_cached(hostile,
                                                                     make_orchestrator) -> None:
    backend, url = hostile
    backend.completion = "error_200"
    client = await make_orchestrator(url, breaker_failure_threshold=10)
    for _ in range(2):
        response = await _post(client, chat(temperature=0))
        assert response.status == 502
        assert "overloaded, try later" in (await response.json())["error"]["message"]
    assert backend.requests == 2


async def test_a_whole_answer_to_a_stream_request_is_a_502(hostile, make_orchestrator) -> None:
    backend, url = hostile
    client = await make_orchestrator(url, breaker_failure_threshold=10)
    for _ in range(2):
        response = await _post(client, chat(stream=True, temperature=0))
        assert response.status == 502
        assert "whole answer to a streamed request" in (await response.json())["error"]["message"]
    assert backend.requests == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_absurd_usage_counts_are_unknown(hostile, make_orchestrator, caplog,
                                               stream: bool) -> None:
    backend, url = hostile
    backend.completion = "stream" if stream else "whole"
    backend.tokens = 5
    backend.usage = {"prompt_tokens": 10**400, "completion_tokens": 10**308,
                     "total_tokens": -1, **{f"k{i}": i for i in range(50_000)}}
    client = await make_orchestrator(url)
    for _ in range(2):
        response = await _post(client, chat(stream=stream, temperature=0.7))
        assert response.status == 200
        await response.read()
    await asyncio.sleep(0.05)  # the completion line is written just after the answer
    metrics = await (await client.get("/metrics")).text()
    tokens = [line for line in metrics.splitlines() if line.startswith("cerebrum_tokens_total")]
    assert not any("inf" in line.lower() for line in tokens), tokens  # 10**308: +Inf for good
    assert "OverflowError" not in caplog.text and "Traceback" not in caplog.text


def test_only_the_two_counts_of_a_usage_are_kept() -> None:
    from cerebrum.completion_log import token_counts

    fat = {"prompt_tokens": 5, "completion_tokens": 7, **{f"k{i}": "x" * 10 for i in range(50_000)}}
    assert token_counts(fat) == {"prompt_tokens": 5, "completion_tokens": 7}
    assert token_counts({"prompt_tokens": 10**10, "completion_tokens": "7"}) is None
    assert token_counts([1, 2]) is None
