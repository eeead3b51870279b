"""The orchestrator's settings, read from ``CEREBRUM_*`` environment variables."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from cerebrum.config import check_keys, env_name, non_negative, positive
from cerebrum.orchestrator.affinity import Balancing
from cerebrum.prompt.routing import DEFAULT_LANGUAGE_MODELS
from cerebrum.workspace.vectors import numpy_available


def _normalise_url(url: str) -> str:
    # Users often paste an OpenAI "base URL" ending in /v1; the proxy appends
    # /v1/... itself, so both spellings must mean the same backend.
    url = url.strip().rstrip("/")
    return url.removesuffix("/v1")


def redact_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages and names."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def _check_urls(_: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"{env_name(attribute.name)} is required: one or more backend base "
                         "URLs, comma-separated (e.g. http://127.0.0.1:9000)")
    for url in value:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{env_name(attribute.name)}: {redact_url(url)!r} is not an "
                             "http(s) URL")
        if "@" in parts.netloc:
            # They would end up on the public /health and in every log line,
            # and aiohttp cannot send them beside our Authorization header.
            raise ValueError(f"{env_name(attribute.name)}: {redact_url(url)!r} carries "
                             "credentials; put the backend's key in CEREBRUM_API_KEY instead")
    if len(set(value)) != len(value):
        raise ValueError(f"{env_name(attribute.name)} lists a backend twice")


def _check_routes(_: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    for pair in value:
        language, equals, model = pair.partition("=")
        if not equals or not language.strip() or not model.strip():
            raise ValueError(f"{env_name(attribute.name)}: {pair!r} is not language=model")


def _check_vectors(_: Any, attribute: attrs.Attribute, value: str | None) -> None:
    # Checked at start-up, not imported: numpy stays out of an orchestrator without vectors.
    if value is not None and not numpy_available():
        raise ValueError(f"{env_name(attribute.name)} turns workspace vectors on, and their "
                         "search needs numpy: pip install numpy (docs/workspaces.md, Vectors)")


def _normalise_urls(urls: Iterable[str]) -> tuple[str, ...]:
    return tuple(_normalise_url(url) for url in urls)


@attrs.frozen
class OrchestratorConfig:
    """Everything ``create_orchestrator_app`` needs; built once at start-up."""

    backend_url: tuple[str, ...] = attrs.field(
        default=(), converter=_normalise_urls,
        validator=_check_urls)
    """Backend base URLs, comma-separated; any OpenAI-compatible server."""
    api_key: str | None = attrs.field(default=None, validator=check_keys)
    """Key sent to the backends (as ``X-API-Key`` and ``Authorization: Bearer``)."""
    client_api_keys: tuple[str, ...] = attrs.field(default=(), validator=check_keys)
    """When set, clients must present one of these keys; empty: open (LAN use)."""
    max_concurrent: int = attrs.field(default=2, validator=positive)
    """Requests in flight before new ones are shed with 503."""
    breaker_cooldown_s: float = attrs.field(default=10.0, validator=positive)
    """How long an open circuit refuses a backend before one probe is let through."""
    breaker_failure_threshold: int = attrs.field(default=3, validator=positive)
    """Consecutive failures (connect errors, timeouts, 5xx) that open a circuit."""
    connect_timeout_s: float = attrs.field(default=5.0, validator=positive)
    read_timeout_s: float = attrs.field(default=300.0, validator=positive)
    """Longest silence from a backend while waiting for headers or the next chunk.
    Generous: a budget VPS can spend minutes on a large prompt before the first token."""
    max_body_bytes: int = attrs.field(default=4 * 1024 * 1024, validator=positive)
    max_upstream_body_bytes: int = attrs.field(default=16 * 1024 * 1024, validator=positive)
    """Largest non-streamed answer read from a backend."""
    models_refresh_s: float = attrs.field(default=30.0, validator=positive)
    """How often each backend's ``/v1/models`` is read again."""
    optimize: bool = True
    """Optimise prompts by default (a request can opt out)."""
    routes: tuple[str, ...] = attrs.field(default=(), validator=_check_routes)
    """``language=model`` pairs, comma-separated, over the built-in routing map."""
    cache_max_bytes: int = attrs.field(default=16 * 1024 * 1024, validator=non_negative)
    """Response cache size for deterministic requests (temperature 0 or a seed); 0: off."""
    cache_ttl_s: float = attrs.field(default=3600.0, validator=positive)
    """How long a cached answer is served."""
    shutdown_grace_s: float = attrs.field(default=5.0, validator=non_negative)
    balancing: Balancing = attrs.field(default=Balancing.AFFINITY, converter=Balancing)
    """How a backend is chosen among the healthy ones: ``affinity`` (the one holding the
    conversation's prefix), ``least-busy`` or ``round-robin``."""
    affinity_max_imbalance: int = attrs.field(default=2, validator=positive)
    """A backend holding the prefix is skipped when it has this many more requests in
    flight than the least busy one."""
    affinity_prefixes: int = attrs.field(default=4096, validator=positive)
    """Prompt fingerprints remembered per backend (LRU; ~150 bytes each)."""
    affinity_sessions: int = attrs.field(default=4096, validator=positive)
    """Pinned sessions remembered (LRU)."""
    log_json: bool = False
    log_level: str = "INFO"
    workspace_dir: Path | None = None
    """Where workspaces live, one SQLite file each (default ~/.local/share/cerebrum/workspaces)."""
    workspace_max_files: int = attrs.field(default=20_000, validator=positive)
    workspace_max_file_bytes: int = attrs.field(default=1024 * 1024, validator=positive)
    workspace_max_bytes: int = attrs.field(default=256 * 1024 * 1024, validator=positive)
    """Total source a workspace may hold."""
    workspace_shared: bool = False
    """Every client key sees (and may delete) every workspace; off: each key has its own."""
    workspace_max_per_key: int = attrs.field(default=64, validator=positive)
    """Workspaces one client key may have (every key together when ``workspace_shared``)."""
    workspace_max_concurrent: int = attrs.field(default=2, validator=positive)
    """Workspace requests (uploads, status, search) in flight at once, apart from
    ``max_concurrent``: they never take a chat's slot, nor a chat theirs."""
    workspace_embeddings_model: str | None = attrs.field(default=None, validator=_check_vectors)
    """A model the backends serve on ``POST /v1/embeddings``: units are embedded after each
    commit and questions fuse their vectors with the lexical scores. None (the default):
    retrieval is lexical and nothing is embedded."""
    workspace_embeddings_batch: int = attrs.field(default=32, validator=positive)
    """Units per embeddings request while filling a workspace's vectors."""
    workspace_embeddings_timeout_s: float = attrs.field(default=10.0, validator=positive)
    """How long a question waits for its vector before it is answered lexically."""

    def workspace_root(self) -> Path:
        """The workspaces directory: the setting, else under the user's data directory."""
        return self.workspace_dir or Path("~/.local/share/cerebrum/workspaces").expanduser()
    # -- bounds on hostile peers (docs/reliability.md) --------------------------
    max_sse_event_bytes: int = attrs.field(default=1024 * 1024, validator=positive)
    """Largest SSE line or event read from a backend; a longer one fails the stream."""
    sse_event_timeout_s: float = attrs.field(default=300.0, validator=positive)
    """Longest a stream may go without a real event: keep-alive comments do not count."""
    max_retry_after_s: float = attrs.field(default=300.0, validator=positive)
    """A backend's ``Retry-After`` is clamped to this before a client sees it."""
    cache_max_entry_bytes: int = attrs.field(default=1024 * 1024, validator=positive)
    """Largest answer cached; a longer stream stops being captured."""
    cache_shared: bool = False
    """Share cached answers across client keys (off: each key has its own)."""
    max_models: int = attrs.field(default=256, validator=positive)
    """Models kept from one backend's ``/v1/models`` (the first ones)."""
    max_models_bytes: int = attrs.field(default=1024 * 1024, validator=positive)
    """Largest ``/v1/models`` body read from a backend."""
    max_connections: int = attrs.field(default=256, validator=positive)
    """Client connections open at once; past it the oldest idle one is closed."""
    header_timeout_s: float = attrs.field(default=10.0, validator=positive)
    """Time a new connection gets to send its request headers."""


    def language_models(self) -> dict[str, str]:
        """The routing map: the built-in defaults with ``routes`` on top."""
        overrides = dict(pair.split("=", 1) for pair in self.routes)
        merged = dict(DEFAULT_LANGUAGE_MODELS)
        merged.update({k.strip().lower(): v.strip() for k, v in overrides.items()})
        return merged
