"""Terminal output: colour, dim lines and a spinner on a terminal; plain text when piped.

Nothing here writes an escape code to a stream that is not a TTY, so
``cerebrum ask ... > out.md`` is clean. ``NO_COLOR`` (https://no-color.org)
and ``TERM=dumb`` turn colour off on a terminal too.

Text from a server is not trusted to drive the terminal: ``terminal_safe``
shows its control characters instead of obeying them.
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


def _unsafe_characters() -> dict[int, str | None]:
    # A server could set the window title, write the clipboard (OSC 52), clear the
    # screen, plant a hyperlink or overwrite a line with \r: every C0 control but
    # \n and \t, DEL, the C1 controls (U+009B is CSI to some terminals) and the
    # bidi embeddings/isolates (text that reads otherwise than it runs).
    table: dict[int, str | None] = {code: chr(0x2400 + code) for code in range(0x20)}
    del table[ord("\n")], table[ord("\t")]
    table[ord("\r")] = None  # dropped: CRLF stays a line end, a lone CR overwrites nothing
    table[0x7F] = "\u2421"  # ␡
    for code in (*range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[code] = "\ufffd"
    return table


_UNSAFE = _unsafe_characters()
_UNSAFE_IN_A_LINE = {**_UNSAFE, ord("\n"): " ", ord("\t"): " "}


def terminal_safe(text: str, *, one_line: bool = False) -> str:
    """``text`` from a server, made harmless to print on a terminal.

    Control characters are shown, not obeyed: ESC becomes ``␛`` (so an escape
    sequence prints as text), other C0 controls their symbol (U+2400...), C1
    controls and bidi overrides ``\ufffd``; ``\r`` is dropped. Safe on a stream
    cut anywhere, as no character depends on its neighbours. ``one_line``:
    newlines and tabs become spaces too, for a name or a message in a line of
    the CLI's own.
    """
    return text.translate(_UNSAFE_IN_A_LINE if one_line else _UNSAFE)


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

    def shown(self, text: str) -> str:
        """A server's text (an answer, a prompt) as this stream gets it: made safe on a
        terminal, byte-exact when piped or redirected, where it is data."""
        return terminal_safe(text) if self.tty else text

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
    """Print a failure to stderr: ``cerebrum: <sentence>``, red on a terminal.

    The sentence may quote a server, so it is made safe wherever it goes: a log
    file of stderr is read on a terminal too.
    """
    err = Output(sys.stderr)
    err.line(err.red("cerebrum: ") + terminal_safe(message))
