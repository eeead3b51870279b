"""One source file → its definitions, references, docstrings and searchable words.

The optimiser's chunker (:func:`cerebrum.prompt.chunking.chunk_text`: ``ast``
for Python, the tree-sitter grammars for the other languages) cuts the file;
every chunk becomes one retrievable unit, so a definition retrieved is always
the same whole, syntactic piece the optimiser would keep. Words are the
optimiser's too (:func:`~cerebrum.prompt.ranking.split_identifier` and
:func:`~cerebrum.prompt.ranking.stem`), so "count the words" meets
``countWords`` and ``count_words`` alike. Pure: text in, values out.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import PurePosixPath

import attrs

from cerebrum.prompt.chunking import (
    CLASS_HEADER,
    DEFINITION,
    METHOD,
    Chunk,
    chunk_text,
)
from cerebrum.prompt.ranking import split_identifier, stem

# File name suffix → the optimiser's language names.
LANGUAGE_BY_SUFFIX = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".rs": "rust", ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".go": "go", ".java": "java", ".sh": "shell", ".bash": "shell",
}
DEFINITION_KINDS = frozenset({DEFINITION, METHOD, CLASS_HEADER})
MAX_REFS = 64
"""References kept per definition: enough for its callees, bounded for a generated file."""

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CALL_RE = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_DOCSTRING_RE = re.compile(r"^[ \t]*[rRuU]?(\"\"\"|''')(.*?)\1", re.DOTALL | re.MULTILINE)
_HASH_COMMENT_RE = re.compile(r"(?:^|\s)#+\s?(.*)$", re.MULTILINE)
_SLASH_COMMENT_RE = re.compile(r"//+\s?(.*)$|/\*+(.*?)\*/", re.MULTILINE | re.DOTALL)
_NOT_CALLS = frozenset((
    "if for while switch return catch elif and or not in is print super self this "
    "sizeof typeof def class function fn func new await yield lambda assert with "
    "except raise"
).split())


@attrs.frozen
class Definition:
    """One retrievable unit of a file: lines ``start_line..end_line`` (1-based, inclusive)."""

    start_line: int
    end_line: int
    kind: str
    """The chunker's kind: ``definition``, ``method``, ``class_header``, ``preamble``,
    ``block``..."""
    name: str | None
    parent: str | None
    text: str
    signature: str
    doc: str
    """Docstring and comments, as written."""
    refs: frozenset[str]
    """Names the unit calls (``f(``, ``obj.f(``)."""
    names: frozenset[str] = frozenset()
    """Every name it defines at its top level (a class kept whole: its methods too)."""

    @property
    def is_definition(self) -> bool:
        """A function, method or class (not a preamble or a run of statements)."""
        return self.kind in DEFINITION_KINDS and self.name is not None

    @property
    def qualified_name(self) -> str | None:
        """``Parent.name`` for methods, else the name."""
        if self.name is None:
            return None
        return f"{self.parent}.{self.name}" if self.parent else self.name


@attrs.frozen
class ExtractedFile:
    path: str
    language: str
    definitions: tuple[Definition, ...]


def language_for(path: str) -> str | None:
    """The optimiser's language for a repository path, by suffix; None: not source code."""
    return LANGUAGE_BY_SUFFIX.get(PurePosixPath(path).suffix.lower())


def _normalise(word: str) -> str:
    """The optimiser's stem, then "parse"/"parsing", "proxy"/"proxies" made to meet."""
    word = stem(word)
    if len(word) > 4 and word.endswith("e"):
        return word[:-1]
    if len(word) > 3 and word.endswith("y"):
        return word[:-1] + "i"
    return word


@functools.lru_cache(maxsize=65_536)
def identifier_words(identifier: str) -> tuple[str, ...]:
    """The words of one identifier (cached: a repository repeats its identifiers endlessly)."""
    parts = [_normalise(word) for word in split_identifier(identifier)]
    joined = (identifier.replace("_", "").lower(),) if len(parts) > 1 else ()
    return joined + tuple(part for part in parts if len(part) > 1)


def words(text: str) -> list[str]:
    """Searchable words of ``text``: identifiers split on ``_``/camelCase, lower-cased, stemmed.

    An identifier of several words also yields itself joined (``countwords``),
    so a question that names it exactly matches it more strongly.
    """
    out: list[str] = []
    for identifier in _IDENT_RE.findall(text):
        out.extend(identifier_words(identifier))
    return out


def word_text(text: str) -> str:
    """:func:`words` joined by spaces: what goes into (and is matched against) FTS5."""
    return " ".join(words(text))


def path_words(path: str) -> str:
    """Words of a repository path (``cerebrum/cli/ask.py`` → ``cerebrum cli ask``)."""
    return word_text(PurePosixPath(path).with_suffix("").as_posix().replace("/", " "))


def doc_text(text: str, language: str) -> str:
    """The docstring (Python) and comments of a unit."""
    pieces: list[str] = []
    if language == "python":
        match = _DOCSTRING_RE.search(text)
        if match:
            pieces.append(match.group(2).strip())
    if language in ("python", "shell"):
        pieces.extend(m.group(1).strip() for m in _HASH_COMMENT_RE.finditer(text))
    else:
        pieces.extend((m.group(1) or m.group(2) or "").strip()
                      for m in _SLASH_COMMENT_RE.finditer(text))
    return "\n".join(piece for piece in pieces if piece)


def references(text: str, own: Iterable[str | None] = ()) -> frozenset[str]:
    """The names ``text`` calls, without keywords and its own names (recursion is not a link)."""
    skip = _NOT_CALLS | {name for name in own if name}
    found: list[str] = []
    for name in _CALL_RE.findall(text):
        if name not in skip and len(name) > 1 and name not in found:
            found.append(name)
            if len(found) >= MAX_REFS:
                break
    return frozenset(found)


def _definition(chunk: Chunk, language: str) -> Definition:
    # Chunks run up to the next one; the blank lines between them are nobody's.
    text = chunk.text.rstrip()
    return Definition(
        start_line=chunk.start_line + 1,
        end_line=chunk.start_line + 1 + text.count("\n"),
        kind=chunk.kind,
        name=chunk.name,
        parent=chunk.parent,
        text=text,
        signature=chunk.signature[:200],
        doc=doc_text(chunk.text, language),
        refs=references(chunk.text, (chunk.name, *chunk.names)),
        names=chunk.names,
    )


def extract_file(path: str, text: str) -> ExtractedFile | None:
    """Cut one source file into units; None when ``path`` is not a language we parse."""
    language = language_for(path)
    if language is None:
        return None
    chunks = chunk_text(text, language)
    return ExtractedFile(path, language, tuple(_definition(chunk, language) for chunk in chunks))
