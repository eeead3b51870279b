"""De-duplication: exact (whitespace-normalised) and near duplicates, first kept."""

from cerebrum.prompt.chunking import chunk_text
from cerebrum.prompt.dedup import dedupe, normalized_hash, shingles

from .snippets import PYTHON, SYNC_FUNCTION


def test_exact_duplicates_keep_the_first() -> None:
    code = "\n\n".join([SYNC_FUNCTION] * 5)
    chunks = chunk_text(code, "python")
    assert len(chunks) == 5
    unique = dedupe(chunks)
    assert unique == [chunks[0]]


def test_whitespace_only_differences_are_exact_duplicates() -> None:
    assert normalized_hash("def f():\n    return 1") == normalized_hash("def  f():\n\treturn   1\n")
    assert normalized_hash("return 1") != normalized_hash("return 2")


def test_near_duplicate_with_one_changed_line_is_dropped() -> None:
    changed = SYNC_FUNCTION.replace("timeout=timeout).json()", "timeout=timeout * 2).json()")
    chunks = chunk_text(SYNC_FUNCTION + "\n\n" + changed, "python")
    assert len(chunks) == 2
    assert dedupe(chunks) == [chunks[0]]


def test_truncated_copy_is_contained_and_dropped() -> None:
    cut = SYNC_FUNCTION[: int(len(SYNC_FUNCTION) * 0.7)]
    code = SYNC_FUNCTION + "\n\n" + cut
    chunks = chunk_text(code, "python")
    assert len(dedupe(chunks)) == 1


def test_similar_definitions_with_different_names_are_kept() -> None:
    other = SYNC_FUNCTION.replace("def fetch_user_data", "def fetch_user_data_v2")
    chunks = chunk_text(SYNC_FUNCTION + "\n\n" + other, "python")
    assert len(dedupe(chunks)) == 2


def test_distinct_code_is_untouched_and_order_kept() -> None:
    chunks = chunk_text(PYTHON, "python")
    assert dedupe(chunks) == chunks


def test_shingles_are_line_sets_ignoring_indentation() -> None:
    assert shingles("a = 1\n    b = 2\n") == shingles("  a = 1\n\nb = 2")
    assert len(shingles("x\ny\nx\n")) == 2
    assert shingles("") == frozenset()
