"""Reading the systemd units in ``deploy/`` the way systemd does, for the tests."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNITS = {
    "cerebrum-backend.service": DEPLOY / "vps" / "cerebrum-backend.service",
    "cerebrum-orchestrator.service": DEPLOY / "cm4" / "cerebrum-orchestrator.service",
    "cerebrum-tunnel.service": DEPLOY / "cm4" / "cerebrum-tunnel.service",
}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections → (key, value) pairs in order; keys may repeat (``Environment=``)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not key=value: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Mapping[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    """Every value of ``key`` in ``section``."""
    return [v for k, v in unit.get(section, []) if k == key]


def environment_defaults(unit: Mapping[str, list[tuple[str, str]]]) -> dict[str, str]:
    """The unit's ``Environment=`` assignments (later ones win, as in systemd)."""
    env: dict[str, str] = {}
    for assignment in values(unit, "Service", "Environment"):
        for word in shlex.split(assignment):
            name, _, value = word.partition("=")
            env[name] = value
    return env


def exec_start_argv(unit: Mapping[str, list[tuple[str, str]]], env: Mapping[str, str]) -> list[str]:
    """``ExecStart`` as systemd runs it: split into words, then ``${VAR}`` replaced.

    Raises KeyError naming a variable that ``env`` does not define, since
    systemd would silently substitute an empty string.
    """
    (command,) = values(unit, "Service", "ExecStart")
    return [_VAR.sub(lambda m: env[m.group(1)], word) for word in shlex.split(command)]


def exec_start_variables(unit: Mapping[str, list[tuple[str, str]]]) -> set[str]:
    """Names of the ``${VAR}``s ``ExecStart`` uses."""
    (command,) = values(unit, "Service", "ExecStart")
    return set(_VAR.findall(command))


def env_file_names(path: Path) -> set[str]:
    """Variable names an env template sets or shows commented out (``#NAME=``)."""
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#?([A-Z][A-Z0-9_]*)=", line.strip())
        if match:
            names.add(match.group(1))
    return names
