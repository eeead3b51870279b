"""JSON Schema → GBNF: what converts compiles in llama.cpp; what cannot be enforced is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cerebrum.backend import grammar
from cerebrum.backend.constraints import request_grammar
from cerebrum.errors import BadRequest
from cerebrum.openai_wire import structure_request
from tests.backend.vocab import compiles, vocab  # noqa: F401 (a fixture)

SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
        "kind": {"enum": ["a", "b", 3]}, "when": {"type": "string", "format": "date"},
        "id": {"type": "string", "pattern": "^[A-Z]{2}[0-9]+$"},
        "maybe": {"type": ["number", "null"]}, "fixed": {"const": True},
        "child": {"$ref": "#/$defs/node"}},
     "$defs": {"node": {"type": "object", "properties": {"v": {"type": "boolean"}}}},
     "title": "annotated", "description": "annotations are fine"},
    {"anyOf": [{"type": "object", "properties": {"x": {"type": "number"}}},
               {"type": "array", "items": {"type": "integer"}}]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_supported_schemas_compile(vocab: Any, schema: dict[str, Any]) -> None:  # noqa: F811
    assert compiles(vocab, grammar.schema_grammar(schema))


def test_json_mode_grammar_compiles_and_strings_refuse_raw_control_characters(
        vocab: Any) -> None:  # noqa: F811
    compiled = grammar.json_object_grammar()
    assert compiles(vocab, compiled)
    assert "\\x00-\\x1F" in compiled.gbnf
    assert "\\x00-\\x1F" in grammar.schema_grammar({"type": "string"}).gbnf


@pytest.mark.parametrize(("schema", "needle"), [
    ({"type": "integer", "minimum": 3}, "'minimum'"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "'uniqueItems'"),
    ({"type": "string", "format": "email"}, "'email'"),
    ({"type": "object", "properties": {"a": {"type": "strin"}}}, "#/properties/a"),
    ({"$ref": "https://example.invalid/s.json"}, "local references"),
    ({"type": "string", "pattern": "[a-z]+"}, "anchored"),
    ({"not": {"type": "string"}}, "'not'"),
    ({"type": "object", "properties": {"a": False}}, "matches nothing"),
    ({"type": "object", "properties": {"a": {}}, "required": ["b"],
      "additionalProperties": False}, "not defined"),
    ({"allOf": [{"type": "object", "minProperties": 1}]}, "allOf"),
])
def test_unenforceable_schemas_are_refused_saying_why(schema: dict[str, Any],
                                                      needle: str) -> None:
    with pytest.raises(grammar.SchemaError) as caught:
        grammar.schema_grammar(schema)
    assert needle in str(caught.value)


def test_deep_and_huge_schemas_are_refused() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(grammar.MAX_SCHEMA_DEPTH + 2):
        deep = {"type": "object", "properties": {"a": deep}}
    with pytest.raises(grammar.SchemaError, match="deeper"):
        grammar.check_schema(deep)
    huge = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(5000)}}
    with pytest.raises(grammar.SchemaError, match="bytes"):
        grammar.check_schema(huge)


def test_request_grammar_names_the_field() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "integer",
                                                                      "maximum": 3}}}}
    with pytest.raises(BadRequest) as caught:
        request_grammar(structure_request(body, "chat"))
    assert caught.value.param == "response_format.json_schema.schema"
    assert "maximum" in caught.value.message
    tools = [{"type": "function", "function": {"name": "ok"}},
             {"type": "function", "function": {"name": "bad", "parameters": {
                 "type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}}}]
    body = {"messages": [{"role": "user", "content": "x"}], "tools": tools,
            "tool_choice": "required"}
    with pytest.raises(BadRequest) as caught:
        request_grammar(structure_request(body, "chat"))
    assert caught.value.param == "tools[1].function.parameters"
    # Only the functions a call may name are converted.
    named = {**body, "tool_choice": {"type": "function", "function": {"name": "ok"}}}
    assert request_grammar(structure_request(named, "chat")) is not None


def test_free_text_has_no_grammar() -> None:
    assert request_grammar(structure_request({"messages": [{"role": "user", "content": "x"}]},
                                             "chat")) is None
    assert request_grammar(structure_request({"prompt": "x"}, "text")) is None
    compiled = request_grammar(structure_request(
        {"messages": [{"role": "user", "content": "x"}], "response_format": {
            "type": "json_object"}}, "chat"))
    assert compiled is not None and not compiled.lazy
    json.dumps(compiled.gbnf)
