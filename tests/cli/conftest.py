"""Fixtures for the command line: real services in subprocesses, the console script, a pty."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.services import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
CEREBRUM = Path(sys.executable).parent / "cerebrum"
TEST_KEY = "cli-test-key-0123456789"
ESCAPE = re.compile(r"\x1b[\[\]()]")


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with no Cerebrum settings, HOME in ``tmp``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CEREBRUM_", "XDG_")) and k not in ("NO_COLOR", "TERM")}
    env.update(HOME=str(tmp), PYTHONUNBUFFERED="1", **extra)
    return env


@attrs.define
class RunningService:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _start(tmp: Path, script: str, args: list[str], env: dict[str, str]) -> RunningService:
    """``script`` on a free loopback port, its output in a log file, once healthy."""
    port = free_port()
    log = tmp / f"{Path(script).stem}-{port}.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen([sys.executable, str(ROOT / script), "--host", "127.0.0.1",
                                    "--port", str(port), *args],
                                   cwd=tmp, env=env, stdout=handle, stderr=subprocess.STDOUT)
    service = RunningService(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_healthy(service.url, process, log)
    except BaseException:
        service.stop()
        raise
    return service


def start_backend(tmp: Path, **settings: str) -> RunningService:
    """``vps_app.py`` on a free loopback port with the test key and the embedded model."""
    # Other test processes share the CPU and RAM; the guard must not refuse us.
    defaults = {"CEREBRUM_MAX_CPU_PERCENT": "100000", "CEREBRUM_MIN_FREE_RAM_MB": "0"}
    return _start(tmp, "vps_app.py", [], clean_env(tmp, CEREBRUM_API_KEY=TEST_KEY,
                                                   CEREBRUM_THREADS="2",
                                                   **{**defaults, **settings}))


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """One real backend for the whole CLI suite (the model loads on first use)."""
    service = start_backend(tmp_path_factory.mktemp("backend"))
    yield service
    assert service.stop() == 0, service.log_text()


def start_orchestrator(tmp: Path, backend_url: str, **settings: str) -> RunningService:
    """``cm4_app.py`` on loopback in front of ``backend_url``, asking clients for the test key
    (``settings``: more ``CEREBRUM_*`` variables)."""
    return _start(tmp, "cm4_app.py", [], clean_env(tmp, CEREBRUM_API_KEY=TEST_KEY,
                                                   CEREBRUM_BACKEND_URL=backend_url,
                                                   CEREBRUM_CLIENT_API_KEYS=TEST_KEY,
                                                   **settings))


@pytest.fixture(scope="session")
def orchestrator(backend: RunningService,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The real orchestrator in front of the suite's backend."""
    if not (ROOT / "cm4_app.py").exists():
        pytest.skip("no orchestrator in this checkout yet")
    service = start_orchestrator(tmp_path_factory.mktemp("orchestrator"), backend.url)
    yield service
    assert service.stop() == 0, service.log_text()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A user's working directory and HOME, without a .env."""
    return tmp_path


def run_cli(*args: str, cwd: Path, env: dict[str, str], input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The console script in a subprocess, output captured (so: piped, not a terminal)."""
    assert CEREBRUM.exists(), f"{CEREBRUM} missing: run `pip install --no-deps -e .`"
    return subprocess.run([str(CEREBRUM), *args], cwd=cwd, env=env, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


class Terminal:
    """A program on a pseudo-terminal: what a user at a terminal sees and types."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str],
                 rows: int = 40, cols: int = 120) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: its controlling terminal is the pty
            try:
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.output = b""
        self.mark = 0
        self.status: int | None = None

    def send(self, data: str | bytes) -> None:
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not chunk:
            return False
        self.output += chunk
        return True

    def expect(self, pattern: str, timeout: float = 60) -> re.Match[bytes]:
        """Wait for ``pattern`` (a regex) in the output after the last match."""
        regex = re.compile(pattern.encode(), re.S)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output, self.mark)
            if match:
                self.mark = match.end()
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(min(remaining, 0.2)):
                if not (match := regex.search(self.output, self.mark)):
                    raise AssertionError(f"{pattern!r} not seen; output:\n{self.text()[-3000:]}")
                self.mark = match.end()
                return match

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def wait(self, timeout: float = 30) -> int:
        """Wait for exit, reading output meanwhile; returns the exit status."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            assert time.monotonic() < deadline, f"still running; output:\n{self.text()[-3000:]}"
            self._read(0.1)
        while self._read(0.05) and select.select([self.fd], [], [], 0)[0]:
            pass
        return self.status

    def close(self) -> None:
        if self.status is None:
            with_timeout = time.monotonic() + 5
            os.kill(self.pid, signal.SIGTERM)
            while time.monotonic() < with_timeout:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.status = os.waitstatus_to_exitcode(status)
                    break
                time.sleep(0.05)
            else:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def terminal() -> Iterator[list[Terminal]]:
    """Terminals opened by a test (append them); closed at the end."""
    opened: list[Terminal] = []
    yield opened
    for term in opened:
        term.close()
