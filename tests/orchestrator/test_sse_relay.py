"""The SSE relay parser: complete events out, as they were; bad streams caught."""

from __future__ import annotations

import json

import pytest

from cerebrum.orchestrator.sse_relay import MalformedStream, SseRelayParser


def event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


CHUNK = {"choices": [{"delta": {"content": "hé"}}]}
USAGE = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


def test_relays_complete_events_unchanged_and_holds_partial_ones() -> None:
    parser = SseRelayParser()
    stream = event(CHUNK) + event(USAGE) + b"data: [DONE]\n\n"
    cut = len(event(CHUNK)) + 5
    first = parser.feed(stream[:cut])
    assert first is not None and first.raw == event(CHUNK) and first.has_data
    second = parser.feed(stream[cut:])
    assert second is not None and second.raw == stream[len(event(CHUNK)):]
    assert parser.done and parser.usage == USAGE["usage"]
    parser.finish()


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_any_split_gives_the_same_events(size: int) -> None:
    stream = (b": ping\r\n\r\n" + event(CHUNK).replace(b"\n", b"\r\n") + b"event: error\r\n"
              + b'data: {"error": {"message": "boom"}}\r\n\r\n' + b"data: [DONE]\r\n\r\n")
    parser = SseRelayParser()
    out = b""
    for i in range(0, len(stream), size):
        batch = parser.feed(stream[i:i + size])  # splits CRLF pairs and UTF-8 sequences
        if batch is not None:
            out += batch.raw
    parser.finish()
    assert out.decode() == stream.decode().replace("\r\n", "\n")
    assert parser.error == {"error": {"message": "boom"}}
    assert parser.done


def test_comments_alone_are_not_data() -> None:
    batch = SseRelayParser().feed(b": keep-alive\n\n")
    assert batch is not None and not batch.has_data


def test_done_inside_content_is_not_the_end() -> None:
    parser = SseRelayParser()
    parser.feed(event({"choices": [{"delta": {"content": "\ndata: [DONE]\n"}}]}))
    assert not parser.done


@pytest.mark.parametrize("bad", [b"hello world\n\n", b"data: not json\n\n",
                                 b'data: {"usage": {]\n\n', b"\xff\xfe\n\n"])
def test_garbage_is_malformed(bad: bytes) -> None:
    with pytest.raises(MalformedStream):
        SseRelayParser().feed(event(CHUNK) + bad)


def test_a_cut_off_event_is_malformed_at_the_end() -> None:
    parser = SseRelayParser()
    parser.feed(event(CHUNK)[:-1])
    with pytest.raises(MalformedStream):
        parser.finish()


def test_unusual_but_valid_lines_take_the_exact_path() -> None:
    parser = SseRelayParser()
    batch = parser.feed(b"id: 7\nretry: 100\ndata:{\"a\": 1}\n\n" + b"data: [DONE]\n\n")
    assert batch is not None and batch.has_data and parser.done
