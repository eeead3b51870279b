"""Suite-wide options: ``--run-slow`` enables tests marked ``slow``."""

from __future__ import annotations

import pytest

# Fixtures shared across test packages (the backend ones serve the reliability
# and end-to-end tiers too).
pytest_plugins = ["tests.backend_fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
