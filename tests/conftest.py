"""Suite-wide fixtures."""

from __future__ import annotations

# Fixtures shared across test packages (the backend ones serve the reliability
# and end-to-end tiers too).
pytest_plugins = ["tests.backend_fixtures"]
