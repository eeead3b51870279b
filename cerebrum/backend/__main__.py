"""Entry point of the inference backend (runs on the VPS).

    python -m cerebrum.backend [--host 127.0.0.1] [--port 9000] [--env-file .env] [--dev]

``python vps_app.py`` (a checkout), ``cerebrum serve backend`` and ``cerebrum up``
run this same ``main``. Settings come from ``CEREBRUM_*`` environment variables
(and an optional ``.env``); see the README. All logic lives in ``cerebrum.backend``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cerebrum.backend.app import create_backend_app
from cerebrum.backend.config import BackendConfig
from cerebrum.backend.priority import make_this_thread_realtime
from cerebrum.backend.registry import RegistryError
from cerebrum.config import ConfigError, environment, load_config, program_name
from cerebrum.log import setup_logging
from cerebrum.server import run_app

SHUTDOWN_GRACE_S = 20.0
"""How long a stop lets the answers in flight finish before cutting them: under the
unit's ``TimeoutStopSec=30``, so systemd never kills the process mid-drain (the
model's unload and the loop's close need the rest)."""

MODULE = "cerebrum.backend"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The backend's command line."""
    parser = argparse.ArgumentParser(prog=prog or program_name(MODULE),
                                     description="Cerebrum inference backend (llama.cpp).")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: reach it through a tunnel)")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--env-file", type=Path, default=Path(".env"),
                        help="optional KEY=VALUE file read before the environment (default .env)")
    parser.add_argument("--dev", action="store_true",
                        help="local development: allow running without an API key")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse the command line, build the config and the app, serve until stopped.

    Returns 2, with one line on stderr, for a setting that is missing or malformed.
    """
    args = build_parser(prog).parse_args(argv)
    try:
        config = load_config(BackendConfig, environment(dotenv=args.env_file),
                             allow_no_key=True if args.dev else None)
        setup_logging(json_lines=config.log_json, level=config.log_level)
        if config.realtime_loop:
            # Before the app starts any thread: those inherit the ordinary policy.
            make_this_thread_realtime()
        app = create_backend_app(config)
    except (ConfigError, RegistryError) as exc:
        print(f"cerebrum backend: {exc}", file=sys.stderr)
        return 2
    # Bounded connections and header time (issue 16): cerebrum.server, not aiohttp's.
    run_app(app, host=args.host, port=args.port, max_connections=config.max_connections,
            header_timeout_s=config.header_timeout_s, shutdown_timeout=SHUTDOWN_GRACE_S,
            print=lambda _: print(f"cerebrum backend on http://{args.host}:{args.port}",
                                  file=sys.stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
