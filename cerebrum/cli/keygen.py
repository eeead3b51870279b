"""``cerebrum keygen``: print a new strong API key."""

from __future__ import annotations

import argparse
import secrets

from cerebrum.cli.errors import EXIT_OK

KEY_BYTES = 32


def new_key(nbytes: int = KEY_BYTES) -> str:
    """A URL-safe random key (``nbytes`` of entropy, 43 characters by default)."""
    return secrets.token_urlsafe(nbytes)


def add_parser(commands: argparse._SubParsersAction, **kwargs: object) -> None:
    parser = commands.add_parser(
        "keygen", help="print a new strong API key",
        description="Print a new random API key (256 bits, URL-safe). Give the same key to "
                    "the backend and the orchestrator (CEREBRUM_API_KEY) and to clients.")
    parser.add_argument("--env", action="store_true",
                        help="print it as a .env line: CEREBRUM_API_KEY=...")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    key = new_key()
    print(f"CEREBRUM_API_KEY={key}" if args.env else key)
    return EXIT_OK
