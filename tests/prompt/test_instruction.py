"""Instruction extraction: before/after the code, fenced or not, never altered."""

import pytest

from cerebrum.prompt.instruction import code_weight, is_prose_line, message_text, split_prompt

from .snippets import PYTHON, RUST, C


def test_instruction_after_unfenced_code() -> None:
    text = PYTHON + "\nAdd type hints to build_url and parse_response."
    parts = split_prompt(text)
    assert parts.instruction == "Add type hints to build_url and parse_response."
    assert parts.instruction_before == ""
    assert "def build_url" in parts.code
    assert "Add type hints" not in parts.code


def test_instruction_before_unfenced_code() -> None:
    text = "Why does count_lines miss the last line?\n\n" + C
    parts = split_prompt(text)
    assert parts.instruction_before == "Why does count_lines miss the last line?"
    assert parts.code.startswith("#include <stdio.h>")


def test_fenced_code_with_prose_on_both_sides() -> None:
    text = "Here is my Rust code:\n\n```rust\n" + RUST + "```\n\nMake `top` return owned Strings."
    parts = split_prompt(text)
    assert parts.fence_tag == "rust"
    assert parts.fenced
    assert parts.instruction_before == "Here is my Rust code:"
    assert parts.instruction_after == "Make `top` return owned Strings."
    assert parts.code.rstrip() == RUST.rstrip()


def test_unterminated_fence_runs_to_the_end() -> None:
    parts = split_prompt("Explain this:\n```python\ndef f(x):\n    return x *")
    assert parts.instruction == "Explain this:"
    assert parts.code == "def f(x):\n    return x *"


def test_multiline_instruction_kept_verbatim() -> None:
    instruction = (
        "Please refactor the retry loop.\n\nKeep the public names, and explain the change!"
    )
    parts = split_prompt(instruction + "\n\n" + PYTHON)
    assert parts.instruction == instruction


def test_prose_only_text_keeps_question_as_instruction() -> None:
    body = "\n\n".join(
        f"Paragraph {i} of a long design note that says many things." for i in range(40)
    )
    parts = split_prompt(body + "\n\nWhat is the main risk here?")
    assert parts.instruction == "What is the main risk here?"
    assert parts.code.startswith("Paragraph 0")


@pytest.mark.parametrize(
    ("line", "prose"),
    [
        ("Refactor this to use async/await", True),
        ("- make it faster", True),
        ("Why does this fail?", True),
        ("def foo(x):", False),
        ("    return x", False),
        ("import os", False),
        ("}", False),
        ("let mut x = 5;", False),
        ("# a comment", False),
        ("main()", False),
    ],
)
def test_is_prose_line(line: str, prose: bool) -> None:
    assert is_prose_line(line) is prose


def test_message_text_joins_text_parts_and_skips_images() -> None:
    content = [
        {"type": "text", "text": "first"},
        {"type": "image_url", "image_url": {"url": "data:"}},
        {"type": "text", "text": "second"},
    ]
    assert message_text(content) == "first\nsecond"
    assert message_text(None) == ""


def test_code_weight_tells_code_from_chat() -> None:
    assert code_weight("Thanks, that helped a lot. Can you explain it again more slowly?") == 0
    assert code_weight("Look:\n" + PYTHON) > 500


def test_a_prefixed_docstring_after_the_question_is_code() -> None:
    code = (
        'r"""A client for the protocol.\n\nIt reads and writes lines.\n"""\n'
        "import os\n\n\ndef f():\n    return os.sep\n"
    )
    parts = split_prompt(f"Why does reading hang after the server quits?\n\n{code}")
    assert parts.instruction == "Why does reading hang after the server quits?"
    assert parts.code.startswith('r"""A client')
