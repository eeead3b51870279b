"""The SSH tunnel unit, for real, on loopback only.

A throw-away sshd on a free 127.0.0.1 port (host and client keys made here),
the real backend (vps_app.py) and orchestrator (cm4_app.py) as processes, and
the tunnel's ExecStart from deploy/cm4/cerebrum-tunnel.service run verbatim,
with only its ${VARIABLES} filled in as systemd would. A request then goes
client → orchestrator → tunnel → sshd → backend. The authorized_keys line is
the restricted one docs/deploy.md tells operators to install on the VPS, so
the test also shows that it allows the backend's port and nothing else.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .units import REPO, UNITS, environment_defaults, exec_start_argv, parse_unit

SSHD = Path("/usr/sbin/sshd")
API_KEY = "tunnel-test-key-0123456789abcdef"
# The line docs/deploy.md puts in the VPS's authorized_keys (port substituted).
AUTHORIZED_OPTIONS = 'restrict,port-forwarding,permitopen="127.0.0.1:{port}",command="/bin/false"'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {_output(proc)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


def _output(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate(timeout=5)
    return (out or b"").decode(errors="replace")[-3000:]


def get(url: str, timeout: float = 30, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in reversed(started):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def start(procs: list[subprocess.Popen[bytes]], argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    procs.append(proc)
    return proc


@pytest.fixture
def sshd(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> dict[str, str]:
    """A loopback sshd that accepts a key made here, for the current user.

    Returns the tunnel unit's variables pointing at it (except the ports the
    test chooses).
    """
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("sshd is not installed (Debian: apt-get install openssh-server)")
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        # sshd running as root insists on its privilege-separation folder,
        # which Debian's ssh.service normally creates.
        try:
            Path("/run/sshd").mkdir(mode=0o755)
        except OSError as exc:
            pytest.skip(f"sshd cannot start: cannot create /run/sshd ({exc})")
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)],
                       check=True)
    port = free_port()
    user = getpass.getuser()
    (tmp_path / "known_hosts").write_text(
        f"[127.0.0.1]:{port} " + " ".join((tmp_path / "host.pub").read_text().split()[:2]) + "\n")
    config = tmp_path / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {tmp_path / 'host'}",
        f"PidFile {tmp_path / 'sshd.pid'}",
        f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}",
        # The test's tmp folders are not root-owned as StrictModes wants.
        "StrictModes no",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        f"AllowUsers {user}",
        "AllowTcpForwarding yes",
        "LogLevel VERBOSE",
        "",
    ]))
    test = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True)
    if test.returncode != 0:
        pytest.skip(f"sshd cannot start here: {test.stderr.strip()}")
    proc = start(procs, [str(SSHD), "-D", "-e", "-f", str(config)])
    try:
        wait_for_port(port, proc, "sshd", timeout=10)
    except AssertionError as exc:
        pytest.skip(f"sshd cannot start here: {exc}")
    return {
        "CEREBRUM_TUNNEL_HOST": "127.0.0.1",
        "CEREBRUM_TUNNEL_SSH_PORT": str(port),
        "CEREBRUM_TUNNEL_USER": user,
        "CEREBRUM_TUNNEL_KEY": str(tmp_path / "client"),
        "CEREBRUM_TUNNEL_KNOWN_HOSTS": str(tmp_path / "known_hosts"),
    }


def authorize(tmp_path: Path, permitted_port: int) -> None:
    pub = (tmp_path / "client.pub").read_text().strip()
    (tmp_path / "authorized_keys").write_text(AUTHORIZED_OPTIONS.format(port=permitted_port) + " " + pub + "\n")


def tunnel_argv(variables: dict[str, str]) -> list[str]:
    """The unit's ExecStart with the unit's defaults overridden by ``variables``."""
    unit = parse_unit(UNITS["cerebrum-tunnel.service"])
    env = environment_defaults(unit)
    env.update(variables)
    return exec_start_argv(unit, env)


def start_backend(procs: list[subprocess.Popen[bytes]], tmp_path: Path) -> int:
    port = free_port()
    env = {**os.environ, "CEREBRUM_API_KEY": API_KEY, "CEREBRUM_THREADS": "2"}
    proc = start(procs, [sys.executable, "vps_app.py", "--host", "127.0.0.1", "--port", str(port),
                         "--env-file", str(tmp_path / "none.env")], cwd=REPO, env=env)
    wait_for_port(port, proc, "backend (vps_app.py)", timeout=60)
    return port


def start_orchestrator(procs: list[subprocess.Popen[bytes]], tmp_path: Path, backend_url: str) -> int:
    port = free_port()
    env = {**os.environ, "CEREBRUM_API_KEY": API_KEY, "CEREBRUM_BACKEND_URL": backend_url}
    proc = start(procs, [sys.executable, "cm4_app.py", "--host", "127.0.0.1", "--port", str(port),
                         "--env-file", str(tmp_path / "none.env")], cwd=REPO, env=env)
    wait_for_port(port, proc, "orchestrator (cm4_app.py)", timeout=60)
    return port


def test_request_flows_orchestrator_tunnel_backend(
    tmp_path: Path, sshd: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    backend_port = start_backend(procs, tmp_path)
    authorize(tmp_path, backend_port)
    local_port = free_port()
    argv = tunnel_argv({**sshd, "CEREBRUM_TUNNEL_LOCAL_PORT": str(local_port),
                        "CEREBRUM_TUNNEL_REMOTE_PORT": str(backend_port)})
    assert argv[:3] == ["/usr/bin/ssh", "-N", "-L"]
    assert argv[3] == f"127.0.0.1:{local_port}:127.0.0.1:{backend_port}"
    tunnel = start(procs, argv)
    wait_for_port(local_port, tunnel, "the tunnel (ssh)")

    # The backend through the tunnel: auth passes through unchanged.
    status, _ = get(f"http://127.0.0.1:{local_port}/v1/models")
    assert status == 401
    status, body = get(f"http://127.0.0.1:{local_port}/v1/models", **{"X-API-Key": API_KEY})
    assert status == 200, body
    models = [m["id"] for m in json.loads(body)["data"]]
    assert models

    # The whole chain: orchestrator → tunnel → backend, generating on the
    # embedded model.
    orchestrator_port = start_orchestrator(procs, tmp_path, f"http://127.0.0.1:{local_port}")
    payload = json.dumps({"model": models[0], "max_tokens": 4,
                          "messages": [{"role": "user", "content": "Say hi."}]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{orchestrator_port}/v1/chat/completions",
                                     data=payload, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    assert answer["choices"][0]["message"]["content"] is not None
    assert answer["usage"]["completion_tokens"] >= 1
    assert tunnel.poll() is None, "the tunnel is still up"


def test_restricted_key_forwards_nothing_but_the_backend(
    tmp_path: Path, sshd: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    """permitopen in authorized_keys: a tunnel to any other port carries no data."""
    backend_port = start_backend(procs, tmp_path)
    authorize(tmp_path, free_port())  # permits some other port, not the backend's
    local_port = free_port()
    tunnel = start(procs, tunnel_argv({**sshd, "CEREBRUM_TUNNEL_LOCAL_PORT": str(local_port),
                                       "CEREBRUM_TUNNEL_REMOTE_PORT": str(backend_port)}))
    wait_for_port(local_port, tunnel, "the tunnel (ssh)")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        get(f"http://127.0.0.1:{local_port}/health", timeout=10)


def test_tunnel_exits_when_its_port_is_taken(
    tmp_path: Path, sshd: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    """ExitOnForwardFailure: no half-working tunnel; systemd restarts it instead."""
    authorize(tmp_path, 9)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        tunnel = start(procs, tunnel_argv({**sshd, "CEREBRUM_TUNNEL_LOCAL_PORT": str(taken),
                                           "CEREBRUM_TUNNEL_REMOTE_PORT": "9"}))
        assert tunnel.wait(timeout=20) != 0
