"""``cerebrum up``: the backend on the embedded model and the orchestrator in front, here.

Both run as child processes on loopback, in their own sessions (so Ctrl-C in
the REPL stops an answer, not the services), with their logs in
``.cerebrum/logs/``. The API key is generated on first run and kept in
``.env`` (mode 0600, git-ignored); the backend requires it and the
orchestrator both sends it to the backend and asks it of clients. When both
answer ``/health``, the REPL opens; leaving it (Ctrl-D) stops both.
``--no-repl`` serves until Ctrl-C instead. While it runs, where it serves is
recorded beside the ``.env`` (``cerebrum.cli.running``), so ``status``, ``ask``
and ``chat`` from another terminal find it on whatever ports it was given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

import attrs

from cerebrum.cli.errors import EXIT_OK, CliError, UsageError
from cerebrum.cli.keygen import new_key
from cerebrum.cli.render import Output
from cerebrum.cli.running import read_record, record_path, remove_record, write_record
from cerebrum.cli.serve import module_argv, module_env
from cerebrum.config import read_dotenv

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0


def make_private(path: Path) -> bool:
    """Make ``path`` readable by its owner only when it holds an API key and others can
    read it (a ``.env`` written by hand is usually 0644). True when it was changed."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return False
    if not mode & 0o077 or "API_KEY" not in "".join(read_dotenv(path)):
        return False
    os.chmod(path, 0o600)
    return True


def ensure_key(env_file: Path) -> tuple[str, bool]:
    """The key from ``env_file`` (or the environment); generate and store one if there is none.

    Returns the key and whether it was just created.
    """
    existing = os.environ.get("CEREBRUM_API_KEY") or read_dotenv(env_file).get("CEREBRUM_API_KEY")
    if existing:
        return existing, False
    key = new_key()
    lines = env_file.read_text(encoding="utf-8") if env_file.exists() else ""
    if lines and not lines.endswith("\n"):
        lines += "\n"
    lines += ("# Written by `cerebrum up`: the key the backend requires and the orchestrator\n"
              "# sends to it and asks of clients. Keep this file private (it is git-ignored).\n"
              f"CEREBRUM_API_KEY={key}\n")
    # Create it private from the start: never a moment when others can read it.
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(lines)
    os.chmod(env_file, 0o600)
    return key, True


@attrs.define
class ServiceProcess:
    """One child process and where its log goes."""

    name: str
    url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Private: the logs name clients, models and prompts' figures.
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.chmod(self.log_path, 0o600)
        self.log = os.fdopen(fd, "ab")
        self.log.write(f"\n=== cerebrum up: starting {self.name} at {time.ctime()} ===\n".encode())
        self.log.flush()
        # A session of its own: the terminal's Ctrl-C (meant for an answer)
        # must not reach the services. The cost: a closed terminal's hang-up
        # does not reach them either, so they are tied to us another way.
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True,
                                        preexec_fn=_die_with_parent)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM (aiohttp's graceful stop), then SIGKILL if it hangs."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()
        return self.process.returncode


def _die_with_parent() -> None:
    """In a service's process, before it starts: ask Linux for SIGTERM when ``cerebrum up``
    dies, however it dies (killed, terminal closed), so no orphan keeps the ports."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: stopped in ``run``'s finally only
        pass


def _exit_on_signal(signum: int, _: object) -> None:
    # Unwinds to ``run``'s finally, which stops both services.
    raise SystemExit(128 + signum)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _port_taken(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_ready(services: list[ServiceProcess], err: Output,
               timeout: float = READY_TIMEOUT_S) -> None:
    """Poll each ``/health`` until 200; fail with the log's tail if a child dies or time
    runs out."""
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending:
        service = pending[0]
        code = service.exited()
        if code is not None:
            raise CliError(f"The {service.name} stopped while starting (exit status {code}). "
                           f"The end of {service.log_path}:\n{service.log_tail()}")
        if _healthy(service.url):
            err.line(err.dim(f"{service.name} ready at {service.url}"))
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise CliError(f"The {service.name} was not ready after {timeout:.0f} s. "
                           f"The end of {service.log_path}:\n{service.log_tail()}")
        time.sleep(0.1)


def add_parser(commands: argparse._SubParsersAction, *, parents: list[argparse.ArgumentParser],
               **kwargs: object) -> None:
    parser = commands.add_parser(
        "up", help="start the backend and the orchestrator here, then chat",
        description="Start the backend (embedded model) and the orchestrator on loopback, "
                    "with a key generated into .env on first run; logs go to "
                    ".cerebrum/logs/. Then open the REPL: Ctrl-D stops both services.")
    parser.add_argument("--env-file", type=Path, default=Path(".env"), metavar="FILE",
                        help="where the key is kept (default .env)")
    parser.add_argument("--port", type=int, default=7000, help="orchestrator port (default 7000)")
    parser.add_argument("--backend-port", type=int, default=9000,
                        help="backend port (default 9000)")
    parser.add_argument("--log-dir", type=Path, default=Path(".cerebrum/logs"),
                        help="where the services' logs go (default .cerebrum/logs)")
    parser.add_argument("--no-repl", action="store_true",
                        help="just serve until Ctrl-C (for scripts)")
    parser.add_argument("--history", type=Path, metavar="FILE", help="REPL history file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    err = Output(sys.stderr)
    host = "127.0.0.1"
    running = read_record(args.env_file)
    if running is not None:
        # A second pair would replace the first's record (and remove it when it
        # stopped), and the other commands would lose the first.
        raise UsageError(f"Cerebrum is already up with {args.env_file} (process {running.pid}, "
                         f"orchestrator {running.url}): use it, or stop it first.")
    for port in (args.port, args.backend_port):
        if _port_taken(host, port):
            raise UsageError(f"Port {port} on {host} is already in use: is Cerebrum already "
                             "running (`cerebrum status`)? Choose others with --port and "
                             "--backend-port.")
    if make_private(args.env_file):
        err.line(f"warning: {args.env_file} holds an API key and was readable by others; "
                 "it is now mode 0600")
    key, created = ensure_key(args.env_file)
    if created:
        err.line(err.dim(f"generated an API key into {args.env_file} (mode 0600)"))
    _ignore_log_dir(args.log_dir)
    backend_url, url = f"http://{host}:{args.backend_port}", f"http://{host}:{args.port}"
    # The children read the rest of their settings from the same .env.
    env = module_env({**os.environ, "CEREBRUM_API_KEY": key, "CEREBRUM_BACKEND_URL": backend_url,
                      "CEREBRUM_CLIENT_API_KEYS": key, "PYTHONUNBUFFERED": "1"})
    if "CEREBRUM_MAX_CPU_PERCENT" not in {**read_dotenv(args.env_file), **os.environ}:
        # Everything runs on this one machine: the REPL, the orchestrator and the
        # user's own programs would all count as "other" CPU and turn questions
        # away. The guard is for a shared VPS; here it is off unless configured.
        env["CEREBRUM_MAX_CPU_PERCENT"] = "100"
    backend = ServiceProcess("backend", backend_url, args.log_dir / "backend.log")
    orchestrator = ServiceProcess("orchestrator", url, args.log_dir / "orchestrator.log")
    cwd = Path.cwd()
    env_file = str(args.env_file.resolve())
    # The terminal closing (SIGHUP) or a plain `kill` (SIGTERM) stops both cleanly.
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _exit_on_signal)
    try:
        backend.start(module_argv("backend", "--host", host, "--port", str(args.backend_port),
                                  "--env-file", env_file), env, cwd)
        orchestrator.start(module_argv("orchestrator", "--host", host, "--port", str(args.port),
                                       "--env-file", env_file), env, cwd)
        with contextlib.suppress(OSError):  # best effort: without it, the defaults are used
            _ignore_log_dir(record_path(args.env_file).parent)
            write_record(args.env_file, url, backend_url)
        err.line(err.dim(f"starting; logs in {args.log_dir}/"))
        wait_ready([backend, orchestrator], err)
        cli = cli_command(sys.argv[0], shutil.which("cerebrum"))
        err.line(err.dim(f"from another terminal in {cwd}: {cli} status, {cli} ask \"...\", "
                         f"{cli} chat"))
        if args.no_repl:
            return _serve_until_interrupted(url, [backend, orchestrator], err)
        return _repl(url, key, args)
    finally:
        remove_record(args.env_file)
        for service in (orchestrator, backend):
            service.stop()
        with contextlib.suppress(OSError):  # the terminal may be gone (hang-up)
            err.line(err.dim("stopped the orchestrator and the backend"))


def cli_command(argv0: str, on_path: str | None) -> str:
    """How to run this ``cerebrum`` from another terminal in the current folder: plain
    ``cerebrum`` when PATH finds this one, else the path it was started by (``make run``
    starts ``.venv/bin/cerebrum``, which is not on PATH unless the venv is activated)."""
    me = Path(argv0)
    if me.name != "cerebrum" or (on_path and Path(on_path).resolve() == me.resolve()):
        return "cerebrum"
    try:
        return str(me.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(me.absolute())


def _repl(url: str, key: str, args: argparse.Namespace) -> int:
    from cerebrum.cli.repl import Conversation, chat, default_history_path

    banner = (f"Cerebrum is up: orchestrator {url}, backend on the embedded model. "
              "/help for commands; Ctrl-C stops an answer, Ctrl-D stops everything.")
    return asyncio.run(chat(url, key, Conversation(None, True, {}),
                            history=args.history or default_history_path(), banner=banner))


def _serve_until_interrupted(url: str, services: list[ServiceProcess], err: Output) -> int:
    err.line(f"Cerebrum is up at {url} (key in .env). Press Ctrl-C to stop.")
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop:
            for service in services:
                code = service.exited()
                if code is not None:
                    raise CliError(f"The {service.name} stopped unexpectedly (exit status "
                                   f"{code}). The end of {service.log_path}:\n"
                                   f"{service.log_tail()}")
            time.sleep(0.2)
    except KeyboardInterrupt:
        err.line("")
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def _ignore_log_dir(log_dir: Path) -> None:
    """Keep the run-time folder out of git without touching the project's .gitignore."""
    top = log_dir.parent if log_dir.name == "logs" else log_dir
    top.mkdir(parents=True, exist_ok=True)
    marker = top / ".gitignore"
    if not marker.exists():
        with contextlib.suppress(OSError):
            marker.write_text("# Written by `cerebrum up`: logs and run-time state.\n*\n")
