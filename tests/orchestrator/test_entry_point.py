"""The orchestrator as a user runs it, ``python -m cerebrum.orchestrator`` or the checkout's
``cm4_app.py``, and the Pi's promise: llama_cpp is never imported."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import clean_env, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
# The package's entry point, and the checkout's shim in front of it.
ENTRIES = {"module": [sys.executable, "-m", "cerebrum.orchestrator"],
           "script": [sys.executable, str(ROOT / "cm4_app.py")]}


@pytest.mark.parametrize("load", ["runpy.run_path(sys.argv[1], run_name='cm4_app')",
                                  "runpy.run_module('cerebrum.orchestrator', run_name='x')",
                                  "import cerebrum.cli.serve as s; s.load_main('orchestrator')"])
def test_orchestrator_never_imports_llama_cpp(load: str) -> None:
    code = ("import sys, runpy\n"
            "import cerebrum.orchestrator.app, cerebrum.orchestrator.proxy\n"
            f"{load}\n"
            "bad = sorted(m for m in sys.modules\n"
            "             if m.startswith(('llama_cpp', 'cerebrum.backend')))\n"
            "print(bad)\n"
            "sys.exit(1 if bad else 0)\n")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "cm4_app.py")], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_bad_config_is_one_clear_line(tmp_path: Path, entry: str) -> None:
    for env, name in (({}, "CEREBRUM_BACKEND_URL"),
                      ({"CEREBRUM_BACKEND_URL": "http://x:1", "CEREBRUM_MAX_CONCURRENT": "two"},
                       "CEREBRUM_MAX_CONCURRENT")):
        result = subprocess.run(ENTRIES[entry], cwd=tmp_path,
                                env=clean_env(**env), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert result.stderr.startswith("cerebrum orchestrator: ") and name in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_serves_and_stops_cleanly(tmp_path: Path, entry: str) -> None:
    port = free_port()
    (tmp_path / ".env").write_text(f"CEREBRUM_BACKEND_URL=http://127.0.0.1:{free_port()}\n")
    process = subprocess.Popen([*ENTRIES[entry], "--host", "127.0.0.1",
                                "--port", str(port)], cwd=tmp_path, env=clean_env(),
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Traceback" not in stderr
