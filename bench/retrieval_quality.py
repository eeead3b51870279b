"""Retrieval quality on real bug-fix history: does the changed function reach the prompt, whole?

    python bench/retrieval_quality.py [--repo PATH ...] [--max-cases 60] [--budget 1500] [--json F]

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
  BM25 over FTS5 plus structure, assembled whole-definitions-first.

Scores: *whole* (share of the changed definitions whose full text is in the
assembled context; per case, then averaged), *any whole* (cases with at least
one), and recall@5 of definitions for the two ranked-definition systems.
Default repositories: this one, and pallets/werkzeug when a clone is at
``/work/.mirror/pallets+werkzeug/repo`` (or pass ``--repo``). Bounded: cases
are capped per repository; the whole run takes a minute or two.
"""

from __future__ import annotations

import argparse
import json
import math
import re
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

from cerebrum.prompt.tokens import estimate_tokens
from cerebrum.workspace.extract import Definition, extract_file, language_for, words
from cerebrum.workspace.retrieve import assemble_context, is_test_path, rank_units
from cerebrum.workspace.store import ManifestEntry, WorkspaceStore, sha256_hex

WERKZEUG = Path("/work/.mirror/pallets+werkzeug/repo")
BUG_CUES = re.compile(r"\b(fix(es|ed)?|bug|crash|broke|broken|wrong|incorrect|regression|"
                      r"never|was cut|returns early|leak|error when|fails?|failing)\b", re.IGNORECASE)
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
                    stripped, re.IGNORECASE):
            continue
        lines.append(stripped)
    text = "\n".join(lines).strip()
    return re.sub(r"\(#\d+\)", "", text).strip()


_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", re.MULTILINE)


def _changed_old_lines(git: Git, parent: str, commit: str, path: str) -> list[tuple[int, int]]:
    """Old-side line spans a commit touched in ``path`` ((line, 0) for a pure insertion after line)."""
    diff = git.run("diff", "-U0", parent, commit, "--", path)
    spans = []
    for match in _HUNK_RE.finditer(diff):
        start, count = int(match.group(1)), int(match.group(2) or "1")
        spans.append((start, count))
    return spans


def _units_touched(units: Sequence[Definition], spans: Sequence[tuple[int, int]]) -> list[Definition]:
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
        for document, length in zip(self.documents, self.lengths):
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


# --- running ----------------------------------------------------------------

@attrs.define
class Score:
    whole: float = 0.0
    any_whole: int = 0
    recall5: float = 0.0
    cases: int = 0

    def add(self, truth: Sequence[Truth], text: str, top5: Sequence[tuple[str, int]] | None) -> bool:
        kept = [t.text.strip() in text for t in truth]
        self.whole += sum(kept) / len(truth)
        self.any_whole += any(kept)
        if top5 is not None:
            self.recall5 += sum((t.path, t.start_line) in top5 for t in truth) / len(truth)
        self.cases += 1
        return any(kept)

    def row(self, name: str, ranked: bool) -> dict[str, object]:
        n = max(1, self.cases)
        return {"system": name, "whole": round(self.whole / n, 3),
                "any_whole": round(self.any_whole / n, 3),
                "recall@5": round(self.recall5 / n, 3) if ranked else None}


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


def evaluate(repo_path: Path, name: str, max_cases: int, budget: int,
             workdir: Path) -> dict[str, Any]:
    git = Git(repo_path)
    try:
        cases = mine_cases(git, name, max_cases, budget)
        cases.reverse()  # oldest first: each index is a small step from the last
        store = WorkspaceStore.create(workdir / f"{name}.sqlite", name)
        scores = {"file-bm25": Score(), "def-bm25": Score(), "workspace": Score()}
        retrieval_ms: list[float] = []
        reindex: list[tuple[int, float]] = []
        units_cache: dict[str, list[Definition]] = {}
        examples: list[dict[str, object]] = []
        for case in cases:
            tree = git.tree(case.parent)
            reindex.append(sync(store, git, tree))
            files = {p: git.blob(sha).decode("utf-8", "replace") for p, sha in tree.items()}
            units: list[tuple[str, Definition]] = []
            for path, sha in tree.items():
                if sha not in units_cache:
                    extracted = extract_file(path, files[path])
                    units_cache[sha] = list(extracted.definitions) if extracted else []
                units.extend((path, u) for u in units_cache[sha]
                             if u.kind in DEFINITION_KINDS and u.name)
            scores["file-bm25"].add(case.truth, file_bm25(files, case.question, budget), None)
            text, top = def_bm25(units, case.question, budget)
            scores["def-bm25"].add(case.truth, text, top)
            started = time.perf_counter()
            candidates, rows = rank_units(store, case.question)
            assembled = assemble_context(candidates, rows, budget, workspace=name)
            retrieval_ms.append((time.perf_counter() - started) * 1000)
            ours_top = [(rows[c.unit_id].path, rows[c.unit_id].start_line) for c in candidates
                        if rows[c.unit_id].kind in DEFINITION_KINDS][:5]
            hit = scores["workspace"].add(case.truth, assembled.text, ours_top)
            examples.append({"commit": case.commit[:10], "question": case.question.split("\n")[0],
                             "truth": [f"{t.path}:{t.name}" for t in case.truth], "hit": hit})
        steps = reindex[1:]
        return {
            "repo": name, "cases": len(cases),
            "scores": [scores["file-bm25"].row("file-bm25", False),
                       scores["def-bm25"].row("def-bm25", True),
                       scores["workspace"].row("workspace", True)],
            "retrieval_ms_mean": round(sum(retrieval_ms) / max(1, len(retrieval_ms)), 2),
            "retrieval_ms_max": round(max(retrieval_ms, default=0.0), 2),
            "first_index_s": round(reindex[0][1], 2) if reindex else None,
            "first_index_files": reindex[0][0] if reindex else None,
            "step_reindex_files_mean": round(sum(n for n, _ in steps) / max(1, len(steps)), 1),
            "step_reindex_s_mean": round(sum(s for _, s in steps) / max(1, len(steps)), 3),
            "examples": examples,
        }
    finally:
        git.close()


def _repos(args: argparse.Namespace) -> Iterator[tuple[Path, str]]:
    if args.repo:
        for spec in args.repo:
            path = Path(spec)
            yield path, path.resolve().name
        return
    yield ROOT, "cerebrum"
    if WERKZEUG.exists():
        yield WERKZEUG, "werkzeug"
    else:
        print(f"(no werkzeug clone at {WERKZEUG}: pass --repo PATH to add one)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", action="append", help="a git repository (repeatable)")
    parser.add_argument("--max-cases", type=int, default=60, help="cases per repository")
    parser.add_argument("--budget", type=int, default=1500, help="token budget (estimated)")
    parser.add_argument("--json", type=Path, help="write the full results here")
    parser.add_argument("--examples", action="store_true", help="print every case's outcome")
    args = parser.parse_args(argv)
    results = []
    total: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for path, name in _repos(args):
            started = time.perf_counter()
            result = evaluate(path, name, args.max_cases, args.budget, Path(workdir))
            result["seconds"] = round(time.perf_counter() - started, 1)
            results.append(result)
            print(f"\n{name}: {result['cases']} cases at a {args.budget}-token budget "
                  f"({result['seconds']} s)")
            for row in result["scores"]:
                recall = f"{row['recall@5']:.2f}" if row["recall@5"] is not None else "  - "
                print(f"  {row['system']:10} whole {row['whole']:.2f}  any-whole "
                      f"{row['any_whole']:.2f}  recall@5 {recall}")
                weight = result["cases"]
                acc = total.setdefault(str(row["system"]), [0.0, 0.0, 0.0])
                acc[0] += row["whole"] * weight
                acc[1] += (row["recall@5"] or 0.0) * weight
                acc[2] += weight
            print(f"  retrieval {result['retrieval_ms_mean']} ms mean, "
                  f"{result['retrieval_ms_max']} ms max; first index {result['first_index_files']}"
                  f" files in {result['first_index_s']} s; then "
                  f"{result['step_reindex_files_mean']} files re-parsed per case in "
                  f"{result['step_reindex_s_mean']} s")
            if args.examples:
                for example in result["examples"]:
                    print(f"    {'HIT ' if example['hit'] else 'miss'} {example['commit']} "
                          f"{example['question'][:70]!r} -> {example['truth']}")
    if total:
        print("\nall repositories (weighted by cases):")
        whole = {k: v[0] / max(1.0, v[2]) for k, v in total.items()}
        for system, (w, r, n) in total.items():
            print(f"  {system:10} whole {w / max(1.0, n):.2f}  recall@5 {r / max(1.0, n):.2f}")
        ours, defs, files = whole.get("workspace", 0), whole.get("def-bm25", 0), whole.get(
            "file-bm25", 0)
        print(f"  workspace / def-bm25 = {ours / defs if defs else float('inf'):.2f}x (target 1.4x)"
              f", workspace / file-bm25 = {ours / files if files else float('inf'):.2f}x "
              f"(target > 5x), workspace whole {ours:.2f} (target >= 0.6)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
