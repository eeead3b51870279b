"""The set-up commands a newcomer types: make run / make test / make lint and
scripts/bootstrap.sh, checked without installing anything (``make -n`` prints
what would run; bootstrap refuses a bad role before it touches anything)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make here")


def make_n(venv: Path, *args: str) -> list[str]:
    """The commands ``make`` would run, one per line."""
    result = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", *args],
                            capture_output=True, text=True, timeout=60, check=True)
    return [line for line in result.stdout.splitlines() if not line.startswith("make")]


def test_make_run_after_make_test_installs_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    # A fresh checkout: make test bootstraps the dev role and marks local done too.
    dev = make_n(venv, "test")
    assert dev[0] == f"scripts/bootstrap.sh {venv} dev"
    assert dev[1] == f"touch {venv}/.bootstrapped-dev {venv}/.bootstrapped-local"
    # What that touch leaves behind, newer than every source the stamps depend on.
    (venv / ".bootstrapped-dev").touch()
    (venv / ".bootstrapped-local").touch()
    assert make_n(venv, "run") == [f"{venv}/bin/cerebrum up "]


def test_make_run_passes_args_to_cerebrum_up(tmp_path: Path) -> None:
    (tmp_path / ".bootstrapped-local").touch()
    assert make_n(tmp_path, "run", "ARGS=--port 17000 --no-repl") == [
        f"{tmp_path}/bin/cerebrum up --port 17000 --no-repl"]


def test_make_lint_runs_ruff_and_mypy_over_all_but_the_pending_files(tmp_path: Path) -> None:
    (tmp_path / ".bootstrapped-dev").touch()
    commands = [c for c in make_n(tmp_path, "lint") if not c.lstrip().startswith(("#", "echo"))]
    ruff, mypy = (c.split() for c in commands[:2])
    assert ruff[:3] == [f"{tmp_path}/bin/ruff", "check", "-q"]
    assert mypy[:2] == [f"{tmp_path}/bin/mypy", "--follow-imports=silent"]
    pending = {line for line in (ROOT / ".lint-pending").read_text().splitlines()
               if line and not line.startswith("#")}
    checked = set(ruff[3:])
    assert checked == set(mypy[2:])
    assert "cerebrum/server.py" in checked and "cm4_app.py" in checked
    assert pending and not pending & checked
    # Every pending file still exists: a cleaned or removed one leaves the list.
    assert all((ROOT / path).is_file() for path in pending)


def test_make_test_runs_the_gate_before_the_tests(tmp_path: Path) -> None:
    (tmp_path / ".bootstrapped-dev").touch()
    commands = [c for c in make_n(tmp_path, "test") if not c.lstrip().startswith(("#", "echo"))]
    assert "/bin/ruff check" in commands[0] and "-m pytest" in commands[-1]


def test_bootstrap_names_every_role_and_creates_nothing_for_a_bad_one(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = subprocess.run(["bash", str(ROOT / "scripts/bootstrap.sh"), str(venv), "locale"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown role 'locale' (dev, local, vps or cm4)" in result.stderr
    assert not venv.exists()
