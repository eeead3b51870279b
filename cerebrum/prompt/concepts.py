"""A small lexicon of programming concepts, so a description meets code that words it otherwise.

"Combining several sorted inputs" should find ``merge``, "removing an
element" ``delete``, "a temporary directory" ``mkdtemp``. Each group below
is one concept in the everyday vocabulary of programming: the verbs of
collections and I/O, their nouns, the usual identifier abbreviations
(``buf``, ``idx``, ``tmp``), and a few phrases code spells as one word
("least recently used" → ``lru``). The groups were written from general
programming vocabulary, category by category, not from benchmark cases.

Words are compared by :func:`root`, a suffix stripper a little stronger
than :func:`cerebrum.prompt.ranking.stem` (it also meets "resolve" with
"resolving" and "entry" with "entries"), so the lexicon lists base forms only.
"""

from __future__ import annotations

import functools
import re

_GROUPS = """
add append insert push put enqueue attach
remove delete del drop discard erase evict purge unlink rm pop dequeue detach
find search lookup locate seek
fetch retrieve download pull
combine merge join concat concatenate union chain zip
split separate divide partition chop
sort sorted order ordering rank
reverse reversed backward backwards invert descending rev
forward forwards fwd onward
filter exclude skip ignore omit
convert transform translate cast coerce
copy clone duplicate dup replicate
compare comparison cmp equal eq same identical
count cnt tally total tot
length len size sz
clear reset wipe
replace substitute swap
contain include has member
iterate iteration loop walk traverse visit iter iterator each
first head front begin start initial leading
last final tail end back trailing
next following succ advance
previous prev prior preceding
middle mid center centre
resize grow expand enlarge extend realloc shrink double
capacity cap
limit max maximum bound threshold ceiling
minimum min least floor
null nil none undefined missing absent
stale expire expiry expiration expired ttl outdated age
timeout deadline
retry retries attempt tries again backoff
cache memo memoize lru
queue deque fifo
stack lifo
dictionary dict map hashmap hashtable
list array slice vec vector sequence seq
tree node leaf child parent subtree
key keys
value val
attribute attr property prop field
string str text
character char chr rune letter
byte octet
word token term lexeme
line row newline eol
whitespace space blank tab indent indentation
quote quoting escape unescape
prefix startswith
suffix endswith
trim strip chomp
pad padding justify
wrap fold reflow
uppercase upper capital capitalize
lowercase lower
format render stringify repr
print display show
parse parser decode deserialize unmarshal scan
encode serialize marshal dump
number num integer int digit numeric
float floating real decimal
boolean bool
error err exception failure fault raise throw panic
warning warn deprecate deprecation
log logging logger trace
check validate verify valid validation assert ensure sanity
allow permit accept
deny reject refuse forbid disallow
create make mk new construct build generate spawn alloc allocate
init initialize initialise setup
stop finish terminate halt quit exit abort cancel shutdown
run execute exec invoke call dispatch eval
wait sleep pause
lock mutex synchronized sync semaphore
thread goroutine worker concurrent parallel
connect connection conn dial socket
send transmit emit
receive recv
request req
response resp reply
header hdr
url uri href
address addr
host hostname domain netloc
port
file fd descriptor
stream io
directory dir folder
path filename filepath pathname
temporary temp tmp scratch
open fopen opened
close closed shut
read reader readline
write writer save
flush sync
exists exist already collision conflict
environment env environ
config configuration settings setting cfg conf preferences prefs
option options opt opts flag switch
argument arg args argv param parameter
command cmd subcommand
user username uid owner account
permission perm perms mode access privilege chmod
password passwd secret credential
hash digest checksum sha md5 crc integrity
encrypt cipher crypt
decrypt decipher
compress deflate gzip zlib
decompress inflate gunzip
encoding charset codec unicode utf
time timestamp date datetime clock now
duration interval period elapsed delay
random rand rng shuffle seed
memory mem malloc heap
free release dealloc
offset position pos index idx cursor
range span window bounds
overflow exceed exceeds outofrange toolarge
negative minus
dash hyphen
separator delimiter sep delim
bracket brace paren parenthesis
comment docstring doc
regex regexp pattern glob wildcard
version semver
package pkg module mod library lib crate dependency dep
import require
type kind
object instance obj
function func fn method callback handler hook cb listener
event signal notification
message msg
buffer buf
pointer ptr reference ref
context ctx
state status stat
success succeed ok
sum accumulate aggregate reduce
multiply mul mult product prod
cumulative cumsum scan prefixsum
average mean avg
deviation stdev variance
round ceil truncate
power pow exponent
root sqrt
absolute abs
hidden hide invisible
default fallback
disable disabled off
heap priority heapq heapify
subclass derived inherit inherits extends subtype
superclass base parent supertype
listen listening accept
channel track mono stereo
sample frame
samplerate framerate frequency hz
volume gain amplitude
enable enabled on
"""

# Phrases code spells as one word (or an acronym), appended to the words of a question.
_PHRASES = {
    "least recently used": "lru",
    "first in first out": "fifo",
    "last in first out": "lifo",
    "time to live": "ttl",
    "end of file": "eof",
    "end of line": "eol",
    "file descriptor": "fd",
    "regular expression": "regex",
    "command line": "argv",
    "standard input": "stdin",
    "standard output": "stdout",
    "standard error": "stderr",
    "carriage return": "cr",
    "line feed": "lf",
    "white space": "whitespace",
    "give up": "retry",
    "look up": "lookup",
    "set up": "setup",
    "shut down": "shutdown",
    "time out": "timeout",
    "times out": "timeout",
    "back off": "backoff",
    "hash table": "hashtable",
    "key value": "kv",
    "working directory": "cwd",
    "current directory": "cwd",
    "home directory": "home",
    "process id": "pid",
    "user id": "uid",
    "thread pool": "pool",
    "binary search": "bisect",
    "linked list": "linkedlist",
    "null pointer": "nullptr",
    "upper case": "uppercase",
    "lower case": "lowercase",
    "too many": "exceed",
    "too much": "exceed",
    "too large": "exceed",
    "too big": "exceed",
    "too long": "exceed",
    "blow up": "overflow",
    "blows up": "overflow",
    "running total": "cumulative",
    "running sum": "cumulative",
    "prefix sum": "cumulative",
    "front to back": "forward",
    "left to right": "forward",
    "back to front": "reverse",
    "right to left": "reverse",
    "sample rate": "samplerate",
    "frame rate": "framerate",
    "inner product": "dot",
    "dot product": "dot",
    "scalar product": "dot",
}
_PHRASE_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(p).replace(r"\ ", r"[\s-]+") for p in _PHRASES) + r")\b",
    re.IGNORECASE,
)


def root(word: str) -> str:
    """``word`` lower-cased without its inflection ("resolving", "resolve" -> "resolv")."""
    word = word.lower()
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) >= 6:
        return word[:-3]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]  # "splitting" -> "split", "stopped" -> "stop"
            return word
    if word.endswith("es") and len(word) >= 6 and word[-3] in "sxz":
        return word[:-2]  # "indexes", "matches"
    if word.endswith("s") and not word.endswith("ss") and len(word) >= 4:
        word = word[:-1]
    if len(word) >= 5 and word[-1] in "ey":
        word = word[:-1]  # "resolve", "entry"
    return word


# Derivational suffixes, longest first: (suffix, replacements, shortest base).
# "serialization" -> serializ, "normalising" -> normaliz, "insertion" ->
# insert, "expansion" -> expand, "emptiness" -> empty, "lazily" -> lazy,
# "readable" -> read: the word code names it by. (Agent nouns are left
# alone: "integer", "character", "whether" are not made of a verb.)
_DERIVATIONS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("isations", ("iz", "is"), 4),
    ("izations", ("iz",), 4),
    ("isation", ("iz", "is"), 4),
    ("ization", ("iz",), 4),
    ("ising", ("iz",), 4),
    ("ised", ("iz",), 4),
    ("iser", ("iz",), 4),
    ("ises", ("iz",), 4),
    ("ise", ("iz",), 4),
    ("ations", ("",), 5),
    ("ation", ("",), 5),
    ("sions", ("d", "t"), 4),
    ("sion", ("d", "t"), 4),
    ("ions", ("",), 5),
    ("ion", ("",), 5),
    ("ments", ("",), 6),
    ("ment", ("",), 6),
    ("iness", ("y",), 4),
    ("ness", ("",), 4),
    ("ably", ("",), 4),
    ("ibly", ("",), 4),
    ("able", ("", "e"), 4),
    ("ible", ("", "e"), 4),
    ("ily", ("y",), 3),
    ("ly", ("",), 5),
)


@functools.cache
def derivations(word: str) -> tuple[str, ...]:
    """Forms code may write ``word`` in, besides its inflection: its root where
    the plain suffix stripper misses it ("splitting" -> split) and the base of a
    derived word ("serialization" -> serializ, "insertion" -> insert,
    "emptiness" -> empty), lower-cased."""
    word = word.lower()
    found: list[str] = []
    # Only the root that the plain suffix stripper misses: a doubled consonant
    # ("splitting" -> split, not splitt) or "-ies" ("entries" -> entr, for entry).
    own = root(word)
    inflected = re.match(r"(.*?)(?:ing|ed)$", word)
    if len(own) >= 4 and (
        word.endswith("ies")
        or (inflected and inflected.group(1)[-2:] == own[-1] * 2 and inflected.group(1)[:-1] == own)
    ):
        found.append(own)
    for suffix, replacements, shortest in _DERIVATIONS:
        if word.endswith(suffix) and len(word) - len(suffix) >= shortest:
            base = word[: -len(suffix)]
            found.extend(base + tail for tail in replacements)
            break
    return tuple(dict.fromkeys(f for f in found if f != word and len(f) >= 4))


@functools.cache
def _index() -> dict[str, frozenset[str]]:
    """Each root of the lexicon -> the roots of every group it belongs to."""
    index: dict[str, set[str]] = {}
    for line in _GROUPS.strip().split("\n"):
        members = {root(word) for word in line.split()}
        for member in members:
            index.setdefault(member, set()).update(members)
    return {member: frozenset(group) for member, group in index.items()}


def related(word: str) -> frozenset[str]:
    """Roots of the words that mean what ``word`` means in code, ``word``'s own root excluded."""
    own = root(word)
    return _index().get(own, frozenset()) - {own}


def phrase_words(text: str) -> list[str]:
    """The one-word forms of the phrases ``text`` contains ("least recently used" -> ``lru``)."""
    if not text:
        return []
    return [
        _PHRASES[" ".join(m.group(0).lower().replace("-", " ").split())]
        for m in _PHRASE_RE.finditer(text)
    ]


# Words for characters, and the characters code writes for them: "the part
# after the colon" is code comparing with ':', "a double dash" is "--",
# "digits" are '0'..'9'. Keyed by root; the literal forms are searched for
# quoted (``':'``, ``":"``), as a comparison or a split would write them.
_SYMBOLS: dict[str, tuple[str, ...]] = {
    "colon": (":",),
    "semicolon": (";",),
    "comma": (",",),
    "dash": ("-",),
    "hyphen": ("-",),
    "minus": ("-",),
    "slash": ("/",),
    "backslash": ("\\\\",),
    "dot": (".",),
    "period": (".",),
    "tilde": ("~",),
    "underscore": ("_",),
    "equal": ("=",),
    "ampersand": ("&",),
    "asterisk": ("*",),
    "star": ("*",),
    "pipe": ("|",),
    "caret": ("^",),
    "dollar": ("$",),
    "percent": ("%",),
    "hash": ("#",),
    "pound": ("#",),
    "plus": ("+",),
    "exclamation": ("!",),
    "apostrophe": ("'",),
    "backtick": ("`",),
    "bracket": ("[", "]"),
    "brace": ("{", "}"),
    "parenthesis": ("(", ")"),
    "paren": ("(", ")"),
    "space": (" ",),
    "tab": ("\\t",),
    "newline": ("\\n",),
    "digit": ("0", "9"),
    "letter": ("a", "z"),
    "nul": ("\\0", "\\x00"),
}
# "Double dash", "dot dot", "double colon": the character twice.
_DOUBLED_RE = re.compile(r"\b(?:double|two)[\s-]+(\w+)|\b(dot)[\s-]+dot\b", re.IGNORECASE)


def symbol_literals(text: str) -> dict[str, tuple[str, ...]]:
    """For each word of ``text`` that names a character, its quoted forms in code.

    ``{"colon": ("':'", '":"')}``; a doubled one ("double dash") adds the
    character twice (``"--"``). Keys are the words' roots.
    """
    found: dict[str, tuple[str, ...]] = {}
    lowered = text.lower()
    for word in set(re.findall(r"[a-z]+", lowered)):
        key = root(word)
        chars = _SYMBOLS.get(key)
        if chars:
            found[key] = tuple(f"{q}{c}{q}" for c in chars for q in ("'", '"'))
    for match in _DOUBLED_RE.finditer(lowered):
        key = root(match.group(1) or match.group(2))
        chars = _SYMBOLS.get(key)
        if chars and len(chars) == 1:
            found[key] = (*found.get(key, ()), f'"{chars[0] * 2}"', f"'{chars[0] * 2}'")
    return found
