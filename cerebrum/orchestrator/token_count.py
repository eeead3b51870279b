"""Fit a prepared prompt to the context with the model's own tokenizer.

The optimiser counts tokens with an estimate (the Pi has no tokenizer). A
Cerebrum backend answers ``POST /tokenize`` with the exact count of the
request as generation would see it (chat template included); when that is
over the context, the request is prepared again with the difference taken off
the context, at most :data:`MAX_REFITS` times. The other way too: where the
estimate erred high (repeated words, prose) and the prompt was cut to fit
while the exact count leaves room, it is prepared once more with that room
given back, and taken if the model's count agrees it fits (otherwise a
question that fits whole would go out cut). A backend without the
endpoint (a foreign OpenAI-compatible server) answers 404: it is remembered
for a while and the estimate stands.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import weakref
from collections.abc import Callable
from typing import Any

import aiohttp
import attrs

from cerebrum.bodies import read_at_most
from cerebrum.orchestrator.backends import Backend, BackendPool
from cerebrum.orchestrator.preparation import PreparedRequest
from cerebrum.orchestrator.upstream import Upstream

_LOGGER = logging.getLogger(__name__)

TOKENIZE_PATH = "/tokenize"
MAX_REFITS = 3
COUNT_TIMEOUT_S = 5.0
MAX_COUNT_BYTES = 1024 * 1024
"""A count's answer is read up to this (a token list of a long context fits)."""
# Counting costs a round trip: only prompts this close to their budget (by
# the estimate, which errs high on most text) are counted.
COUNT_ABOVE_SHARE = 0.3
# A backend without /tokenize is asked again after this long (it may be upgraded).
UNSUPPORTED_RETRY_S = 600.0
_MARGIN_TOKENS = 8
MIN_ROOM_TOKENS = 32
"""Room by the exact count below which a cut prompt is not prepared again."""


@attrs.define
class TokenCounter:
    """Asks backends for exact counts; remembers which ones cannot give them."""

    unsupported: dict[str, float] = attrs.field(factory=dict)
    clock: Callable[[], float] = time.monotonic

    def supports(self, backend: Backend) -> bool:
        since = self.unsupported.get(backend.url)
        return since is None or self.clock() - since > UNSUPPORTED_RETRY_S

    async def count(self, upstream: Upstream, prepared: PreparedRequest,
                    request_id: str | None = None) -> int | None:
        """The model's token count of ``prepared``'s body, or None when no backend can tell."""
        fields: dict[str, Any] = {key: prepared.body[key] for key in ("messages", "prompt")
                                  if key in prepared.body}
        if len(fields) != 1:
            return None
        # The chat template writes the tools into the prompt: they count too.
        fields.update({key: prepared.body[key] for key in ("tools", "tool_choice")
                       if key in prepared.body and "messages" in fields})
        if prepared.model:
            fields["model"] = prepared.model
        headers = upstream.headers(request_id)
        for backend in upstream.pool.candidates(prepared.model):
            if not self.supports(backend) or not backend.breaker.would_allow():
                continue
            try:
                async with upstream.session.post(
                        backend.url.rstrip("/") + TOKENIZE_PATH, json=fields, headers=headers,
                        timeout=aiohttp.ClientTimeout(total=COUNT_TIMEOUT_S),
                        allow_redirects=False) as reply:
                    if reply.status in (404, 405, 501):
                        self.unsupported[backend.url] = self.clock()
                        continue
                    if reply.status != 200:
                        continue
                    # {"count": N} and maybe the tokens: a hostile backend's megabytes
                    # are not read.
                    answer = json.loads(await read_at_most(reply.content, MAX_COUNT_BYTES))
            except (aiohttp.ClientError, TimeoutError, ValueError, RecursionError):
                _LOGGER.debug("token count from %s failed", backend.name, exc_info=True)
                continue
            count = answer.get("count") if isinstance(answer, dict) else None
            if isinstance(count, int) and count >= 0:
                return count
            self.unsupported[backend.url] = self.clock()  # answers, but not in our shape
        return None


_COUNTERS: weakref.WeakKeyDictionary[BackendPool, TokenCounter] = weakref.WeakKeyDictionary()


def counter_for(pool: BackendPool) -> TokenCounter:
    """The counter of one orchestrator (its pool), made on first use."""
    counter = _COUNTERS.get(pool)
    if counter is None:
        counter = _COUNTERS[pool] = TokenCounter()
    return counter


def worth_counting(prepared: PreparedRequest) -> bool:
    """Whether the estimate is close enough to the budget that an exact count may matter."""
    report = prepared.report
    if report is None:
        return False
    allowed = prepared.context_tokens - prepared.reply_tokens
    return report.estimated_tokens >= COUNT_ABOVE_SHARE * allowed or report.budget_tokens <= 0


async def fit_to_context(counter: TokenCounter, upstream: Upstream, prepared: PreparedRequest,
                         request_id: str | None,
                         prepare_again: Callable[[int], Any]) -> PreparedRequest:
    """Count ``prepared`` exactly and prepare again while it is over the context.

    ``prepare_again(shrink_tokens)`` returns (or is awaited for) a new
    PreparedRequest. The result's stats carry the exact count
    (``counted_tokens``), and a warning when it still does not fit.
    """
    if not worth_counting(prepared):
        return prepared
    shrink = 0
    for attempt in range(MAX_REFITS + 1):
        count = await counter.count(upstream, prepared, request_id)
        if count is None:
            return prepared
        allowed = prepared.context_tokens + shrink - prepared.reply_tokens
        report = prepared.report
        assert report is not None
        if count <= allowed or attempt == MAX_REFITS:
            warnings = report.warnings
            if count > allowed:
                warnings += ((f"over_budget: {count} tokens by the model's count, "
                              f"{count - allowed} over its context"),)
            fitted = attrs.evolve(prepared, report=attrs.evolve(report, counted_tokens=count,
                                                                warnings=warnings))
            if shrink == 0 and count <= allowed:
                return await _use_the_room(counter, upstream, fitted, count, allowed,
                                           request_id, prepare_again)
            return fitted
        # Take the overshoot off the context, scaled to the estimate's units.
        ratio = report.estimated_tokens / count if count else 1.0
        shrink += math.ceil((count - allowed) * max(ratio, 1.0)) + _MARGIN_TOKENS
        again = prepare_again(shrink)
        prepared = await again if asyncio.iscoroutine(again) else again
    return prepared


async def _use_the_room(counter: TokenCounter, upstream: Upstream, prepared: PreparedRequest,
                        count: int, allowed: int, request_id: str | None,
                        prepare_again: Callable[[int], Any]) -> PreparedRequest:
    """``prepared``, or, where it was cut although the exact count leaves room, the request
    prepared again with that room (in the estimate's units) given back, if it fits."""
    report = prepared.report
    assert report is not None
    room = allowed - count
    if report.optimized_chars >= report.original_chars or room < MIN_ROOM_TOKENS:
        return prepared
    ratio = max(report.estimated_tokens / count, 1.0) if count else 1.0
    again = prepare_again(-(math.floor(room * ratio) - _MARGIN_TOKENS))
    grown: PreparedRequest = await again if asyncio.iscoroutine(again) else again
    grown_count = await counter.count(upstream, grown, request_id)
    if grown_count is None or grown_count > allowed or grown.report is None:
        return prepared
    # The context and budget as they really are (the grown ones were in estimate units).
    return attrs.evolve(grown, context_tokens=prepared.context_tokens,
                        report=attrs.evolve(grown.report, counted_tokens=grown_count,
                                            budget_tokens=report.budget_tokens))
