"""Assembly: budget, original order, elision markers, signatures, instruction first."""

from cerebrum.prompt.assembly import assemble, comment_prefix
from cerebrum.prompt.chunking import PREAMBLE, chunk_text
from cerebrum.prompt.ranking import RankedChunk, rank_chunks
from cerebrum.prompt.tokens import estimate_tokens

from .snippets import ALL, BIG_CLASS, PYTHON


def _assemble(code: str, language: str, instruction: str, budget: int, before: bool = False):
    chunks = chunk_text(code, language)
    ranked = rank_chunks(chunks, instruction)
    return assemble(
        instruction if before else "",
        "" if before else instruction,
        ranked,
        len(chunks),
        language,
        budget,
        total_lines=code.count("\n") + 1,
    )


def test_everything_fits_in_original_order_without_markers() -> None:
    result = _assemble(PYTHON, "python", "Explain fetch_json", 5000)
    assert result.text.startswith("Explain fetch_json\n\n```python\n")
    assert "omitted" not in result.text
    body = result.text.split("```python\n", 1)[1].rsplit("\n```", 1)[0]
    assert body.split() == PYTHON.split()


def test_tight_budget_keeps_target_whole_in_order_with_markers() -> None:
    result = _assemble(PYTHON, "python", "Make parse_response raise on bad JSON", 260)
    text = result.text
    assert estimate_tokens(text) <= 260
    target = PYTHON[PYTHON.index("def parse_response") : PYTHON.index("class RetryPolicy")].strip()
    assert target in text
    assert "# ... (" in text and "lines omitted) ..." in text
    kept = [chunk.index for chunk in result.kept]
    assert kept == sorted(kept)


def test_dropped_definitions_leave_signatures() -> None:
    result = _assemble(PYTHON, "python", "Make parse_response raise on bad JSON", 240)
    signatures = [line for line in result.text.split("\n") if line.startswith("#   ")]
    assert len(signatures) == result.signatures >= 1
    expected = {
        "#   def fetch_json(session, base, path, params=None)",
        "#   class RetryPolicy",
        "#   def build_url(base, path, params=None)",
    }
    assert set(signatures) <= expected
    for line in signatures:
        # A definition listed by signature is not also there in full.
        assert result.text.count(line[4:]) == 1


def test_method_brings_its_class_header() -> None:
    result = _assemble(BIG_CLASS, "python", "Make save write atomically with fsync", 300)
    assert "class ConfigStore:" in result.text
    assert "def save(self):" in result.text
    assert result.text.index("class ConfigStore:") < result.text.index("def save(self):")
    assert "def load(self):\n" not in result.text


def test_over_budget_target_is_truncated_not_dropped() -> None:
    big = (
        "def huge():\n"
        + "".join(f"    value_{i} = compute({i})\n" for i in range(400))
        + "    return 1\n"
    )
    result = _assemble(big, "python", "Explain huge", 300)
    assert result.truncated
    assert "def huge():" in result.text
    assert estimate_tokens(result.text) <= 300


def test_c_style_markers_and_text_markers() -> None:
    assert comment_prefix("rust") == "//"
    assert comment_prefix("shell") == "#"
    result = _assemble(ALL["c"], "c", "Why does count_lines miss a line?", 150)
    assert "// ..." in result.text
    assert "int count_lines(FILE *fp)" in result.text


def test_instruction_before_code_stays_first() -> None:
    result = _assemble(ALL["go"], "go", "Explain walk.", 2000, before=True)
    assert result.text.startswith("Explain walk.\n\n```go\n")


def test_an_unnamed_preamble_too_big_to_send_is_not_cut_in_place_of_the_code() -> None:
    # A module docstring full of the question's words and a table of constants:
    # ranked high, too big for the budget; the function after it must go out whole.
    doc = "\n".join(f"The buffer holds raw input bytes, entry {i}." for i in range(40))
    table = "\n".join(f"CODE_{i} = bytes([{i}, {i + 1}, {i + 2}])" for i in range(200))
    function = (
        "def next_byte(self):\n"
        '    """Take the next raw byte off the input buffer."""\n'
        "    if not self.rawq:\n"
        "        raise EOFError\n"
        "    byte, self.rawq = self.rawq[:1], self.rawq[1:]\n"
        "    return byte\n"
    )
    code = f'"""{doc}\n"""\nimport os\n\n{table}\n\n\n{function}'
    chunks = chunk_text(code, "python")
    preamble = next(c for c in chunks if c.kind == PREAMBLE)
    ranked = [RankedChunk(preamble, 10.0)] + [
        RankedChunk(c, 5.0 if c.name == "next_byte" else 0.0) for c in chunks if c is not preamble
    ]
    ranked.sort(key=lambda item: -item.score)
    question = "Taking the next raw byte off the input buffer hangs."
    result = assemble("", question, ranked, len(chunks), "python", 600)
    assert function.strip() in result.text
    assert not result.cut


def test_an_unnamed_class_header_too_big_to_send_is_not_cut_in_place_of_a_method() -> None:
    doc = "\n".join(
        f"    # The stage completes with a result or an exception, case {i}." for i in range(150)
    )
    code = (
        f"class Stage:\n{doc}\n    kind = 'stage'\n\n"
        "    def recover(self, fn):\n"
        "        return self.handle(lambda r, ex: self if ex is None else fn(ex))\n\n"
        + "\n".join(f"    def other_{i}(self):\n        return {i}\n" for i in range(40))
    )
    chunks = chunk_text(code, "python")
    header = next(c for c in chunks if c.kind == "class_header")
    ranked = [RankedChunk(header, 10.0)] + [
        RankedChunk(c, 5.0 if c.name == "recover" else 0.0) for c in chunks if c is not header
    ]
    ranked.sort(key=lambda item: -item.score)
    result = assemble(
        "", "Recovering from a failed stage is wrong.", ranked, len(chunks), "python", 300
    )
    assert "def recover(self, fn):" in result.text
    assert not result.cut


def test_a_named_class_header_too_big_to_send_leaves_the_budget_to_its_members() -> None:
    doc = "\n".join(f"    # A map that remembers insertion order, note {i}." for i in range(150))
    code = (
        f"class OrderedMap:\n{doc}\n    kind = 'map'\n\n"
        "    def write_entries(self, out):\n"
        "        for key, value in self.links_from_oldest():\n"
        "            out.write(key)\n"
        "            out.write(value)\n\n"
        + "\n".join(f"    def other_{i}(self):\n        return {i}\n" for i in range(40))
    )
    result = _assemble(
        code,
        "python",
        "Serializing an `OrderedMap` should write each key and value from the oldest links.",
        300,
    )
    assert "def write_entries(self, out):" in result.text
    assert not result.cut
