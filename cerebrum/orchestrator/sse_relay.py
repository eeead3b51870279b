"""Incremental reading of a backend's SSE stream, for relaying it unchanged. Pure.

The proxy relays complete events as the bytes arrive, batched when several
arrived together, without re-encoding them: that keeps the gateway's cost per
chunk small. On the way it checks each event is well-formed (so a garbled
backend is caught, and skipped when nothing has reached the client yet), notes
the ``[DONE]`` marker and any ``error`` event, and picks up the final
``usage`` for the completion log line.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import attrs

_FIELDS = frozenset({"data", "event", "id", "retry"})


class MalformedStream(ValueError):
    """The backend sent something that is not an OpenAI-style SSE stream."""


@attrs.frozen
class Batch:
    """Complete events received together, ready to write as they are."""

    raw: bytes
    has_data: bool
    """False for a batch of comments only (keep-alive pings)."""


@attrs.define
class SseRelayParser:
    """Feed it bytes as they arrive; get back complete, checked events."""

    done: bool = False
    """``data: [DONE]`` was seen."""
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    """The payload of an ``error`` event the backend sent, if any."""
    _pending: str = ""
    _decoder: Any = attrs.field(factory=lambda: codecs.getincrementaldecoder("utf-8")("strict"))

    def feed(self, data: bytes) -> Batch | None:
        """Take the next bytes; return the events they completed, or None.

        Raises MalformedStream on bytes that are not UTF-8 or lines that are not SSE.
        """
        try:
            text = self._pending + self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise MalformedStream(f"the stream is not UTF-8: {exc}") from None
        # A CR at the very end may be the first half of CRLF: wait for the next bytes.
        hold = text.endswith("\r")
        if hold:
            text = text[:-1]
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        end = text.rfind("\n\n")
        if end < 0:
            self._pending = text + ("\r" if hold else "")
            return None
        complete, self._pending = text[:end], text[end + 2:] + ("\r" if hold else "")
        has_data = self._check_usual(complete)
        if has_data is None:
            has_data = False
            for block in complete.split("\n\n"):
                if block and self._check(block):
                    has_data = True
        return Batch((complete + "\n\n").encode(), has_data)

    def _check_usual(self, complete: str) -> bool | None:
        """The fast path, for batches whose every line is JSON data, ``[DONE]``, a comment
        or a separator: a few counts in C instead of Python work per event (which was
        most of the relay's cost). None: some other line; take the exact path."""
        text = "\n" + complete + "\n"
        lines = text.count("\n") - 1
        data = text.count("\ndata: {")
        done = text.count("\ndata: [DONE]\n")
        # Non-overlapping counts: extra blank lines fail the sum, which only
        # sends the batch down the exact path.
        usual = data + done + text.count("\n:") + text.count("\n\n")
        if usual != lines:
            return None
        if done:
            self.done = True
        if '"usage"' in complete:
            for block in complete.split("\n\n"):
                if '"usage"' in block:
                    self._check(block)
        return bool(data or done)

    def finish(self) -> None:
        """The stream ended: anything left over is a cut-off event."""
        rest = self._pending + self._decoder.decode(b"", final=True)
        if rest.strip():
            raise MalformedStream("the stream ended in the middle of an event")

    def _check(self, block: str) -> bool:
        """Validate one event; return True when it carries data."""
        name = "message"
        data: list[str] = []
        for line in block.split("\n"):
            if not line or line[0] == ":":
                continue
            field, colon, value = line.partition(":")
            if field not in _FIELDS:
                raise MalformedStream(f"not an SSE line: {line[:80]!r}")
            if field == "data":
                data.append(value[1:] if value.startswith(" ") else value)
            elif field == "event":
                name = value.strip()
        if not data:
            return False
        payload = "\n".join(data)
        if name == "error":
            self.error = _json_object(payload) or {"error": {"message": payload[:200]}}
            return True
        if payload == "[DONE]":
            self.done = True
            return True
        if not payload.lstrip().startswith("{"):
            raise MalformedStream(f"an event's data is not a JSON object: {payload[:80]!r}")
        # Parse only the chunks that can carry usage: parsing all of them
        # would cost more than the rest of the relay put together.
        if '"usage"' in payload:
            chunk = _json_object(payload)
            if chunk is None:
                raise MalformedStream(f"an event's data is not valid JSON: {payload[:80]!r}")
            if isinstance(chunk.get("usage"), dict):
                self.usage = chunk["usage"]
        return True


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
