"""Rank chunks by relevance to the instruction.

Three signals, in falling weight:

1. the chunk *defines* an identifier the instruction names (``parse_args``,
   ``Config.load``): the instruction is about that code, so it ranks far above
   everything else;
2. the chunk defines something a top chunk calls (the model needs a callee's
   contract to change its caller);
3. BM25 over identifiers split on snake_case and camelCase, so "parse the
   config" finds ``parseConfig`` and ``load_config_file``.

Ties keep the original order, so with no usable instruction the head of the
code wins, as it would for a human reader.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Sequence

import attrs

from cerebrum.prompt.chunking import CLASS_HEADER, METHOD, PREAMBLE, Chunk
from cerebrum.prompt.concepts import derivations, phrase_words, related, root, symbol_literals
from cerebrum.prompt.reports import Frame, find_reports, strip_reports

_LOGGER = logging.getLogger(__name__)

DEFINES_WEIGHT = 1000.0
PARENT_WEIGHT = 200.0
CALLEE_WEIGHT = 50.0
# The innermost frame of a pasted error report that lies in the code: the crash site.
CRASH_WEIGHT = 1100.0
# Its callers in the report, less the deeper they are.
FRAME_WEIGHT = 300.0
# A definition whose name the question spells out in words ("the read line
# part" -> ``readLine``, "retry loop" -> ``retry_loop``): nearly as good as named.
PHRASE_WEIGHT = 800.0
# ... unless, in every sentence that spells it, its words are under this
# share of the sentence's words (by idf): then the name is mentioned in
# passing ("..., and be sorted alphabetically"), and the sentence describes
# what its other words find.
MENTION_SHARE = 0.5
# A quoted string of the question ("invalid compression method") found
# verbatim in a chunk, shared among the chunks that have it (at most three).
QUOTE_WEIGHT = 900.0
# A definition named by a plain English word of the question ("why does walk
# recurse", "the register part"): a share of the best word score, not a name's
# weight, since the word may just be English.
SOFT_NAME_SHARE = 0.6
# A word of the lexicon's group of a question word ("combining" -> merge,
# join, concat): matched like a question word, at this share of its weight.
RELATED_SHARE = 0.4
# A character a question word names ("colon" -> ':'), quoted in the code: as
# telling as the word itself, nearly.
SYMBOL_SHARE = 0.8
# A question word's root or derivation's base ("splitting" -> split,
# "serialization" -> serializ): the same word, written as code writes it.
DERIVED_SHARE = 0.8
# A definition's own name is a word of the question (inflection aside) or
# means one ("removing" -> ``delete``): its word score grows by this much per word.
OWN_WORD_BONUS = 0.5
OWN_RELATED_BONUS = 0.4
# ... and gains this share of the best word score, times the square of the
# share of its name the question says or means.
NAME_MEANING_SHARE = 0.5
# Two question words in the question's order, adjacent in a chunk: its word
# score grows by up to this much (all pairs found).
PAIR_BONUS = 1.0
_K1 = 1.2
_B = 0.75

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CALL_RE = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(|!\()")
_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

# Words that are identifiers lexically but in an instruction are just English.
_STOPWORDS = frozenset(
    """
a an the this that these those it its to of in on for and or not no but with without from by as at
is are be was were been being do does did
done can could should would will shall may might must please
make makes made use uses using used add adds change changes fix fixes write rewrite refactor explain
what why how which who where when there here into out up down all any each every some more most less
code function functions method methods class classes file files line lines help me my i you your we
our us so if then else than also just only very like need want get set new old one two so also
return returns self cls def fn func var let const public private static void int str
""".split()
)
# Words of a request that say what to do, not what the code does: never matched against code.
_TASK_WORDS = (
    frozenset(
        """
misbehave misbehaves misbehaving wrong broken bug bugs buggy fails failing failed fail find found
something anything part parts off work works working thing things look looks see seems why happen
happens happening there their them they thanks thank now also again still issue problem problems
error errors crash crashes right correct correctly properly instead should get gets got run runs
""".split()
    )
    | _STOPWORDS
)
# Words that are verbs of a request as names, but say what code does when
# matched word by word ("where the file is opened", "the write part").
_CODE_WORDS = frozenset(
    """
write writes add adds get set new make use change open close read line lines file files
return returns
""".split()
)
_WORD_STOPS = _TASK_WORDS - _CODE_WORDS


@attrs.frozen
class RankedChunk:
    """A chunk with its relevance score; ``defines_target`` marks a named definition.

    ``why`` says in words what earned the chunk its place (shown to the user
    in the prompt stats).
    """

    chunk: Chunk
    score: float
    defines_target: bool = False
    is_callee: bool = False
    why: str = "order"
    focus_line: int | None = None
    """A line of the code (0-based) an error report points at inside this chunk."""


@attrs.frozen
class Focus:
    """What an instruction points at, read once per prompt.

    ``names``: identifiers it names (backticked words always count, even
    ``new`` or ``get``); ``files``: file paths it mentions (hints to a file,
    not identifiers); ``frames``: error-report frames, innermost first;
    ``words``: the text matched word by word (the instruction without report
    frames and paths).
    """

    names: frozenset[str]
    files: tuple[str, ...] = ()
    frames: tuple[Frame, ...] = ()
    words: str = ""
    soft_names: frozenset[str] = frozenset()
    """Plain words that may be names or just English (``walk``, ``register``, ``Value``)."""
    phrases: frozenset[str] = frozenset()
    """Runs of 2-7 of its words, stemmed and joined (``readline``): names spelled in words."""
    quotes: tuple[str, ...] = ()
    """Quoted strings (an error message, a sentence of a docstring), lower-cased."""


def split_identifier(identifier: str) -> list[str]:
    """Split ``identifier`` into lower-case words on ``_`` and camelCase humps."""
    words: list[str] = []
    for part in identifier.split("_"):
        if part:
            words.extend(word.lower() for word in _CAMEL_RE.findall(part))
    return words


def stem(word: str) -> str:
    """A crude suffix stripper, so "counting", "counts" and "count" meet."""
    for suffix, keep in (("ing", 4), ("ed", 4), ("es", 4), ("s", 3)):
        if word.endswith(suffix) and len(word) - len(suffix) >= keep and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def _split_terms(identifier: str, cache: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    terms = cache.get(identifier)
    if terms is None:
        words = [stem(word) for word in split_identifier(identifier)]
        whole = stem(identifier.lower())
        terms = (whole, *[w for w in words if w != whole]) if len(words) > 1 else (whole,)
        cache[identifier] = terms
    return terms


def _terms(text: str, cache: dict[str, tuple[str, ...]]) -> list[str]:
    terms: list[str] = []
    for identifier in _IDENT_RE.findall(text):
        terms.extend(_split_terms(identifier, cache))
    return terms


def _documents(texts: Sequence[str], query: Sequence[str]) -> list[tuple[dict[str, int], int]]:
    """:func:`_document` of each text; with many terms, each term is counted only in the
    texts holding its rarest three letters (a question of thousands of words against
    thousands of chunks counted every word in every chunk: quadratic)."""
    if len(query) * len(texts) <= _DIRECT_COUNTS:
        return [_document(text, query) for text in texts]
    lowered = [text.lower() for text in texts]
    holders: dict[str, list[int]] = {}
    for position, text in enumerate(lowered):
        for trigram in {text[i : i + 3] for i in range(len(text) - 2)}:
            holders.setdefault(trigram, []).append(position)
    found: list[list[tuple[int, str, int]]] = [[] for _ in texts]
    everywhere = range(len(texts))
    for order, term in enumerate(query):
        # A text holding ``term`` holds each of its trigrams.
        candidates: Sequence[int] = (
            min((holders.get(term[i : i + 3], ()) for i in range(len(term) - 2)), key=len)
            if len(term) >= 3
            else everywhere
        )
        for position in candidates:
            if hits := lowered[position].count(term):
                found[position].append((order, term, hits))
    # In the query's order, as counted one by one (BM25 sums in that order).
    return [
        ({term: hits for _, term, hits in sorted(terms)}, max(1, len(text) // 8))
        for terms, text in zip(found, texts, strict=True)
    ]


# Below this many (term, chunk) pairs, counting each term in each chunk is cheaper.
_DIRECT_COUNTS = 20_000


def _document_frequencies(documents: Sequence[tuple[dict[str, int], int]]) -> dict[str, int]:
    """How many documents have each term (read once: per term, it was terms x chunks)."""
    counts: dict[str, int] = {}
    for frequencies, _ in documents:
        for term in frequencies:
            counts[term] = counts.get(term, 0) + 1
    return counts


def _document(text: str, query: Sequence[str]) -> tuple[dict[str, int], int]:
    """Term frequencies of the query terms in ``text``, and its length.

    Query terms are already split identifiers (``count``, ``word``), so a
    case-insensitive substring count finds them inside ``countWords`` and
    ``count_words`` alike: the same match splitting every identifier of the
    chunk would give, at C speed instead of a Python loop per identifier. The
    length is measured in characters / 8, about one identifier each.
    """
    lowered = text.lower()
    frequencies = {term: hits for term in query if (hits := lowered.count(term))}
    return frequencies, max(1, len(text) // 8)


_NAMED_WORD_RE = re.compile(
    r"(?i:\b(?:refactor|explain|fix|test|tests\s+for|rewrite|document|simplify|debug|review|optimi[sz]e)"
    r"\s+(?:the\s+)?)([A-Za-z_]\w*)\b(?!\s+(?:part|code|step|logic))|\b([A-Za-z_]\w*)(?=\s*\(\)|\s+(?:function|method|class|struct)\b)"
)
_PRONOUNS = frozenset(
    """
it this that these those the a an what where how why which them me my our for if while to of in on
with and or not is are be so as at by from all any each my your its their
""".split()
)
_BACKTICK_RE = re.compile(r"`([^`\n]{1,80})`")
_PATH_RE = re.compile(
    r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.(?:py|pyi|js|mjs|cjs|jsx|ts|tsx|rs|c|h|cc|cpp|cxx|hpp|hh|go|java|kt|sh|rb|toml|json|yaml|yml|html|htm|css|xml|txt|md|rst|cfg|ini))\b"
)


# An address or a host name ("https://host/x.y", "example.com:8080"): no dotted pair of names.
_URL_RE = re.compile(
    r"(?<![\w+.-])[a-z][a-z0-9+.-]*://\S+"
    r"|(?<![\w.-])(?:[\w-]+\.)+(?:com|org|net|io|dev|edu|gov|info|example|localhost)\b(?::\w+)?(?:/\S*)?",
    re.IGNORECASE,
)
_NAME_RE = re.compile(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]*")
_CODE_SHAPED_RE = re.compile(r"_|\d|[a-z][A-Z]|(?<![A-Z])[A-Z]{2,}[a-z]|^[a-z]+[A-Z]")
# Every pattern here starts only where a run of its characters starts (a word
# boundary or a look-behind): one starting inside a run is tried from each of the
# run's characters, quadratic in its length, and a regular expression holds the
# GIL, so a 10 KB question of one word froze the orchestrator for seconds.
_CALLED_RE = re.compile(r"\b([A-Za-z_]\w*)\((?!\s*[a-z]+\s+[a-z])")
_DOTTED_RE = re.compile(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)\b")
_QUOTED_RE = re.compile(
    r"\"([^\"\n]{8,200})\"|(?<![\w])'([^'\n]{8,200})'(?![\w])|\u201c([^\u201d\n]{8,200})\u201d"
)
_PHRASE_WORD_RE = re.compile(r"[A-Za-z]+|\d+")
_CLAUSE_RE = re.compile(r"[\"'`\u201c\u201d.,;:!?()\[\]{}]|\n\s*\n")
# Words a phrase may skip ("the read of a line" stays "read line"); "if", "or"
# and "is" are kept, since names carry them (``putIfAbsent``, ``is_i64``).
_PHRASE_SKIP = frozenset("a an the of".split())
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


def is_code_shaped(identifier: str) -> bool:
    """Whether ``identifier`` can only be code: snake_case, camelCase, HashMap, a digit."""
    return _CODE_SHAPED_RE.search(identifier) is not None


def named_identifiers(instruction: str) -> set[str]:
    """Identifiers the instruction surely names.

    A word in backticks is an identifier whatever it is (`new`, `get`, Go's
    `New`); so is a code-shaped word (``parse_args``, ``readLine``,
    ``HashMap``), a dotted pair (``Config.load``) or a word called (``run()``).
    A plain word (``walk``, ``register``) may be English: it is a *soft* name
    (:func:`soft_names`). A file path (``src/output/fmt.rs``) names a file, not
    the identifiers ``output`` and ``fmt``.
    """
    names: set[str] = set()
    for quoted in _BACKTICK_RE.findall(instruction):
        for identifier in _IDENT_RE.findall(_PATH_RE.sub(" ", quoted)):
            if len(identifier) >= 2 or identifier.isupper():
                names.add(identifier)
    plain = _PATH_RE.sub(" ", instruction)
    plain = _URL_RE.sub(" ", plain)
    for pair in _DOTTED_RE.findall(plain):
        names.update(word for word in pair if word.lower() not in _STOPWORDS)
    for identifier in _CALLED_RE.findall(plain):
        if identifier.lower() not in _STOPWORDS:
            names.add(identifier)
    for identifier in _NAME_RE.findall(plain):
        if identifier.lower() in _STOPWORDS or len(identifier) < 2:
            continue
        if is_code_shaped(identifier):
            names.add(identifier)
    return names


def soft_names(instruction: str, names: set[str] | frozenset[str]) -> frozenset[str]:
    """Plain words of ``instruction`` that could name a definition, besides ``names``."""
    plain = _PATH_RE.sub(" ", _BACKTICK_RE.sub(" ", instruction))
    return frozenset(
        word
        for word in _IDENT_RE.findall(plain)
        if len(word) >= 3 and word not in names and word.lower() not in _TASK_WORDS
    )


def _phrases(text: str) -> frozenset[str]:
    """Runs of 2-7 words of ``text``, stemmed and joined, with and without articles.

    A run stays within a clause: 'I get "Serial filter ..."' spells no ``getSerialFilter``.
    """
    found: set[str] = set()
    for clause in _CLAUSE_RE.split(text):
        found |= _clause_phrases(clause)
    return frozenset(found)


def _clause_phrases(text: str) -> set[str]:
    words = [stem(word.lower()) for word in _PHRASE_WORD_RE.findall(text)]
    found: set[str] = set()
    for sequence in (words, [word for word in words if word not in _PHRASE_SKIP]):
        for start in range(len(sequence)):
            for size in range(2, 8):
                if start + size > len(sequence):
                    break
                found.add("".join(sequence[start : start + size]))
    return found


def name_phrase(name: str) -> str | None:
    """``name``'s words stemmed and joined (``read_line`` -> ``readline``), if it has several."""
    words = [stem(word) for word in split_identifier(name)]
    joined = "".join(words)
    return joined if len(words) >= 2 and len(joined) >= 5 else None


def read_focus(instruction: str) -> Focus:
    """What ``instruction`` points at: names, file paths, error-report frames, words."""
    reports = find_reports(instruction) if instruction else []
    frames = tuple(frame for report in reports for frame in report.frames)
    plain = strip_reports(instruction) if reports else instruction
    files = tuple(dict.fromkeys(_PATH_RE.findall(plain)))
    words = _PATH_RE.sub(" ", plain)
    # A common word placed as a name ("refactor write", "tests for get()",
    # "the open function") is one.
    placed = {
        word
        for pair in _NAMED_WORD_RE.findall(words)
        for word in pair
        if word and word.lower() not in _PRONOUNS
    }
    names = named_identifiers(plain) | placed
    quotes = tuple(
        dict.fromkeys(
            " ".join(quote.lower().split())
            for match in _QUOTED_RE.findall(plain)
            for quote in match
            if quote and len(quote.split()) >= 2
        )
    )
    # Words are bounded: a question is short, but a pasted log need not be.
    return Focus(
        frozenset(names),
        files,
        frames,
        words,
        soft_names(words, names),
        _phrases(words[:2000]),
        quotes[:4],
    )


def _frame_scores(
    chunks: Sequence[Chunk], frames: Sequence[Frame]
) -> dict[int, tuple[float, str, int | None]]:
    """Chunks the report's frames lie in: the innermost one in the paste scores highest.

    A frame is matched by its function's name, else by its line number (a
    compiler error or a Rust panic gives only ``file:line``), taken as a line
    of the pasted code.
    """
    by_name: dict[str, list[int]] = {}
    # Chunks cut from one block share its names: the first of them is the one found.
    read: set[tuple[str | None, frozenset[str]]] = set()
    for position, chunk in enumerate(chunks):
        if (chunk.name, chunk.names) in read:
            continue
        read.add((chunk.name, chunk.names))
        for name in ({chunk.name} if chunk.name else set()) | set(chunk.names):
            by_name.setdefault(name, []).append(position)
    scores: dict[int, tuple[float, str, int | None]] = {}
    depth = 0
    for frame in frames:
        found: list[int] = []
        if frame.function and frame.function in by_name:
            found = by_name[frame.function][:1]
        elif frame.line is not None:
            line = frame.line - 1
            found = [p for p, c in enumerate(chunks) if c.start_line <= line < c.end_line][:1]
        if not found:
            continue
        position = found[0]
        weight = CRASH_WEIGHT if depth == 0 else max(FRAME_WEIGHT - 20.0 * depth, FRAME_WEIGHT / 2)
        where = f"`{frame.function}`" if frame.function else f"line {frame.line}"
        why = (
            f"crash site: innermost frame of the error report in the code ({where})"
            if depth == 0
            else f"caller in the error report ({where})"
        )
        chunk = chunks[position]
        at = frame.line - 1 if frame.line is not None else None
        # The report's line number is the paste's only when the whole file was pasted.
        inside = at if at is not None and chunk.start_line <= at < chunk.end_line else None
        if position not in scores:
            scores[position] = (weight, why, inside)
        depth += 1
    return scores


def rank_chunks(chunks: Sequence[Chunk], instruction: str | Focus) -> list[RankedChunk]:
    """Return ``chunks`` scored against ``instruction``, best first (ties in original order)."""
    if not chunks:
        return []
    focus = instruction if isinstance(instruction, Focus) else read_focus(instruction)
    names = focus.names
    cache: dict[str, tuple[str, ...]] = {}
    # Terms under 3 letters ("id", "x") would match inside every other word.
    # A named class is found by its name; its words would lift every member
    # that mentions it (its constructors above all), so its members compete
    # by the question's other words.
    classes = {c.name for c in chunks if c.kind == CLASS_HEADER and c.name in names}
    plain_words = [
        w
        for w in _IDENT_RE.findall(focus.words)
        if w.lower() not in _WORD_STOPS and w not in classes
    ]
    plain_words += phrase_words(focus.words[:2000])
    words = " ".join(plain_words)
    query = [t for t in dict.fromkeys(_terms(words, cache)) if t not in _WORD_STOPS and len(t) >= 3]
    # A Java or C++ constructor bears its class's name: a question naming the
    # class ("serializing a BitSet") names the class, and its members compete by
    # their words (their class being named adds PARENT_WEIGHT), not as its definition.
    defines = [
        bool(chunk.name and chunk.name in names) or bool(chunk.names & names)
        if not _is_constructor(chunk)
        else bool((chunk.names - {chunk.name}) & names)
        for chunk in chunks
    ]
    inner_definition = _inner_definitions(names)
    inner_defined = (
        {
            position: found
            for position, chunk in enumerate(chunks)
            if not defines[position]
            and chunk.kind != PREAMBLE
            and not _is_constructor(chunk)
            and (found := inner_definition(chunk)) is not None
        }
        if names
        else {}
    )
    # Behaviour described in words (nothing named is defined, no report): words
    # that mean the question's words count too. A named definition is found by
    # its name, and the rest of the budget goes by the question's own words.
    described = not focus.frames and not any(defines) and not inner_defined
    concepts = _concepts(plain_words, query if described else (), focus.words[:2000])
    counted = [*query, *(t for t in concepts.related if t not in query)]
    documents = _documents([chunk.text for chunk in chunks], counted) if query else []
    # A base inside its own word ("integ" of "integer") counts only where the
    # word is not: its other forms ("integral"), not the word twice.
    nested = [
        (base, term)
        for term, extra in concepts.of_term.items()
        for base in extra
        if base in concepts.close and term.startswith(base)
    ]
    if nested:
        documents = [_unnest(document, nested) for document in documents]
    # The stats show the question's own words ("spaces"), not their stems ("spac").
    shown = (
        {stem(word.lower()): word.lower() for word in reversed(_IDENT_RE.findall(words))}
        if query
        else {}
    )
    for term, extra in concepts.of_term.items():
        for other in extra:
            shown.setdefault(other, f"{other}… (≈ {shown.get(term, term)})")
    weights = {term: _meaning_share(term, concepts.close) for term in counted[len(query) :]}
    order_of = {term: order for order, term in reversed(list(enumerate(counted)))}
    lexical = _bm25(documents, counted, weights) if query else [0.0] * len(chunks)
    # What each definition's name says or means of the question: read by the
    # word score and by the name-meaning bonus below, so computed once.
    owned = (
        [_own_words(chunk.name, concepts) if chunk.name else _NO_OWN_WORDS for chunk in chunks]
        if query and described
        else None
    )
    # Widths and counts the question says ("2-bit", "two bytes") and a name
    # writes as digits (``q2_K``, ``memchr2``): near-identical siblings differ there.
    widths = _widths(focus.words[:2000]) if described else frozenset()
    width_share = [
        _width_share(widths, chunk.name) if widths and chunk.name else 0.0 for chunk in chunks
    ]
    if query:
        lexical = _adjust_lexical(
            chunks,
            documents,
            lexical,
            query,
            cache,
            concepts if described else None,
            owned,
            _pairs(focus.words[:2000], set(query)) if described else (),
        )
    frames = _frame_scores(chunks, focus.frames) if focus.frames else {}
    # The question spells a definition's name in words: as good as naming it,
    # unless something is named outright.
    # (Only looked for when nothing is named: a named target outranks it anyway.)
    spell = bool(focus.phrases) and not any(defines) and not frames
    # The names of each definition the question spells, and their phrases, read once
    # per set of names: the chunks a long block of statements is cut into share its
    # names, and reading them chunk by chunk was quadratic in the block.
    spelt_of: dict[tuple[str | None, frozenset[str]], tuple[tuple[str, ...], frozenset[str]]] = {}

    def spelt_names(chunk: Chunk) -> tuple[tuple[str, ...], frozenset[str]]:
        key = (chunk.name, chunk.names)
        found = spelt_of.get(key)
        if found is None:
            spelt: dict[str, str] = {}
            for name in ({chunk.name} if chunk.name else set()) | chunk.names:
                phrase = name_phrase(name)
                if phrase is not None and phrase in focus.phrases:
                    spelt[name] = phrase
            found = spelt_of[key] = (tuple(spelt), frozenset(spelt.values()))
        return found

    spelt_by_chunk = [
        spelt_names(chunk)[1] if spell and not _is_constructor(chunk) else frozenset()
        for chunk in chunks
    ]
    # A name the question spells inside a longer one it spells ("quietly
    # join" in "the quietly join pool invoke all task part") is not meant.
    every_spelt = frozenset().union(*spelt_by_chunk)

    @functools.cache
    def meant_alone(phrase: str) -> bool:
        return not any(phrase != other and phrase in other for other in every_spelt)

    spelled = [any(meant_alone(phrase) for phrase in phrases) for phrases in spelt_by_chunk]
    # A function's name spelled as a few words of a longer sentence ("...
    # and be sorted alphabetically" -> ``sortAlphabetically``) is mentioned, not
    # described: the sentence's subject is what its other words find, and the
    # mentioned name earns what a name meaning words of the question does. (A
    # class spelled in words is context either way: its members compete.)
    # (Lazy: it reads the sentences only when a name is spelled.)
    mention = functools.cache(_mention_test(focus.words[:2000], query, documents))
    if any(spelled):
        spelled = [
            hit
            and (
                chunk.kind == CLASS_HEADER
                or not all(mention(name) for name in spelt_names(chunk)[0])
            )
            for chunk, hit in zip(chunks, spelled, strict=True)
        ]
    quoted = _quote_hits(chunks, focus.quotes) if focus.quotes else {}
    soft = [bool(chunk.name and chunk.name in focus.soft_names) for chunk in chunks]
    # The share of a definition's name the question says or means ("removing" -> `delete`).
    meant = _name_meanings(owned) if owned is not None else [0.0] * len(chunks)
    # Nothing named, nothing spelled as a chunk: look for a spelled name defined
    # inside a chunk (a method of an object literal).
    spell_inside = bool(focus.phrases) and not any(defines) and not frames and not any(spelled)
    if not any(defines) and not frames:
        defines = [named or phrase for named, phrase in zip(defines, spelled, strict=True)]
    else:
        spelled = [False] * len(chunks)
    # "Config.load": a method named by its class too beats a same-named method elsewhere.
    # A class spelled in words ("a buffering memory handler") is named as much:
    # the question is about one of its members, which its words then pick.
    spelled_classes = {
        chunk.name
        for chunk, hit in zip(chunks, spelled, strict=True)
        if hit and chunk.kind == CLASS_HEADER and chunk.name
    }
    parent_named = [
        bool(chunk.parent and (chunk.parent in names or chunk.parent in spelled_classes))
        for chunk in chunks
    ]
    if any(defines) or frames:
        top = [i for i, hit in enumerate(defines) if hit] + list(frames)
    else:
        # Found by words: the callees of the best definitions matter, not those
        # of the imports (a preamble's calls only initialise module constants).
        ordered = sorted(
            (i for i in range(len(chunks)) if chunks[i].kind != PREAMBLE), key=lambda i: -lexical[i]
        )
        top = [i for i in ordered[:3] if lexical[i] > 0]
    called: set[str] = set()
    callers: dict[str, str] = {}
    caller_at: dict[str, int] = {}
    for position in top:
        for callee in _CALL_RE.findall(chunks[position].text):
            if callee == chunks[position].name:
                continue  # its own signature (or recursion)
            called.add(callee)
            callers.setdefault(callee, chunks[position].name or "the top chunk")
            caller_at.setdefault(callee, position)
    best_lexical = max(lexical) if lexical else 0.0

    ranked: list[RankedChunk] = []
    # Found by words only, a callee's bonus never lifts it above the chunk that
    # calls it: the described code comes first, what it calls after.
    lifted: dict[int, tuple[float, int]] = {}
    for position, chunk in enumerate(chunks):
        callee_name = None
        if not defines[position]:
            if chunk.name and chunk.name in called:
                callee_name = chunk.name
            elif chunk.kind != PREAMBLE and chunk.names & called:
                callee_name = min(chunk.names & called)
        score = lexical[position]
        why = (
            _words_why(documents[position], order_of, shown)
            if query and lexical[position] > 0
            else "order"
        )
        frame_weight, focus_line = 0.0, None
        if position in frames:
            frame_weight, why, focus_line = frames[position]
        define_weight = (
            DEFINES_WEIGHT * (1.0 if chunk.kind != CLASS_HEADER else 0.9)
            if defines[position]
            else 0.0
        )
        if spelled[position]:
            define_weight = PHRASE_WEIGHT
        # Named and in the report: one strong reason, not two (the crash site stays first).
        score += max(frame_weight, define_weight) + 0.1 * min(frame_weight, define_weight)
        if spelled[position]:
            spelt = sorted(spelt_names(chunk)[0])
            why = f"defines `{spelt[0]}`, whose name the question spells in words"
        elif defines[position]:
            hit = sorted(({chunk.name} if chunk.name else set()) & names or chunk.names & names)
            why = f"defines `{hit[0]}`, named in the question" if position not in frames else why
            if chunk.name is None or chunk.name not in names:
                score -= DEFINES_WEIGHT / 2  # only a constant in it is named
        if position in quoted:
            score += quoted[position][0]
            if not defines[position] and position not in frames:
                why = quoted[position][1]
        if soft[position] and not defines[position]:
            score += SOFT_NAME_SHARE * best_lexical
            if position not in frames and position not in quoted:
                why = f"defines `{chunk.name}`, a word of the question"
        elif meant[position] > 0 and not defines[position]:
            score += NAME_MEANING_SHARE * best_lexical * meant[position]
            if position not in frames and position not in quoted and meant[position] >= 0.49:
                why = f"defines `{chunk.name}`, whose name means words of the question"
        if width_share[position] and not defines[position]:
            score += NAME_MEANING_SHARE * best_lexical * width_share[position] ** 2
            if why == "order" or (width_share[position] == 1.0 and why.startswith("matches")):
                why = f"defines `{chunk.name}`, whose name writes the question's numbers"
        if not defines[position] and position not in frames and names and chunk.kind != PREAMBLE:
            inner = inner_defined.get(position)
            if inner is not None:
                # A named function inside an object literal or a big block: the
                # chunk holds it, and if the chunk is too big, that line is its best part.
                score += DEFINES_WEIGHT / 2
                focus_line, why = inner
        elif (
            spell_inside
            and not defines[position]
            and position not in frames
            and chunk.kind != PREAMBLE
        ):
            inner = _inner_spelled(chunk, focus.phrases, mention)
            if inner is not None:
                score += PHRASE_WEIGHT / 2
                focus_line, why = inner
        if parent_named[position]:
            score += PARENT_WEIGHT
        elif chunk.parent and chunk.parent in focus.soft_names:
            score += PARENT_WEIGHT / 4  # its class is a word of the question
        if callee_name is not None:
            # Next to a named definition a callee is worth a fixed bonus; next to
            # chunks found by words only, a share of the best word score.
            if any(defines) or frames:
                score += CALLEE_WEIGHT
            else:
                lifted[position] = (score, caller_at.get(callee_name, position))
                score += 0.3 * best_lexical
            if not defines[position] and position not in frames:
                why = f"`{callee_name}` is called by `{callers.get(callee_name, '?')}`"
        if chunk.kind == PREAMBLE:
            # Imports tell the model which APIs the code uses; worth a mid-rank place.
            score += 0.5 * best_lexical
            if why == "order":
                why = "imports and constants"
        ranked.append(
            RankedChunk(chunk, score, defines[position], callee_name is not None, why, focus_line)
        )
    for position, (before, caller) in lifted.items():
        # A caller lifted as a callee itself (two chunks that call each other)
        # caps by its own words' score, not by its lift: else the first capped
        # sets the other's ceiling and the one with fewer words wins.
        ceiling = (lifted[caller][0] if caller in lifted else ranked[caller].score) * 0.99
        if caller != position and ranked[position].score > ceiling:
            ranked[position] = attrs.evolve(ranked[position], score=max(before, ceiling))
    ranked.sort(key=lambda item: (-item.score, item.chunk.index))
    return ranked


def _meaning_share(term: str, close: frozenset[str] = frozenset()) -> float:
    """The weight of a term that stands for a question word: a quoted character the word
    names ("colon" -> ':') or the word's own base ("splitting" -> split) nearly the
    word's own, a related word less."""
    if term in close:
        return DERIVED_SHARE
    return SYMBOL_SHARE if term[:1] in "'\"" else RELATED_SHARE


def _unnest(
    document: tuple[dict[str, int], int], nested: Sequence[tuple[str, str]]
) -> tuple[dict[str, int], int]:
    frequencies, length = document
    if not any(base in frequencies for base, _ in nested):
        return document
    frequencies = dict(frequencies)
    for base, term in nested:
        if base in frequencies:
            left = frequencies[base] - frequencies.get(term, 0)
            if left > 0:
                frequencies[base] = left
            else:
                del frequencies[base]
    return frequencies, length


def _is_constructor(chunk: Chunk) -> bool:
    return chunk.kind == METHOD and chunk.name is not None and chunk.name == chunk.parent


def _quote_hits(chunks: Sequence[Chunk], quotes: Sequence[str]) -> dict[int, tuple[float, str]]:
    """Chunks holding a quoted string of the question verbatim (case and spacing aside)."""
    hits: dict[int, tuple[float, str]] = {}
    for quote in quotes:
        found = [
            p for p, chunk in enumerate(chunks) if quote in " ".join(chunk.text.lower().split())
        ]
        if not found or len(found) > 3:
            continue  # everywhere is nowhere
        for position in found:
            weight = QUOTE_WEIGHT / len(found) + hits.get(position, (0.0, ""))[0]
            hits[position] = (weight, f'has the quoted text "{quote[:60]}"')
    return hits


# Searched in "\n" + text: a literal first character is a fast search, where
# a multi-line "^" is tried at every position.
_INNER_DEF_RE = re.compile(
    r"\n[ \t]*(?:(?:async|static|public|private|export|function|def|fn|func|const|let|var)\s+)*#?"
    r"([A-Za-z_]\w*)\s*(?:\([^()\n]*\)\s*\{|=\s*(?:async\s*)?(?:function|\()|:\s*(?:async\s*)?function)"
)
# Only chunks this big hide definitions worth finding (smaller ones go out whole).
_INNER_MIN_CHARS = 1000


def _mention_test(
    text: str, query: Sequence[str], documents: Sequence[tuple[dict[str, int], int]]
) -> Callable[[str], bool]:
    """Whether a spelled name is only mentioned: in every sentence that spells it, its
    words are under MENTION_SHARE of the sentence's words (weighted by idf; a word
    the code never uses says nothing of which part is meant)."""

    # Read on the first call: most questions spell no name at all.
    @functools.cache
    def sentences() -> tuple[dict[str, float], list[tuple[set[str], set[str]]]]:
        count = len(documents)
        frequency_of = _document_frequencies(documents)
        found = {term: frequency_of.get(term, 0) for term in query}
        weight = {term: math.log(1.0 + count / (1 + df)) for term, df in found.items() if df}
        return weight, [
            (_clause_phrases(sentence), {t for t in _terms(sentence, {}) if t in weight})
            for sentence in _SENTENCE_RE.split(text)
        ]

    def mentioned(name: str) -> bool:
        weight, said_in = sentences()
        phrase = name_phrase(name)
        own = {stem(word) for word in split_identifier(name)}
        shares = [
            sum(weight[t] for t in terms if t in own) / sum(weight[t] for t in terms)
            for phrases, terms in said_in
            if phrase in phrases and terms
        ]
        return bool(shares) and max(shares) < MENTION_SHARE

    return mentioned


def _inner_spelled(
    chunk: Chunk,
    phrases: frozenset[str],
    mentioned: Callable[[str], bool] | None = None,
) -> tuple[int, str] | None:
    """The line (0-based) where ``chunk`` defines, inside itself, a name the question spells."""
    if len(chunk.text) < _INNER_MIN_CHARS:
        return None
    text = "\n" + chunk.text
    for match in _INNER_DEF_RE.finditer(text):
        name = match.group(1)
        phrase = name_phrase(name)
        if phrase is not None and phrase in phrases and name != chunk.name:
            if mentioned is not None and mentioned(name):
                continue
            line = chunk.start_line + text.count("\n", 1, match.start() + 1)
            return (
                line,
                f"holds the definition of `{name}`, whose name the question spells in words",
            )
    return None


def _inner_definitions(names: frozenset[str]) -> Callable[[Chunk], tuple[int, str] | None]:
    """For a chunk, the line (0-based, in the code) where it defines one of ``names`` inside
    itself (the first name in sorted order that it defines).

    The names are sorted and their patterns compiled once, not per chunk: past
    ``re``'s cache of 512, thousands of names were compiled again in every chunk.
    With many names, a chunk's words pick the names to try: a definition's name
    stands between non-word characters (a keyword's space before, a bracket, ``=``
    or ``:`` after), so a name made of word characters is then one of them.
    """
    wanted = sorted(name for name in names if len(name) >= 4)
    words = frozenset(name for name in wanted if _WORD_RUN_RE.fullmatch(name))
    others = [name for name in wanted if name not in words]
    patterns: dict[str, re.Pattern[str]] = {}

    def pattern(name: str) -> re.Pattern[str]:
        found = patterns.get(name)
        if found is None:
            found = patterns[name] = re.compile(
                rf"^[ \t]*(?:(?:async|static|public|private|export|function|def|fn|func)\s+)*"
                rf"#?{re.escape(name)}\s*(?:\(|=\s*(?:async\s*)?(?:function|\()|:\s*(?:async\s*)?function)",
                re.MULTILINE,
            )
        return found

    def inner_definition(chunk: Chunk) -> tuple[int, str] | None:
        if len(wanted) <= _FEW_NAMES:
            present = [name for name in wanted if name in chunk.text]
        else:
            tokens = set(_WORD_RUN_RE.findall(chunk.text))
            present = sorted([*(words & tokens), *(n for n in others if n in chunk.text)])
        for name in present:
            match = pattern(name).search(chunk.text)
            if match is not None:
                line = chunk.start_line + chunk.text.count("\n", 0, match.start())
                return line, f"holds the definition of `{name}`, named in the question"
        return None

    return inner_definition


# Up to this many names, each is looked for in the chunk's text directly.
_FEW_NAMES = 16
_WORD_RUN_RE = re.compile(r"\w+")


@attrs.frozen
class _Concepts:
    """The question's words as the lexicon reads them.

    ``roots``: the roots of its words; ``meanings``: the roots of words that
    mean one of them; ``related``: those counted in the chunks (3 letters or
    more, not already a query term); ``of_term``: for each query term, the
    related terms that stand for it.
    """

    roots: frozenset[str]
    meanings: frozenset[str]
    related: tuple[str, ...]
    of_term: dict[str, tuple[str, ...]]
    close: frozenset[str] = frozenset()
    """Related terms that are a question word's own base (its root, a derivation's)."""
    known: frozenset[str] = frozenset()
    """``roots`` and ``meanings`` together."""


def _concepts(words: Sequence[str], query: Sequence[str], text: str = "") -> _Concepts:
    roots: set[str] = set()
    meanings: set[str] = set()
    of_term: dict[str, tuple[str, ...]] = {}
    wanted = set(query)
    # Words for characters ("colon", "double dash") stand for the quoted characters too.
    symbols = symbol_literals(text) if wanted and text else {}
    close: set[str] = set()
    for word in words:
        own = root(word)
        roots.add(own)
        near = related(word)
        term = stem(word.lower())
        bases = derivations(word) if term in wanted else ()
        for base in bases:
            roots.add(root(base))
            near |= related(base)
        meanings |= near
        if term in wanted and (near or own in symbols or bases):
            # Three-letter roots (``del``, ``arg``) would be found inside every other word.
            # (A base holding the term is found by the term already.)
            same = tuple(b for b in bases if b not in wanted and term not in b)
            close.update(same)
            extra = same
            extra += tuple(
                r for r in sorted(near) if len(r) >= 4 and r not in wanted and r not in _WORD_STOPS
            )
            extra += symbols.get(own, ())
            of_term[term] = tuple(dict.fromkeys((*of_term.get(term, ()), *extra)))
    counted = tuple(dict.fromkeys(r for extra in of_term.values() for r in extra))
    return _Concepts(
        frozenset(roots),
        frozenset(meanings - roots),
        counted,
        of_term,
        frozenset(close),
        frozenset(roots | meanings),
    )


_OwnWords = tuple[int, int, float, frozenset[str]]
_NO_OWN_WORDS: _OwnWords = (0, 0, 0.0, frozenset())


def _own_words(name: str, concepts: _Concepts) -> _OwnWords:
    """How many words of ``name`` are words of the question, how many mean one, the share, which.

    The share is of the name's words (or, for a one-word name in lower case
    such as ``mkdtemp`` or ``readline``, of its letters) that the question
    says or means. Such a name is searched for the question's roots and their
    meanings inside it: 3 letters or more, or 2 at its start (``mk``).
    """
    words = split_identifier(name)
    if len(words) == 1 and len(words[0]) >= 6:
        word = words[0]
        size = len(word)
        if size * size < 2 * len(concepts.known):
            # Fewer pieces of the name than words of the question (thousands of them):
            # look its pieces up instead.
            pieces = {word[:2]} | {
                word[start:end] for start in range(size) for end in range(start + 3, size + 1)
            }
            inside = list(pieces & concepts.known)
        else:
            inside = [
                r
                for r in concepts.known
                if (len(r) >= 3 and r in word) or (len(r) == 2 and word.startswith(r))
            ]
        covered = [False] * len(word)
        for found in inside:
            at = word.find(found)
            covered[at : at + len(found)] = [True] * len(found)
        exact = sum(1 for r in inside if r in concepts.roots)
        return exact, len(inside) - exact, sum(covered) / len(word), frozenset(inside)
    roots = [root(word) for word in words if len(word) > 1 or len(words) == 1]
    if not roots:
        return 0, 0, 0.0, frozenset()
    exact = sum(1 for r in roots if r in concepts.roots)
    near = sum(1 for r in roots if r not in concepts.roots and r in concepts.meanings)
    matched = frozenset(r for r in roots if r in concepts.roots or r in concepts.meanings)
    return exact, near, (exact + near) / len(roots), matched


def _name_meanings(found: Sequence[_OwnWords]) -> list[float]:
    """For each chunk, the square of the share of its name the question says or means,
    divided by how many definitions' names mean the same word (``Arg``, ``NArg``,
    ``Args`` all mean "arguments": none of them is singled out).
    """
    sharing: dict[str, int] = {}
    for _, _, _, matched in found:
        for word in matched:
            sharing[word] = sharing.get(word, 0) + 1
    return [
        share**2 / min(sharing[word] for word in matched) if matched else 0.0
        for _, _, share, matched in found
    ]


def _adjust_lexical(
    chunks: Sequence[Chunk],
    documents: Sequence[tuple[dict[str, int], int]],
    lexical: list[float],
    query: Sequence[str],
    cache: dict[str, tuple[str, ...]],
    concepts: _Concepts | None = None,
    owned: Sequence[_OwnWords] | None = None,
    pairs: Sequence[tuple[str, str]] = (),
) -> list[float]:
    """Word matching tuned for behaviour described in words.

    A definition whose own name carries the words ("the retry loop" →
    ``retry_loop``) or means them ("removing" → ``delete``) gains half its
    score again per word; a class header (mostly a docstring) whose methods
    are chunks of their own loses half, so a long docstring does not outrank
    the method that does the thing.
    """
    wanted = set(query)
    parents = {chunk.parent for chunk in chunks if chunk.parent and chunk.kind == METHOD}
    adjusted = list(lexical)
    count = len(documents)
    frequency_of = _document_frequencies(documents)
    weight = {term: math.log(1.0 + count / (1 + frequency_of.get(term, 0))) for term in query}
    total = sum(weight.values()) or 1.0
    pair_total = sum(min(weight[a], weight[b]) for a, b in pairs) or 1.0
    of_term = concepts.of_term if concepts is not None else {}
    close = concepts.close if concepts is not None else frozenset()
    # Each chunk reads only the query terms it has (or has a word for), in the
    # query's order: reading every term in every chunk was quadratic.
    order_of = {term: order for order, term in enumerate(query)}
    standing_for: dict[str, list[str]] = {}
    for term, others in of_term.items():
        if term in order_of:
            for other in others:
                standing_for.setdefault(other, []).append(term)
    for position, chunk in enumerate(chunks):
        if lexical[position] <= 0:
            continue
        # A description is matched by the chunk that has most of its words,
        # above one that repeats a few of them; words in a definition's head
        # (signature, docstring, leading comment) count double. A word met
        # only through a word that means it counts at RELATED_SHARE.
        frequencies = documents[position][0]
        head = chunk.text[:400].lower()
        coverage = in_head = 0.0
        found = {term for term in frequencies if term in order_of}
        found.update(term for other in frequencies for term in standing_for.get(other, ()))
        for term in sorted(found, key=order_of.__getitem__):
            if term in frequencies:
                coverage += weight[term]
                in_head += weight[term] if term in head else 0.0
            elif present := [o for o in of_term.get(term, ()) if o in frequencies]:
                share = max(_meaning_share(other, close) for other in present)
                coverage += share * weight[term]
                if any(other in head for other in present):
                    in_head += share * weight[term]
        coverage /= total
        in_head /= total
        adjusted[position] *= (0.5 + coverage) ** 2 * (1.0 + (in_head if chunk.name else 0.0))
        if pairs:
            # Words in the question's order, next to each other in the chunk
            # ("returning the updated value"; "accumulate and get" in
            # ``accumulateAndGet``, not ``getAndAccumulate``): the chunk says
            # what the question says, not only the same words.
            lowered = chunk.text.lower()
            near = sum(
                min(weight[first], weight[second])
                for first, second in pairs
                if first in frequencies
                and second in frequencies
                and _pair_re(first, second).search(lowered)
            )
            if near:
                adjusted[position] *= 1.0 + PAIR_BONUS * near / pair_total
        # A constructor's name is its class's: it says nothing of what the constructor does.
        if chunk.name and not _is_constructor(chunk):
            if owned is None:
                own = set(_split_terms(chunk.name, cache))
                exact, near = len(own & wanted), 0
            else:
                exact, near, _, _ = owned[position]
            if exact or near:
                adjusted[position] *= 1.0 + OWN_WORD_BONUS * exact + OWN_RELATED_BONUS * near
        if (
            chunk.kind == CLASS_HEADER
            and (chunk.name or chunk.parent) in parents
            and not _FUNCTION_HEAD_RE.match(chunk.signature)
        ):
            # (The head of a big function split at its nested functions is code, not a docstring.)
            adjusted[position] *= 0.35
        elif chunk.kind == PREAMBLE and concepts is not None:
            # A module docstring, like a class's, speaks of everything the file does.
            adjusted[position] *= 0.35
    return adjusted


# "8-bit", "64 bits", "1.5-bit": a width code writes in a name (``q8_0``, ``u64``, ``iq1_s``).
_WIDTH_RE = re.compile(r"\b(\d{1,3})(?:\.\d+)?[\s-]?bits?\b", re.IGNORECASE)
_NAME_WIDTH_RE = re.compile(r"(?<=[A-Za-z])\d{1,3}(?!\d)")


_NUMBER_WORDS = {
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_WORD_RE = re.compile(r"[a-z]+")


def _widths(text: str) -> frozenset[str]:
    """The widths and counts ``text`` says: "8-bit" -> 8, "two bytes" -> 2 ("one" is everywhere)."""
    found = set(_WIDTH_RE.findall(text))
    found.update(_NUMBER_WORDS[w] for w in _WORD_RE.findall(text.lower()) if w in _NUMBER_WORDS)
    return frozenset(found)


def _width_share(widths: frozenset[str], name: str) -> float:
    """The share of the numbers ``name`` writes after letters (``q2_K_q8_K``: 2, 8) or of the
    question's, whichever are fewer, that the question says."""
    own = set(_NAME_WIDTH_RE.findall(name))
    if not own:
        return 0.0
    return len(widths & own) / min(len(widths), len(own))


@functools.cache
def _pair_re(first: str, second: str) -> re.Pattern[str]:
    """``first`` then ``second``: inside one identifier, or at most two words apart."""
    a, b = re.escape(first), re.escape(second)
    return re.compile(rf"{a}[a-z0-9_]{{0,12}}?{b}|{a}\w*\W+(?:\w+\W+){{0,2}}?{b}")


def _pairs(text: str, terms: set[str]) -> tuple[tuple[str, str], ...]:
    """Consecutive query terms of ``text`` within a clause (stop words between them skipped)."""
    pairs: dict[tuple[str, str], None] = {}
    for clause in _CLAUSE_RE.split(text):
        previous = None
        for word in _PHRASE_WORD_RE.findall(clause):
            term = stem(word.lower())
            if term not in terms:
                continue
            if previous is not None and previous != term:
                pairs[(previous, term)] = None
            previous = term
    return tuple(pairs)


_FUNCTION_HEAD_RE = re.compile(
    r"(?:(?:export|pub(?:\([\w:]+\))?|async|static|default)\s+)*(?:def|function|fn|func)\b"
)


def _words_why(
    document: tuple[dict[str, int], int], order_of: dict[str, int], shown: dict[str, str]
) -> str:
    frequencies = document[0]
    hits = sorted(frequencies, key=lambda term: (-frequencies[term], order_of[term]))[:4]
    words = ", ".join(shown.get(term, term) for term in hits)
    return "matches the words " + words if hits else "order"


def _bm25(
    documents: Sequence[tuple[dict[str, int], int]],
    query: Sequence[str],
    weights: dict[str, float] | None = None,
) -> list[float]:
    """Okapi BM25 (k1=1.2, b=0.75) of each ``(frequencies, length)`` document for ``query``.

    ``weights`` scales a term's idf (1 where absent): words that only mean a question word.
    """
    lengths = [length for _, length in documents]
    average = (sum(lengths) / len(lengths)) or 1.0
    count = len(documents)
    idf = {}
    frequency_of = _document_frequencies(documents)
    for term in query:
        df = frequency_of.get(term, 0)
        idf[term] = math.log(1.0 + (count - df + 0.5) / (df + 0.5)) * (
            weights.get(term, 1.0) if weights else 1.0
        )
    scores: list[float] = []
    for frequencies, length in documents:
        score = 0.0
        norm = _K1 * (1.0 - _B + _B * length / average)
        for term, tf in frequencies.items():
            score += idf[term] * tf * (_K1 + 1.0) / (tf + norm)
        scores.append(score)
    return scores
