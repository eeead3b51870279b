"""Prompt optimiser speed and grammar memory.

Times :func:`cerebrum.prompt.optimize_text` on prompts of growing size built
from real code (the venv's attrs/aiohttp sources for Python, the
llama-cpp-python sdist in ``bench/.cache`` for C++, when present), each an
instruction naming one function. Reports the median wall time and the median
CPU time of the process (less disturbed by other load on a shared machine),
the time per KB (flat means linear growth), and, in fresh subprocesses, the
memory one tree-sitter grammar costs once loaded (RSS delta and tracemalloc
peak).

Run: ``.venv/bin/python bench/prompt_speed.py [--repeat 15]``
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerebrum.prompt import optimize_text  # noqa: E402

SITE = (
    Path(sys.prefix)
    / "lib"
    / f"python{sys.version_info.major}.{sys.version_info.minor}"
    / "site-packages"
)
SIZES_KB = [2, 4, 8, 16, 32, 64, 100, 200, 400]


def corpus(language: str) -> str:
    if language == "python":
        paths = sorted(glob.glob(str(SITE / "attr" / "*.py"))) + sorted(
            glob.glob(str(SITE / "aiohttp" / "*.py"))
        )
    else:
        paths = sorted(
            glob.glob(
                str(
                    ROOT
                    / "bench"
                    / ".cache"
                    / "llama_cpp_python-*"
                    / "vendor"
                    / "llama.cpp"
                    / "src"
                    / "*.cpp"
                )
            )
        )
    return "\n\n".join(Path(p).read_text("utf-8", "replace") for p in paths)


def prompt(code: str, size: int, language: str) -> str:
    head = code[:size]
    # An instruction naming a function defined in the middle of the text.
    middle = head[len(head) // 2 :]
    keyword = "def "
    name = "something"
    if language == "python" and keyword in middle:
        name = middle.split(keyword, 1)[1].split("(", 1)[0].strip()
    return f"{head}\n\nExplain what {name} does and how it fails."


def measure(text: str, repeat: int) -> tuple[float, float, float]:
    optimize_text(text)  # warm: grammar loaded, regexes compiled
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = optimize_text(text)
        cpus.append((time.process_time() - cpu) * 1000)
        walls.append((time.perf_counter() - wall) * 1000)
    return statistics.median(walls), statistics.median(cpus), result.stats.reduction


_GRAMMAR_PROBE = r"""
import gc, os, sys, tracemalloc
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
gc.collect()
base = rss()
from cerebrum.prompt.chunking import get_parser, chunk_text
after_import = rss()
tracemalloc.start()
for language in sys.argv[1:]:
    get_parser(language)
loaded = rss()
chunk_text("int main(void) { return 0; }\n" * 50, sys.argv[1])
used = rss()
peak = tracemalloc.get_traced_memory()[1]
print(base, after_import, loaded, used, peak)
"""


def grammar_memory(languages: list[str]) -> tuple[int, int, int, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _GRAMMAR_PROBE, *languages],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout.split()
    return tuple(int(x) for x in out)  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for language in ("python", "cpp"):
        code = corpus(language)
        if len(code) < SIZES_KB[-1] * 1024:
            print(f"{language}: not enough source on disk, skipped")
            continue
        print(
            f"\n{language}\n| prompt | median wall ms | median CPU ms | CPU µs per KB | reduction |"
        )
        print("|---:|---:|---:|---:|---:|")
        for kb in SIZES_KB:
            wall, cpu, reduction = measure(prompt(code, kb * 1024, language), args.repeat)
            print(f"| {kb} KB | {wall:.2f} | {cpu:.2f} | {cpu * 1000 / kb:.0f} | {reduction:.0%} |")
    print(
        "\ngrammar memory (fresh process each; 'import' is cerebrum.prompt, which loads no grammar)"
    )
    print(
        "| grammars | RSS import cerebrum.prompt | RSS tree-sitter + grammars "
        "| tracemalloc peak of loading |"
    )
    print("|---|---:|---:|---:|")
    for languages in (
        ["python"],
        ["cpp"],
        ["typescript"],
        ["python", "javascript", "typescript", "rust", "c", "cpp", "go", "java", "shell"],
    ):
        base, imported, loaded, used, peak = grammar_memory(languages)
        mib = 1024 * 1024
        print(
            f"| {'+'.join(languages) if len(languages) < 3 else 'all 9'} "
            f"| +{(imported - base) / mib:.1f} MiB | "
            f"+{(loaded - imported) / mib:.1f} MiB | {peak / mib:.2f} MiB |"
        )


if __name__ == "__main__":
    main()
