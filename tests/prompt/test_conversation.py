"""Whole conversations: one budget for the request, the question whole, stable prefixes."""

import threading

from cerebrum.prompt import optimize_messages
from cerebrum.prompt.chunking import get_parser
from cerebrum.prompt.instruction import split_prompt
from cerebrum.prompt.language import detect_language
from cerebrum.prompt.optimizer import budget_tokens
from cerebrum.prompt.ranking import named_identifiers, read_focus
from cerebrum.prompt.tokens import estimate_tokens

from .snippets import JAVA, PYTHON, RUST

FILLER = "\n\n".join(
    f'def helper_{i}(items, factor={i}):\n    """Scale items by {i}."""\n'
    f"    return [item * factor for item in items if item >= 0]\n"
    for i in range(120)
)
CODE = PYTHON + "\n\n" + FILLER
ERROR = """Traceback (most recent call last):
  File "/srv/app.py", line 9, in <module>
    fetch_json(session, base, "/users")
  File "/srv/helpers.py", line 44, in fetch_json
    return parse_response(body)
  File "/srv/helpers.py", line 24, in parse_response
    data = json.loads(body)
json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)"""


def _total(messages: list[dict]) -> int:
    return sum(estimate_tokens(m["content"]) + 4 for m in messages)


def _conversation() -> list[dict]:
    return [
        {"role": "system", "content": "You are a careful reviewer."},
        {"role": "user", "content": f"Here is my module:\n\n```python\n{CODE}\n```"},
        {
            "role": "assistant",
            "content": "Thanks, I have read it. " + "It fetches JSON over HTTP. " * 20,
        },
        {
            "role": "user",
            "content": f"Thanks. Now calling `fetch_json` fails with this:\n{ERROR}\nWhat's wrong?",
        },
    ]


def test_a_follow_up_fits_the_whole_request_and_keeps_the_question_whole() -> None:
    messages = _conversation()
    result = optimize_messages(messages, context_tokens=2048, max_tokens=256)
    assert _total(result.messages) <= budget_tokens(2048, 256)
    assert result.messages[3] == messages[3]  # the current question, error report and all
    assert result.messages[0] == messages[0]
    code = result.messages[1]["content"]
    assert "def parse_response(body):" in code and "def fetch_json(" in code
    assert len(code) < len(messages[1]["content"]) / 3
    actions = [m.action for m in result.stats.messages]
    assert actions == ["kept", "optimized", "kept", "kept"]
    why = {k.name: k.why for k in result.stats.messages[1].kept}
    assert why["parse_response"].startswith("crash site")
    assert result.stats.skipped_reason is None


def test_the_next_turn_keeps_the_leading_messages_byte_for_byte() -> None:
    first = optimize_messages(_conversation())
    grown = _conversation() + [
        {"role": "assistant", "content": "`body` is empty when the server answers 204. " * 4},
        {"role": "user", "content": "How would I test that?"},
    ]
    second = optimize_messages(grown)
    assert second.messages[:4] == first.messages
    assert _total(second.messages) <= budget_tokens(2048, 256)


def test_old_answers_give_way_before_the_code() -> None:
    long_answer = "Here is a long explanation of the module. " * 60
    messages = _conversation()
    messages[2]["content"] = long_answer
    messages += [
        {"role": "assistant", "content": long_answer},
        {"role": "user", "content": "And why does `parse_response` not catch it?"},
    ]
    result = optimize_messages(messages)
    assert _total(result.messages) <= budget_tokens(2048, 256)
    assert result.stats.messages[2].action in ("shortened", "omitted")
    assert "def parse_response(body):" in result.messages[1]["content"]
    assert result.messages[-1] == messages[-1]


def test_a_system_prompt_and_question_over_the_budget_are_cut_and_said_so() -> None:
    messages = [
        {"role": "system", "content": "Rules. " * 2000},
        {"role": "user", "content": "Question? " * 2000},
    ]
    result = optimize_messages(messages, context_tokens=1024, max_tokens=128)
    assert _total(result.messages) <= budget_tokens(1024, 128)
    assert any(w.startswith("question_cut") for w in result.stats.warnings)


def test_backticks_make_common_words_identifiers_and_paths_are_not() -> None:
    assert {"get", "New"} <= named_identifiers("Why does `get` differ from `New`?")
    focus = read_focus("In src/output/fmt.rs, why does render fail?")
    assert not {"fmt", "output"} & (focus.names | focus.soft_names)
    # A plain word may be English: a soft name, not a sure one.
    assert "render" in focus.soft_names and "render" not in focus.names
    assert focus.files == ("src/output/fmt.rs",)


def test_fences_inside_code_and_rest_underlines_are_not_fences() -> None:
    docstring = (
        'def f():\n    """Example:\n\n    ```python\n    f()\n    ```\n    """\n    return 1\n'
    )
    parts = split_prompt(f"Explain f.\n\n```python\n{docstring}```")
    assert parts.code.rstrip() == docstring.rstrip()
    rest = "Usage\n~~~~~\n\nRun it.\n\n" + PYTHON
    assert "def build_url" in split_prompt(f"Explain build_url.\n\n{rest}").code
    rust = RUST.replace("use std", "//! ```\n//! let x = 1;\n//! ```\nuse std")
    parts = split_prompt(f"Why does add_line panic?\n\n{rust}")
    assert parts.instruction == "Why does add_line panic?"


def test_unfenced_java_is_java() -> None:
    assert detect_language(JAVA) == "java"


def test_parsers_are_per_thread() -> None:
    mine = get_parser("c")
    assert get_parser("c") is mine
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(get_parser("c")))
    worker.start()
    worker.join()
    assert seen and seen[0] is not mine


def test_digit_heavy_code_is_not_undercounted() -> None:
    table = "DATA = [" + ", ".join(str(100000 + i * 7919) for i in range(400)) + "]"
    digits = sum(ch.isdigit() for ch in table)
    assert estimate_tokens(table) >= digits  # SmolLM2 and the Qwen coders spend a token per digit


def test_a_follow_up_naming_a_definition_in_a_plain_word_gets_it() -> None:
    # `tally` is a plain word (a soft name), defined at the end of a long file:
    # the trim for the first question (about `fetch_json`) leaves it out; the
    # follow-up that asks about it brings it back.
    tally = (
        "def tally(items):\n    total = 0\n    for item in items:\n"
        "        total += item\n    return total\n"
    )
    messages = [
        {"role": "user", "content": f"Here is my module:\n\n```python\n{CODE}\n\n{tally}```"},
        {"role": "user", "content": "Explain what `fetch_json` does."},
        {"role": "assistant", "content": "It fetches a URL and parses the JSON body."},
        {"role": "user", "content": "Why does tally count the negative items too?"},
    ]
    result = optimize_messages(messages, context_tokens=2048, max_tokens=256)
    assert "def tally(items):" in result.messages[0]["content"]
    assert _total(result.messages) <= budget_tokens(2048, 256)
