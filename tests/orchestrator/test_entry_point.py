"""``cm4_app.py`` as a user runs it, and the Pi's promise: llama_cpp is never imported."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.services import clean_env, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


def test_orchestrator_never_imports_llama_cpp() -> None:
    code = ("import sys, runpy\n"
            "import cerebrum.orchestrator.app, cerebrum.orchestrator.proxy\n"
            "runpy.run_path(sys.argv[1], run_name='cm4_app')\n"
            "bad = sorted(m for m in sys.modules\n"
            "             if m.startswith(('llama_cpp', 'cerebrum.backend')))\n"
            "print(bad)\n"
            "sys.exit(1 if bad else 0)\n")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "cm4_app.py")], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    for env, name in (({}, "CEREBRUM_BACKEND_URL"),
                      ({"CEREBRUM_BACKEND_URL": "http://x:1", "CEREBRUM_MAX_CONCURRENT": "two"},
                       "CEREBRUM_MAX_CONCURRENT")):
        result = subprocess.run([sys.executable, str(ROOT / "cm4_app.py")], cwd=tmp_path,
                                env=clean_env(**env), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert name in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_serves_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / ".env").write_text(f"CEREBRUM_BACKEND_URL=http://127.0.0.1:{free_port()}\n")
    process = subprocess.Popen([sys.executable, str(ROOT / "cm4_app.py"), "--host", "127.0.0.1",
                                "--port", str(port)], cwd=tmp_path, env=clean_env(),
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Traceback" not in stderr
