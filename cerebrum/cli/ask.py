"""``cerebrum ask``: one question (with files and/or stdin) → one streamed answer."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from cerebrum.cli.answer import stream_answer, summary
from cerebrum.cli.client import Client
from cerebrum.cli.errors import EXIT_OK, UsageError
from cerebrum.cli.render import Output, is_terminal
from cerebrum.cli.settings import resolve

MAX_INPUT_BYTES = 4 * 1024 * 1024


def read_file(path: Path) -> str:
    """A file's text, with a sentence instead of a traceback when it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"There is no file {path}.") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory; give files with -f.") from None
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{path} is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MB.")
    return data.decode("utf-8", "replace")


def attachment(name: str, text: str) -> str:
    """A file as the model should see it: its name, then a fenced block."""
    fence = "````" if "```" in text else "```"
    return f"{name}:\n{fence}\n{text.rstrip()}\n{fence}"


def compose(instruction: str, files: list[tuple[str, str]]) -> str:
    """The instruction first, then each attached text."""
    parts = [instruction.strip()] if instruction.strip() else []
    parts += [attachment(name, text) for name, text in files if text.strip()]
    return "\n\n".join(parts)


def add_parser(commands: argparse._SubParsersAction, *, parents: list[argparse.ArgumentParser],
               **kwargs: object) -> None:
    parser = commands.add_parser(
        "ask", parents=parents, help="ask one question, stream the answer",
        description="Send one request and stream the answer. Files (-f) and standard input "
                    "are attached after the instruction. A summary line (request id, model, "
                    "tokens, time to first token, tokens/s, prompt reduction) follows on stderr.")
    add_prompt_arguments(parser)
    add_generation_options(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    parser.set_defaults(run=run)


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    """The instruction and attached files, shared by ``ask`` and ``optimize``."""
    parser.add_argument("instruction", nargs="?", default="",
                        help="what to do, e.g. \"Explain this function\"")
    parser.add_argument("-f", "--file", dest="files", action="append", type=Path, default=[],
                        metavar="FILE", help="attach a file (repeatable)")


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``ask`` and ``chat``."""
    parser.add_argument("-m", "--model", help="model name (default: the service's choice)")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="send the prompt as it is, without the orchestrator's optimisation")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="stop after N tokens")
    parser.add_argument("--temperature", type=float, metavar="T", help="sampling temperature")
    parser.add_argument("--repo", type=Path, metavar="PATH",
                        help="draw on this repository: index it (only changed files travel), "
                             "then retrieve the code each question is about")
    parser.add_argument("--workspace", metavar="NAME",
                        help="with --repo: the workspace name (default: the directory's name); "
                             "alone: draw on this workspace as it was last indexed")


def generation_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Request fields from ``--model``, ``--max-tokens`` and ``--temperature``."""
    fields: dict[str, Any] = {}
    if args.model:
        fields["model"] = args.model
    if args.max_tokens is not None:
        fields["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        fields["temperature"] = args.temperature
    return fields


def run(args: argparse.Namespace) -> int:
    files = [(str(path), read_file(path)) for path in args.files]
    if not is_terminal(sys.stdin):
        files.append(("stdin", sys.stdin.read()))
    prompt = compose(args.instruction, files)
    if not prompt:
        raise UsageError('Nothing to ask: give an instruction, e.g. cerebrum ask "Explain '
                         'this" -f code.py, or pipe text into it.')
    settings = resolve(url=args.url, env_file=args.env_file)
    body = {"messages": [{"role": "user", "content": prompt}], **generation_fields(args)}
    return asyncio.run(_ask(settings.url, settings.api_key, body, args))


async def with_repo(client: Client, args: argparse.Namespace, err: Output) -> dict[str, Any]:
    """With ``--repo``: bring its workspace up to date; the body fields that retrieve from it.

    ``--workspace`` alone names one indexed earlier (maybe from another machine): it is
    used as it is, and the orchestrator answers 404 if this key has none of that name."""
    if args.repo is None:
        return {"cerebrum": {"workspace": args.workspace}} if args.workspace else {}
    from cerebrum.cli import index  # deferred: only --repo needs it

    root = index.repo_root(args.repo)
    summary = await index.sync(client, root, index.workspace_name(root, args.workspace), err)
    if summary.sent or summary.removed:
        err.line(err.dim(index.summary_line(summary).split("\n")[0]))
    return {"cerebrum": {"workspace": summary.name}}


async def _ask(url: str, key: str | None, body: dict[str, Any], args: argparse.Namespace) -> int:
    out, err = Output(sys.stdout), Output(sys.stderr)
    async with Client(url, key) as client:
        body.update(await with_repo(client, args, err))
        stream = await stream_answer(client, body, optimize=args.optimize, out=out, err=err)
    if not args.quiet:
        err.line(err.dim(summary(stream, args.optimize)))
    return EXIT_OK
