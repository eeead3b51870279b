"""llama.cpp's own ``llama-server`` for the tests: built once per machine, started on loopback.

The binary comes from ``bench/build_llama_server.sh`` (the C++ source vendored in
the llama-cpp-python sdist, cached under ``bench/.cache/``; a few minutes on 2
cores the first time, instant after). The tests skip, saying why, only when a
build is impossible here: no C++ toolchain, or the sdist cannot be had.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cerebrum.backend.repacking import llama_server_flags
from tests.services import ROOT, clean_env, free_port, stop_process, wait_healthy

BUILD_SCRIPT = ROOT / "bench" / "build_llama_server.sh"
BUILD_TIMEOUT_S = 60 * 60  # a cold build on a slow CI runner, with margin
MODEL_ALIAS = "smollm2-135m"
"""The id llama-server reports: the same as ``vps_app.py``'s, so both serve one model."""


def build_llama_server(log: Path) -> Path:
    """The llama-server binary, building it first if needed; ``pytest.skip`` if impossible."""
    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cannot build llama-server: {', '.join(missing)} not installed "
                    "(scripts/bootstrap.sh installs them)")
    with log.open("wb") as output:
        try:
            done = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=output,
                                  env={**os.environ, "PYTHON": sys.executable},
                                  timeout=BUILD_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"building llama-server took over {BUILD_TIMEOUT_S} s; see {log}")
    lines = done.stdout.decode().split()
    binary = Path(lines[-1]) if lines else None
    if done.returncode == 0 and binary is not None and os.access(binary, os.X_OK):
        return binary
    tail = log.read_text(errors="replace")[-3000:]
    if "pip download" in tail or "No matching distribution" in tail or "sdist" in tail:
        pytest.skip(f"cannot build llama-server: the llama-cpp-python sdist is not available "
                    f"here:\n{tail}")
    pytest.fail(f"building llama-server failed (exit {done.returncode}):\n{tail}")


class LlamaServer:
    """One ``llama-server`` process on the embedded model, logging to a file."""

    def __init__(self, binary: Path, model: Path, log: Path, *, slots: int = 1,
                 context: int = 2048, threads: int = 2) -> None:
        self.binary, self.model, self.log = binary, model, log
        self.slots, self.context, self.threads = slots, context, threads
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        """How the orchestrator names this backend (its host:port)."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "-m", str(self.model), "--alias", MODEL_ALIAS,
                 "-t", str(self.threads), "-tb", str(self.threads),
                 "-c", str(self.context * self.slots), "-np", str(self.slots),
                 "--host", "127.0.0.1", "--port", str(self.port), *llama_server_flags()],
                env=clean_env(), stdout=log, stderr=log)
        # /health answers 503 while the model loads, then 200.
        wait_healthy(self.url, self.process, self.log)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
