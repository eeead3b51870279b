"""Items 7 and 8: what a client can write into the logs, through the real ``cm4_app.py``
with its default text logs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.services import ROOT, clean_env, free_port, wait_healthy

pytestmark = pytest.mark.reliability

KEY = "log-forgery-test-client-key"
SECRET = "topsecret-key-in-a-bad-header"


@attrs.define
class Running:
    port: int
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    log = tmp_path_factory.mktemp("logs") / "cm4.log"
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "cm4_app.py"), "--host", "127.0.0.1", "--port", str(port),
             "--env-file", "/dev/null"], cwd=ROOT, stdout=out, stderr=out,
            env=clean_env(CEREBRUM_BACKEND_URL=f"http://127.0.0.1:{free_port()}",
                          CEREBRUM_CLIENT_API_KEYS=KEY, CEREBRUM_CONNECT_TIMEOUT_S="1"))
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process, log)
        yield Running(port, log)
    finally:
        process.terminate()
        process.wait(30)


def test_a_model_name_cannot_forge_a_text_log_line(orchestrator: Running) -> None:
    body = json.dumps({"model": "x\nFORGED 2026 INFO admin logged in\x1b[2J\x1b]0;pwned\x07",
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{orchestrator.port}/v1/chat/completions",
                                     data=body, headers={"X-API-Key": KEY,
                                                         "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as exc:
        exc.read()
    for _ in range(200):  # the completion line is written just after the answer
        if "completion" in orchestrator.text():
            break
        time.sleep(0.05)
    text = orchestrator.text()
    assert "FORGED" in text  # it was logged, escaped
    assert not any(line.startswith("FORGED") for line in text.splitlines())
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[2J" in text


async def test_malformed_headers_are_logged_briefly_and_without_the_key(
        orchestrator: Running) -> None:
    before = len(orchestrator.text().splitlines())
    requests = [
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-API-Key : " + SECRET.encode() + b"\r\n\r\n",
        b"GET /v1/models HTTP/1.1\nHost: x\nX-API-Key: " + SECRET.encode() + b"\x01\n\n",
    ]
    for index in range(100):
        reader, writer = await asyncio.open_connection("127.0.0.1", orchestrator.port)
        writer.write(requests[index % 2])
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert b" 400 " in status, status
        writer.close()
    await asyncio.sleep(0.2)
    lines = orchestrator.text().splitlines()[before:]
    assert SECRET not in "\n".join(lines)
    assert len(lines) <= 5, lines



async def test_broken_compressed_bodies_are_logged_briefly(orchestrator: Running) -> None:
    before = len(orchestrator.text().splitlines())
    body = b"\x1f\x8bnot compressed at all"
    for index in range(60):
        encoding = ("gzip", "deflate", "br", "zstd")[index % 4]
        reader, writer = await asyncio.open_connection("127.0.0.1", orchestrator.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-API-Key: "
                     + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Encoding: " + encoding.encode() + b"\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert b" 400 " in status, (encoding, status)
        writer.close()
    await asyncio.sleep(0.2)
    lines = orchestrator.text().splitlines()[before:]
    assert not any("Traceback" in line for line in lines), lines
    # What the client was told is what the completion line says.
    completions = [line for line in lines if " completion " in line]
    assert completions and all("status=400" in line for line in completions), completions
    assert len(lines) <= 60 + 6, lines  # one completion line each, at most, and a few more

def test_the_rate_limit_counts_what_it_held_back() -> None:
    from cerebrum.log import RateLimit

    now = [0.0]
    limit = RateLimit(lambda record: True, interval_s=10, clock=lambda: now[0])
    import logging

    def record() -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, "f", 1,
                                 "socket.accept() out of system resource", None, None)

    assert limit.filter(record())
    assert not any(limit.filter(record()) for _ in range(1000))
    now[0] = 11.0
    first = record()
    assert limit.filter(first) and "1000 more" in first.getMessage()


def test_the_text_formatter_escapes_fields_too() -> None:
    import logging

    from cerebrum.log import TextFormatter

    record = logging.LogRecord("x", logging.INFO, "f", 1, "completion %s", ("ok",), None)
    record.request_id = "-"
    record.model = "m\r\nFORGED"
    line = TextFormatter().format(record)
    assert "\n" not in line and "model=m\\r\\nFORGED" in line
