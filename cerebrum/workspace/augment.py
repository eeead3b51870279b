"""Put retrieved code into a completion request (pure: plain data in, plain data out).

The retrieved context goes into a system message at the head of a chat (merged
into the client's own system message when there is one, so chat templates
that want one system message first still work), or before a text prompt.
It gets the room the conversation leaves in the optimiser's budget, and at
least half of that budget: when the client pasted more code than fits, the
optimiser then shrinks the pasted message into the other half, since it
counts the system message among the messages it leaves alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from cerebrum.errors import BadRequest
from cerebrum.openai_wire import (
    AnyCompletionRequest,
    ChatCompletionRequest,
    ChatMessage,
)
from cerebrum.prompt.optimizer import budget_tokens
from cerebrum.prompt.tokens import estimate_tokens
from cerebrum.workspace.paths import InvalidPath, check_name
from cerebrum.workspace.retrieve import Retrieved

WORKSPACE_HEADER = "X-Cerebrum-Workspace"
"""``X-Cerebrum-Workspace: NAME``: the same as ``"cerebrum": {"workspace": "NAME"}``."""
_PER_MESSAGE_TOKENS = 4
# Earlier user messages still say what the conversation is about.
_HISTORY_MESSAGES = 3

Retriever = Callable[[str, int], Retrieved]
"""``(question, budget_tokens) -> Retrieved``, bound to one workspace."""


def requested_workspace(headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """The workspace a request asks to retrieve from (body option, else header), checked."""
    options = body.get("cerebrum")
    name: object = None
    if isinstance(options, Mapping) and "workspace" in options:
        name = options["workspace"]
        param = "cerebrum.workspace"
    elif headers.get(WORKSPACE_HEADER):
        name = headers[WORKSPACE_HEADER].strip()
        param = WORKSPACE_HEADER
    if name is None:
        return None
    try:
        return check_name(name)
    except InvalidPath as exc:
        raise BadRequest(str(exc), param=param) from None


def question_text(parsed: AnyCompletionRequest) -> str:
    """What to search for: the last user message first, then a few earlier ones."""
    if not isinstance(parsed, ChatCompletionRequest):
        return parsed.prompt
    users = [m.content for m in parsed.messages if m.role == "user" and m.content.strip()]
    return "\n\n".join(reversed(users[-_HISTORY_MESSAGES:]))


def conversation_tokens(parsed: AnyCompletionRequest) -> int:
    """The estimated tokens of the prompt as the client sent it."""
    if isinstance(parsed, ChatCompletionRequest):
        return sum(estimate_tokens(m.content) + _PER_MESSAGE_TOKENS for m in parsed.messages)
    return estimate_tokens(parsed.prompt)


def retrieval_budget(parsed: AnyCompletionRequest, context_tokens: int, reply_tokens: int,
                     *, optimize: bool = True) -> int:
    """Room for retrieved code: what the conversation leaves, at least half the budget
    when the optimiser will shrink the conversation into the rest (not when it is off)."""
    budget = budget_tokens(context_tokens, reply_tokens)
    left = budget - conversation_tokens(parsed) - _PER_MESSAGE_TOKENS
    return max(left, budget // 2) if optimize else max(0, left)


def augment_request(
    body: dict[str, Any],
    parsed: AnyCompletionRequest,
    retriever: Retriever,
    *,
    context_tokens: int,
    reply_tokens: int,
    optimize: bool = True,
) -> tuple[dict[str, Any], AnyCompletionRequest, Retrieved]:
    """The body and typed request with the retrieved code in, and what was retrieved."""
    retrieved = retriever(question_text(parsed), retrieval_budget(
        parsed, context_tokens, reply_tokens, optimize=optimize))
    if not retrieved.text:
        return body, parsed, retrieved
    if isinstance(parsed, ChatCompletionRequest):
        messages = list(body["messages"])
        first = messages[0] if messages else None
        typed = list(parsed.messages)
        if isinstance(first, Mapping) and first.get("role") == "system" \
                and isinstance(first.get("content"), str):
            content = f"{first['content'].rstrip()}\n\n{retrieved.text}"
            messages[0] = {**first, "content": content}
            typed[0] = ChatMessage("system", content)
        else:
            messages.insert(0, {"role": "system", "content": retrieved.text})
            typed.insert(0, ChatMessage("system", retrieved.text))
        return ({**body, "messages": messages}, attrs.evolve(parsed, messages=tuple(typed)),
                retrieved)
    prompt = f"{retrieved.text}\n\n{parsed.prompt}"
    return {**body, "prompt": prompt}, attrs.evolve(parsed, prompt=prompt), retrieved
