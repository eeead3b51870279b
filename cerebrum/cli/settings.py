"""Where the command line finds its services and key: flags, then environment, then ``.env``,
then the record of a running ``cerebrum up`` beside that ``.env``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from cerebrum.cli.running import read_record
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
    """Flags win over ``CEREBRUM_*`` variables, which win over ``.env``; where none sets
    a URL, a ``cerebrum up`` running with this ``.env`` (its record) gives it."""
    env = environment(os.environ if environ is None else environ, dotenv=env_file)
    url = url or env.get("CEREBRUM_URL")
    backend_url = backend_url or env.get("CEREBRUM_BACKEND_URL", "").split(",")[0].strip()
    if not (url and backend_url):
        # `cerebrum up --port 17000` elsewhere: go where it runs, not to 7000.
        running = read_record(env_file)
        if running is not None:
            url, backend_url = url or running.url, backend_url or running.backend_url
    return Settings(
        url=_clean(url or DEFAULT_URL),
        backend_url=_clean(backend_url or DEFAULT_BACKEND_URL),
        api_key=env.get("CEREBRUM_API_KEY") or None,
        env_file=env_file,
    )


def _clean(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    # Accept the OpenAI-style base URL too (".../v1").
    return url.removesuffix("/v1")
