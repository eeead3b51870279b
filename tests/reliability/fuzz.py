"""Hypothesis strategies for hostile HTTP input, shared by both services' fuzz tests."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)

_messages = st.lists(
    st.one_of(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "x", ""]),
                               "content": st.one_of(st.text(max_size=30), json_values)}),
        json_values,
    ),
    max_size=3,
)

# Mostly-plausible completion bodies with one or more fields wrong: the
# interesting cases sit near the valid ones, not in random bytes.
completion_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.sampled_from(["smollm2-135m", "auto", "", "nope"]), json_values),
        "messages": st.one_of(_messages, json_values),
        "prompt": st.one_of(st.text(max_size=30), json_values),
        "max_tokens": st.one_of(st.integers(-5, 3), json_values),
        "temperature": st.one_of(st.floats(-1, 3, allow_nan=False), json_values),
        "top_p": json_values,
        "stop": json_values,
        "seed": json_values,
        "stream": st.one_of(st.booleans(), json_values),
        "n": json_values,
    },
)


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    json_values.map(encode),
    completion_bodies.map(encode),
)

header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
headers = st.dictionaries(
    st.sampled_from(["X-Request-ID", "Content-Type", "Accept", "X-Forwarded-For", "Cache-Control",
                     "X-Cerebrum-Optimize", "Authorization"]),
    header_values, max_size=4)
query_strings = st.dictionaries(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
    st.text(max_size=20), max_size=3)


def assert_json_error_or_success(status: int, body: bytes, content_type: str) -> None:
    """Never a 500; errors are 4xx/503 JSON in OpenAI's shape."""
    assert status < 500 or status == 503, (status, body[:200])
    if status >= 400:
        assert content_type.startswith("application/json"), content_type
        error = json.loads(body)["error"]
        assert isinstance(error["message"], str) and error["message"]
