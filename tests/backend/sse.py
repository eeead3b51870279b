"""A small SSE reader for tests: events as (event name, data) pairs."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import ClientResponse


async def read_events(response: ClientResponse) -> list[tuple[str, str]]:
    """Read a whole SSE stream into (event, data) pairs."""
    events = []
    async for event in iter_events(response):
        events.append(event)
    return events


async def iter_events(response: ClientResponse):  # type: ignore[no-untyped-def]
    """Yield (event, data) pairs as they arrive."""
    event, data = "message", []
    async for raw in response.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def chunks(events: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The JSON chunks of a completion stream, without the [DONE] marker."""
    return [json.loads(data) for name, data in events if name == "message" and data != "[DONE]"]
