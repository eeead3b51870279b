"""What crosses from a model's thread to the event loop, and stop-sequence matching.

The model thread emits events through ``loop.call_soon_threadsafe`` into an
``asyncio.Queue``; the request handler consumes them. These are plain value
types so the handler's logic can be tested without a model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Literal

import attrs

from cerebrum.backend.sampling import TokenLogprob
from cerebrum.errors import ApiError
from cerebrum.openai_wire import ChatMessage, SamplingParams, ToolSpec

FinishReason = Literal["stop", "length", "cancelled"]


@attrs.frozen
class GenerationJob:
    """One request's work for a model: a chat or a raw prompt, and its sampling."""

    params: SamplingParams
    default_max_tokens: int = 1024
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    logprobs: int | None = None
    """When set, each TextPiece carries its tokens' log-probabilities and this many
    top alternatives (computed from the logits row the token was sampled from)."""
    tools: ToolSpec | None = None
    """The chat's tools: rendered into the prompt (``cerebrum.backend.tools``)."""
    suffix: str | None = None
    """Text after the insertion point: the prompt becomes fill-in-the-middle."""
    tokenized: tuple[list[int], list[str]] | None = None
    """The prompt's tokens and stop strings, when tokenized before submission
    (``ModelWorker.prepare``); else the engine tokenizes at admission."""


@attrs.frozen
class PromptReady:
    """The prompt fitted the context; generation is starting."""

    prompt_tokens: int


@attrs.frozen
class TextPiece:
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    """The tokens behind ``text`` with their log-probabilities, when the job asked."""


@attrs.frozen
class Finished:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@attrs.frozen
class Failed:
    error: BaseException


Event = PromptReady | TextPiece | Finished | Failed


@attrs.define(eq=False)
class Generation:
    """The event loop's handle on one running generation."""

    events: asyncio.Queue[Event] = attrs.field(factory=asyncio.Queue)
    cancel_event: threading.Event = attrs.field(factory=threading.Event)
    done: bool = False
    """The model thread's last event (Finished or Failed) has been consumed."""

    def cancel(self) -> None:
        """Ask the model thread to stop; it notices before the next token."""
        self.cancel_event.set()

    async def next_event(self) -> Event:
        event = await self.events.get()
        if isinstance(event, Finished | Failed):
            self.done = True
        return event

    async def stop(self, timeout: float = 10.0) -> Finished | None:
        """Cancel and wait until the model thread has really stopped.

        Returns its final ``Finished`` (None if it failed or did not answer in
        time), so the caller can log how far it got and hand the model on idle.
        """
        self.cancel()
        if self.done:
            return None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await self.events.get()
                    if isinstance(event, Finished):
                        return event
                    if isinstance(event, Failed):
                        return None
        except TimeoutError:
            return None


class StopMatcher:
    """Finds stop sequences in streamed text, holding back a possible partial match.

    Text that might be the start of a stop sequence is held until the next
    piece decides it, so a stop sequence is never shown to the client.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._held = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """Add ``piece``; return (text safe to emit, whether a stop was hit)."""
        if not self._stops:
            return piece, False
        text = self._held + piece
        cut = min((i for i in (text.find(stop) for stop in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            return text[:cut], True
        keep = 0
        for stop in self._stops:
            # Longest suffix of text that is a proper prefix of this stop.
            for length in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:length]):
                    keep = max(keep, length)
                    break
        self._held = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """Whatever is held back, at the end of generation."""
        held, self._held = self._held, ""
        return held


class GenerationError(ApiError):
    """The model failed while generating."""
