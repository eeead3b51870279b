"""Error reports pasted with code: found, kept as instruction, frames read and ranked."""

import pytest

from cerebrum.prompt import optimize_text
from cerebrum.prompt.chunking import chunk_text
from cerebrum.prompt.instruction import split_prompt
from cerebrum.prompt.ranking import rank_chunks, read_focus
from cerebrum.prompt.reports import find_reports, is_report, trim_report

from .snippets import PYTHON

TRACEBACK = """Traceback (most recent call last):
  File "/home/me/app.py", line 3, in <module>
    main()
  File "/home/me/helpers.py", line 42, in fetch_json
    return parse_response(body)
  File "/home/me/helpers.py", line 24, in parse_response
    data = json.loads(body)
ValueError: Expecting value: line 1 column 1 (char 0)"""

GO_PANIC = """panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x47e2f5]

goroutine 1 [running]:
main.(*Tree).walk(0x0, 0xc00001c030)
\t/home/me/tree.go:31 +0x15
main.main()
\t/home/me/main.go:12 +0x25
exit status 2"""

RUST_PANIC = """thread 'main' panicked at src/counter.rs:17:22:
called `Option::unwrap()` on a `None` value
stack backtrace:
   0: rust_begin_unwind
   1: core::panicking::panic
   2: wordcount::counter::WordCounter::add_line
             at ./src/counter.rs:17:22
   3: wordcount::main
             at ./src/main.rs:9:5"""

JAVA_TRACE = """Exception in thread "main" java.lang.NullPointerException: \
Cannot invoke "String.length()"
\tat com.example.shop.Cart.total(Cart.java:27)
\tat com.example.shop.Main.main(Main.java:8)"""

GCC = """counter.c: In function 'count_lines':
counter.c:14:9: error: 'fp' undeclared (first use in this function)
   14 |     if (fp == NULL) {
      |         ^~"""


@pytest.mark.parametrize(
    ("report", "innermost"),
    [
        (TRACEBACK, "parse_response"),
        (GO_PANIC, "walk"),
        (RUST_PANIC, "add_line"),
        (JAVA_TRACE, "total"),
        (GCC, "count_lines"),
    ],
)
def test_each_kind_is_found_with_its_innermost_frame(report: str, innermost: str) -> None:
    found = find_reports(f"It fails:\n{report}\nWhy?")
    assert len(found) == 1
    assert found[0].text == report
    assert found[0].innermost is not None and found[0].innermost.function == innermost


ABSURD = "9" * 5000  # past the 4,300 digits int() reads


@pytest.mark.parametrize(
    "report",
    [
        TRACEBACK.replace("line 24", f"line {ABSURD}"),
        GO_PANIC.replace("tree.go:31", f"tree.go:{ABSURD}"),
        RUST_PANIC.replace("counter.rs:17:22", f"counter.rs:{ABSURD}:22"),
        JAVA_TRACE.replace("Cart.java:27", f"Cart.java:{ABSURD}"),
        GCC.replace("counter.c:14:9", f"counter.c:{ABSURD}:9"),
    ],
)
def test_an_absurd_line_number_is_read_as_past_the_end(report: str) -> None:
    found = find_reports(f"It fails:\n{report}\nWhy?")
    assert len(found) == 1
    assert any(frame.line == 10**9 for frame in found[0].frames)
    result = optimize_text(f"```python\n{PYTHON}\n```\n\nIt fails:\n{report}")
    assert result.stats.skipped_reason is None

def test_rust_panic_without_backtrace_points_at_file_and_line() -> None:
    short = RUST_PANIC.split("\nstack backtrace:")[0]
    frame = find_reports(short)[0].innermost
    assert frame is not None and (frame.file, frame.line, frame.function) == (
        "src/counter.rs",
        17,
        None,
    )


@pytest.mark.parametrize("layout", ["unfenced_after", "own_fence", "same_fence", "report_first"])
def test_the_report_is_instruction_in_every_layout(layout: str) -> None:
    question = "This crashes, why?"
    text = {
        "unfenced_after": f"{PYTHON}\n\n{question}\n{TRACEBACK}",
        "own_fence": f"{question}\n\n```python\n{PYTHON}\n```\n\n```\n{TRACEBACK}\n```",
        "same_fence": f"{question}\n\n```python\n{PYTHON}\n\n{TRACEBACK}\n```",
        "report_first": f"{question}\n{TRACEBACK}\n\n{PYTHON}",
    }[layout]
    parts = split_prompt(text)
    assert TRACEBACK in parts.instruction
    assert "Traceback" not in parts.code and "def parse_response" in parts.code


def test_the_crash_site_outranks_a_named_caller() -> None:
    question = f"Calling `fetch_json` fails with this:\n{TRACEBACK}"
    ranked = rank_chunks(chunk_text(PYTHON, "python"), read_focus(question))
    assert [r.chunk.name for r in ranked[:2]] == ["parse_response", "fetch_json"]
    assert ranked[0].why.startswith("crash site")


def test_a_compiler_error_maps_its_line_to_the_function() -> None:
    code = "\n".join(f"int helper_{i}(int x) {{\n    return x + {i};\n}}\n" for i in range(40))
    line = code.split("\n").index("int helper_20(int x) {") + 2
    report = f"lib.c:{line}:12: error: expected ';' before '}}' token"
    ranked = rank_chunks(chunk_text(code, "c"), read_focus(f"Fix this:\n{report}"))
    assert ranked[0].chunk.name == "helper_20"


def test_report_and_question_survive_optimisation_whole() -> None:
    filler = "\n\n".join(
        f"def helper_{i}(items):\n    return [x * {i} for x in items if x]\n" for i in range(150)
    )
    text = f"```python\n{PYTHON}\n{filler}\n```\n\nThis crashes:\n```\n{TRACEBACK}\n```"
    result = optimize_text(text, context_tokens=1024, max_tokens=200)
    assert TRACEBACK in result.text
    assert "def parse_response(body):" in result.text
    assert result.stats.kept[0].why.startswith("crash site") or any(
        k.name == "parse_response" and k.why.startswith("crash site") for k in result.stats.kept
    )


def test_huge_reports_keep_their_innermost_frames() -> None:
    frames = "\n".join(
        f'  File "/app/m.py", line {i}, in step_{i}\n    step_{i + 1}()' for i in range(400)
    )
    error = "RecursionError: maximum recursion depth exceeded"
    report = f"Traceback (most recent call last):\n{frames}\n{error}"
    trimmed = trim_report(report, "python_traceback", 2000)
    assert len(trimmed) <= 2000
    assert trimmed.startswith("Traceback") and trimmed.endswith(
        "RecursionError: maximum recursion depth exceeded"
    )
    assert "step_399" in trimmed and "lines of the report omitted" in trimmed


def test_code_is_not_mistaken_for_a_report() -> None:
    assert not find_reports(PYTHON)
    assert not is_report(PYTHON)
    assert is_report(TRACEBACK) and is_report(GO_PANIC)
