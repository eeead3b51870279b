"""Cut code into chunks at syntactic boundaries.

One chunk per top-level function, class, impl or similar definition; big
classes are split per method with the class header as a chunk of its own;
imports and top-level constants form a preamble. Python is parsed with
``ast``; other languages (and Python that ``ast`` rejects) with tree-sitter,
whose grammars are loaded lazily, one per language, and cached. Code neither
parser handles well is split at indentation and blank lines, plain text at
paragraphs; fixed character windows are used only for single lines too long
to split otherwise (minified code).

Every chunk is a run of whole lines, and the chunks of one text cover all of
its lines in order, so assembly can put kept chunks back in their original
order and mark what was left out.
"""

from __future__ import annotations

import ast
import functools
import importlib
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs

from cerebrum.prompt.language import TEXT

_LOGGER = logging.getLogger(__name__)

# A class larger than this is split per method.
BIG_CLASS_CHARS = 1500
# Runs of statements (preamble, top-level code) are cut at blank lines past this.
MAX_BLOCK_CHARS = 2000
# A function larger than this with nested functions is split like a class
# (JavaScript modules wrapped in one big function, closures in Python).
BIG_FUNCTION_CHARS = 4000
# A definition is kept whole up to this size; beyond it no budget could hold
# it anyway, so it is cut at blank lines into parts.
MAX_DEFINITION_CHARS = 16_000
# Plain-text paragraphs are merged up to this size.
TEXT_CHUNK_CHARS = 800
# Last resort for single huge lines.
WINDOW_CHARS = 1000
# Share of lines inside tree-sitter ERROR nodes above which its tree is not trusted.
_MAX_ERROR_SHARE = 0.1
# tree-sitter's error recovery is quadratic on some malformed input (8 KB of
# "/* " took 8 s, holding the GIL); a parse gets this long, then the
# indentation splitter takes over. Normal code parses at ~2 MB/s here, a Pi
# at a fifth of that: the budget is 10x a Pi's time and more.
PARSE_BASE_S = 0.25
PARSE_BYTES_PER_S = 100_000

PREAMBLE = "preamble"
DEFINITION = "definition"
CLASS_HEADER = "class_header"
METHOD = "method"
BLOCK = "block"
PART = "part"
PARAGRAPH = "paragraph"
WINDOW = "window"


_COMMENT_LINE_RE = re.compile(r"(#(\s|!|$|\[)|//|/\*|\*|@|\"\"\"|''')")


@attrs.frozen
class Chunk:
    """A run of whole lines ``[start_line, end_line)`` of the code.

    ``name`` is the identifier the chunk defines (function, class, method),
    ``parent`` the enclosing class for methods and class parts, ``names`` every
    identifier defined at the chunk's top level (constants in a preamble too).
    """

    index: int
    start_line: int
    end_line: int
    text: str
    kind: str
    name: str | None = None
    parent: str | None = None
    names: frozenset[str] = frozenset()

    @property
    def is_definition(self) -> bool:
        """Whether the chunk is a definition a signature line can stand for."""
        return self.kind in (DEFINITION, METHOD, CLASS_HEADER) and self.name is not None

    @property
    def signature(self) -> str:
        """The first non-comment, non-decorator line, stripped (for elision notes)."""
        for line in self.text.split("\n"):
            stripped = line.strip()
            if stripped and not _COMMENT_LINE_RE.match(stripped):
                return stripped
        return self.text.strip().split("\n", 1)[0]


@attrs.frozen
class _Segment:
    """A parsed item before chunk boundaries are fixed (0-based lines, end exclusive)."""

    start: int
    end: int
    kind: str
    name: str | None = None
    parent: str | None = None
    names: frozenset[str] = frozenset()


def chunk_text(code: str, language: str) -> list[Chunk]:
    """Cut ``code`` of ``language`` (a :mod:`language` name or ``"text"``) into chunks."""
    if not code.strip():
        return []
    lines = code.split("\n")
    segments: list[_Segment] | None = None
    if language == "python":
        segments = _python_segments(code, lines)
    if segments is None and language in _GRAMMARS:
        segments = _tree_sitter_segments(code, lines, language)
    if segments is None and language != TEXT:
        segments = _indent_segments(lines, language)
    if segments is None:
        return _number(_paragraph_chunks(lines, 0, len(lines)))
    chunks = _build_chunks(lines, segments, language)
    return _number(chunks)


def _number(chunks: list[Chunk]) -> list[Chunk]:
    # The constructor, not attrs.evolve: evolve introspects the fields on every call.
    return [
        Chunk(i, c.start_line, c.end_line, c.text, c.kind, c.name, c.parent, c.names)
        for i, c in enumerate(chunks)
    ]


# --- Python via ast -------------------------------------------------------

_PY_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _py_start(node: ast.stmt) -> int:
    decorators: list[ast.expr] = getattr(node, "decorator_list", None) or []
    return min([node.lineno] + [d.lineno for d in decorators]) - 1


def _py_assigned(node: ast.stmt) -> frozenset[str]:
    names: set[str] = set()
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AnnAssign):
        targets = [node.target]
    for target in targets:
        if isinstance(target, ast.Name):  # the common case, without a walk
            names.add(target.id)
            continue
        for sub in ast.walk(target):
            if isinstance(sub, ast.Name):
                names.add(sub.id)
    return frozenset(names)


def _python_segments(code: str, lines: list[str]) -> list[_Segment] | None:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # A paste cut mid-function, Python 2, or NUL bytes: let a fallback try.
        return None
    segments: list[_Segment] = []
    for node in tree.body:
        start, end = _py_start(node), node.end_lineno or node.lineno
        if isinstance(node, (ast.ClassDef, *_PY_FUNCTIONS)):
            methods = [child for child in node.body if isinstance(child, _PY_FUNCTIONS)]
            size = sum(len(lines[i]) + 1 for i in range(start, min(end, len(lines))))
            limit = BIG_CLASS_CHARS if isinstance(node, ast.ClassDef) else BIG_FUNCTION_CHARS
            if size > limit and methods:
                first = _py_start(methods[0])
                segments.append(
                    _Segment(start, first, CLASS_HEADER, node.name, names=frozenset({node.name}))
                )
                for method in methods:
                    segments.append(
                        _Segment(
                            _py_start(method),
                            method.end_lineno or method.lineno,
                            METHOD,
                            method.name,
                            node.name,
                            frozenset({method.name}),
                        )
                    )
            else:
                # A class kept whole defines its methods too: "fix Store.load" must find it.
                members = frozenset({node.name, *(method.name for method in methods)})
                segments.append(_Segment(start, end, DEFINITION, node.name, names=members))
        else:
            segments.append(_Segment(start, end, BLOCK, names=_py_assigned(node)))
    return segments


# --- tree-sitter ----------------------------------------------------------

_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "rust": ("tree_sitter_rust", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "go": ("tree_sitter_go", "language"),
    "java": ("tree_sitter_java", "language"),
    "shell": ("tree_sitter_bash", "language"),
}

_TS_FUNCTIONS = frozenset(
    {
        "function_definition",
        "function_declaration",
        "generator_function_declaration",
        "function_item",
        "method_declaration",
        "method_definition",
        "constructor_declaration",
        "decorated_definition",
        "function_signature_item",
    }
)
_TS_CONTAINERS = frozenset(
    {
        "class_declaration",
        "class_definition",
        "class_specifier",
        "struct_specifier",
        "impl_item",
        "trait_item",
        "interface_declaration",
        "namespace_definition",
        "mod_item",
        "abstract_class_declaration",
        "enum_declaration",
        "record_declaration",
    }
)
_TS_TRANSPARENT = frozenset(
    {
        "preproc_ifdef",
        "preproc_if",
        "preproc_else",
        "preproc_elif",
        "preproc_elifdef",
        "linkage_specification",
        "declaration_list",
    }
)
_TS_DEFINITIONS = (
    _TS_FUNCTIONS
    | _TS_CONTAINERS
    | frozenset(
        {
            "struct_item",
            "enum_item",
            "union_item",
            "macro_definition",
            "type_alias_declaration",
            "type_declaration",
            "enum_specifier",
            "union_specifier",
            "type_item",
            "trait_item",
            "preproc_function_def",
            "function_declaration_item",
        }
    )
)
# Wrappers whose meaning is their inner declaration.
_TS_WRAPPERS = frozenset({"export_statement", "template_declaration", "decorated_definition"})
_TS_NAME_TYPES = frozenset(
    {
        "identifier",
        "field_identifier",
        "type_identifier",
        "property_identifier",
        "namespace_identifier",
        "destructor_name",
        "operator_name",
        "word",
        "constant",
        "private_property_identifier",
        "primitive_type",
    }
)


@functools.cache
def _grammar(language: str) -> Any:
    """The tree-sitter ``Language`` for ``language``: immutable, so shared by all threads."""
    from tree_sitter import Language  # deferred: heavy, and optional per language

    module_name, attribute = _GRAMMARS[language]
    module = importlib.import_module(module_name)
    return Language(getattr(module, attribute)())


# A tree-sitter Parser holds mutable parse state and is not safe to share: the
# orchestrator optimises large prompts on the default executor's threads, so
# each thread gets its own parsers.
_PARSERS = threading.local()


def get_parser(language: str) -> Any:
    """Return this thread's tree-sitter parser for ``language``, loading its grammar on first use.

    Grammars are imported here, not at module import, so the orchestrator pays
    memory only for the languages it actually sees.
    """
    parsers: dict[str, Any] | None = getattr(_PARSERS, "by_language", None)
    if parsers is None:
        parsers = _PARSERS.by_language = {}
    parser = parsers.get(language)
    if parser is None:
        from tree_sitter import Parser

        parser = parsers[language] = Parser(_grammar(language))
    return parser


def _node_text(node: Any, data: bytes) -> str:
    # Sliced from the parsed bytes: ``node.text`` of a tree parsed through a read
    # callback cost time in the size of the whole input, per name (quadratic).
    return "" if node is None else data[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _inner(node: Any) -> Any:
    """Unwrap export/template/decorator wrappers to the declaration they carry."""
    while node.type in _TS_WRAPPERS:
        inner = node.child_by_field_name("declaration") or node.child_by_field_name("definition")
        if inner is None:
            named = [
                c
                for c in node.named_children
                if c.type not in ("decorator", "comment", "template_parameter_list")
            ]
            inner = named[-1] if named else None
        if inner is None:
            break
        node = inner
    return node


def _ts_name(node: Any, data: bytes) -> str | None:
    node = _inner(node)
    if node.type == "impl_item":
        target = node.child_by_field_name("type")
        trait = node.child_by_field_name("trait")
        name = _node_text(target, data)
        return re.sub(r"<.*", "", name) if name else (_node_text(trait, data) or None)
    if node.type in ("lexical_declaration", "variable_declaration"):
        for child in node.named_children:
            if child.type == "variable_declarator":
                return _node_text(child.child_by_field_name("name"), data) or None
        return None
    if node.type == "type_declaration":
        for child in node.named_children:
            name = child.child_by_field_name("name")
            if name is not None:
                return _node_text(name, data)
        return None
    name = node.child_by_field_name("name")
    if name is not None and name.type in _TS_NAME_TYPES:
        # JavaScript's private "#render" is called "render" in prose.
        return _node_text(name, data).lstrip("#")
    # C/C++: the name sits at the bottom of a chain of declarators.
    declarator = node.child_by_field_name("declarator")
    depth = 0
    while declarator is not None and depth < 8:
        if declarator.type in _TS_NAME_TYPES:
            return _node_text(declarator, data)
        if declarator.type == "qualified_identifier":
            inner = declarator.child_by_field_name("name")
            return _node_text(inner, data) if inner is not None else _node_text(declarator, data)
        declarator = declarator.child_by_field_name("declarator")
        depth += 1
    return None


def _is_function_value(node: Any) -> bool:
    """`const f = () => ...` and `const f = function () {}` count as definitions."""
    for child in node.named_children:
        if child.type == "variable_declarator":
            value = child.child_by_field_name("value")
            return value is not None and value.type in (
                "arrow_function",
                "function_expression",
                "function",
                "class",
            )
    return False


def _classify(node: Any) -> str:
    inner = _inner(node)
    if inner.type in _TS_FUNCTIONS:
        return DEFINITION
    if inner.type in _TS_DEFINITIONS:
        return DEFINITION
    if inner.type in ("lexical_declaration", "variable_declaration") and _is_function_value(inner):
        return DEFINITION
    return BLOCK


def _rows(node: Any) -> tuple[int, int]:
    end_row, end_col = node.end_point
    return node.start_point[0], end_row + (
        1 if end_col > 0 or end_row == node.start_point[0] else 0
    )


def _parse_within(parser: Any, data: bytes, seconds: float) -> Any:
    """``parser``'s tree of ``data``, or None where parsing takes over ``seconds``.

    tree-sitter checks a progress callback only when it reads its input from a
    callback, not from bytes, so the input is handed over through one."""
    deadline = time.perf_counter() + seconds

    def read(offset: int, _point: Any) -> bytes:
        return data[offset:offset + 65536]

    def halt(*_state: Any) -> bool:
        return time.perf_counter() > deadline

    try:
        return parser.parse(read, progress_callback=halt)
    except ValueError:  # "Parsing failed": halted
        parser.reset()  # else the next parse would resume this one
        return None


def _tree_sitter_segments(code: str, lines: list[str], language: str) -> list[_Segment] | None:
    data = code.encode("utf-8", "surrogatepass")
    try:
        parser = get_parser(language)
    except Exception:  # a missing wheel or a grammar failure must not break a request
        _LOGGER.warning("tree-sitter unavailable for %s", language, exc_info=True)
        return None
    tree = _parse_within(parser, data, PARSE_BASE_S + len(data) / PARSE_BYTES_PER_S)
    if tree is None:
        _LOGGER.info("tree-sitter gave up on %d bytes of %s within its time; split by "
                     "indentation instead", len(data), language)
        return None
    root = tree.root_node
    error_lines = 0
    top: list[Any] = []
    for node in root.named_children:
        if node.type == "ERROR":
            start, end = _rows(node)
            error_lines += end - start
        top.append(node)
    if error_lines > _MAX_ERROR_SHARE * max(1, len(lines)):
        return None
    segments: list[_Segment] = []
    for node in top:
        segments.extend(_ts_node_segments(node, lines, data, None, 0))
    return segments


def _ts_node_segments(
    node: Any, lines: list[str], data: bytes, parent: str | None, depth: int
) -> Iterator[_Segment]:
    start, end = _rows(node)
    kind = _classify(node)
    if node.type in ("comment", "line_comment", "block_comment"):
        # No segment: a comment joins the definition below it or the chunk above.
        return
    name = _ts_name(node, data) if kind == DEFINITION else None
    if node.type in _TS_TRANSPARENT and depth < 3:
        # #ifdef DEBUG ... #endif or extern "C" { ... } around definitions: a
        # wrapper, not a unit; its definitions are chunks of their own.
        body = node.child_by_field_name("body")
        wrapped = list((body if body is not None else node).named_children)
        if any(
            _classify(member) == DEFINITION or member.type in _TS_TRANSPARENT for member in wrapped
        ):
            for member in wrapped:
                yield from _ts_node_segments(member, lines, data, parent, depth + 1)
            return
    if kind == BLOCK:
        yield _Segment(start, end, BLOCK, names=frozenset({n for n in [_ts_name(node, data)] if n}))
        return
    inner = _inner(node)
    body = inner.child_by_field_name("body")
    size = sum(len(lines[i]) + 1 for i in range(start, min(end, len(lines))))
    splittable = inner.type in _TS_CONTAINERS or (
        inner.type in _TS_FUNCTIONS and size > BIG_FUNCTION_CHARS
    )
    if splittable and body is not None and size > BIG_CLASS_CHARS and depth < 3:
        children = list(body.named_children)
        split_at = [m for m in children if _classify(m) == DEFINITION]
        if split_at:
            first_start = _rows(split_at[0])[0]
            if first_start > start:
                yield _Segment(
                    start,
                    first_start,
                    CLASS_HEADER,
                    name,
                    parent,
                    frozenset({name} if name else ()),
                )
            for member in split_at:
                for segment in _ts_node_segments(member, lines, data, name, depth + 1):
                    yield attrs.evolve(
                        segment,
                        kind=METHOD if segment.kind == DEFINITION else segment.kind,
                        parent=segment.parent or name,
                    )
            return
    members: set[str] = {name} if name else set()
    if inner.type in _TS_CONTAINERS and body is not None:
        # A container kept whole defines its members too: "fix add_line" must find the impl.
        for member in body.named_children:
            if _classify(member) == DEFINITION:
                member_name = _ts_name(member, data)
                if member_name:
                    members.add(member_name)
    yield _Segment(start, end, DEFINITION, name, parent, frozenset(members))


# --- indentation fallback ---------------------------------------------------

_CLOSER_RE = re.compile(
    r"^(\}|\)|\]|end\b|else\b|elif\b|except\b|finally\b|fi\b|done\b|esac\b|catch\b|\}?\s*while\b)"
)
_DEF_NAME_RE = re.compile(
    r"""^\s*(?:
        (?:async\s+)?def\s+(?P<py>\w+)|
        class\s+(?P<cls>\w+)|
        (?:export\s+)?(?:default\s+)?(?:async\s+)?function\s*\*?\s*(?P<js>\w+)|
        (?:pub(?:\([\w:]+\))?\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(?P<rs>\w+)|
        (?:pub\s+)?(?:struct|enum|trait|impl(?:<[^>]*>)?)\s+(?P<ty>\w+)|
        func\s+(?:\([^)]*\)\s*)?(?P<go>\w+)|
        (?:function\s+)?(?P<sh>[\w-]+)\s*\(\)\s*\{|
        (?:export\s+)?(?:const|let|var)\s+(?P<var>\w+)\s*=\s*(?:async\s*)?(?:function|\(|\w+\s*=>)|
        [\w:<>,*&\s]*?\b(?P<c>[A-Za-z_]\w*)\s*\([^;]*$
    )""",
    re.VERBOSE,
)


def definition_name(line: str) -> str | None:
    """Return the name a line looks like it defines, or None."""
    match = _DEF_NAME_RE.match(line)
    if match is None:
        return None
    for value in match.groupdict().values():
        if value and value not in ("if", "for", "while", "switch", "return", "catch"):
            return value
    return None


def _indent_segments(lines: list[str], language: str) -> list[_Segment]:
    """Split at top-level lines that follow a blank line or the end of an indented block."""
    starts = [0]
    previous = ""
    for number, line in enumerate(lines):
        if number and line and not line[0].isspace() and not _CLOSER_RE.match(line):
            if (
                not previous.strip()
                or previous[:1].isspace()
                or previous.rstrip().endswith(("}", "};"))
            ):
                starts.append(number)
        if line.strip():
            previous = line
        elif previous.strip():
            previous = ""
    starts.append(len(lines))
    segments: list[_Segment] = []
    for start, end in zip(starts, starts[1:], strict=False):
        if start >= end:
            continue
        first = next(
            (
                line
                for line in lines[start:end]
                if line.strip() and not line.lstrip().startswith(("#", "//", "@", "/*", "*"))
            ),
            "",
        )
        name = definition_name(first) if first and not first[0].isspace() else None
        kind = DEFINITION if name else BLOCK
        segments.append(_Segment(start, end, kind, name, names=frozenset({name} if name else ())))
    return segments


# --- building chunks from segments ------------------------------------------


def _comment_prefixes(language: str) -> tuple[str, ...]:
    if language in ("python", "shell"):
        return ("#", "@")
    if language == "rust":
        return ("//", "/*", "*", "#[", "#![")
    return ("//", "/*", "*", "@")


# Trailing comments longer than this go in a block of their own.
_TRAILING_CHARS = 240


def _build_chunks(lines: list[str], segments: list[_Segment], language: str) -> list[Chunk]:
    segments = sorted((s for s in segments if s.end > s.start), key=lambda s: s.start)
    prefixes = _comment_prefixes(language)
    # Pull each definition's leading comments and decorators into it.
    starts: list[int] = []
    floor = 0
    for segment in segments:
        start = max(segment.start, floor)
        if segment.kind != BLOCK:
            while start > floor and lines[start - 1].strip().startswith(prefixes):
                start -= 1
        starts.append(start)
        floor = max(floor, segment.end, start + 1)
    merged: list[tuple[int, _Segment]] = []
    # The names of a run of statements merged into one block, unioned once at the
    # end: unioned at each merge, every statement copied the set so far (quadratic).
    run_names: list[list[frozenset[str]]] = []
    for start, segment in zip(starts, segments, strict=True):
        if merged and merged[-1][0] >= start:
            continue  # nested or overlapping item: the earlier one already covers it
        if merged and segment.kind == BLOCK and merged[-1][1].kind == BLOCK:
            run_names[-1].append(segment.names)
            continue
        merged.append((start, segment))
        run_names.append([segment.names])
    merged = [
        (start, segment if len(names) == 1 else attrs.evolve(segment, names=names[0].union(*names)))
        for (start, segment), names in zip(merged, run_names, strict=True)
    ]
    chunks: list[Chunk] = []
    if merged and merged[0][1].kind == BLOCK:
        # Leading comments (a licence header) belong to the preamble.
        merged[0] = (0, merged[0][1])
    if not merged or merged[0][0] > 0:
        first_end = merged[0][0] if merged else len(lines)
        chunks.extend(_block_chunks(lines, 0, first_end, PREAMBLE, frozenset()))
    for position, (start, segment) in enumerate(merged):
        end = merged[position + 1][0] if position + 1 < len(merged) else len(lines)
        if segment.kind == BLOCK:
            kind = PREAMBLE if not chunks or all(c.kind == PREAMBLE for c in chunks) else BLOCK
            chunks.extend(_block_chunks(lines, start, end, kind, segment.names))
            continue
        # Comments after a definition's last line, apart from the next one (an
        # essay on the algorithm below), are not the definition's: a block of their own.
        tail = segment.end
        while tail < end and not lines[tail].strip():
            tail += 1
        if (
            end - tail > 0
            and sum(len(lines[i]) + 1 for i in range(tail, end)) > _TRAILING_CHARS
            and all(
                not lines[i].strip() or lines[i].lstrip().startswith(prefixes)
                for i in range(tail, end)
            )
        ):
            chunks.extend(_definition_chunks(lines, start, tail, segment))
            chunks.extend(_block_chunks(lines, tail, end, BLOCK, frozenset()))
        else:
            chunks.extend(_definition_chunks(lines, start, end, segment))
    # A leading preamble made of blank lines only is noise.
    return [chunk for chunk in chunks if chunk.text.strip()]


def _text(lines: list[str], start: int, end: int) -> str:
    return "\n".join(lines[start:end])


def _block_chunks(
    lines: list[str], start: int, end: int, kind: str, names: frozenset[str]
) -> list[Chunk]:
    size = sum(len(lines[i]) + 1 for i in range(start, end))
    if size <= MAX_BLOCK_CHARS:
        return [Chunk(0, start, end, _text(lines, start, end), kind, names=names)]
    return [
        attrs.evolve(c, kind=kind if i == 0 else BLOCK, names=names)
        for i, c in enumerate(_paragraph_chunks(lines, start, end, MAX_BLOCK_CHARS))
    ]


def _definition_chunks(lines: list[str], start: int, end: int, segment: _Segment) -> list[Chunk]:
    text = _text(lines, start, end)
    if len(text) <= MAX_DEFINITION_CHARS:
        return [
            Chunk(0, start, end, text, segment.kind, segment.name, segment.parent, segment.names)
        ]
    parts = _paragraph_chunks(lines, start, end, MAX_BLOCK_CHARS)
    # The rest of a long class header (its docstring, its fields) is still header.
    rest = CLASS_HEADER if segment.kind == CLASS_HEADER else PART
    return [
        attrs.evolve(
            part,
            kind=segment.kind if i == 0 else rest,
            name=segment.name if i == 0 else None,
            parent=segment.parent if i == 0 else segment.name,
            names=segment.names if i == 0 else frozenset(),
        )
        for i, part in enumerate(parts)
    ]


def _paragraph_chunks(
    lines: list[str], start: int, end: int, target: int = TEXT_CHUNK_CHARS
) -> list[Chunk]:
    """Split lines at blank lines, merging paragraphs up to ``target`` characters."""
    chunks: list[Chunk] = []
    chunk_start = start
    size = 0
    line = start
    while line < end:
        length = len(lines[line]) + 1
        if length > 4 * WINDOW_CHARS:
            if line > chunk_start:
                chunks.append(
                    Chunk(0, chunk_start, line, _text(lines, chunk_start, line), PARAGRAPH)
                )
            chunks.extend(_window_chunks(lines[line], line))
            line += 1
            chunk_start, size = line, 0
            continue
        boundary = not lines[line].strip() and size >= target // 2
        if (
            size + length > target
            and line > chunk_start
            and (boundary or size + length > 2 * target)
        ):
            chunks.append(Chunk(0, chunk_start, line, _text(lines, chunk_start, line), PARAGRAPH))
            chunk_start, size = line, 0
        size += length
        line += 1
    if chunk_start < end:
        chunks.append(Chunk(0, chunk_start, end, _text(lines, chunk_start, end), PARAGRAPH))
    return chunks


def _window_chunks(line: str, number: int) -> list[Chunk]:
    """The last resort: fixed windows over one very long line (minified code)."""
    return [
        Chunk(0, number, number + 1, line[offset : offset + WINDOW_CHARS], WINDOW)
        for offset in range(0, len(line), WINDOW_CHARS)
    ]
