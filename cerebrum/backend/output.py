"""From the model's text pieces to what the client sees. Pure.

``AnswerShaper`` takes the pieces a generation emits (text, and the
log-probabilities of the tokens behind it when asked) and gives back the
answer's parts in order: content (with its tokens' logprobs, in the chat or
the text-completion shape) and tool calls. It also names the finish reason.
Streaming and whole answers both go through it, so they always agree.

Log-probabilities are given for content tokens only, as OpenAI does: the
tokens that spelled a tool call are not content.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

import attrs

from cerebrum.backend.tools import ParsedCall, ToolCallStream
from cerebrum.openai_wire import ToolSpec


class TokenInfo(Protocol):
    """One generated token: its bytes, log-probability and the top alternatives."""

    @property
    def text_bytes(self) -> bytes: ...

    @property
    def logprob(self) -> float: ...

    @property
    def top_bytes(self) -> Sequence[tuple[bytes, float]]: ...


@attrs.frozen
class Content:
    text: str
    logprobs: dict[str, Any] | None = None
    """This piece's tokens in the wire shape (``{"content": [...]}`` for chat)."""


Part = Content | ParsedCall


@attrs.define
class AnswerShaper:
    """Shapes one answer; ``tools`` only when the model may call them."""

    kind: Literal["chat", "text"]
    tools: ToolSpec | None = None
    logprobs: bool = False
    text_offset: int = 0
    """Characters already in the text before what the model writes (echo)."""
    calls: list[ParsedCall] = attrs.field(factory=list)
    _stream: ToolCallStream | None = None
    _pending: list[TokenInfo] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if self.tools is not None and self.tools.active:
            self._stream = ToolCallStream(self.tools)

    def piece(self, text: str, tokens: Sequence[TokenInfo] = ()) -> list[Part]:
        """The parts that ``text`` (spelled by ``tokens``) releases."""
        if self.logprobs:
            self._pending.extend(tokens)
        if self._stream is None:
            return [self._content(text)] if text else []
        return self._shape(self._stream.feed(text))

    def end(self) -> list[Part]:
        """Whatever was held back, at the end of generation."""
        if self._stream is None:
            return [self._content("")] if self._pending else []
        return self._shape(self._stream.finish())

    def finish_reason(self, reason: str) -> str:
        """OpenAI's name for why the answer ended."""
        if reason == "length":
            return "length"
        return "tool_calls" if self.calls else "stop"

    def _shape(self, pieces: list[str | ParsedCall]) -> list[Part]:
        parts: list[Part] = []
        for piece in pieces:
            if isinstance(piece, ParsedCall):
                self.calls.append(piece)
                self._pending.clear()  # those tokens spelled the call
                parts.append(piece)
            else:
                parts.append(self._content(piece))
        return parts

    def _content(self, text: str) -> Content:
        if not self.logprobs:
            return Content(text)
        tokens, self._pending = self._pending, []
        if self.kind == "chat":
            return Content(text, {"content": [chat_logprob(t) for t in tokens],
                                  "refusal": None})
        shaped = text_logprobs(tokens, self.text_offset)
        self.text_offset += sum(len(_token_text(t.text_bytes)) for t in tokens)
        return Content(text, shaped)


def _token_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def chat_logprob(token: TokenInfo) -> dict[str, Any]:
    """One token of chat ``logprobs.content``."""
    return {
        "token": _token_text(token.text_bytes),
        "logprob": token.logprob,
        "bytes": list(token.text_bytes),
        "top_logprobs": [{"token": _token_text(data), "logprob": logprob, "bytes": list(data)}
                         for data, logprob in token.top_bytes],
    }


def text_logprobs(tokens: Sequence[TokenInfo], offset: int) -> dict[str, Any]:
    """Text-completion ``logprobs`` for ``tokens``, whose text starts at ``offset``."""
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(_token_text(token.text_bytes))
    return {
        "tokens": [_token_text(t.text_bytes) for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{_token_text(data): logprob for data, logprob in t.top_bytes}
                         for t in tokens],
        "text_offset": offsets,
    }


def merge_logprobs(kind: Literal["chat", "text"],
                   pieces: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The logprobs of a whole answer, from its content pieces'."""
    present = [p for p in pieces if p is not None]
    if not present:
        return None
    if kind == "chat":
        return {"content": [entry for p in present for entry in p["content"]], "refusal": None}
    return {key: [item for p in present for item in p[key]]
            for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset")}


def empty_logprobs(kind: Literal["chat", "text"]) -> dict[str, Any]:
    """The logprobs of an answer without content tokens."""
    if kind == "chat":
        return {"content": [], "refusal": None}
    return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
