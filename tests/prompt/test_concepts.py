"""Behaviour described in words: the concept lexicon and trailing comments."""

from cerebrum.prompt.chunking import chunk_text
from cerebrum.prompt.concepts import phrase_words, related, root, symbol_literals
from cerebrum.prompt.ranking import rank_chunks

_DEQUE = '''
def first(deque):
    """The element at the front, without taking it out."""
    return deque.items[deque.head]


def delete(deque, i):
    """Take out the element at position i, moving the shorter side."""
    front = i - deque.head
    back = deque.tail - i
    if front < back:
        deque.items[deque.head + 1 : i + 1] = deque.items[deque.head : i]
        deque.head += 1
    else:
        deque.items[i : deque.tail - 1] = deque.items[i + 1 : deque.tail]
        deque.tail -= 1


def element_count(deque):
    """How many elements there are between head and tail, for the element report."""
    return deque.tail - deque.head
'''


def test_root_meets_inflections() -> None:
    assert root("resolving") == root("resolve") == root("resolved")
    assert root("splitting") == root("split")
    assert root("entries") == root("entry")


def test_related_words_are_generic_synonyms() -> None:
    assert root("delete") in related("removing")
    assert root("merge") in related("combining")
    assert root("removing") not in related("removing")
    assert phrase_words("it evicts the least recently used entry") == ["lru"]
    # Arithmetic in words: "the product of" is code that multiplies (``mul``, ``dot``).
    assert root("mul") in related("product")
    assert phrase_words("the inner product of two rows") == ["dot"]


def test_a_name_that_means_the_question_word_ranks_first() -> None:
    chunks = chunk_text(_DEQUE, "python")
    ranked = rank_chunks(chunks, "Removing an element shifts the wrong side of the array.")
    assert ranked[0].chunk.name == "delete"
    assert "means" in ranked[0].why


def test_a_named_question_is_ranked_as_before() -> None:
    chunks = chunk_text(_DEQUE, "python")
    ranked = rank_chunks(chunks, "Explain `first`.")
    assert ranked[0].chunk.name == "first"


def test_comments_after_a_definition_are_a_block_of_their_own() -> None:
    essay = "\n".join(
        f"# note {i}: the cost of the algorithm below, step by step" for i in range(12)
    )
    code = f"def merge(a, b):\n    return sorted(a + b)\n\n{essay}\n\ndef other():\n    return 1\n"
    chunks = chunk_text(code, "python")
    merge = next(c for c in chunks if c.name == "merge")
    assert "# note" not in merge.text
    assert any("# note 0" in c.text and c.name is None for c in chunks)


_PORTS = '''
def split_host(hostport):
    """The host comes first: a name, an address or a bracketed address."""
    host, _, rest = hostport.rpartition("@")
    return host.strip("[]"), rest


def port_suffix(text):
    if not text:
        return True
    if text[0] != ':':
        return False
    return all('0' <= b <= '9' for b in text[1:])
'''


def test_words_for_characters_find_the_code_that_quotes_them() -> None:
    assert symbol_literals("the part after the colon")["colon"] == ("':'", '":"')
    assert '"--"' in symbol_literals("a double dash stops it")["dash"]
    chunks = chunk_text(_PORTS, "python")
    ranked = rank_chunks(chunks, "Where is the host's part after the colon checked for digits?")
    assert ranked[0].chunk.name == "port_suffix"


def test_phrases_of_computations_and_excess_have_their_code_words() -> None:
    assert phrase_words("I want a running total") == ["cumulative"]
    assert phrase_words("it stops when there are too many") == ["exceed"]
    assert phrase_words("searching front-to-back") == ["forward"]
    assert root("scan") in related("cumulative")


_FETCH = '''
def fetch_once(url):
    """Fetch the page over the network, once."""
    return urlopen(url).read()


def fetch_with_attempts(url, attempts):
    """Fetch the page, again after each network failure, up to the attempts."""
    for _ in range(attempts):
        try:
            return fetch_once(url)
        except OSError:
            pass
    raise OSError(url)
'''


def test_a_callee_found_by_words_stays_below_the_code_that_calls_it() -> None:
    question = (
        "Fetching the page over the network fails at once on the first failure; "
        "the attempts are ignored."
    )
    ranked = rank_chunks(chunk_text(_FETCH, "python"), question)
    assert [r.chunk.name for r in ranked[:2]] == ["fetch_with_attempts", "fetch_once"]
    assert "is called by" in ranked[1].why


def test_the_head_of_a_big_split_function_is_code_not_a_docstring() -> None:
    nested = "\n".join(f"    def step_{i}(item):\n        return item + {i}\n" for i in range(120))
    code = (
        "def evict_oldest(cache, maxsize):\n"
        "    # Drop the least recently used entry once the cache is full.\n"
        "    while len(cache.order) > maxsize:\n"
        "        oldest = cache.order.pop(0)\n"
        "        del cache.table[oldest]\n"
        f"{nested}\n"
        "    return cache\n\n\n"
        "def cache_size(cache):\n"
        '    """How many entries the full cache holds, the oldest entry too; '
        'none is dropped here."""\n'
        "    return len(cache.table)\n"
    )
    chunks = chunk_text(code, "python")
    assert chunks[0].kind == "class_header"  # split at its nested functions
    ranked = rank_chunks(chunks, "Once the cache is full the oldest entry is never dropped.")
    assert ranked[0].chunk.name == "evict_oldest"


def test_derivations_give_the_forms_code_writes() -> None:
    from cerebrum.prompt.concepts import derivations

    assert "serializ" in derivations("serialization")
    assert "normaliz" in derivations("normalising")
    assert "insert" in derivations("insertion")
    assert "expand" in derivations("expansion")
    assert "split" in derivations("splitting")
    assert "empty" in derivations("emptiness")
    # Plain words and agent nouns are left alone.
    assert derivations("value") == ()
    assert derivations("integer") == ()


_CODEC = '''
def print_record(record):
    """Show a record on the screen, in field order."""
    print(record)


def serialize_tree(tree, out):
    """Write every node of the tree to out, children first."""
    for child in tree.children:
        serialize_tree(child, out)
    out.write(repr(tree.value).encode())
'''


def test_a_derived_word_finds_the_verb_code_names_it_by() -> None:
    # "Serialization" is `serialize`: without the derivation, "order" picks print_record.
    ranked = rank_chunks(
        chunk_text(_CODEC, "python"), "Serialization puts things in the wrong order."
    )
    assert ranked[0].chunk.name == "serialize_tree"
