"""Cerebrum's wire names (cerebrum.protocol): one spelling, importable without the services."""

from __future__ import annotations

import subprocess
import sys

from cerebrum.protocol import named_model


def test_a_routing_alias_or_no_model_names_none() -> None:
    assert named_model(None) is None
    assert named_model("auto") is None and named_model(" Auto ") is None
    assert named_model("qwen2.5-coder") == "qwen2.5-coder"


def test_it_imports_nothing_heavy() -> None:
    code = ("import sys, cerebrum.protocol; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('aiohttp', 'attrs', 'cattrs', 'prometheus_client', 'llama_cpp')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
