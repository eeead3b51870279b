# ruff: noqa: E501  (Markdown table rows and the hand-written case texts read best unbroken)
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
import re
import statistics
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cerebrum.prompt import optimize_messages, optimize_text  # noqa: E402
from cerebrum.prompt.chunking import get_parser  # noqa: E402
from cerebrum.prompt.ranking import split_identifier  # noqa: E402
from cerebrum.prompt.seed import seed_optimize  # noqa: E402

SITE = (
    Path(sys.prefix)
    / "lib"
    / f"python{sys.version_info.major}.{sys.version_info.minor}"
    / "site-packages"
)

# (language, glob patterns); files between MIN and MAX chars are used.
_LLAMA = str(
    Path(__file__).resolve().parent / ".cache" / "llama_cpp_python-*" / "vendor" / "llama.cpp"
)
SOURCES: list[tuple[str, list[str]]] = [
    ("python", [str(SITE / pkg / "*.py") for pkg in ("aiohttp", "attr", "cattrs", "psutil")]),
    (
        "c",
        [
            f"{_LLAMA}/ggml/src/*.c",
            f"{_LLAMA}/ggml/src/ggml-cpu/*.c",
            "/root/.pyenv/versions/*/lib/python3.*/site-packages/*/*.c",
        ],
    ),
    ("cpp", [f"{_LLAMA}/src/*.cpp", f"{_LLAMA}/common/*.cpp"]),
    ("typescript", [f"{_LLAMA}/tools/ui/src/lib/**/*.ts"]),
    (
        "javascript",
        [
            "/usr/lib/node_modules/npm/lib/**/*.js",
            "/usr/lib/node_modules/npm/node_modules/*/lib/*.js",
        ],
    ),
    (
        "shell",
        [
            "/usr/share/doc/git/contrib/**/*.sh",
            "/usr/share/postgresql-common/**/*.sh",
            "/usr/share/ucf/*.sh",
        ],
    ),
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
    "function_definition",
    "function_declaration",
    "method_definition",
    "method_declaration",
    "function_item",
    "generator_function_declaration",
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
        found = (
            python_targets(code) if language == "python" else tree_sitter_targets(code, language)
        )
    except (SyntaxError, ValueError):
        return []
    names = [name for name, _ in found]
    good = [
        (name, text)
        for name, text in found
        if names.count(name) == 1
        and len(name) >= 4
        and not name.startswith("__")
        and len(text) <= MAX_TARGET_CHARS
        and text.count("\n") + 1 >= MIN_TARGET_LINES
    ]
    rng.shuffle(good)
    return good[:count]


def build_prompt(
    code: str, instruction: str, layout: str, language: str
) -> tuple[str | None, list[dict] | None]:
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
        return None, [
            system,
            {"role": "user", "content": f"{instruction}\n\n```{tag}\n{code}\n```"},
        ]
    return None, [
        system,
        {
            "role": "user",
            "content": [{"type": "text", "text": f"Here is a file from my project:\n\n{code}"}],
        },
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
                        len(
                            m["content"]
                            if isinstance(m["content"], str)
                            else m["content"][0]["text"]
                        )
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
                    "language": language,
                    "layout": layout,
                    "file": path,
                    "target": name,
                    "original": original,
                    "size": size,
                    "skipped": skipped,
                    "ms": elapsed,
                }
                for method, out in (
                    ("optimiser", output),
                    ("seed@N", seed_n),
                    ("head@N", head_n),
                    ("seed-top3", seed_3),
                ):
                    share = line_share(target, out)
                    results[method].append(
                        {
                            **case,
                            "share": share,
                            "whole": share >= 0.999,
                            "reduction": 1 - len(out) / original,
                            "instruction_kept": instruction in out,
                        }
                    )
    return {"results": results, "files": files_used}


def summarize(report: dict) -> str:
    rows = [
        "| method | cases | median reduction | mean target-line share | whole function kept | instruction kept |",
        "|---|---:|---:|---:|---:|---:|",
    ]
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
    rows += [
        "",
        "| language | files | cases | median reduction | whole kept: optimiser | seed@N | head@N |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
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
    rows += [
        "",
        "| layout | cases | whole kept (optimiser) | median reduction |",
        "|---|---:|---:|---:|",
    ]
    by_layout: dict[str, list[dict]] = defaultdict(list)
    for case in ours:
        by_layout[case["layout"]].append(case)
    for layout in LAYOUTS:
        cases = by_layout.get(layout, [])
        if cases:
            rows.append(
                f"| {layout} | {len(cases)} | {sum(c['whole'] for c in cases) / len(cases):.1%} | "
                f"{statistics.median(c['reduction'] for c in cases):.1%} |"
            )
    skipped = [c for c in ours if c["skipped"]]
    rows.append("")
    rows.append(
        f"skipped (sent unchanged): {len(skipped)}; optimiser time per case: median "
        f"{statistics.median(c['ms'] for c in ours):.1f} ms, max {max(c['ms'] for c in ours):.1f} ms"
    )
    misses = [c for c in ours if not c["whole"]]
    for case in misses[:10]:
        rows.append(
            f"  miss: {case['language']} {case['layout']} {Path(case['file']).name}:{case['target']} "
            f"share={case['share']:.0%} skipped={case['skipped']}"
        )
    return "\n".join(rows)


# --- the harder classes (issue #14): generated from real third-party code -------

_SRC = Path(__file__).resolve().parent / ".cache" / "sources"
CLASS_SOURCES: dict[str, list[str]] = {
    "python": ["/usr/lib/python3.*/*.py", "/usr/lib/python3.*/*/*.py"],
    "go": [
        str(_SRC / "go" / d / "*.go")
        for d in (
            "bufio",
            "strings",
            "bytes",
            "encoding/json",
            "net/http",
            "net/url",
            "text/template",
            "flag",
            "archive/tar",
            "regexp",
        )
    ],
    "rust": [str(_SRC / "rust" / "**" / "src" / "**" / "*.rs")],
    "java": [str(_SRC / "java" / "**" / "*.java")],
    "javascript": [
        "/usr/lib/node_modules/npm/lib/**/*.js",
        "/usr/lib/node_modules/npm/node_modules/*/lib/*.js",
    ],
    "c": [f"{_LLAMA}/ggml/src/*.c", f"{_LLAMA}/ggml/src/ggml-cpu/*.c"],
}
CLASSES = ("described", "report", "conversation", "parsing")
CONTEXT, REPLY = 2048, 256
_COMMON_WORDS = {
    "new",
    "New",
    "add",
    "get",
    "put",
    "run",
    "close",
    "open",
    "read",
    "write",
    "send",
    "update",
    "clear",
    "reset",
    "start",
    "stop",
    "next",
    "parse",
    "push",
    "pop",
    "insert",
    "remove",
    "flush",
    "find",
    "len",
    "Len",
    "Read",
    "Write",
    "Close",
    "Get",
    "Set",
    "Add",
    "Reset",
    "String",
    "Parse",
}
_TOKENIZER: object | None = None


def real_tokens(text: str) -> int:
    """SmolLM2's own count (the default model), vocabulary only."""
    global _TOKENIZER
    if _TOKENIZER is None:
        import llama_cpp

        from cerebrum.backend.registry import embedded_model_path

        _TOKENIZER = llama_cpp.Llama(str(embedded_model_path()), vocab_only=True, verbose=False)
    return len(_TOKENIZER.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=True))  # type: ignore[attr-defined]


def chatml(messages: list[dict]) -> str:
    """The request as SmolLM2's chat template renders it (ChatML)."""
    body = "".join(f"<|im_start|>{m['role']}\n{_content(m)}<|im_end|>\n" for m in messages)
    return body + "<|im_start|>assistant\n"


def _content(message: dict) -> str:
    content = message["content"]
    return (
        content
        if isinstance(content, str)
        else "\n".join(p["text"] for p in content if p.get("type") == "text")
    )


def split_of(path: str) -> str:
    """``dev`` or ``held``: a fixed half of the source files, by a hash of their path.

    Heuristics are tuned on ``dev`` cases only; ``held`` cases (other files,
    never looked at while tuning) say whether a gain is general.
    """
    return "dev" if zlib.crc32("/".join(Path(path).parts[-3:]).encode()) % 2 == 0 else "held"


def class_files(language: str, low: int, high: int, count: int, split: str = "all") -> list[str]:
    files = []
    for pattern in CLASS_SOURCES[language]:
        for path in sorted(glob.glob(pattern, recursive=True)):
            if (
                path.endswith(("_test.go", ".min.js", "test.rs"))
                or "/tests/" in path
                or "/testdata/" in path
            ):
                continue
            try:
                size = os.path.getsize(path)
            except OSError:
                continue
            if low <= size <= high and split in ("all", split_of(path)):
                files.append(path)
    rng = random.Random(f"class-files-{language}-{low}")
    rng.shuffle(files)
    return files[:count]


def _lines_of(code: str, target: str) -> tuple[int, int]:
    start = code.index(target)
    first = code.count("\n", 0, start) + 1
    return first, first + target.count("\n")


def _callers(found: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    return sorted(
        ((n, t) for n, t in found if n != name and re.search(rf"\b{re.escape(name)}\s*\(", t)),
        key=lambda item: -len(item[1]),
    )


def _all_targets(code: str, language: str) -> list[tuple[str, str]]:
    try:
        return python_targets(code) if language == "python" else tree_sitter_targets(code, language)
    except (SyntaxError, ValueError):
        return []


def _description(
    name: str, target: str, language: str, rng: random.Random, code: str = ""
) -> str | None:
    """Behaviour in words, never the name: its doc comment, an error string it has, or its name's words.

    The doc sentence goes into the request unquoted and without the name's
    own words (so it is matched word by word, not as a string or a
    spelling); a doc sentence or error string is used only when it occurs
    once in the file (a description that fits two functions equally has no
    single right answer). Weighted 3 : 2 : 1, since a name spelled in words is
    the easiest of the three.
    """
    options: list[str] = []
    doc = (
        re.search(r'"""\s*(.+?)(?:\.\s|\n\s*\n|""")', target, re.DOTALL)
        if language == "python"
        else re.search(
            r"^\s*(?:///?|/\*\*?|\*)\s*([A-Z][^\n]{15,}?)(?:\.\s|\.$|\n)", target, re.MULTILINE
        )
    )
    flat = " ".join(code.split())
    own = {w[:5] for w in split_identifier(name)}
    if doc:
        sentence = " ".join(doc.group(1).split())
        unique = flat.count(sentence) == 1
        # Without the name and without the name's words: a description, not a spelling.
        sentence = re.sub(rf"\b{re.escape(name)}\b", "it", sentence).rstrip(".")
        sentence = " ".join(w for w in sentence.split() if w.lower()[:5] not in own)
        if 4 <= len(sentence.split()) <= 30 and unique and "{" not in sentence:
            options += [
                f"It should {sentence[0].lower()}{sentence[1:]}, but it misbehaves. "
                "Find the code that does this and fix it."
            ] * 3
    literals = [
        m
        for m in re.findall(r'"([A-Za-z][^"\n]{12,80})"', target)
        if len(m.split()) >= 3 and code.count(m) == 1
    ]
    if literals:
        options += [
            f'I get "{rng.choice(literals)}" when I run it. Where does that come from, and why?'
        ] * 2
    words = split_identifier(name)
    if len(words) >= 2:
        options.append(
            f"Something is off in how it does the {' '.join(words)} part; explain where and fix it."
        )
    rng.shuffle(options)
    return next((o for o in options if name not in o), None)


# Described by hand: written from what each function does, before looking at
# how the optimiser ranks it, and never tuned on (reported as their own split).
_PY = "/usr/lib/python3.11"
HANDWRITTEN: list[tuple[str, str, str, str]] = [
    (
        "python",
        f"{_PY}/shlex.py",
        "quote",
        "Strings that contain spaces or single quotes come out unsafe when I paste them into a shell "
        "command. Where is the escaping done?",
    ),
    (
        "python",
        f"{_PY}/textwrap.py",
        "dedent",
        "Removing the common leading whitespace from all lines goes wrong when some lines are indented "
        "with tabs and others with spaces.",
    ),
    (
        "python",
        f"{_PY}/textwrap.py",
        "shorten",
        "Collapsing the text and truncating it to fit a width with a placeholder at the end cuts in the "
        "middle of a word.",
    ),
    (
        "python",
        f"{_PY}/functools.py",
        "_lru_cache_wrapper",
        "The cache never evicts the least recently used entry once maxsize is reached. Why?",
    ),
    (
        "python",
        f"{_PY}/json/decoder.py",
        "py_scanstring",
        "Unicode escapes with surrogate pairs inside JSON strings decode to the wrong characters.",
    ),
    (
        "python",
        f"{_PY}/urllib/parse.py",
        "urlsplit",
        "Splitting a URL with an IPv6 address in brackets into its scheme, netloc and path gives the "
        "wrong netloc.",
    ),
    (
        "python",
        f"{_PY}/heapq.py",
        "merge",
        "Combining several already sorted inputs into one sorted stream ignores the reverse flag.",
    ),
    (
        "python",
        f"{_PY}/tempfile.py",
        "mkdtemp",
        "Creating a temporary directory sometimes fails on a name collision instead of trying another name.",
    ),
    (
        "go",
        str(_SRC / "go/strings/strings.go"),
        "Fields",
        "Splitting the string around runs of white space does not treat non-ASCII spaces as separators.",
    ),
    (
        "go",
        str(_SRC / "go/bufio/scan.go"),
        "ScanWords",
        "The split function that returns space-separated words loses the last word when the input has "
        "no trailing space.",
    ),
    (
        "go",
        str(_SRC / "go/net/url/url.go"),
        "resolvePath",
        "Resolving a relative reference against the base path mishandles dot-dot segments.",
    ),
    (
        "go",
        str(_SRC / "go/flag/flag.go"),
        "parseOne",
        "A double dash on the command line should stop option processing, but the arguments after it "
        "are still read as options.",
    ),
    (
        "java",
        str(_SRC / "java/java.base/java/util/HashMap.java"),
        "resize",
        "When the table fills up and is doubled, the entries of a bucket are split between the low and "
        "high halves incorrectly.",
    ),
    (
        "java",
        str(_SRC / "java/java.base/java/util/ArrayDeque.java"),
        "delete",
        "Removing an element from the middle of the deque shifts the wrong side of the circular buffer.",
    ),
    (
        "javascript",
        "/usr/lib/node_modules/npm/node_modules/semver/classes/range.js",
        "isSatisfiable",
        "Checking whether any version at all could satisfy every comparator of a set gives true for "
        "impossible sets.",
    ),
]

# A second blind set (split "hand2"), written in session 4 before any ranking
# change for it and never tuned on. The functions were drawn at random
# (seeded per language) from the files the generated cases use, skipping
# generated tables (encodings/*), abstract declarations, tests and functions
# no sentence describes apart from a sibling; each description says what the
# function does as a user reporting a bug would, without the words of its name.
_GO = _SRC / "go"
_JAVA = _SRC / "java" / "java.base" / "java"
_RUST = _SRC / "rust"
_NPM = "/usr/lib/node_modules/npm"
HANDWRITTEN_2: list[tuple[str, str, str, str]] = [
    (
        "python",
        f"{_PY}/email/_policybase.py",
        "_fold",
        "When a header value contains raw 8-bit bytes that were smuggled in as surrogates, the line "
        "that goes out is never wrapped to the maximum line length and ends up far too long. Where is "
        "the name: value line put together?",
    ),
    (
        "python",
        f"{_PY}/importlib/_bootstrap.py",
        "_exec",
        "Re-running an already imported module in place fails with an ImportError saying the module "
        "is not in sys.modules, although I can see it there; a namespace package without a loader "
        "breaks the same way.",
    ),
    (
        "python",
        f"{_PY}/shlex.py",
        "get_token",
        "Items I push back onto the lexer are not handed out first, and when an included source file "
        "runs out the lexer stops instead of going back to the file that included it.",
    ),
    (
        "python",
        f"{_PY}/tokenize.py",
        "_all_string_prefixes",
        "Literals written like Rb'...' or fR'...' (letters in either order, mixed upper and lower "
        "case) are not recognised; the set of allowed letter combinations in front of the quote "
        "looks incomplete.",
    ),
    (
        "python",
        f"{_PY}/sunau.py",
        "setnchannels",
        "I can't produce a Sun .au file with three audio tracks: anything but mono, stereo or four "
        "tracks is refused. Where is that checked?",
    ),
    (
        "python",
        f"{_PY}/asyncore.py",
        "handle_write_event",
        "When a non-blocking socket that is still connecting becomes ready for output, the connect "
        "callback should fire before the send callback, and a listening socket should ignore that "
        "readiness altogether.",
    ),
    (
        "python",
        f"{_PY}/telnetlib.py",
        "rawq_getchar",
        "Pulling the next single character off the unprocessed input buffer hangs after the server "
        "hangs up, instead of raising EOFError.",
    ),
    (
        "go",
        str(_GO / "bytes/bytes.go"),
        "LastIndex",
        "Searching a byte slice backwards for the final occurrence of a multi-byte separator returns "
        "the wrong position when the match is right at the start.",
    ),
    (
        "go",
        str(_GO / "net/http/transfer.go"),
        "seeUpcomingDoubleCRLF",
        "The check that peeks ahead in the buffered reader for the empty line (\\r\\n\\r\\n) ending "
        "a header block keeps growing the peek until the buffer is full. Is that loop right?",
    ),
    (
        "go",
        str(_GO / "strings/replace.go"),
        "build",
        "Choosing which replacement algorithm to use goes wrong: when every old string is one "
        "character long but the new ones are longer, the first old/new pair given for a character "
        "should take precedence, and it doesn't.",
    ),
    (
        "go",
        str(_GO / "flag/flag.go"),
        "numError",
        "Passing -n=99999999999999999999 to an integer option reports a parse failure instead of "
        "saying the value is out of range. Where are strconv's failures translated?",
    ),
    (
        "go",
        str(_GO / "net/url/url.go"),
        "validOptionalPort",
        "A host like example.com:8o80 is accepted by the URL parser, while nothing after the colon "
        "should be fine. Where is the part after the colon checked for digits?",
    ),
    (
        "go",
        str(_GO / "bufio/scan.go"),
        "advance",
        "A split function that claims to have consumed more than the buffered data, or a negative "
        "amount, should stop the scanner with an error. Where is the consumed count applied to the "
        "start position?",
    ),
    (
        "java",
        str(_JAVA / "util/jar/JarFile.java"),
        "initializeVerifier",
        "A signed jar whose META-INF signature files can't be parsed should be treated as unsigned, "
        "but it blows up instead. Where are the manifest and signature entries gone through when "
        "signature checking is first set up?",
    ),
    (
        "java",
        str(_JAVA / "util/PriorityQueue.java"),
        "initFromPriorityQueue",
        "Constructing one of these heaps from another instance of the same class should reuse its "
        "array as it is, but for a subclass it must go through the generic collection path. Where "
        "does the copy constructor decide that?",
    ),
    (
        "java",
        str(_JAVA / "text/CollationElementIterator.java"),
        "setOffset",
        "Moving the iterator to a given character position that falls inside a contracting sequence "
        "(like Spanish 'ch') lands in the middle of the sequence instead of at its start.",
    ),
    (
        "java",
        str(_JAVA / "util/stream/Gatherers.java"),
        "scan",
        "I want a running total over a stream: every element folded into the previous result, and "
        "each intermediate result pushed downstream, starting from a supplied initial value. The one "
        "here skips the first result.",
    ),
    (
        "java",
        str(_JAVA / "io/StreamTokenizer.java"),
        "toString",
        "Printing the tokenizer in a log shows a quoted token as just the quote character, and I'd "
        "like the line number shown as well. Where is that text built?",
    ),
    (
        "rust",
        str(_RUST / "regex-syntax/regex-syntax-0.6.27/src/hir/literal/mod.rs"),
        "class_exceeds_limits",
        "Extracting literals from a pattern with a big character set like [a-z] should stop when the "
        "set has too many characters or the total byte size would blow up, but the size estimate "
        "also counts literals that are already cut.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/number.rs"),
        "as_f64",
        "Converting a JSON number to a floating-point value with the arbitrary_precision feature on "
        "gives None for huge values like 1e400; without the feature integers convert fine.",
    ),
    (
        "rust",
        str(_RUST / "clap/clap-4.0.32/src/builder/value_parser.rs"),
        "any_value_parser",
        "Mapping the built-in kinds (bool, String, OsString, PathBuf) to the concrete object that "
        "converts a command-line argument picks the wrong one for paths.",
    ),
    (
        "rust",
        str(_RUST / "memchr/memchr-2.5.0/src/memmem/mod.rs"),
        "run_search_tests_fwd",
        "The helper that checks a substring-finding closure against the table of needle/haystack "
        "cases compares with the reverse expectations instead of the front-to-back ones.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/pacote/lib/fetcher.js",
        "isRetriableError",
        "Which failures get another attempt? A tarball that fails its checksum should be fetched "
        "again, and so should a missing file (ENOENT), but a directory (EISDIR) shouldn't.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/node-gyp/lib/install.js",
        "downloadNodeLib",
        "On Windows, fetching the import library for each architecture: a 404 from the mirror should "
        "stop with the status code, and the checksum of what was streamed to disk must be recorded.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/base-cmd.js",
        "setWorkspaces",
        "Filtering which sub-packages of a monorepo a command runs on: when I run npm from a folder "
        "above the project root, the filters are resolved relative to the wrong directory.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/ssri/lib/index.js",
        "createIntegrity",
        "Hashing a stream incrementally: I feed it chunks one by one and then ask for the final "
        "hashes, and the resulting sha512-... entries lack the options suffix I passed.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/nopt/lib/nopt-lib.js",
        "resolveShort",
        "Combined single-letter flags like -glp should expand into their long options, but a letter "
        "alias defined as a space-separated string is not split into a list.",
    ),
]


# A third blind set (split "hand3"), written in session 5 before any ranking
# change, after hand and hand2 had become tuning sets. Drawn, not chosen:
# bench/draw_hand_targets.py --set hand3 (seeded per language) lists random
# functions of the class suite's files; they were taken in drawing order,
# skipping only generated tables (Python #1-2, encodings/*), tests (Rust #4)
# and empty default methods (Rust #2, a visitor's no-op hook), and each is
# described as a user's bug report would, without the words of its name.
# Taken: Python #3-8, Go #1-6, Java #1-6, Rust #1, 3, 5-7, JavaScript #1-5.
HANDWRITTEN_3: list[tuple[str, str, str, str]] = [
    (
        "python",
        f"{_PY}/unittest/mock.py",
        "_iter_side_effect",
        "When I fake a file with mock_open and give readline a fixed return value, looping over the "
        "handle line by line should keep producing that value forever, but it goes through the "
        "read_data lines instead.",
    ),
    (
        "python",
        f"{_PY}/lib2to3/fixer_util.py",
        "is_probably_builtin",
        "In 2to3, the check that decides whether a bare name might refer to one of Python's predefined "
        "global functions (like len) says yes for a parameter of a function definition and for the "
        "left side of an assignment; it should say no there, and for attribute lookups after a dot.",
    ),
    (
        "python",
        f"{_PY}/email/message.py",
        "keys",
        "Listing the header field names of a parsed email message should give every one, duplicates "
        "included, in the order they appeared: I have two Received headers and want both.",
    ),
    (
        "python",
        f"{_PY}/logging/handlers.py",
        "setTarget",
        "Swapping the handler that a buffering memory handler flushes into, while another thread is "
        "logging, isn't done under the handler's lock.",
    ),
    (
        "python",
        f"{_PY}/ipaddress.py",
        "sixtofour",
        "For an IPv6 address in 2002::/16 I want the IPv4 address embedded in it (bits 80 to 111); "
        "for any other address the property should give None, but I get a wrong address back.",
    ),
    (
        "python",
        f"{_PY}/configparser.py",
        "has_section",
        "Asking the parser whether a [heading] exists in the loaded INI data says yes for DEFAULT, "
        "which it should not acknowledge.",
    ),
    (
        "go",
        str(_GO / "encoding/json/scanner.go"),
        "stateInString",
        "The JSON scanner lets raw control bytes (below 0x20, like a literal newline) through between "
        "the double quotes of a text value instead of reporting a syntax error. Where are those bytes "
        "looked at?",
    ),
    (
        "go",
        str(_GO / "encoding/json/decode.go"),
        "valueInterface",
        "Decoding JSON into a bare any variable: the dispatch on whether the next item is an array, an "
        "object or a literal goes wrong, and after an object the scanner is not moved on.",
    ),
    (
        "go",
        str(_GO / "net/http/client.go"),
        "knownRoundTripperImpl",
        "The HTTP client decides whether the transport in use is one of the standard library's own "
        "(the HTTP/2 one and a per-request alternate included) so it can skip a workaround; a custom "
        "transport that wraps the x/net http2 package is mis-detected.",
    ),
    (
        "go",
        str(_GO / "text/template/funcs.go"),
        "index",
        "In a text/template, looking up nested elements with several subscripts in one call (a slice "
        "position, then a map key) fails on a missing map key instead of giving the zero value, and a "
        "nil pointer gives a confusing error.",
    ),
    (
        "go",
        str(_GO / "regexp/onepass.go"),
        "newQueue",
        "Building the sparse/dense integer set the one-pass regexp compiler uses as its work list: both "
        "backing slices must get the requested size.",
    ),
    (
        "go",
        str(_GO / "net/http/server.go"),
        "newBufioReader",
        "The HTTP server should take a pooled buffered input wrapper for each connection and reset it "
        "onto that connection, instead of allocating a fresh one every time.",
    ),
    (
        "java",
        str(_JAVA / "util/BitSet.java"),
        "writeObject",
        "Serializing a BitSet that was created without an explicit size should trim the unused long "
        "words before storing them as the bits field, but the serialized form still carries the spare "
        "capacity.",
    ),
    (
        "java",
        str(_JAVA / "util/ServiceLoader.java"),
        "equals",
        "Two provider handles for the same service interface and the same implementation class don't "
        "compare as the same, so putting them in a set keeps duplicates.",
    ),
    (
        "java",
        str(_SRC / "java/java.logging/java/util/logging/LogManager.java"),
        "reset",
        "Clearing the logging configuration should close all handlers and drop the levels, must not "
        "change the global handler state when it is called from a shutdown hook, and must not run at "
        "the same time as reading the configuration.",
    ),
    (
        "java",
        str(_JAVA / "util/concurrent/atomic/AtomicInteger.java"),
        "accumulateAndGet",
        "Combining the current atomic int with a given value through a binary function and returning "
        "the updated result: under contention the function is applied again even when the value did "
        "not change between attempts.",
    ),
    (
        "java",
        str(_JAVA / "util/concurrent/ConcurrentMap.java"),
        "forEach",
        "Walking over all entries of a concurrent map with a callback: if an entry is removed while I "
        "walk, the default implementation throws IllegalStateException instead of skipping that entry.",
    ),
    (
        "java",
        str(_JAVA / "util/concurrent/CompletionStage.java"),
        "exceptionallyCompose",
        "When a stage fails, I want to recover by returning another stage from a function of the "
        "Throwable and have its result flattened in; the default implementation of that recovery does "
        "not wait for the replacement stage.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/value/de.rs"),
        "visit_some",
        "When the input holds an optional that is present (not null), turning it into a serde_json "
        "Value should just deserialize what is inside, but it comes out wrapped.",
    ),
    (
        "rust",
        str(_RUST / "clap/clap-4.0.32/src/error/mod.rs"),
        "extend_context_unchecked",
        "Attaching a fixed-size array of extra (kind, value) details to a clap error in one go, "
        "skipping the validation, does not add them after those already there.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/lexical/math.rs"),
        "u64_to_hi64_2",
        "Normalising a big integer's two leading 64-bit limbs into the top 64 bits (shifted by the "
        "leading zeros) reports wrongly whether any nonzero bits of the lower limb were truncated.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/value/mod.rs"),
        "is_u64",
        "Asking a serde_json Value whether it is a number representable as an unsigned 64-bit integer: "
        "for strings and the other variants it should say false.",
    ),
    (
        "rust",
        str(_RUST / "clap/clap-4.0.32/src/builder/value_parser.rs"),
        "try_map",
        "Adapting a value parser with a fallible conversion closure, so that its output is converted "
        "and a conversion failure becomes a parse error: the adapter that comes back does not use my "
        "closure.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/npm-package-arg/lib/npa.js",
        "fromFile",
        "A local-path dependency spec such as ../lib or ~/pkg resolves to the wrong place: the saved "
        "spec should be relative to the folder it was given from, and a leading tilde should mean the "
        "home directory.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/pacote/lib/fetcher.js",
        "tarballStream",
        "When the cached package archive is corrupt, npm should clear that cache entry and fetch it "
        "again from the resolved URL (one more try), but instead it just fails.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/node-gyp/lib/find-visualstudio.js",
        "findVisualStudio2015",
        "node-gyp on Node 19 still looks for the version 14.0 compiler suite from Microsoft (toolset "
        "v140); that old one should only be considered up to Node 18.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/commands/view.js",
        "completion",
        "Pressing tab after npm view and a package name should suggest the fields of the package's "
        "metadata (from the version the default tag points to), but nothing is suggested.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/utils/allow-scripts-cmd.js",
        "printPruneSummary",
        "After cleaning out unused allowScripts entries, the report line says entries even when only "
        "one was dropped, and a dry run should word it as a hypothetical.",
    ),
]


# A fourth blind set (split "hand4"), written in session 5 after hand3 was
# measured, before the ranking changes that followed it; drawn the same way
# (bench/draw_hand_targets.py --set hand4), the first four of each language
# in drawing order, skipping a generated table (Python #5).
HANDWRITTEN_4: list[tuple[str, str, str, str]] = [
    (
        "python",
        f"{_PY}/argparse.py",
        "_format_text",
        "In argparse's help output, a description containing %(prog)s is not replaced by the program "
        "name, and it is wrapped to the full width instead of the width minus the current indentation.",
    ),
    (
        "python",
        f"{_PY}/logging/config.py",
        "cfg_convert",
        "In a dictConfig, a value pointing at another part of the configuration by path "
        "(handlers.email[subject], or [0] for a position) should walk down by dotted names and bracketed "
        "keys, but a number inside the brackets is looked up as a string.",
    ),
    (
        "python",
        f"{_PY}/mimetypes.py",
        "read_windows_registry",
        "Loading extra MIME types from the operating system's own database (the hive under "
        "HKEY_CLASSES_ROOT) ignores the strict flag: everything ends up among the standard types, even "
        "with strict off.",
    ),
    (
        "python",
        f"{_PY}/pprint.py",
        "format",
        "Subclassing the pretty printer to customise how each object is turned into its text: the hook "
        "that returns the text plus the readable and recursive flags is not called for nested objects.",
    ),
    (
        "go",
        str(_GO / "regexp/regexp.go"),
        "FindIndex",
        "Asking a compiled regexp for the start and end offsets of the leftmost match in a byte slice "
        "returns more than two numbers.",
    ),
    (
        "go",
        str(_GO / "text/template/funcs.go"),
        "goodFunc",
        "Registering a template helper that returns a value and an error is rejected; only one result, "
        "or two where the second is an error, should be allowed.",
    ),
    (
        "go",
        str(_GO / "encoding/json/decode.go"),
        "Unmarshal",
        "Decoding malformed JSON into a struct fills half of the struct before the syntax error is "
        "reported; the input should be checked for well-formedness first.",
    ),
    (
        "go",
        str(_GO / "strings/strings.go"),
        "Map",
        "Applying a per-character replacement callback to a string: a negative return should drop that "
        "character, and an invalid UTF-8 byte that comes back unchanged should be kept as it is.",
    ),
    (
        "java",
        str(_JAVA / "util/LinkedHashMap.java"),
        "internalWriteEntries",
        "Serializing a LinkedHashMap should emit each key and value in insertion order, following the "
        "before/after links from the oldest element; the stream comes out in bucket order.",
    ),
    (
        "java",
        str(_JAVA / "util/concurrent/atomic/AtomicInteger.java"),
        "getAndAccumulate",
        "Combining the atomic int with a value through a binary operator should hand back the value from "
        "before the update, but I receive the new one.",
    ),
    (
        "java",
        str(_JAVA / "util/concurrent/ThreadPoolExecutor.java"),
        "setMaximumPoolSize",
        "Lowering the upper bound on worker threads of an executor below the core count should throw "
        "IllegalArgumentException, and when it drops below the current number of workers the idle ones "
        "should be interrupted.",
    ),
    (
        "java",
        str(_JAVA / "text/DateFormatSymbols.java"),
        "hashCode",
        "Using these date symbol objects (month and weekday names, eras, AM/PM) as keys is slow: their "
        "bucket number is recomputed every time instead of being remembered, and the zone strings are "
        "left out of it.",
    ),
    (
        "rust",
        str(_RUST / "clap/clap-4.0.32/src/derive.rs"),
        "from_str",
        "Parsing a command-line value into one of an enum's variants, optionally ignoring case, gives an "
        "error message that does not say which input was wrong.",
    ),
    (
        "rust",
        str(_RUST / "memchr/memchr-2.5.0/src/memmem/mod.rs"),
        "run_search_tests_rev",
        "The checking helper that applies a last-occurrence substring finder to the table of "
        "needle/haystack cases compares its answers with the front-to-back expectations.",
    ),
    (
        "rust",
        str(_RUST / "memchr/memchr-2.5.0/src/memchr/x86/avx.rs"),
        "forward_pos",
        "On little-endian x86, turning the comparison bitmask of a 32-byte AVX chunk into the offset of "
        "the first matching byte is off: it should count the trailing zero bits.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/value/de.rs"),
        "visit_map",
        "Deserializing a JSON object into a serde_json Value: with arbitrary_precision or raw_value on, "
        "the special first key is recognised, but for an ordinary object the first key/value pair is lost.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/npm-package-arg/lib/npa.js",
        "pathToFileURL",
        "Converting a folder location like ./my#dir into a link for the dependency spec should "
        "percent-encode characters such as % and # one by one, and not prepend the scheme twice when it "
        "is already there.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/npm-package-arg/lib/npa.js",
        "isAliasSpec",
        "A dependency written as NPM:lodash@4 (upper case) is not recognised as installing one package "
        "under another name.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/nopt/lib/nopt-lib.js",
        "nopt",
        "The entry point of the option parser should return the parsed options with an argv object "
        "holding the leftover arguments, the cooked list and an untouched copy of the original list, but "
        "the original list is altered.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/npm-packlist/lib/index.js",
        "stat",
        "When a package contains an entry whose name Windows can't handle (like con, or a trailing dot), "
        "collecting the files to publish should skip that entry quietly instead of failing.",
    ),
]


# A fifth blind set (split "hand5"), written in session 6 before any ranking
# change of that session, after hand4 had become a tuning set. Drawn the same
# way (bench/draw_hand_targets.py --set hand5 --per-language 8 --languages
# python,go,java,rust,javascript,c), the first four of each language in
# drawing order, skipping a generated table (Python #4, encodings/*) and a
# test (Rust #2, class_union_bytes). C comes from the llama-cpp-python sdist
# the class suite already reads (bench/.cache, left out where it is missing).
# Taken: Python #1-3, 5; Go #1-4; Java #1-4; Rust #1, 3-5; JavaScript #1-4; C #1-4.
_GGML = os.path.join(next(iter(sorted(glob.glob(_LLAMA))), _LLAMA), "ggml", "src")
HANDWRITTEN_5: list[tuple[str, str, str, str]] = [
    (
        "python",
        f"{_PY}/_collections_abc.py",
        "_is_param_expr",
        "Writing collections.abc.Callable[Concatenate[int, P], str] raises a TypeError: the first "
        "item of the subscription should be allowed to be a list of argument types, the ellipsis, "
        "typing's Concatenate form, or a variable that stands for a whole signature's arguments.",
    ),
    (
        "python",
        f"{_PY}/pydoc.py",
        "classlink",
        "In pydoc's HTML pages, each base type listed under a type's heading should be an <a href> "
        "anchor to module.html#Name when its module really exposes it under that name; it is shown "
        "as plain text instead.",
    ),
    (
        "python",
        f"{_PY}/multiprocessing/managers.py",
        "accepter",
        "The multiprocessing manager's server stops taking new clients after a socket error on one "
        "incoming connection; it should keep going and serve each client on its own daemon thread.",
    ),
    (
        "python",
        f"{_PY}/telnetlib.py",
        "read_lazy",
        "In telnetlib, asking for whatever data is already queued, without blocking, should first "
        "pass the raw bytes through the option processing and then hand back the cooked bytes; it "
        "returns b'' although bytes are waiting in the raw queue.",
    ),
    (
        "go",
        str(_GO / "net/http/socks_bundle.go"),
        "Authenticate",
        "Going through a SOCKS5 proxy with a user name and secret: a 256-character user name should "
        "be refused before anything is sent, and when the proxy answers the sub-negotiation with a "
        "non-zero status the dial should fail, but it goes on.",
    ),
    (
        "go",
        str(_GO / "regexp/regexp.go"),
        "allMatches",
        'Finding every occurrence of a pattern that can be empty (like a*) in "baaab" reports an '
        "empty hit right after the previous non-empty one; those should be skipped, and the scan "
        "should step forward one UTF-8 character at a time.",
    ),
    (
        "go",
        str(_GO / "archive/tar/reader.go"),
        "readGNUSparsePAXHeaders",
        "Extracting a file with holes from a tarball made by the free-software tar in POSIX extended "
        "format: the real file name and real size stored in the extended records (format version "
        "1.0, where the hole map follows in the data) are not applied to the entry.",
    ),
    (
        "go",
        str(_GO / "regexp/exec.go"),
        "newReader",
        "Matching a regexp against a stream of runes a second time reuses the cached stream input "
        "without resetting its position and end-of-text flag, so the second run starts where the "
        "first one stopped.",
    ),
    (
        "java",
        str(_JAVA / "util/WeakHashMap.java"),
        "getFence",
        "Splitting a WeakHashMap's key set for a parallel stream: the upper bound of the bucket "
        "range and the estimated element count should be captured lazily on first use, together "
        "with the modification count, but the spliterator sees the table's old length.",
    ),
    (
        "java",
        str(_JAVA / "util/stream/FindOps.java"),
        "foundResult",
        "In a parallel findFirst, when a subtask comes up with an answer it should end the whole "
        "search only if it is the leftmost task, and otherwise only cancel the tasks to its right; "
        "instead the search ends early with a later element.",
    ),
    (
        "java",
        str(_JAVA / "util/concurrent/ConcurrentLinkedDeque.java"),
        "size",
        "Counting the elements of a concurrent double-ended queue while other threads take from it: "
        "the walk should start over when it falls off an unlinked node and stop at "
        "Integer.MAX_VALUE, but it gives a wrong number.",
    ),
    (
        "java",
        str(_JAVA / "util/random/RandomGeneratorFactory.java"),
        "entry",
        "The factory's table of known random generator algorithms should pair each algorithm's name "
        "with a properties record built from its class, group, state sizes i, j and k, "
        "equidistribution and flags, but one algorithm is filed under another's name.",
    ),
    (
        "rust",
        str(_RUST / "regex-syntax/regex-syntax-0.6.27/src/lib.rs"),
        "escape_into",
        "Quoting a string so that it matches literally inside a regex should put a backslash before "
        "every special character and append to the caller's existing String buffer, but the buffer "
        "is emptied first.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/lexical/math.rs"),
        "karatsuba_mul_fwd",
        "In serde_json's big-number float parsing, the divide-and-conquer product helper that takes "
        "the two limb slices in either order should hand the shorter one first to the recursive "
        "product, but it passes them as given.",
    ),
    (
        "rust",
        str(_RUST / "memchr/memchr-2.5.0/src/memchr/mod.rs"),
        "memchr2",
        "Looking for the first position holding either of two given bytes should return None "
        "straight away for an empty slice, without going into the SIMD code, and use the naive "
        "search under Miri.",
    ),
    (
        "rust",
        str(_RUST / "memchr/memchr-2.5.0/src/memchr/mod.rs"),
        "memchr3_iter",
        "Walking over every position where any one of three given bytes occurs in a haystack should "
        "give a lazy sequence of offsets, but the constructor gets the needles in the wrong order.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/commands/ls.js",
        "visit",
        "In npm ls, the problems of each dependency walked over (missing, invalid, extraneous) "
        "should be added to the global list only when that dependency is included in the output; "
        "problems of excluded ones are reported too.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/utils/display.js",
        "#clearSpinner",
        "When npm's progress animation is erased before a log line is printed, the cursor should go "
        "back to column 0 and the rest of the terminal row be wiped; the busy indicator's last frame "
        "is left on screen.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/utils/verify-signatures.js",
        "getEdgeType",
        "When verifying registry signatures, a dependency's kind (optional, peer, dev or a plain one) "
        "should be reported as the package.json field it comes from, but peer ones are labelled "
        "devDependencies.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/npm-package-arg/lib/npa.js",
        "npa",
        "Parsing a package specifier like @scope/pkg@1.2 or a user/repo shorthand: the leading @ of a "
        "scoped name must not be taken for the version separator, and a bare name without a version "
        "should default to *.",
    ),
    (
        "c",
        f"{_GGML}/ggml-cpu/quants.c",
        "ggml_vec_dot_iq1_s_q8_K_generic",
        "The portable scalar kernel for the 1.5-bit importance-quantized format against 8-bit "
        "activations: each 32-weight group's scale is 2·(3 bits)+1, and the high bit 0x8000 should "
        "flip the sign of the offset applied with the activations' block sums; the result is off.",
    ),
    (
        "c",
        f"{_GGML}/ggml-cpu/quants.c",
        "ggml_vec_dot_q2_K_q8_K_generic",
        "In the plain C fallback that multiplies 2-bit quantized super-blocks with 8-bit ones, the "
        "minimum correction (the high nibble of each scale times the sums of the activations) "
        "should be subtracted; the result is off on machines without AVX.",
    ),
    (
        "c",
        f"{_GGML}/ggml-cpu/quants.c",
        "ggml_vec_dot_iq2_s_q8_K_generic",
        "Scalar path for the 2.5-bit importance-quantized format: each group of eight weights has "
        "its own sign bits, the two 4-bit scales of a 32-weight sub-block are 1 + 2·nibble, and the "
        "final sum should be scaled by one eighth.",
    ),
    (
        "c",
        f"{_GGML}/ggml-alloc.c",
        "ggml_dyn_tallocr_remove_block",
        "In the graph allocator, taking one entry out of a chunk's list of free regions should shift "
        "the later entries one place to the left and decrement the count; the last region ends up "
        "listed twice.",
    ),
]


# A sixth blind set (split "hand6"), written in session 6's second round,
# after hand5 was measured and read, before the changes of that round; drawn
# the same way (bench/draw_hand_targets.py --set hand6 --per-language 4
# --languages python,go,java,rust,javascript,c), the first two of each
# language in drawing order, skipping generated tables (Python #2, #4).
# Taken: Python #1, 3; Go, Java, Rust, JavaScript and C #1-2.
HANDWRITTEN_6: list[tuple[str, str, str, str]] = [
    (
        "python",
        f"{_PY}/distutils/msvccompiler.py",
        "get_build_version",
        "distutils works out which Microsoft C compiler release built the running interpreter from "
        "the MSC v.1900 marker in the interpreter's banner string; release 13 never existed, so the "
        "number should jump to 14, and with no marker at all it should assume 6.",
    ),
    (
        "python",
        f"{_PY}/tokenize.py",
        "compat",
        "Turning a token stream back into source text when the tokens are only (type, string) pairs: "
        "two adjacent string literals are glued together, and after a dedent the next line gets the "
        "wrong indentation.",
    ),
    (
        "go",
        str(_GO / "net/http/transfer.go"),
        "mergeSetHeader",
        "When the trailing fields of a message arrive after the body, the incoming map should be "
        "copied key by key into the one already there, or simply taken over when there is none yet.",
    ),
    (
        "go",
        str(_GO / "bytes/buffer.go"),
        "UnreadRune",
        "Stepping back one UTF-8 character in a bytes.Buffer after a successful character read should "
        "move the offset back by that character's width; after any other operation it must fail "
        "with an error.",
    ),
    (
        "java",
        str(_JAVA / "net/URLClassLoader.java"),
        "defineClass",
        "Loading a type from a jar through the URL loader: before its bytes are turned into a type, "
        "its package should be declared from the jar's manifest (or with no attributes), and a race "
        "with another thread declaring it at the same time must not fail.",
    ),
    (
        "java",
        str(_JAVA / "text/RuleBasedCollator.java"),
        "clone",
        "Copying an instance of a RuleBasedCollator subclass: the copy shares the iteration state "
        "(the cursors and the primary, secondary and tertiary results) with the original instead of "
        "resetting it; for the exact type a copy constructor should be used.",
    ),
    (
        "rust",
        str(_RUST / "clap/clap-4.0.32/src/error/mod.rs"),
        "unrecognized_subcommand",
        "When a user types a nested command that does not exist, the error should carry the mistyped "
        "name and the usage line as context, but the usage is missing from the message.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/lexical/math.rs"),
        "long_mul",
        "The schoolbook big-integer product in serde_json's float parsing should add each partial "
        "product of the first number with one limb of the second, shifted by its position, then drop "
        "the leading zero limbs; the result is wrong when the second has more than one limb.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/utils/verify-signatures.js",
        "buildRegistryConfig",
        "When verifying package signatures, the keys fetched for a custom package server should be "
        "stored under the //host/path:_keys setting for that server, but the path part of its address "
        "is left out.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/utils/display.js",
        "#renderFrame",
        "The terminal progress animation should advance to the next character of its sequence at "
        "each tick and wrap around after the last one; when resuming it must not erase the line first.",
    ),
    (
        "c",
        f"{_GGML}/ggml-cpu/quants.c",
        "ggml_vec_dot_q8_0_q8_0_generic",
        "The plain C fallback for the inner product of two rows of 8-bit quantized blocks (32 weights "
        "and one half-float scale each) should multiply each block's integer sum by both scales; the "
        "result is off.",
    ),
    (
        "c",
        f"{_GGML}/ggml-cpu/quants.c",
        "ggml_vec_dot_q4_1_q8_1_generic",
        "The scalar path for 4-bit blocks that carry a minimum (a scale and an offset per block) "
        "against 8-bit blocks with precomputed sums: the low nibbles pair with the first half of the "
        "activations, the high nibbles with the second half, and the offset times the sum is added.",
    ),
]


# A seventh blind set (split "hand7"), written in session 7 before any ranking
# change of that session, after hand..hand6 had all become tuning sets; drawn
# the same way (bench/draw_hand_targets.py --set hand7 --per-language 8
# --languages python,go,java,rust,javascript,c), the first four of each
# language in drawing order; nothing skipped (no generated table or test
# among them). Taken: Python, Go, Java, Rust, JavaScript and C #1-4.
HANDWRITTEN_7: list[tuple[str, str, str, str]] = [
    (
        "python",
        f"{_PY}/unittest/mock.py",
        "assert_awaited_once_with",
        "In unittest.mock, checking that an AsyncMock's coroutine ran exactly one time and got "
        "particular arguments passes even when it was scheduled and ran twice; it should fail and "
        "say how many times it actually ran.",
    ),
    (
        "python",
        f"{_PY}/email/_parseaddr.py",
        "parsedate",
        "Converting the timestamp of an email header into a 9-item tuple for time.mktime gives a "
        "tenth item, the offset from UTC, which the longer variant returns; when the text is "
        "invalid the None should come back unchanged.",
    ),
    (
        "python",
        f"{_PY}/distutils/filelist.py",
        "_find_all_simple",
        "distutils' manifest building: walking a directory to collect every regular file beneath it "
        "should follow symbolic links to directories and leave out entries that are not plain "
        "files, such as sockets or broken links.",
    ),
    (
        "python",
        f"{_PY}/logging/__init__.py",
        "_releaseLock",
        "logging: giving back the module-wide mutex that was taken before the handler lists were "
        "changed should do nothing when threading support is missing and the mutex is None.",
    ),
    (
        "go",
        str(_GO / "archive/tar/writer.go"),
        "Close",
        "Finishing a tar archive: the writer should flush the padding of the last entry, then write "
        "the two zero records of the trailer; doing it a second time must return nil, and every "
        "write afterwards must fail.",
    ),
    (
        "go",
        str(_GO / "bufio/bufio.go"),
        "ReadRune",
        "bufio: decoding one UTF-8 character from the buffered input returns U+FFFD with width 1 "
        "when a multi-byte character straddles the end of the buffered data; the buffer should be "
        "filled first until a full encoding is there.",
    ),
    (
        "go",
        str(_GO / "regexp/exec.go"),
        "newOnePassMachine",
        "regexp: the state of the backtrack-free matcher should be reused from its sync.Pool rather "
        "than allocated for each match, with a fresh zeroed value only when the pool is empty.",
    ),
    (
        "go",
        str(_GO / "net/http/fs.go"),
        "Seek",
        "http.FS: moving the offset of a file served from an fs.FS (for Range requests) should "
        "return an error saying the file cannot be repositioned when its type does not support "
        "it, and otherwise hand the call to the file.",
    ),
    (
        "java",
        str(_JAVA / "util/Currency.java"),
        "computeAllCurrencies",
        "The set of available money codes built from the country table: for a country with a "
        "special case (a cutover date) the old code should be listed before the cutover time and "
        "the new one after it; countries without legal tender are skipped, and the codes of the "
        "extra list appended.",
    ),
    (
        "java",
        str(_JAVA / "text/ChoiceFormat.java"),
        "stringToNum",
        "ChoiceFormat patterns: a limit written as the infinity sign, or as minus that sign, "
        "should be read as positive or negative infinity, and as a double otherwise; today the ∞ "
        "sign makes parseDouble throw.",
    ),
    (
        "java",
        str(_JAVA / "util/concurrent/locks/ReentrantReadWriteLock.java"),
        "tryReadLock",
        "In the reentrant shared/exclusive synchronizer, the non-blocking attempt to acquire the "
        "shared side should fail at once when another thread holds the exclusive side, throw an "
        "Error past the maximum hold count, and keep the per-thread hold counts (the first holder, "
        "the cached counter) right.",
    ),
    (
        "java",
        str(_JAVA / "io/Console.java"),
        "instantiateConsole",
        "The terminal implementation chosen by a system property (by module name) should be loaded "
        "through ServiceLoader; when none matches or loading fails, fall back to the built-in one, "
        "but only when both stdin and stdout are terminals.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/error.rs"),
        "fix_position",
        "serde_json: an error raised without line and column information should be rebuilt from "
        "its code by the given closure so that it gets the place in the input; an error that "
        "already carries a line must be returned unchanged.",
    ),
    (
        "rust",
        str(_RUST / "clap/clap-4.0.32/src/error/mod.rs"),
        "too_few_values",
        "clap: the error for an option that received less than its minimum count of arguments "
        "should carry the argument, the minimum and the actual count, and the usage line as "
        "context.",
    ),
    (
        "rust",
        str(_RUST / "memchr/memchr-2.5.0/src/memchr/x86/sse2.rs"),
        "reverse_search1",
        "memchr's SSE2 backward scan for one needle byte: comparing a 16-byte block should give the "
        "index of the last matching byte in it, counted from the start of the haystack, or None "
        "when no lane matches.",
    ),
    (
        "rust",
        str(_RUST / "clap/clap-4.0.32/src/error/format.rs"),
        "escape",
        "clap's error messages should wrap a user's input in quotes (Debug formatting) when it "
        "contains whitespace, and show it as it is otherwise.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/utils/allow-scripts-cmd.js",
        "runMode",
        "The shared entry point of the allow-scripts and deny-scripts commands: on a global install "
        "it should throw EGLOBAL, listing pending packages cannot be combined with positional "
        "arguments or --all, and with no arguments it should print the usage.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/commands/ls.js",
        "getChildren",
        "npm ls: the dependencies listed under a package should stop at the --depth limit "
        "(workspaces count as depth 0), include the extraneous ones, and be sorted alphabetically.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/utils/verify-signatures.js",
        "constructor",
        "npm audit signatures: the verifier object should be set up with empty lists of invalid and "
        "missing packages, an empty key map and zero counts of verified signatures and "
        "attestations, and exit code 0.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/commands/ls.js",
        "initTree",
        "npm ls --package-lock-only should load the dependency graph from the lockfile rather than "
        "node_modules; the root is marked as included only when no package names were given, at "
        "depth 0.",
    ),
    (
        "c",
        f"{_GGML}/ggml-alloc.c",
        "ggml_gallocr_reserve_n_size",
        "The graph allocator: asking how many bytes each backend buffer would need for a graph, "
        "without allocating anything, should add up the largest extent of every memory region of "
        "each buffer; the figures reported are too small.",
    ),
    (
        "c",
        f"{_GGML}/ggml-cpu/quants.c",
        "ggml_vec_dot_iq1_m_q8_K_generic",
        "The plain C fallback of the inner product for the medium 1-bit importance quantization "
        "(1.75 bits per weight) against 8-bit super-blocks: the sign of each group's shift comes "
        "from the high bits, and the two 3-bit scales of each half are applied; the sum is wrong.",
    ),
    (
        "c",
        f"{_GGML}/ggml-alloc.c",
        "ggml_dyn_tallocr_new_chunk",
        "The tensor allocator should add another memory region (up to the maximum count) whose "
        "single free range covers at least the requested amount; the last permitted region gets an "
        "effectively unlimited free range so that a graph always fits.",
    ),
    (
        "c",
        f"{_GGML}/ggml-alloc.c",
        "ggml_dyn_tallocr_insert_block",
        "When a tensor's memory is given back, the freed range should be added to the free list "
        "kept sorted by offset, shifting the later entries up, so that neighbouring free ranges "
        "can be merged; an assert fires when the list is full.",
    ),
]


# An eighth blind set (split "hand8"), written in session 9 before any ranking
# change of that session, after hand..hand7 had all become tuning sets; drawn
# the same way (bench/draw_hand_targets.py --set hand8 --per-language 8
# --languages python,go,java,rust,javascript,c), the first four of each
# language in drawing order, skipping a generated table (Python #2,
# encodings/iso8859_4.py) and a test helper (Rust #1, run_all_tests_filter).
# Taken: Python #1, 3-5; Go, Java #1-4; Rust #2-5; JavaScript and C #1-4.
HANDWRITTEN_8: list[tuple[str, str, str, str]] = [
    (
        "python",
        f"{_PY}/pickle.py",
        "load_next_buffer",
        "Unpickling data stored out of band should take one object at a time from the iterable "
        "given to the Unpickler, and raise UnpicklingError, not StopIteration, when that iterable "
        "is exhausted or was never passed.",
    ),
    (
        "python",
        f"{_PY}/multiprocessing/forkserver.py",
        "read_signed",
        "multiprocessing's fork server: getting a packed integer from a file descriptor should keep "
        "going until all of its bytes have come in, and raise EOFError when the other end closes "
        "halfway.",
    ),
    (
        "python",
        f"{_PY}/tokenize.py",
        "exact_type",
        "tokenize: for an operator token the property should give the specific kind from the "
        "operator table (LPAR for '(') instead of the generic OP; every other token keeps its own "
        "kind.",
    ),
    (
        "python",
        f"{_PY}/ntpath.py",
        "relpath",
        "ntpath: expressing a Windows filename as seen from a start directory (one '..' per level "
        "up) should raise ValueError when the two are on different drives, and compare the "
        "components without regard to case.",
    ),
    (
        "go",
        str(_GO / "net/http/client.go"),
        "defaultCheckRedirect",
        "net/http: when no policy is set, a Client that keeps getting 3xx responses with a "
        "Location should give up with an error after ten hops; it follows them forever.",
    ),
    (
        "go",
        str(_GO / "bufio/bufio.go"),
        "WriteRune",
        "bufio: putting one Unicode code point into the buffered output should emit a single byte "
        "for ASCII, flush first when fewer than four bytes of room are left, and treat negative "
        "code points as invalid rather than as ASCII.",
    ),
    (
        "go",
        str(_GO / "net/http/client.go"),
        "deadline",
        "net/http: the Client's Timeout should become an absolute time (now plus the timeout) for "
        "each request, and the zero time when no timeout is set.",
    ),
    (
        "go",
        str(_GO / "archive/tar/reader.go"),
        "tryReadFull",
        "archive/tar: filling a byte slice from a stream should loop until the slice is complete "
        "or an error comes back, and count io.EOF as success when every byte arrived.",
    ),
    (
        "java",
        str(_JAVA / "util/concurrent/atomic/AtomicLongFieldUpdater.java"),
        "updateAndGet",
        "The reflection-based atomic helper for long fields: applying a LongUnaryOperator to the "
        "field's current number should retry its CAS until it wins, then return the result, not "
        "the old number.",
    ),
    (
        "java",
        str(_JAVA / "text/CollationElementIterator.java"),
        "reset",
        "CollationElementIterator: rewinding to the beginning of the text should also re-apply "
        "the collator's decomposition mode and clear the expansion state and the swapped order.",
    ),
    (
        "java",
        str(_JAVA / "util/ReverseOrderSortedMapView.java"),
        "values",
        "A reversed view of a SortedMap: the collection of its mapped objects should iterate in "
        "descending order, and size, clear, contains and remove should go to the underlying map.",
    ),
    (
        "java",
        str(_JAVA / "util/stream/ForEachOps.java"),
        "onCompletion",
        "Ordered forEach on a parallel stream: when a leaf task finishes it should dump its "
        "buffered elements (or its spliterator's) into the action, then release the left-most "
        "leaf of the following subtree, so that the encounter order is kept.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/value/de.rs"),
        "visit_object_ref",
        "serde_json: handing a borrowed JSON map to a deserialization callback should report an "
        "invalid length error when entries are left unconsumed afterwards.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/de.rs"),
        "deserialize_string",
        "serde_json: a request for an owned text from the JSON reader should simply be forwarded "
        "to the borrowed-text path.",
    ),
    (
        "rust",
        str(_RUST / "clap/clap-4.0.32/src/error/format.rs"),
        "try_help",
        "clap: the closing line of an error message that points the user at the usage flag should "
        "be added only when such a flag exists; otherwise the message just ends with a newline.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/value/ser.rs"),
        "serialize_value",
        "serde_json's in-memory map builder: storing the item that belongs to the pending key "
        "should take that key, insert the converted item into the map, and panic when no key was "
        "given before it.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/node-gyp/lib/find-visualstudio.js",
        "findVisualStudio2017UsingSetupModule",
        "node-gyp: on Node.js 22 and later, looking for the version 15 Microsoft C++ build tools "
        "through the COM configuration API should be skipped with a log line, as that toolchain "
        "is supported only up to Node 21.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/npm-package-arg/lib/npa.js",
        "setName",
        "npm-package-arg: assigning the package's identifier should validate it and throw for an "
        "invalid one, derive the scope from a leading @, and escape the slash of a scoped package "
        "as %2f.",
    ),
    (
        "javascript",
        f"{_NPM}/lib/utils/display.js",
        "#writeOutput",
        "npm's display: messages at the standard level should go to stdout and those at the error "
        "level to stderr; any other level is ignored.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/pacote/lib/registry.js",
        "packument",
        "pacote: fetching a package's metadata document from the registry should share one "
        "in-flight request through the cache, drop the cache entry on an error, and retry with "
        "full metadata when the abbreviated (corgi) document gives a 404.",
    ),
    (
        "c",
        f"{_GGML}/ggml-alloc.c",
        "ggml_gallocr_node_needs_realloc",
        "When a graph is allocated again, each tensor's recorded assignment should be checked "
        "against its current size: it is still good when the maximum size recorded is at least "
        "what the buffer type asks for now, and not good when it had no buffer at all.",
    ),
    (
        "c",
        f"{_GGML}/ggml-alloc.c",
        "ggml_gallocr_get_buffer_size",
        "The graph allocator's report of how many bytes a backend's memory takes should be 0 for "
        "one never created, and count memory shared by several backend types only at its first "
        "index, not twice.",
    ),
    (
        "c",
        f"{_GGML}/ggml-alloc.c",
        "alloc_tensor_range",
        "ggml: giving a span of a context's weight arrays their memory makes a new backend block, "
        "appends it to the list and places every array without data in it (views are initialised "
        "instead); on any failure all blocks made so far must be freed and false returned.",
    ),
    (
        "c",
        f"{_GGML}/ggml-cpu/quants.c",
        "ggml_vec_dot_iq2_xxs_q8_K_generic",
        "The plain C fallback of the inner product for the extra-extra-small 2-bit importance "
        "quantization (2.06 bits per weight) against 8-bit super-blocks: the 4-bit scale in the "
        "top bits of the second word is applied as 2s+1 and the total multiplied by 1/8; the sum "
        "is wrong.",
    ),
]


# A ninth blind set (split "hand9"), written in session 10 before any ranking
# change of that session, after hand..hand8 had all become tuning sets; drawn
# the same way (bench/draw_hand_targets.py --set hand9 --per-language 8
# --languages python,go,java,rust,javascript,c), the first four of each
# language in drawing order, skipping generated tables (Python #2, #3, #5:
# encodings/cp737.py, cp866.py, mac_romanian.py) and tests (Rust #3
# test_from, #5 regression_rev_small_period).
# Taken: Python #1, #4, #6, #7; Go, Java, JavaScript and C #1-4; Rust #1, #2, #4, #6.
HANDWRITTEN_9: list[tuple[str, str, str, str]] = [
    (
        "python",
        f"{_PY}/uuid.py",
        "_random_getnode",
        "uuid: when no hardware address can be found, the fallback 48-bit ID should be drawn by "
        "chance and have the multicast bit (1 << 40) set, so that it can never clash with the MAC "
        "of a real network card.",
    ),
    (
        "python",
        f"{_PY}/logging/__init__.py",
        "set_name",
        "logging: giving a handler a different label should drop its old entry from the "
        "module-wide table of handlers, under the module lock, and record it under the new label "
        "only when that label is non-empty.",
    ),
    (
        "python",
        f"{_PY}/pdb.py",
        "user_exception",
        "pdb: when the debugged program raises, the debugger should print the error's type and "
        "message (prefixed with 'Internal ' for a StopIteration that has no traceback) and then "
        "enter the interactive prompt, but stay quiet while it is still waiting for the main "
        "script to start.",
    ),
    (
        "python",
        f"{_PY}/venv/__init__.py",
        "create_configuration",
        "venv: the pyvenv.cfg written into a new environment should record home, "
        "include-system-site-packages, the version, the prompt and the executable, plus the "
        "command line that reproduces it with the same flags (--symlinks, --copies, --without-pip "
        "and so on).",
    ),
    (
        "go",
        str(_GO / "bufio/bufio.go"),
        "collectFragments",
        "bufio: reading up to a delimiter that lies beyond the buffer should keep copying each full "
        "buffer into a list, add up the total length, and stop at the last piece or on any error "
        "other than a full buffer.",
    ),
    (
        "go",
        str(_GO / "regexp/onepass.go"),
        "onePassCopy",
        "regexp: duplicating a compiled program for the single-scan matcher should also rewrite "
        "alternations whose branch points back at another alternation (A:BC + B:DA becomes A:BC + "
        "B:DC), so that more patterns qualify; when both legs point at alternations nothing is "
        "changed.",
    ),
    (
        "go",
        str(_GO / "archive/tar/writer.go"),
        "writeRawHeader",
        "archive/tar: emitting the 512-byte block of an entry should flush the previous entry's "
        "padding first, and for links, directories and other types without content the size of "
        "the data that follows is zero.",
    ),
    (
        "go",
        str(_GO / "text/template/funcs.go"),
        "call",
        "text/template: invoking a function value from a template should reject nil and "
        "non-functions, check the argument count (at least n-1 for variadic ones), convert each "
        "argument to the parameter's type, and say which argument failed.",
    ),
    (
        "java",
        str(_JAVA / "util/concurrent/SynchronousQueue.java"),
        "take",
        "SynchronousQueue: a consumer waiting for an element should block until a producer hands "
        "one over, and throw InterruptedException when the thread was interrupted before or while "
        "it waited.",
    ),
    (
        "java",
        str(_JAVA / "util/stream/ForEachOps.java"),
        "evaluateParallel",
        "Stream forEach on several threads: the terminal operation should run the ordered task "
        "when the encounter order must be respected, and the plain task with the wrapped sink "
        "otherwise.",
    ),
    (
        "java",
        str(_JAVA / "util/concurrent/atomic/AtomicReference.java"),
        "getAndAccumulate",
        "AtomicReference: combining the current object with a given one through a binary function "
        "should keep retrying its compare-set loop, re-apply the function only if another thread "
        "changed the field in between, then return the previous object, not the new one.",
    ),
    (
        "java",
        str(_JAVA / "net/InetSocketAddress.java"),
        "readObjectNoData",
        "InetSocketAddress: when a serialized stream doesn't carry this class's fields at all, "
        "deserialization should be refused with an error instead of leaving an unset socket "
        "address.",
    ),
    (
        "rust",
        str(_RUST / "clap/clap-4.0.32/src/builder/value_parser.rs"),
        "map",
        "clap: turning a typed parser's parsed result into another type with a closure should wrap "
        "the parser in an adapter that applies the function after parsing.",
    ),
    (
        "rust",
        str(_RUST / "memchr/memchr-2.5.0/src/memchr/mod.rs"),
        "memchr",
        "Finding the first position of a single byte in a slice should return None for an empty "
        "slice and otherwise dispatch to the SIMD, libc or portable fallback version chosen at "
        "build time (the naive one under Miri).",
    ),
    (
        "rust",
        str(_RUST / "regex-syntax/regex-syntax-0.6.27/src/lib.rs"),
        "is_meta_character",
        "regex-syntax: deciding whether a symbol has a special meaning in a pattern, so that it "
        "must be escaped, should say yes for backslash, dot, plus, star, question mark, "
        "parentheses, pipe, brackets, braces, caret, dollar, hash, ampersand, dash and tilde, and "
        "no for everything else.",
    ),
    (
        "rust",
        str(_RUST / "serde-json/serde_json-1.0.87/src/number.rs"),
        "visit_map",
        "serde_json: deserializing an arbitrary-precision Number from the private single-key "
        "object it is encoded as should fail with an invalid type error when the object has no "
        "key, and otherwise read the number from the string entry.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/nopt/lib/nopt-lib.js",
        "validate",
        "nopt: checking a parsed option against its declared type should accept any of a list of "
        "types, drop the key from the parsed data on NaN or when no type definition accepts it, "
        "and keep the converted result of the first definition that does.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/node-gyp/lib/install.js",
        "isValid",
        "node-gyp install: each path coming out of the headers tarball should be counted and "
        "logged verbosely when the filter lets it through, and logged at silly level as ignored "
        "otherwise.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/pacote/lib/fetcher.js",
        "#toFile",
        "pacote: saving the tarball stream at a destination path should pipe it into a write "
        "stream, reject on an error from either side, and resolve with integrity, resolved and "
        "from once the stream closes.",
    ),
    (
        "javascript",
        f"{_NPM}/node_modules/ssri/lib/index.js",
        "pickAlgorithm",
        "ssri: choosing which hash of an integrity object to check should consider only the ones "
        "in the given list when there is one, take the strongest by the caller's chooser or the "
        "default priority, and give null when none are in common.",
    ),
    (
        "c",
        f"{_GGML}/ggml-cpu/quants.c",
        "ggml_vec_dot_iq3_xxs_q8_K_generic",
        "The portable C fallback of the inner product of 3-bit importance-quantized weights (the "
        "extra-extra-small kind, 3.06 bits per weight) with 8-bit super-blocks: each group's scale "
        "is the top four bits of its packed word, applied as 2s+1, the signs come from the sign "
        "table, and the total is multiplied by 0.25.",
    ),
    (
        "c",
        f"{_GGML}/ggml-cpu/quants.c",
        "ggml_vec_dot_iq4_nl_q8_0_generic",
        "The plain C fallback multiplying and summing 4-bit non-linear quantized weights (blocks "
        "of 32 with a lookup table of 16 levels) with 8-bit blocks of the same size: the low "
        "nibble of each byte pairs with the first half and the high nibble with the second half.",
    ),
    (
        "c",
        f"{_GGML}/ggml-alloc.c",
        "ggml_vbuffer_alloc",
        "Getting the real backend memory behind the graph planner's chunks should request one "
        "block per chunk at that chunk's largest recorded size, tag each with the usage, and on "
        "any failure release what was already obtained and return NULL.",
    ),
    (
        "c",
        f"{_GGML}/ggml-cpu/quants.c",
        "ggml_vec_dot_iq4_xs_q8_K_generic",
        "The reference C routine multiplying 4-bit importance-quantized weights in the extra-small "
        "super-block layout (a 6-bit scale per 32 weights, its low four bits from one array and "
        "the high two from a 16-bit word) by 8-bit activations: each scale is offset by -32 "
        "before use.",
    ),
]


def handwritten_cases(
    rng: random.Random,
    described: Sequence[tuple[str, str, str, str]] = HANDWRITTEN,
    split: str = "hand",
) -> list[dict]:
    """The hand-described cases whose source is on this machine (a missing one is said on stderr)."""
    cases = []
    for language, path, name, question in described:
        if not os.path.exists(path):
            print(f"{split}: {path} not found, {name} left out", file=sys.stderr)
            continue
        code = Path(path).read_text("utf-8", "replace").strip("\n")
        texts = [t for n, t in _all_targets(code, language) if n == name and t in code]
        if not texts:
            print(f"{split}: {name} not found in {path}", file=sys.stderr)
            continue
        layout = rng.choice(["before", "after", "fenced_before", "fenced_after"])
        cases.append(
            {
                "class": "described",
                "language": language,
                "file": path,
                "target": name,
                "target_text": texts[0],
                "must_keep": [],
                "layout": layout,
                "split": split,
                "text": _layout(code, question, layout, _fence_tag(language)),
                "question": question,
            }
        )
    return cases


def _report(
    language: str,
    path: str,
    code: str,
    name: str,
    target: str,
    caller: tuple[str, str] | None,
    rng: random.Random,
) -> str:
    """An error report of ``language``'s kind whose innermost frame is ``name``."""
    first, last = _lines_of(code, target)
    line = rng.randint(first + 1, max(first + 1, last - 1))
    source = code.split("\n")[line - 1].strip()
    cline = _lines_of(code, caller[1])[0] + 2 if caller else 1
    file = Path(path).name
    if language == "python":
        raised = re.search(r"raise (\w+)\((.{0,60})", target)
        error = (
            f"{raised.group(1)}: {raised.group(2).strip(chr(39) + chr(34) + ')')}".rstrip()
            if raised
            else "TypeError: unsupported operand type(s) for +: 'int' and 'NoneType'"
        )
        frames = ['  File "/home/me/app/main.py", line 42, in <module>', "    run()"]
        if caller:
            frames += [f'  File "{path}", line {cline}, in {caller[0]}', f"    {caller[0]}(...)"]
        frames += [f'  File "{path}", line {line}, in {name}', f"    {source}"]
        return "Traceback (most recent call last):\n" + "\n".join(frames) + f"\n{error}"
    if language == "go":
        pkg = Path(path).parent.name
        out = [
            "panic: runtime error: index out of range [5] with length 5",
            "",
            "goroutine 1 [running]:",
            f"{pkg}.{name}(0xc000012345, 0x5)",
            f"\t{path}:{line} +0x1d",
        ]
        if caller:
            out += [f"{pkg}.{caller[0]}(...)", f"\t{path}:{cline} +0x8c"]
        return "\n".join(out + ["main.main()", "\t/home/me/app/main.go:12 +0x25", "exit status 2"])
    if language == "rust":
        crate = re.search(r"/(\w[\w-]*)-\d+\.\d+", path)
        krate = (crate.group(1) if crate else "app").replace("-", "_")
        module = Path(path).stem
        rel = path.split("/src/", 1)[-1]
        head = [
            f"thread 'main' panicked at src/{rel}:{line}:9:",
            "called `Option::unwrap()` on a `None` value",
        ]
        if rng.random() < 0.5:
            return "\n".join(
                head
                + ["note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"]
            )
        trace = [
            "stack backtrace:",
            "   0: rust_begin_unwind",
            "   1: core::panicking::panic_fmt",
            "   2: core::panicking::panic",
            f"   3: {krate}::{module}::{name}",
            f"             at ./src/{rel}:{line}:9",
        ]
        if caller:
            trace += [
                f"   4: {krate}::{module}::{caller[0]}",
                f"             at ./src/{rel}:{cline}:17",
            ]
        return "\n".join(head + trace)
    if language == "java":
        cls = Path(path).stem
        pkg = ".".join(Path(path).parent.parts[-2:])
        out = [
            'Exception in thread "main" java.lang.IllegalStateException: unexpected state',
            f"\tat {pkg}.{cls}.{name}({file}:{line})",
        ]
        if caller:
            out.append(f"\tat {pkg}.{cls}.{caller[0]}({file}:{cline})")
        return "\n".join(out + ["\tat com.example.Main.main(Main.java:12)"])
    # C: a compiler error inside the function.
    return (
        f"{file}: In function '{name}':\n{file}:{line}:9: error: 'ctx' undeclared (first use in this function)\n"
        f"  {line} |     {source}\n      |         ^~~"
    )


def _fence_tag(language: str) -> str:
    return {"shell": "bash"}.get(language, language)


def eligible_targets(found: list[tuple[str, str]], code: str) -> list[tuple[str, str]]:
    """Of a file's definitions (``_all_targets``), those a case may target: named once,
    neither tiny nor huge, not dunder."""
    names = [n for n, _ in found]
    return [
        (n, t)
        for n, t in found
        if names.count(n) == 1
        and len(t) <= MAX_TARGET_CHARS
        and t.count("\n") + 1 >= MIN_TARGET_LINES
        and t in code
        and not n.startswith("__")
    ]


def build_class_case(kind: str, language: str, path: str, rng: random.Random) -> dict | None:
    code = Path(path).read_text("utf-8", "replace").strip("\n")
    found = _all_targets(code, language)
    names = [n for n, _ in found]
    good = eligible_targets(found, code)
    if kind == "parsing":
        common = [(n, t) for n, t in good if n in _COMMON_WORDS]
        good = common if common and rng.random() < 0.5 else good
    if not good:
        return None
    name, target = rng.choice(good)
    tag = _fence_tag(language)
    case: dict = {
        "class": kind,
        "language": language,
        "file": path,
        "target": name,
        "target_text": target,
        "must_keep": [],
    }
    if kind == "described":
        instruction = _description(name, target, language, rng, code)
        if instruction is None:
            return None
        layout = rng.choice(["before", "after", "fenced_before", "fenced_after"])
        case.update(
            layout=layout, text=_layout(code, instruction, layout, tag), question=instruction
        )
    elif kind == "report":
        caller = next(iter(_callers(found, name)), None)
        report = _report(language, path, code, name, target, caller, rng)
        question = rng.choice(
            ["This crashes, why?", "What's wrong here? I get this:", "Fix this error:"]
        )
        layout = rng.choice(["unfenced_after", "own_fence", "same_fence", "report_first"])
        if layout == "unfenced_after":
            text = f"{code}\n\n{question}\n{report}"
        elif layout == "own_fence":
            text = f"{question}\n\n```{tag}\n{code}\n```\n\n```\n{report}\n```"
        elif layout == "same_fence":
            text = f"{question}\n\n```{tag}\n{code}\n\n{report}\n```"
        else:
            text = f"{question}\n{report}\n\n{code}"
        case.update(layout=layout, text=text, question=question, must_keep=[report])
    elif kind == "conversation":
        caller = next(iter(_callers(found, name)), None)
        report = (
            _report(language, path, code, name, target, caller, rng) if rng.random() < 0.7 else ""
        )
        ask = f"Thanks. Now calling `{name}` fails" + (
            f" with this:\n{report}\n" if report else " on empty input. "
        )
        question = ask + "What's wrong?"
        answer = (
            "Thanks, I have read the file. It defines "
            + ", ".join(f"`{n}`" for n in names[:12])
            + ". "
            + "Each part keeps its own state and reports errors to its caller. " * 6
        ).strip()
        messages = [
            {"role": "system", "content": "You are a careful senior engineer. Answer briefly."},
            {
                "role": "user",
                "content": f"Here is {Path(path).name} from my project:\n\n```{tag}\n{code}\n```",
            },
            {"role": "assistant", "content": answer},
            {"role": "user", "content": question},
        ]
        follow = [
            {"role": "assistant", "content": "The failure comes from an unchecked value. " * 14},
            {"role": "user", "content": "Thanks. How would I write a test for that?"},
        ]
        case.update(
            layout="chat_follow_up",
            messages=messages,
            next_messages=messages + follow,
            question=question,
            must_keep=[question],
        )
    else:
        layout = rng.choice(["backticks", "path_hint", "multi_file", "unfenced"])
        rel = "/".join(Path(path).parts[-3:])
        if layout == "backticks":
            question = f"Why does `{name}` misbehave here?"
            text = f"{question}\n\n```{tag}\n{code}\n```"
        elif layout == "path_hint":
            question = f"In {rel}, add error handling to `{name}`."
            text = f"{question}\n\n```{tag}\n{code}\n```"
        elif layout == "multi_file":
            others = [
                p
                for p in sorted(glob.glob(str(Path(path).parent / f"*{Path(path).suffix}")))
                if p != path and 3000 < os.path.getsize(p) < 30_000
            ][:2]
            files = [path, *others]
            rng.shuffle(files)
            style = rng.choice(["{p}:", "# file: {p}", "--- {p} ---", "`{p}`"])
            parts = []
            for file in files:
                body = Path(file).read_text("utf-8", "replace").strip("\n")
                header = style.format(p="/".join(Path(file).parts[-2:]))
                parts.append(
                    f"{header}\n```{tag}\n{body}\n```"
                    if rng.random() < 0.5
                    else f"{header}\n{body}"
                )
            question = f"Explain what `{name}` does."
            text = question + "\n\n" + "\n\n".join(parts)
        else:
            question = f"Refactor {name} to reduce nesting."
            text = f"{question}\n\n{code}"
        case.update(layout=layout, text=text, question=question)
    return case


def _layout(code: str, instruction: str, layout: str, tag: str) -> str:
    return {
        "before": f"{instruction}\n\n{code}",
        "after": f"{code}\n\n{instruction}",
        "fenced_before": f"{instruction}\n\n```{tag}\n{code}\n```",
        "fenced_after": f"```\n{code}\n```\n\n{instruction}",
    }[layout]


def _exact_fit(run: object, messages_or_text: object, allowed: int) -> tuple[object, int, int]:
    """What the orchestrator does with a backend that counts: count, shrink the context, again.

    Returns the final result, the real count before the refit and after.
    """
    shrink = 0
    result = run(CONTEXT)  # type: ignore[operator]
    first = count = _count(result)
    for _ in range(3):
        if count <= allowed:
            break
        shrink += count - allowed + 8
        result = run(CONTEXT - shrink)  # type: ignore[operator]
        count = _count(result)
    return result, first, count


def _count(result: object) -> int:
    if hasattr(result, "messages"):
        return real_tokens(chatml(result.messages))
    return real_tokens(chatml([{"role": "user", "content": result.text}]))  # type: ignore[attr-defined]


def run_classes(
    per_language: int, classes: Sequence[str] = CLASSES, split: str = "all", seed: int = 20251201
) -> list[dict]:
    rng = random.Random(seed)
    allowed = CONTEXT - REPLY
    cases: list[dict] = []
    generated: list[dict] = []
    for kind in classes:
        low, high = (7_000, 26_000) if kind == "conversation" else (MIN_FILE_CHARS, MAX_FILE_CHARS)
        for language in CLASS_SOURCES:
            made = 0
            for path in class_files(language, low, high, per_language * 4, split):
                if made >= per_language:
                    break
                case = build_class_case(kind, language, path, rng)
                if case is None:
                    continue
                made += 1
                case["split"] = split_of(path)
                generated.append(case)
    if "described" in classes and split in ("all", "hand"):
        generated += handwritten_cases(random.Random(seed + 1))
    if "described" in classes and split in ("all", "hand2"):
        generated += handwritten_cases(random.Random(seed + 2), HANDWRITTEN_2, "hand2")
    if "described" in classes and split in ("all", "hand3"):
        generated += handwritten_cases(random.Random(seed + 3), HANDWRITTEN_3, "hand3")
    if "described" in classes and split in ("all", "hand4"):
        generated += handwritten_cases(random.Random(seed + 4), HANDWRITTEN_4, "hand4")
    if "described" in classes and split in ("all", "hand5"):
        generated += handwritten_cases(random.Random(seed + 5), HANDWRITTEN_5, "hand5")
    if "described" in classes and split in ("all", "hand6"):
        generated += handwritten_cases(random.Random(seed + 6), HANDWRITTEN_6, "hand6")
    if "described" in classes and split in ("all", "hand7"):
        generated += handwritten_cases(random.Random(seed + 7), HANDWRITTEN_7, "hand7")
    if "described" in classes and split in ("all", "hand8"):
        generated += handwritten_cases(random.Random(seed + 8), HANDWRITTEN_8, "hand8")
    if "described" in classes and split in ("all", "hand9"):
        generated += handwritten_cases(random.Random(seed + 9), HANDWRITTEN_9, "hand9")
    for case in generated:
        started = time.perf_counter()
        if "messages" in case:

            def run(context: int, messages: list[dict] = case["messages"]) -> object:
                return optimize_messages(messages, context_tokens=context, max_tokens=REPLY)

            result, first, count = _exact_fit(run, case["messages"], allowed)
            output = "\n\n".join(_content(m) for m in result.messages)  # type: ignore[attr-defined]
            after, _, _ = _exact_fit(
                lambda c, m=case["next_messages"]: optimize_messages(
                    m, context_tokens=c, max_tokens=REPLY
                ),
                None,
                allowed,
            )
            this_turn = chatml(result.messages)[: -len("<|im_start|>assistant\n")]  # type: ignore[attr-defined]
            next_turn = chatml(after.messages)  # type: ignore[attr-defined]
            common = len(os.path.commonprefix([this_turn, next_turn]))
            case["prefix_share"] = common / len(this_turn)
            case["prefix_whole"] = next_turn.startswith(this_turn)
            original = sum(len(_content(m)) for m in case["messages"])
            language_seen = result.language  # type: ignore[attr-defined]
            flat_code = _content(case["messages"][1])
        else:

            def run_text(context: int, text: str = case["text"]) -> object:
                return optimize_text(text, context_tokens=context, max_tokens=REPLY)

            result, first, count = _exact_fit(run_text, case["text"], allowed)
            output = result.text  # type: ignore[attr-defined]
            original = len(case["text"])
            language_seen = result.language  # type: ignore[attr-defined]
            flat_code = case["text"]
        case["ms"] = (time.perf_counter() - started) * 1000
        size = len(output)
        question = case["question"]
        share = line_share(case["target_text"], output)
        case.update(
            share=share,
            whole=share >= 0.999,
            size=size,
            original=original,
            question_kept=question in output,
            reports_kept=all(r in output for r in case["must_keep"]),
            over_estimate_only=first > allowed,
            over=count > allowed,
            detected=language_seen,
            warnings=list(result.stats.warnings),  # type: ignore[attr-defined]
        )
        flat = f"{flat_code}\n\n{question}"
        for method, out in (
            ("seed@N", seed_optimize(flat, top_k=None, max_chars=size)),
            ("head@N", head_truncate(question, flat_code, size)),
        ):
            case[method] = line_share(case["target_text"], out) >= 0.999
        del case["target_text"]
        case.pop("text", None)
        case.pop("messages", None)
        case.pop("next_messages", None)
        cases.append(case)
    return cases


def summarize_classes(cases: list[dict]) -> str:
    def pct(items: list[dict], key: str) -> str:
        return f"{sum(bool(c[key]) for c in items) / len(items):.1%}" if items else "-"

    rows = [
        (
            "| class | cases | whole kept: optimiser | seed@N | head@N | question kept | report kept | "
            "over budget (estimate only → with /tokenize) | median reduction |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in (*CLASSES, "all"):
        items = [c for c in cases if kind in ("all", c["class"])]
        if not items:
            continue
        with_reports = [c for c in items if c["must_keep"]]
        rows.append(
            f"| {kind} | {len(items)} | {pct(items, 'whole')} | {pct(items, 'seed@N')} | {pct(items, 'head@N')} | "
            f"{pct(items, 'question_kept')} | {pct(with_reports, 'reports_kept')} | "
            f"{sum(c['over_estimate_only'] for c in items)} → {sum(c['over'] for c in items)} | "
            f"{statistics.median(1 - c['size'] / c['original'] for c in items):.1%} |"
        )
    rows += [
        "",
        "| class | " + " | ".join(CLASS_SOURCES) + " |",
        "|---|" + "---:|" * len(CLASS_SOURCES),
    ]
    for kind in CLASSES:
        cells = []
        for language in CLASS_SOURCES:
            items = [c for c in cases if c["class"] == kind and c["language"] == language]
            cells.append(f"{pct(items, 'whole')} ({len(items)})" if items else "-")
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    rows += [
        "",
        "| class | whole kept: dev files (tuned on) | held-out files | described by hand | by hand, 2nd set | 3rd set | 4th set | 5th set | 6th set |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in (*CLASSES, "all"):
        items = [c for c in cases if kind in ("all", c["class"])]
        if items:
            dev = [c for c in items if c["split"] == "dev"]
            held = [c for c in items if c["split"] == "held"]
            hand = [c for c in items if c["split"] == "hand"]
            hand2 = [c for c in items if c["split"] == "hand2"]
            hand3 = [c for c in items if c["split"] == "hand3"]
            hand4 = [c for c in items if c["split"] == "hand4"]
            hand5 = [c for c in items if c["split"] == "hand5"]
            hand6 = [c for c in items if c["split"] == "hand6"]
            rows.append(
                f"| {kind} | {pct(dev, 'whole')} ({len(dev)}) | {pct(held, 'whole')} ({len(held)}) | "
                f"{pct(hand, 'whole')} ({len(hand)}) | {pct(hand2, 'whole')} ({len(hand2)}) | "
                f"{pct(hand3, 'whole')} ({len(hand3)}) | {pct(hand4, 'whole')} ({len(hand4)}) | "
                f"{pct(hand5, 'whole')} ({len(hand5)}) | {pct(hand6, 'whole')} ({len(hand6)}) |"
            )
    talks = [c for c in cases if "prefix_share" in c]
    if talks:
        rows += [
            "",
            (
                f"conversations: turn 2's prompt a byte prefix of turn 3's in "
                f"{sum(c['prefix_whole'] for c in talks) / len(talks):.1%} of cases; mean share of turn 2 "
                f"that is a prefix of turn 3: {statistics.mean(c['prefix_share'] for c in talks):.1%}"
            ),
        ]
    parsing = [c for c in cases if c["class"] == "parsing"]
    wrong = [c for c in parsing if c["layout"] == "unfenced" and c["detected"] != c["language"]]
    rows.append(
        f"unfenced pastes detected as another language: {len(wrong)} of "
        f"{sum(c['layout'] == 'unfenced' for c in parsing)}"
    )
    rows.append(
        f"optimiser time per case: median {statistics.median(c['ms'] for c in cases):.0f} ms (with refits)"
    )
    for case in [c for c in cases if not (c["whole"] and c["question_kept"] and c["reports_kept"])][
        :40
    ]:
        rows.append(
            f"  miss ({case['split']}): {case['class']} {case['language']} {case['layout']} {Path(case['file']).name}:"
            f"{case['target']} share={case['share']:.0%} question={case['question_kept']} "
            f"report={case['reports_kept']} {case['warnings'][:1]}"
        )
    return "\n".join(rows)


# --- language detection on whole unfenced files (issue #14 item 4) ----------

LANGUAGE_SOURCES: dict[str, list[str]] = {
    **CLASS_SOURCES,
    "c": [
        *CLASS_SOURCES["c"],
        "/usr/share/doc/*/examples/*.c",
        f"{_LLAMA}/ggml/src/ggml-et/et-kernels/src/*.c",
        f"{_LLAMA}/ggml/src/ggml-hexagon/htp/*.c",
        str(SITE / "mypyc" / "lib-rt" / "*.c"),
    ],
    "cpp": [
        f"{_LLAMA}/src/*.cpp",
        f"{_LLAMA}/common/*.cpp",
        f"{_LLAMA}/ggml/src/ggml-cpu/*.cpp",
        f"{_LLAMA}/tools/*/*.cpp",
    ],
    "typescript": [f"{_LLAMA}/tools/ui/src/lib/**/*.ts"],
}


def run_languages(per_language: int) -> dict[str, dict[str, dict[str, int]]]:
    """Unfenced whole files (3-200 KB) per language: how often detection is right, per split."""
    from cerebrum.prompt.language import detect_language

    tally: dict[str, dict[str, dict[str, int]]] = {}
    for language, patterns in LANGUAGE_SOURCES.items():
        files = sorted(
            {
                f
                for pattern in patterns
                for f in glob.glob(pattern, recursive=True)
                if 3000 < os.path.getsize(f) < 200_000 and not f.endswith(".d.ts")
            }
        )
        random.Random(f"languages-{language}").shuffle(files)
        for split in ("dev", "held"):
            chosen = [f for f in files if split_of(f) == split][:per_language]
            got: dict[str, int] = defaultdict(int)
            for path in chosen:
                got[detect_language(Path(path).read_text("utf-8", "replace").strip("\n"))] += 1
            tally.setdefault(language, {})[split] = dict(got)
    return tally


def summarize_languages(tally: dict[str, dict[str, dict[str, int]]]) -> str:
    rows = [
        "| language | dev files right | held-out files right | detected instead (both) |",
        "|---|---:|---:|---|",
    ]
    totals = {"dev": [0, 0], "held": [0, 0]}
    for language, splits in tally.items():
        cells = []
        wrong: dict[str, int] = defaultdict(int)
        for split in ("dev", "held"):
            got = splits.get(split, {})
            right, count = got.get(language, 0), sum(got.values())
            totals[split][0] += right
            totals[split][1] += count
            cells.append(f"{right}/{count}")
            for other, n in got.items():
                if other != language:
                    wrong[other] += n
        rows.append(
            f"| {language} | {cells[0]} | {cells[1]} | "
            + (", ".join(f"{k} {v}" for k, v in sorted(wrong.items())) or "-")
            + " |"
        )
    rows.append(
        f"| all | {totals['dev'][0]}/{totals['dev'][1]} | {totals['held'][0]}/{totals['held'][1]} | |"
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-file", type=int, default=3, help="target functions per source file")
    parser.add_argument("--json", help="write per-case results here")
    parser.add_argument(
        "--suite",
        choices=("named", "classes", "languages", "all"),
        default="all",
        help="named: one named function per case (the first suite); classes: the "
        "harder classes of issue #14 (run bench/fetch_sources.sh first for Go, "
        "Rust and Java); languages: detection on whole unfenced files",
    )
    parser.add_argument("--per-language", type=int, default=6, help="cases per class and language")
    parser.add_argument(
        "--classes",
        default=",".join(CLASSES),
        help="comma-separated classes of the classes suite (default: all of them)",
    )
    parser.add_argument(
        "--split",
        choices=(
            "all",
            "dev",
            "held",
            "hand",
            "hand2",
            "hand3",
            "hand4",
            "hand5",
            "hand6",
            "hand7",
            "hand8",
            "hand9",
        ),
        default="all",
        help="source files of the classes suite: dev (the half tuned on), held (the "
        "held-out half), hand, hand2 ... hand9 (the hand-described sets only) or all; each is "
        "reported separately",
    )
    parser.add_argument(
        "--seed", type=int, default=20251201, help="case generator seed (classes suite)"
    )
    args = parser.parse_args()
    out: dict = {}
    if args.suite in ("named", "all"):
        report = run(args.per_file)
        print(summarize(report))
        out["named"] = report
    if args.suite in ("classes", "all"):
        chosen = [c for c in args.classes.split(",") if c]
        unknown = sorted(set(chosen) - set(CLASSES))
        if unknown:
            parser.error(f"unknown classes {unknown}; known: {', '.join(CLASSES)}")
        cases = run_classes(args.per_language, chosen, args.split, args.seed)
        print("\n" + summarize_classes(cases))
        out["classes"] = cases
    if args.suite in ("languages", "all"):
        tally = run_languages(40)
        print(
            "\nlanguage detection, whole unfenced files (40 per language and split)\n"
            + summarize_languages(tally)
        )
        out["languages"] = tally
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
