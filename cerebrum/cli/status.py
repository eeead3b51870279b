"""``cerebrum status``: are both services up, what are their breakers, models and load?"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from cerebrum.cli.client import Client, Service
from cerebrum.cli.errors import EXIT_OK, EXIT_UNREACHABLE, AuthFailed, CliError
from cerebrum.cli.render import Output, terminal_safe
from cerebrum.cli.settings import resolve

_HEALTHY = {"ready", "ok", "healthy", "closed"}


def add_parser(commands: argparse._SubParsersAction, *, parents: list[argparse.ArgumentParser],
               **kwargs: object) -> None:
    parser = commands.add_parser(
        "status", parents=parents, help="health of both services; non-zero exit if one is down",
        description="Show the orchestrator's and the backend's health: state, circuit "
                    "breakers, loaded models, CPU and free RAM. Exits 0 when everything is "
                    "up, 3 when a service is down or degraded, 4 when the first one refuses "
                    "the API key.")
    parser.add_argument("--backend-url", help="the backend (default CEREBRUM_BACKEND_URL "
                                              "or http://127.0.0.1:9000)")
    parser.add_argument("--only", choices=["orchestrator", "backend"],
                        help="check one service only")
    parser.add_argument("--json", action="store_true", help="print the raw health as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = resolve(url=args.url, backend_url=args.backend_url, env_file=args.env_file)
    targets: list[tuple[Service, str]] = []
    if args.only != "backend":
        targets.append(("orchestrator", settings.url))
    if args.only != "orchestrator" and settings.backend_url != settings.url:
        targets.append(("backend", settings.backend_url))
    results, rejected = asyncio.run(_check_all(targets, settings.api_key))
    out = Output(sys.stdout)
    healthy = all(ok for _, _, _, ok in results)
    if args.json:
        out.line(json.dumps({**{service: health if isinstance(health, dict)
                                else {"error": health} for service, _, health, _ in results},
                             **({"key": {"error": rejected}} if rejected else {})}, indent=2))
    else:
        for service, url, health, ok in results:
            _render(out, service, url, health, ok)
        if rejected:
            out.line(f"{out.red('●')} {out.bold('key')}  {out.red('rejected')}")
            out.line(f"    {_shown(rejected)}")
    if not healthy:
        return EXIT_UNREACHABLE
    return AuthFailed.exit_code if rejected else EXIT_OK


async def _key_rejected(service: Service, url: str, key: str) -> str | None:
    """Why ``service`` refuses ``key`` (an authenticated read), or None: it takes it, or
    could not tell (a server without ``/v1/models``)."""
    async with Client(url, key, service, connect_timeout=5, read_timeout=10) as client:
        try:
            await client.get_json("/v1/models")
        except AuthFailed as exc:
            return exc.message
        except CliError:
            return None
    return None


async def _check_all(targets: list[tuple[Service, str]], key: str | None,
                     ) -> tuple[list[tuple[Service, str, dict[str, Any] | str, bool]], str | None]:
    """Every target's health, and why the first refuses ``key`` (None: it takes it)."""
    results = list(await asyncio.gather(*(_check(service, url, key) for service, url in targets)))
    # The key is tried on the first service only: the CLI's key is a client key for
    # the orchestrator, and need not open the backend (which has a key of its own).
    rejected = (await _key_rejected(*targets[0], key)
                if targets and key and results[0][3] else None)
    return results, rejected


async def _check(service: Service, url: str,
                 key: str | None) -> tuple[Service, str, dict[str, Any] | str, bool]:
    async with Client(url, key, service, connect_timeout=5, read_timeout=10) as client:
        try:
            health = await client.get_json("/health")
        except CliError as exc:
            return service, url, exc.message, False
    if not isinstance(health, dict):
        return service, url, f"unexpected answer from {url}/health", False
    return service, url, health, _is_healthy(health)


def _is_healthy(health: dict[str, Any]) -> bool:
    if str(health.get("status", "")).lower() not in _HEALTHY | {"loading"}:
        return False
    return all(_backend_ok(b) for b in _backends(health))


def _backends(health: dict[str, Any]) -> list[dict[str, Any]]:
    """The orchestrator's per-backend entries, as a list, whatever shape it reports them in."""
    backends = health.get("backends")
    if isinstance(backends, dict):
        return [{"url": url, **entry} if isinstance(entry, dict) else {"url": url, "state": entry}
                for url, entry in backends.items()]
    if isinstance(backends, list):
        return [entry for entry in backends if isinstance(entry, dict)]
    return []


def _breaker(entry: dict[str, Any]) -> str:
    breaker = entry.get("breaker", entry.get("state", "?"))
    if isinstance(breaker, dict):
        breaker = breaker.get("state", "?")
    return str(breaker)


def _backend_ok(entry: dict[str, Any]) -> bool:
    return _breaker(entry).lower() in _HEALTHY | {"half_open", "half-open"} and \
        entry.get("healthy", True) is not False


def _shown(value: object) -> str:
    """A value from a health body, as one line of text that cannot drive the terminal
    (piped too: these lines are for people, and end up on terminals)."""
    return terminal_safe(str(value), one_line=True)


def _names(value: object) -> str:
    """A list of names (or a mapping keyed by them) as ``a, b``; a lone value as itself."""
    if isinstance(value, list | dict):
        return ", ".join(map(_shown, value))
    return _shown(value)


def _render(out: Output, service: str, url: str, health: dict[str, Any] | str, ok: bool) -> None:
    mark = out.green("●") if ok else out.red("●")
    if isinstance(health, str):
        out.line(f"{mark} {out.bold(service)}  {url}  {out.red('down')}")
        out.line(f"    {_shown(health)}")
        return
    if service == "orchestrator" and "backends" not in health and "loaded" in health:
        service = "backend"  # --url points straight at a backend
    status = _shown(health.get("status", "?"))
    extra = f"  up {_duration(health['uptime_s'])}" if "uptime_s" in health else ""
    out.line(f"{mark} {out.bold(service)}  {url}  {status}{extra}")
    for entry in _backends(health):
        name = _shown(entry.get("url") or entry.get("name") or "?")
        breaker = _shown(_breaker(entry))
        colour = out.green if breaker.lower() == "closed" else out.yellow
        detail = ""
        if entry.get("retry_after_s"):
            detail = f", retry in {_shown(entry['retry_after_s'])} s"
        models = entry.get("models")
        models_text = f"  models: {_names(models)}" if models else ""
        out.line(f"    backend {name}: breaker {colour(breaker)}{detail}{models_text}")
    if isinstance(health.get("models"), dict):
        states = ", ".join(f"{_shown(name)} ({_shown(state)})"
                           for name, state in health["models"].items())
        out.line(f"    models: {states or 'none'}")
    if "cpu_percent" in health:
        ram = health.get("free_ram_mb")
        ram_text = f"{_shown(ram)} MB free RAM" if ram is not None else "free RAM unknown"
        out.line(f"    load: CPU {_shown(health['cpu_percent'])}%, {ram_text}")
    for key in ("in_flight", "max_concurrent"):
        if key in health:
            out.line(f"    {key.replace('_', ' ')}: {_shown(health[key])}")


def _duration(seconds: Any) -> str:
    try:
        total = int(float(seconds))
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        return "?"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
