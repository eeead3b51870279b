"""Tool calls: tools and tool messages into the prompt, the model's output back into calls. Pure.

Two prompt formats:

- **native**: the GGUF's chat template renders tools itself (it references
  ``tools`` and uses Hermes-style ``<tool_call>`` tags, as Qwen2.5 and Hermes
  do). Messages go to the template as OpenAI sends them (arguments decoded
  to objects, which is what those templates expect).
- **generic**, for every other template (the embedded SmolLM2's knows no
  tools): a system message lists the functions as JSON Schema and asks for
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; an assistant
  message's calls are written back in that form and a tool result becomes a
  user message ``<tool_response>...</tool_response>`` (a user turn, because
  many templates refuse unknown roles).

Both formats produce the same output syntax, so one grammar and one parser
serve them. With ``tool_choice`` ``required`` or a named function the grammar
applies from the first token (the answer is one call, or several with
``parallel_tool_calls``); with ``auto`` it is lazy: free text until the model
writes ``<tool_call>``, then the call's name and its arguments (the function's
JSON Schema) are enforced. With ``none`` the functions are left out of the
prompt and nothing is constrained.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from cerebrum.backend import grammar as gbnf
from cerebrum.openai_wire import ChatMessage, FunctionDef, NamedTool, ToolSpec

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
_TRIGGER = r"[\s\S]*?(" + re.escape(OPEN) + r")[\s\S]*"
"""llama.cpp matches the whole text so far; the grammar starts at the group."""


@attrs.frozen
class RenderedChat:
    """What goes to the chat template: message dicts and (native only) the tools."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None


@attrs.frozen
class ParsedCall:
    """One tool call the model made, with the id the answer gives it."""

    index: int
    id: str
    name: str
    arguments: str
    """JSON text, as OpenAI sends it."""

    def wire(self) -> dict[str, Any]:
        """The call as it appears in ``message.tool_calls``."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}

    def deltas(self) -> list[list[dict[str, Any]]]:
        """The call as streamed ``delta.tool_calls`` pieces: id and name, then arguments."""
        return [
            [{"index": self.index, "id": self.id, "type": "function",
              "function": {"name": self.name, "arguments": ""}}],
            [{"index": self.index, "function": {"arguments": self.arguments}}],
        ]


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def template_has_native_tools(template: str | None) -> bool:
    """The chat template renders ``tools`` itself, in the ``<tool_call>`` syntax we parse."""
    return bool(template) and "tools" in template and OPEN in template  # type: ignore[operator]


# -- into the prompt -----------------------------------------------------------

def render_chat(messages: Sequence[ChatMessage], tools: ToolSpec | None, *,
                native: bool) -> RenderedChat:
    """The messages (and tools) for the chat template, in the chosen format."""
    offered = tools.functions if tools is not None and tools.choice != "none" else ()
    if native:
        rendered = [_native_message(m) for m in messages]
        return RenderedChat(rendered, [_tool_json(f) for f in offered] or None)
    rendered = [_generic_message(m) for m in messages]
    if offered:
        instructions = generic_instructions(offered, tools.choice if tools else "auto")
        if rendered and rendered[0]["role"] in ("system", "developer"):
            first = rendered[0]
            rendered[0] = {**first, "content": (first["content"] + "\n\n" + instructions).strip()}
        else:
            rendered.insert(0, {"role": "system", "content": instructions})
    return RenderedChat(rendered)


def generic_instructions(functions: Sequence[FunctionDef],
                         choice: str | NamedTool = "auto") -> str:
    """The system text that offers ``functions`` to a model whose template knows no tools."""
    listed = "\n".join(json.dumps(_tool_json(f), ensure_ascii=False) for f in functions)
    if isinstance(choice, NamedTool):
        when = f"You must call the function {choice.name}."
    elif choice == "required":
        when = "You must call one of these functions."
    else:
        when = "Call a function when it helps to answer; otherwise answer normally."
    return (
        "# Tools\n\nYou can call these functions (described as JSON Schema):\n<tools>\n"
        f"{listed}\n</tools>\n\n{when} To call one, reply with its name and arguments as "
        f"JSON inside tags:\n{OPEN}\n"
        '{"name": "<function name>", "arguments": {<arguments>}}\n'
        f"{CLOSE}"
    )


def _tool_json(function: FunctionDef) -> dict[str, Any]:
    described: dict[str, Any] = {"name": function.name}
    if function.description:
        described["description"] = function.description
    described["parameters"] = dict(function.parameters)
    return {"type": "function", "function": described}


def _arguments_object(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments  # shown as the client sent it


def _call_text(name: str, arguments: str) -> str:
    body = json.dumps({"name": name, "arguments": _arguments_object(arguments)},
                      ensure_ascii=False)
    return f"{OPEN}\n{body}\n{CLOSE}"


def _generic_message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "user",
                "content": f"<tool_response>\n{message.content}\n</tool_response>"}
    content = message.content
    if message.tool_calls:
        calls = "\n".join(_call_text(c.function.name, c.function.arguments)
                          for c in message.tool_calls)
        content = f"{content}\n{calls}" if content else calls
    return {"role": message.role, "content": content}


def _native_message(message: ChatMessage) -> dict[str, Any]:
    rendered: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name is not None:
        rendered["name"] = message.name
    if message.tool_call_id is not None:
        rendered["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        rendered["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.function.name,
                          "arguments": _arguments_object(c.function.arguments)}}
            for c in message.tool_calls
        ]
    return rendered


# -- the grammar -----------------------------------------------------------------

def tool_grammar(tools: ToolSpec) -> gbnf.Grammar:
    """The grammar of a tool-call answer; raises ``grammar.SchemaError`` naming the tool.

    ``SchemaError.where`` is then ``tools[i].function.parameters...``.
    """
    converter = gbnf.new_converter()
    allowed = tools.allowed()
    alternatives = []
    for position, function in enumerate(tools.functions):
        if function not in allowed:
            continue
        where = f"tools[{position}].function.parameters"
        arguments = gbnf.add_schema_rules(converter, function.parameters,
                                          f"tool-{position}-arguments", where)
        head = gbnf.literal(f'"{function.name}", "arguments": ')
        alternatives.append(f"{head} {arguments}")
    # The same shape as the prompt's example and the calls rendered back into it.
    call = (f'{gbnf.literal(OPEN + chr(10) + "{" + chr(34) + "name" + chr(34) + ": ")} '
            f'( {" | ".join(alternatives)} ) {gbnf.literal("}" + chr(10) + CLOSE)}')
    root = 'tool-call ( "\\n" tool-call )*' if tools.parallel else "tool-call"
    text = gbnf.format_rules(converter, {"root": root, "tool-call": call})
    lazy = (_TRIGGER,) if tools.choice == "auto" else ()
    return gbnf.Grammar(text, lazy_patterns=lazy)


# -- out of the model's text ---------------------------------------------------------

def parse_output(text: str, tools: ToolSpec,
                 new_id: Callable[[], str] = new_call_id) -> tuple[str, list[ParsedCall]]:
    """Split a whole answer into its text and its tool calls."""
    stream = ToolCallStream(tools, new_id)
    pieces = stream.feed(text) + stream.finish()
    content = "".join(p for p in pieces if isinstance(p, str))
    calls = [p for p in pieces if isinstance(p, ParsedCall)]
    return (content.strip() if calls else content), calls


class ToolCallStream:
    """Separates streamed text from tool calls as the pieces arrive.

    Text is passed on at once, except what might be the start of ``<tool_call>``
    (held until the next piece decides). From the first tag on, everything is
    buffered and each call is given out whole, once its closing tag arrives.
    A block that is not a valid call of an offered function is given back as
    text (possible only without a grammar), so nothing the model wrote is lost.
    """

    def __init__(self, tools: ToolSpec, new_id: Callable[[], str] = new_call_id) -> None:
        self._names = {f.name for f in tools.allowed()} or {f.name for f in tools.functions}
        self._new_id = new_id
        self._held = ""
        self._in_calls = False
        self.calls: list[ParsedCall] = []

    def feed(self, piece: str) -> list[str | ParsedCall]:
        """Add ``piece``; return the text and the complete calls it released."""
        text = self._held + piece
        out: list[str | ParsedCall] = []
        while text:
            if not self._in_calls:
                start = text.find(OPEN)
                if start < 0:
                    keep = _partial_suffix(text, OPEN)
                    out.append(text[: len(text) - keep])
                    text = text[len(text) - keep:]
                    break
                out.append(text[:start])
                self._in_calls = True
                text = text[start:]
            # In calls: text is whitespace, then (part of) the next call.
            start = text.find(OPEN)
            end = text.find(CLOSE, start) if start >= 0 else -1
            if end < 0:
                break
            out.append(self._call_or_text(text[start + len(OPEN):end]))
            text = text[end + len(CLOSE):]
            rest = text.lstrip()
            if rest and not (rest.startswith(OPEN) or OPEN.startswith(rest)):
                self._in_calls = False  # the model went on writing text
                text = rest
        self._held = text
        return [p for p in out if not (isinstance(p, str) and not p)]

    def finish(self) -> list[str | ParsedCall]:
        """Whatever is held at the end: an unfinished call is given back as text."""
        held, self._held = self._held, ""
        if self._in_calls and not held.strip():
            return []
        return [held] if held else []

    def _call_or_text(self, block: str) -> str | ParsedCall:
        call = _parse_call(block, self._names)
        if call is None:
            return f"{OPEN}{block}{CLOSE}"
        name, arguments = call
        parsed = ParsedCall(len(self.calls), self._new_id(), name, arguments)
        self.calls.append(parsed)
        return parsed


def _parse_call(block: str, names: set[str]) -> tuple[str, str] | None:
    try:
        obj = json.loads(block)
    except ValueError:
        return None
    if not isinstance(obj, Mapping) or obj.get("name") not in names:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, Mapping):
        return None
    return str(obj["name"]), json.dumps(arguments, ensure_ascii=False)


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that begins ``tag``."""
    for length in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:length]):
            return length
    return 0
