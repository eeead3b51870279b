"""Language detection: fence tag, file names, syntax evidence."""

import pytest

from cerebrum.prompt.language import detect_language, normalize_tag

from .snippets import ALL


@pytest.mark.parametrize("language", sorted(ALL))
def test_detects_each_language_from_syntax(language: str) -> None:
    assert detect_language(ALL[language]) == language


def test_fence_tag_wins_over_syntax() -> None:
    assert detect_language(ALL["python"], fence_tag="rs") == "rust"
    assert detect_language("x = 1", fence_tag="C++") == "cpp"


def test_unknown_fence_tag_falls_back_to_syntax() -> None:
    assert detect_language(ALL["go"], fence_tag="weird") == "go"


def test_file_name_in_prompt() -> None:
    assert detect_language("x = load(a)\ny = x + 1\n", context="This is from utils/loader.py") == "python"
    assert detect_language("print foo", context="see build.sh") == "shell"


def test_header_file_name_lets_syntax_choose_c_or_cpp() -> None:
    assert detect_language(ALL["cpp"], context="in geometry.h") == "cpp"


def test_prose_is_text() -> None:
    assert detect_language("The quick brown fox jumps over the lazy dog.\n" * 20) == "text"
    assert detect_language("") == "text"


def test_mixed_languages_pick_the_dominant_one() -> None:
    mixed = ALL["rust"] + "\n" + ALL["shell"][:120]
    assert detect_language(mixed) == "rust"


def test_normalize_tag() -> None:
    assert normalize_tag("py") == "python"
    assert normalize_tag(".tsx") == "typescript"
    assert normalize_tag("cobol") is None
    assert normalize_tag(None) is None
