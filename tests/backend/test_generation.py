"""Stop-sequence matching across streamed pieces."""

from __future__ import annotations

from cerebrum.backend.generation import StopMatcher


def _run(stops, pieces):
    matcher = StopMatcher(stops)
    out, hit = [], False
    for piece in pieces:
        text, hit = matcher.feed(piece)
        out.append(text)
        if hit:
            break
    if not hit:
        out.append(matcher.flush())
    return "".join(out), hit


def test_stop_inside_one_piece() -> None:
    assert _run(["END"], ["abcENDdef"]) == ("abc", True)


def test_stop_split_across_pieces_is_never_shown() -> None:
    matcher = StopMatcher(["<|im_end|>"])
    assert matcher.feed("Hello <|im") == ("Hello ", False)
    assert matcher.feed("_end|> more") == ("", True)


def test_partial_match_that_fails_is_released() -> None:
    assert _run(["STOP"], ["ST", "OP"]) == ("", True)
    assert _run(["STOP"], ["ST", "ART"]) == ("START", False)


def test_no_stops_passes_through() -> None:
    assert _run([], ["a", "b"]) == ("ab", False)


def test_earliest_stop_wins() -> None:
    assert _run(["b", "a"], ["xxab"]) == ("xx", True)
