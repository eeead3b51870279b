"""The private llama-cpp-python names the backend uses: an upgrade that drops one fails here."""

from __future__ import annotations

import pytest

from cerebrum.backend import llama_private
from cerebrum.backend.registry import embedded_model_path


def test_every_private_name_is_still_there() -> None:
    import llama_cpp

    assert llama_private.missing() == [], (
        f"llama-cpp-python {llama_cpp.__version__} (checked: {llama_private.TESTED_VERSION}) "
        "lacks names cerebrum/backend/llama_private.py uses")


def test_missing_names_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # The check itself can fail: a renamed method is named, not skipped.
    from llama_cpp import _internals

    monkeypatch.delattr(_internals.LlamaModel, "token_get_text")
    assert llama_private.missing() == ["_internals.LlamaModel.token_get_text"]


@pytest.mark.model
def test_instances_carry_what_the_engine_reads() -> None:
    path = embedded_model_path()
    assert path is not None
    model = llama_private.load_model(path)
    try:
        assert model.model is not None and model.vocab is not None
        assert model.tokenize(b"hello", add_bos=False, special=False)
        candidates = llama_private.token_data_array(8)
        assert candidates.candidates.size == 8
    finally:
        model.close()
