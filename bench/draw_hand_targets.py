"""Draw functions at random for a blind hand-described set of ``prompt_quality.py``.

The hand-described sets (``HANDWRITTEN_2`` to ``HANDWRITTEN_9``) are written
from functions drawn here, not chosen: per language, with a fixed seed, a
random file of the class suite's sources (``CLASS_SOURCES``, 12-120 KB, the
class suite's exclusions, test files left out) and in it a random function
that a generated case could also have drawn (unique name in the file, 6+
lines, at most 2500 chars, no dunder), never one of an earlier hand set.
Candidates are printed in order with their code; the writer takes them in
that order, skipping only by the rules in ``prompt_quality.py``'s comment
above the set (generated tables, abstract declarations, tests, functions no
sentence tells apart from a sibling), and says which were skipped.

Run: ``.venv/bin/python bench/draw_hand_targets.py --set hand3 --per-language 10``
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.prompt_quality import (  # noqa: E402
    HANDWRITTEN,
    HANDWRITTEN_2,
    HANDWRITTEN_3,
    HANDWRITTEN_4,
    HANDWRITTEN_5,
    HANDWRITTEN_6,
    HANDWRITTEN_7,
    HANDWRITTEN_8,
    HANDWRITTEN_9,
    MAX_FILE_CHARS,
    MIN_FILE_CHARS,
    _all_targets,
    class_files,
    eligible_targets,
)

# The sets written before each one (never drawn again); a new set excludes them all.
_ALL = (
    *HANDWRITTEN,
    *HANDWRITTEN_2,
    *HANDWRITTEN_3,
    *HANDWRITTEN_4,
    *HANDWRITTEN_5,
    *HANDWRITTEN_6,
    *HANDWRITTEN_7,
    *HANDWRITTEN_8,
    *HANDWRITTEN_9,
)
_EARLIER = {
    "hand3": (*HANDWRITTEN, *HANDWRITTEN_2),
    "hand4": (*HANDWRITTEN, *HANDWRITTEN_2, *HANDWRITTEN_3),
    "hand5": (*HANDWRITTEN, *HANDWRITTEN_2, *HANDWRITTEN_3, *HANDWRITTEN_4),
    "hand6": (*HANDWRITTEN, *HANDWRITTEN_2, *HANDWRITTEN_3, *HANDWRITTEN_4, *HANDWRITTEN_5),
    "hand7": (
        *HANDWRITTEN,
        *HANDWRITTEN_2,
        *HANDWRITTEN_3,
        *HANDWRITTEN_4,
        *HANDWRITTEN_5,
        *HANDWRITTEN_6,
    ),
    "hand8": (
        *HANDWRITTEN,
        *HANDWRITTEN_2,
        *HANDWRITTEN_3,
        *HANDWRITTEN_4,
        *HANDWRITTEN_5,
        *HANDWRITTEN_6,
        *HANDWRITTEN_7,
    ),
    "hand9": (
        *HANDWRITTEN,
        *HANDWRITTEN_2,
        *HANDWRITTEN_3,
        *HANDWRITTEN_4,
        *HANDWRITTEN_5,
        *HANDWRITTEN_6,
        *HANDWRITTEN_7,
        *HANDWRITTEN_8,
    ),
}


def _is_test(path: str) -> bool:
    name = Path(path).name
    return "/test/" in path or "/idlelib/idle_test/" in path or name.startswith("test_")


def draw(language: str, count: int, label: str) -> list[tuple[str, str, str]]:
    """``count`` (file, name, text) candidates of ``language``, in drawing order."""
    rng = random.Random(f"{label}-{language}")
    files = [
        path
        for path in class_files(language, MIN_FILE_CHARS, MAX_FILE_CHARS, 1_000_000)
        if not _is_test(path)
    ]
    files.sort()
    taken = {(path, name) for _, path, name, _ in _EARLIER.get(label, _ALL)}
    drawn: list[tuple[str, str, str]] = []
    tries = 0
    while len(drawn) < count and files and tries < 50 * count:
        tries += 1
        path = rng.choice(files)
        code = Path(path).read_text("utf-8", "replace").strip("\n")
        good = [
            (n, t)
            for n, t in eligible_targets(_all_targets(code, language), code)
            if (path, n) not in taken
        ]
        if not good:
            continue
        name, text = rng.choice(sorted(good))
        taken.add((path, name))
        drawn.append((path, name, text))
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default="hand3", help="the set's label, part of the seed")
    parser.add_argument("--per-language", type=int, default=10)
    parser.add_argument(
        "--languages", default="python,go,java,rust,javascript", help="comma-separated"
    )
    parser.add_argument("--names-only", action="store_true", help="print no code")
    args = parser.parse_args()
    for language in args.languages.split(","):
        for number, (path, name, text) in enumerate(draw(language, args.per_language, args.set)):
            print(f"=== {language} #{number + 1}: {path} :: {name}")
            if not args.names_only:
                print(text)
                print()


if __name__ == "__main__":
    main()
