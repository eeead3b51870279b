"""Chunking at syntactic boundaries, with fallbacks."""

import pytest

from cerebrum.prompt.chunking import (
    CLASS_HEADER,
    DEFINITION,
    METHOD,
    PREAMBLE,
    WINDOW,
    chunk_text,
    get_parser,
)

from .snippets import ALL, BIG_CLASS, PYTHON


def _covers(code: str, chunks: list) -> bool:
    """Chunks are whole lines, in order, covering every non-blank line exactly once."""
    lines = code.split("\n")
    covered: list[int] = []
    for chunk in chunks:
        covered.extend(range(chunk.start_line, chunk.end_line))
    assert covered == sorted(covered)
    assert len(covered) == len(set(covered))
    missing = [i for i, line in enumerate(lines) if line.strip() and i not in set(covered)]
    return not missing


def _defined(chunks: list) -> list:
    return [c.name for c in chunks if c.kind in (DEFINITION, METHOD, CLASS_HEADER)]


def test_python_one_chunk_per_top_level_definition() -> None:
    chunks = chunk_text(PYTHON, "python")
    assert chunks[0].kind == PREAMBLE
    assert "import json" in chunks[0].text and "TIMEOUT = 10" in chunks[0].text
    assert "TIMEOUT" in chunks[0].names
    assert _defined(chunks) == ["build_url", "parse_response", "RetryPolicy", "fetch_json"]
    assert _covers(PYTHON, chunks)
    by_name = {c.name: c for c in chunks}
    assert by_name["parse_response"].text.strip().startswith("def parse_response(body):")
    assert by_name["parse_response"].text.rstrip().endswith("return None")


def test_big_python_class_is_split_per_method_with_header() -> None:
    chunks = chunk_text(BIG_CLASS, "python")
    header = next(c for c in chunks if c.kind == CLASS_HEADER)
    assert header.name == "ConfigStore"
    assert header.text.lstrip().startswith("class ConfigStore:")
    assert 'separator = "="' in header.text
    methods = [c for c in chunks if c.kind == METHOD]
    assert [m.name for m in methods] == [
        "__init__",
        "load",
        "save",
        "get",
        "set",
        "delete",
        "items",
    ]
    assert all(m.parent == "ConfigStore" for m in methods)
    assert _covers(BIG_CLASS, chunks)


def test_decorators_and_comments_stay_with_their_function() -> None:
    code = (
        "import functools\n\n\n# Cached because parsing is slow.\n"
        "@functools.cache\ndef parse(x):\n    return x\n"
    )
    chunks = chunk_text(code, "python")
    parse = next(c for c in chunks if c.name == "parse")
    assert parse.text.startswith(
        "# Cached because parsing is slow.\n@functools.cache\ndef parse(x):"
    )


def test_python_cut_mid_function_falls_back_to_indentation() -> None:
    code = PYTHON[: PYTHON.index("    for delay in")]  # the paste stops inside fetch_json
    chunks = chunk_text(code, "python")
    assert _defined(chunks)[:3] == ["build_url", "parse_response", "RetryPolicy"]
    assert "fetch_json" in _defined(chunks)
    assert _covers(code, chunks)


def test_python_starting_mid_function() -> None:
    code = "        return value * 2\n    return helper\n\n\ndef second(a):\n    return a + 1\n"
    chunks = chunk_text(code, "python")
    assert chunks[-1].name == "second"
    assert "return helper" in chunks[0].text


@pytest.mark.parametrize(
    ("language", "names"),
    [
        ("javascript", ["readLines", "countWords", "Report"]),
        ("typescript", ["Job", "JobState", "JobQueue", "makeJob"]),
        ("rust", ["WordCounter", "WordCounter", "main"]),
        ("c", ["buffer_new", "buffer_free", "count_lines", "main"]),
        ("cpp", ["geometry", "clamp", "main"]),
        ("go", ["Node", "Add", "walk", "main"]),
        ("java", ["Cart"]),
        ("shell", ["log", "backup_file"]),
    ],
)
def test_tree_sitter_languages(language: str, names: list) -> None:
    code = ALL[language]
    chunks = chunk_text(code, language)
    assert _defined(chunks) == names
    assert _covers(code, chunks)
    assert chunks[0].kind == PREAMBLE


def test_big_rust_impl_is_split_per_method() -> None:
    methods = "\n".join(
        f"    pub fn method_{i}(&self, value: u64) -> u64 {{\n        let doubled = value * {i};\n"
        f"        doubled + self.base + {i}\n    }}\n"
        for i in range(20)
    )
    code = f"pub struct Calc {{\n    base: u64,\n}}\n\nimpl Calc {{\n{methods}}}\n"
    chunks = chunk_text(code, "rust")
    header = next(c for c in chunks if c.kind == CLASS_HEADER)
    assert header.name == "Calc" and header.text.startswith("impl Calc {")
    method_names = [c.name for c in chunks if c.kind == METHOD]
    assert method_names == [f"method_{i}" for i in range(20)]
    assert all(c.parent == "Calc" for c in chunks if c.kind == METHOD)


def test_big_java_class_is_split_per_method() -> None:
    body = "\n".join(
        f"    public int compute{i}(int x) {{\n"
        f"        int y = x * {i};\n        return y + {i};\n    }}\n"
        for i in range(25)
    )
    head = (
        "package a.b;\n\nimport java.util.List;\n\n"
        "public class Maths {\n    private int base = 1;\n\n"
    )
    code = f"{head}{body}}}\n"
    chunks = chunk_text(code, "java")
    assert chunks[0].kind == PREAMBLE and "import java.util.List;" in chunks[0].text
    header = next(c for c in chunks if c.kind == CLASS_HEADER)
    assert "private int base = 1;" in header.text
    assert [c.name for c in chunks if c.kind == METHOD] == [f"compute{i}" for i in range(25)]


def test_plain_text_splits_at_paragraphs() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "words " * 60 for i in range(10))
    chunks = chunk_text(text, "text")
    assert len(chunks) > 3
    assert all(len(c.text) < 2000 for c in chunks)
    assert "".join(c.text for c in chunks).count("Paragraph") == 10


def test_minified_line_falls_back_to_windows() -> None:
    code = "var a=1;" * 2000
    chunks = chunk_text(code, "text")
    assert chunks and all(c.kind == WINDOW for c in chunks)
    assert "".join(c.text for c in chunks) == code


def test_empty_code_has_no_chunks() -> None:
    assert chunk_text("", "python") == []
    assert chunk_text("\n\n  \n", "rust") == []


def test_grammar_parsers_are_cached() -> None:
    assert get_parser("go") is get_parser("go")


def test_a_parse_past_its_time_gives_up_and_leaves_the_parser_usable(
        monkeypatch, caplog) -> None:
    from cerebrum.prompt import chunking

    # "/* " repeated sends tree-sitter's error recovery quadratic (8 KB: 8 s).
    hostile = "/* " * 2700
    monkeypatch.setattr(chunking, "PARSE_BASE_S", 0.01)
    with caplog.at_level("INFO", logger="cerebrum.prompt.chunking"):
        chunks = chunk_text(hostile, "c")
    assert "tree-sitter gave up on 8100 bytes of c" in caplog.text
    assert "".join(chunk.text for chunk in chunks) == hostile  # cut into windows
    # The halted parse is not resumed by the next text's parse.
    code = "int one(void) {\n    return 1;\n}\n\nint two(void) {\n    return 2;\n}\n"
    assert _defined(chunk_text(code, "c")) == ["one", "two"]


def test_unicode_code_keeps_lines_aligned() -> None:
    code = 'def grüß(name):\n    return f"Grüß dich, {name} ✓"\n\n\ndef zwei():\n    return 2\n'
    chunks = chunk_text(code, "python")
    assert [c.name for c in chunks] == ["grüß", "zwei"]
    ts_chunks = chunk_text(
        'fn grüß() -> &\'static str {\n    "✓"\n}\n\nfn zwei() -> u8 {\n    2\n}\n', "rust"
    )
    assert [c.name for c in ts_chunks] == ["grüß", "zwei"]


def test_c_definitions_inside_ifdef_are_chunks_of_their_own() -> None:
    code = "\n".join(
        [
            "#include <stdio.h>",
            "",
            "static int base(int x) {",
            "    return x + 1;",
            "}",
            "",
            "#ifdef DEBUG",
            "static void trace(int x) {",
            '    printf("%d\\n", x);',
            "}",
            "",
            "static void dump(int *xs, int n) {",
            "    for (int i = 0; i < n; i++) trace(xs[i]);",
            "}",
            "#endif",
            "",
            "int main(void) {",
            "    return base(1);",
            "}",
        ]
    )
    names = [chunk.name for chunk in chunk_text(code, "c")]
    assert {"base", "trace", "dump", "main"} <= set(names)
