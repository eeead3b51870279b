"""The pre-rendered content chunk is byte-identical to serialising the whole chunk."""

from __future__ import annotations

import json

import pytest

from cerebrum.backend.envelope import CompletionEnvelope
from cerebrum.backend.views import _ChunkTemplate


@pytest.mark.parametrize("kind", ["chat", "text"])
@pytest.mark.parametrize("piece", ["hi", "a\nb\r\n", '"quoted"', "é中🙂", "\\", "\x00x", ""])
def test_template_matches_full_serialisation(kind, piece) -> None:
    envelope = CompletionEnvelope(kind, "m")
    expected = ("data: " + json.dumps(envelope.chunk(piece)) + "\r\n\r\n").encode()
    assert _ChunkTemplate(envelope).render(piece) == expected
