"""``vps_app.py`` as a user runs it: clear refusals, a listening service, clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.services import clean_env, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


def test_refuses_to_start_without_a_key(tmp_path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "vps_app.py")], cwd=tmp_path,
                            env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "CEREBRUM_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_setting_is_one_clear_line(tmp_path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "vps_app.py")], cwd=tmp_path,
                            env=clean_env(CEREBRUM_API_KEY="k", CEREBRUM_MAX_QUEUE="lots"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "CEREBRUM_MAX_QUEUE" in result.stderr
    assert "Traceback" not in result.stderr


def test_serves_on_loopback_and_stops_cleanly(tmp_path) -> None:
    port = free_port()
    (tmp_path / ".env").write_text("CEREBRUM_API_KEY=from-dotenv\n")
    process = subprocess.Popen([sys.executable, str(ROOT / "vps_app.py"), "--port", str(port)],
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
