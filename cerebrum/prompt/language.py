"""Guess the programming language of a piece of code.

Evidence in order of trust: the Markdown fence tag, a file name mentioned in
the prompt, then syntax patterns counted over a bounded sample of the code.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

from cerebrum.prompt.instruction import is_prose_line

_LOGGER = logging.getLogger(__name__)

TEXT = "text"
LANGUAGES = ("python", "javascript", "typescript", "rust", "c", "cpp", "go", "java", "shell")

# Syntax evidence is counted over this much code; enough to decide, and it
# keeps detection constant-time on huge pastes.
_SAMPLE_CHARS = 6_000
_MIN_SCORE = 6

_ALIASES = {
    "py": "python",
    "python": "python",
    "python3": "python",
    "py3": "python",
    "pycon": "python",
    "js": "javascript",
    "javascript": "javascript",
    "jsx": "javascript",
    "mjs": "javascript",
    "cjs": "javascript",
    "node": "javascript",
    "ts": "typescript",
    "typescript": "typescript",
    "tsx": "typescript",
    "rs": "rust",
    "rust": "rust",
    "c": "c",
    "h": "c",
    "cpp": "cpp",
    "c++": "cpp",
    "cc": "cpp",
    "cxx": "cpp",
    "hpp": "cpp",
    "hh": "cpp",
    "hxx": "cpp",
    "go": "go",
    "golang": "go",
    "java": "java",
    "sh": "shell",
    "bash": "shell",
    "shell": "shell",
    "zsh": "shell",
    "console": "shell",
    "shellscript": "shell",
    "text": TEXT,
    "txt": TEXT,
    "plaintext": TEXT,
    "plain": TEXT,
    "markdown": TEXT,
    "md": TEXT,
}

_FILE_RE = re.compile(
    r"(?<![\w./-])[\w./-]*\w\.(py|pyi|js|mjs|cjs|jsx|ts|tsx|rs|c|h|cc|cpp|cxx|hpp|hh|go|java|sh|bash)\b"
)

# Syntax evidence is counted as weighted tokens: one C-speed ``findall`` and a
# ``Counter``, because a battery of per-language regexes cost ~40 ms on 24 KB.
_TOKEN_RE = re.compile(
    r"#\s*include\b|#\s*define\b|#!|\w+|::|->|=>|:=|===|!==|\$\{|\$\(|\$\w|[{};@]"
)
_WEIGHTS: dict[str, dict[str, float]] = {
    "python": {
        "def": 3,
        "elif": 4,
        "self": 1,
        "None": 2,
        "True": 1,
        "False": 1,
        "lambda": 3,
        "__init__": 4,
        "__name__": 4,
        "pass": 2,
        "raise": 2,
        "except": 3,
        "import": 1,
        "from": 1,
        "isinstance": 3,
        "kwargs": 2,
        "args": 1,
        "cls": 2,
        "yield": 1,
    },
    "javascript": {
        "function": 3,
        "const": 1,
        "let": 1,
        "var": 2,
        "=>": 1,
        "===": 3,
        "!==": 3,
        "require": 3,
        "module": 1,
        "exports": 2,
        "console": 3,
        "undefined": 3,
        "this": 1,
        "prototype": 3,
        "async": 0.5,
        "await": 0.5,
        "null": 1,
    },
    # interface and implements are Java's too, and the bare words string, number
    # and boolean are JavaScript's typeof answers: a type annotation (below) is
    # TypeScript's real evidence.
    "typescript": {
        "interface": 1.5,
        "readonly": 3,
        "implements": 1,
        "keyof": 4,
        "unknown": 1,
        "Promise": 1,
        "as": 0.5,
        "enum": 1,
    },
    "rust": {
        "fn": 3,
        "mut": 3,
        "impl": 3,
        "::": 1,
        "pub": 1,
        "Self": 2,
        "Vec": 2,
        "Option": 2,
        "Some": 2,
        "unwrap": 3,
        "usize": 3,
        "u32": 2,
        "u8": 2,
        "i32": 2,
        "i64": 2,
        "crate": 3,
        "derive": 3,
        "println": 2,
        "String": 1,
        "match": 1,
        "let": 1,
        "Ok": 1,
        "Err": 1,
        "trait": 3,
        "str": 1,
        "mod": 1,
        "where": 0.5,
    },
    "c": {
        "#include": 3,
        "#define": 2,
        "printf": 2,
        "fprintf": 3,
        "malloc": 3,
        "free": 1,
        "NULL": 2,
        "sizeof": 2,
        "struct": 1,
        "typedef": 2,
        "unsigned": 2,
        "char": 1,
        "int": 1,
        "void": 1,
        "size_t": 2,
        "static": 0.5,
        "->": 0.5,
        "const": 0.3,
        "memcpy": 3,
        "return": 0.2,
    },
    "cpp": {
        "std": 3,
        "template": 3,
        "namespace": 3,
        "nullptr": 4,
        "virtual": 2,
        "cout": 3,
        "auto": 1,
        "override": 1,
        "typename": 3,
        "constexpr": 4,
        "noexcept": 4,
        "::": 0.5,
        "vector": 2,
        "class": 0.5,
        "public": 0.5,
        "private": 0.5,
    },
    "go": {
        "package": 2,
        "func": 4,
        ":=": 2,
        "fmt": 3,
        "nil": 2,
        "chan": 3,
        "defer": 3,
        "go": 1,
        "err": 1,
        "range": 2,
        "struct": 0.5,
        "string": 0.3,
        "int": 0.3,
    },
    "java": {
        "public": 1,
        "private": 1,
        "protected": 1,
        "class": 1,
        "void": 1,
        "System": 3,
        "extends": 2,
        "Override": 3,
        "new": 1,
        "final": 2,
        "throws": 3,
        "String": 1,
        "ArrayList": 3,
        "List": 1,
        "static": 0.5,
        "package": 1,
        "import": 0.5,
        "null": 1,
        "boolean": 1,
        "this": 0.5,
    },
    "shell": {
        "$(": 2,
        "${": 2,
        "$w": 1,
        "fi": 3,
        "done": 2,
        "esac": 4,
        "then": 2,
        "echo": 2,
        "#!": 2,
        "local": 2,
        "export": 1,
        "exit": 1,
        "do": 1,
        "elif": 1,
        "shift": 2,
        "grep": 2,
        "sed": 2,
        "awk": 2,
        "dev": 1,
        "null": 0.3,
        "set": 1,
    },
}
# No single token may count more than this many times: one repeated word
# (``self`` in a big class) must not outvote everything else.
_CAP_PER_TOKEN = 12
_STD_PATH_RE = re.compile(r"\bstd::\w+")

# Comments are prose: a Javadoc's "interface", "type", "number" and "any" are
# not TypeScript. They are taken out of the sample before tokens are counted
# (``#`` starts a comment unless it opens a C preprocessor line, a shebang or
# a Rust attribute). Each pattern runs only when its marker is in the text: a
# regex of alternatives is tried at every position, a plain one is a fast
# search for its first characters.
_COMMENT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("/*", re.compile(r"/\*.*?(?:\*/|\Z)", re.DOTALL)),
    ('"""', re.compile(r'"""[^"]*(?:"(?!"")[^"]*)*"""')),
    ("//", re.compile(r"//[^\n]*")),
    (
        "#",
        re.compile(
            r"#(?![\[!]|\s*(?:include|define|if|ifdef|ifndef|endif|else|elif|pragma|undef|error)\b)"
            r"[^\n]*"
        ),
    ),
)


def strip_comments(code: str) -> str:
    """``code`` without its comments and docstrings (each replaced by a space)."""
    for marker, pattern in _COMMENT_PATTERNS:
        if marker in code:
            code = pattern.sub(" ", code)
    return code


# Constructs only one language has, each worth several keywords; each is
# searched for only when one of its markers is in the sample.
_SHAPES: tuple[tuple[str, float, tuple[str, ...], re.Pattern[str]], ...] = (
    # import java.util.List; / package java.util;  (Go's package line has no ';')
    ("java", 4, ("import",), re.compile(r"\nimport\s+(?:static\s+)?[a-z]\w*(?:\.\w+)+(?:\.\*)?;")),
    ("java", 6, ("package",), re.compile(r"\npackage\s+[a-z]\w*(?:\.\w+)*;")),
    # public static <T> List<T> name(  /  default boolean removeIf(  :
    # a return type before the name.
    (
        "java",
        2,
        ("public", "private", "protected", "default"),
        re.compile(
            r"\b(?:public|private|protected|default)(?:\s+(?:static|final|abstract|synchronized|native))*"
            r"\s+(?:<[^<>()]*>\s+)?(?!(?:async|readonly|get|set|static|abstract|override|function|constructor)\b)"
            r"[A-Za-z_][\w.]*(?:<[^()]*?>)?(?:\[\])*\s+[a-z_]\w*\s*\("
        ),
    ),
    # x: string, ): Promise<  : a type annotation (never in Java or C).
    (
        "typescript",
        2,
        ("string", "number", "boolean", "any", "unknown", "void", "never", "<"),
        re.compile(
            r":[ \t]*(?:string|number|boolean|any|unknown|void|never|Promise<|Record<|Array<)\b"
        ),
    ),
    # #include <vector>: a header without an extension is C++'s standard library.
    ("cpp", 4, ("include",), re.compile(r"#\s*include\s*<[a-z_]+>")),
    (
        "cpp",
        3,
        ("_cast", "std::"),
        re.compile(r"\b(?:static_cast|reinterpret_cast|const_cast|dynamic_cast|std::\w+)\b"),
    ),
    # ES modules: import x from './y' / export const ...; TypeScript's own exports.
    (
        "javascript",
        3,
        ("import", "export"),
        re.compile(
            r"\n(?:import\s[^\n]*\bfrom\s+['\"]|export\s+(?:default|const|let|function|class|async|\*|\{))"
        ),
    ),
    (
        "typescript",
        3,
        ("type", "interface", "enum"),
        re.compile(
            r"\n(?:export\s+)?(?:type\s+\w+\s*(?:<[^>]*>)?\s*=|interface\s+\w+|import\s+type\b|export\s+enum\b)"
        ),
    ),
    # Go: package main (no ';'), func (r *T) name(
    ("go", 4, ("package",), re.compile(r"\npackage\s+\w+[ \t]*\n")),
    ("go", 3, ("func",), re.compile(r"\nfunc\s+(?:\(\w+\s+\*?[\w.\[\]]+\)\s+)?\w+\(")),
    ("rust", 5, ("macro_rules!",), re.compile(r"macro_rules!")),
)
# Comments are stripped from at most this much code before sampling.
_STRIP_CHARS = 48_000


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


def _sample(code: str) -> str:
    if len(code) <= _SAMPLE_CHARS:
        return code
    half = _SAMPLE_CHARS // 2
    middle = len(code) // 2
    return code[:half] + "\n" + code[middle : middle + half]


def syntax_scores(code: str) -> dict[str, float]:
    """Score each language by the syntax evidence found in a sample of ``code``."""
    stripped = strip_comments(_sample(code))
    if len(stripped) < _SAMPLE_CHARS // 2 and len(code) > _SAMPLE_CHARS:
        # A head of comments (licence, Javadoc, //! docs): strip more to find code.
        half = _STRIP_CHARS // 2
        head = (
            code
            if len(code) <= _STRIP_CHARS
            else code[:half] + "\n" + code[len(code) // 2 :][:half]
        )
        stripped = _sample(strip_comments(head))
    # A leading newline: line-start shapes search for "\nimport", a literal (fast).
    sample = "\n" + stripped + "\n"
    # Counted at C speed; the few "$x" and "# include" spellings are merged after.
    counts: Counter[str] = Counter(_TOKEN_RE.findall(sample))
    for token in [t for t in counts if t[0] in "$#" and len(t) >= 2]:
        if token[0] == "$" and len(token) == 2 and token[1] not in "{(":
            counts["$w"] += counts.pop(token)
        elif token[0] == "#" and len(token) > 2:
            counts["#include" if token.endswith("include") else "#define"] += counts.pop(token)
    scores: dict[str, float] = {}
    for language, weights in _WEIGHTS.items():
        scores[language] = sum(
            weight * min(counts[token], _CAP_PER_TOKEN)
            for token, weight in weights.items()
            if token in counts
        )
    for language, weight, markers, shape in _SHAPES:
        if any(marker in sample for marker in markers):
            scores[language] += weight * min(len(shape.findall(sample)), _CAP_PER_TOKEN)
    # ``std::`` is Rust's standard library too: next to Rust's own keywords
    # (fn, impl, mut, crate) it is no evidence of C++ (clap's `use std::...`).
    if counts["std"] and counts["fn"] + counts["impl"] + counts["mut"] + counts["crate"] >= 3:
        shared = min(counts["std"], _CAP_PER_TOKEN) + min(
            len(_STD_PATH_RE.findall(sample)), _CAP_PER_TOKEN
        )
        scores["cpp"] = max(0.0, scores["cpp"] - 3 * shared)
    # TypeScript is JavaScript plus types; C++ is C plus its own constructs
    # (C never has them). Each needs its own evidence first.
    if scores["typescript"] >= 6 and scores["javascript"] >= 3:
        scores["typescript"] += scores["javascript"]
    else:
        scores["typescript"] = 0.0
    if scores["cpp"] >= 6:
        scores["cpp"] += scores["c"]
    if counts["#!"] and not (counts["bash"] or counts["sh"] or counts["zsh"]):
        scores["shell"] -= 2 * counts["#!"]
    return scores


def _mostly_prose(code: str) -> bool:
    # Comments are prose in code too (a Javadoc-heavy head): judge what is left,
    # at the head and in the middle (a module docstring can fill the head).
    half = _SAMPLE_CHARS // 2
    middle = len(code) // 2
    parts = (
        [(code, 120)]
        if len(code) <= _SAMPLE_CHARS
        else [(code[:half], 60), (code[middle : middle + half], 60)]
    )
    lines = [
        line
        for part, count in parts
        for line in strip_comments(part).split("\n")[:count]
        if line.strip()
    ]
    if len(lines) < 5:  # a head of comments (licence, Javadoc): look further, then at the raw lines
        lines = [
            line for line in strip_comments(code[:_STRIP_CHARS]).split("\n")[:120] if line.strip()
        ]
    if len(lines) < 5:  # all comments (a crate's //! docs)
        lines = [line for line in code[:_SAMPLE_CHARS].split("\n")[:120] if line.strip()]
    if not lines:
        return True
    prose = sum(1 for line in lines if is_prose_line(line))
    return prose >= 0.6 * len(lines)


def detect_language(code: str, fence_tag: str | None = None, context: str = "") -> str:
    """Return the language of ``code`` (one of :data:`LANGUAGES`) or ``"text"``.

    ``context`` is the surrounding prose, searched for file names.
    """
    tagged = normalize_tag(fence_tag)
    if tagged:
        return tagged
    scores = syntax_scores(code)
    best = max(scores, key=lambda name: scores[name])
    # A file name in the prose is the user's word; one inside the code (an
    # import of './x.js' in TypeScript) only decides when the syntax cannot.
    named = _from_file_names(context)
    if named is None and scores[best] < 3 * _MIN_SCORE:
        named = _from_file_names(code[:2000])
    if named and (named in ("c", "cpp") and best in ("c", "cpp")):
        # A .h file name says little about C vs C++; the syntax decides.
        return best if scores[best] >= _MIN_SCORE else named
    if named:
        return named
    # Plenty of syntax evidence is code however much prose its comments hold.
    if scores[best] < _MIN_SCORE or (scores[best] < 10 * _MIN_SCORE and _mostly_prose(code)):
        return TEXT
    return best
