"""Incremental reading of a backend's SSE stream, for relaying it unchanged. Pure.

The proxy relays complete events as the bytes arrive, batched when several
arrived together, without re-encoding them: that keeps the gateway's cost per
chunk small. On the way it checks each event is well-formed (so a garbled
backend is caught, and skipped when nothing has reached the client yet), notes
the ``[DONE]`` marker and any ``error`` event, and picks up the final
``usage`` for the completion log line.

A backend may be hostile, so the parser bounds what it holds: an unfinished
line or event past ``max_event_bytes`` fails the stream at once (rather
than buffering a 50 MB line until the backend closes), and a stream of
keep-alive comments with no real event for ``event_timeout_s`` fails as a
timeout (each comment would otherwise reset the read timeout forever).
Nothing after ``[DONE]`` is relayed.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Callable
from typing import Any

import attrs

from cerebrum.completion_log import token_counts

_FIELDS = frozenset({"data", "event", "id", "retry"})


class MalformedStream(ValueError):
    """The backend sent something that is not an OpenAI-style SSE stream."""


class StreamStalled(TimeoutError):
    """Only keep-alive comments for longer than the event timeout."""


_DONE = "data: [DONE]"


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
    max_event_bytes: int = 1024 * 1024
    """Largest unfinished event held while waiting for its end."""
    event_timeout_s: float = float("inf")
    """Longest time between real (data) events; comments do not count."""
    clock: Callable[[], float] = time.monotonic
    _pending: str = ""
    _decoder: Any = attrs.field(factory=lambda: codecs.getincrementaldecoder("utf-8")("strict"))
    _last_data: float | None = None

    def feed(self, data: bytes) -> Batch | None:
        """Take the next bytes; return the events they completed, or None.

        Raises MalformedStream on bytes that are not UTF-8, lines that are not SSE
        or an event over ``max_event_bytes``; StreamStalled when only comments came
        for ``event_timeout_s``.
        """
        if self.done:
            return None  # anything after [DONE] is not part of the answer
        now = self.clock()
        if self._last_data is None:
            self._last_data = now
        try:
            text = self._pending + self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise MalformedStream(f"the stream is not UTF-8: {exc}") from None
        batch = self._split(text)
        if batch is not None and batch.has_data:
            self._last_data = now
        elif now - self._last_data > self.event_timeout_s:
            raise StreamStalled(f"no event for {self.event_timeout_s:g} s, only keep-alive "
                                "comments")
        return batch

    def _split(self, text: str) -> Batch | None:
        # A CR at the very end may be the first half of CRLF: wait for the next bytes.
        hold = text.endswith("\r")
        if hold:
            text = text[:-1]
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        end = text.rfind("\n\n")
        if end < 0:
            self._pending = text + ("\r" if hold else "")
            self._check_pending_size()
            return None
        complete, self._pending = text[:end], text[end + 2:] + ("\r" if hold else "")
        self._check_pending_size()
        done_at = complete.find(_DONE)
        if done_at >= 0:
            complete = _through_done(complete, done_at)
        has_data = self._check_usual(complete)
        if has_data is None:
            has_data = False
            for block in complete.split("\n\n"):
                if block and self._check(block):
                    has_data = True
        if self.done:
            self._pending = ""
        return Batch((complete + "\n\n").encode(), has_data)

    def _check_pending_size(self) -> None:
        # Characters, not bytes: within 4x, and free to count.
        if len(self._pending) > self.max_event_bytes:
            raise MalformedStream(f"an event or line over {self.max_event_bytes} bytes")

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
        # Each JSON data line must at least end like an object: "data: {garbage"
        # goes down the exact path, which parses it (and refuses it).
        if usual != lines or text.count("}\n") < data:
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
                data.append(value.removeprefix(" "))
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
        # The fast path parses only the chunks that can carry usage (parsing all
        # would cost more than the rest of the relay); this rarer path parses all.
        chunk = _json_object(payload)
        if chunk is None:
            raise MalformedStream(f"an event's data is not valid JSON: {payload[:80]!r}")
        counts = token_counts(chunk.get("usage"))
        if counts is not None:
            self.usage = counts
        return True


def _through_done(complete: str, done_at: int) -> str:
    """``complete`` cut after the ``[DONE]`` event (when that line really is ``[DONE]``)."""
    while done_at >= 0:
        line_end = done_at + len(_DONE)
        at_line_start = done_at == 0 or complete[done_at - 1] == "\n"
        if at_line_start and complete[line_end:line_end + 1] in ("", "\n"):
            return complete[:line_end]
        done_at = complete.find(_DONE, line_end)
    return complete


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def validate_events(raw: bytes) -> bool:
    """Whether ``raw`` is a whole, clean stream: every data event a JSON object, ending
    with ``[DONE]``. Parses every event; for answers about to be cached, not relayed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    done = False
    for block in text.replace("\r\n", "\n").split("\n\n"):
        for line in block.split("\n"):
            if not line or line[0] == ":":
                continue
            if done or not line.startswith("data:"):
                return False
            payload = line[5:].strip()
            if payload == "[DONE]":
                done = True
            elif _json_object(payload) is None:
                return False
    return done
