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
    ranked = rank_chunks(
        chunk_text(ALL["javascript"], "javascript"), "the word counting is off by one"
    )
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


# Behaviour described in words (issue 14): a plain word that is also a name
# may be English, a name spelled in words finds its definition, a quoted
# message finds the code holding it.
REGISTRY = '''def register(name, klass):
    """Add a browser class to the registry under a name."""
    _browsers[name.lower()] = klass


def register_x_browsers():
    """Find the X11 browsers on this machine and add each one."""
    for browser in ("firefox", "chromium"):
        if shutil.which(browser):
            register(browser, BackgroundBrowser)


def open_url(url):
    for name in _order:
        if _browsers[name].open(url):
            return True
    raise Error("could not locate runnable browser")
'''

READERS = """class Reader {
    int read() {
        return buffer[position++];
    }

    String readLine() {
        StringBuilder line = new StringBuilder();
        int c;
        while ((c = read()) != -1 && c != '\\n') {
            line.append((char) c);
        }
        return line.toString();
    }

    void skip(int count) {
        position += count;
    }
}
"""


def test_a_plain_word_is_a_soft_name_that_a_spelled_name_beats() -> None:
    chunks = chunk_text(REGISTRY, "python")
    ranked = rank_chunks(
        chunks, "Something is off in how it does the register x browsers part; fix it."
    )
    assert ranked[0].chunk.name == "register_x_browsers"
    assert "spells" in ranked[0].why
    # Alone, the plain word still finds its definition.
    assert rank_chunks(chunks, "Why does register lose the name?")[0].chunk.name == "register"


def test_name_spelled_in_words_with_inflections_and_articles() -> None:
    # A class this small is one chunk: the one that defines readLine.
    whole = chunk_text(READERS, "java")
    # Padded past the split size, each method is a chunk.
    padded = READERS.replace("class Reader {", "class Reader {\n" + "    // padding\n" * 120)
    for chunks in (whole, chunk_text(padded, "java")):
        for question in (
            "the read line part returns too early",
            "when it reads a line, the last one is lost",
        ):
            ranked = rank_chunks(chunks, question)
            assert "readLine" in ranked[0].chunk.names | {ranked[0].chunk.name}, question
            assert "`readLine`, whose name the question spells" in ranked[0].why


def test_quoted_message_finds_the_code_that_has_it() -> None:
    ranked = rank_chunks(
        chunk_text(REGISTRY, "python"), 'I get "could not locate runnable browser". Why?'
    )
    assert ranked[0].chunk.name == "open_url"
    assert "quoted" in ranked[0].why


def test_a_parenthetical_remark_is_not_a_call() -> None:
    assert "call" not in named_identifiers("it fails in one call (a slice position, then a key)")
    assert "run" in named_identifiers("why does run() fail?")
    assert "parse" in named_identifiers("calling parse(text) twice fails")


_BAG_PADDING = "\n".join(
    f"    public int size{i}() {{ return words.length + {i}; }}" for i in range(40)
)
_BAG = f"""import java.io.*;

public class Bag implements Serializable {{
    private long[] words;

    public Bag() {{
        words = new long[1];
    }}

    public Bag(int bits) {{
        words = new long[bits / 64 + 1];
    }}

{_BAG_PADDING}

    private void writeObject(ObjectOutputStream s) throws IOException {{
        trim();
        s.putFields().put("bits", words);
        s.writeFields();
    }}
}}
"""


def test_a_named_class_is_not_defined_by_its_constructors() -> None:
    chunks = chunk_text(_BAG, "java")
    ranked = rank_chunks(chunks, "Serializing a `Bag` keeps the spare capacity in the bits field.")
    assert ranked[0].chunk.kind == "class_header"
    # Constructors bear the class's name but compete with the other members by their words.
    assert all(item.score < 500 for item in ranked if item.chunk.kind == "method")


def test_the_members_of_a_class_spelled_in_words_share_its_naming() -> None:
    helpers = "\n".join(f"    def helper_{i}(self):\n        return {i}\n" for i in range(60))
    code = (
        "class MemoryHandler:\n"
        '    """Keeps records in memory."""\n\n'
        "    def set_target(self, target):\n"
        "        with self.lock:\n"
        "            self.target = target\n\n"
        f"{helpers}\n\n"
        "class Other:\n"
        "    def set_target(self, target):\n"
        "        self.target = target\n"
    )
    ranked = rank_chunks(
        chunk_text(code, "python"),
        "Swapping where a buffering memory handler sends records is not done under its lock.",
    )
    assert ranked[0].chunk.name == "MemoryHandler"
    member = next(
        r for r in ranked if r.chunk.name == "set_target" and r.chunk.parent == "MemoryHandler"
    )
    other = next(r for r in ranked if r.chunk.name == "Other")  # small: one chunk
    assert member.score > other.score + 100


_SIBLINGS = (
    "def close_and_read(stream):\n    return finish(stream, 2)\n\n\n"
    "def read_and_close(stream):\n    return finish(stream, 1)\n\n\n"
    + "".join(f"def other_{i}(x):\n    return x + {i}\n\n\n" for i in range(30))
)


def test_words_in_the_question_order_pick_the_near_sibling() -> None:
    # Both names have the words; the order says which (a tie would keep the first).
    chunks = chunk_text(_SIBLINGS, "python")
    ranked = rank_chunks(chunks, "When I read and then close the stream, the result is wrong.")
    assert ranked[0].chunk.name == "read_and_close"
    ranked = rank_chunks(chunks, "When I close and then read the stream, the result is wrong.")
    assert ranked[0].chunk.name == "close_and_read"


_LONG_NAMES = (
    "def quietly_join(task):\n    return task.wait()\n\n\n"
    "def quietly_join_pool_invoke_all_task(pool, tasks):\n"
    "    for task in tasks:\n        pool.submit(task)\n    return [t.wait() for t in tasks]\n\n\n"
    + "".join(f"def other_{i}(x):\n    return x + {i}\n\n\n" for i in range(30))
)


def test_a_name_spelled_inside_a_longer_spelled_name_is_not_meant() -> None:
    ranked = rank_chunks(
        chunk_text(_LONG_NAMES, "python"),
        "Something is off in how it does the quietly join pool invoke all task part.",
    )
    assert ranked[0].chunk.name == "quietly_join_pool_invoke_all_task"
    assert ranked[1].score < 500


def test_a_host_name_and_a_hex_literal_name_nothing() -> None:
    # "example.com" is a host, not the dotted pair `example.com`; "0x8000" and
    # "8o80" are numbers (or typos of them), not the identifiers x8000 and o80.
    names = named_identifiers("A host like example.com:8o80 is taken; 0x8000 is not masked")
    assert names == set()
    assert named_identifiers("see https://docs.example.org/lib/os.html#os.path for os.walk") == {
        "os",
        "walk",
    }


_KERNELS = "".join(
    f"def unpack_q{bits}_blocks(data, scale):\n"
    f"    out = []\n"
    f"    for block in data:\n"
    f"        out.append(block * scale)\n"
    f"    return out\n\n\n"
    for bits in (3, 2, 4)
) + "".join(f"def other_{i}(x):\n    return x + {i}\n\n\n" for i in range(30))


def test_a_width_the_question_says_picks_the_sibling_whose_name_writes_it() -> None:
    # Three functions alike but for the digit in their names: "2-bit" decides.
    ranked = rank_chunks(
        chunk_text(_KERNELS, "python"), "Unpacking 2-bit blocks gives values off by the scale."
    )
    assert ranked[0].chunk.name == "unpack_q2_blocks"
    assert "numbers" in ranked[0].why
    ranked = rank_chunks(
        chunk_text(_KERNELS, "python"), "Unpacking blocks of four bits gives wrong values."
    )
    assert ranked[0].chunk.name == "unpack_q4_blocks"


_TREE = '''def sort_alphabetically(names):
    return sorted(names, key=str.lower)


def collect_tree(package, depth, limit):
    """The dependencies shown under ``package``, down to ``limit`` levels."""
    if depth >= limit:
        return []
    found = [dep for dep in package.dependencies if dep.extraneous or not dep.dev]
    return sort_alphabetically(dep.name for dep in found)


''' + "".join(f"def other_{i}(x):\n    return x + {i}\n\n\n" for i in range(30))


def test_a_name_spelled_in_passing_is_mentioned_not_described() -> None:
    # "... and be sorted alphabetically" spells `sort_alphabetically`, but the
    # sentence describes the code that calls it: its other words find that.
    chunks = chunk_text(_TREE, "python")
    ranked = rank_chunks(
        chunks,
        "The dependencies listed under a package should stop at the depth limit, include "
        "the extraneous ones, and be sorted alphabetically.",
    )
    assert ranked[0].chunk.name == "collect_tree"
    assert ranked[0].score < 500  # nothing took a name's weight
    # When the spelled words are what the sentence says, they name it.
    ranked = rank_chunks(chunks, "Something is off in how it does the sort alphabetically part.")
    assert ranked[0].chunk.name == "sort_alphabetically"
    assert "spells" in ranked[0].why


_MUTUAL = '''
def show(view, text):
    """Show the text: each line rendered, wrapped, in the view's colours."""
    paint(view, text)


def paint(view, text):
    """Render the text in the view's colours, line by line, wrapping each line at the
    view's width and colouring each line as the view's colours say."""
    for line in text.splitlines():
        if view.pending:
            show(view, view.pending)
        view.draw(line, view.colours)
'''


def test_two_chunks_that_call_each_other_rank_by_their_own_words() -> None:
    # Both are found by words and each is a callee of the other: neither's lift
    # may set the other's ceiling (the first one capped used to lose).
    question = "the colours of each line come out wrong when a wrapped line is rendered"
    ranked = rank_chunks(chunk_text(_MUTUAL, "python"), question)
    assert [r.chunk.name for r in ranked[:2]] == ["paint", "show"]
