"""The response cache on its own: keys, LRU by bytes, TTL, coalescing."""

from __future__ import annotations

import asyncio

import pytest

from cerebrum.orchestrator.response_cache import (
    CachedCompletion,
    ResponseCache,
    cache_key,
    is_cacheable,
)


def entry(text: str = "hello world") -> CachedCompletion:
    return CachedCompletion(f"data: {text}\n\n".encode(), stream=True,
                            content_type="text/event-stream")


@pytest.mark.parametrize(("body", "expected"), [
    ({"temperature": 0}, True),
    ({"temperature": 0.0}, True),
    ({"seed": 7, "temperature": 0.9}, True),
    ({"temperature": 0.7}, False),
    ({}, False),  # the default temperature samples
    ({"temperature": False}, False),
    ({"seed": "7"}, False),
])
def test_only_deterministic_requests_are_cacheable(body, expected) -> None:
    assert is_cacheable(body) is expected


def test_key_covers_every_generation_parameter_and_the_answer_shape() -> None:
    base = {"messages": [{"role": "user", "content": "x"}], "temperature": 0, "max_tokens": 5}
    key = cache_key("chat", "m", base)
    assert key == cache_key("chat", "m", {**base, "user": "u", "cerebrum": {"optimize": True}})
    assert key == cache_key("chat", "m", dict(reversed(list(base.items()))))
    for changed in ({"max_tokens": 6}, {"top_p": 0.5}, {"stop": ["\n"]}, {"seed": 1},
                    {"stream": True}, {"stream_options": {"include_usage": True}},
                    {"messages": [{"role": "user", "content": "y"}]}):
        assert cache_key("chat", "m", {**base, **changed}) != key
    assert cache_key("chat", "other", base) != key
    assert cache_key("text", "m", base) != key


def test_hit_miss_and_lru_eviction_by_bytes() -> None:
    one = entry("a" * 100)
    cache = ResponseCache(max_bytes=one.size * 2, ttl_s=60)
    assert cache.get("k1") is None
    cache.put("k1", one)
    cache.put("k2", entry("b" * 100))
    assert cache.get("k1") == one  # k1 is now the most recently used
    cache.put("k3", entry("c" * 100))
    assert cache.get("k2") is None  # evicted
    assert cache.get("k1") == one and cache.get("k3") is not None
    assert cache.bytes <= cache.max_bytes
    assert (cache.stats.hits, cache.stats.evictions) == (3, 1)


def test_entry_larger_than_the_cache_is_not_stored() -> None:
    cache = ResponseCache(max_bytes=100, ttl_s=60)
    cache.put("k", entry("x" * 1000))
    assert len(cache) == 0 and cache.bytes == 0


def test_entries_expire_after_the_ttl() -> None:
    now = [0.0]
    cache = ResponseCache(max_bytes=10_000, ttl_s=10, clock=lambda: now[0])
    cache.put("k", entry())
    now[0] = 10
    assert cache.get("k") is not None
    now[0] = 10.5
    assert cache.get("k") is None
    assert cache.bytes == 0 and cache.stats.expirations == 1


def test_replacing_an_entry_keeps_the_byte_count_right() -> None:
    cache = ResponseCache(max_bytes=10_000, ttl_s=10)
    cache.put("k", entry("x" * 50))
    cache.put("k", entry("y" * 80))
    assert cache.bytes == entry("y" * 80).size and len(cache) == 1


async def test_followers_wait_for_the_leader() -> None:
    cache = ResponseCache(max_bytes=10_000, ttl_s=10)
    assert cache.lead("k")
    assert not cache.lead("k")
    waiter = asyncio.create_task(cache.wait_for_leader("k", timeout=5))
    await asyncio.sleep(0)
    assert not waiter.done()
    cache.put("k", entry())
    cache.release("k")
    await asyncio.wait_for(waiter, 1)
    assert cache.get("k") is not None
    assert cache.lead("k")  # free again


async def test_waiting_for_a_stuck_leader_is_bounded() -> None:
    cache = ResponseCache(max_bytes=10_000, ttl_s=10)
    cache.lead("k")
    await asyncio.wait_for(cache.wait_for_leader("k", timeout=0.05), 1)
