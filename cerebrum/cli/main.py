"""``cerebrum``: the command line of Cerebrum.

    cerebrum up                 both services on this machine, then the REPL
    cerebrum serve backend      the inference backend (python -m cerebrum.backend)
    cerebrum serve orchestrator the orchestrator (python -m cerebrum.orchestrator)
    cerebrum ask "..." -f F     one question, streamed answer
    cerebrum chat               the REPL
    cerebrum optimize "..." -f F  what the optimiser would send, without generating
    cerebrum index [PATH]       index a repository for retrieval (ask/chat --repo PATH)
    cerebrum status             health of both services
    cerebrum keygen             a new API key

Exit statuses (see docs/cli.md): 0 ok, 1 request failed, 2 bad usage,
3 service unreachable or down, 4 key refused, 5 service overloaded, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cerebrum import __version__
from cerebrum.cli import ask, index, keygen, optimize, repl, serve, status, up
from cerebrum.cli.errors import EXIT_INTERRUPTED, CliError
from cerebrum.cli.render import error_line

_EPILOG = """exit status: 0 ok, 1 request failed, 2 bad usage, 3 service unreachable or down,
4 API key refused, 5 service overloaded (retry later), 130 interrupted.
Settings: CEREBRUM_URL, CEREBRUM_API_KEY, CEREBRUM_BACKEND_URL (environment or .env)."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global help, then one subcommand per module."""
    parser = argparse.ArgumentParser(
        prog="cerebrum", description="Coding help from a small LLM on cheap hardware.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cerebrum {__version__}")
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--url", help="the orchestrator (default CEREBRUM_URL or "
                                          "http://127.0.0.1:7000); ask and chat work with "
                                          "any OpenAI-compatible server, the backend included")
    connection.add_argument("--env-file", type=Path, default=Path(".env"), metavar="FILE",
                            help="KEY=VALUE settings read under the environment (default .env)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in (up, serve, ask, repl, optimize, index, status, keygen):
        module.add_parser(commands, parents=[connection])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, run one command, and turn every expected failure into a sentence and a status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CliError as exc:
        error_line(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        # Ctrl-C: the answer (and the request) stop; no traceback.
        sys.stderr.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `cerebrum ask ... | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
