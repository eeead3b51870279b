"""A bug that fails a stream after its first bytes ends the stream; the client never hangs."""

from __future__ import annotations

import asyncio
import json

from cerebrum.backend import views
from tests.backend_fixtures import AUTH, chat_body


async def test_a_failure_mid_stream_ends_it_with_an_error_event(backend, monkeypatch) -> None:
    rendered = []
    original = views._ChunkTemplate.render

    def fails_at_the_second_piece(self, piece):
        rendered.append(piece)
        if len(rendered) > 1:
            raise RuntimeError("a bug in the stream's shaping")
        return original(self, piece)

    monkeypatch.setattr(views._ChunkTemplate, "render", fails_at_the_second_piece)
    response = await backend.post("/v1/chat/completions", headers=AUTH,
                                  json={**chat_body(), "stream": True, "max_tokens": 8})
    assert response.status == 200
    # Before the fix the connection stayed open and this read waited for ever.
    text = (await asyncio.wait_for(response.content.read(), 10)).decode()
    events = [block for block in text.split("\r\n\r\n") if block.strip()]
    assert events[-1].startswith("event: error\r\ndata: ")
    error = json.loads(events[-1].split("data: ", 1)[1])["error"]
    assert error["message"] == "internal server error"
    assert "[DONE]" not in text and "Traceback" not in text
    # The engine is free for the next request.
    monkeypatch.setattr(views._ChunkTemplate, "render", original)
    again = await backend.post("/v1/chat/completions", headers=AUTH,
                               json={**chat_body(), "max_tokens": 4})
    assert again.status == 200
    assert (await again.json())["choices"][0]["message"]["content"]
