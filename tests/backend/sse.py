"""A small SSE reader for tests: events as (event name, data) pairs."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import ClientResponse

from cerebrum.cli.client import sse_events


async def read_events(response: ClientResponse) -> list[tuple[str, str]]:
    """Read a whole SSE stream into (event, data) pairs."""
    events = []
    async for event in iter_events(response):
        events.append(event)
    return events


def iter_events(response: ClientResponse):  # type: ignore[no-untyped-def]
    """Yield (event, data) pairs as they arrive (the CLI's own parser)."""
    return sse_events(response)


def chunks(events: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The JSON chunks of a completion stream, without the [DONE] marker."""
    return [json.loads(data) for name, data in events if name == "message" and data != "[DONE]"]
