"""The embedded model's vocabulary (no weights) for tests that compile grammars."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cerebrum.backend.grammar import Grammar
from cerebrum.backend.registry import embedded_model_path


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    import llama_cpp

    llama = llama_cpp.Llama(str(embedded_model_path()), vocab_only=True, verbose=False)
    yield llama._model.vocab
    llama.close()


def compiles(vocab: Any, compiled: Grammar) -> bool:
    """llama.cpp's own parser accepts the grammar (a bad one gives no sampler)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocab, compiled.gbnf.encode(),
                                                   compiled.root.encode())
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True
