"""The command line against a hostile server: ``--url`` may point anywhere, so what comes
back may try to drive the terminal, have any shape, or never end.

A real service cannot be made to send these, so a small aiohttp app does, on a
loopback port, on a thread of its own; each test sets what it answers. The CLI
runs in this process (``main``), its stdout and stderr a terminal or a pipe as
the test needs.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web

from cerebrum.cli import client as client_module
from cerebrum.cli.main import main

# What a hostile server would write: the window title, the clipboard (OSC 52), a
# cleared screen and a fake prompt in red, a hyperlink, a line overwritten by \r.
ATTACK = ("\x1b]0;PWNED\x07\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J\x1b[H\x1b[31mFAKE PROMPT $ "
          "\x1b[0m\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07 safe\rrm -rf ~ \x9b2J\u202e")
# As the CLI shows it: the controls visible (U+2400...), the CR gone, CSI and RLO as \ufffd.
ATTACK_SHOWN = ("␛]0;PWNED␇␛]52;c;ZWNobyBwd25lZA==␇␛[2J␛[H␛[31mFAKE PROMPT $ ␛[0m"
                "␛]8;;http://evil.example/␇click␛]8;;␇ saferm -rf ~ \ufffd2J\ufffd")
# Nothing a terminal obeys: ESC, BEL, a bare CR, CSI (U+009B), a bidi override.
OBEYED = ("\x1b", "\x07", "\r", "\x9b", "\u202e")
NOT_OPENAI = "cerebrum: The answer is not what an OpenAI-compatible server sends ("

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@attrs.define
class FakeServer:
    """Answers each path with the handler a test put in ``routes`` (404 otherwise)."""

    url: str = ""
    routes: dict[str, Handler] = attrs.Factory(dict)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        handler = self.routes.get(request.path)
        if handler is None:
            return web.json_response({"error": {"message": "no route"}}, status=404)
        return await handler(request)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.dispatch)
    runner = web.AppRunner(app, shutdown_timeout=0.1)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield fake
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@attrs.frozen
class Run:
    status: int
    stdout: str
    stderr: str

    @property
    def said(self) -> str:
        """stderr after the spinner (a terminal's), which clears its line when done."""
        return self.stderr.rpartition("\r\x1b[K")[2]


@pytest.fixture
def cli(server: FakeServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """``cli("ask", "hi", tty=True)``: the command against ``server``, in this process."""
    for name in [n for n in os.environ if n.startswith("CEREBRUM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CEREBRUM_API_KEY", "a-key-for-the-fake-server")
    monkeypatch.setenv("NO_COLOR", "1")  # the only escape codes left are the spinner's
    monkeypatch.chdir(tmp_path)

    def run(*args: str, tty: bool = False, stdin: str | None = None) -> Run:
        out, err = (FakeTerminal(), FakeTerminal()) if tty else (io.StringIO(), io.StringIO())
        # No stdin: a terminal, which ask does not read.
        monkeypatch.setattr(sys, "stdin", FakeTerminal() if stdin is None else io.StringIO(stdin))
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        status = main([*args, "--url", server.url])
        return Run(status, out.getvalue(), err.getvalue())

    return run


def sse(*events: Any, headers: dict[str, str] | None = None,
        pings_every: float | None = None) -> Handler:
    """An SSE answer: each event (an object, or raw bytes) in turn, then ``[DONE]``; or,
    with ``pings_every``, keep-alive comments after the events, for ever."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               **(headers or {})})
        await response.prepare(request)
        for event in events:
            await response.write(event if isinstance(event, bytes)
                                 else b"data: " + json.dumps(event).encode() + b"\n\n")
        if pings_every is not None:
            while True:
                await response.write(b": ping\n\n")
                await asyncio.sleep(pings_every)
        await response.write(b"data: [DONE]\n\n")
        return response

    return handler


def answer(body: bytes | Any, status: int = 200) -> Handler:
    """A whole answer: ``body`` as it is (bytes) or as JSON."""

    async def handler(request: web.Request) -> web.StreamResponse:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return web.Response(body=raw, status=status, content_type="application/json")

    return handler


def chunk(content: Any = "hi ", **fields: Any) -> dict[str, Any]:
    """An OpenAI stream chunk with ``content``; ``fields`` replace its own."""
    return {"id": "x", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
            **fields}


def assert_obeys_nothing(text: str) -> None:
    for control in OBEYED:
        assert control not in text, (control, text)


def assert_one_sentence(run: Run, status: int = 1) -> None:
    assert run.status == status, run
    assert run.said.startswith("cerebrum: ") and run.said.count("\n") == 1, run.stderr


# --- Text that would drive the terminal -------------------------------------------------

def test_terminal_safe_shows_controls_instead_of_obeying_them() -> None:
    from cerebrum.cli.render import terminal_safe  # here: the rest runs against any version

    assert terminal_safe(ATTACK) == terminal_safe(ATTACK, one_line=True) == ATTACK_SHOWN
    assert terminal_safe("a\x1b]0;X\x07b") == "a␛]0;X␇b"
    assert terminal_safe("code\r\nmore\tend\n") == "code\nmore\tend\n"  # CRLF is a line end
    assert terminal_safe("safe\rrm") == "saferm"
    assert terminal_safe("\x00\x08\x7f\x9b\x85\u202e\u2066x") == "␀␈␡\ufffd\ufffd\ufffd\ufffdx"
    assert terminal_safe("é ü 中文 🙂 \u200d") == "é ü 中文 🙂 \u200d"
    assert terminal_safe("two\nlines\tand a tab", one_line=True) == "two lines and a tab"
    # An escape sequence cut between two pieces of a stream is harmless in both.
    whole = "\x1b]52;c;ZWNobw==\x07"
    assert all("\x1b" not in terminal_safe(part) for part in (whole[:1], whole[1:]))


def test_an_answer_on_a_terminal_is_shown_not_obeyed(server: FakeServer, cli) -> None:
    server.routes["/v1/chat/completions"] = sse(chunk("answer: " + ATTACK[:40]),
                                                chunk(ATTACK[40:] + "\n"), chunk(model=ATTACK))
    run = cli("ask", "hi", tty=True)
    assert run.status == 0, run
    assert "\x1b" not in run.stdout and "answer: ␛]0;PWNED␇" in run.stdout
    assert "safe" in run.stdout and "rm -rf" in run.stdout
    # stderr has the spinner's own line clearing, and nothing of the server's.
    assert_obeys_nothing(run.said)
    assert ATTACK_SHOWN in run.stderr  # the model's name, in the summary


def test_an_answer_piped_is_exact_and_the_summary_still_safe(server: FakeServer, cli) -> None:
    server.routes["/v1/chat/completions"] = sse(chunk("answer: " + ATTACK + "\n"),
                                                chunk(model=ATTACK))
    run = cli("ask", "hi")
    assert run.status == 0, run
    assert run.stdout == "answer: " + ATTACK + "\n" + "hi \n"  # data for a file: untouched
    assert_obeys_nothing(run.stderr)
    assert ATTACK_SHOWN in run.stderr and run.stderr.count("\n") == 1


@pytest.mark.parametrize("tty", [True, False])
@pytest.mark.parametrize("handler", [
    answer({"error": {"message": "nope " + ATTACK}}, status=400),
    answer(("<h1>" + ATTACK + "\n</h1>").encode(), status=500),
    sse(chunk(), b"event: error\ndata: " + json.dumps({"error": {"message": ATTACK}}).encode()
        + b"\n\n"),
    sse(chunk(), {"error": {"message": ATTACK, "type": "server_error"}}),
], ids=["json-400", "html-500", "error-event", "error-chunk"])
def test_a_servers_error_message_is_always_made_safe(server: FakeServer, cli, tty: bool,
                                                     handler: Handler) -> None:
    server.routes["/v1/chat/completions"] = handler
    run = cli("ask", "hi", tty=tty)
    assert_one_sentence(run)
    assert "␛]0;PWNED␇" in run.stderr
    assert_obeys_nothing(run.said)


def test_chat_shows_a_servers_error_and_model_names_safely(server: FakeServer, cli) -> None:
    server.routes["/health"] = answer({"status": "ok"})
    server.routes["/v1/models"] = answer({"data": [{"id": "evil" + ATTACK}]})
    server.routes["/v1/chat/completions"] = sse(
        b"event: error\ndata: " + json.dumps({"error": {"message": ATTACK}}).encode() + b"\n\n")
    run = cli("chat", stdin="/model\nhi\n")
    assert run.status == 0, run
    assert "model: the service default (the service has: evil␛]0;PWNED" in run.stdout
    assert "The answer stopped early: ␛]0;PWNED" in run.stderr
    assert_obeys_nothing(run.stdout + run.stderr)


def test_status_fields_are_made_safe_even_piped(server: FakeServer, cli) -> None:
    server.routes["/health"] = answer({
        "status": "ok" + ATTACK, "uptime_s": "x", "in_flight": ATTACK, "max_concurrent": [ATTACK],
        "backends": [{"name": ATTACK, "breaker": ATTACK, "models": [ATTACK],
                      "retry_after_s": ATTACK}]})
    run = cli("status", "--only", "orchestrator")
    assert run.status == 3, run  # "ok<ESC...>" is no healthy status
    assert_obeys_nothing(run.stdout + run.stderr)
    assert "in flight: " + ATTACK_SHOWN in run.stdout
    assert "models: " + ATTACK_SHOWN in run.stdout


@pytest.mark.parametrize("tty", [True, False])
def test_optimize_figures_are_safe_and_its_prompt_exact_only_when_piped(
        server: FakeServer, cli, tty: bool) -> None:
    server.routes["/v1/optimize"] = answer({
        "prompt": "p" + ATTACK, "model": ATTACK, "language": ATTACK,
        "stats": {"warnings": [ATTACK], "focus": [ATTACK], "skipped_reason": ATTACK,
                  "kept": [{"name": ATTACK, "lines": [1, 2], "why": ATTACK}]}})
    run = cli("optimize", "hi", tty=tty)
    assert run.status == 0, run
    assert run.stdout == "p" + (ATTACK_SHOWN if tty else ATTACK) + "\n"
    assert_obeys_nothing(run.stderr)
    assert f"warning: {ATTACK_SHOWN}" in run.stderr
    assert f"the question points at: {ATTACK_SHOWN}" in run.stderr
    json_run = cli("optimize", "hi", "--json", tty=tty)
    if tty:
        assert_obeys_nothing(json_run.stdout)
    assert json.loads(json_run.stdout)["prompt"].startswith("p")


# --- Answers of a shape no OpenAI-compatible server sends ------------------------------

@pytest.mark.parametrize(("event", "what"), [
    (chunk(choices="abc"), "its choices are a string, not a list"),
    (chunk(choices=5), "its choices are a number, not a list"),
    (chunk(choices=["abc"]), "a choice is a string, not an object"),
    (chunk(choices=[{"index": 0, "delta": "hello"}]), "a delta is a string, not an object"),
    (chunk(5), "a piece of the answer is a number, not text"),
    (chunk(["a", "b"]), "a piece of the answer is a list, not text"),
    (chunk(choices=[{"index": 0, "text": {"a": 1}}]), "a piece of the answer is an object"),
])
def test_an_answer_of_the_wrong_shape_is_a_sentence(server: FakeServer, cli,
                                                    event: dict[str, Any], what: str) -> None:
    server.routes["/v1/chat/completions"] = sse(event)
    run = cli("ask", "hi")
    assert_one_sentence(run)
    assert run.stderr.startswith(NOT_OPENAI + what), run.stderr


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": 1, "completion_tokens": "7"}, {"completion_tokens": 10**400},
    {"completion_tokens": True}, {"completion_tokens": -3}, {"completion_tokens": 1.5}])
def test_odd_token_counts_only_mean_no_count(server: FakeServer, cli,
                                             usage: dict[str, Any]) -> None:
    server.routes["/v1/chat/completions"] = sse(chunk("a"), chunk("b"),
                                                chunk(usage=usage, choices=[]))
    run = cli("ask", "hi")
    assert run.status == 0, run
    assert run.stdout == "ab\n" and " · 2 tokens · " in run.stderr  # the pieces, counted


def test_harmless_oddities_are_ignored(server: FakeServer, cli) -> None:
    server.routes["/v1/chat/completions"] = sse(
        chunk("a", model={"name": "x"}), b"data: " + b"[" * 100_000 + b"\n\n",
        chunk(choices=[{"index": 0, "delta": None, "finish_reason": 7}]), chunk(choices=None),
        chunk("b"), headers={"X-Cerebrum-Prompt-Stats": "[" * 4000})
    run = cli("ask", "hi")
    assert run.status == 0, run
    assert run.stdout == "ab\n"
    assert " · m · 2 tokens" in run.stderr and "prompt reduction n/a" in run.stderr


def test_a_deeply_nested_body_is_a_sentence(server: FakeServer, cli) -> None:
    deep = b"[" * 100_000
    server.routes["/v1/optimize"] = answer(deep)
    run = cli("optimize", "hi")
    assert_one_sentence(run)
    assert "did not answer with JSON" in run.stderr
    # An error whose /health (read to name the service) is as deep.
    server.routes["/v1/chat/completions"] = answer(deep, status=400)
    server.routes["/health"] = answer(deep)
    run = cli("ask", "hi")
    assert_one_sentence(run)
    assert run.stderr.startswith("cerebrum: The service rejected the request: [[[")
    run = cli("status", "--only", "orchestrator")
    assert run.status == 3, run
    assert "down" in run.stdout and "did not answer with JSON" in run.stdout


@pytest.mark.parametrize(("body", "what"), [
    ({"prompt": "p", "stats": "abc"}, "its stats field is a string"),
    ({"prompt": 5, "stats": {}}, "its prompt field is a number"),
])
def test_an_optimize_answer_of_the_wrong_shape_is_a_sentence(server: FakeServer, cli,
                                                             body: Any, what: str) -> None:
    server.routes["/v1/optimize"] = answer(body)
    run = cli("optimize", "hi")
    assert_one_sentence(run)
    assert what in run.stderr and "/v1/optimize" in run.stderr


@pytest.mark.parametrize("stats", [
    {"elapsed_ms": "fast"}, {"kept": [{"name": "f", "lines": 5}]}, {"kept": 5},
    {"warnings": 5}, {"focus": 5}, {"messages": {"a": 1}}, {"messages": 5},
    {"messages": [{"index": 0, "action": "cut", "kept": 5}]},
    {"original_chars": 10, "optimized_chars": 5, "reduction": "abc"}])
def test_odd_optimize_figures_are_left_out(server: FakeServer, cli,
                                           stats: dict[str, Any]) -> None:
    server.routes["/v1/optimize"] = answer({"prompt": "p", "stats": stats})
    run = cli("optimize", "hi")
    assert run.status == 0, run
    assert run.stdout == "p\n" and run.stderr.startswith("default model · text")


@pytest.mark.parametrize("health", [
    {"status": "ok", "backends": [{"name": "a", "breaker": "closed", "models": 5}]},
    {"status": "ok", "backends": {"a": {"models": {"x": 1}}}, "models": {"a": {"b": 1}},
     "cpu_percent": 1},
    {"status": "ok", "backends": [], "uptime_s": float("inf")},
])
def test_odd_status_fields_are_shown_as_they_are(server: FakeServer, cli,
                                                 health: dict[str, Any]) -> None:
    server.routes["/health"] = answer(health)
    run = cli("status", "--only", "orchestrator")
    assert run.status in (0, 3), run
    assert "orchestrator" in run.stdout and run.stderr == ""


# --- A stream that never ends ----------------------------------------------------------

def test_keep_alive_comments_alone_do_not_hold_ask_for_ever(
        server: FakeServer, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # raising=False: without the bound (an older CLI) this test is to fail on the wait.
    monkeypatch.setattr(client_module, "SSE_EVENT_TIMEOUT_S", 0.5, raising=False)
    server.routes["/v1/chat/completions"] = sse(chunk("partial "), pings_every=0.05)
    outcome: list[Run] = []
    started = time.monotonic()
    # On a thread, so that a CLI waiting for ever fails this test instead of hanging it.
    worker = threading.Thread(target=lambda: outcome.append(cli("ask", "hi")), daemon=True)
    worker.start()
    worker.join(20)
    assert outcome, "ask still waiting on a stream of keep-alive comments"
    run = outcome[0]
    assert_one_sentence(run)
    assert "No answer came for 0.5 s" in run.stderr and "keep-alive" in run.stderr
    assert run.stdout == "partial "
    assert time.monotonic() - started < 10


def test_a_slow_answer_that_keeps_coming_is_not_cut(server: FakeServer, cli,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "SSE_EVENT_TIMEOUT_S", 0.6)

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in ("one ", "two ", "three"):  # 0.9 s in all, 0.3 s between events
            await response.write(b": ping\n\n")
            await asyncio.sleep(0.3)
            await response.write(b"data: " + json.dumps(chunk(word)).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    server.routes["/v1/chat/completions"] = slow
    run = cli("ask", "hi")
    assert run.status == 0, run
    assert run.stdout == "one two three\n"


# --- cerebrum index against a server that is not the orchestrator ------------------------

@pytest.mark.parametrize(("begin", "commit"), [
    ({"need": 5, "unchanged": "many", "update": "u"}, {"files": "x", "units": None}),
    ({"need": ["a.py"], "update": "u"}, {"files": 1.5, "vectors_enabled": True,
                                         "vectors": "all"}),
    ([1, 2], {}),
])
def test_index_reads_odd_counts_without_a_traceback(server: FakeServer, cli, tmp_path: Path,
                                                    begin: Any, commit: Any) -> None:
    (tmp_path / "a.py").write_text("def f():\n    return 1\n")
    server.routes["/v1/workspaces/ws/begin"] = answer(begin)
    server.routes["/v1/workspaces/ws/files"] = answer({"stored": 1})
    server.routes["/v1/workspaces/ws/commit"] = answer(commit)
    run = cli("index", ".", "--name", "ws")
    assert "Traceback" not in run.stderr
    if isinstance(begin, list):
        assert_one_sentence(run)
        assert "not an object" in run.stderr
    else:
        assert run.status == 0, run
