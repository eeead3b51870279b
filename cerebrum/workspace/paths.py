"""Names a client may give a workspace and the file paths it may upload (pure checks).

Uploaded paths are never joined to a directory on the orchestrator (files
live as rows in SQLite), so they cannot write outside anything; they are
still held to a strict relative form, so what the index shows (and the model
reads) is a clean repository path, and so a client cannot smuggle ``..`` or an
absolute path into answers. Symlinks are the client's to resolve: the CLI
skips links that point outside the repository (see ``cerebrum.cli.index``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_NAME_CHARS = 64
MAX_PATH_CHARS = 1024
MAX_PATH_DEPTH = 64

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class InvalidPath(ValueError):
    """A workspace name or file path a client may not use; the message says why."""


_UNSEEN = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Unicode categories refused in paths: control, format, line and paragraph separators."""


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid workspace name (letters, digits, ``._-``), else raise."""
    if not isinstance(name, str) or not name:
        raise InvalidPath("a workspace name is a non-empty string")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidPath(f"a workspace name has at most {MAX_NAME_CHARS} characters")
    if not _NAME_RE.fullmatch(name) or name.endswith(".sqlite"):
        raise InvalidPath("a workspace name is letters, digits, '.', '_' and '-', "
                          "starting with a letter or digit")
    return name


def name_for_directory(directory_name: str) -> str:
    """A valid workspace name made from a directory's name (``My Repo!`` → ``My-Repo``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", directory_name).strip("-._")
    return cleaned[:MAX_NAME_CHARS] or "workspace"


def check_path(path: object) -> str:
    """Return ``path`` if it is a clean relative POSIX path inside a repository, else raise.

    Refused: absolute paths, ``..`` or ``.`` components, empty components
    (``a//b``), backslashes (a Windows path would mean something else here),
    control characters, and over-long or over-deep paths.
    """
    if not isinstance(path, str) or not path:
        raise InvalidPath("a file path is a non-empty string")
    if len(path) > MAX_PATH_CHARS:
        raise InvalidPath(f"a file path has at most {MAX_PATH_CHARS} characters")
    if any(unicodedata.category(ch) in _UNSEEN for ch in path):
        # Format characters (U+202E's reversed text, zero-width spaces) and line
        # separators would make a path read as something else in the model's context.
        raise InvalidPath("a file path may not contain control or invisible formatting "
                          "characters")
    if "\\" in path:
        raise InvalidPath("a file path uses '/' (no backslashes)")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise InvalidPath("a file path is relative to the repository (no absolute paths)")
    parts = path.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        raise InvalidPath(f"a file path has at most {MAX_PATH_DEPTH} components")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidPath("a file path may not contain '..', '.' or empty components")
    return path


def owner_id(key: str | None, shared: bool) -> str:
    """The directory a client's workspaces live in: a digest of its key (never the key).

    ``shared`` (a setting) puts every client in one place; without client keys
    (an open LAN orchestrator) everyone is ``open``.
    """
    if shared:
        return "shared"
    if not key:
        return "open"
    return "k" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]
