"""Ranking: definitions named in the instruction first, then callees, then BM25."""

from cerebrum.prompt.chunking import chunk_text
from cerebrum.prompt.ranking import named_identifiers, rank_chunks, read_focus, split_identifier

from .snippets import ALL, BIG_CLASS, PYTHON


def _order(ranked: list) -> list:
    return [item.chunk.name for item in ranked]


def test_split_identifier() -> None:
    assert split_identifier("parseHTTPResponse") == ["parse", "http", "response"]
    assert split_identifier("load_config_file") == ["load", "config", "file"]
    assert split_identifier("URLPath2") == ["url", "path", "2"]


def test_definition_beats_mentions() -> None:
    # fetch_json mentions parse_response and build_url; only one chunk defines parse_response.
    ranked = rank_chunks(chunk_text(PYTHON, "python"), "Make parse_response raise on bad JSON")
    assert ranked[0].chunk.name == "parse_response"
    assert ranked[0].defines_target
    assert ranked[0].score > 10 * ranked[1].score


def test_callees_of_the_target_get_a_bonus() -> None:
    ranked = rank_chunks(chunk_text(PYTHON, "python"), "Add logging to fetch_json")
    assert ranked[0].chunk.name == "fetch_json"
    callees = {item.chunk.name for item in ranked if item.is_callee}
    assert {"build_url", "parse_response"} <= callees
    positions = _order(ranked)
    assert positions.index("build_url") < positions.index("RetryPolicy") or "RetryPolicy" in callees


def test_lexical_relevance_uses_split_identifiers() -> None:
    ranked = rank_chunks(chunk_text(ALL["javascript"], "javascript"), "the word counting is off by one")
    assert ranked[0].chunk.name == "countWords"


def test_method_named_with_its_class() -> None:
    ranked = rank_chunks(chunk_text(BIG_CLASS, "python"), "Make ConfigStore.save write atomically")
    assert ranked[0].chunk.name == "save"
    assert ranked[1].chunk.name == "ConfigStore"  # the header: the class is named too


def test_go_method_and_rust_impl() -> None:
    ranked = rank_chunks(chunk_text(ALL["go"], "go"), "Why can walk recurse forever?")
    assert ranked[0].chunk.name == "walk"
    ranked = rank_chunks(chunk_text(ALL["rust"], "rust"), "Add a reset method to WordCounter")
    assert {ranked[0].chunk.name, ranked[1].chunk.name} == {"WordCounter"}


def test_no_instruction_keeps_original_order() -> None:
    chunks = chunk_text(PYTHON, "python")
    assert [item.chunk for item in rank_chunks(chunks, "")] == chunks


def test_named_identifiers_skip_english() -> None:
    names = read_focus("Refactor this to use async/await in fetch_json and the Report class").names
    assert "fetch_json" in names and "Report" in names
    assert not {"this", "to", "use", "the", "class", "Refactor"} & names
