"""``cerebrum serve backend|orchestrator``: run one service, exactly as its entry script does.

The entry scripts (``vps_app.py``, ``cm4_app.py``) live at the top of the
checkout, outside the package; this runs their ``main()`` so flags,
settings and behaviour are the same whichever way a service is started.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from pathlib import Path

from cerebrum.cli.errors import UsageError

CHECKOUT = Path(__file__).resolve().parents[2]
SCRIPTS = {"backend": "vps_app.py", "orchestrator": "cm4_app.py"}


def script_path(service: str) -> Path:
    """The entry script of ``service``; a clear error when this install has none."""
    path = CHECKOUT / SCRIPTS[service]
    if not path.is_file():
        raise UsageError(
            f"This installation has no {SCRIPTS[service]} (looked in {CHECKOUT}); "
            f"`cerebrum serve {service}` needs a Cerebrum checkout installed with `pip install -e .`.")
    return path


def load_main(service: str) -> Callable[[list[str] | None], int]:
    """Import the entry script of ``service`` and return its ``main``."""
    path = script_path(service)
    spec = importlib.util.spec_from_file_location(f"_cerebrum_{service}_entry", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main  # type: ignore[no-any-return]


def add_parser(commands: argparse._SubParsersAction, **kwargs: object) -> None:
    parser = commands.add_parser(
        "serve", help="run the backend or the orchestrator (same as vps_app.py / cm4_app.py)",
        description="Run one service in the foreground; every further argument goes to it "
                    "(see `cerebrum serve backend --help`). Stop it with Ctrl-C.",
        add_help=True)
    parser.add_argument("service", choices=sorted(SCRIPTS))
    parser.add_argument("service_args", nargs=argparse.REMAINDER,
                        help="arguments for the service, e.g. --port 9000 --dev")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return int(load_main(args.service)(args.service_args) or 0)
