"""The systemd units: valid for systemd, hardened, and matching the env templates."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import attrs
import pytest

from cerebrum.backend.config import BackendConfig
from cerebrum.config import env_name
from cerebrum.orchestrator.config import OrchestratorConfig

from .units import (
    DEPLOY,
    UNITS,
    env_file_names,
    environment_defaults,
    exec_start_variables,
    parse_unit,
    values,
)

SYSTEM_UNITS = Path("/usr/lib/systemd/system")


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding the units plus stand-ins for the programs they start.

    ``systemd-analyze verify`` checks that ExecStart's program exists; on a
    test machine /opt/cerebrum does not, so verify runs with --root over a
    tree that has the units, systemd's own units and executable stand-ins.
    """
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    if not SYSTEM_UNITS.is_dir():
        pytest.skip(f"{SYSTEM_UNITS} is missing: systemd's own units are needed to verify ours")
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name, path in UNITS.items():
        shutil.copy(path, root / "etc/systemd/system" / name)
        argv0 = values(parse_unit(path), "Service", "ExecStart")[0].split()[0]
        stand_in = root / argv0.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy("/bin/true", stand_in)
    return root


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_analyze_verify_is_clean(fake_root: Path, name: str) -> None:
    # systemd-analyze exits 0 on many problems (an unknown key, a bad boolean)
    # and only prints them: any output is a failure.
    result = subprocess.run(["systemd-analyze", "verify", f"--root={fake_root}", name],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr


def test_verify_catches_a_broken_unit(fake_root: Path) -> None:
    """The check above can fail: a misspelt setting is reported."""
    broken = fake_root / "etc/systemd/system/cerebrum-broken.service"
    text = UNITS["cerebrum-backend.service"].read_text().replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe")
    broken.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", f"--root={fake_root}", broken.name],
                            capture_output=True, text=True, timeout=60)
    assert "Failed to parse boolean value" in result.stdout + result.stderr


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_are_hardened(name: str) -> None:
    unit = parse_unit(UNITS[name])
    for key, expected in HARDENING.items():
        assert values(unit, "Service", key) == [expected], f"{name}: {key}"
    (user,) = values(unit, "Service", "User")
    assert user.startswith("cerebrum"), "a dedicated account, never root"
    (memory_max,) = values(unit, "Service", "MemoryMax")
    assert memory_max[-1] in "MG"
    assert values(unit, "Install", "WantedBy") == ["multi-user.target"]


def test_restart_policies() -> None:
    assert values(parse_unit(UNITS["cerebrum-backend.service"]), "Service", "Restart") == ["on-failure"]
    assert values(parse_unit(UNITS["cerebrum-orchestrator.service"]), "Service", "Restart") == ["on-failure"]
    # The tunnel must come back even after a clean exit (the VPS rebooted).
    assert values(parse_unit(UNITS["cerebrum-tunnel.service"]), "Service", "Restart") == ["always"]


def test_a_stop_drains_within_what_systemd_waits() -> None:
    # Each service lets answers in flight finish for a while on a stop; systemd
    # kills it if that is not over (with a margin for unloading) before
    # TimeoutStopSec, and clients then see streams cut with no error event.
    from cerebrum.backend.__main__ import SHUTDOWN_GRACE_S

    for unit, grace in (("cerebrum-backend.service", SHUTDOWN_GRACE_S),
                        ("cerebrum-orchestrator.service",
                         attrs.fields(OrchestratorConfig).shutdown_grace_s.default)):
        (stop,) = values(parse_unit(UNITS[unit]), "Service", "TimeoutStopSec")
        assert grace + 5 <= float(stop), unit


def test_the_deployed_model_nice_is_allowed_and_benchmarked() -> None:
    # backend.env gives the model's threads nice -5; the unit must allow that
    # low (LimitNICE), and the engine benchmark measures what is deployed.
    import importlib.util

    from tests.services import ROOT

    template = (ROOT / "deploy/vps/backend.env.example").read_text()
    (line,) = [x for x in template.splitlines() if x.startswith("CEREBRUM_MODEL_NICE=")]
    deployed = int(line.split("=", 1)[1])
    (limit,) = values(parse_unit(UNITS["cerebrum-backend.service"]), "Service", "LimitNICE")
    assert int(limit) <= deployed
    spec = importlib.util.spec_from_file_location("backend_engine",
                                                  ROOT / "bench/backend_engine.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.DEPLOYED_MODEL_NICE == deployed


def test_orchestrator_fits_a_4gb_pi() -> None:
    (memory_max,) = values(parse_unit(UNITS["cerebrum-orchestrator.service"]), "Service", "MemoryMax")
    assert memory_max == "512M"


def test_backend_listens_on_loopback_only() -> None:
    (command,) = values(parse_unit(UNITS["cerebrum-backend.service"]), "Service", "ExecStart")
    assert "--host 127.0.0.1" in command
    assert "--env-file /etc/cerebrum/backend.env" in command


def test_tunnel_binds_loopback_and_keeps_alive() -> None:
    (command,) = values(parse_unit(UNITS["cerebrum-tunnel.service"]), "Service", "ExecStart")
    assert command.startswith("/usr/bin/ssh -N -L 127.0.0.1:")
    for option in ("ServerAliveInterval=", "ExitOnForwardFailure=yes", "BatchMode=yes",
                   "StrictHostKeyChecking=yes"):
        assert option in command


def _template_names(path: Path) -> set[str]:
    return {n for n in env_file_names(path) if n.startswith("CEREBRUM_")}


@pytest.mark.parametrize("config_class, template", [
    (BackendConfig, DEPLOY / "vps" / "backend.env.example"),
    (OrchestratorConfig, DEPLOY / "cm4" / "orchestrator.env.example"),
])
def test_env_template_lists_every_setting_and_no_other(config_class: type, template: Path) -> None:
    expected = {env_name(field.name) for field in attrs.fields(config_class)}
    found = _template_names(template)
    assert not expected - found, f"missing from {template.name}: {sorted(expected - found)}"
    assert not found - expected, f"not settings of {config_class.__name__}: {sorted(found - expected)}"


def test_tunnel_template_covers_every_unit_variable() -> None:
    unit = parse_unit(UNITS["cerebrum-tunnel.service"])
    defaults = environment_defaults(unit)
    template = _template_names(DEPLOY / "cm4" / "tunnel.env.example")
    used = exec_start_variables(unit)
    assert used == template, "tunnel.env.example documents exactly the unit's variables"
    # Everything but the VPS address has a default in the unit.
    assert used - set(defaults) == {"CEREBRUM_TUNNEL_HOST"}


def test_env_templates_hold_no_key() -> None:
    for template in DEPLOY.rglob("*.env.example"):
        for line in template.read_text().splitlines():
            if "API_KEY" in line and not line.startswith("#"):
                assert line.split("=", 1)[1] == "", f"{template.name}: a key in the repo"


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_security_exposure_is_low(name: str) -> None:
    """systemd's own hardening score (0 best, 10 worst) stays in its "OK" band."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    # --threshold is in tenths: 35 means exposure 3.5.
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=35",
                             str(UNITS[name])], capture_output=True, text=True, timeout=60)
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
