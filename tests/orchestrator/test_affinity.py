"""Prefix affinity as plain data: fingerprints, the choice, its memory and its bounds."""

from __future__ import annotations

import random
from typing import Any

import pytest

from cerebrum.orchestrator.affinity import (
    BLOCK_CHARS,
    MAX_BOUNDARIES,
    SESSION_HEADER,
    Balancing,
    InvalidSession,
    Load,
    Outcome,
    PrefixAffinity,
    PrefixKey,
    prefix_keys,
    session_of,
)

SYSTEM = {"role": "system", "content": "You are a helpful coding assistant."}


def conversation(name: str, turns: int) -> list[dict[str, Any]]:
    """A chat as a client re-sends it at turn ``turns``: the whole history."""
    messages: list[dict[str, Any]] = [SYSTEM]
    for turn in range(1, turns + 1):
        messages.append({"role": "user", "content": f"{name}: question {turn}"})
        if turn < turns:
            messages.append({"role": "assistant", "content": f"{name}: answer {turn}"})
    return messages


def body(messages: list[dict[str, Any]], model: str = "m") -> dict[str, Any]:
    return {"model": model, "messages": messages}


def keys(name: str, turns: int, model: str = "m") -> tuple[PrefixKey, ...]:
    return prefix_keys("chat", body(conversation(name, turns), model))


def idle(*names: str) -> list[Load]:
    return [Load(name, 0, True) for name in names]


def route_and_serve(affinity: PrefixAffinity, loads: list[Load], name: str, turn: int,
                    session: str | None = None) -> tuple[str, Outcome | None]:
    route = affinity.choose(loads, keys(name, turn), session)
    return route.order[0], affinity.served(route, route.order[0])


# -- fingerprints -----------------------------------------------------------

def test_each_turn_extends_the_previous_turns_fingerprints() -> None:
    turn1, turn2, turn3 = keys("a", 1), keys("a", 2), keys("a", 3)
    assert len(turn1) == 1 and len(turn2) == 3 and len(turn3) == 5
    assert turn2[:1] == turn1 and turn3[:3] == turn2
    assert [k.chars for k in turn2] == sorted(k.chars for k in turn2)  # shortest first
    assert turn2[0].chars == len(SYSTEM["content"]) + len("a: question 1")


def test_a_system_prompt_alone_identifies_no_conversation() -> None:
    assert prefix_keys("chat", body([SYSTEM])) == ()
    assert prefix_keys("chat", body([SYSTEM, {"role": "developer", "content": "x"}])) == ()
    # Two conversations that share only the system prompt share no fingerprint.
    assert not set(keys("a", 2)) & set(keys("b", 2))


def test_a_changed_message_changes_every_fingerprint_from_it_on() -> None:
    edited = conversation("a", 3)
    edited[2] = {"role": "assistant", "content": "a: a different answer 1"}
    original, changed = keys("a", 3), prefix_keys("chat", body(edited))
    assert original[0] == changed[0]
    assert not set(original[1:]) & set(changed[1:])


def test_model_tools_and_kind_are_part_of_the_prefix() -> None:
    assert not set(keys("a", 2, "m")) & set(keys("a", 2, "other"))
    with_tools = prefix_keys("chat", {**body(conversation("a", 2)),
                                      "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert not set(with_tools) & set(keys("a", 2))
    # Splitting the same text differently between fields never collides.
    assert (prefix_keys("chat", body([{"role": "user", "content": "ab"}]))
            != prefix_keys("chat", body([{"role": "usera", "content": "b"}])))


def test_content_parts_and_extra_fields_are_fingerprinted() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    plain = [{"role": "user", "content": "hi"}]
    named = [{"role": "user", "content": "hi", "name": "bob"}]
    fingerprints = {prefix_keys("chat", body(m))[0].digest for m in (parts, plain, named)}
    assert len(fingerprints) == 3


def test_fingerprints_are_bounded_per_request() -> None:
    long_chat = [{"role": "user", "content": f"m{i}"} for i in range(MAX_BOUNDARIES + 50)]
    assert len(prefix_keys("chat", body(long_chat))) == MAX_BOUNDARIES
    # ...and a longer conversation still matches its earlier turn on them.
    assert prefix_keys("chat", body(long_chat))[-1] == prefix_keys(
        "chat", body(long_chat[:MAX_BOUNDARIES]))[-1]
    huge = "x" * (BLOCK_CHARS * (MAX_BOUNDARIES + 10))
    assert len(prefix_keys("text", {"prompt": huge})) == MAX_BOUNDARIES


def test_text_prompts_are_fingerprinted_by_whole_blocks() -> None:
    code = "".join(f"line {i}\n" for i in range(400))
    short = prefix_keys("text", {"model": "m", "prompt": code[:BLOCK_CHARS * 2 + 100]})
    longer = prefix_keys("text", {"model": "m", "prompt": code + "# more"})
    assert [k.chars for k in short] == [BLOCK_CHARS, BLOCK_CHARS * 2]
    assert longer[:2] == short
    assert prefix_keys("text", {"prompt": "too short"}) == ()
    assert prefix_keys("text", {"prompt": [code]})[:2] == prefix_keys("text", {"prompt": code})[:2]


@pytest.mark.parametrize("bad", [{"messages": "no"}, {"messages": [SYSTEM, "x"]},
                                 {"prompt": 3}, {}])
def test_malformed_bodies_give_no_or_partial_fingerprints(bad: dict[str, Any]) -> None:
    kind = "text" if "prompt" in bad else "chat"
    assert prefix_keys(kind, bad) == ()


# -- sessions --------------------------------------------------------------------

def test_session_from_header_or_body() -> None:
    assert session_of({}, {}) is None
    assert session_of({SESSION_HEADER: " s-1 "}, {}) == "s-1"
    assert session_of({}, {"cerebrum": {"session": "s-2"}}) == "s-2"
    assert session_of({SESSION_HEADER: "h"}, {"cerebrum": {"session": "b"}}) == "h"
    assert session_of({}, {"cerebrum": {"optimize": False}}) is None


@pytest.mark.parametrize("headers, options, param", [
    ({SESSION_HEADER: ""}, None, SESSION_HEADER),
    ({SESSION_HEADER: "x" * 129}, None, SESSION_HEADER),
    ({}, {"session": 5}, "cerebrum.session"),
    ({}, {"session": "a\nb"}, "cerebrum.session"),
])
def test_bad_session_ids_name_their_source(headers: dict[str, str], options: Any,
                                           param: str) -> None:
    with pytest.raises(InvalidSession) as caught:
        session_of(headers, {"cerebrum": options} if options is not None else {})
    assert caught.value.param == param


# -- the choice ------------------------------------------------------------------

def test_new_conversations_spread_and_later_turns_return_home() -> None:
    affinity = PrefixAffinity()
    loads = idle("b1", "b2")
    homes = {}
    for name in "abcd":
        homes[name], outcome = route_and_serve(affinity, loads, name, 1)
        assert outcome is Outcome.MISS
    assert [homes[n] for n in "abcd"] == ["b1", "b2", "b1", "b2"]
    for turn in (2, 3, 4):
        for name in "abcd":
            assert route_and_serve(affinity, loads, name, turn) == (homes[name], Outcome.HIT)
    assert affinity.stats.hits == 12 and affinity.stats.misses == 4


def test_round_robin_and_least_busy_ignore_conversations() -> None:
    rng = random.Random(7)
    rr = PrefixAffinity(balancing=Balancing.ROUND_ROBIN)
    seen: dict[str, set[str]] = {name: set() for name in "abcd"}
    for turn in (1, 2, 3, 4):
        names = list("abcd")
        rng.shuffle(names)
        for name in names:
            first, outcome = route_and_serve(rr, idle("b1", "b2"), name, turn)
            seen[name].add(first)
            assert outcome is None  # nothing is counted: affinity is off
    assert any(len(backends) == 2 for backends in seen.values())
    least = PrefixAffinity(balancing=Balancing.LEAST_BUSY)
    loads = [Load("b2", 0, True), Load("b1", 1, True), Load("b3", 0, False)]
    assert least.choose(loads, keys("a", 1)).order == ("b2", "b1", "b3")
    assert rr.stats.hits == rr.stats.misses == 0


def test_the_longest_held_prefix_wins() -> None:
    affinity = PrefixAffinity()
    loads = idle("b1", "b2")
    affinity.served(affinity.choose(loads, keys("a", 1)), "b1")
    affinity.served(affinity.choose(loads, keys("a", 2)), "b2")  # e.g. moved by failover
    route = affinity.choose(loads, keys("a", 3))
    assert route.order[0] == "b2" and route.outcome is Outcome.HIT
    assert route.matched_chars == keys("a", 2)[-1].chars


def test_a_much_busier_holder_is_overridden_at_the_threshold() -> None:
    affinity = PrefixAffinity(max_imbalance=2)
    affinity.served(affinity.choose(idle("b1", "b2"), keys("a", 1)), "b1")
    one_more = [Load("b2", 0, True), Load("b1", 1, True)]
    assert affinity.choose(one_more, keys("a", 2)).order == ("b1", "b2")
    two_more = [Load("b2", 0, True), Load("b1", 2, True)]
    route = affinity.choose(two_more, keys("a", 2))
    assert route.order == ("b2", "b1") and route.outcome is Outcome.OVERRIDE
    assert affinity.served(route, "b2") is Outcome.OVERRIDE
    # The conversation now lives on b2, which holds its longer prefix.
    assert affinity.choose(idle("b1", "b2"), keys("a", 3)).order[0] == "b2"
    assert affinity.stats.overrides == 1


def test_an_unhealthy_holder_moves_the_conversation_at_once() -> None:
    affinity = PrefixAffinity()
    affinity.served(affinity.choose(idle("b1", "b2"), keys("a", 1)), "b1")
    down = [Load("b2", 0, True), Load("b1", 0, False)]
    route = affinity.choose(down, keys("a", 2))
    assert route.order == ("b2", "b1") and route.outcome is Outcome.FAILOVER
    affinity.served(route, "b2")
    # b1 is back: the conversation stays where its latest turn went.
    assert affinity.choose(idle("b1", "b2"), keys("a", 3)).order[0] == "b2"
    assert affinity.stats.failovers == 1


def test_a_holder_that_fails_the_attempt_counts_as_failover() -> None:
    affinity = PrefixAffinity()
    affinity.served(affinity.choose(idle("b1", "b2"), keys("a", 1)), "b1")
    route = affinity.choose(idle("b1", "b2"), keys("a", 2))
    assert route.outcome is Outcome.HIT
    assert affinity.served(route, "b2") is Outcome.FAILOVER  # b1 failed; b2 answered


def test_no_healthy_backend_keeps_the_pools_order() -> None:
    affinity = PrefixAffinity()
    route = affinity.choose([Load("b1", 0, False), Load("b2", 0, False)], keys("a", 1))
    assert route.order == ("b1", "b2") and route.outcome is None


def test_a_pinned_session_sticks_whatever_its_prompt() -> None:
    affinity = PrefixAffinity()
    loads = idle("b1", "b2")
    first, _ = route_and_serve(affinity, loads, "a", 1, session="s")
    # An unrelated prompt (a client that rewrites its history) with the same session.
    assert route_and_serve(affinity, loads, "zzz", 1, session="s") == (first, Outcome.HIT)
    # A different session with a new conversation goes elsewhere.
    assert route_and_serve(affinity, loads, "b", 1, session="t")[0] != first
    # The pinned backend goes down: the session moves, and stays moved.
    other = "b2" if first == "b1" else "b1"
    down = [Load(other, 0, True), Load(first, 0, False)]
    assert route_and_serve(affinity, down, "a", 2, session="s") == (other, Outcome.FAILOVER)
    assert route_and_serve(affinity, loads, "a", 3, session="s") == (other, Outcome.HIT)


def test_forget_drops_a_backends_prefixes_and_sessions() -> None:
    affinity = PrefixAffinity()
    route_and_serve(affinity, idle("b1", "b2"), "a", 1, session="s")
    affinity.forget("b1")
    assert affinity.prefixes_held("b1") == 0
    assert affinity.choose(idle("b1", "b2"), keys("a", 2), "s").outcome is Outcome.MISS


def test_memory_is_bounded_least_recently_used_first() -> None:
    affinity = PrefixAffinity(max_prefixes=4, max_sessions=2)
    loads = [Load("b1", 0, True)]
    for name in "abcdef":
        affinity.served(affinity.choose(loads, keys(name, 1), session=name), "b1")
    assert affinity.prefixes_held("b1") == 4
    assert affinity.held("b1", keys("b", 1)) == 0
    assert affinity.held("b1", keys("f", 1)) == keys("f", 1)[-1].chars
    assert [affinity.pinned(s) for s in "defg"] == [None, "b1", "b1", None]
    with pytest.raises(ValueError):
        PrefixAffinity(max_prefixes=0)
