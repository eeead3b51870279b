"""The deploy shell scripts: shellcheck-clean, and the key generator's two paths."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .units import DEPLOY, REPO

SCRIPTS = sorted(DEPLOY.rglob("*.sh")) + [REPO / "scripts" / "deploy_idempotency.sh"]
KEYGEN = DEPLOY / "generate_api_key.sh"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck_clean(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Debian: apt-get install shellcheck)")
    # From the repository root: the `# shellcheck source=deploy/common.sh`
    # directives are relative to it, and -x follows them.
    result = subprocess.run(["shellcheck", "-x", str(script.relative_to(REPO))], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_strict_mode(script: Path) -> None:
    text = script.read_text()
    if script.name == "common.sh":  # sourced: inherits the caller's mode
        assert "set -euo pipefail" not in text
        return
    assert "set -euo pipefail" in text
    assert os.access(script, os.X_OK), f"{script.name} is not executable"


def _keygen(path_dirs: list[Path]) -> str:
    # Only the given folders plus the system ones on PATH, so a developer's
    # own `cerebrum` does not decide which branch runs.
    env = {"PATH": ":".join([*map(str, path_dirs), "/usr/bin", "/bin"])}
    result = subprocess.run([str(KEYGEN)], env=env, capture_output=True, text=True, timeout=30, check=True)
    return result.stdout


@pytest.mark.skipif(Path("/opt/cerebrum/venv/bin/cerebrum").exists(),
                    reason="an installed /opt/cerebrum takes precedence over PATH here")
def test_keygen_prefers_the_cli(tmp_path: Path) -> None:
    fake = tmp_path / "cerebrum"
    fake.write_text("#!/bin/sh\n[ \"$1\" = keygen ] && echo from-the-cli-0123456789\n")
    fake.chmod(0o755)
    assert _keygen([tmp_path]) == "from-the-cli-0123456789\n"


@pytest.mark.skipif(Path("/opt/cerebrum/venv/bin/cerebrum").exists(),
                    reason="an installed /opt/cerebrum takes precedence over PATH here")
def test_keygen_falls_back_to_python_secrets(tmp_path: Path) -> None:
    # A CLI without `keygen` (it fails) counts as no CLI.
    fake = tmp_path / "cerebrum"
    fake.write_text("#!/bin/sh\necho 'no such command' >&2\nexit 2\n")
    fake.chmod(0o755)
    if shutil.which("python3", path="/usr/bin:/bin") is None:
        pytest.skip("no system python3 for the fallback")
    first, second = _keygen([tmp_path]), _keygen([])
    for key in (first, second):
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}\n", key), key
    assert first != second
