"""End to end: the real ``vps_app.py`` on the embedded model behind the real ``cm4_app.py``,
both in their own processes on loopback sockets, driven by the openai SDK.

Covers a streamed answer, request correlation across both services' logs, the
circuit breaker opening when the backend stops and closing after the cooldown
when it returns, and a client disconnect stopping the backend's generation.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m"
COOLDOWN_S = 1.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """One service in a subprocess, JSON log lines going to a file."""

    def __init__(self, script: str, args: list[str], env: dict[str, str], log: Path,
                 port: int) -> None:
        self.script, self.args, self.env, self.log, self.port = script, args, env, log, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("CEREBRUM_")}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / self.script), "--host", "127.0.0.1",
                 "--port", str(self.port), "--env-file", os.devnull, *self.args],
                cwd=ROOT, env={**base, **self.env, "CEREBRUM_LOG_JSON": "1"},
                stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except (OSError, urllib.error.URLError):
                # Polling: a process offers nothing else to wait on.
                assert self.process.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, f"{self.script} did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def wait_for_line(self, **fields: Any) -> dict[str, Any]:
        """The first log line with these fields; lines are written just after the answer,
        so poll the file for a while (a subprocess offers nothing to await)."""
        deadline = time.monotonic() + 30
        while True:
            for line in self.lines():
                if all(line.get(key) == value for key, value in fields.items()):
                    return line
            assert time.monotonic() < deadline, f"no log line with {fields} in {self.script}"
            time.sleep(0.05)

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    backend_port, orchestrator_port = _free_port(), _free_port()
    # The resource guard is off: CI (and a busy dev box) run other work beside the model.
    backend = Service("vps_app.py", ["--dev"], {"CEREBRUM_THREADS": "2",
                                                "CEREBRUM_MAX_CPU_PERCENT": "1000",
                                                "CEREBRUM_MIN_FREE_RAM_MB": "0"},
                      tmp_path / "vps.log", backend_port)
    orchestrator = Service("cm4_app.py", [], {
        "CEREBRUM_BACKEND_URL": f"http://127.0.0.1:{backend_port}",
        "CEREBRUM_BREAKER_COOLDOWN_S": str(COOLDOWN_S),
        "CEREBRUM_BREAKER_FAILURE_THRESHOLD": "1",
        "CEREBRUM_CONNECT_TIMEOUT_S": "2",
    }, tmp_path / "cm4.log", orchestrator_port)
    backend.start()
    orchestrator.start()
    try:
        yield backend, orchestrator
    finally:
        orchestrator.stop()
        backend.stop()


def _sdk(orchestrator: Service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{orchestrator.port}/v1", api_key="unused",
                         max_retries=0, timeout=120)


def _post(orchestrator: Service, body: dict[str, Any]) -> tuple[int, dict[str, str], float]:
    request = urllib.request.Request(f"http://127.0.0.1:{orchestrator.port}/v1/chat/completions",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
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
    transitions = [(l["breaker_from"], l["breaker_to"]) for l in orchestrator.lines()
                   if "breaker_to" in l]
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
