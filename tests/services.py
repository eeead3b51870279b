"""Real services in subprocesses for the tests: start, wait until healthy, read their logs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any CEREBRUM_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBRUM_")}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, process: subprocess.Popen, log: Path | None = None,
                 timeout: float = 60) -> None:
    """Poll ``url``/health until it answers (a process offers nothing else to wait on);
    fail with the service's log if it exits or does not start in time."""
    deadline = time.monotonic() + timeout
    while True:
        output = log.read_text(errors="replace") if log is not None else ""
        assert process.poll() is None, f"{url}: the service exited:\n{output}"
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:  # URLError included
            assert time.monotonic() < deadline, f"{url}: the service did not start:\n{output}"
            time.sleep(0.1)


def stop_process(process: subprocess.Popen | None) -> None:
    """Stop a service as Ctrl-C would (SIGINT), killing it after 30 s."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Service:
    """One service in a subprocess, JSON log lines going to a file."""

    def __init__(self, script: str, args: list[str], env: dict[str, str], log: Path,
                 port: int) -> None:
        self.script, self.args, self.env, self.log, self.port = script, args, env, log, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / self.script), "--host", "127.0.0.1",
                 "--port", str(self.port), "--env-file", os.devnull, *self.args],
                cwd=ROOT, env=clean_env(**self.env, CEREBRUM_LOG_JSON="1"),
                stdout=log, stderr=log)
        wait_healthy(f"http://127.0.0.1:{self.port}", self.process, self.log)

    def stop(self) -> None:
        stop_process(self.process)
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




@contextlib.contextmanager
def backend_and_orchestrator(
    tmp_path: Path, *, orchestrator_env: dict[str, str] | None = None,
) -> Iterator[tuple[Service, Service]]:
    """The real backend on the embedded model (no key, 2 threads) behind the real
    orchestrator, both started and, at the end, stopped."""
    backend_port, orchestrator_port = free_port(), free_port()
    # The resource guard is off: CI (and a busy dev box) run other work beside the model.
    backend = Service("vps_app.py", ["--dev"], {"CEREBRUM_THREADS": "2",
                                                "CEREBRUM_MAX_CPU_PERCENT": "1000",
                                                "CEREBRUM_MIN_FREE_RAM_MB": "0"},
                      tmp_path / "vps.log", backend_port)
    orchestrator = Service("cm4_app.py", [], {
        "CEREBRUM_BACKEND_URL": f"http://127.0.0.1:{backend_port}",
        **(orchestrator_env or {})}, tmp_path / "cm4.log", orchestrator_port)
    backend.start()
    try:
        orchestrator.start()
        yield backend, orchestrator
    finally:
        orchestrator.stop()
        backend.stop()
