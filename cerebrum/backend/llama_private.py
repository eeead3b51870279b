"""The private parts of llama-cpp-python that the backend relies on, in one place.

The engine drives llama.cpp through the public low-level API (``llama_cpp.llama_*``),
but two helpers only exist in the package's private modules: ``LlamaModel``
(weights, tokenizer, chat-template metadata) and ``LlamaTokenDataArray`` (the
candidates array a grammar filters), plus the switch that quiets llama.cpp's
log. A release of llama-cpp-python may rename them without notice, so they are
reached only through this module, and ``missing()`` lists whatever is gone:
``tests/backend/test_llama_private.py`` fails on an upgrade that breaks one,
naming it, instead of a request failing in production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cerebrum.backend import repacking

TESTED_VERSION = "0.3.36"
"""The llama-cpp-python release these names were checked against (requirements-vps.txt)."""

USED: dict[str, tuple[str, ...]] = {
    "_internals.LlamaModel": ("tokenize", "add_bos_token", "metadata", "token_eos",
                              "token_bos", "token_get_text", "close"),
    "_internals.LlamaTokenDataArray": ("copy_logits",),
    "_logger.set_verbose": (),
}
"""Each private name and the methods called on it. Instances also carry ``model``
and ``vocab`` (LlamaModel) and ``candidates`` (LlamaTokenDataArray)."""


def _resolve(dotted: str) -> Any:
    import importlib

    module, _, name = dotted.partition(".")
    return getattr(importlib.import_module(f"llama_cpp.{module}"), name)


def missing() -> list[str]:
    """The private names (and methods) this llama-cpp-python no longer has."""
    gone = []
    for dotted, methods in USED.items():
        try:
            target = _resolve(dotted)
        except (ImportError, AttributeError):
            gone.append(dotted)
            continue
        gone += [f"{dotted}.{m}" for m in methods if not callable(getattr(target, m, None))]
    return gone


def load_model(path: Path) -> Any:
    """A ``LlamaModel`` for the GGUF at ``path``, with llama.cpp's log quiet (what
    ``Llama(verbose=False)`` does)."""
    import llama_cpp
    from llama_cpp import _internals, _logger

    repacking.guard()
    _logger.set_verbose(False)
    params = llama_cpp.llama_model_default_params()
    return _internals.LlamaModel(path_model=str(path), params=params, verbose=False)


def token_data_array(n_vocab: int) -> Any:
    """A reusable candidates array of ``n_vocab`` tokens (``.candidates`` is the C struct)."""
    from llama_cpp._internals import LlamaTokenDataArray

    return LlamaTokenDataArray(n_vocab=n_vocab)
