"""Terminal output: colour, dim lines and a spinner on a terminal; plain text when piped.

Nothing here writes an escape code to a stream that is not a TTY, so
``cerebrum ask ... > out.md`` is clean. ``NO_COLOR`` (https://no-color.org)
and ``TERM=dumb`` turn colour off on a terminal too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
from collections.abc import AsyncIterator
from typing import TextIO

_DIM, _BOLD, _RED, _GREEN, _YELLOW, _RESET = "\x1b[2m", "\x1b[1m", "\x1b[31m", "\x1b[32m", \
    "\x1b[33m", "\x1b[0m"
_CLEAR_LINE = "\r\x1b[K"
_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def is_terminal(stream: TextIO) -> bool:
    """True when ``stream`` is an interactive terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def colour_allowed(stream: TextIO) -> bool:
    """Colour only on a terminal, and not when the user asked for none."""
    return (is_terminal(stream) and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb")


class Output:
    """One output stream and what it may show."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = is_terminal(self.stream)
        self.colour = colour_allowed(self.stream)

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def _style(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.colour else text

    def dim(self, text: str) -> str:
        return self._style(_DIM, text)

    def bold(self, text: str) -> str:
        return self._style(_BOLD, text)

    def red(self, text: str) -> str:
        return self._style(_RED, text)

    def green(self, text: str) -> str:
        return self._style(_GREEN, text)

    def yellow(self, text: str) -> str:
        return self._style(_YELLOW, text)

    @contextlib.asynccontextmanager
    async def spinner(self, label: str) -> AsyncIterator[None]:
        """Show a spinner with ``label`` until the block ends; nothing unless on a terminal."""
        if not self.tty:
            yield
            return
        task = asyncio.create_task(self._spin(label))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.write(_CLEAR_LINE)

    async def _spin(self, label: str) -> None:
        for frame in itertools.cycle(_FRAMES):
            self.write(f"{_CLEAR_LINE}{self.dim(frame + ' ' + label)}")
            await asyncio.sleep(0.08)


def error_line(message: str) -> None:
    """Print a failure to stderr: ``cerebrum: <sentence>``, red on a terminal."""
    err = Output(sys.stderr)
    err.line(err.red("cerebrum: ") + message)
