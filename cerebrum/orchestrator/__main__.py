"""Entry point of the orchestrator (runs on the Raspberry Pi).

    python -m cerebrum.orchestrator [--host 0.0.0.0] [--port 7000] [--env-file .env]

``python cm4_app.py`` (a checkout), ``cerebrum serve orchestrator`` and ``cerebrum
up`` run this same ``main``. Settings come from ``CEREBRUM_*`` environment
variables (and an optional ``.env``); see docs/orchestrator.md. All logic lives
in ``cerebrum.orchestrator``; this process never imports llama-cpp-python.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cerebrum.config import ConfigError, environment, load_config, program_name
from cerebrum.log import setup_logging
from cerebrum.orchestrator.app import create_orchestrator_app
from cerebrum.orchestrator.config import OrchestratorConfig
from cerebrum.server import run_app

MODULE = "cerebrum.orchestrator"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The orchestrator's command line."""
    parser = argparse.ArgumentParser(
        prog=prog or program_name(MODULE),
        description="Cerebrum orchestrator (OpenAI-compatible proxy).")
    # The Pi serves the LAN, so all interfaces by default; set
    # CEREBRUM_CLIENT_API_KEYS when the LAN is not trusted.
    parser.add_argument("--host", default="0.0.0.0",
                        help="address to bind (default 0.0.0.0: the whole LAN)")
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--env-file", type=Path, default=Path(".env"),
                        help="optional KEY=VALUE file read before the environment (default .env)")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse the command line, build the config and the app, serve until stopped.

    Returns 2, with one line on stderr, for a setting that is missing or malformed.
    """
    args = build_parser(prog).parse_args(argv)
    try:
        config = load_config(OrchestratorConfig, environment(dotenv=args.env_file))
    except ConfigError as exc:
        print(f"cerebrum orchestrator: {exc}", file=sys.stderr)
        return 2
    setup_logging(json_lines=config.log_json, level=config.log_level)
    app = create_orchestrator_app(config)
    # Bounded connections and header time (issue 16): cerebrum.server, not aiohttp's.
    run_app(app, host=args.host, port=args.port, max_connections=config.max_connections,
            header_timeout_s=config.header_timeout_s,
            shutdown_timeout=config.shutdown_grace_s,
            print=lambda _: print(f"cerebrum orchestrator on http://{args.host}:{args.port}",
                                  file=sys.stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
