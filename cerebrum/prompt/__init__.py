"""Prompt optimisation for small models: pure functions, no I/O.

Stages, one module each: :mod:`instruction` (split instruction from code),
:mod:`language` (detect the language), :mod:`chunking` (syntactic chunks),
:mod:`dedup` (drop repeats), :mod:`ranking` (relevance to the instruction),
:mod:`assembly` (fit the budget). :mod:`optimizer` is the entry point and
:mod:`routing` picks a model by language.
"""

from cerebrum.prompt.optimizer import (
    OptimizedMessages,
    OptimizedPrompt,
    OptimizeStats,
    optimize_messages,
    optimize_text,
)
from cerebrum.prompt.routing import DEFAULT_LANGUAGE_MODELS, route_model

__all__ = [
    "DEFAULT_LANGUAGE_MODELS",
    "OptimizeStats",
    "OptimizedMessages",
    "OptimizedPrompt",
    "optimize_messages",
    "optimize_text",
    "route_model",
]
