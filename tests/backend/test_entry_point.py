"""The backend as a user runs it, ``python -m cerebrum.backend`` or the checkout's
``vps_app.py``: clear refusals, a listening service, clean stop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.backend_fixtures import chat_body
from tests.services import clean_env, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
# The package's entry point, and the checkout's shim in front of it.
ENTRIES = {"module": [sys.executable, "-m", "cerebrum.backend"],
           "script": [sys.executable, str(ROOT / "vps_app.py")]}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_refuses_to_start_without_a_key(tmp_path, entry: str) -> None:
    result = subprocess.run(ENTRIES[entry], cwd=tmp_path,
                            env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("cerebrum backend: ") and "CEREBRUM_API_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_module_usage_names_the_module(tmp_path) -> None:
    result = subprocess.run([*ENTRIES["module"], "--help"], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m cerebrum.backend ")


def test_bad_setting_is_one_clear_line(tmp_path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "vps_app.py")], cwd=tmp_path,
                            env=clean_env(CEREBRUM_API_KEY="k", CEREBRUM_MAX_QUEUE="lots"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "CEREBRUM_MAX_QUEUE" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_serves_on_loopback_and_stops_cleanly(tmp_path, entry: str) -> None:
    port = free_port()
    (tmp_path / ".env").write_text("CEREBRUM_API_KEY=from-dotenv\n")
    process = subprocess.Popen([*ENTRIES[entry], "--port", str(port)],
                               cwd=tmp_path, env=clean_env(), stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models",
                                         headers={"X-API-Key": "from-dotenv"})
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 200
        # Bound to loopback only by default.
        listening = _listening(port)
        assert listening and all(addr.startswith("127.") for addr in listening)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Traceback" not in stderr


def _listening(port: int) -> list[str]:
    import psutil

    return [conn.laddr.ip for conn in psutil.net_connections(kind="tcp")
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port]


async def _in_flight(session, url: str) -> float:
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    line = next(x for x in text.splitlines() if x.startswith("cerebrum_http_requests_in_flight "))
    return float(line.split()[1]) - 1  # not counting this scrape


@pytest.mark.model
async def test_a_stop_refuses_what_waits_and_finishes_what_generates(tmp_path) -> None:
    import aiohttp

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([*ENTRIES["module"], "--dev", "--port", str(port)], cwd=tmp_path,
                               env=clean_env(CEREBRUM_SLOTS="1"), stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_healthy(url, process)
        async with aiohttp.ClientSession() as session:
            running = await session.post(f"{url}/v1/chat/completions", json=chat_body(
                "Tell a long story.", stream=True, max_tokens=120))
            assert (await running.content.readline()).startswith(b"data: ")  # generating
            waiting = asyncio.create_task(session.post(
                f"{url}/v1/chat/completions", json=chat_body(max_tokens=4)))
            while await _in_flight(session, url) < 2:  # the second waits for the one slot
                await asyncio.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            refused = await asyncio.wait_for(waiting, 10)
            assert refused.status == 503
            assert int(refused.headers["Retry-After"]) >= 1
            assert (await refused.json())["error"]["code"] == "shutting_down"
            answer = await asyncio.wait_for(running.read(), 30)
            assert answer.rstrip().endswith(b"data: [DONE]")
    finally:
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Traceback" not in stderr
