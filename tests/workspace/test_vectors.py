"""Workspace vectors in the store and in the ranking (the vectors here are made up; the
real model's are in tests/orchestrator/test_workspace_vectors.py)."""

from __future__ import annotations

import hashlib
import math
import random
import sqlite3
from pathlib import Path

import pytest

from cerebrum.workspace.retrieve import (
    VECTOR_CANDIDATES,
    Candidate,
    fuse_sum,
    rank_units,
    scored_ranking,
)
from cerebrum.workspace.store import SCHEMA_VERSION, WorkspaceStore, workspace_path
from cerebrum.workspace.vectors import decode, encode, nearest, text_digest
from tests.workspace.repo import as_bytes, index

MODEL = "made-up"


def vector_of(text: str, width: int = 16) -> list[float]:
    """A vector that depends on the text alone (its hash), as a model's would."""
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    rng = random.Random(seed)
    return [rng.uniform(-1, 1) for _ in range(width)]


def fill(store: WorkspaceStore, model: str = MODEL) -> list[str]:
    """Embed what the store asks for, as the orchestrator's fill does; the texts embedded."""
    embedded: list[str] = []
    while todo := store.units_to_embed(model, 3):
        embedded += [text for _, text in todo]
        assert store.put_vectors(model, [(i, text_digest(t), encode(vector_of(t)))
                                         for i, t in todo]) == len(todo)
    return embedded


@pytest.fixture
def store(tmp_path: Path) -> WorkspaceStore:
    made = WorkspaceStore.create(workspace_path(tmp_path, "owner", "demo"), "demo")
    index(made, as_bytes())
    return made


def vector_count(store: WorkspaceStore) -> int:
    with sqlite3.connect(store.path) as db:
        return int(db.execute("SELECT count(*) FROM unit_vector").fetchone()[0])


def test_vectors_are_kept_per_unit_and_go_with_their_unit(store: WorkspaceStore) -> None:
    before = store.status()
    assert (before.vectors, before.vector_model) == (0, None)
    assert before.embeddable == 7  # every unit but the preambles
    embedded = fill(store)
    assert len(embedded) == 7 and any(t.startswith("net/retry.py backoff_delay\n")
                                      for t in embedded)
    after = store.status()
    assert (after.vectors, after.vector_model) == (7, MODEL)
    assert store.vector_model() == MODEL and fill(store) == []

    files = as_bytes()
    del files["net/cache.py"]  # the class (one unit, small) goes, and its vector with it
    index(store, files)
    assert store.status().vectors == 6 and vector_count(store) == 6


def test_a_changed_file_re_embeds_only_its_changed_units(store: WorkspaceStore) -> None:
    fill(store)
    changed = as_bytes()
    changed["text/words.py"] = changed["text/words.py"].replace(b"-\".join", b"_\".join")
    index(store, changed)
    status = store.status()
    assert status.vectors == status.embeddable - 1  # count_words kept its vector
    assert [t.split("\n")[0] for t in fill(store)] == ["text/words.py slugify"]


def test_another_model_replaces_every_vector(store: WorkspaceStore) -> None:
    fill(store)
    assert len(fill(store, "another")) == 7
    assert store.status().vector_model == "another" and vector_count(store) == 7


def test_a_unit_changed_while_it_was_embedded_gets_no_vector(store: WorkspaceStore) -> None:
    todo = store.units_to_embed(MODEL, 100)
    stale = [(i, text_digest(t + " (an older version)"), encode(vector_of(t))) for i, t in todo]
    assert store.put_vectors(MODEL, stale) == 0 and store.status().vectors == 0


def test_a_version_1_file_gets_the_vector_table_when_opened(tmp_path: Path) -> None:
    path = workspace_path(tmp_path, "owner", "old")
    index(WorkspaceStore.create(path, "old"), as_bytes())
    with sqlite3.connect(path) as db:  # what session 9's code made
        db.execute("DROP TABLE unit_vector")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    with pytest.raises(sqlite3.OperationalError):
        WorkspaceStore(path, "old").status()
    opened = WorkspaceStore.open(path, "old")
    assert opened.status().files == 5 and opened.status().embeddable == 7
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] \
            == SCHEMA_VERSION


def test_nearest_is_the_brute_force_top_k_read_a_block_at_a_time() -> None:
    rng = random.Random(7)
    rows = {i: [rng.uniform(-1, 1) for _ in range(8)] for i in range(1, 500)}
    question = [rng.uniform(-1, 1) for _ in range(8)]
    ids = sorted(rows)
    blocks = [(ids[s:s + 64], b"".join(encode(rows[i]) for i in ids[s:s + 64]))
              for s in range(0, len(ids), 64)]
    blocks.append(([1000], encode([1.0] * 4)))  # another model's width: skipped
    found = nearest(blocks, question, 10)

    def cosine(v: list[float]) -> float:
        unit = decode(encode(v))
        norm = math.sqrt(sum(x * x for x in question))
        return sum(a * b for a, b in zip(unit, question, strict=True)) / norm

    expected = sorted(ids, key=lambda i: -cosine(rows[i]))[:10]
    assert sorted(found) == sorted(expected)
    assert found[expected[0]] == pytest.approx(cosine(rows[expected[0]]), abs=1e-5)


def test_fusion_adds_the_scaled_cosine_and_vector_only_units_join() -> None:
    where = {i: (f"pkg/m{i}.py", "definition") for i in range(1, 6)}
    where[5] = ("tests/test_m.py", "definition")
    scaled = scored_ranking(where, {1: 0.9, 2: 0.5, 3: 0.1, 5: 0.9, 99: 1.0}, False)
    assert scaled == {1: 1.0, 2: 0.5, 3: 0.0, 5: 0.5}  # 99 unknown; a test counts half
    fused = fuse_sum([Candidate(2, 4.0, ("bm25 1.00",)), Candidate(4, 2.0, ("bm25 0.50",))],
                     scaled, 0.3)
    assert [(c.unit_id, round(c.score, 3)) for c in fused] == [
        (2, 1.15), (4, 0.5), (1, 0.3), (5, 0.15), (3, 0.0)]
    assert fused[0].reasons == ("bm25 1.00", "vectors 0.50")
    assert fused[2].reasons == ("vectors 1.00",)  # found by vectors alone
    assert VECTOR_CANDIDATES == 150


def test_rank_units_with_a_question_vector_fuses_the_stored_vectors(
        store: WorkspaceStore) -> None:
    fill(store)
    question = "the doubling backoff delay is capped"
    lexical, _ = rank_units(store, question)
    target = next(i for i, t in store_texts(store).items() if "slugify" in t.split("\n")[0])
    assert target not in {c.unit_id for c in lexical}
    # The question's vector is the slugify unit's own: the vectors bring it in.
    own = vector_of(store_texts(store)[target])
    fused, units = rank_units(store, question, question_vector=own)
    joined = next(c for c in fused if c.unit_id == target)
    assert joined.reasons == ("vectors 1.00",) and units[target].name == "slugify"
    assert rank_units(store, question, question_vector=own, vector_weight=0)[0] == lexical


def store_texts(store: WorkspaceStore) -> dict[int, str]:
    """Every embeddable unit's embedded text, by id (a fresh model asks for all of them)."""
    return dict(store.units_to_embed("a model never used", 1000))
