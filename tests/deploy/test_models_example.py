"""deploy/vps/models/models.toml.example is a registry the backend accepts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from cerebrum.backend.registry import load_registry
from cerebrum.prompt.routing import DEFAULT_LANGUAGE_MODELS

from .units import DEPLOY

EXAMPLE = DEPLOY / "vps" / "models" / "models.toml.example"


def _uncommented(tmp_path: Path) -> Path:
    """The example with its commented-out tables switched on, GGUF stand-ins beside it."""
    text = re.sub(r"^# (\[models\.|path|context_size|threads)", r"\1", EXAMPLE.read_text(), flags=re.M)
    registry = tmp_path / "models.toml"
    registry.write_text(text)
    for name in re.findall(r'^path = "([^"]+)"', text, flags=re.M):
        (tmp_path / name).write_bytes(b"GGUF")
    return registry


def test_example_loads_as_installed(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "models.toml")
    (tmp_path / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf").write_bytes(b"GGUF")
    registry = load_registry(tmp_path / "models.toml")
    assert registry.default.name == "qwen2.5-coder-1.5b-instruct"


def test_every_example_entry_loads_and_the_default_routes_exist(tmp_path: Path) -> None:
    registry = load_registry(_uncommented(tmp_path))
    names = {spec.name for spec in registry}
    assert len(names) >= 4
    # The orchestrator's built-in routing finds its models under these names.
    assert set(DEFAULT_LANGUAGE_MODELS.values()) <= names
