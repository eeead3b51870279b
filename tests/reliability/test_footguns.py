"""Items 12 and 17: settings that used to leave a service open or leak a secret, and the
files ``cerebrum up`` writes."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from cerebrum.backend.config import BackendConfig
from cerebrum.cli.up import ServiceProcess
from cerebrum.config import ConfigError, load_config
from cerebrum.orchestrator.app import create_orchestrator_app
from cerebrum.orchestrator.backends import Backend
from cerebrum.orchestrator.breaker import CircuitBreaker
from cerebrum.orchestrator.config import OrchestratorConfig
from tests.services import ROOT, clean_env

pytestmark = pytest.mark.reliability

URL = "http://127.0.0.1:9"


# -- item 12: credentials in the backend URL ------------------------------------------

def test_credentials_in_a_backend_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(OrchestratorConfig, {"CEREBRUM_BACKEND_URL": "http://user:s3cret@127.0.0.1:9"})
    assert "CEREBRUM_BACKEND_URL" in str(caught.value) and "CEREBRUM_API_KEY" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_the_entry_point_refuses_them_clearly() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "cm4_app.py"), "--env-file", "/dev/null"],
                            env=clean_env(CEREBRUM_BACKEND_URL="http://user:s3cret@127.0.0.1:9"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "credentials" in result.stderr and "s3cret" not in result.stderr


def test_a_backend_name_never_carries_credentials() -> None:
    from cerebrum.orchestrator.backends import backend_name

    assert backend_name("http://user:s3cret@127.0.0.1:9") == "127.0.0.1:9"
    backend = Backend("http://user:s3cret@127.0.0.1:9",
                      CircuitBreaker("b", failure_threshold=1, cooldown_s=1))
    assert "s3cret" not in str(backend.snapshot())


# -- item 17: keys that are no keys -------------------------------------------------------

@pytest.mark.parametrize("value", [" , ", ",", " ,, "])
def test_client_keys_that_list_nothing_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="CEREBRUM_CLIENT_API_KEYS"):
        load_config(OrchestratorConfig, {"CEREBRUM_BACKEND_URL": URL,
                                         "CEREBRUM_CLIENT_API_KEYS": value})


@pytest.mark.parametrize("value", [" ", "\t", "two words", " padded"])
def test_a_blank_or_spaced_backend_key_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="CEREBRUM_API_KEY"):
        load_config(BackendConfig, {"CEREBRUM_API_KEY": value})


def test_short_keys_and_no_keys_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cerebrum.middlewares"):
        create_orchestrator_app(OrchestratorConfig(backend_url=(URL,), client_api_keys=("abc",)))
        assert "can be guessed" in caplog.text
        caplog.clear()
        create_orchestrator_app(OrchestratorConfig(backend_url=(URL,)))
        assert "no client API keys" in caplog.text


def test_a_readable_env_file_holding_a_key_is_made_private(tmp_path: Path) -> None:
    from cerebrum.cli.up import make_private

    env = tmp_path / ".env"
    env.write_text("CEREBRUM_API_KEY=abcdefghijklmnopqrstuvwxyz\n")
    env.chmod(0o644)
    assert make_private(env) is True
    assert env.stat().st_mode & 0o777 == 0o600
    assert make_private(env) is False  # already private
    plain = tmp_path / "plain.env"
    plain.write_text("CEREBRUM_THREADS=2\n")
    plain.chmod(0o644)
    assert make_private(plain) is False and plain.stat().st_mode & 0o777 == 0o644


# -- item 8 (files): cerebrum up's logs --------------------------------------------------

def test_up_creates_its_log_files_private(tmp_path: Path) -> None:
    service = ServiceProcess("backend", "http://127.0.0.1:9", tmp_path / "logs" / "backend.log")
    service.start([sys.executable, "-c", "print('started')"], clean_env(), tmp_path)
    service.process.wait(30)  # type: ignore[union-attr]
    service.stop()
    assert (tmp_path / "logs" / "backend.log").stat().st_mode & 0o777 == 0o600
