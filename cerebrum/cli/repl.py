"""``cerebrum chat``: the REPL, with history across runs, multi-line input and streamed answers.

Line editing is prompt-toolkit's: Enter sends, Alt-Enter (or Esc then Enter)
or a trailing backslash starts a new line, and pasted text keeps its lines.
Ctrl-C while an answer streams stops it (closing the connection, which stops
the backend's generation) and returns to the prompt; Ctrl-C at the prompt
clears the line; Ctrl-D leaves. When standard input is not a terminal, each
input line is one message, so the REPL can be scripted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from cerebrum.cli.answer import stream_answer, summary
from cerebrum.cli.ask import (
    add_generation_options,
    attachment,
    generation_fields,
    read_file,
    with_repo,
)
from cerebrum.cli.client import Client
from cerebrum.cli.errors import EXIT_OK, AuthFailed, CliError, Unreachable, UsageError
from cerebrum.cli.render import Output, is_terminal, terminal_safe
from cerebrum.cli.settings import resolve

HELP = """commands:
  /model               show the model in use and those the service has
  /model NAME          use NAME from the next message on (/model default: the service's choice)
  /optimize on|off     prompt optimisation by the orchestrator (on by default)
  /file PATH           attach a file to your next message
  /reset               forget the conversation (and pending files)
  /help                this help
  /quit                leave (or Ctrl-D)
keys: Enter sends; Alt-Enter or a trailing \\ adds a line; Ctrl-C stops an answer; Ctrl-D quits"""


def default_history_path() -> Path:
    """``$CEREBRUM_HISTORY``, else ``$XDG_STATE_HOME/cerebrum/history`` (``~/.local/state``)."""
    if os.environ.get("CEREBRUM_HISTORY"):
        return Path(os.environ["CEREBRUM_HISTORY"]).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "cerebrum" / "history"


class Conversation:
    """The chat so far, the pending attachments and the REPL's switches."""

    def __init__(self, model: str | None, optimize: bool, fields: dict[str, Any]) -> None:
        self.model = model
        self.optimize = optimize
        self.fields = fields
        self.messages: list[dict[str, str]] = []
        self.attachments: list[tuple[str, str]] = []

    def request(self, text: str) -> dict[str, Any]:
        """Add the user's message (with pending files) and build the request body."""
        content = "\n\n".join([text.strip()] + [attachment(n, t) for n, t in self.attachments])
        self.attachments.clear()
        self.messages.append({"role": "user", "content": content})
        body: dict[str, Any] = {**self.fields, "messages": list(self.messages)}
        if self.model:
            body["model"] = self.model
        return body

    def answered(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})

    def _model_command(self, arg: str, out: Output, models: Sequence[str] | None,
                       err: Output) -> None:
        available = "" if models is None else f" (the service has: {', '.join(models) or 'none'})"
        if arg and arg != "default" and models is not None and arg not in models:
            # Refused now rather than failing on the next message.
            err.line(f"unknown model {arg!r}; kept {self.model or 'the service default'}"
                     f"{available}")
            return
        if arg:
            self.model = None if arg == "default" else arg
        out.line(out.dim(f"model: {self.model or 'the service default'}{available}"))

    def command(self, line: str, out: Output, models: Sequence[str] | None = None,
                err: Output | None = None) -> bool:
        """Run a /command; False means leave the REPL.

        ``models``: the service's model names, to check ``/model NAME`` against
        (None: not known, so not checked). What went wrong goes to ``err`` (stderr in
        the REPL, as every error of the CLI's), the rest to ``out``.
        """
        err = err or out
        name, _, arg = line[1:].strip().partition(" ")
        arg = arg.strip()
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            out.line(HELP)
        elif name == "model":
            self._model_command(arg, out, models, err)
        elif name == "optimize":
            if arg not in ("on", "off", ""):
                err.line("usage: /optimize on|off")
            else:
                if arg:
                    self.optimize = arg == "on"
                out.line(out.dim(f"optimisation: {'on' if self.optimize else 'off'}"))
        elif name == "file":
            if not arg:
                err.line("usage: /file PATH")
            else:
                try:
                    path = Path(arg).expanduser()
                    self.attachments.append((arg, read_file(path)))
                    out.line(out.dim(f"attached {arg} to your next message"))
                except CliError as exc:
                    err.line(exc.message)
        elif name == "reset":
            self.messages.clear()
            self.attachments.clear()
            out.line(out.dim("conversation cleared"))
        else:
            err.line(f"unknown command /{name}; /help lists them")
        return True


def add_parser(commands: argparse._SubParsersAction, *, parents: list[argparse.ArgumentParser],
               **kwargs: object) -> None:
    parser = commands.add_parser(
        "chat", parents=parents, help="interactive chat (REPL)",
        description="A chat with history across runs and streamed answers. " + HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generation_options(parser)
    parser.add_argument("--history", type=Path, metavar="FILE",
                        help="history file (default $XDG_STATE_HOME/cerebrum/history)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = resolve(url=args.url, env_file=args.env_file)
    fields = generation_fields(args)
    fields.pop("model", None)
    conversation = Conversation(args.model, args.optimize, fields)
    return asyncio.run(chat(settings.url, settings.api_key, conversation,
                            history=args.history or default_history_path(), args=args))


async def chat(url: str, key: str | None, conversation: Conversation, *,
               history: Path, banner: str | None = None,
               args: argparse.Namespace | None = None) -> int:
    """Run the REPL against ``url`` until the user leaves."""
    out, err = Output(sys.stdout), Output(sys.stderr)
    interactive = is_terminal(sys.stdin) and is_terminal(sys.stdout)
    read_line = _prompt_reader(history) if interactive else _plain_reader()
    async with Client(url, key) as client:
        await _check_reachable(client)
        if conversation.model:
            # --model is checked as /model is: at once, not on every message.
            models = await _model_names(client, err)
            if models is not None and conversation.model not in models:
                raise UsageError(f"Unknown model {conversation.model!r}: the service has "
                                 f"{', '.join(models) or 'none'}.")
        if args is not None:
            # --repo: index first, then every question retrieves from it (--workspace
            # alone: from that one as it is).
            conversation.fields.update(await with_repo(client, args, err))
        if interactive:
            out.line(out.dim(banner or f"Cerebrum chat with {url}. /help for commands; "
                                       "Ctrl-C stops an answer, Ctrl-D quits."))
        while True:
            try:
                line = await read_line()
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt: a fresh line
            except EOFError:
                break
            if not line.strip():
                continue
            if line.startswith("/"):
                models = await _model_names(client, err) if _is_model_command(line) else None
                if not conversation.command(line, out, models, err):
                    break
                continue
            await _answer(client, conversation, line, out, err)
    return EXIT_OK


async def _check_reachable(client: Client) -> None:
    # Fail at once with the usual sentence rather than after the first question.
    try:
        await client.get_json("/health")
    except Unreachable:
        raise
    except CliError:
        pass  # a server without /health (any OpenAI server) is fine


def _is_model_command(line: str) -> bool:
    return line[1:].strip().partition(" ")[0] == "model"


async def _model_names(client: Client, err: Output) -> list[str] | None:
    """The service's models from ``GET /v1/models``; None (said on ``err``) when it cannot
    tell, so ``/model NAME`` goes unchecked rather than refused."""
    try:
        listing = await client.get_json("/v1/models")
    except CliError as exc:
        err.line(err.dim(f"could not list the models, so /model is not checked: {exc.message}"))
        return None
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        err.line(err.dim("the service's /v1/models has no list, so /model is not checked"))
        return None
    # Shown in /model's lines and sentences: names, not terminal commands.
    return [terminal_safe(str(entry["id"]), one_line=True)
            for entry in data if isinstance(entry, dict) and "id" in entry]


async def _answer(client: Client, conversation: Conversation, line: str,
                  out: Output, err: Output) -> None:
    pieces: list[str] = []
    task = asyncio.ensure_future(stream_answer(
        client, conversation.request(line), optimize=conversation.optimize,
        out=out, err=err, on_piece=pieces))
    loop = asyncio.get_running_loop()
    with _sigint_cancels(loop, task):
        try:
            stream = await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            out.write("\n" if pieces else "")
            err.line(err.dim("[stopped]"))
            conversation.answered("".join(pieces))
            return
        except AuthFailed:
            raise
        except CliError as exc:
            # Overloaded, a bad model name, a stream cut short: say so, stay in the REPL.
            conversation.messages.pop()
            err.line(err.red(terminal_safe(exc.message)))
            return
    conversation.answered("".join(pieces))
    err.line(err.dim(summary(stream, conversation.optimize)))


@contextlib.contextmanager
def _sigint_cancels(loop: asyncio.AbstractEventLoop, task: asyncio.Future[Any]):  # type: ignore[no-untyped-def]
    """While an answer streams, Ctrl-C cancels it instead of ending the program."""
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
    except (NotImplementedError, RuntimeError):
        # No signal handlers here (Windows' loops, or not the main thread):
        # Ctrl-C then ends the program, as it would without this.
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _prompt_reader(history: Path) -> Callable[[], Awaitable[str]]:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.formatted_text import FormattedText
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    history.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    bindings = KeyBindings()

    @bindings.add("enter")
    def _send(event: Any) -> None:
        buffer = event.current_buffer
        if buffer.document.text_before_cursor.endswith("\\"):
            buffer.delete_before_cursor(1)
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    @bindings.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(history)), key_bindings=bindings, multiline=True,
        prompt_continuation=lambda width, line, wrap: "." * (width - 1) + " ",
        enable_history_search=False)

    async def read() -> str:
        return await session.prompt_async(FormattedText([("bold", "› ")]))

    return read


def _plain_reader() -> Callable[[], Awaitable[str]]:
    async def read() -> str:
        line: str = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if not line:
            raise EOFError
        return line.rstrip("\n")

    return read
