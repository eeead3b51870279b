"""The public entry points, end to end over plain data."""

import copy

import pytest

from cerebrum.prompt import OptimizedMessages, optimize_messages, optimize_text
from cerebrum.prompt.optimizer import budget_tokens
from cerebrum.prompt.seed import seed_optimize
from cerebrum.prompt.tokens import estimate_tokens

from .snippets import ALL, BIG_CLASS, PYTHON, SYNC_FUNCTION, seed_example


def test_seed_example_shrinks_and_keeps_one_whole_copy() -> None:
    text = seed_example()
    assert 8000 <= len(text) <= 8700
    result = optimize_text(text)
    assert result.stats.skipped_reason is None
    assert result.stats.reduction >= 0.60
    assert result.text.startswith("Refactor this to use async/await\n")
    assert result.text.count(SYNC_FUNCTION.rstrip()) == 1
    assert result.language == "python"
    assert result.stats.chunks_unique == 1 < result.stats.chunks_total
    assert result.stats.optimized_chars == len(result.text)


def test_seed_algorithm_baseline() -> None:
    # The seed's literal algorithm: instruction first, then at most 3 windows of 1000 chars.
    out = seed_optimize(seed_example())
    assert out.startswith("Refactor this to use async/await\n\n")
    assert len(out) <= len("Refactor this to use async/await") + 3 * 1002 + 2
    cut = seed_optimize(PYTHON + "\nExplain fetch_json", top_k=None, max_chars=800)
    assert len(cut) <= 800


def _many_functions(n: int) -> str:
    parts = [PYTHON]
    for i in range(n):
        parts.append(
            f"def helper_{i}(items, factor={i}):\n"
            f'    """Scale items by {i} and drop the negative ones."""\n'
            f"    scaled = [item * factor for item in items]\n"
            f"    return [value for value in scaled if value >= 0]\n"
        )
    return "\n\n".join(parts)


@pytest.mark.parametrize("layout", ["after", "before", "fenced_before", "fenced_after"])
def test_named_function_survives_every_layout(layout: str) -> None:
    code = _many_functions(80)
    instruction = "Make parse_response raise a ValueError on bad JSON."
    text = {
        "after": f"{code}\n\n{instruction}",
        "before": f"{instruction}\n\n{code}",
        "fenced_before": f"{instruction}\n\n```python\n{code}```",
        "fenced_after": f"```\n{code}```\n{instruction}",
    }[layout]
    result = optimize_text(text, context_tokens=1024, max_tokens=256)
    target = PYTHON[PYTHON.index("def parse_response") : PYTHON.index("class RetryPolicy")].strip()
    assert target in result.text
    assert result.text.startswith(instruction)
    assert estimate_tokens(result.text) <= budget_tokens(1024, 256)
    assert result.stats.reduction > 0.6
    assert result.stats.chunks_kept < result.stats.chunks_total


@pytest.mark.parametrize("language", ["rust", "go", "c", "typescript"])
def test_other_languages_keep_the_named_definition(language: str) -> None:
    code = ALL[language]
    target = {
        "rust": "pub fn add_line",
        "go": "func walk",
        "c": "int count_lines",
        "typescript": "async drain",
    }[language]
    name = {"rust": "add_line", "go": "walk", "c": "count_lines", "typescript": "drain"}[language]
    filler = "\n".join(ALL[language].replace(name, f"{name}_copy{i}") for i in range(6))
    text = f"Explain what `{name}` does.\n\n```{language}\n{code}\n{filler}\n```"
    result = optimize_text(text, context_tokens=900, max_tokens=200)
    assert result.stats.skipped_reason is None
    assert result.language == language
    assert target in result.text


def test_big_class_method_request_keeps_header_and_method() -> None:
    text = (
        "Add a method `rename` to ConfigStore next to delete.\n\n"
        + BIG_CLASS
        + "\n\n"
        + _many_functions(30)
    )
    result = optimize_text(text, context_tokens=1024, max_tokens=256)
    assert "class ConfigStore:" in result.text
    assert "def delete(self, key):" in result.text


def test_small_prompt_is_skipped_unchanged() -> None:
    text = "Fix this:\n" + ALL["go"][:600]
    result = optimize_text(text)
    assert result.text == text
    assert result.stats.skipped_reason == "fits"
    assert result.stats.reduction == 0.0


def test_prompt_that_fits_but_saves_little_is_skipped() -> None:
    text = PYTHON * 2 + "\nExplain fetch_json."  # duplicate, but everything fits
    result = optimize_text(text + "\n" + "x = 1\n" * 0, context_tokens=8192)
    assert result.stats.skipped_reason in (None, "gain_below_10pct")
    big = "\n\n".join(ALL.values())
    unique = optimize_text("Explain everything.\n\n" + big, context_tokens=32768)
    assert unique.stats.skipped_reason == "gain_below_10pct"
    assert unique.text == "Explain everything.\n\n" + big


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty"), ("   \n\t ", "empty"), ("abc\x00\x01\x02" * 200, "binary")],
)
def test_bad_input_is_returned_unchanged(text: str, reason: str) -> None:
    result = optimize_text(text)
    assert result.text == text
    assert result.stats.skipped_reason == reason


def test_junk_over_the_budget_is_cut_to_fit_and_says_so() -> None:
    text = "abc\x00\x01\x02" * 2000
    result = optimize_text(text)
    assert estimate_tokens(result.text) <= budget_tokens(2048, 256)
    assert result.text.startswith("abc\x00") and "characters omitted" in result.text
    assert result.stats.warnings and result.stats.warnings[0].startswith("over_budget")


def test_random_bytes_do_not_raise() -> None:
    junk = bytes(range(256)).decode("latin-1") * 40
    result = optimize_text(junk)
    assert result.stats.warnings == (
        "over_budget: the text (binary) was cut in the middle to fit 1728 tokens",
    )
    assert optimize_text(junk[:1000]).stats.skipped_reason == "binary"


def test_huge_input_is_capped_and_keeps_the_named_function() -> None:
    filler = _many_functions(60)
    text = (
        "Explain parse_response.\n\n"
        + filler * 90
        + "\n\n"
        + "def parse_response2(x):\n    return x\n"
    )
    assert len(text) > 1_000_000
    result = optimize_text(text)
    assert result.stats.skipped_reason is None
    assert "def parse_response(body):" in result.text
    assert result.stats.elapsed_ms < 5000
    assert estimate_tokens(result.text) <= budget_tokens(2048, 256)


def test_mixed_languages_give_a_sane_result() -> None:
    text = "Compare these implementations.\n\n" + "\n\n".join(ALL.values()) * 3
    result = optimize_text(text, context_tokens=1024)
    assert result.text.startswith("Compare these implementations.")
    assert result.stats.reduction > 0.5


def test_prose_only_long_text() -> None:
    body = "\n\n".join(
        f"Note {i}: the deploy on host {i} failed because the disk was full." for i in range(200)
    )
    result = optimize_text(body + "\n\nWhich host failed first?", context_tokens=1024)
    assert result.language == "text"
    assert result.text.startswith("Which host failed first?")
    assert estimate_tokens(result.text) <= budget_tokens(1024, 256)


def test_messages_optimise_only_the_code_message() -> None:
    messages: list[dict] = [
        {"role": "system", "content": "You are a careful reviewer."},
        {"role": "user", "content": [{"type": "text", "text": seed_example()}]},
        {"role": "assistant", "content": "Sure."},
    ]
    original = copy.deepcopy(messages)
    result = optimize_messages(messages)
    assert isinstance(result, OptimizedMessages)
    assert messages == original  # input untouched
    assert result.messages[0] == messages[0] and result.messages[2] == messages[2]
    new = result.messages[1]["content"]
    assert isinstance(new, list) and new[0]["type"] == "text"
    assert new[0]["text"].count(SYNC_FUNCTION.rstrip()) == 1
    assert result.stats.reduction >= 0.6
    assert result.language == "python"


def test_later_user_message_steers_ranking() -> None:
    messages = [
        {
            "role": "user",
            "content": "Here is my module:\n\n```python\n" + _many_functions(80) + "```",
        },
        {"role": "assistant", "content": "Got it. What should I do with it?"},
        {"role": "user", "content": "Make parse_response raise on bad JSON."},
    ]
    result = optimize_messages(messages, context_tokens=1024)
    assert "def parse_response(body):" in result.messages[0]["content"]
    assert result.messages[2] == messages[2]


def test_messages_without_code_are_untouched() -> None:
    messages = [{"role": "user", "content": "Hello there, how are you?"}]
    result = optimize_messages(messages)
    assert result.messages == messages
    assert result.messages[0] is not messages[0]
    assert result.stats.skipped_reason is not None
    assert optimize_messages([]).messages == []


def test_prompt_over_budget_is_cut_even_when_the_saving_is_small(monkeypatch) -> None:
    from cerebrum.prompt import optimizer
    from cerebrum.prompt.tokens import estimate_tokens

    big = "\n\n".join(ALL.values())
    text = "Explain everything.\n\n" + big
    wanted = int(estimate_tokens(text) * 0.95)  # 5% over the budget
    context = next(
        c for c in range(wanted, wanted * 2) if optimizer.budget_tokens(c, 256) >= wanted
    )
    # Make any saving this prompt allows count as "small" (whole chunks cut
    # about 16-20% here): the only reason left to optimise is that it does not fit.
    monkeypatch.setattr(optimizer, "MIN_REDUCTION", 0.9)
    result = optimize_text(text, context_tokens=context, max_tokens=256)
    assert result.stats.skipped_reason is None
    assert estimate_tokens(result.text) <= optimizer.budget_tokens(context, 256)
    assert result.text.startswith("Explain everything.")
    # The same small saving on a prompt that fits is skipped.
    roomy = optimize_text(text, context_tokens=context * 2, max_tokens=256)
    assert roomy.stats.skipped_reason == "gain_below_10pct"
