"""``cerebrum optimize``: what the orchestrator's optimiser would send, and its figures.

Nothing is generated: a dry run of the prompt preparation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TypeGuard

from cerebrum.cli.ask import add_prompt_arguments, compose, read_file
from cerebrum.cli.client import Client, json_kind
from cerebrum.cli.errors import EXIT_OK, RequestFailed, UsageError, orchestrator_only
from cerebrum.cli.render import Output, is_terminal, terminal_safe
from cerebrum.cli.settings import resolve


def add_parser(
    commands: argparse._SubParsersAction,
    *,
    parents: list[argparse.ArgumentParser],
    **kwargs: object,
) -> None:
    parser = commands.add_parser(
        "optimize",
        parents=parents,
        help="show the optimised prompt and its stats (dry run)",
        description="Ask the orchestrator's POST /v1/optimize what it would send the model "
        "for this instruction and these files, and with which model. Nothing is "
        "generated. The prompt goes to stdout, the figures to stderr.",
    )
    add_prompt_arguments(parser)
    parser.add_argument("-m", "--model", help="model name (default: the orchestrator's routing)")
    parser.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    files = [(str(path), read_file(path)) for path in args.files]
    if not is_terminal(sys.stdin):
        files.append(("stdin", sys.stdin.read()))
    prompt = compose(args.instruction, files)
    if not prompt:
        raise UsageError("Nothing to optimise: give an instruction and files (-f) or stdin.")
    settings = resolve(url=args.url, env_file=args.env_file)
    body: dict[str, Any] = {"prompt": prompt}
    if args.model:
        body["model"] = args.model
    result = asyncio.run(_optimize(settings.url, settings.api_key, body))
    out, err = Output(sys.stdout), Output(sys.stderr)
    # The prompt (and --json) is data, exact when piped; the figures are for people.
    if args.json:
        out.line(out.shown(json.dumps(result, indent=2, ensure_ascii=False)))
        return EXIT_OK
    out.line(out.shown(result.get("prompt") or ""))
    err.line(err.dim(stats_line(result)))
    for line in reasoning_lines(result.get("stats") or {}):
        err.line(err.dim(line))
    return EXIT_OK


async def _optimize(url: str, key: str | None, body: dict[str, Any]) -> dict[str, Any]:
    async with Client(url, key) as client:
        try:
            result, _ = await client.post_json("/v1/optimize", body)
        except RequestFailed as exc:
            raise orchestrator_only(exc, url, "/v1/optimize") from None
    if not isinstance(result, dict):
        raise RequestFailed(f"The service at {url} gave an unexpected answer to /v1/optimize.")
    # What the figures are read from must have the orchestrator's shape; odd values
    # inside them are only left out.
    for field, kind in (("prompt", str), ("stats", dict)):
        value = result.get(field)
        if value is not None and not isinstance(value, kind):
            raise RequestFailed(f"The service at {url} gave an unexpected answer to "
                                f"/v1/optimize: its {field} field is {json_kind(value)}.")
    return result


def _items(value: object) -> list[Any]:
    """A list from the answer as a list; one string as one item; anything else as none."""
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, str) else []


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def stats_line(result: dict[str, Any]) -> str:
    """``model · language · 8344 → 3167 chars (-62%) · chunks 10 → 2 unique → 2 kept · 12 ms``.

    Made safe for a terminal: every word of it but the layout is the server's.
    """
    return terminal_safe(_stats_line(result), one_line=True)


def _stats_line(result: dict[str, Any]) -> str:
    stats = result.get("stats") or {}
    parts = [str(result.get("model") or "default model"), str(result.get("language") or "text")]
    before, after = stats.get("original_chars"), stats.get("optimized_chars")
    if before is not None and after is not None:
        reduction = stats.get("reduction")
        pct = f" ({-reduction * 100:.0f}%)" if _is_number(reduction) else ""
        parts.append(f"{before} → {after} chars{pct}")
    if stats.get("chunks_total") is not None:
        parts.append(
            f"chunks {stats.get('chunks_total')} → {stats.get('chunks_unique')} unique "
            f"→ {stats.get('chunks_kept')} kept"
        )
    if _is_number(stats.get("elapsed_ms")):
        parts.append(f"{float(stats['elapsed_ms']):.1f} ms")
    if stats.get("skipped_reason"):
        parts.append(f"not optimised: {stats['skipped_reason']}")
    return " · ".join(parts)


def _kept_line(kept: dict[str, Any]) -> str:
    lines = kept.get("lines")
    where = f", lines {lines[0]}–{lines[1]}" if isinstance(lines, list) and len(lines) == 2 else ""
    what = f"`{kept['name']}`" if kept.get("name") else str(kept.get("kind", "code"))
    cut = " (cut to fit)" if kept.get("whole") is False else ""
    return f"  kept {what}{where}{cut}: {kept.get('why', '')}"


def reasoning_lines(stats: dict[str, Any]) -> list[str]:
    """Why the optimiser kept what it kept, one line each, for a person to read.

    The code it kept per message (which function, which frame of an error
    report, which words matched), what happened to the other messages of a
    conversation, the warnings, and the token count against the budget. Each
    line is made safe for a terminal.
    """
    return [terminal_safe(line, one_line=True) for line in _reasoning_lines(stats)]


def _reasoning_lines(stats: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    messages = [m for m in _items(stats.get("messages")) if isinstance(m, dict)]
    if messages:
        for message in messages:
            if message.get("action") == "kept" and not message.get("kept"):
                continue
            lines.append(
                f"message {message.get('index')} ({message.get('role')}): "
                f"{message.get('action')}, {message.get('original_chars')} → "
                f"{message.get('chars')} chars: {message.get('reason')}"
            )
            lines.extend(_kept_line(k) for k in _items(message.get("kept"))
                         if isinstance(k, dict))
    else:
        lines.extend(_kept_line(k) for k in _items(stats.get("kept")) if isinstance(k, dict))
    if focus := _items(stats.get("focus")):
        lines.append("the question points at: " + "; ".join(map(str, focus)))
    for warning in _items(stats.get("warnings")):
        lines.append(f"warning: {warning}")
    if stats.get("budget_tokens"):
        counted = stats.get("counted_tokens")
        exact = f", {counted} by the model's own count" if counted is not None else ""
        lines.append(
            f"tokens: {stats.get('estimated_tokens')} estimated{exact}, "
            f"budget {stats['budget_tokens']}"
        )
    return lines
