"""A small, real repository written by the tests, and helpers to index it into a store."""

from __future__ import annotations

from pathlib import Path

from cerebrum.workspace.store import ManifestEntry, WorkspaceStore, sha256_hex

FILES = {
    "net/retry.py": '''"""Retrying HTTP calls."""

import time


def backoff_delay(attempt, base=0.5, cap=30.0):
    """Seconds to wait before retry number ``attempt``: doubling, capped."""
    return min(cap, base * 2 ** attempt)


def fetch_with_retry(session, url, attempts=5):
    """GET ``url``, retrying when the server answers 503 Service Unavailable."""
    for attempt in range(attempts):
        response = session.get(url)
        if response.status != 503:
            return response
        time.sleep(backoff_delay(attempt))
    raise RuntimeError("gave up")
''',
    "net/cache.py": '''"""An in-memory cache with expiry."""


class ExpiringCache:
    """Values that disappear ``ttl`` seconds after they were stored."""

    def __init__(self, ttl):
        self.ttl = ttl
        self.items = {}

    def put(self, key, value, now):
        self.items[key] = (value, now + self.ttl)

    def get(self, key, now):
        value, expires = self.items.get(key, (None, 0))
        return value if now < expires else None
''',
    "text/words.py": '''def count_words(text):
    """How many words a text has, split on whitespace."""
    return len(text.split())


def slugify(title):
    # Lower-case, hyphens between words: a URL-safe form of a title.
    return "-".join(title.lower().split())
''',
    "app/main.py": '''from net.retry import fetch_with_retry


def run(session):
    page = fetch_with_retry(session, "http://example.invalid/")
    return page.text
''',
    "tests/test_words.py": '''from text.words import count_words


def test_count_words():
    assert count_words("a b c") == 3
''',
}


def write_repo(root: Path, files: dict[str, str] = FILES) -> Path:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def manifest(files: dict[str, bytes]) -> list[ManifestEntry]:
    return [ManifestEntry(path, sha256_hex(data), len(data)) for path, data in files.items()]


def as_bytes(files: dict[str, str] = FILES) -> dict[str, bytes]:
    return {path: text.encode() for path, text in files.items()}


def index(store: WorkspaceStore, files: dict[str, bytes]) -> list[str]:
    """Begin, stage what is needed, commit; returns the paths that were sent."""
    plan = store.begin(manifest(files))
    store.stage([(path, files[path]) for path in plan.need])
    store.commit()
    return list(plan.need)
