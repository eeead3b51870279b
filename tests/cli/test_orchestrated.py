"""The commands through the real orchestrator (in front of the real backend), and ``up``."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cerebrum.cli.running import read_record
from tests.cli.conftest import (
    CEREBRUM,
    ESCAPE,
    TEST_KEY,
    RunningService,
    Terminal,
    clean_env,
    free_port,
    run_cli,
)
from tests.cli.test_terminal import FIRST_TEXT

# A file the optimiser can shrink: the same function thirty times.
REPEATED = "def double(items):\n    out = []\n    for i in items:\n        out.append(i * 2)\n" \
           "    return out\n\n" * 30


def env_for(home: Path, url: str) -> dict[str, str]:
    return clean_env(home, CEREBRUM_URL=url, CEREBRUM_API_KEY=TEST_KEY)


def test_optimize_shows_the_prompt_and_its_figures(home: Path,
                                                   orchestrator: RunningService) -> None:
    (home / "big.py").write_text(REPEATED)
    result = run_cli("optimize", "Refactor double into a list comprehension", "-f", "big.py",
                     cwd=home, env=env_for(home, orchestrator.url))
    assert result.returncode == 0, result.stderr
    assert "Refactor double" in result.stdout and len(result.stdout) < len(REPEATED)
    first, *reasons = result.stderr.splitlines()
    assert re.fullmatch(r"smollm2-135m · python · \d+ → \d+ chars \(-\d+%\) · chunks \d+ → \d+ "
                        r"unique → \d+ kept · \d+\.\d ms", first), result.stderr
    # Why: the function the instruction names, and the budget it was fitted to.
    assert any("`double`" in line and "named in the question" in line for line in reasons), reasons
    assert reasons[-1].startswith("tokens: ")
    as_json = run_cli("optimize", "Refactor", "-f", "big.py", "--json", cwd=home,
                      env=env_for(home, orchestrator.url))
    assert '"reduction"' in as_json.stdout and not ESCAPE.search(as_json.stdout)


@pytest.mark.model
def test_ask_reports_the_prompt_reduction_and_can_opt_out(home: Path,
                                                          orchestrator: RunningService) -> None:
    (home / "big.py").write_text(REPEATED)
    optimised = run_cli("ask", "Refactor double into a list comprehension", "-f", "big.py",
                        "--max-tokens", "3", cwd=home, env=env_for(home, orchestrator.url))
    assert optimised.returncode == 0, optimised.stderr
    assert re.search(r"· prompt reduction -\d+%$", optimised.stderr.strip()), optimised.stderr
    plain = run_cli("ask", "Say hi.", "--no-optimize", "--max-tokens", "3", cwd=home,
                    env=env_for(home, orchestrator.url))
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr.strip().endswith("· prompt reduction off")
    assert "optimized=False" in orchestrator.log_text()


def test_status_shows_both_services_and_the_breaker(home: Path, orchestrator: RunningService,
                                                    backend: RunningService) -> None:
    result = run_cli("status", "--url", orchestrator.url, "--backend-url", backend.url,
                     cwd=home, env=clean_env(home))
    assert result.returncode == 0, result.stdout
    assert re.search(r"orchestrator\s+\S+\s+ok", result.stdout)
    assert "breaker closed" in result.stdout and "smollm2-135m" in result.stdout
    assert re.search(r"backend\s+\S+\s+ready", result.stdout)


def test_orchestrator_without_the_client_key_is_a_sentence(home: Path,
                                                           orchestrator: RunningService) -> None:
    result = run_cli("ask", "hi", cwd=home, env=clean_env(home, CEREBRUM_URL=orchestrator.url))
    assert result.returncode == 4
    assert "refused the API key" in result.stderr and "Traceback" not in result.stderr


def _up_env(home: Path) -> dict[str, str]:
    # The machine is shared with other tests: the backend's CPU guard must not refuse.
    return clean_env(home, CEREBRUM_MAX_CPU_PERCENT="100000", CEREBRUM_MIN_FREE_RAM_MB="0",
                     CEREBRUM_THREADS="2", TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1")


def _ports() -> list[str]:
    return ["--port", str(free_port()), "--backend-port", str(free_port())]


@pytest.fixture
def needs_orchestrator() -> None:
    if not (Path(__file__).resolve().parents[2] / "cm4_app.py").exists():
        pytest.skip("no orchestrator in this checkout yet")


@pytest.mark.model
def test_up_starts_both_answers_in_the_repl_and_ctrl_d_stops_both(
        home: Path, terminal: list[Terminal], needs_orchestrator: None) -> None:
    ports = _ports()
    up = Terminal([str(CEREBRUM), "up", *ports], cwd=home, env=_up_env(home))
    terminal.append(up)
    up.expect("Cerebrum is up", 90)
    up.expect("›", 10)
    env = stat.S_IMODE((home / ".env").stat().st_mode)
    assert env == 0o600
    key = re.search(r"^CEREBRUM_API_KEY=(\S{43})$", (home / ".env").read_text(), re.M)
    assert key
    assert (home / ".cerebrum/.gitignore").read_text().strip().endswith("*")

    # The answer streams; Ctrl-C stops it but not the services (their own sessions).
    up.send("Write a long story about a dragon.\r")
    up.expect(FIRST_TEXT, 90)
    up.send("\x03")
    up.expect(r"\[stopped\]", 10)
    up.expect("›", 10)
    status = run_cli("status", "--url", f"http://127.0.0.1:{ports[1]}", "--backend-url",
                     f"http://127.0.0.1:{ports[3]}", cwd=home, env=clean_env(home))
    assert status.returncode == 0, status.stdout
    up.send("\x04")
    assert up.wait(40) == 0
    assert "stopped the orchestrator and the backend" in up.text()
    assert "Traceback" not in up.text()
    again = run_cli("status", "--url", f"http://127.0.0.1:{ports[1]}", cwd=home,
                    env=clean_env(home))
    assert again.returncode == 3
    logs = home / ".cerebrum/logs"
    assert "completion client_disconnected" in (logs / "backend.log").read_text()
    assert "completion client_disconnected" in (logs / "orchestrator.log").read_text()


def test_up_no_repl_reuses_the_key_and_stops_on_ctrl_c(home: Path,
                                                       needs_orchestrator: None) -> None:
    (home / ".env").write_text(f"CEREBRUM_API_KEY={TEST_KEY}\n")
    # A folder named like the package where `up` runs (another project, or a checkout
    # seen from its parent) must not stand in for it in the services' processes.
    (home / "cerebrum").mkdir()
    (home / "cerebrum" / "__init__.py").write_text('raise ImportError("not Cerebrum")\n')
    ports = _ports()
    process = subprocess.Popen([str(CEREBRUM), "up", "--no-repl", *ports], cwd=home,
                               env=_up_env(home), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{ports[1]}"
        while True:
            # No URL given: `up` recorded where it runs beside .env, on its own ports.
            status = run_cli("status", cwd=home, env=clean_env(home))
            if status.returncode == 0:
                break
            assert process.poll() is None and time.monotonic() < deadline, status.stdout
            time.sleep(0.3)
        assert url in status.stdout and f"127.0.0.1:{ports[3]}" in status.stdout
        # The existing key is kept: a client with it is let in.
        models = run_cli("ask", "--model", "none-such", "x", cwd=home, env=clean_env(home))
        assert models.returncode == 1 and "none-such" in models.stderr
        assert "The orchestrator rejected the request" in models.stderr
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=40)
    assert process.returncode == 0, stderr
    assert (home / ".env").read_text() == f"CEREBRUM_API_KEY={TEST_KEY}\n"
    assert "stopped the orchestrator and the backend" in stderr and "Traceback" not in stderr
    # The command for other terminals, as this user can type it (not on PATH here).
    assert re.search(rf"from another terminal in {re.escape(str(home))}: "
                     rf"({re.escape(str(CEREBRUM))}|cerebrum) status", stderr), stderr
    assert not (home / ".cerebrum" / "up.json").exists()
    again = run_cli("status", "--url", url, cwd=home, env=clean_env(home))
    assert again.returncode == 3


def test_up_refuses_a_port_in_use(home: Path, backend: RunningService) -> None:
    port = backend.url.rsplit(":", 1)[1]
    result = run_cli("up", "--no-repl", "--backend-port", port, "--port", str(free_port()),
                     cwd=home, env=clean_env(home))
    assert result.returncode == 2
    assert f"Port {port}" in result.stderr and "Traceback" not in result.stderr
    assert not (home / ".env").exists()


@pytest.mark.parametrize("how", ["hang-up", "kill -9"])
def test_up_never_leaves_the_services_behind(home: Path, needs_orchestrator: None,
                                             how: str) -> None:
    """Closing the terminal, or killing `cerebrum up` outright, stops both services."""
    (home / ".env").write_text(f"CEREBRUM_API_KEY={TEST_KEY}\n")
    ports = _ports()
    process = subprocess.Popen([str(CEREBRUM), "up", "--no-repl", *ports], cwd=home,
                               env=_up_env(home), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, backend_url = f"http://127.0.0.1:{ports[1]}", f"http://127.0.0.1:{ports[3]}"
    deadline = time.monotonic() + 60
    while run_cli("status", "--url", url, "--backend-url", backend_url, cwd=home,
                  env=clean_env(home)).returncode != 0:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.3)
    process.send_signal(signal.SIGHUP if how == "hang-up" else signal.SIGKILL)
    process.wait(timeout=40)
    # Killed outright, `up` cannot remove its record; the others see it is stale.
    assert read_record(home / ".env") is None
    deadline = time.monotonic() + 30
    while any(_listening(int(port)) for port in (ports[1], ports[3])):
        assert time.monotonic() < deadline, "a service outlived cerebrum up"
        time.sleep(0.3)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_and_serve_need_no_checkout(home: Path, tmp_path: Path,
                                       needs_orchestrator: None) -> None:
    """The package alone, as pip installs it (no vps_app.py, cm4_app.py or checkout
    around it), runs both services: they start as python -m cerebrum.SERVICE."""
    site = tmp_path / "site"
    shutil.copytree(Path(__file__).resolve().parents[2] / "cerebrum", site / "cerebrum",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # PYTHONPATH is searched before the development install's finder.
    env = {**_up_env(home), "PYTHONPATH": str(site)}
    cli = [sys.executable, "-m", "cerebrum.cli.main"]
    usage = subprocess.run([*cli, "serve", "backend", "--help"], cwd=home, env=env,
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: cerebrum serve backend")
    ports = _ports()
    process = subprocess.Popen([*cli, "up", "--no-repl", *ports], cwd=home, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while run_cli("status", cwd=home, env=clean_env(home)).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=40)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
