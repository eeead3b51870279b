"""The backend's settings, read from ``CEREBRUM_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from cerebrum.backend.scheduler import default_slots
from cerebrum.config import ConfigError, check_keys, env_name, non_negative, positive


def _default_threads() -> int:
    # llama-cpp-python's own default is half the cores, which on a 2-core VPS
    # costs about a quarter of the speed.
    return max(1, os.cpu_count() or 1)


def _default_slots() -> int:
    return default_slots(os.cpu_count() or 1)


def _default_prompt_cache_dir() -> Path:
    # systemd's CacheDirectory= (the unit's /var/cache/cerebrum) names itself in
    # $CACHE_DIRECTORY; elsewhere the user's cache directory.
    base = os.environ.get("CACHE_DIRECTORY") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / ("prompt-cache" if os.environ.get("CACHE_DIRECTORY") else
                   "cerebrum/prompt-cache")


def _nice_value(_: object, attribute: attrs.Attribute, value: int) -> None:
    if not -20 <= value <= 19:
        raise ValueError(f"{env_name(attribute.name)} must be a nice value from -20 to 19, "
                         f"got {value}")


@attrs.frozen
class BackendConfig:
    """Everything ``create_backend_app`` needs; built once at start-up."""

    api_key: str | None = attrs.field(default=None, validator=check_keys)
    """The key clients must present (``X-API-Key`` or ``Authorization: Bearer``); never
    blank or holding whitespace; a short one is accepted with a loud warning."""
    allow_no_key: bool = False
    """Run without a key: local development only."""
    models: Path | None = None
    """Model registry (TOML); without it the embedded SmolLM2-135M is served."""
    idle_unload_s: float = attrs.field(default=3600.0, validator=positive)
    max_cpu_percent: float = attrs.field(default=70.0, validator=positive)
    min_free_ram_mb: int = attrs.field(default=1024, validator=non_negative)
    threads: int = attrs.field(factory=_default_threads, validator=positive)
    """Default llama.cpp threads for models that do not set their own."""
    max_queue: int = attrs.field(default=8, validator=non_negative)
    """Requests that may wait for a busy model before new ones get 503."""
    default_max_tokens: int = attrs.field(default=1024, validator=positive)
    """Cap on generated tokens when a request sets no ``max_tokens``: a budget VPS
    should not spend minutes on one unbounded answer."""
    max_body_bytes: int = attrs.field(default=4 * 1024 * 1024, validator=positive)
    slots: int = attrs.field(factory=_default_slots, validator=positive)
    """Parallel sequences per loaded model, decoded together in one batch (default:
    two per core, 2 to 4; fewer at load when their KV caches would take RAM below
    the floor). Each slot holds the model's whole context."""
    prompt_cache_mb: float = attrs.field(default=256.0, validator=non_negative)
    """RAM for saved prompt states of idle slots (0: off), per model."""
    prompt_cache_disk_mb: float = attrs.field(default=0.0, validator=non_negative)
    """Disk for saved prompt states pushed out of RAM (0: off), per model."""
    prompt_cache_dir: Path = attrs.field(factory=_default_prompt_cache_dir)
    """Where the disk tier keeps its files (a folder per model, emptied at load)."""
    prefill_chunk: int = attrs.field(default=256, validator=positive)
    """Prompt tokens decoded per step beside the running streams: a long new prompt
    delays the others' next token by one chunk, not by all of it."""
    log_json: bool = False
    log_level: str = "INFO"
    realtime_loop: bool = True
    """Ask for real-time priority (SCHED_RR 1) for the event loop's thread only, so
    ``/health`` and streaming stay prompt while the model holds every core; where it
    is refused the loop runs as started (cerebrum/backend/priority.py)."""
    model_nice: int = attrs.field(default=0, validator=_nice_value)
    """Nice value of the model's threads. 0: they compete as equals with other
    processes. The VPS's backend.env sets -5, which keeps generation ahead of a
    backup or an upgrade (such a neighbour gets about a quarter of the core it
    shares while the model computes); below 0 it needs ``LimitNICE=`` (the unit
    allows down to -5) or root."""
    max_connections: int = attrs.field(default=256, validator=positive)
    """Client connections open at once; past it the oldest idle one is closed."""
    header_timeout_s: float = attrs.field(default=10.0, validator=positive)
    """Time a new connection gets to send its request headers."""

    def __attrs_post_init__(self) -> None:
        # After the field validators, so a malformed value is reported as such
        # rather than hidden behind the missing key.
        if not self.api_key and not self.allow_no_key:
            raise ConfigError(
                "CEREBRUM_API_KEY is not set: the backend refuses to start without a key. "
                "Set one (cerebrum keygen), or CEREBRUM_ALLOW_NO_KEY=1 (--dev) for local "
                "development")
