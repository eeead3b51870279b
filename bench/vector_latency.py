"""In-process retrieval time with and without vectors, on this repository's own index.

    python bench/vector_latency.py [--questions 40] [--dimensions 384]

Indexes the repository's Python files at HEAD into a temporary workspace, gives every
embeddable unit a random unit vector (the time does not depend on what the vectors
say), and times ``rank_units`` + ``assemble_context`` for the last commit subjects as
questions, lexical and with a question vector, alternating twice.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerebrum.workspace.retrieve import assemble_context, rank_units  # noqa: E402
from cerebrum.workspace.store import ManifestEntry, WorkspaceStore, sha256_hex  # noqa: E402
from cerebrum.workspace.vectors import encode, text_digest  # noqa: E402


def git(*args: str) -> list[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--dimensions", type=int, default=384)
    args = parser.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as scratch:
        store = WorkspaceStore.create(Path(scratch) / "w.sqlite", "w")
        files = {p: (ROOT / p).read_bytes() for p in git("ls-files", "*.py")}
        store.begin([ManifestEntry(p, sha256_hex(c), len(c)) for p, c in files.items()])
        store.stage(list(files.items()))
        store.commit()
        todo = store.units_to_embed("random", 1_000_000)
        store.put_vectors("random", [(unit_id, text_digest(text), encode(
            [rng.gauss(0, 1) for _ in range(args.dimensions)])) for unit_id, text in todo])
        questions = git("log", "--format=%s", "-n", str(args.questions))
        vector = [rng.gauss(0, 1) for _ in range(args.dimensions)]
        for label, question_vector in (("lexical", None), ("vectors", vector)) * 2:
            times = []
            for question in questions:
                started = time.perf_counter()
                with store.reading():
                    candidates, units = rank_units(store, question,
                                                   question_vector=question_vector)
                assemble_context(candidates, units, 1500)
                times.append((time.perf_counter() - started) * 1000)
            print(f"{label}: {len(todo)} vectors, {len(questions)} questions, median "
                  f"{statistics.median(times):.1f} ms, mean {statistics.mean(times):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
