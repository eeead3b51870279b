"""Where the command line finds its services and key: flags, then environment, then ``.env``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from cerebrum.config import environment

DEFAULT_URL = "http://127.0.0.1:7000"
DEFAULT_BACKEND_URL = "http://127.0.0.1:9000"


@attrs.frozen
class Settings:
    """The resolved connection settings of one command."""

    url: str
    """The orchestrator (or any OpenAI-compatible service, the backend included)."""
    backend_url: str
    """The backend, for ``status``."""
    api_key: str | None
    env_file: Path


def resolve(
    *,
    url: str | None = None,
    backend_url: str | None = None,
    env_file: Path = Path(".env"),
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Flags win over ``CEREBRUM_*`` variables, which win over ``.env``."""
    env = environment(os.environ if environ is None else environ, dotenv=env_file)
    backend = backend_url or env.get("CEREBRUM_BACKEND_URL", "").split(",")[0].strip()
    return Settings(
        url=_clean(url or env.get("CEREBRUM_URL") or DEFAULT_URL),
        backend_url=_clean(backend or DEFAULT_BACKEND_URL),
        api_key=env.get("CEREBRUM_API_KEY") or None,
        env_file=env_file,
    )


def _clean(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    # Accept the OpenAI-style base URL too (".../v1").
    return url.removesuffix("/v1")
