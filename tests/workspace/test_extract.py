"""One file into units, with the optimiser's chunker."""

from __future__ import annotations

from cerebrum.workspace.extract import extract_file, language_for, references, words
from tests.workspace.repo import FILES


def test_words_split_identifiers_like_the_optimiser() -> None:
    assert words("countWords") == ["countwords", "count", "word"]
    assert words("fetch_with_retry") == ["fetchwithretry", "fetch", "with", "retri"]
    # Stemmed so that prose and code meet: "parsing" / parse, "proxies" / proxy.
    assert words("parsing") == words("parse") and words("proxies") == words("proxy")


def test_definitions_with_lines_docstrings_and_references() -> None:
    extracted = extract_file("net/retry.py", FILES["net/retry.py"])
    assert extracted is not None and extracted.language == "python"
    by_name = {u.name: u for u in extracted.definitions if u.is_definition}
    fetch = by_name["fetch_with_retry"]
    lines = FILES["net/retry.py"].split("\n")
    assert lines[fetch.start_line - 1].startswith("def fetch_with_retry")
    assert lines[fetch.end_line - 1].strip() == 'raise RuntimeError("gave up")'
    assert "503 Service Unavailable" in fetch.doc
    assert {"backoff_delay", "sleep", "get", "range"} <= fetch.refs
    assert "fetch_with_retry" not in fetch.refs
    # The units cover the file: the preamble (docstring, import) is one too.
    assert extracted.definitions[0].kind == "preamble"


def test_comments_count_as_documentation() -> None:
    extracted = extract_file("text/words.py", FILES["text/words.py"])
    assert extracted is not None
    slug = next(u for u in extracted.definitions if u.name == "slugify")
    assert "URL-safe" in slug.doc


def test_other_languages_use_tree_sitter_and_unknown_files_are_skipped() -> None:
    js = extract_file("web/app.js",
                      "function renderPage(req) {\n  // draw it\n  return draw(req);\n}\n")
    assert js is not None and js.definitions[0].name == "renderPage"
    assert js.definitions[0].refs == frozenset({"draw"}) and "draw it" in js.definitions[0].doc
    assert extract_file("README.md", "# hi") is None
    assert language_for("lib/x.RS") == "rust"


def test_references_are_bounded() -> None:
    text = "\n".join(f"f{i}()" for i in range(500))
    assert len(references(text)) == 64
