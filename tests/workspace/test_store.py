"""The SQLite store: index, re-index, delete; crashes mid-update; limits."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cerebrum.workspace import store as store_module
from cerebrum.workspace.extract import words
from cerebrum.workspace.retrieve import fts_query
from cerebrum.workspace.store import (
    Incomplete,
    Limits,
    WorkspaceError,
    WorkspaceStore,
    delete_workspace,
    list_workspaces,
    workspace_path,
)
from tests.workspace.repo import as_bytes, index, manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> WorkspaceStore:
    return WorkspaceStore.create(workspace_path(tmp_path, "owner", "demo"), "demo")


def names(store: WorkspaceStore, word: str) -> set[str | None]:
    """Names of the live units whose words include ``word``'s."""
    ids = [unit_id for unit_id, _ in store.search(fts_query(words(word)), 50)]
    return {unit.name for unit in store.units(ids).values()}


def test_index_reindex_and_delete_round_trip(tmp_path: Path, store: WorkspaceStore) -> None:
    files = as_bytes()
    assert sorted(index(store, files)) == sorted(files)
    status = store.status()
    assert status.files == 5 and status.generation == 1 and status.pending == 0
    assert status.definitions == 7 and status.languages == {"python": 5}
    assert "fetch_with_retry" in names(store, "retry")

    # Nothing changed: nothing is sent, nothing re-parsed.
    assert index(store, files) == []
    # One file changed, one removed, one added: only the changed and new travel.
    changed = dict(files)
    changed["text/words.py"] = b"def count_letters(text):\n    return len(text)\n"
    del changed["net/cache.py"]
    changed["net/pool.py"] = b"def open_pool(size):\n    return [None] * size\n"
    plan = store.begin(manifest(changed))
    assert sorted(plan.need) == ["net/pool.py", "text/words.py"] and plan.removed == 1
    store.stage([(p, changed[p]) for p in plan.need])
    result = store.commit()
    assert (result.files, result.removed, result.generation) == (2, 1, 3)
    assert "count_letters" in names(store, "letter") and not names(store, "slugify")
    assert not names(store, "expiring")
    assert store.hashes().keys() == changed.keys()

    assert list_workspaces(tmp_path, "owner") == ["demo"]
    assert delete_workspace(store.path) and not store.path.exists()
    assert list_workspaces(tmp_path, "owner") == []
    assert not delete_workspace(store.path)


def test_staged_files_are_never_served_and_commit_waits_for_all(store: WorkspaceStore) -> None:
    files = as_bytes()
    index(store, files)
    update = dict(files, **{"net/retry.py": b"def give_up_quickly():\n    return None\n"},
                  **{"net/extra.py": b"def extra_helper():\n    pass\n"})
    plan = store.begin(manifest(update))
    store.stage([("net/retry.py", update["net/retry.py"])])
    # Half an update: the old version is what is served.
    assert "fetch_with_retry" in names(store, "retry") and not names(store, "quickly")
    assert store.status().pending == 1 and store.status().staged == 1
    with pytest.raises(Incomplete) as refused:
        store.commit()
    assert refused.value.missing == ["net/extra.py"]
    assert "fetch_with_retry" in names(store, "retry")
    store.stage([("net/extra.py", update["net/extra.py"])])
    store.commit()
    assert names(store, "quickly") == {"give_up_quickly"} and not names(store, "backoff")
    assert sorted(plan.need) == ["net/extra.py", "net/retry.py"]


def test_a_failure_inside_a_batch_rolls_the_batch_back(store: WorkspaceStore,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    files = as_bytes()
    plan = store.begin(manifest(files))
    real = store_module.extract_file
    seen: list[str] = []

    def failing(path: str, text: str) -> object:
        seen.append(path)
        if len(seen) == 3:
            raise MemoryError("simulated")
        return real(path, text)

    monkeypatch.setattr(store_module, "extract_file", failing)
    with pytest.raises(MemoryError):
        store.stage([(p, files[p]) for p in plan.need])
    monkeypatch.setattr(store_module, "extract_file", real)
    assert store.status().staged == 0 and store.status().files == 0
    # The re-run finishes the job.
    assert sorted(index(store, files)) == sorted(files)
    assert store.status().files == 5


def test_a_process_killed_mid_update_leaves_the_old_index_and_a_rerun_finishes(
        store: WorkspaceStore) -> None:
    files = as_bytes()
    index(store, files)
    update = {path: data + b"\n# edited\n" for path, data in files.items()}
    # A real crash: another process stages two of five files, then dies without cleanup.
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from cerebrum.workspace.store import WorkspaceStore
        from tests.workspace.repo import manifest
        update = {update!r}
        store = WorkspaceStore(Path({str(store.path)!r}), "demo")
        plan = store.begin(manifest(update))
        store.stage([(p, update[p]) for p in plan.need[:2]])
        with store._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM unit")  # a write in flight when the process dies
            os._exit(9)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                            check=False)
    assert result.returncode == 9, result.stderr
    status = store.status()
    assert status.files == 5 and status.generation == 1  # the old index, whole
    assert status.staged == 2 and status.pending == 3
    assert "fetch_with_retry" in names(store, "retry")
    plan = store.begin(manifest(update))
    assert len(plan.need) == 3  # the two staged files are not sent again
    store.stage([(p, update[p]) for p in plan.need])
    store.commit()
    assert store.status().generation == 2
    assert store.hashes() == {entry.path: entry.sha256 for entry in manifest(update)}


def test_limits_and_bad_uploads_are_refused(tmp_path: Path) -> None:
    small = WorkspaceStore.create(tmp_path / "s.sqlite", "s",
                                  Limits(max_files=2, max_file_bytes=100, max_total_bytes=150))
    files = {"a.py": b"x = 1\n", "b.py": b"y = 2\n", "c.py": b"z = 3\n"}
    with pytest.raises(WorkspaceError, match="at most 2 files"):
        small.begin(manifest(files))
    with pytest.raises(WorkspaceError, match="larger than 100"):
        small.begin(manifest({"a.py": b"#" * 101}))
    with pytest.raises(WorkspaceError, match="150 bytes"):
        small.begin(manifest({"a.py": b"#" * 90, "b.py": b"#" * 90}))
    with pytest.raises(ValueError, match=r"\.\."):
        small.begin(manifest({"../a.py": b"x"}))
    small.begin(manifest({"a.py": b"x = 1\n"}))
    with pytest.raises(WorkspaceError, match="does not match"):
        small.stage([("a.py", b"x = 2\n")])
    with pytest.raises(WorkspaceError, match="not in the manifest"):
        small.stage([("b.py", b"y = 2\n")])


def test_document_frequencies_come_from_the_live_index(store: WorkspaceStore) -> None:
    index(store, as_bytes())
    total, found = store.document_frequencies(["retri", "ttl", "zzqx"])
    assert total == store.status().units
    # As many units as a search for the word finds.
    assert found["retri"] == len(store.search(fts_query(["retri"]), 100)) > 1
    assert found["ttl"] == 1 and "zzqx" not in found
    assert store.document_frequencies([]) == (total, {})
