"""Language detection: fence tag, file names, syntax evidence."""

import pytest

from cerebrum.prompt.language import detect_language, normalize_tag

from .snippets import ALL


@pytest.mark.parametrize("language", sorted(ALL))
def test_detects_each_language_from_syntax(language: str) -> None:
    assert detect_language(ALL[language]) == language


def test_fence_tag_wins_over_syntax() -> None:
    assert detect_language(ALL["python"], fence_tag="rs") == "rust"
    assert detect_language("x = 1", fence_tag="C++") == "cpp"


def test_unknown_fence_tag_falls_back_to_syntax() -> None:
    assert detect_language(ALL["go"], fence_tag="weird") == "go"


def test_file_name_in_prompt() -> None:
    assert (
        detect_language("x = load(a)\ny = x + 1\n", context="This is from utils/loader.py")
        == "python"
    )
    assert detect_language("print foo", context="see build.sh") == "shell"


def test_header_file_name_lets_syntax_choose_c_or_cpp() -> None:
    assert detect_language(ALL["cpp"], context="in geometry.h") == "cpp"


def test_prose_is_text() -> None:
    assert detect_language("The quick brown fox jumps over the lazy dog.\n" * 20) == "text"
    assert detect_language("") == "text"


def test_mixed_languages_pick_the_dominant_one() -> None:
    mixed = ALL["rust"] + "\n" + ALL["shell"][:120]
    assert detect_language(mixed) == "rust"


def test_normalize_tag() -> None:
    assert normalize_tag("py") == "python"
    assert normalize_tag(".tsx") == "typescript"
    assert normalize_tag("cobol") is None
    assert normalize_tag(None) is None


# Unfenced Java whose Javadoc speaks of interfaces, types and numbers (words
# that were TypeScript evidence), C++ that only shows it by its headers and
# casts, and JavaScript whose typeof answers are the words string and number.
JAVA_WITH_DOCS = """package org.example.util;

import java.util.Iterator;
import java.util.function.Predicate;

/**
 * A bounded collection. This interface is implemented by any type whose
 * number of elements is fixed; see the {@code as} view for a read-only
 * string form of any instance.
 */
public interface Bounded<E> extends Iterable<E> {
    /** The number of elements, as any implementation keeps it: a type's capacity. */
    int capacity();

    default boolean removeIf(Predicate<? super E> filter) {
        boolean removed = false;
        final Iterator<E> each = iterator();
        while (each.hasNext()) {
            if (filter.test(each.next())) {
                each.remove();
                removed = true;
            }
        }
        return removed;
    }
}
"""

CPP_BY_HEADERS = """#include <cstring>
#include <vector>
#include "buffer.h"

static int count_lines(const char * text, size_t size) {
    int lines = 0;
    for (size_t i = 0; i < size; i++) {
        if (text[i] == '\\n') {
            lines++;
        }
    }
    return lines;
}

int buffer_lines(const struct buffer * buf) {
    const char * data = reinterpret_cast<const char *>(buf->data);
    return count_lines(data, buf->size);
}
"""

JS_WITH_TYPEOF = """const validate = (value, kind) => {
  if (typeof value === 'string' && kind === 'number') {
    return Number(value)
  }
  if (typeof value === 'boolean') {
    return value ? 1 : 0
  }
  return value
}

module.exports = { validate, type: 'unknown' }
"""


def test_unfenced_java_is_java_not_typescript() -> None:
    assert detect_language(JAVA_WITH_DOCS) == "java"


def test_cpp_shown_by_headers_and_casts_is_cpp_not_c() -> None:
    assert detect_language(CPP_BY_HEADERS) == "cpp"
    # The same function in plain C stays C.
    plain = CPP_BY_HEADERS.replace(
        "#include <cstring>\n#include <vector>\n", "#include <string.h>\n"
    )
    plain = plain.replace("reinterpret_cast<const char *>(buf->data)", "(const char *) buf->data")
    assert detect_language(plain) == "c"


def test_javascript_typeof_words_are_not_typescript() -> None:
    assert detect_language(JS_WITH_TYPEOF) == "javascript"
    typed = JS_WITH_TYPEOF.replace("(value, kind)", "(value: unknown, kind: string): number")
    assert detect_language(typed) == "typescript"


def test_file_name_inside_the_code_does_not_override_clear_syntax() -> None:
    # A TypeScript module importing './x.js' is still TypeScript.
    code = (
        "import { load } from './loader.js'\n"
        + JS_WITH_TYPEOF.replace("(value, kind)", "(value: unknown, kind: string): number") * 2
    )
    assert detect_language(code) == "typescript"


_RUST_WITH_STD = """
use std::convert::TryInto;
use std::ops::RangeBounds;
use std::path::PathBuf;

pub struct Ranged<T: std::convert::TryFrom<i64>> {
    bounds: (std::ops::Bound<i64>, std::ops::Bound<i64>),
    target: std::marker::PhantomData<T>,
}

impl<T: std::convert::TryFrom<i64>> Ranged<T> {
    pub fn range<B: RangeBounds<i64>>(mut self, range: B) -> Self {
        let start = match range.start_bound() {
            std::ops::Bound::Included(i) => std::ops::Bound::Included(*i),
            std::ops::Bound::Excluded(i) => std::ops::Bound::Excluded(*i),
            std::ops::Bound::Unbounded => std::ops::Bound::Unbounded,
        };
        self.bounds.0 = start;
        self
    }
}
"""


def test_rust_full_of_std_paths_is_rust_not_cpp() -> None:
    # `std::` is Rust's standard library too; next to fn, impl and mut it says Rust.
    assert detect_language(_RUST_WITH_STD) == "rust"
