"""Retrieval for one question: lexical BM25 plus the code's structure, then a budgeted assembly.

Signals, in the order they are computed:

1. **lexical**: FTS5's BM25 over each unit's name words (weighted most),
   docstring/comments, body identifiers and path, all split and stemmed as
   the optimiser splits them; normalised so the best match scores 1;
2. **named**: units that define an identifier the question names in code form
   (``retry_loop``, ``parseArgs``, ``Store.load``, ``stop()``), a strong boost;
3. **traceback**: the unit holding a line a traceback frame points at
   (``File "x.py", line 12, in f``; ``at f (x.js:12:3)``; ``x.py:12``), the
   last frame most;
4. **files named**: a small boost to units of a file the question names;
   **modules named in words** ("the reloader" for ``_reloader.py``, "the
   debugger" for ``debug/__init__.py``): a second search within that module,
   fused with the first;
5. **classes described**: methods of a class whose name the question spells
   out in words ("file system cache" for ``FileSystemCache``, "multidict"
   for ``MultiDict``), and special methods the question names in words
   ("constructor" for ``__init__``), a boost each;
6. **neighbours**: callees and callers of the best few, so a fix that needs
   a helper's contract gets it;
7. **vectors** (only when the workspace has them and the question's vector is
   given: ``CEREBRUM_WORKSPACE_EMBEDDINGS_MODEL``): the scores above, the best
   made 1, plus ``VECTOR_WEIGHT`` x the min-max-scaled cosine of the
   ``VECTOR_CANDIDATES`` units nearest the question; units only the vectors
   find join as candidates (:func:`fuse_sum`);
8. **expansion** (off by default: ``expansion=0``): a second search on the
   words the best first hits share that the question did not use
   (pseudo-relevance feedback, RM3's shape: associations learned from the
   repository itself, the cheap stand-in for vectors), fused with weight
   ``expansion``. Measured by ``bench/retrieval_quality.py`` as its own
   system; it did not help on the development halves, so it stays off.

Preambles and statement blocks count half (imports rarely answer a question),
class headers less than the methods that do the work, tests less unless the
question is about tests. :func:`assemble_context` then
takes units whole in rank order while they fit (skipping one that does not
fit for smaller ones after it), the best one cut to its head only when
nothing fits whole, and one-line signatures of the next ones with what is
left. Decisions (:func:`analyse`, :func:`rank`, :func:`assemble_context`) are
pure; :func:`retrieve` wires them to a :class:`~cerebrum.workspace.store.WorkspaceStore`.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from cerebrum.prompt.assembly import comment_prefix
from cerebrum.prompt.chunking import BLOCK, CLASS_HEADER, PART, PREAMBLE
from cerebrum.prompt.reports import line_number
from cerebrum.prompt.tokens import estimate_tokens
from cerebrum.workspace.extract import identifier_words, language_for, words
from cerebrum.workspace.store import UnitRow, WorkspaceStore
from cerebrum.workspace.vectors import nearest

LEXICAL_CANDIDATES = 150
MAX_TERMS = 40
NAMED_BOOST = 1.5
QUALIFIED_BOOST = 0.5
PARENT_NAMED_BOOST = 0.6
PLAIN_NAME_BOOST = 0.1
TRACE_BOOST = 2.0
FILE_BOOST = 0.3
CALLEE_SHARE = 0.2
CALLER_SHARE = 0.1
NEIGHBOUR_SOURCES = 3
MAX_NAME_DEFINITIONS = 3
"""A callee defined in more places than this (``copy``, ``add``) is too common to be a link."""
BLOCK_FACTOR = 0.5
HEADER_FACTOR = 0.7
"""A class header (its docstring and attributes) against the methods that do the work."""
TEST_FACTOR = 0.5
ASIDE_FACTOR = 0.7
"""Examples, docs and scripts: rarely where a reported bug lives."""
DESCRIBED_BOOST = 0.6
"""For a unit whose name's words the question uses (``log_request`` for "request log")."""
FILE_PRIOR = 0.3
"""Share of a file's lexical weight (its best few units) added to each of its matching units."""
HEAD_WEIGHT = 0.5
"""Extra weight of the question's first line (a subject line says what it is about)."""
EXPANSION_SOURCES = 8
"""The best lexical hits whose words the expansion reads."""
EXPANSION_WORDS = 60
"""Their heaviest words, looked up in the index's vocabulary."""
EXPANSION_TERMS = 10
"""Of those, the ones searched for (weight times rarity)."""
MODULE_WEIGHT = 0.5
"""The search within a module the question names in words, against the first search's best."""
MAX_MODULES = 3
PARENT_DESCRIBED_BOOST = 0.4
"""For a method of a class whose name's words (two or more) the question uses."""
SPECIAL_BOOST = 0.3
"""For a special method the question names in words ("constructor": ``__init__``)."""
VECTOR_CANDIDATES = 150
"""The units nearest the question by cosine that take part (as many as the lexical search
gives)."""
VECTOR_WEIGHT = 0.3
"""The scaled cosine's share against the best lexical score (1): the best on the bench's
development halves (docs/benchmarks.md, workspaces, sessions 9 and 10)."""
MIN_SHARE_OF_BEST = 0.2
"""A unit scoring under this share of the best is not worth a token of the budget."""
MAX_ITEMS = 40
_TRUNCATE_MIN_TOKENS = 80
_SIGNATURE_CHARS = 120

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_CAMEL_RE = re.compile(r"[a-z0-9][A-Z]|(?<![A-Z])[A-Z]{2,}[a-z]")  # (from a run's start: linear)
MAX_FRAMES_EACH_END = 20
"""Traceback frames read from each end of a question with more."""
_BACKTICK_RE = re.compile(r"`([^`\n]{1,200})`")
_PY_FRAME_RE = re.compile(r'File "([^"\n]+)", line (\d+)(?:, in ([A-Za-z_<][\w<>.]*))?')
_JS_FRAME_RE = re.compile(r"\bat (?:([\w$.<>]+) )?\(?([^\s():]+\.[A-Za-z]+):(\d+)(?::\d+)?\)?")
_PATH_LINE_RE = re.compile(r"(?<![\w/.-])([\w./-]+\.(?:py|pyi|js|mjs|cjs|jsx|ts|tsx|rs|c|h|cc|cpp"
                           r"|cxx|hpp|hh|go|java|sh|bash))(?::(\d+))?\b")
_TEST_WORDS = frozenset({"test", "tests", "testing", "pytest", "unittest", "fixture"})
STOPWORDS = frozenset((
    "a an the this that these those it its to of in on for and or not no but with "
    "without from by as at is are be was were been being do does did done can could "
    "should would will shall may might must please make makes made use uses using "
    "used what why how which who whom where when there here into out up down all any "
    "each every some more most less than then also just only very like need want get "
    "gets got set new old one two if else so me my i you your we our us they them "
    "their he she his her fix fixes fixed bug issue error problem wrong work works "
    "working way code function method class file line lines value values return "
    "returns call calls called instead now never always"
).split())
NAME_STOPWORDS = frozenset(
    "call calls called file line lines class value values return returns error set get new "
    "code function method".split())
"""Stopwords that are also parts of names (``line_statement``, ``CallBlock``,
``file_system``): they still join their neighbour."""
# Python's special methods, by the words prose uses for them.
SPECIAL_METHODS = {
    "constructor": ("__init__", "__new__"), "initializer": ("__init__",),
    "initialiser": ("__init__",), "repr": ("__repr__",), "representation": ("__repr__",),
    "iter": ("__iter__",), "iterate": ("__iter__",), "iterating": ("__iter__",),
    "iteration": ("__iter__",), "subscript": ("__getitem__",),
    "subscription": ("__getitem__",), "indexing": ("__getitem__",),
    "equality": ("__eq__",), "comparison": ("__eq__", "__lt__"),
    "hashing": ("__hash__",), "hashable": ("__hash__",),
    "destructor": ("__del__",), "finalizer": ("__del__",),
}
# Search words are stemmed ("this" -> "thi", "issue" -> "issu"), so the stop list
# is held in both forms.
_STOP_STEMS = STOPWORDS | frozenset(w for s in STOPWORDS for w in words(s))


@attrs.frozen
class Frame:
    """One traceback frame: a path (as printed, maybe absolute), a line, maybe a function."""

    path: str
    line: int
    function: str | None = None


@attrs.frozen
class Query:
    """What a question asks for, as plain data."""

    terms: tuple[str, ...]
    """Search words (split, stemmed, no stopwords), in order of first use."""
    names: frozenset[str]
    """Identifiers named in code form: definitions the question is about."""
    qualified: frozenset[tuple[str, str]]
    """``(Parent, name)`` pairs named as ``Parent.name``."""
    plain: frozenset[str]
    """Other words that might be a definition's whole name (``retry``)."""
    frames: tuple[Frame, ...]
    paths: tuple[str, ...]
    about_tests: bool
    spoken: frozenset[str] = frozenset()
    """Every word of the question in index form (stopwords too), adjacent words joined,
    agent nouns' bases ("reloader": ``reload``), and the special methods it names."""


@attrs.frozen
class Candidate:
    """A unit with its score and the reasons for it (shown by ``/v1/optimize``)."""

    unit_id: int
    score: float
    reasons: tuple[str, ...]


@attrs.frozen
class RetrievedItem:
    path: str
    start_line: int
    end_line: int
    name: str | None
    kind: str
    score: float
    reasons: tuple[str, ...]
    whole: bool
    """False: only its head fitted (or only its signature, ``signature_only``)."""
    signature_only: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "lines": [self.start_line, self.end_line], "name": self.name,
                "kind": self.kind, "score": round(self.score, 3), "why": list(self.reasons),
                "whole": self.whole, "signature_only": self.signature_only}


@attrs.frozen
class Retrieved:
    """The assembled context and what went into it."""

    text: str
    tokens: int
    budget_tokens: int
    items: tuple[RetrievedItem, ...]
    candidates: int
    elapsed_ms: float = 0.0
    vectors: bool = False
    """Whether the units' vectors took part (the reason ``vectors S`` says for which)."""

    def as_dict(self) -> dict[str, object]:
        return {"tokens": self.tokens, "budget_tokens": self.budget_tokens,
                "candidates": self.candidates, "elapsed_ms": round(self.elapsed_ms, 2),
                "vectors": self.vectors, "items": [item.as_dict() for item in self.items]}


def _is_code_like(identifier: str) -> bool:
    return "_" in identifier.strip("_") or bool(_CAMEL_RE.search(identifier)) or "." in identifier


def analyse(question: str) -> Query:
    """Read a question (and any pasted code or traceback) into a :class:`Query`."""
    names: set[str] = set()
    qualified: set[tuple[str, str]] = set()
    plain: set[str] = set()
    # Linear in the question's length, whatever it holds (a client may send any text):
    # the identifiers inside backticks as one set, and calls from a word's start only
    # (without the boundary a long run of letters is tried from each of its letters).
    quoted = {part for m in _BACKTICK_RE.finditer(question)
              for identifier in _IDENT_RE.findall(m.group(1)) for part in identifier.split(".")}
    called = set(re.findall(r"\b([A-Za-z_]\w*)\(", question))
    for identifier in _IDENT_RE.findall(question):
        parts = identifier.split(".")
        if len(parts) > 1 and not re.fullmatch(r"[\w/-]+\.(py|js|ts|rs|go|java|c|h|cpp|sh|md)",
                                                identifier):
            qualified.add((parts[-2], parts[-1]))
            names.update(part for part in parts if len(part) > 1)
            continue
        for part in parts:
            if len(part) < 2 or part.lower() in STOPWORDS:
                continue
            if _is_code_like(part) or part in quoted or part in called:
                names.add(part)
            else:
                plain.add(part)
    frames = [Frame(m.group(1), line_number(m.group(2)), m.group(3))
              for m in _PY_FRAME_RE.finditer(question)]
    frames += [Frame(m.group(2), line_number(m.group(3)), m.group(1))
               for m in _JS_FRAME_RE.finditer(question)]
    for frame in frames:
        if frame.function and not frame.function.startswith("<"):
            names.add(frame.function.split(".")[-1])
    paths: list[str] = []
    for match in _PATH_LINE_RE.finditer(question):
        path = match.group(1).strip("./") if not match.group(1).startswith("/") else match.group(1)
        if path not in paths:
            paths.append(path)
        if match.group(2) and not any(f.path.endswith(path) for f in frames):
            frames.append(Frame(path, line_number(match.group(2))))
    terms: list[str] = []
    seen: set[str] = set()  # beside the list: a membership test in the list is quadratic
    for word in words(question):
        if word not in _STOP_STEMS and len(word) > 2 and word not in seen:
            terms.append(word)
            seen.add(word)
    # "content length" in prose is content_length in code, which is indexed
    # joined too ("contentlength"): adjacent prose words are tried joined.
    # Words that are stopwords in prose but parts of names ("line statements":
    # line_statement, "call blocks": CallBlock) may be joined too, and the second
    # word is tried stemmed as well: the index keeps a name joined as it is spelt.
    prose = [w.lower() for w in re.findall(r"[A-Za-z]+", question)]
    for first, second in itertools.pairwise(prose):
        if _joinable(first) and _joinable(second):
            for joined in (first + second, first + _stem(second)):
                if joined not in seen:
                    terms.append(joined)
                    seen.add(joined)
    all_words = set(re.findall(r"[a-z]+", question.lower()))
    spoken = set(words(question)) | {a + b for a, b in itertools.pairwise(prose)}
    spoken |= {a + _stem(b) for a, b in itertools.pairwise(prose)}
    spoken.update(agent_bases(prose))
    for word in all_words:
        spoken.update(SPECIAL_METHODS.get(word, ()))
    return Query(tuple(terms[:MAX_TERMS]), frozenset(names), frozenset(qualified),
                 frozenset(plain - names), tuple(frames), tuple(paths),
                 bool(all_words & _TEST_WORDS), frozenset(spoken))


def _joinable(word: str) -> bool:
    """Whether a prose word may be half of a name spelt out in two words."""
    return len(word) > 1 and (word not in STOPWORDS or word in NAME_STOPWORDS)


def _stem(word: str) -> str:
    """A prose word in index form ("statements": ``statement``)."""
    found = words(word)
    return found[0] if found else word


def agent_bases(prose: Sequence[str]) -> list[str]:
    """Index forms of the verbs behind agent nouns ("debugger": ``debug``, "reloader":
    ``reload``): a module is often named for what it does, and prose for who does it."""
    out: list[str] = []
    for word in prose:
        if len(word) < 6 or not word.endswith("er") or word in STOPWORDS:
            continue
        base = word[:-2]
        if base[-1] == base[-2]:
            base = base[:-1]  # "debugger" -> "debug"
        out.extend(w for w in words(base) if len(w) > 3 and w not in out)
    return out


def module_names(paths: Iterable[str]) -> set[str]:
    """One-word module names of the non-test files (``_reloader.py``: ``reloader``;
    ``debug/__init__.py``: ``debug``), in index form."""
    out: set[str] = set()
    for path in paths:
        if is_test_path(path):
            continue
        parts = path.rsplit("/", 2)
        stem = parts[-1].rsplit(".", 1)[0]
        if stem in ("__init__", "__main__", "index", "mod", "lib") and len(parts) > 1:
            stem = parts[-2]
        found = words(stem)
        if len(found) == 1 and len(found[0]) > 3 and found[0] not in _STOP_STEMS:
            out.add(found[0])
    return out


_MODULES_CACHED = 32
"""Workspaces whose module names are kept (a few per client key)."""
_modules: dict[tuple[str, str, int], frozenset[str]] = {}
_modules_lock = threading.Lock()


def workspace_modules(store: WorkspaceStore) -> frozenset[str]:
    """:func:`module_names` of the workspace's live files, derived once per version of its
    index (a commit bumps it) rather than on every question."""
    key = (str(store.path), *store.version())
    with _modules_lock:
        found = _modules.get(key)
    if found is not None:
        return found
    found = frozenset(module_names(store.paths()))
    with _modules_lock:
        for stale in [k for k in _modules if k[0] == key[0]]:
            del _modules[stale]  # an older version of this workspace: never asked again
        _modules[key] = found
        while len(_modules) > _MODULES_CACHED:
            del _modules[next(iter(_modules))]
    return found


def feedback_words(texts: Sequence[tuple[float, str]], asked: Collection[str],
                   limit: int = EXPANSION_WORDS) -> dict[str, float]:
    """The words of the best hits' texts that the question did not use, each weighted by
    its share of a hit's words times that hit's score (RM3's relevance model)."""
    weights: dict[str, float] = {}
    for score, text in texts:
        counts = Counter(w for w in words(text)
                         if len(w) > 2 and w not in _STOP_STEMS and w not in asked)
        length = sum(counts.values()) or 1
        for word, count in counts.items():
            weights[word] = weights.get(word, 0.0) + score * count / length
    return dict(sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])


def expansion_terms(weights: Mapping[str, float], frequencies: Mapping[str, int], total: int,
                    limit: int = EXPANSION_TERMS) -> list[str]:
    """The feedback words worth a second search: weight times rarity in the index (a word
    most units hold, ``self`` or ``none``, finds nothing new), and only words that other
    units hold too."""
    scored = [(weight * math.log(1 + total / frequencies[word]), word)
              for word, weight in weights.items() if frequencies.get(word, 0) >= 2]
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return [word for _, word in scored[:limit]]


def fts_query(terms: Sequence[str]) -> str:
    """An FTS5 query matching any of ``terms`` (each quoted, so no FTS5 syntax gets through)."""
    return " OR ".join('"' + term.replace('"', "") + '"' for term in terms if term.replace('"', ""))


@functools.lru_cache(maxsize=65_536)
def _name_words(name: str) -> tuple[str, ...]:
    """The words of a definition's name, without its joined form, at least 3 letters."""
    parts = identifier_words(name)
    if len(parts) > 1:
        parts = parts[1:]  # the first is the whole name joined
    return tuple(w for w in parts if len(w) > 2)


def _described(name: str, spoken: Collection[str]) -> bool:
    """Whether the question spells out a name of two or more words: joined ("multidict")
    or word by word ("file system cache")."""
    parts = identifier_words(name)
    return len(parts) > 2 and (parts[0] in spoken or all(p in spoken for p in parts[1:]))


@functools.lru_cache(maxsize=65_536)
def is_test_path(path: str) -> bool:
    """Whether a path looks like a test file or lies under a tests directory."""
    lowered = path.lower()
    name = lowered.rsplit("/", 1)[-1]
    return (name.startswith("test_") or name.endswith(("_test.py", ".test.js", ".test.ts",
                                                       ".spec.js", ".spec.ts", "_test.go"))
            or any(part in ("test", "tests", "testing", "__tests__")
                   for part in lowered.split("/")[:-1]))


@functools.lru_cache(maxsize=65_536)
def is_aside_path(path: str) -> bool:
    """Examples, documentation and scripts (not the code a bug report is about, usually)."""
    return any(part in ("examples", "example", "docs", "doc", "scripts", "benchmarks")
               for part in path.lower().split("/")[:-1])


def rank(
    lexical: Mapping[int, float],
    units: Mapping[int, UnitRow],
    query: Query,
    *,
    named: Mapping[int, str] = {},
    traced: Mapping[int, int] = {},
    in_named_files: Sequence[int] = (),
    callees: Mapping[int, Sequence[str]] = {},
    defining: Mapping[str, Sequence[int]] = {},
    callers: Mapping[str, Sequence[int]] = {},
) -> list[Candidate]:
    """Combine the signals into one score per unit, best first.

    ``named`` maps a unit to the name it was found by, ``traced`` to its frame
    position counted from the last frame (0 = where the error was raised).
    ``callees`` gives the names each unit calls, ``defining`` the units that
    define a name, ``callers`` the units that call one: the graph used for
    neighbours of the best few.
    """
    best = max(lexical.values(), default=0.0) or 1.0
    scores: dict[int, float] = {}
    reasons: dict[int, list[str]] = {}

    def add(unit_id: int, amount: float, why: str) -> None:
        if unit_id not in units:
            return
        scores[unit_id] = scores.get(unit_id, 0.0) + amount
        reasons.setdefault(unit_id, []).append(why)

    for unit_id, score in lexical.items():
        add(unit_id, score / best, f"bm25 {score / best:.2f}")
    if FILE_PRIOR:
        per_file: dict[str, list[float]] = {}
        for unit_id, score in lexical.items():
            if unit_id in units:
                per_file.setdefault(units[unit_id].path, []).append(score / best)
        weight = {path: sum(sorted(values, reverse=True)[:3]) for path, values in per_file.items()}
        top_file = max(weight.values(), default=0.0) or 1.0
        for unit_id in lexical:
            if unit_id in units:
                add(unit_id, FILE_PRIOR * weight[units[unit_id].path] / top_file, "file matches")
    for unit_id, name in named.items():
        unit = units.get(unit_id)
        if unit is None:
            continue
        if name in query.names:
            add(unit_id, NAMED_BOOST, f"defines {name}")
            if unit.parent and (unit.parent, name) in query.qualified:
                add(unit_id, QUALIFIED_BOOST, f"method of {unit.parent}")
        else:
            add(unit_id, PLAIN_NAME_BOOST, f"named {name}")
    if DESCRIBED_BOOST:
        asked = set(query.terms)
        for unit_id, unit in units.items():
            if not unit.name or unit.kind in (PREAMBLE, BLOCK):
                continue
            parts = _name_words(unit.name)
            if not parts:
                continue
            covered = sum(w in asked for w in parts) / len(parts)
            if covered >= 0.5:
                share = 1.0 if len(parts) > 1 else 0.5
                add(unit_id, DESCRIBED_BOOST * share * covered,
                    f"described ({covered:.0%} of its name)")
    for unit_id, unit in units.items():
        if unit.parent and unit.parent in query.names and unit_id not in named:
            add(unit_id, PARENT_NAMED_BOOST, f"member of {unit.parent}")
        elif PARENT_DESCRIBED_BOOST and unit.parent and unit.kind != CLASS_HEADER \
                and _described(unit.parent, query.spoken):
            add(unit_id, PARENT_DESCRIBED_BOOST, f"member of {unit.parent}, described")
        if SPECIAL_BOOST and unit.name and unit.name.startswith("__") \
                and unit.name in query.spoken:
            add(unit_id, SPECIAL_BOOST, f"special method {unit.name}")
    for unit_id, position in traced.items():
        add(unit_id, TRACE_BOOST / (1 + position), "traceback frame")
    for unit_id in in_named_files:
        add(unit_id, FILE_BOOST, "file named")

    for unit_id in list(scores):
        unit = units[unit_id]
        scores[unit_id] *= _discount(unit.path, unit.kind, query.about_tests)

    top = sorted(scores, key=lambda i: (-scores[i], i))[:NEIGHBOUR_SOURCES]
    base = dict(scores)
    for source in top:
        source_unit = units[source]
        for name in callees.get(source, ()):
            targets = defining.get(name, ())
            if len(targets) > MAX_NAME_DEFINITIONS:
                continue
            for target in targets:
                if target != source and target in units:
                    near = 1.0 if units[target].path == source_unit.path else 0.5
                    add(target, CALLEE_SHARE * near * base[source],
                        f"called by {source_unit.name or 'it'}")
        if source_unit.name:
            for caller in callers.get(source_unit.name, ())[:3]:
                if caller != source and caller in units:
                    near = 1.0 if units[caller].path == source_unit.path else 0.5
                    add(caller, CALLER_SHARE * near * base[source], f"calls {source_unit.name}")
    ordered = sorted(scores, key=lambda i: (-scores[i], i))
    return [Candidate(i, scores[i], tuple(reasons[i])) for i in ordered]


def scored_ranking(where: Mapping[int, tuple[str, str]], similarity: Mapping[int, float],
                   about_tests: bool) -> dict[int, float]:
    """The best ``VECTOR_CANDIDATES`` units by ``similarity``, scored 0..1 among them
    (min-max, so a fusion weight means the same for every question), then discounted
    like the lexical ranking (tests, asides, class headers). ``where``: each unit's path
    and kind."""
    order = sorted((i for i in similarity if i in where),
                   key=lambda i: (-similarity[i], i))[:VECTOR_CANDIDATES]
    if not order:
        return {}
    top, floor = similarity[order[0]], similarity[order[-1]]
    return {unit_id: (similarity[unit_id] - floor) / ((top - floor) or 1.0)
            * _discount(*where[unit_id], about_tests) for unit_id in order}


def _discount(path: str, kind: str, about_tests: bool) -> float:
    """A unit's score factor for what it is (a block, a part, a class header) and where
    it lies (tests, unless the question is about them; asides): lexical and vector
    rankings alike."""
    factor = 1.0
    if kind in (PREAMBLE, BLOCK):
        factor *= BLOCK_FACTOR
    elif kind == PART:
        factor *= 0.8
    elif kind == CLASS_HEADER:
        factor *= HEADER_FACTOR
    if not about_tests and is_test_path(path):
        factor *= TEST_FACTOR
    elif is_aside_path(path):
        factor *= ASIDE_FACTOR
    return factor


def fuse_sum(candidates: Sequence[Candidate], vectors: Mapping[int, float],
             weight: float) -> list[Candidate]:
    """The ranking's scores (the best one = 1) plus ``weight`` x each unit's scaled cosine
    (:func:`scored_ranking`); units found by vectors alone join with their vector share."""
    best = (candidates[0].score if candidates else 0.0) or 1.0
    scores = {c.unit_id: c.score / best for c in candidates}
    reasons = {c.unit_id: c.reasons for c in candidates}
    for unit_id, score in vectors.items():
        scores[unit_id] = scores.get(unit_id, 0.0) + weight * score
        reasons[unit_id] = (*reasons.get(unit_id, ()), f"vectors {score:.2f}")
    return [Candidate(i, scores[i], reasons[i])
            for i in sorted(scores, key=lambda i: (-scores[i], i))]


def _fence_language(path: str) -> str:
    return language_for(path) or "text"


def _unit_header(unit: UnitRow, language: str) -> str:
    prefix = comment_prefix(language) or "#"
    where = f"lines {unit.start_line}-{unit.end_line}"
    owner = f" (in {unit.parent})" if unit.parent else ""
    return f"{prefix} {where}{owner}"


def _truncate(text: str, tokens: int, language: str) -> str:
    kept: list[str] = []
    room = tokens - 12
    lines = text.split("\n")
    for line in lines:
        cost = estimate_tokens(line) + 1
        if cost > room:
            break
        kept.append(line)
        room -= cost
    prefix = comment_prefix(language) or "#"
    kept.append(f"{prefix} ... ({len(lines) - len(kept)} more lines)")
    return "\n".join(kept)


INTRO = "Code from the repository (workspace {name}) that may be relevant:"


def assemble_context(
    candidates: Sequence[Candidate],
    units: Mapping[int, UnitRow],
    budget_tokens: int,
    *,
    workspace: str = "",
) -> Retrieved:
    """Put the best units in ``budget_tokens``: whole first, grouped by file, then signatures."""
    intro = INTRO.format(name=workspace or "?")
    if not candidates or budget_tokens <= estimate_tokens(intro) + 20:
        return Retrieved("", 0, budget_tokens, (), len(candidates))
    best = candidates[0].score
    # Relative to the best, but stacked boosts (named + traced) must not push out
    # what a plain match would keep.
    pool = [c for c in candidates if c.score >= MIN_SHARE_OF_BEST * min(best, 1.0)][:MAX_ITEMS]
    left = budget_tokens - estimate_tokens(intro) - 2
    chosen: dict[int, tuple[Candidate, str, bool]] = {}
    files_open: set[str] = set()

    def file_cost(path: str) -> int:
        # The path line and the fence around the file's units.
        return 0 if path in files_open else estimate_tokens(path) + 12

    for candidate in pool:
        unit = units[candidate.unit_id]
        header = _unit_header(unit, _fence_language(unit.path))
        cost = unit.tokens + estimate_tokens(header) + 2 + file_cost(unit.path)
        if cost <= left:
            left -= cost
            files_open.add(unit.path)
            chosen[candidate.unit_id] = (candidate, unit.text, True)
    if not chosen:
        candidate = pool[0]
        unit = units[candidate.unit_id]
        room = left - file_cost(unit.path) - estimate_tokens(_unit_header(unit, "python")) - 2
        if room >= _TRUNCATE_MIN_TOKENS:
            text = _truncate(unit.text, room, _fence_language(unit.path))
            left -= estimate_tokens(text) + file_cost(unit.path) + 20
            files_open.add(unit.path)
            chosen[candidate.unit_id] = (candidate, text, False)
    signatures: list[tuple[Candidate, str]] = []
    for candidate in pool:
        if candidate.unit_id in chosen:
            continue
        unit = units[candidate.unit_id]
        if unit.kind in (PREAMBLE, BLOCK):
            continue
        line = f"{unit.path}:{unit.start_line}: {unit.signature[:_SIGNATURE_CHARS]}"
        cost = estimate_tokens(line) + 1 + (4 if not signatures else 0)
        if cost > left:
            continue
        left -= cost
        signatures.append((candidate, line))

    text = _render(intro, chosen, signatures, units)
    items = [
        RetrievedItem(units[c.unit_id].path, units[c.unit_id].start_line, units[c.unit_id].end_line,
                      units[c.unit_id].name, units[c.unit_id].kind, c.score, c.reasons, whole)
        for c, _, whole in chosen.values()
    ] + [
        RetrievedItem(units[c.unit_id].path, units[c.unit_id].start_line, units[c.unit_id].end_line,
                      units[c.unit_id].name, units[c.unit_id].kind, c.score, c.reasons, False, True)
        for c, _ in signatures
    ]
    return Retrieved(text, estimate_tokens(text), budget_tokens, tuple(items), len(candidates))


def _render(intro: str, chosen: Mapping[int, tuple[Candidate, str, bool]],
            signatures: Sequence[tuple[Candidate, str]], units: Mapping[int, UnitRow]) -> str:
    if not chosen and not signatures:
        return ""
    by_file: dict[str, list[int]] = {}
    for unit_id in chosen:  # insertion order is rank order: the best file first
        by_file.setdefault(units[unit_id].path, []).append(unit_id)
    out = [intro, ""]
    for path, ids in by_file.items():
        language = _fence_language(path)
        fence = "````" if any("```" in chosen[i][1] for i in ids) else "```"
        out.append(path)
        out.append(f"{fence}{language if language != 'text' else ''}")
        for position, unit_id in enumerate(sorted(ids, key=lambda i: units[i].start_line)):
            if position:
                out.append("")
            out.append(_unit_header(units[unit_id], language))
            out.append(chosen[unit_id][1].rstrip("\n"))
        out.append(fence)
        out.append("")
    if signatures:
        out.append("Also defined there (signatures only):")
        out.extend(line for _, line in signatures)
    return "\n".join(out).rstrip("\n")


def rank_units(store: WorkspaceStore, question: str, *, expansion: float = 0.0,
               question_vector: Sequence[float] | None = None,
               vector_weight: float = VECTOR_WEIGHT,
               ) -> tuple[list[Candidate], dict[int, UnitRow]]:
    """Every candidate unit for ``question``, best first, and the units themselves
    (``expansion``: the weight of the feedback search; 0, the default, leaves it out;
    ``question_vector``: the question's embedding, fused with the units' vectors at
    ``vector_weight``; None, the default, ranks lexically)."""
    query = analyse(question)
    lexical = dict(store.search(fts_query(query.terms), LEXICAL_CANDIDATES))
    head = question.strip().split("\n", 1)[0]
    if HEAD_WEIGHT and head != question.strip():
        head_hits = dict(store.search(fts_query(analyse(head).terms), LEXICAL_CANDIDATES))
        _fuse(lexical, head_hits, HEAD_WEIGHT)
    if MODULE_WEIGHT and lexical:
        _search_modules(store, query, lexical)
    if expansion and lexical:
        _expand(store, query, lexical, expansion)
    wanted_names = set(query.names) | set(query.plain)
    defining = store.defining(wanted_names, limit=20) if wanted_names else {}
    named: dict[int, str] = {}
    for name, found_ids in defining.items():
        for unit_id in found_ids:
            # A code-form name outranks a plain word that happens to be a name too.
            if unit_id not in named or name in query.names:
                named[unit_id] = name
    traced: dict[int, int] = {}
    frames = query.frames
    if len(frames) > 2 * MAX_FRAMES_EACH_END:
        # Each frame costs reads: a huge paste keeps both ends (innermost first in
        # Java and JavaScript, last in Python), the middle says least.
        frames = frames[:MAX_FRAMES_EACH_END] + frames[-MAX_FRAMES_EACH_END:]
    for position, frame in enumerate(reversed(frames)):
        for unit_id in _frame_units(store, frame):
            traced.setdefault(unit_id, position)
    in_files: list[int] = []
    for path in query.paths[:5]:
        in_files.extend(store.units_of_file(path, limit=100))
    ids = set(lexical) | set(named) | set(traced) | set(in_files)
    units = store.units(ids)
    # Neighbours of the provisional best few: one more round of reads.
    provisional = rank(lexical, units, query, named=named, traced=traced, in_named_files=in_files)
    sources = [c.unit_id for c in provisional[:NEIGHBOUR_SOURCES]]
    callees = store.references_of(sources)
    callee_names = {name for names in callees.values() for name in names}
    graph_defining = (store.defining(callee_names, limit=MAX_NAME_DEFINITIONS + 1)
                      if callee_names else {})
    source_names = {own for i in sources if (own := units[i].name)}
    callers = store.callers_of(source_names, limit=3) if source_names else {}
    extra = {i for found in graph_defining.values() for i in found} | {
        i for found in callers.values() for i in found}
    units = {**units, **store.units(extra - set(units))}
    candidates = rank(lexical, units, query, named=named, traced=traced, in_named_files=in_files,
                      callees=callees, defining=graph_defining, callers=callers)
    if question_vector is not None and vector_weight:
        similarity = nearest(store.vector_blocks(), question_vector, VECTOR_CANDIDATES)
        units = {**units, **store.units(set(similarity) - set(units))}
        where = {i: (units[i].path, units[i].kind) for i in similarity if i in units}
        candidates = fuse_sum(candidates, scored_ranking(where, similarity, query.about_tests),
                              vector_weight)
    return candidates, units


def _fuse(lexical: dict[int, float], hits: Mapping[int, float], weight: float, *,
          reference: float | None = None) -> None:
    """Add a second search's scores to ``lexical`` (in place), its best worth ``weight``
    of the first search's best (of ``reference``, if given)."""
    top_all = (max(lexical.values(), default=0.0) if reference is None else reference) or 1.0
    top = max(hits.values(), default=0.0) or 1.0
    for unit_id, score in hits.items():
        lexical[unit_id] = lexical.get(unit_id, 0.0) + weight * score / top * top_all


def _search_modules(store: WorkspaceStore, query: Query, lexical: dict[int, float]) -> None:
    """Search again within each module the question names in words, fused into ``lexical``."""
    named = sorted(workspace_modules(store) & query.spoken)[:MAX_MODULES]
    anything = fts_query(query.terms)
    # Each module's search is weighed against the first search alone, so the order the
    # modules come in (and what the ones before fused) does not change its weight.
    reference = max(lexical.values(), default=0.0)
    for module in named:
        hits = store.search(f'path : "{module}" AND ({anything})', LEXICAL_CANDIDATES)
        if hits:
            _fuse(lexical, dict(hits), MODULE_WEIGHT, reference=reference)


def _expand(store: WorkspaceStore, query: Query, lexical: dict[int, float],
            weight: float) -> None:
    """Add the feedback search's scores to ``lexical`` (in place), its best worth ``weight``
    of the first search's best."""
    top_all = max(lexical.values())
    sources = sorted(lexical, key=lambda i: (-lexical[i], i))[:EXPANSION_SOURCES]
    found = store.units(sources)
    weights = feedback_words([(lexical[i] / top_all, found[i].text)
                              for i in sources if i in found], set(query.terms))
    total, frequencies = store.document_frequencies(weights)
    extra = expansion_terms(weights, frequencies, total)
    hits = dict(store.search(fts_query(extra), LEXICAL_CANDIDATES)) if extra else {}
    _fuse(lexical, hits, weight)


def retrieve(store: WorkspaceStore, question: str, budget_tokens: int, *,
             expansion: float = 0.0, question_vector: Sequence[float] | None = None,
             ) -> Retrieved:
    """Search ``store`` for ``question`` and assemble the result into ``budget_tokens``
    (with the units' vectors too when ``question_vector`` is given)."""
    started = time.perf_counter()
    with store.reading():
        candidates, units = rank_units(store, question, expansion=expansion,
                                       question_vector=question_vector)
    result = assemble_context(candidates, units, budget_tokens, workspace=store.name)
    return attrs.evolve(result, elapsed_ms=(time.perf_counter() - started) * 1000.0,
                        vectors=question_vector is not None)


def _frame_units(store: WorkspaceStore, frame: Frame) -> list[int]:
    """Units at a frame's line: try the path as printed, then shorter tails of it (an
    absolute path from another machine ends with the repository path)."""
    parts = [p for p in frame.path.replace("\\", "/").split("/") if p and p not in (".", "..")]
    for start in range(len(parts)):
        found = store.units_of_file("/".join(parts[start:]), frame.line, limit=3)
        if found:
            return found
    return []
