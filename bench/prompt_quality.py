"""Prompt optimiser quality on real third-party code.

Builds cases from source files already on this machine (the venv's Python
packages; C, C++ and TypeScript from the llama-cpp-python sdist that
``bench/.cache`` holds for the backend benchmarks; npm's JavaScript; shell
scripts from system docs; Go and Rust where present): a whole file plus an
instruction about one named function, in several prompt layouts. For each
case the optimiser's output size N is the size the baselines get too:

- ``optimiser``: :func:`cerebrum.prompt.optimize_text` / ``optimize_messages``;
- ``seed@N``: the seed's windows (1000 chars, 150 overlap, exact dedup,
  ranked by word overlap) taken by rank until N;
- ``head@N``: the instruction plus the head of the code, cut at N;
- ``seed-top3``: the seed's literal algorithm, at whatever size it produces.

Scores: the share of the target function's lines found in order in the
output, and the share of cases where all of them are (the whole function).

Run: ``.venv/bin/python bench/prompt_quality.py [--per-file 3] [--json out.json]``
"""

from __future__ import annotations

import argparse
import ast
import difflib
import glob
import json
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cerebrum.prompt import optimize_messages, optimize_text  # noqa: E402
from cerebrum.prompt.chunking import get_parser  # noqa: E402
from cerebrum.prompt.seed import seed_optimize  # noqa: E402

SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

# (language, glob patterns); files between MIN and MAX chars are used.
_LLAMA = str(Path(__file__).resolve().parent / ".cache" / "llama_cpp_python-*" / "vendor" / "llama.cpp")
SOURCES: list[tuple[str, list[str]]] = [
    ("python", [str(SITE / pkg / "*.py") for pkg in ("aiohttp", "attr", "cattrs", "psutil")]),
    ("c", [f"{_LLAMA}/ggml/src/*.c", f"{_LLAMA}/ggml/src/ggml-cpu/*.c",
           "/root/.pyenv/versions/*/lib/python3.*/site-packages/*/*.c"]),
    ("cpp", [f"{_LLAMA}/src/*.cpp", f"{_LLAMA}/common/*.cpp"]),
    ("typescript", [f"{_LLAMA}/tools/ui/src/lib/**/*.ts"]),
    ("javascript", ["/usr/lib/node_modules/npm/lib/**/*.js", "/usr/lib/node_modules/npm/node_modules/*/lib/*.js"]),
    ("shell", ["/usr/share/doc/git/contrib/**/*.sh", "/usr/share/postgresql-common/**/*.sh", "/usr/share/ucf/*.sh"]),
    ("go", ["/usr/share/doc/git/contrib/**/*.go", "/usr/lib/go*/src/*/*.go"]),
    ("rust", ["/root/.cargo/registry/src/*/*/src/*.rs"]),
]
MIN_FILE_CHARS = 12_000
MAX_FILE_CHARS = 120_000
FILES_PER_LANGUAGE = 8
MAX_TARGET_CHARS = 2500
MIN_TARGET_LINES = 6

INSTRUCTIONS = [
    "Explain what `{name}` does and list its edge cases.",
    "Refactor {name} to reduce nesting, keeping its behaviour.",
    "Add error handling to the {name} function.",
    "Write unit tests for {name}().",
]
LAYOUTS = ["after", "before", "fenced_before", "fenced_after", "chat_same", "chat_separate"]

_TS_FUNCTIONS = {
    "function_definition", "function_declaration", "method_definition", "method_declaration",
    "function_item", "generator_function_declaration",
}


def find_files(language: str, patterns: list[str]) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern, recursive=True)):
            try:
                size = os.path.getsize(path)
            except OSError:
                continue
            if MIN_FILE_CHARS <= size <= MAX_FILE_CHARS and not path.endswith((".min.js", ".d.ts")):
                files.append(path)
    rng = random.Random(f"files-{language}")
    rng.shuffle(files)
    return files[:FILES_PER_LANGUAGE]


def python_targets(code: str) -> list[tuple[str, str]]:
    tree = ast.parse(code)
    lines = code.split("\n")
    found: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            found.append((node.name, "\n".join(lines[start : node.end_lineno])))
    return found


def tree_sitter_targets(code: str, language: str) -> list[tuple[str, str]]:
    root = get_parser(language).parse(code.encode("utf-8")).root_node
    found: list[tuple[str, str]] = []
    stack = [root]
    lines = code.split("\n")
    while stack:
        node = stack.pop()
        stack.extend(node.named_children)
        if node.type not in _TS_FUNCTIONS:
            continue
        name_node = node.child_by_field_name("name")
        declarator = node.child_by_field_name("declarator")
        while name_node is None and declarator is not None:
            if declarator.type in ("identifier", "field_identifier"):
                name_node = declarator
                break
            inner = declarator.child_by_field_name("declarator")
            if inner is None and declarator.type == "qualified_identifier":
                name_node = declarator.child_by_field_name("name")
            declarator = inner
        if name_node is None:
            continue
        name = name_node.text.decode("utf-8", "replace")
        found.append((name, "\n".join(lines[node.start_point[0] : node.end_point[0] + 1])))
    return found


def pick_targets(code: str, language: str, count: int, rng: random.Random) -> list[tuple[str, str]]:
    try:
        found = python_targets(code) if language == "python" else tree_sitter_targets(code, language)
    except (SyntaxError, ValueError):
        return []
    names = [name for name, _ in found]
    good = [
        (name, text) for name, text in found
        if names.count(name) == 1 and len(name) >= 4 and not name.startswith("__")
        and len(text) <= MAX_TARGET_CHARS and text.count("\n") + 1 >= MIN_TARGET_LINES
    ]
    rng.shuffle(good)
    return good[:count]


def build_prompt(code: str, instruction: str, layout: str, language: str) -> tuple[str | None, list[dict] | None]:
    tag = language if language != "shell" else "bash"
    if layout == "after":
        return f"{code}\n\n{instruction}", None
    if layout == "before":
        return f"{instruction}\n\n{code}", None
    if layout == "fenced_before":
        return f"{instruction}\n\n```{tag}\n{code}\n```", None
    if layout == "fenced_after":
        return f"```\n{code}\n```\n\n{instruction}", None
    system = {"role": "system", "content": "You are a helpful coding assistant."}
    if layout == "chat_same":
        return None, [system, {"role": "user", "content": f"{instruction}\n\n```{tag}\n{code}\n```"}]
    return None, [
        system,
        {"role": "user", "content": [{"type": "text", "text": f"Here is a file from my project:\n\n{code}"}]},
        {"role": "assistant", "content": "Thanks, I have read it. What would you like me to do?"},
        {"role": "user", "content": instruction},
    ]


def _norm_lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def line_share(target: str, output: str) -> float:
    """Share of the target's non-blank lines found, in order, in ``output``."""
    wanted = _norm_lines(target)
    have = _norm_lines(output)
    matcher = difflib.SequenceMatcher(None, wanted, have, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    return matched / len(wanted) if wanted else 1.0


def head_truncate(instruction: str, code: str, size: int) -> str:
    room = max(0, size - len(instruction) - 2)
    return f"{instruction}\n\n{code[:room]}"


def run(per_file: int) -> dict:
    rng = random.Random(20240501)
    results: dict[str, list[dict]] = defaultdict(list)
    files_used: dict[str, int] = {}
    for language, patterns in SOURCES:
        files = find_files(language, patterns)
        files_used[language] = 0
        for path in files:
            code = Path(path).read_text("utf-8", "replace").strip("\n")
            targets = pick_targets(code, language, per_file, rng)
            if targets:
                files_used[language] += 1
            for name, target in targets:
                instruction = rng.choice(INSTRUCTIONS).format(name=name)
                layout = rng.choice(LAYOUTS)
                text, messages = build_prompt(code, instruction, layout, language)
                started = time.perf_counter()
                if messages is None:
                    assert text is not None
                    result = optimize_text(text)
                    output = result.text
                    original = len(text)
                    skipped = result.stats.skipped_reason
                else:
                    optimized = optimize_messages(messages)
                    contents = [m["content"] for m in optimized.messages[1:]]
                    output = "\n\n".join(
                        c if isinstance(c, str) else c[0]["text"] for c in contents
                    )
                    original = sum(
                        len(m["content"] if isinstance(m["content"], str) else m["content"][0]["text"])
                        for m in messages[1:]
                    )
                    skipped = optimized.stats.skipped_reason
                elapsed = (time.perf_counter() - started) * 1000
                size = len(output)
                flat = f"{code}\n\n{instruction}"
                seed_n = seed_optimize(flat, top_k=None, max_chars=size)
                seed_3 = seed_optimize(flat)
                head_n = head_truncate(instruction, code, size)
                case = {
                    "language": language, "layout": layout, "file": path, "target": name,
                    "original": original, "size": size, "skipped": skipped, "ms": elapsed,
                }
                for method, out in (("optimiser", output), ("seed@N", seed_n), ("head@N", head_n), ("seed-top3", seed_3)):
                    share = line_share(target, out)
                    results[method].append({
                        **case, "share": share, "whole": share >= 0.999,
                        "reduction": 1 - len(out) / original, "instruction_kept": instruction in out,
                    })
    return {"results": results, "files": files_used}


def summarize(report: dict) -> str:
    rows = ["| method | cases | median reduction | mean target-line share | whole function kept | instruction kept |",
            "|---|---:|---:|---:|---:|---:|"]
    for method, cases in report["results"].items():
        rows.append(
            f"| {method} | {len(cases)} | {statistics.median(c['reduction'] for c in cases):.1%} | "
            f"{statistics.mean(c['share'] for c in cases):.1%} | "
            f"{sum(c['whole'] for c in cases) / len(cases):.1%} | "
            f"{sum(c['instruction_kept'] for c in cases) / len(cases):.1%} |"
        )
    ours = report["results"]["optimiser"]
    seed = {(c["file"], c["target"]): c for c in report["results"]["seed@N"]}
    head = {(c["file"], c["target"]): c for c in report["results"]["head@N"]}
    rows += ["", "| language | files | cases | median reduction | whole kept: optimiser | seed@N | head@N |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    by_language: dict[str, list[dict]] = defaultdict(list)
    for case in ours:
        by_language[case["language"]].append(case)
    for language, files in report["files"].items():
        cases = by_language.get(language, [])
        if not cases:
            rows.append(f"| {language} | {files} | 0 | - | - | - | - |")
            continue
        keys = [(c["file"], c["target"]) for c in cases]
        rows.append(
            f"| {language} | {files} | {len(cases)} | {statistics.median(c['reduction'] for c in cases):.1%} | "
            f"{sum(c['whole'] for c in cases) / len(cases):.1%} | "
            f"{sum(seed[k]['whole'] for k in keys) / len(keys):.1%} | "
            f"{sum(head[k]['whole'] for k in keys) / len(keys):.1%} |"
        )
    rows += ["", "| layout | cases | whole kept (optimiser) | median reduction |", "|---|---:|---:|---:|"]
    by_layout: dict[str, list[dict]] = defaultdict(list)
    for case in ours:
        by_layout[case["layout"]].append(case)
    for layout in LAYOUTS:
        cases = by_layout.get(layout, [])
        if cases:
            rows.append(f"| {layout} | {len(cases)} | {sum(c['whole'] for c in cases) / len(cases):.1%} | "
                        f"{statistics.median(c['reduction'] for c in cases):.1%} |")
    skipped = [c for c in ours if c["skipped"]]
    rows.append("")
    rows.append(f"skipped (sent unchanged): {len(skipped)}; optimiser time per case: median "
                f"{statistics.median(c['ms'] for c in ours):.1f} ms, max {max(c['ms'] for c in ours):.1f} ms")
    misses = [c for c in ours if not c["whole"]]
    for case in misses[:10]:
        rows.append(f"  miss: {case['language']} {case['layout']} {Path(case['file']).name}:{case['target']} "
                    f"share={case['share']:.0%} skipped={case['skipped']}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-file", type=int, default=3, help="target functions per source file")
    parser.add_argument("--json", help="write per-case results here")
    args = parser.parse_args()
    report = run(args.per_file)
    print(summarize(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
