"""Output grammars: JSON mode, JSON Schema and tool calls as llama.cpp GBNF. Pure.

A ``Grammar`` is GBNF text plus how to apply it; the sampler chain
(``cerebrum.backend.sampling``) turns it into a llama.cpp grammar sampler, so
every sampled token keeps the output inside the grammar and the answer always
parses. ``lazy_patterns`` makes it lazy: sampling is free until the text
matches one of the patterns (a tool call's opening tag), and constrained from
there on.

JSON Schema goes through llama-cpp-python's converter
(``llama_cpp.llama_grammar.SchemaConverter``), with two guards of our own:

- the converter silently drops keywords it does not know (``minimum``,
  ``uniqueItems``, most ``format`` values, ...), so the output could break the
  schema while we claim it matches; ``check_schema`` refuses those schemas
  with a 400 that names the keyword and where it is;
- its string rule lets raw control characters (a newline) into strings, which
  strict JSON parsers reject; we replace it with the JSON spec's own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

JSON_STRING_CHAR = (r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
                    r'[0-9a-fA-F] [0-9a-fA-F])')
"""A character inside a JSON string, as RFC 8259 allows it (no raw control characters)."""

JSON_SPACE = '" "?'
"""Whitespace between JSON tokens: at most one space (llama-cpp-python's choice too).

Measured on the embedded model: allowing a newline and indent as well (what
llama.cpp's C++ converter does) made it pretty-print, spend its tokens on
indentation and run out of ``max_tokens`` mid-object (10 of 12 answers
parsed, against 12 of 12 with a single space, in a third of the time)."""

MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32
MAX_REPEAT = 1000
"""The largest ``maxLength``/``maxItems``/``minLength``/``minItems`` or ``{m,n}`` count in a
``pattern``: the converter writes a count of N as N nested optional rules, and
llama.cpp's parser recurses through them: refused from about 2,000 here, the
process killed by a stack overflow at 20,000 (and a count of 10^9 took 52 s and
8 GB to convert first)."""
_COUNT_RE = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_BOUNDS = ("minLength", "maxLength", "minItems", "maxItems")

# What the converter honours; anything else that constrains is refused.
_ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly",
})
_UNDERSTOOD = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
    "definitions", "pattern", "format", "minLength", "maxLength",
})
_TYPES = frozenset({"string", "number", "integer", "boolean", "null", "object", "array"})
_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4",
                      "uuid5"})


@attrs.frozen
class Grammar:
    """GBNF text, its root rule, and (for a lazy grammar) what switches it on."""

    gbnf: str
    root: str = "root"
    lazy_patterns: tuple[str, ...] = ()
    """Regular expressions; empty: the grammar applies from the first token."""
    param: str | None = None
    """The request field it comes from, for an error about it."""

    @property
    def lazy(self) -> bool:
        return bool(self.lazy_patterns)


class SchemaError(ValueError):
    """A JSON Schema we cannot turn into a grammar that enforces it."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{message} (at {where})")
        self.where = where


JSON_MAX_DEPTH = 3
JSON_MAX_MEMBERS = 8
JSON_MAX_STRING = 96


def json_object_grammar(depth: int = JSON_MAX_DEPTH, members: int = JSON_MAX_MEMBERS,
                        string_chars: int = JSON_MAX_STRING) -> Grammar:
    """``response_format: json_object``: a JSON object, bounded in size.

    Any JSON object is allowed, up to ``depth`` levels of nesting, ``members``
    members per object or array and ``string_chars`` characters per string. A
    small model caught in a loop ("a", "a", "a", ...) is thereby made to close
    what it opened, so the answer parses within a modest ``max_tokens``.
    """
    more = f"{{0,{members - 1}}}"
    rules = {
        "root": "object-0",
        "space": JSON_SPACE,
        "char": JSON_STRING_CHAR,
        "string": f'"\\"" char{{0,{string_chars}}} "\\"" space',
        "number": '"-"? ([0-9] | [1-9] [0-9]{1,15}) ("." [0-9]{1,15})? ([eE] [-+]? [0-9]{1,3})? '
                  'space',
        "scalar": 'string | number | ("true" | "false" | "null") space',
    }
    for level in range(depth):
        inner = (f"object-{level + 1} | array-{level + 1} | scalar" if level + 1 < depth
                 else "scalar")
        rules[f"value-{level + 1}"] = inner
        member = f'string ":" space value-{level + 1}'
        rules[f"object-{level}"] = (f'"{{" space ( {member} ( "," space {member} ){more} )? '
                                    f'"}}" space')
        if level:
            rules[f"array-{level}"] = (f'"[" space ( value-{level + 1} ( "," space '
                                       f'value-{level + 1} ){more} )? "]" space')
    return Grammar("\n".join(f"{name} ::= {rule}" for name, rule in rules.items()))


def schema_grammar(schema: Mapping[str, Any]) -> Grammar:
    """A grammar whose every output is JSON valid against ``schema``; raises SchemaError."""
    check_schema(schema)
    converter = _converter()
    try:
        resolved = converter.resolve_refs(json.loads(json.dumps(schema)), "request")
        converter.visit(resolved, "")
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise SchemaError("#", f"the schema cannot be converted to a grammar: {exc}") from None
    return Grammar(_format(converter))


def add_schema_rules(converter: Any, schema: Mapping[str, Any], name: str, where: str) -> str:
    """Add the rules for ``schema`` under ``name`` to a shared converter; returns its rule."""
    check_schema(schema, where)
    try:
        resolved = converter.resolve_refs(json.loads(json.dumps(schema)), name)
        return str(converter.visit(resolved, name))
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise SchemaError(where, f"the schema cannot be converted to a grammar: {exc}") from None


def new_converter() -> Any:
    """A llama-cpp-python schema converter (imported here: only the backend has it)."""
    return _converter()


def format_rules(converter: Any, extra: Mapping[str, str] = {}) -> str:
    """The converter's rules plus ``extra`` ones, as GBNF text."""
    return _format(converter, extra)


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    return json.dumps(text, ensure_ascii=False)


def check_schema(schema: Any, where: str = "#") -> None:
    """Raise SchemaError unless every constraint in ``schema`` is one the grammar enforces."""
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise SchemaError(where, f"the schema is over {MAX_SCHEMA_BYTES} bytes")
    try:
        _check_nodes(schema, where)
    except (TypeError, AttributeError):  # a keyword of the wrong shape the checks missed
        raise SchemaError(where, "the schema is malformed") from None


def _check_nodes(schema: Any, where: str) -> None:
    for path, node, depth in _walk(schema, where, 0):
        if depth > MAX_SCHEMA_DEPTH:
            raise SchemaError(path, f"the schema nests deeper than {MAX_SCHEMA_DEPTH}")
        if isinstance(node, bool):
            if node is False:
                raise SchemaError(path, "a 'false' schema matches nothing")
            continue
        if not isinstance(node, dict):
            raise SchemaError(path, "a schema must be an object")
        for key in node:
            if key not in _UNDERSTOOD and key not in _ANNOTATIONS:
                raise SchemaError(path, f"the keyword '{key}' is not supported")
        kinds = node.get("type")
        if isinstance(kinds, list) and not kinds:
            raise SchemaError(path, "'type' lists no type")
        for kind in kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []:
            if not isinstance(kind, str) or kind not in _TYPES:
                raise SchemaError(path, f"unknown type {kind!r}")
        for key in ("enum", "anyOf", "oneOf"):
            if key in node and not (isinstance(node[key], list) and node[key]):
                raise SchemaError(path, f"'{key}' must be a non-empty array")
        _check_bounds(node, path)
        if "required" in node and not (isinstance(node["required"], list)
                                       and all(isinstance(k, str) for k in node["required"])):
            raise SchemaError(path, "'required' must be an array of property names")
        extra = node.get("additionalProperties")
        if extra is not None and not isinstance(extra, bool | dict):
            raise SchemaError(path, "'additionalProperties' must be a boolean or a schema")
        if "format" in node and (not isinstance(node["format"], str)
                                 or node["format"] not in _FORMATS):
            raise SchemaError(path, f"the format {node['format']!r} is not supported (only "
                                    f"{', '.join(sorted(_FORMATS))})")
        if "pattern" in node:
            _check_pattern(node["pattern"], path)
        ref = node.get("$ref")
        if ref is not None and not (isinstance(ref, str) and ref.startswith("#/")):
            raise SchemaError(path, f"only local references ('#/...') are supported, got {ref!r}")
        if "required" in node and isinstance(node.get("properties"), dict):
            missing = [k for k in node["required"] if k not in node["properties"]]
            if missing and node.get("additionalProperties") is not True:
                raise SchemaError(path, f"required properties {missing} are not defined")
        for member in node.get("allOf", []):
            # The converter merges allOf members' properties and drops the rest.
            if isinstance(member, dict) and set(member) - {"type", "properties", "required",
                                                           "$ref"} - _ANNOTATIONS:
                raise SchemaError(path, "allOf members may only hold properties and required")


def _check_bounds(node: Mapping[str, Any], path: str) -> None:
    """Length and item bounds: whole numbers, at most MAX_REPEAT, no minimum over its maximum."""
    for key in _BOUNDS:
        value = node.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SchemaError(path, f"'{key}' must be a non-negative integer")
        if value > MAX_REPEAT:
            raise SchemaError(path, f"'{key}' of {value} is over {MAX_REPEAT}, the most a "
                                    "grammar can enforce here")
    for low, high in (("minLength", "maxLength"), ("minItems", "maxItems")):
        if low in node and high in node and node[low] > node[high]:
            raise SchemaError(path, f"'{low}' is greater than '{high}'")


def _check_pattern(pattern: Any, path: str) -> None:
    """An anchored pattern Python can read, with no repetition count over MAX_REPEAT."""
    if not (isinstance(pattern, str) and pattern.startswith("^") and pattern.endswith("$")):
        raise SchemaError(path, "a 'pattern' must be anchored with ^ and $")
    for match in _COUNT_RE.finditer(pattern):
        for count in match.groups():
            if count and (len(count) > 6 or int(count) > MAX_REPEAT):
                raise SchemaError(path, f"the 'pattern' repeats something {count[:12]} times; "
                                        f"at most {MAX_REPEAT} can be enforced here")
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        raise SchemaError(path, "the 'pattern' is not a valid regular expression") from None


def _walk(node: Any, path: str, depth: int) -> Iterator[tuple[str, Any, int]]:
    """Every subschema of ``node`` with its JSON-pointer-like path."""
    yield path, node, depth
    if not isinstance(node, dict):
        return
    for key in ("properties", "$defs", "definitions"):
        children = node.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                yield from _walk(child, f"{path}/{key}/{name}", depth + 1)
        elif children is not None:
            raise SchemaError(f"{path}/{key}", f"'{key}' must be an object")
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        children = node.get(key)
        if isinstance(children, list):
            for index, child in enumerate(children):
                yield from _walk(child, f"{path}/{key}/{index}", depth + 1)
        elif children is not None:
            raise SchemaError(f"{path}/{key}", f"'{key}' must be an array")
    items = node.get("items")
    if isinstance(items, list):
        for index, child in enumerate(items):
            yield from _walk(child, f"{path}/items/{index}", depth + 1)
    elif items is not None:
        yield from _walk(items, f"{path}/items", depth + 1)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _walk(extra, f"{path}/additionalProperties", depth + 1)


def _converter() -> Any:
    from llama_cpp.llama_grammar import SchemaConverter

    return SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def _format(converter: Any, extra: Mapping[str, str] = {}) -> str:
    rules = dict(converter._rules)
    if "char" in rules:
        rules["char"] = JSON_STRING_CHAR
    if "space" in rules:
        rules["space"] = JSON_SPACE
    rules.update(extra)
    return "\n".join(f"{name} ::= {rule}" for name, rule in sorted(rules.items()))
