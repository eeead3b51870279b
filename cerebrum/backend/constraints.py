"""What a request allows the model to write: its output grammar, from ``response_format``
or ``tools``. Pure (the schema converter is llama-cpp-python's pure-Python one).

Every problem is a 400 naming the field: a schema the grammar cannot enforce
says which keyword and where (``response_format.json_schema.schema`` or
``tools[2].function.parameters``).
"""

from __future__ import annotations

import attrs

from cerebrum.backend import grammar, tools
from cerebrum.backend.grammar import Grammar, SchemaError
from cerebrum.errors import BadRequest
from cerebrum.openai_wire import AnyCompletionRequest, ChatCompletionRequest


def grammar_from_schemas(parsed: AnyCompletionRequest) -> bool:
    """Whether :func:`request_grammar` converts JSON Schemas (tools or ``json_schema``):
    work that can take seconds, unlike JSON mode's fixed grammar."""
    return isinstance(parsed, ChatCompletionRequest) and (
        (parsed.tools is not None and parsed.tools.active)
        or parsed.response_format.type == "json_schema")


def request_grammar(parsed: AnyCompletionRequest) -> Grammar | None:
    """The grammar the answer must follow, or None for free text."""
    if not isinstance(parsed, ChatCompletionRequest):
        return None
    if parsed.tools is not None and parsed.tools.active:
        try:
            return attrs.evolve(tools.tool_grammar(parsed.tools), param="tools")
        except SchemaError as exc:
            raise _bad_schema(exc, exc.where.split("/", 1)[0]) from None
    fmt = parsed.response_format
    if fmt.type == "json_object":
        return attrs.evolve(grammar.json_object_grammar(), param="response_format")
    if fmt.type == "json_schema":
        param = "response_format.json_schema.schema"
        try:
            return attrs.evolve(grammar.schema_grammar(fmt.schema or {}), param=param)
        except SchemaError as exc:
            raise _bad_schema(exc, param) from None
    return None


def _bad_schema(exc: SchemaError, param: str) -> BadRequest:
    return BadRequest(f"invalid request: {exc}", param=param, code="invalid_schema")
