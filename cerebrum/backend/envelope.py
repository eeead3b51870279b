"""The backend's OpenAI response objects: chunks of a stream, a whole answer, usage.

Only the backend builds answers (the orchestrator relays the backend's bytes
as they are), so these live here rather than with the request types in
``cerebrum.openai_wire``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import attrs


def new_completion_id(kind: Literal["chat", "text"]) -> str:
    """A fresh id in OpenAI's style."""
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@attrs.define
class CompletionEnvelope:
    """Builds the response objects of one completion, streamed or whole.

    ``usage_null``: every chunk carries ``"usage": null`` and the usage comes in
    a chunk of its own with no choices (``stream_options.include_usage``).
    """

    kind: Literal["chat", "text"]
    model: str
    id: str = attrs.field(factory=lambda: "")
    created: int = attrs.field(factory=lambda: int(time.time()))
    usage_null: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.id:
            self.id = new_completion_id(self.kind)

    def chunk(
        self,
        text: str | None,
        *,
        finish_reason: str | None = None,
        usage_: dict[str, int] | None = None,
        first: bool = False,
        logprobs: dict[str, Any] | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """One streamed chunk (``chat.completion.chunk`` or ``text_completion``)."""
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            if tool_calls is not None:
                delta["tool_calls"] = tool_calls
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": logprobs,
                                      "finish_reason": finish_reason}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text or "", "logprobs": logprobs,
                      "finish_reason": finish_reason}
            obj = "text_completion"
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if usage_ is not None or self.usage_null:
            chunk["usage"] = usage_
        return chunk

    def usage_chunk(self, usage_: dict[str, int]) -> dict[str, Any]:
        """The last chunk under ``include_usage``: no choices, just the usage."""
        return {
            "id": self.id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_,
        }

    def whole(self, text: str, finish_reason: str, usage_: dict[str, int], *,
              logprobs: dict[str, Any] | None = None,
              tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A complete, non-streamed response."""
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_calls:
                message["content"] = text or None
                message["tool_calls"] = tool_calls
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": logprobs,
                      "finish_reason": finish_reason}
            obj = "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage_,
        }
