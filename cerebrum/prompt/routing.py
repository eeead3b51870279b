"""Pick the model for a request from the language of its code."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from types import MappingProxyType

_LOGGER = logging.getLogger(__name__)

QWEN_CODER = "qwen2.5-coder-1.5b-instruct"
CODELLAMA = "codellama-7b-instruct"

#: The seed's routing: Qwen coder for Python/JS/TS, CodeLlama for Rust/C/C++.
DEFAULT_LANGUAGE_MODELS: Mapping[str, str] = MappingProxyType(
    {
        "python": QWEN_CODER,
        "javascript": QWEN_CODER,
        "typescript": QWEN_CODER,
        "rust": CODELLAMA,
        "c": CODELLAMA,
        "cpp": CODELLAMA,
    }
)

AUTO = "auto"


def route_model(
    requested: str | None,
    language: str,
    available: Collection[str],
    *,
    language_models: Mapping[str, str] = DEFAULT_LANGUAGE_MODELS,
    default_model: str,
) -> str:
    """Return the model to use.

    An explicit ``requested`` model wins (whether it exists is the backend's
    call, which answers with a clear 404). ``None``, ``""`` or ``"auto"`` mean
    route: the model mapped to ``language`` if some backend has it, else
    ``default_model``.
    """
    if requested and requested.strip().lower() != AUTO:
        return requested
    mapped = language_models.get(language)
    if mapped and mapped in available:
        return mapped
    if mapped:
        _LOGGER.debug("model %s for %s is on no backend; using %s", mapped, language, default_model)
    return default_model
