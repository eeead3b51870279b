"""``cerebrum serve backend|orchestrator``: run one service, exactly as ``python -m`` does.

Each service's ``main()`` lives in the package (``cerebrum/backend/__main__.py``,
``cerebrum/orchestrator/__main__.py``), so this works from any installation,
not only a checkout, with the same flags, settings and behaviour however a
service is started. The service is imported only when asked for: the
orchestrator's host never imports the backend (nor llama-cpp-python).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import sysconfig
from collections.abc import Callable, Mapping
from pathlib import Path

import cerebrum

MODULES = {"backend": "cerebrum.backend", "orchestrator": "cerebrum.orchestrator"}
"""Each service's package; ``python -m PACKAGE`` runs it."""


def module_argv(service: str, *args: str) -> list[str]:
    """The command line that runs ``service`` in a new process with this interpreter.

    ``-P``: the current folder does not go first on the child's ``sys.path``, as
    ``-m`` would put it, so a folder there named ``cerebrum`` (another project,
    or a checkout seen from its parent) cannot stand in for the package.
    """
    return [sys.executable, "-P", "-m", MODULES[service], *args]


def module_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a child that must import this very ``cerebrum``: the folder holding it
    goes first on ``PYTHONPATH``, unless it is an installation's own site-packages
    (searched anyway, and not to be put before the standard library)."""
    home = str(Path(cerebrum.__file__).resolve().parents[1])
    installed = {str(Path(sysconfig.get_path(name)).resolve()) for name in ("purelib", "platlib")}
    if home in installed:
        return dict(env)
    paths = [home, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != home)]
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}


def load_main(service: str) -> Callable[..., int]:
    """The ``main`` of ``service``'s ``__main__`` module."""
    module = importlib.import_module(f"{MODULES[service]}.__main__")
    main: Callable[..., int] = module.main
    return main


def add_parser(commands: argparse._SubParsersAction, **kwargs: object) -> None:
    """Register ``serve``."""
    parser = commands.add_parser(
        "serve", help="run the backend or the orchestrator (same as python -m cerebrum.SERVICE)",
        description="Run one service in the foreground; every further argument goes to it "
                    "(see `cerebrum serve backend --help`). Stop it with Ctrl-C.",
        add_help=True)
    parser.add_argument("service", choices=sorted(MODULES))
    parser.add_argument("service_args", nargs=argparse.REMAINDER,
                        help="arguments for the service, e.g. --port 9000 --dev")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the service in this process until it stops."""
    main = load_main(args.service)
    return int(main(args.service_args, prog=f"cerebrum serve {args.service}") or 0)
