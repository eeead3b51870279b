"""The one completion log line both services write per request, and its metrics.

Both services fill a ``CompletionRecord`` as a request passes and write it
once at the end (``event=completion``), so the two lines carry the same
fields, rounded the same way, and mean the same (docs/metrics.md): times in
milliseconds from the moment the service received the request; ``ttfb_ms``
to the first byte of the answer's body; ``ttft_ms`` (the backend, which
generates) to the first generated token. Each service adds its own fields
with ``note`` (the orchestrator: backend, prompt characters, cache verdict;
the backend: finish reason).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import attrs

from cerebrum.metrics import HttpMetrics
from cerebrum.protocol import is_token_count

_LOGGER = logging.getLogger("cerebrum.completion")


def token_counts(usage: Any) -> dict[str, int] | None:
    """The two counts of an OpenAI ``usage`` object that anything here reads, each
    kept only where it is a plausible count; None when neither is. Kept instead of
    the peer's whole object, which may hold anything (50,000 keys, say)."""
    if not isinstance(usage, Mapping):
        return None
    counts = {name: usage[name] for name in ("prompt_tokens", "completion_tokens")
              if is_token_count(usage.get(name))}
    return counts or None


@attrs.define
class CompletionRecord:
    """One request's figures, written as its single completion log line."""

    kind: str
    generates: bool = False
    """This service generates the tokens (the backend): the line has ``ttft_ms``, and
    the time-to-first-token metric is the first token's rather than the first byte's."""
    started: float = attrs.field(factory=time.perf_counter)
    model: str | None = None
    stream: bool = False
    status: int = 200
    outcome: str = "cancelled"
    """``ok``, an error code, ``client_disconnected``; ``cancelled`` until known."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    count_tokens: bool = True
    """False when no tokens were generated for this request (a cache hit): the line
    still shows the answer's usage, the token metrics do not add it."""
    first_byte: float | None = None
    first_token: float | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)
    """The service's own fields, in the line after the common ones."""
    logger: logging.Logger = attrs.field(default=_LOGGER, repr=False)
    """The service's logger (its handler module's), so log settings per module still apply."""

    def requested(self, model: str | None, stream: bool) -> None:
        """What the client asked for."""
        self.model = model
        self.stream = stream

    def note(self, **fields: Any) -> None:
        """Set fields of this service's own."""
        self.extra.update(fields)

    def take_usage(self, usage: Mapping[str, Any] | None) -> None:
        """The token counts of an OpenAI ``usage`` object (unset where it has none)."""
        usage = usage or {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        self.prompt_tokens = prompt if is_token_count(prompt) else None
        self.completion_tokens = completion if is_token_count(completion) else None

    def mark_first_byte(self) -> None:
        """The answer's body starts now (a stream's first event, or the whole answer)."""
        if self.first_byte is None:
            self.first_byte = time.perf_counter()

    def mark_first_token(self) -> None:
        """The first token was generated now."""
        if self.first_token is None:
            self.first_token = time.perf_counter()

    def _ms(self, moment: float | None) -> float | None:
        return None if moment is None else round((moment - self.started) * 1000, 2)

    def fields(self, now: float) -> dict[str, Any]:
        """The line's fields, with ``now`` as the end of the request."""
        line: dict[str, Any] = {
            "event": "completion", "kind": self.kind, "model": self.model,
            "stream": self.stream, "status": self.status, "outcome": self.outcome,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "ttfb_ms": self._ms(self.first_byte),
        }
        if self.generates:
            line["ttft_ms"] = self._ms(self.first_token)
        line["duration_ms"] = self._ms(now)
        line.update(self.extra)
        return line

    def write(self, metrics: HttpMetrics, route: str) -> None:
        """Write the line, and add the request's tokens and time to first token (or first
        byte relayed) to ``metrics``."""
        self.logger.info("completion %s", self.outcome, extra=self.fields(time.perf_counter()))
        if self.count_tokens and self.prompt_tokens is not None \
                and self.completion_tokens is not None:
            metrics.count_tokens(self.prompt_tokens, self.completion_tokens)
        first = self.first_token if self.generates else self.first_byte
        if first is not None:
            metrics.ttfb.labels(route).observe(first - self.started)
