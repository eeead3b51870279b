"""Retrieval: reading the question, ranking, and the budgeted assembly."""

from __future__ import annotations

from pathlib import Path

import pytest

import cerebrum.workspace.retrieve as retrieve_module
from cerebrum.prompt.tokens import estimate_tokens
from cerebrum.workspace.extract import words
from cerebrum.workspace.retrieve import (
    Candidate,
    Query,
    analyse,
    assemble_context,
    expansion_terms,
    feedback_words,
    fts_query,
    module_names,
    rank,
    retrieve,
    workspace_modules,
)
from cerebrum.workspace.store import UnitRow, WorkspaceStore, delete_workspace
from tests.workspace.repo import FILES, as_bytes, index


@pytest.fixture
def store(tmp_path: Path) -> WorkspaceStore:
    workspace = WorkspaceStore.create(tmp_path / "demo.sqlite", "demo")
    index(workspace, as_bytes())
    return workspace


def test_the_question_is_read_into_terms_names_frames_and_paths() -> None:
    query = analyse('Why does `fetch_with_retry` loop? Store.load and parseArgs() too.\n'
                    'Traceback (most recent call last):\n'
                    '  File "/home/u/proj/net/retry.py", line 14, in fetch_with_retry\n'
                    'see app/main.py:5')
    assert {"fetch_with_retry", "Store", "load", "parseArgs"} <= query.names
    assert ("Store", "load") in query.qualified
    assert [(f.path, f.line) for f in query.frames] == [("/home/u/proj/net/retry.py", 14),
                                                        ("app/main.py", 5)]
    assert "app/main.py" in query.paths
    assert "loop" in query.terms and "why" not in query.terms
    assert not query.about_tests and analyse("the test for it fails").about_tests


def test_prose_pairs_are_tried_joined() -> None:
    assert "contentlength" in analyse("the content length is wrong").terms


def test_stopwords_are_dropped_in_their_stemmed_form_too() -> None:
    # "this" stems to "thi", "issue" to "issu", "does" to "doe": none of them says what
    # the question is about.
    terms = analyse("This fixes the issue where it does not parse headers").terms
    assert not {"thi", "fixe", "issu", "doe"} & set(terms)
    assert {"pars", "header"} <= set(terms)


def test_fts_queries_cannot_inject_syntax() -> None:
    assert fts_query(['a"b', "c"]) == '"ab" OR "c"'
    assert fts_query(['"']) == ""


def unit(unit_id: int, name: str, tokens: int = 50, path: str = "m.py", kind: str = "definition",
         parent: str | None = None) -> UnitRow:
    # About ``tokens`` by the optimiser's own estimate, whatever its per-line rate.
    text = f"def {name}():\n"
    while estimate_tokens(text + "    x = 1\n") <= tokens:
        text += "    x = 1\n"
    return UnitRow(unit_id, path, unit_id * 10, unit_id * 10 + 5, kind, name, parent,
                   f"def {name}():", text, estimate_tokens(text))


def test_rank_puts_named_and_traced_units_first_and_tests_last() -> None:
    units = {1: unit(1, "alpha"), 2: unit(2, "beta"), 3: unit(3, "gamma", path="tests/test_m.py"),
             4: unit(4, "delta"), 5: unit(5, "imports", kind="preamble")}
    query = Query(("x",), frozenset({"beta"}), frozenset(), frozenset(), (), (), False)
    lexical = {1: 10.0, 2: 2.0, 3: 9.0, 4: 1.0, 5: 9.5}
    ranked = rank(lexical, units, query, named={2: "beta"}, traced={4: 0})
    order = [c.unit_id for c in ranked]
    assert order[:2] == [4, 2]  # the traceback's frame, then the named definition
    assert order.index(1) < order.index(3) and order.index(1) < order.index(5)
    assert "traceback frame" in ranked[0].reasons and "defines beta" in ranked[1].reasons


def test_rank_lifts_a_rare_callee_but_not_a_common_name() -> None:
    units = {1: unit(1, "top"), 2: unit(2, "helper"), 3: unit(3, "copy"), 4: unit(4, "other")}
    query = Query(("x",), frozenset(), frozenset(), frozenset(), (), (), False)
    ranked = rank({1: 5.0, 4: 1.0}, units, query, callees={1: ["helper", "copy"]},
                  defining={"helper": [2], "copy": [3, 10, 11, 12]})
    scores = {c.unit_id: c.score for c in ranked}
    assert 2 in scores and 3 not in scores


def test_assembly_is_whole_first_within_the_budget() -> None:
    units = {1: unit(1, "big", tokens=900), 2: unit(2, "small", tokens=100),
             3: unit(3, "huge", tokens=5000), 4: unit(4, "last", tokens=100)}
    candidates = [Candidate(3, 3.0, ()), Candidate(1, 2.0, ()), Candidate(2, 1.0, ()),
                  Candidate(4, 0.9, ())]
    for budget in (300, 1100, 1500):
        result = assemble_context(candidates, units, budget, workspace="demo")
        assert estimate_tokens(result.text) <= budget
        whole = [item.name for item in result.items if item.whole]
        assert "huge" not in whole
        for item in result.items:
            if item.whole:
                assert next(u.text for u in units.values() if u.name == item.name) in result.text
    result = assemble_context(candidates, units, 1500, workspace="demo")
    assert [i.name for i in result.items if i.whole] == ["big", "small", "last"]
    assert any(i.signature_only and i.name == "huge" for i in result.items)
    # Nothing fits whole: the best is cut to its head rather than sending nothing.
    cut = assemble_context([Candidate(3, 1.0, ())], units, 400)
    assert cut.items and not cut.items[0].whole and "more lines" in cut.text
    assert estimate_tokens(cut.text) <= 400
    assert assemble_context([], units, 1500).text == ""


def test_a_described_function_is_found_without_its_name(store: WorkspaceStore) -> None:
    result = retrieve(store, "why does it keep asking the server again when it answers "
                             "service unavailable?", 400)
    assert result.items and result.items[0].name == "fetch_with_retry"
    assert "def fetch_with_retry" in result.text and "net/retry.py" in result.text
    assert estimate_tokens(result.text) <= 400
    slug = retrieve(store, "make a URL-safe version of a title", 300)
    assert slug.items[0].name == "slugify"


def test_a_traceback_points_at_its_file_and_line(store: WorkspaceStore) -> None:
    result = retrieve(store, 'Traceback (most recent call last):\n'
                             '  File "/srv/build/app/main.py", line 5, in run\n'
                             'AttributeError: text', 600)
    assert result.items[0].name == "run" and "traceback frame" in result.items[0].reasons
    # Its callee comes along.
    assert "fetch_with_retry" in [item.name for item in result.items]


def test_nothing_relevant_retrieves_nothing_costly(store: WorkspaceStore) -> None:
    result = retrieve(store, "zzqx", 1000)
    assert result.text == "" and result.items == ()


def test_feedback_words_are_weighted_by_hit_and_rarity() -> None:
    weights = feedback_words([(1.0, "def expire(ttl): return ttl + ttl"), (0.5, "ttl = self")],
                             asked={"expir"})
    # Not what was asked, not a stopword; "self" stays, for its rarity to judge.
    assert "expir" not in weights and "return" not in weights and "self" in weights
    assert weights["ttl"] > 0 and weights["ttl"] == max(weights.values())
    # Rarity decides between equal weights; a word no other unit has finds nothing new.
    terms = expansion_terms({"ttl": 0.5, "none": 0.5, "once": 0.9},
                            {"ttl": 3, "none": 900, "once": 1}, total=1000)
    assert terms == ["ttl", "none"]


SWEEP = {"net/sweep.py": '''def drop_outdated(items, now):
    """Forget what has passed its deadline."""
    for key, (value, expires) in list(items.items()):
        if expires <= now:
            del items[key]
'''}


def test_expansion_brings_in_what_the_best_hits_share(tmp_path: Path) -> None:
    store = WorkspaceStore.create(tmp_path / "sweep.sqlite", "sweep")
    index(store, as_bytes({**FILES, **SWEEP}))
    question = "the cache keeps stale entries"
    plain = retrieve(store, question, 1500)
    assert plain.items and "drop_outdated" not in [item.name for item in plain.items]
    # None of the question's words is in drop_outdated; "expires" and "items" are in the
    # cache it found first.
    expanded = retrieve(store, question, 1500, expansion=0.5)
    assert expanded.items[0].name == plain.items[0].name
    assert "drop_outdated" in [item.name for item in expanded.items]
    assert estimate_tokens(expanded.text) <= 1500


def test_the_question_names_modules_and_special_methods_in_words() -> None:
    spoken = analyse("The debugger's reloader breaks the constructor").spoken
    assert {"debug", "reload", "__init__", "__new__"} <= spoken
    assert "__repr__" not in spoken
    # Stopwords are still words the question used: "file system cache" spells a class.
    assert set(words("file system cache")) <= analyse("the file system cache").spoken


def test_module_names_are_one_word_stems_of_source_files() -> None:
    names = module_names(["pkg/_reloader.py", "pkg/debug/__init__.py", "pkg/form_parser.py",
                          "tests/test_routing.py", "pkg/io.py", "src/lib.rs"])
    assert names == {"reloader", "debug"}


def test_rank_lifts_members_of_a_described_class_and_named_special_methods() -> None:
    units = {1: unit(1, "pop", parent="Stack"), 2: unit(2, "pop", parent="MultiDict"),
             3: unit(3, "_prune", parent="FileSystemCache"), 4: unit(4, "_prune", parent="Cache"),
             5: unit(5, "__init__", parent="Parser"), 6: unit(6, "feed", parent="Parser")}
    lexical = {i: 1.0 for i in units}

    def first_of(question: str, among: set[int]) -> Candidate:
        ranked = rank(lexical, units, analyse(question))
        return next(c for c in ranked if c.unit_id in among)

    assert first_of("multidict pop loses items", {1, 2}).unit_id == 2
    assert "member of MultiDict, described" in first_of("multidict pop", {1, 2}).reasons
    assert first_of("the file system cache grows forever", {3, 4}).unit_id == 3
    assert first_of("the parser's constructor ignores options", {5, 6}).unit_id == 5
    # One word is no class description: "cache" alone lifts neither.
    assert not any("described" in why for why in first_of("the cache grows", {3, 4}).reasons)


RELOADER = {
    "serve/reloader.py": '''def run_child(argv):
    """Start the child process with these arguments."""
    return spawn(argv)
''',
    "serve/spawn.py": '''def restart_process(args, wrong=False):
    """Restart a process with the given arguments again, restarting it cleanly."""
    return args, wrong
''',
}


def test_a_module_named_in_words_is_searched_on_its_own(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    store = WorkspaceStore.create(tmp_path / "reload.sqlite", "reload")
    index(store, as_bytes(RELOADER))
    question = "the reloader restarts the child process with the wrong arguments"
    found = retrieve(store, question, 1500)
    assert found.items[0].name == "run_child"
    monkeypatch.setattr(retrieve_module, "MODULE_WEIGHT", 0.0)
    assert retrieve(store, question, 1500).items[0].name == "restart_process"


def test_module_names_are_read_once_per_version_of_the_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cached.sqlite"
    store = WorkspaceStore.create(path, "cached")
    index(store, as_bytes(RELOADER))
    reads: list[str] = []
    paths = WorkspaceStore.paths

    def counted(self: WorkspaceStore) -> list[str]:
        reads.append(self.name)
        return paths(self)

    monkeypatch.setattr(WorkspaceStore, "paths", counted)
    assert "reloader" in workspace_modules(store)
    assert "reloader" in workspace_modules(WorkspaceStore(path, "cached"))  # a new handle
    assert len(reads) == 1
    # A re-index (a commit) is a new version: the new module is seen.
    index(store, as_bytes({**RELOADER, "serve/debugger.py": "def trace(frame):\n    pass\n"}))
    assert "debugger" in workspace_modules(store)
    assert len(reads) == 2
    # Deleted and made again, a workspace starts at the same generation: still a new version.
    other = tmp_path / "again.sqlite"
    index(WorkspaceStore.create(other, "again"), as_bytes(RELOADER))
    assert "reloader" in workspace_modules(WorkspaceStore(other, "again"))
    delete_workspace(other)
    again = WorkspaceStore.create(other, "again")
    index(again, as_bytes({"web/router.py": "def route(path):\n    return path\n"}))
    assert workspace_modules(again) == {"router"}


def test_stopwords_that_are_parts_of_names_still_join_their_neighbour() -> None:
    terms = analyse("Prevent line statements eating newlines; the call blocks too").terms
    assert {"linestatement", "linestatements", "callblock"} <= set(terms)
    assert "theline" not in terms and "thecall" not in terms


class _TwoModules:
    """Just enough of a store for the module searches: two modules, canned hits."""

    path = Path("/nowhere/two-modules.sqlite")

    def version(self) -> tuple[str, int]:
        return "fake", 1

    def paths(self) -> list[str]:
        return ["app/debugger.py", "app/reloader.py"]

    def search(self, query: str, limit: int) -> list[tuple[int, float]]:
        # The debugger's search finds the first search's best again; the reloader's another.
        return [(1, 4.0)] if query.startswith('path : "debugger"') else [(2, 2.0)]


def test_each_module_searched_is_weighed_against_the_first_search_alone() -> None:
    lexical = {1: 10.0}
    query = analyse("the debugger and the reloader both restart the process")
    retrieve_module._search_modules(_TwoModules(), query, lexical)  # type: ignore[arg-type]
    # Each module's best is worth MODULE_WEIGHT of the first search's best (10), whatever
    # the module searched before it added to that best.
    assert lexical == {1: 10.0 + 5.0, 2: 5.0}
