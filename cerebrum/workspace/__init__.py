"""Workspaces: a repository indexed on the orchestrator, retrieved from per question.

:mod:`paths` (names and paths a client may use), :mod:`extract` (one file →
its definitions, references, docstrings and words, with the optimiser's
chunker), :mod:`store` (one SQLite file per workspace: FTS5, WAL, staged
uploads committed atomically), :mod:`retrieve` (lexical BM25 plus structure,
assembled whole-definitions-first into a token budget). Everything here is
synchronous; the orchestrator runs it in a thread.
"""
