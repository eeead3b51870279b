"""One workspace = one SQLite file: files with hashes, units (definitions), references, FTS5.

An update is three steps, so a crash anywhere leaves the served index whole
and a re-run finishes the job:

1. :meth:`WorkspaceStore.begin` records the client's *manifest* (every path
   with its SHA-256 and size) and answers which files it still needs: those
   whose hash matches neither the live version nor one already staged.
2. :meth:`WorkspaceStore.stage` parses a batch of files and inserts them as
   *staged* rows (``live = 0``), one transaction per batch. Retrieval reads
   live rows only, so staged files are never served.
3. :meth:`WorkspaceStore.commit`, one transaction: staged rows replace their
   live versions, live files missing from the manifest are dropped, the
   manifest is cleared. It refuses while a manifest file is still missing.

Each ``begin`` opens a new *update* (a token it answers with): ``stage`` and
``commit`` refuse where no update is open, and, given the token, where
another ``begin`` has replaced theirs since, so a retried commit cannot drop
every file, and two clients updating one workspace at once cannot publish
each other's half-finished work. Connections never create the file (only
:meth:`WorkspaceStore.create` does), so a workspace deleted while a request
was in flight is reported gone, not made again empty.

WAL lets retrieval read while an update writes. Connections are opened per
operation (cheap, and safe across the orchestrator's worker threads).
Inserts are batched per uploaded batch, so memory stays bounded by one batch
whatever the repository's size.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import attrs

from cerebrum.prompt.tokens import estimate_tokens
from cerebrum.workspace.extract import extract_file, path_words, word_text
from cerebrum.workspace.paths import check_name, check_path
from cerebrum.workspace.vectors import NOT_EMBEDDED, text_digest, unit_text

_LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = "2"
"""2 added ``unit_vector``; a version-1 file gets the table when it is opened."""
_MIGRATES_FROM = ("1",)
SUFFIX = ".sqlite"
# FTS5 column weights for bm25(): a word in a definition's name says far more
# about what it is than one in its body; its docstring is in between.
FTS_WEIGHTS = (6.0, 2.0, 1.0, 1.5)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS file (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    language TEXT,
    live INTEGER NOT NULL DEFAULT 0,
    UNIQUE (path, live)
);
CREATE TABLE IF NOT EXISTS unit (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    parent TEXT,
    signature TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS unit_file ON unit (file_id);
CREATE INDEX IF NOT EXISTS unit_name ON unit (name);
CREATE TABLE IF NOT EXISTS defines (unit_id INTEGER NOT NULL, name TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS defines_name ON defines (name);
CREATE INDEX IF NOT EXISTS defines_unit ON defines (unit_id);
CREATE TABLE IF NOT EXISTS ref (unit_id INTEGER NOT NULL, name TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ref_name ON ref (name);
CREATE INDEX IF NOT EXISTS ref_unit ON ref (unit_id);
CREATE VIRTUAL TABLE IF NOT EXISTS unit_fts USING fts5 (
    name, doc, body, path, tokenize = 'unicode61');
CREATE TABLE IF NOT EXISTS manifest (
    path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS unit_vector (
    unit_id INTEGER PRIMARY KEY, digest TEXT NOT NULL, vector BLOB NOT NULL);
"""
_NOT_EMBEDDED = ", ".join(f"'{kind}'" for kind in NOT_EMBEDDED)
_EMBED_SELECT = ("SELECT u.id, f.path, u.parent, u.name, u.text FROM unit u "
                 "JOIN file f ON f.id = u.file_id")
"""A unit's id and what :func:`unit_text` embeds of it: what is embedded and what a kept
vector is checked against are read alike."""
_VECTOR_BLOCK = 2048
"""Vectors read per block by the cosine search (384 float32 each: 3 MB a block)."""


class WorkspaceError(Exception):
    """A request the store cannot carry out; the message says why (a 4xx, not a bug)."""


class Gone(WorkspaceError):
    """The workspace's file is not there (deleted, maybe while this request ran)."""


class NoUpdate(WorkspaceError):
    """Staging or committing with no update open, or after another ``begin`` replaced it."""


class Incomplete(WorkspaceError):
    """Commit refused: manifest files are still missing."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(f"{len(missing)} file(s) of the manifest are not uploaded yet")
        self.missing = list(missing)


_T = TypeVar("_T")
_IN_BATCH = 500
"""Values bound in one ``IN (...)``: well under SQLite's limit on bound parameters."""


def _vector_model(db: sqlite3.Connection) -> str | None:
    """The model the workspace's vectors are of, as recorded (None: never embedded)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'vector_model'").fetchone()
    return None if row is None else str(row[0])


def _in_batches(values: Sequence[_T]) -> Iterator[tuple[list[_T], str]]:
    """``values`` in slices of ``_IN_BATCH``, each with its ``?,?,…`` placeholders."""
    for start in range(0, len(values), _IN_BATCH):
        part = list(values[start:start + _IN_BATCH])
        yield part, ",".join("?" * len(part))


@attrs.frozen
class Limits:
    """What one workspace may hold (settings of the orchestrator)."""

    max_files: int = 20_000
    max_file_bytes: int = 1024 * 1024
    max_total_bytes: int = 256 * 1024 * 1024


@attrs.frozen
class ManifestEntry:
    path: str
    sha256: str
    size: int


@attrs.frozen
class Plan:
    """What :meth:`WorkspaceStore.begin` found: files to upload, files that will go."""

    need: tuple[str, ...]
    unchanged: int
    removed: int
    update: str
    """The update this ``begin`` opened: ``stage`` and ``commit`` may name it."""


@attrs.frozen
class StageResult:
    files: int
    units: int


@attrs.frozen
class CommitResult:
    files: int
    """Files changed or added by this commit."""
    removed: int
    generation: int


@attrs.frozen
class Status:
    name: str
    files: int
    units: int
    definitions: int
    bytes: int
    languages: dict[str, int]
    generation: int
    indexed_at: float | None
    pending: int
    """Manifest files not yet uploaded (an update in progress or interrupted)."""
    staged: int
    embeddable: int = 0
    """Live units that get a vector when vectors are on (all but preambles and blocks)."""
    vectors: int = 0
    """Of those, the ones that have one."""
    vector_model: str | None = None
    """The model the vectors are of (None: never embedded)."""


@attrs.frozen
class UnitRow:
    """A live unit as retrieval sees it."""

    id: int
    path: str
    start_line: int
    end_line: int
    kind: str
    name: str | None
    parent: str | None
    signature: str
    text: str
    tokens: int


def sha256_hex(data: bytes) -> str:
    """The content hash the CLI and the store agree on."""
    return hashlib.sha256(data).hexdigest()


def workspace_path(root: Path, owner: str, name: str) -> Path:
    """``root/owner/name.sqlite`` (name and owner already checked)."""
    return root / owner / f"{check_name(name)}{SUFFIX}"


def list_workspaces(root: Path, owner: str) -> list[str]:
    """Names of the workspaces under ``root/owner``."""
    directory = root / owner
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in directory.iterdir()
                  if p.name.endswith(SUFFIX) and p.is_file())


def delete_workspace(path: Path) -> bool:
    """Remove a workspace's database and its WAL files; False when there was none."""
    existed = path.exists()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
    return existed


class WorkspaceStore:
    """One workspace's SQLite file. Methods are synchronous; call them off the event loop."""

    def __init__(self, path: Path, name: str, limits: Limits = Limits()) -> None:
        self.path = path
        self.name = name
        self.limits = limits
        self._reader: sqlite3.Connection | None = None

    @classmethod
    def create(cls, path: Path, name: str, limits: Limits = Limits()) -> WorkspaceStore:
        """Open the workspace, making its file and schema if new."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = cls(path, name, limits)
        with store._connect(create=True) as db:
            db.executescript(_SCHEMA)
            version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if version is None:
                # OR IGNORE: two first requests may create one workspace at once.
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?), ('generation', '0')",
                           (SCHEMA_VERSION,))
            elif version[0] in _MIGRATES_FROM:
                # The script above made the new tables; nothing else changed.
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
            elif version[0] != SCHEMA_VERSION:
                raise WorkspaceError(f"workspace {name} has schema {version[0]}; "
                                     f"delete it and index again")
            # A workspace deleted and made again starts at generation 0 again: this token
            # tells the two apart (see :meth:`version`).
            db.execute("INSERT OR IGNORE INTO meta VALUES ('instance', ?)", (uuid.uuid4().hex,))
        return store

    @classmethod
    def open(cls, path: Path, name: str, limits: Limits = Limits()) -> WorkspaceStore:
        """An existing workspace, its schema brought up to date first if it is older
        (a read when it is not)."""
        store = cls(path, name, limits)
        with store._connect() as db:
            try:
                row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            except sqlite3.OperationalError:  # no schema yet: a create cut short by a crash
                row = None
        return store if row is not None and row[0] == SCHEMA_VERSION else cls.create(
            path, name, limits)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Serve every read inside the block from one connection (a retrieval makes several)."""
        with self._connect() as db:
            self._reader = db
            try:
                yield
            finally:
                self._reader = None

    @contextlib.contextmanager
    def _connect(self, create: bool = False) -> Iterator[sqlite3.Connection]:
        if self._reader is not None:
            yield self._reader
            return
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode={'rwc' if create else 'rw'}"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
        except sqlite3.OperationalError:
            if self.path.exists():
                raise
            raise Gone(f"there is no workspace '{self.name}' (any more)") from None
        try:
            db.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a power cut may lose the last commit, never corrupt.
            db.execute("PRAGMA synchronous = NORMAL")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: writers queue, readers go on)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- updating ---------------------------------------------------------

    @staticmethod
    def check_manifest(manifest: Sequence[ManifestEntry], limits: Limits) -> None:
        """Raise unless ``manifest`` is one this store would take (before anything is made)."""
        if len(manifest) > limits.max_files:
            raise WorkspaceError(f"a workspace holds at most {limits.max_files} files; "
                                 f"the manifest lists {len(manifest)}")
        total = sum(entry.size for entry in manifest)
        if total > limits.max_total_bytes:
            raise WorkspaceError(f"a workspace holds at most {limits.max_total_bytes} bytes; "
                                 f"the manifest adds up to {total}")
        seen: set[str] = set()
        for entry in manifest:
            check_path(entry.path)
            if entry.path in seen:
                raise WorkspaceError(f"the manifest lists {entry.path} twice")
            seen.add(entry.path)
            if entry.size > limits.max_file_bytes:
                raise WorkspaceError(f"{entry.path} is larger than {limits.max_file_bytes} bytes")

    def begin(self, manifest: Sequence[ManifestEntry]) -> Plan:
        """Record the repository's manifest, opening a new update (any earlier one is
        replaced); answer which files must be uploaded."""
        self.check_manifest(manifest, self.limits)
        update = uuid.uuid4().hex
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('update', ?)", (update,))
            db.execute("DELETE FROM manifest")
            db.executemany("INSERT INTO manifest VALUES (?, ?, ?)",
                           ((e.path, e.sha256, e.size) for e in manifest))
            # Staged versions that no longer match the manifest are dead weight.
            stale = [row[0] for row in db.execute(
                "SELECT f.id FROM file f LEFT JOIN manifest m ON m.path = f.path "
                "WHERE f.live = 0 AND (m.path IS NULL OR m.sha256 != f.sha256)")]
            self._drop_files(db, stale)
            need = [row[0] for row in db.execute(
                "SELECT m.path FROM manifest m WHERE NOT EXISTS ("
                "SELECT 1 FROM file f WHERE f.path = m.path AND f.sha256 = m.sha256) "
                "ORDER BY m.path")]
            removed = db.execute(
                "SELECT count(*) FROM file f WHERE f.live = 1 AND NOT EXISTS ("
                "SELECT 1 FROM manifest m WHERE m.path = f.path)").fetchone()[0]
        return Plan(tuple(need), len(manifest) - len(need), removed, update)

    @staticmethod
    def _check_update(db: sqlite3.Connection, update: str | None) -> None:
        """Raise :class:`NoUpdate` unless an update is open (and is ``update``, if named)."""
        row = db.execute("SELECT value FROM meta WHERE key = 'update'").fetchone()
        if row is None:
            raise NoUpdate("no update is in progress: begin one first")
        if update is not None and update != row[0]:
            raise NoUpdate("another update of this workspace began since this one; "
                           "begin again")

    def stage(self, files: Iterable[tuple[str, bytes]], update: str | None = None) -> StageResult:
        """Parse and stage a batch of ``(path, content)``; each must match the manifest."""
        rows: list[tuple[str, str, int, str | None, list]] = []
        seen: set[str] = set()
        with self._connect() as db:
            self._check_update(db, update)
            for path, content in files:
                if path in seen:
                    raise WorkspaceError(f"{path} is in this batch twice")
                seen.add(path)
                expected = db.execute("SELECT sha256, size FROM manifest WHERE path = ?",
                                      (path,)).fetchone()
                if expected is None:
                    raise WorkspaceError(f"{path} is not in the manifest; begin an update first")
                digest = sha256_hex(content)
                if digest != expected[0] or len(content) != expected[1]:
                    raise WorkspaceError(f"{path}: content does not match the manifest's "
                                         "hash and size")
                # Parse outside the write transaction: readers and other batches go on.
                extracted = extract_file(path, content.decode("utf-8", "replace"))
                units = list(extracted.definitions) if extracted else []
                rows.append((path, digest, len(content),
                             extracted.language if extracted else None, units))
        units_total = 0
        with self._write() as db:
            self._check_update(db, update)  # again: a begin may have come while parsing
            for path, digest, size, language, units in rows:
                old = [r[0] for r in db.execute(
                    "SELECT id FROM file WHERE path = ? AND live = 0", (path,))]
                self._drop_files(db, old)
                file_id = db.execute(
                    "INSERT INTO file (path, sha256, size, language, live) VALUES (?, ?, ?, ?, 0)",
                    (path, digest, size, language)).lastrowid
                where = path_words(path)
                for unit in units:
                    unit_id = db.execute(
                        "INSERT INTO unit (file_id, start_line, end_line, kind, name, parent, "
                        "signature, text, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (file_id, unit.start_line, unit.end_line, unit.kind, unit.name,
                         unit.parent, unit.signature, unit.text,
                         estimate_tokens(unit.text))).lastrowid
                    db.executemany("INSERT INTO defines VALUES (?, ?)",
                                   ((unit_id, n) for n in unit.names))
                    db.executemany("INSERT INTO ref VALUES (?, ?)",
                                   ((unit_id, n) for n in unit.refs))
                    name_words = word_text(" ".join(n for n in (unit.parent, unit.name) if n))
                    db.execute("INSERT INTO unit_fts (rowid, name, doc, body, path) "
                               "VALUES (?, ?, ?, ?, ?)",
                               (unit_id, name_words, word_text(unit.doc),
                                word_text(unit.text), where))
                units_total += len(units)
        return StageResult(len(rows), units_total)

    def commit(self, update: str | None = None) -> CommitResult:
        """Make the staged files live and drop the removed ones, atomically; this closes
        the update."""
        with self._write() as db:
            self._check_update(db, update)
            missing = [row[0] for row in db.execute(
                "SELECT m.path FROM manifest m WHERE NOT EXISTS ("
                "SELECT 1 FROM file f WHERE f.path = m.path AND f.sha256 = m.sha256) "
                "ORDER BY m.path LIMIT 100")]
            if missing:
                raise Incomplete(missing)
            replaced = [row[0] for row in db.execute(
                "SELECT live.id FROM file live JOIN file staged ON staged.path = live.path "
                "WHERE live.live = 1 AND staged.live = 0")]
            gone = [row[0] for row in db.execute(
                "SELECT f.id FROM file f WHERE f.live = 1 AND NOT EXISTS ("
                "SELECT 1 FROM manifest m WHERE m.path = f.path)")]
            self._carry_vectors(db)
            self._drop_files(db, replaced + gone)
            changed = db.execute("UPDATE file SET live = 1 WHERE live = 0").rowcount
            db.execute("DELETE FROM manifest")
            db.execute("DELETE FROM meta WHERE key = 'update'")
            generation = int(db.execute(
                "SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]) + 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('indexed_at', ?)", (str(time.time()),))
        return CommitResult(changed, len(gone), generation)

    @staticmethod
    def _carry_vectors(db: sqlite3.Connection) -> None:
        """Give each staged unit the vector of the live unit it replaces when the two are
        the same text at the same place, so a changed file re-embeds only its changed
        units."""
        db.execute(
            "INSERT OR REPLACE INTO unit_vector (unit_id, digest, vector) "
            "SELECT new.id, v.digest, v.vector FROM file staged "
            "JOIN file live ON live.path = staged.path AND live.live = 1 "
            "JOIN unit new ON new.file_id = staged.id "
            "JOIN unit old ON old.file_id = live.id AND old.text = new.text "
            "AND old.name IS new.name AND old.parent IS new.parent "
            "JOIN unit_vector v ON v.unit_id = old.id WHERE staged.live = 0")

    @staticmethod
    def _drop_files(db: sqlite3.Connection, file_ids: Sequence[int]) -> None:
        for ids, marks in _in_batches(file_ids):
            units = f"SELECT id FROM unit WHERE file_id IN ({marks})"
            db.execute(f"DELETE FROM unit_vector WHERE unit_id IN ({units})", ids)
            db.execute(f"DELETE FROM unit_fts WHERE rowid IN ({units})", ids)
            db.execute(f"DELETE FROM defines WHERE unit_id IN ({units})", ids)
            db.execute(f"DELETE FROM ref WHERE unit_id IN ({units})", ids)
            db.execute(f"DELETE FROM unit WHERE file_id IN ({marks})", ids)
            db.execute(f"DELETE FROM file WHERE id IN ({marks})", ids)

    # --- reading ----------------------------------------------------------

    def status(self) -> Status:
        """Counts of the live index, and of an update in progress."""
        with self._connect() as db:
            files, size = db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM file WHERE live = 1").fetchone()
            units, definitions = db.execute(
                "SELECT count(*), coalesce(sum(u.kind IN ('definition', 'method', 'class_header')"
                " AND u.name IS NOT NULL), 0) FROM unit u JOIN file f ON f.id = u.file_id "
                "WHERE f.live = 1").fetchone()
            languages = {row[0] or "other": row[1] for row in db.execute(
                "SELECT language, count(*) FROM file WHERE live = 1 GROUP BY language")}
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            pending = db.execute(
                "SELECT count(*) FROM manifest m WHERE NOT EXISTS ("
                "SELECT 1 FROM file f WHERE f.path = m.path AND f.sha256 = m.sha256)").fetchone()[0]
            staged = db.execute("SELECT count(*) FROM file WHERE live = 0").fetchone()[0]
            embeddable, vectors = db.execute(
                "SELECT count(*), count(v.unit_id) FROM unit u JOIN file f ON f.id = u.file_id "
                "LEFT JOIN unit_vector v ON v.unit_id = u.id WHERE f.live = 1 "
                f"AND u.kind NOT IN ({_NOT_EMBEDDED})").fetchone()
        indexed_at = meta.get("indexed_at")
        return Status(self.name, files, units, definitions, size, languages,
                      int(meta.get("generation", 0)),
                      float(indexed_at) if indexed_at else None, pending, staged,
                      embeddable, vectors, meta.get("vector_model"))

    def hashes(self) -> dict[str, str]:
        """Live path → SHA-256 (what ``cerebrum index --status`` compares against)."""
        with self._connect() as db:
            return dict(db.execute("SELECT path, sha256 FROM file WHERE live = 1"))

    def version(self) -> tuple[str, int]:
        """What the live index is: this file's instance token and its generation. Every
        write that changes live rows is a commit, and every commit bumps the generation, so
        anything derived from the live rows may be cached under ``(path, version())``."""
        with self._connect() as db:
            meta = dict(db.execute(
                "SELECT key, value FROM meta WHERE key IN ('instance', 'generation')"))
        return meta.get("instance", ""), int(meta.get("generation", 0))

    def paths(self) -> list[str]:
        """Live paths (retrieval reads the module names a question may use from them)."""
        with self._connect() as db:
            return [row[0] for row in db.execute("SELECT path FROM file WHERE live = 1")]

    # --- vectors (optional: cerebrum.workspace.vectors) ----------------------

    def units_to_embed(self, model: str, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` live units without a vector of ``model``, with the text to embed
        (every embeddable unit when the vectors kept are another model's)."""
        with self._connect() as db:
            missing = "AND v.unit_id IS NULL " if _vector_model(db) == model else ""
            rows = db.execute(
                f"{_EMBED_SELECT} LEFT JOIN unit_vector v ON v.unit_id = u.id "
                f"WHERE f.live = 1 AND u.kind NOT IN ({_NOT_EMBEDDED}) {missing}"
                "ORDER BY u.id LIMIT ?", (limit,)).fetchall()
        return [(unit_id, unit_text(path, parent, name, text))
                for unit_id, path, parent, name, text in rows]

    def put_vectors(self, model: str, vectors: Sequence[tuple[int, str, bytes]]) -> int:
        """Keep ``(unit id, digest of the text embedded, vector)`` rows; how many were kept.

        A unit that changed or went while it was being embedded (an update committed
        meanwhile; its id may even be reused) gets nothing: the digest of its text
        now must be the one embedded. Vectors of another model are dropped first."""
        kept = 0
        with self._write() as db:
            if _vector_model(db) != model:
                db.execute("DELETE FROM unit_vector")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('vector_model', ?)", (model,))
            by_id = {unit_id: (digest, blob) for unit_id, digest, blob in vectors}
            for part, marks in _in_batches(list(by_id)):
                for unit_id, path, parent, name, text in db.execute(
                        f"{_EMBED_SELECT} WHERE f.live = 1 AND u.id IN ({marks})",
                        part).fetchall():
                    digest, blob = by_id[unit_id]
                    if text_digest(unit_text(path, parent, name, text)) == digest:
                        db.execute("INSERT OR REPLACE INTO unit_vector VALUES (?, ?, ?)",
                                   (unit_id, digest, blob))
                        kept += 1
        return kept

    def vector_model(self) -> str | None:
        """The model of the vectors kept, when there are any."""
        with self._connect() as db:
            has_any = db.execute("SELECT 1 FROM unit_vector LIMIT 1").fetchone() is not None
            return _vector_model(db) if has_any else None

    def vector_blocks(self) -> Iterator[tuple[list[int], bytes]]:
        """The live units' vectors, ``(ids, their vectors joined)`` a block at a time.

        Only live units ever have one (a staged unit gets its vector in the commit that
        makes it live), so the table is read alone, without a join."""
        with self._connect() as db:
            cursor = db.execute("SELECT unit_id, vector FROM unit_vector")
            while rows := cursor.fetchmany(_VECTOR_BLOCK):
                yield [row[0] for row in rows], b"".join(row[1] for row in rows)

    _UNIT_COLUMNS = ("u.id, f.path, u.start_line, u.end_line, u.kind, u.name, u.parent, "
                     "u.signature, u.text, u.tokens")

    def search(self, query: str, limit: int) -> list[tuple[int, float]]:
        """Live units matching the FTS5 ``query``, best first, with their BM25 (higher: better)."""
        if not query:
            return []
        weights = ", ".join(str(w) for w in FTS_WEIGHTS)
        with self._connect() as db:
            # Rank in FTS5 alone (a join per matching row costs more than the ranking),
            # then keep the live ones: staged rows are few, so a margin covers them.
            rows = db.execute(
                f"SELECT rowid, bm25(unit_fts, {weights}) AS score FROM unit_fts "
                "WHERE unit_fts MATCH ? ORDER BY score LIMIT ?",
                (query, limit + 50)).fetchall()
            ids = [row[0] for row in rows]
            live: set[int] = set()
            if ids:
                marks = ",".join("?" * len(ids))
                live = {row[0] for row in db.execute(
                    f"SELECT u.id FROM unit u JOIN file f ON f.id = u.file_id "
                    f"WHERE f.live = 1 AND u.id IN ({marks})", ids)}
        # SQLite's bm25() is negated so that ORDER BY ascending puts the best first.
        return [(row[0], -row[1]) for row in rows if row[0] in live][:limit]

    def document_frequencies(self, terms: Iterable[str]) -> tuple[int, dict[str, int]]:
        """How many units the index holds, and how many of them hold each of ``terms``
        (from FTS5's own vocabulary; staged rows count too, which an idf can bear)."""
        wanted = sorted(set(terms))
        found: dict[str, int] = {}
        with self._connect() as db:
            db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.unit_vocab "
                       "USING fts5vocab(main, unit_fts, row)")
            total = db.execute("SELECT count(*) FROM unit").fetchone()[0]
            for part, marks in _in_batches(wanted):
                found.update(db.execute(
                    f"SELECT term, doc FROM temp.unit_vocab WHERE term IN ({marks})", part))
        return total, found

    def units(self, ids: Iterable[int]) -> dict[int, UnitRow]:
        """Live units by id."""
        wanted = list(dict.fromkeys(ids))
        found: dict[int, UnitRow] = {}
        with self._connect() as db:
            for part, marks in _in_batches(wanted):
                for row in db.execute(
                        f"SELECT {self._UNIT_COLUMNS} FROM unit u JOIN file f ON f.id = u.file_id "
                        f"WHERE f.live = 1 AND u.id IN ({marks})", part):
                    found[row[0]] = UnitRow(*row)
        return found

    def defining(self, names: Iterable[str], limit: int = 50) -> dict[str, list[int]]:
        """Live units that define each name (a function, a method, a class kept whole)."""
        wanted = sorted(set(names))
        out: dict[str, list[int]] = {}
        if not wanted:
            return out
        with self._connect() as db:
            for part, marks in _in_batches(wanted):
                for name, unit_id in db.execute(
                        f"SELECT d.name, d.unit_id FROM defines d JOIN unit u ON u.id = d.unit_id "
                        f"JOIN file f ON f.id = u.file_id WHERE f.live = 1 AND d.name IN ({marks})"
                        f" LIMIT {int(limit) * len(part)}", part):
                    ids = out.setdefault(name, [])
                    if len(ids) < limit:
                        ids.append(unit_id)
        return out

    def references_of(self, unit_ids: Iterable[int]) -> dict[int, list[str]]:
        """The names each unit calls."""
        wanted = list(dict.fromkeys(unit_ids))
        out: dict[int, list[str]] = {}
        if not wanted:
            return out
        with self._connect() as db:
            for part, marks in _in_batches(wanted):
                for unit_id, name in db.execute(
                        f"SELECT unit_id, name FROM ref WHERE unit_id IN ({marks})", part):
                    out.setdefault(unit_id, []).append(name)
        return out

    def callers_of(self, names: Iterable[str], limit: int = 20) -> dict[str, list[int]]:
        """Live units that call each name."""
        out: dict[str, list[int]] = {}
        with self._connect() as db:
            for name in sorted(set(names)):
                out[name] = [row[0] for row in db.execute(
                    "SELECT r.unit_id FROM ref r JOIN unit u ON u.id = r.unit_id "
                    "JOIN file f ON f.id = u.file_id WHERE f.live = 1 AND r.name = ? LIMIT ?",
                    (name, limit))]
        return out

    def units_of_file(self, path_suffix: str, line: int | None = None,
                      limit: int = 200) -> list[int]:
        """Live units of the file whose path is, or ends with ``/``, ``path_suffix``
        (only the one at ``line``, if given)."""
        suffix = path_suffix.replace("\\", "/").lstrip("/")
        escaped = suffix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = ("SELECT u.id FROM unit u JOIN file f ON f.id = u.file_id WHERE f.live = 1 "
                 "AND (f.path = ? OR f.path LIKE ? ESCAPE '\\')")
        params: list[object] = [suffix, "%/" + escaped]
        if line is not None:
            query += " AND u.start_line <= ? AND u.end_line >= ?"
            params += [line, line]
        query += " ORDER BY u.start_line LIMIT ?"
        params.append(limit)
        with self._connect() as db:
            return [row[0] for row in db.execute(query, params)]
