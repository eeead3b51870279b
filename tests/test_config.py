"""Environment (and .env) → frozen config classes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cerebrum.backend.config import BackendConfig
from cerebrum.config import ConfigError, environment, load_config, read_dotenv


def test_defaults() -> None:
    config = load_config(BackendConfig, {"CEREBRUM_ALLOW_NO_KEY": "1"})
    assert config.api_key is None
    assert config.idle_unload_s == 3600
    assert config.max_cpu_percent == 70
    assert config.min_free_ram_mb == 1024
    assert config.models is None
    assert config.threads >= 1


def test_values_are_structured_from_strings() -> None:
    config = load_config(BackendConfig, {
        "CEREBRUM_API_KEY": "k", "CEREBRUM_IDLE_UNLOAD_S": "12.5",
        "CEREBRUM_MIN_FREE_RAM_MB": "256", "CEREBRUM_ALLOW_NO_KEY": "yes",
        "CEREBRUM_MODELS": "~/models.toml", "CEREBRUM_MODEL_NICE": "-5", "UNRELATED": "x"})
    assert config.api_key == "k"
    assert config.idle_unload_s == 12.5
    assert config.min_free_ram_mb == 256
    assert config.allow_no_key is True
    assert config.models == Path("~/models.toml").expanduser()
    assert config.model_nice == -5


@pytest.mark.parametrize(("name", "value"), [
    ("CEREBRUM_IDLE_UNLOAD_S", "soon"),
    ("CEREBRUM_MAX_CPU_PERCENT", "-5"),
    ("CEREBRUM_ALLOW_NO_KEY", "maybe"),
    ("CEREBRUM_THREADS", "0"),
    ("CEREBRUM_MODEL_NICE", "-21"),
    ("CEREBRUM_MODEL_NICE", "20"),
])
def test_bad_values_name_the_variable(name, value) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config(BackendConfig, {name: value})


def test_the_backend_key_is_checked_with_the_other_settings() -> None:
    with pytest.raises(ConfigError, match="CEREBRUM_API_KEY is not set") as missing:
        load_config(BackendConfig, {})
    # The check spans fields: its message names the variable, with no "?:" before it.
    assert str(missing.value).startswith("invalid configuration: CEREBRUM_API_KEY is not set")
    # The same rule when the class is built directly (tests, embedding).
    with pytest.raises(ConfigError, match="CEREBRUM_API_KEY"):
        BackendConfig()
    assert load_config(BackendConfig, {}, allow_no_key=True).allow_no_key is True
    # A malformed value is reported as such, not hidden behind the missing key.
    with pytest.raises(ConfigError, match="CEREBRUM_MAX_QUEUE") as raised:
        load_config(BackendConfig, {"CEREBRUM_MAX_QUEUE": "-1"})
    assert "CEREBRUM_API_KEY" not in str(raised.value)


def test_dotenv_is_read_and_the_environment_wins(tmp_path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text('# comment\nCEREBRUM_API_KEY="from-file"\nexport CEREBRUM_THREADS=3\n'
                      "junk line\n")
    assert read_dotenv(dotenv) == {"CEREBRUM_API_KEY": "from-file", "CEREBRUM_THREADS": "3"}
    merged = environment({"CEREBRUM_THREADS": "4"}, dotenv=dotenv)
    config = load_config(BackendConfig, merged)
    assert (config.api_key, config.threads) == ("from-file", 4)
    assert read_dotenv(tmp_path / "missing") == {}
