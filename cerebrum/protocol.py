"""Cerebrum's own wire names, shared by both services and the CLI.

Headers, body fields and model aliases that Cerebrum adds to the OpenAI API,
defined once, and the reading of an OpenAI-style error body and its token counts. This module
imports only the standard library, so the CLI (which never loads the
services) and the services agree on every spelling.
"""

from __future__ import annotations

import json
from typing import TypeGuard

REQUEST_ID_HEADER = "X-Request-ID"
"""Correlation id: kept when a client sends a safe one, else made; echoed on every
answer and passed to the backend."""
API_KEY_HEADER = "X-API-Key"
"""The key, as this project's services read it first (``Authorization: Bearer`` also works)."""

OPTIMIZE_HEADER = "X-Cerebrum-Optimize"
"""``off`` (or ``0``/``false``/``no``) skips prompt optimisation for one request; ``on``
asks for it where the orchestrator's default is off."""
PROMPT_STATS_HEADER = "X-Cerebrum-Prompt-Stats"
"""On an answer: the optimiser's figures for the request, compact JSON (docs/orchestrator.md
lists the fields)."""
CACHE_HEADER = "X-Cerebrum-Cache"
"""On an answer to a cacheable (deterministic) request: ``hit``, ``miss`` or ``bypass``."""
SESSION_HEADER = "X-Cerebrum-Session"
"""Pins a conversation to one backend (prefix affinity)."""
WORKSPACE_HEADER = "X-Cerebrum-Workspace"
"""Names a workspace to retrieve code from for this request."""

OPTIONS_FIELD = "cerebrum"
"""Body field for the orchestrator's options (``{"optimize": false}``, ``{"session": ...}``,
``{"workspace": ...}``); removed before the body is forwarded."""

ROUTING_ALIASES = ("auto",)
"""Model names that mean "let the orchestrator choose"."""


MAX_TOKEN_COUNT = 10**9
"""A usage count above this is no real count: a peer's 10**400 would overflow the
metrics' floats (or make them +Inf for good) and the log's and the CLI's arithmetic."""


def is_token_count(value: object) -> TypeGuard[int]:
    """Whether a ``usage`` field from a peer is a plausible token count."""
    return (isinstance(value, int) and not isinstance(value, bool)
            and 0 <= value <= MAX_TOKEN_COUNT)


def named_model(model: str | None) -> str | None:
    """The model a request names, or None when it leaves the choice to the server (none
    named, or a routing alias)."""
    if model is None or model.strip().lower() in ROUTING_ALIASES:
        return None
    return model


def error_message(body: bytes, limit: int = 300) -> str:
    """What an error body says, at most ``limit`` characters: the ``message`` of
    OpenAI's ``{"error": {"message": ...}}`` (or ``{"error": "..."}``, as some servers
    send), else the body's own text; "" for an empty body."""
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        decoded = None
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        return str(error["message"])[:limit]
    if isinstance(error, str) and error:
        return error[:limit]
    return body[:limit * 4].decode("utf-8", "replace").strip()[:limit]
