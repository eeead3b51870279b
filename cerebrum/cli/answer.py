"""Streaming one answer to the terminal, and the dim summary line after it (``ask``, ``chat``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cerebrum.cli.client import ChatStream, Client
from cerebrum.cli.render import Output, terminal_safe
from cerebrum.protocol import OPTIMIZE_HEADER, PROMPT_STATS_HEADER


def request_headers(optimize: bool) -> dict[str, str]:
    """Extra headers for a chat request: the optimisation opt-out when asked for."""
    return {} if optimize else {OPTIMIZE_HEADER: "off"}


async def stream_answer(client: Client, body: dict[str, Any], *, optimize: bool,
                        out: Output, err: Output, on_piece: list[str] | None = None) -> ChatStream:
    """Send ``body``, write the answer to ``out`` as it arrives; returns the finished stream.

    A spinner runs on ``err`` (a terminal only) until the first piece. Pieces
    are also appended to ``on_piece`` as they arrive, so a caller that is
    interrupted still has the partial answer.
    """
    async with err.spinner("waiting for the model…"):
        stream = await client.chat_stream(body, request_headers(optimize))
        pieces = aiter(stream)
        try:
            first = await anext(pieces, None)
        except BaseException:  # a broken or odd first event: the connection goes too
            stream.response.close()
            raise
    try:
        if first is not None:
            _emit(first, out, on_piece)
            async for piece in pieces:
                _emit(piece, out, on_piece)
        if out.tty or first is not None:
            out.write("\n")
    finally:
        stream.response.close()
    return stream


def _emit(piece: str, out: Output, sink: list[str] | None) -> None:
    out.write(out.shown(piece))
    if sink is not None:  # as the server sent it: the conversation goes back to the model
        sink.append(piece)


# The optimiser's reasons for leaving a prompt as it was, in words.
_SKIPPED = {"fits": "fits the context", "no_code": "no code", "gain_below_10pct": "gain under 10%",
            "empty": "empty", "binary": "binary", "error": "optimiser error"}


def prompt_reduction(headers: Mapping[str, str], optimize: bool = True) -> str:
    """The prompt reduction the orchestrator reported, as ``-62%``; ``n/a`` when it did not."""
    if not optimize:
        return "off"
    raw = headers.get(PROMPT_STATS_HEADER)
    if not raw:
        return "n/a"
    try:
        stats = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: a header of 8 KB of "["
        return "n/a"
    if not isinstance(stats, dict):
        return "n/a"
    reduction = stats.get("reduction")
    if stats.get("skipped_reason"):
        reason = str(stats["skipped_reason"])
        return f"0% ({_SKIPPED.get(reason, reason)})"
    if isinstance(reduction, int | float) and not isinstance(reduction, bool):
        return f"-{reduction * 100:.0f}%" if reduction else "0%"
    return "n/a"


def summary(stream: ChatStream, optimize: bool = True) -> str:
    """The one-line figures after an answer."""
    ttft = f"{stream.ttft_s:.2f} s" if stream.ttft_s is not None else "n/a"
    rate = f"{stream.tokens_per_s:.1f} tok/s" if stream.tokens_per_s is not None else "n/a tok/s"
    # An answer cut by max_tokens reads like a whole one unless the line says so.
    cut = ", stopped at the limit" if stream.finish_reason == "length" else ""
    # The request id, model and skipped reason are the server's words.
    return terminal_safe(
        f"request {stream.request_id} · {stream.model or 'unknown model'} · "
        f"{stream.tokens} tokens{cut} · first token {ttft} · {rate} · "
        f"prompt reduction {prompt_reduction(stream.headers, optimize)}", one_line=True)
