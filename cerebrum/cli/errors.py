"""What the command line reports when something fails, and with which exit status.

Every failure the user can cause or meet (a service down, a bad key, an
overloaded backend) is a ``CliError`` whose message is a sentence that says
what happened and what to do; ``main`` prints it and exits with its code,
never with a traceback.
"""

from __future__ import annotations

from typing import ClassVar

# Exit statuses, documented in docs/cli.md.
EXIT_OK = 0
EXIT_ERROR = 1          # the request failed (bad input, server error, stream cut)
EXIT_USAGE = 2          # bad command line or settings (argparse uses 2 as well)
EXIT_UNREACHABLE = 3    # a service could not be reached (or `status`: something is down)
EXIT_AUTH = 4           # the service refused the API key
EXIT_UNAVAILABLE = 5    # the service is overloaded or its backend is down (503)
EXIT_INTERRUPTED = 130  # stopped with Ctrl-C


class CliError(Exception):
    """A failure explained in one or two sentences."""

    exit_code: ClassVar[int] = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CliError):
    exit_code = EXIT_USAGE


class Unreachable(CliError):
    exit_code = EXIT_UNREACHABLE


class AuthFailed(CliError):
    exit_code = EXIT_AUTH


class Overloaded(CliError):
    exit_code = EXIT_UNAVAILABLE

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestFailed(CliError):
    exit_code = EXIT_ERROR


def orchestrator_only(exc: RequestFailed, url: str, route: str) -> RequestFailed:
    """``exc``, or, where the service has no ``route`` at all (a backend, another OpenAI
    server), a sentence that says where to point ``--url`` instead."""
    if "no route" in exc.message or "Not Found" in exc.message:
        return RequestFailed(f"The service at {url} has no {route}: point --url at the "
                             "orchestrator, not at a backend.")
    return exc
