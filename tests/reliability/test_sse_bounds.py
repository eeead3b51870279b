"""The SSE parser's bounds (items 3, 6, 14), without a server: pure and quick."""

from __future__ import annotations

import pytest

from cerebrum.orchestrator.sse_relay import (
    MalformedStream,
    SseRelayParser,
    StreamStalled,
    validate_events,
)

pytestmark = pytest.mark.reliability

GOOD = b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'


def test_a_line_without_a_newline_fails_once_it_passes_the_cap() -> None:
    parser = SseRelayParser(max_event_bytes=10_000)
    parser.feed(b'data: {"x": "')
    with pytest.raises(MalformedStream, match="over 10000 bytes"):
        for _ in range(100):
            parser.feed(b"x" * 1000)


def test_an_unfinished_event_after_a_good_one_fails_too() -> None:
    parser = SseRelayParser(max_event_bytes=10_000)
    assert parser.feed(GOOD) is not None
    with pytest.raises(MalformedStream):
        parser.feed(b'data: {"x": "' + b"y" * 20_000)


def test_only_comments_stall_after_the_event_timeout() -> None:
    now = [0.0]
    parser = SseRelayParser(event_timeout_s=5, clock=lambda: now[0])
    parser.feed(b": ping\n\n")
    now[0] = 4.0
    parser.feed(b": ping\n\n")
    now[0] = 5.5
    with pytest.raises(StreamStalled):
        parser.feed(b": ping\n\n")


def test_a_real_event_resets_the_event_timeout() -> None:
    now = [0.0]
    parser = SseRelayParser(event_timeout_s=5, clock=lambda: now[0])
    parser.feed(b": ping\n\n")
    now[0] = 4.0
    assert parser.feed(GOOD).has_data  # type: ignore[union-attr]
    now[0] = 8.0
    parser.feed(b": ping\n\n")  # 4 s since the last event: fine


def test_nothing_after_done_is_passed_on() -> None:
    parser = SseRelayParser()
    batch = parser.feed(GOOD + b"data: [DONE]\n\n" + GOOD + b"data: [DONE]\n\n")
    assert batch is not None and batch.raw == GOOD + b"data: [DONE]\n\n"
    assert parser.feed(GOOD) is None


def test_a_data_line_that_is_not_a_json_object_fails_the_stream() -> None:
    with pytest.raises(MalformedStream):
        SseRelayParser().feed(b'data: {"choices": [\n\n')


@pytest.mark.parametrize(("raw", "valid"), [
    (GOOD + b"data: [DONE]\n\n", True),
    (GOOD, False),  # no [DONE]
    (GOOD + b'data: {"choices": [oops}\n\n' + b"data: [DONE]\n\n", False),
    (GOOD + b"data: [DONE]\n\n" + GOOD, False),
    (b": ping\n\n" + GOOD + b"data: [DONE]\n\n", True),
])
def test_only_clean_whole_streams_validate(raw: bytes, valid: bool) -> None:
    assert validate_events(raw) is valid
