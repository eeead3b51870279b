"""Guess the programming language of a piece of code.

Evidence in order of trust: the Markdown fence tag, a file name mentioned in
the prompt, then syntax patterns counted over a bounded sample of the code.
"""

from __future__ import annotations

import logging
import re

_LOGGER = logging.getLogger(__name__)

TEXT = "text"
LANGUAGES = ("python", "javascript", "typescript", "rust", "c", "cpp", "go", "java", "shell")

# Syntax evidence is counted over this much code; enough to decide, and it
# keeps detection constant-time on huge pastes.
_SAMPLE_CHARS = 24_000
_MIN_SCORE = 4

_ALIASES = {
    "py": "python", "python": "python", "python3": "python", "py3": "python", "pycon": "python",
    "js": "javascript", "javascript": "javascript", "jsx": "javascript", "mjs": "javascript",
    "cjs": "javascript", "node": "javascript",
    "ts": "typescript", "typescript": "typescript", "tsx": "typescript",
    "rs": "rust", "rust": "rust",
    "c": "c", "h": "c",
    "cpp": "cpp", "c++": "cpp", "cc": "cpp", "cxx": "cpp", "hpp": "cpp", "hh": "cpp", "hxx": "cpp",
    "go": "go", "golang": "go",
    "java": "java",
    "sh": "shell", "bash": "shell", "shell": "shell", "zsh": "shell", "console": "shell",
    "shellscript": "shell",
    "text": TEXT, "txt": TEXT, "plaintext": TEXT, "plain": TEXT, "markdown": TEXT, "md": TEXT,
}

_FILE_RE = re.compile(
    r"\b[\w./-]*\w\.(py|pyi|js|mjs|cjs|jsx|ts|tsx|rs|c|h|cc|cpp|cxx|hpp|hh|go|java|sh|bash)\b"
)

_M = re.MULTILINE
# (pattern, weight) per language; weights favour constructs no other language has.
_EVIDENCE: dict[str, list[tuple[re.Pattern[str], int]]] = {
    "python": [
        (re.compile(r"^\s*(async\s+)?def \w+\(.*\)\s*(->[^:]+)?:\s*(#.*)?$", _M), 3),
        (re.compile(r"^\s*class \w+(\(.*\))?:\s*$", _M), 3),
        (re.compile(r"^\s*(from [\w.]+ import |import \w[\w.]*(\s+as\s+\w+)?\s*$)", _M), 2),
        (re.compile(r"\bself\.\w"), 1),
        (re.compile(r"^\s*(elif |except\b.*:|try:|with .*:\s*$)", _M), 2),
        (re.compile(r"\b(None|True|False)\b"), 1),
    ],
    "javascript": [
        (re.compile(r"\bfunction\s*\*?\s*\w*\s*\([^)]*\)\s*\{"), 3),
        (re.compile(r"\b(const|let|var)\s+[\w{}\[\], ]+\s*=(?!=)"), 2),
        (re.compile(r"=>"), 1),
        (re.compile(r"\brequire\(['\"]|\bmodule\.exports\b|\bconsole\.\w+\("), 3),
        (re.compile(r"==="), 2),
        (re.compile(r"^\s*import .* from ['\"]|^\s*export (default |const |function |class )", _M), 2),
    ],
    "typescript": [
        (re.compile(r"\b\w+\??\s*:\s*(string|number|boolean|any|void|unknown|never)\b(\[\])?"), 3),
        (re.compile(r"^\s*(export\s+)?interface \w+", _M), 3),
        (re.compile(r"^\s*(export\s+)?type \w+(<[^>]*>)?\s*=", _M), 3),
        (re.compile(r"\b(readonly|implements|as const|keyof)\b"), 2),
        (re.compile(r"\)\s*:\s*(Promise<|[A-Z]\w*(<[^>]*>)?\s*\{)"), 2),
    ],
    "rust": [
        (re.compile(r"\bfn \w+(<[^>]*>)?\("), 3),
        (re.compile(r"\blet mut\b"), 3),
        (re.compile(r"^\s*impl\b", _M), 3),
        (re.compile(r"&(mut )?self\b|&str\b|\bSelf::"), 2),
        (re.compile(r"^\s*(pub(\(crate\))? )?(fn|struct|enum|mod|trait) ", _M), 2),
        (re.compile(r"^\s*use [\w:]+(::\{|::\w|;)", _M), 2),
        (re.compile(r"\w+!\(|#\[\w+"), 2),
        (re.compile(r"\b(Option|Result|Vec|Box)<"), 2),
    ],
    "c": [
        (re.compile(r"^\s*#include\s*[<\"][\w/]+\.h[>\"]", _M), 3),
        (re.compile(r"^\s*(static\s+)?(inline\s+)?(const\s+)?(unsigned\s+|signed\s+)?(void|int|char|long|short|double|float|size_t|struct\s+\w+|\w+_t)\s*\**\s*\w+\s*\([^;]*\)\s*\{?\s*$", _M), 3),
        (re.compile(r"\b(malloc|calloc|free|printf|fprintf|memcpy|sizeof|NULL)\b"), 1),
        (re.compile(r"\btypedef\s+(struct|enum|union)\b|^\s*#define\s", _M), 2),
        (re.compile(r"\w->\w"), 1),
    ],
    "cpp": [
        (re.compile(r"^\s*#include\s*<(iostream|vector|string|memory|map|unordered_map|algorithm|cstdio|cstdlib|cstring|cstdint|thread|mutex|array|functional)>", _M), 4),
        (re.compile(r"\bstd::"), 3),
        (re.compile(r"^\s*template\s*<", _M), 4),
        (re.compile(r"^\s*namespace\s+\w*\s*\{|\busing namespace\b", _M), 4),
        (re.compile(r"\b(nullptr|constexpr|override|virtual|noexcept)\b"), 3),
        (re.compile(r"^\s*(public|private|protected):\s*$", _M), 3),
        (re.compile(r"\b\w+::\w+\s*\("), 1),
    ],
    "go": [
        (re.compile(r"^package \w+\s*$", _M), 4),
        (re.compile(r"^func (\([^)]*\)\s*)?\w+\(", _M), 4),
        (re.compile(r":="), 1),
        (re.compile(r"\bfmt\.\w+\(|\berr != nil\b"), 3),
        (re.compile(r"^import \(", _M), 3),
        (re.compile(r"\b(chan|go func|defer)\b"), 2),
    ],
    "java": [
        (re.compile(r"\b(public|private|protected)\s+(static\s+)?(final\s+)?(class|interface|enum|void|[A-Z]\w*(<[^>]*>)?)\s+\w+"), 3),
        (re.compile(r"\bSystem\.(out|err)\.\w+\("), 4),
        (re.compile(r"^\s*import (static )?java[x]?\.[\w.]+;", _M), 4),
        (re.compile(r"^\s*package [\w.]+;", _M), 4),
        (re.compile(r"@Override\b|\bString\[\]|\bextends \w+|\bthrows \w+"), 2),
    ],
    "shell": [
        (re.compile(r"^#!.*\b(ba|z|da)?sh\b", _M), 6),
        (re.compile(r"^\s*(if|elif|while) \[\[? ", _M), 3),
        (re.compile(r"^\s*(fi|done|esac)\s*$", _M), 3),
        (re.compile(r"\$\{\w+[}:#%]|\"\$\w+\"|\$\(\w"), 2),
        (re.compile(r"^\s*(echo|export|local|set -\w+|source)\b", _M), 2),
        (re.compile(r"^\s*\w+\s*\(\)\s*\{", _M), 2),
    ],
}
# Evidence is capped per pattern so one repeated construct cannot outvote all others.
_CAP_PER_PATTERN = 8


def normalize_tag(tag: str | None) -> str | None:
    """Map a fence tag or file extension to a language name, or None if unknown."""
    if not tag:
        return None
    return _ALIASES.get(tag.strip().lower().lstrip("."))


def _from_file_names(text: str) -> str | None:
    counts: dict[str, int] = {}
    for match in _FILE_RE.finditer(text[:_SAMPLE_CHARS]):
        language = normalize_tag(match.group(1))
        if language:
            counts[language] = counts.get(language, 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda name: counts[name])


def syntax_scores(code: str) -> dict[str, int]:
    """Score each language by the syntax evidence found in a sample of ``code``."""
    sample = code[:_SAMPLE_CHARS]
    scores: dict[str, int] = {}
    for language, patterns in _EVIDENCE.items():
        total = 0
        for pattern, weight in patterns:
            hits = 0
            for _ in pattern.finditer(sample):
                hits += 1
                if hits >= _CAP_PER_PATTERN:
                    break
            total += hits * weight
        scores[language] = total
    # TypeScript is JavaScript plus types; C++ is mostly C.
    scores["typescript"] += scores["javascript"] if scores["typescript"] else 0
    scores["cpp"] += scores["c"] // 2 if scores["cpp"] else 0
    return scores


def detect_language(code: str, fence_tag: str | None = None, context: str = "") -> str:
    """Return the language of ``code`` (one of :data:`LANGUAGES`) or ``"text"``.

    ``context`` is the surrounding prose, searched for file names.
    """
    tagged = normalize_tag(fence_tag)
    if tagged:
        return tagged
    named = _from_file_names(context) or _from_file_names(code[:2000])
    scores = syntax_scores(code)
    best = max(scores, key=lambda name: scores[name])
    if named and (named in ("c", "cpp") and best in ("c", "cpp")):
        # A .h file name says little about C vs C++; the syntax decides.
        return best if scores[best] >= _MIN_SCORE else named
    if named:
        return named
    if scores[best] < _MIN_SCORE:
        return TEXT
    return best
