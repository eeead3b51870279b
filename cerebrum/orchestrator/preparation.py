"""Prompt preparation: the one place where a request is changed before it goes to a backend.

This is the seam for prompt optimisation and model routing (``cerebrum.prompt``):
``prepare_request`` takes the client's body and returns the body to forward,
the model to ask the backends for, and the prompt size before and after. It
is pure (no aiohttp), so it is tested on plain data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs

from cerebrum.openai_wire import AnyCompletionRequest, ChatCompletionRequest
from cerebrum.orchestrator.backends import ROUTING_ALIASES

_LOGGER = logging.getLogger(__name__)

OPT_OUT_HEADER = "X-Cerebrum-Optimize"
"""``X-Cerebrum-Optimize: off`` skips optimisation for one request."""
BODY_OPTIONS = "cerebrum"
"""Body field for orchestrator options, e.g. ``"cerebrum": {"optimize": false}``;
never forwarded."""


@attrs.frozen
class PreparedRequest:
    body: dict[str, Any]
    """The JSON body to forward."""
    model: str | None
    """The model asked of the backends; None: the backend's own default."""
    prompt_chars_before: int
    prompt_chars_after: int
    optimized: bool = False


def wants_optimization(default: bool, headers: Mapping[str, str], body: Mapping[str, Any]) -> bool:
    """The configured default, unless the request opts out (or in)."""
    header = headers.get(OPT_OUT_HEADER, "").strip().lower()
    if header in ("off", "0", "false", "no"):
        return False
    if header in ("on", "1", "true", "yes"):
        return True
    options = body.get(BODY_OPTIONS)
    if isinstance(options, Mapping) and isinstance(options.get("optimize"), bool):
        return bool(options["optimize"])
    return default


def prompt_chars(parsed: AnyCompletionRequest) -> int:
    """The size of the prompt as the client sent it."""
    if isinstance(parsed, ChatCompletionRequest):
        return sum(len(message.content) for message in parsed.messages)
    return len(parsed.prompt)


def prepare_request(body: Mapping[str, Any], parsed: AnyCompletionRequest, *, optimize: bool,
                    default_model: str | None) -> PreparedRequest:
    """The request to forward: options removed, the model resolved, the prompt
    (one day) optimised. Never raises on the prompt's content."""
    forwarded = {key: value for key, value in body.items() if key != BODY_OPTIONS}
    before = prompt_chars(parsed)
    model = parsed.model
    if model is None or model in ROUTING_ALIASES:
        # Routing by language lands with cerebrum.prompt; until then "auto"
        # means the pool's default model.
        model = default_model
    if model is None:
        forwarded.pop("model", None)
    else:
        forwarded["model"] = model
    # Optimisation plugs in here (cerebrum.prompt.optimizer); prompts pass
    # through unchanged until it does.
    del optimize
    return PreparedRequest(forwarded, model, before, before)
