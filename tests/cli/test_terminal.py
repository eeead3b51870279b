"""The command line at a terminal (a pseudo-terminal): the REPL's history, multi-line input and
Ctrl-C, the spinner and colour that only a terminal gets."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.cli.conftest import CEREBRUM, TEST_KEY, RunningService, Terminal, clean_env

FIRST_TEXT = r"\r\x1b\[K[^\x1b\r]"  # the spinner's line cleared, then the answer's first text
PROMPT = "›"


def terminal_env(home: Path, backend: RunningService) -> dict[str, str]:
    # No cursor-position requests: the test terminal does not answer them.
    return clean_env(home, CEREBRUM_URL=backend.url, CEREBRUM_API_KEY=TEST_KEY,
                     TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1")


def completions(backend: RunningService, outcome: str) -> int:
    return len(re.findall(rf"completion {outcome} ", backend.log_text()))


@pytest.mark.model
def test_chat_multiline_ctrl_c_and_history_across_runs(
        home: Path, backend: RunningService, terminal: list[Terminal]) -> None:
    env = terminal_env(home, backend)
    chat = Terminal([str(CEREBRUM), "chat", "--max-tokens", "300", "--temperature", "0"],
                    cwd=home, env=env)
    terminal.append(chat)
    chat.expect(PROMPT, 30)

    # A trailing backslash continues the message on a new line; Ctrl-C during the
    # answer stops it, and the backend's generation with it.
    disconnected = completions(backend, "client_disconnected")
    chat.send("Write a very long story\\\r")
    chat.send("about a dragon and a knight.\r")
    chat.expect(FIRST_TEXT, 90)
    chat.send("\x03")
    chat.expect(r"\[stopped\]", 10)
    chat.expect(PROMPT, 10)
    deadline = time.monotonic() + 10
    while completions(backend, "client_disconnected") == disconnected:
        assert time.monotonic() < deadline, backend.log_text()[-2000:]
        time.sleep(0.1)

    # Still in the REPL, and the next answer is served at once (the model is free again).
    started = time.monotonic()
    chat.send("/reset\r")
    chat.expect("conversation cleared")
    chat.send("Say hi.\r")
    chat.expect(r"request [0-9a-f]{32}", 60)
    assert time.monotonic() - started < 60
    # Wait for the prompt: a Ctrl-D typed while the answer's summary is still
    # being written reaches a terminal not yet in raw mode and is lost.
    chat.expect(PROMPT, 10)
    chat.send("\x04")  # Ctrl-D leaves
    assert chat.wait() == 0
    assert "Traceback" not in chat.text()

    history = (home / ".local/state/cerebrum/history").read_text()
    assert "+Write a very long story\n+about a dragon and a knight.\n" in history

    # A new run recalls the last message with the Up arrow.
    again = Terminal([str(CEREBRUM), "chat"], cwd=home, env=env)
    terminal.append(again)
    again.expect(PROMPT, 30)
    again.send("\x1b[A")
    again.expect("Say hi.", 10)
    again.send("\x03")  # Ctrl-C at the prompt: clears the line, stays
    again.expect(PROMPT, 10)
    again.send("/quit\r")
    assert again.wait() == 0


@pytest.mark.model
def test_ask_on_a_terminal_spins_then_dims_the_summary(
        home: Path, backend: RunningService, terminal: list[Terminal]) -> None:
    ask = Terminal([str(CEREBRUM), "ask", "Say hello.", "--max-tokens", "4"], cwd=home,
                   env=terminal_env(home, backend))
    terminal.append(ask)
    ask.expect("waiting for the model", 30)
    ask.expect(r"\x1b\[2mrequest [0-9a-f]{32} ", 60)
    assert ask.wait() == 0


@pytest.mark.model
def test_ctrl_c_stops_ask_quietly(home: Path, backend: RunningService,
                                  terminal: list[Terminal]) -> None:
    disconnected = completions(backend, "client_disconnected")
    ask = Terminal([str(CEREBRUM), "ask", "Write a very long story about a dragon.",
                    "--max-tokens", "300"], cwd=home, env=terminal_env(home, backend))
    terminal.append(ask)
    ask.expect(FIRST_TEXT, 90)
    ask.send("\x03")
    assert ask.wait() == 130
    assert "Traceback" not in ask.text()
    deadline = time.monotonic() + 10
    while completions(backend, "client_disconnected") == disconnected:
        assert time.monotonic() < deadline, backend.log_text()[-2000:]
        time.sleep(0.1)
