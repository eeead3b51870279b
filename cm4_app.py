"""Entry point of the orchestrator (runs on the Raspberry Pi).

    python cm4_app.py [--host 0.0.0.0] [--port 7000] [--env-file .env]

Settings come from CEREBRUM_* environment variables (and an optional .env);
see docs/orchestrator.md. All logic lives in ``cerebrum.orchestrator``; this
process never imports llama-cpp-python.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cerebrum.config import ConfigError, environment, load_config
from cerebrum.log import setup_logging
from cerebrum.orchestrator.app import create_orchestrator_app
from cerebrum.orchestrator.config import OrchestratorConfig
from cerebrum.server import run_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cerebrum orchestrator (OpenAI-compatible proxy).")
    # The Pi serves the LAN, so all interfaces by default; set
    # CEREBRUM_CLIENT_API_KEYS when the LAN is not trusted.
    parser.add_argument("--host", default="0.0.0.0",
                        help="address to bind (default 0.0.0.0: the whole LAN)")
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--env-file", type=Path, default=Path(".env"),
                        help="optional KEY=VALUE file read before the environment (default .env)")
    args = parser.parse_args(argv)
    try:
        config = load_config(OrchestratorConfig, environment(dotenv=args.env_file))
    except ConfigError as exc:
        print(f"cm4_app: {exc}", file=sys.stderr)
        return 2
    setup_logging(json_lines=config.log_json, level=config.log_level)
    app = create_orchestrator_app(config)
    run_app(app, host=args.host, port=args.port, max_connections=config.max_connections,
            header_timeout_s=config.header_timeout_s,
            shutdown_timeout=config.shutdown_grace_s,
            print=lambda _: print(f"cerebrum orchestrator on http://{args.host}:{args.port}",
                                  file=sys.stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
