"""End to end: the real ``vps_app.py`` on the embedded model behind the real ``cm4_app.py``,
both in their own processes on loopback sockets, driven by the openai SDK.

Covers a streamed answer, request correlation across both services' logs, the
circuit breaker opening when the backend stops and closing after the cooldown
when it returns, and a client disconnect stopping the backend's generation.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.services import Service, backend_and_orchestrator

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m"
COOLDOWN_S = 1.0


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    with backend_and_orchestrator(tmp_path, orchestrator_env={
        "CEREBRUM_BREAKER_COOLDOWN_S": str(COOLDOWN_S),
        "CEREBRUM_BREAKER_FAILURE_THRESHOLD": "1",
        "CEREBRUM_CONNECT_TIMEOUT_S": "2",
    }) as pair:
        yield pair


def _sdk(orchestrator: Service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{orchestrator.port}/v1", api_key="unused",
                         max_retries=0, timeout=120)


def _post(orchestrator: Service, body: dict[str, Any]) -> tuple[int, dict[str, str], float]:
    request = urllib.request.Request(f"http://127.0.0.1:{orchestrator.port}/v1/chat/completions",
                                     data=json.dumps(body).encode(),
                                     # Every call must reach the backend: no cached answers.
                                     headers={"Content-Type": "application/json",
                                              "Cache-Control": "no-store"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status, dict(response.headers), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code, dict(exc.headers), time.monotonic() - started


SHORT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4,
         "temperature": 0}


def test_streamed_answer_correlated_across_both_logs(services: tuple[Service, Service]) -> None:
    backend, orchestrator = services
    with _sdk(orchestrator) as sdk:
        stream = sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Name a color."}],
            max_tokens=12, temperature=0, stream=True,
            extra_headers={"X-Request-ID": "e2e-correlation-1"})
        pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces).strip()
    assert sum(1 for p in pieces if p) >= 2  # token by token, not one lump
    mine = orchestrator.wait_for_line(request_id="e2e-correlation-1", event="completion")
    theirs = backend.wait_for_line(request_id="e2e-correlation-1", event="completion")
    assert mine["outcome"] == "ok" and mine["completion_tokens"] == theirs["completion_tokens"] > 0
    assert mine["backend"] == f"127.0.0.1:{backend.port}"
    assert [line for line in orchestrator.lines()
            if line["request_id"] == "e2e-correlation-1" and line.get("event") == "completion"
            ] == [mine]  # exactly one completion line


def test_breaker_opens_when_the_backend_stops_and_recovers(
        services: tuple[Service, Service]) -> None:
    backend, orchestrator = services
    assert _post(orchestrator, SHORT)[0] == 200
    backend.stop()
    status, headers, _ = _post(orchestrator, SHORT)
    assert status == 503  # refused: the circuit opens (threshold 1)
    status, headers, elapsed = _post(orchestrator, SHORT)
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert elapsed < 0.5  # fast: the backend is not even tried
    health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{orchestrator.port}/health"))
    assert health["backends"][0]["breaker"] == "open"
    backend.start()
    deadline = time.monotonic() + COOLDOWN_S + 30
    while (status := _post(orchestrator, SHORT)[0]) != 200:
        # Until the cooldown has run out the circuit still refuses; then one probe closes it.
        assert status == 503 and time.monotonic() < deadline
        time.sleep(0.2)
    health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{orchestrator.port}/health"))
    assert health["backends"][0]["breaker"] == "closed"
    transitions = [(line["breaker_from"], line["breaker_to"]) for line in orchestrator.lines()
                   if "breaker_to" in line]
    assert transitions[:3] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_client_disconnect_stops_the_backend(services: tuple[Service, Service]) -> None:
    backend, orchestrator = services
    assert _post(orchestrator, SHORT)[0] == 200  # the model is loaded
    with _sdk(orchestrator) as sdk:
        stream = sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Count from 1 to 1000."}],
            max_tokens=1000, temperature=0, stream=True,
            extra_headers={"X-Request-ID": "e2e-disconnect-1"})
        for n, _ in enumerate(stream):
            if n == 3:
                break
        stream.close()  # the client goes away after a few tokens
    done = backend.wait_for_line(request_id="e2e-disconnect-1", event="completion")
    assert done["outcome"] == "client_disconnected"
    assert done["completion_tokens"] < 1000
    mine = orchestrator.wait_for_line(request_id="e2e-disconnect-1", event="completion")
    assert mine["outcome"] == "client_disconnected"
    status, _, elapsed = _post(orchestrator, SHORT)  # the model is free at once
    assert status == 200 and elapsed < 10


def test_ttfb_means_the_same_in_both_logs(services: tuple[Service, Service]) -> None:
    """ttfb_ms: request to the answer's first byte in both services (docs/metrics.md), so the
    orchestrator's figure contains the backend's; the backend adds ttft_ms, the first token."""
    backend, orchestrator = services
    for n, stream in enumerate((True, False)):
        request_id = f"e2e-ttfb-{n}"
        body = {**SHORT, "stream": stream}
        request = urllib.request.Request(
            f"http://127.0.0.1:{orchestrator.port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Cache-Control": "no-store",
                     "X-Request-ID": request_id})
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
        mine = orchestrator.wait_for_line(request_id=request_id, event="completion")
        theirs = backend.wait_for_line(request_id=request_id, event="completion")
        # Causal order, not speed: the orchestrator starts before the backend does and
        # writes its first byte after the backend's has arrived.
        assert 0 < theirs["ttfb_ms"] <= mine["ttfb_ms"] <= mine["duration_ms"], (mine, theirs)
        assert theirs["ttft_ms"] <= theirs["duration_ms"]
        if stream:
            # The first event (the role) leaves once the prompt is read, before any token.
            assert theirs["ttfb_ms"] <= theirs["ttft_ms"]
        else:
            # A whole answer's first byte is sent after its last token.
            assert theirs["ttft_ms"] <= theirs["ttfb_ms"]
