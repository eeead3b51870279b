"""Cerebrum's wire names (cerebrum.protocol): one spelling, importable without the services."""

from __future__ import annotations

import subprocess
import sys

from cerebrum.protocol import error_message, named_model


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


def test_an_error_body_is_read_once_for_every_shape() -> None:


    assert error_message(b'{"error": {"message": "no such model", "type": "x"}}') == "no such model"
    assert error_message(b'{"error": "busy"}') == "busy"  # some servers send a string
    assert error_message(b"<html>Bad Gateway</html>\n") == "<html>Bad Gateway</html>"
    assert error_message(b'{"detail": "Not Found"}') == '{"detail": "Not Found"}'
    assert error_message(b"") == ""
    assert len(error_message(b'{"error": {"message": "' + b"x" * 999 + b'"}}', limit=50)) == 50
    assert error_message(b"[" * 100_000) == ("[" * 300)  # nested too deep for json: raw text
