"""Prompts shaped to make the optimiser's scans quadratic (found by an audit that timed
each regular expression on growing inputs). A regular expression holds the GIL, and
prompts under 16 KB are prepared on the event loop, so each of these froze the whole
orchestrator: for seconds at 10 KB, for minutes at 80 KB."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_SETUP = """
from cerebrum.prompt import optimize_messages, optimize_text
CODE = "".join(f"def func_{i}(x):\\n    y = x + {i}\\n    return helper_{i}(y)\\n\\n"
               for i in range(120))
def chat(question):
    return [{"role": "user", "content": "Here is my module:\\n```python\\n" + CODE + "```"},
            {"role": "assistant", "content": "OK."}, {"role": "user", "content": question}]
FUNCTIONS = "".join(f"def func_{i}(x):\\n    return helper_{i}(x) + value{i}\\n\\n"
                    for i in range(3_000))
WORDS, NAMES = 10_000, 12_000
def ask(code, question):
    return [{"role": "user", "content": "```python\\n" + code + "```"},
            {"role": "assistant", "content": "ok"}, {"role": "user", "content": question}]
"""

CASES = {
    # A fence line whose tag is long and then fails (a backtick after it).
    "fence tag": 'optimize_text("fix\\n```" + "a" * 80_000 + "`\\n" + CODE)',
    # Called-name, address and path patterns that started inside a run.
    "one long word": 'optimize_messages(chat("why " + "a" * 80_000))',
    "capitals": 'optimize_messages(chat("A" * 80_000))',
    "dashes": 'optimize_messages(chat("a-" * 40_000))',
    "path-like": 'optimize_messages(chat("a-b/" * 20_000 + ".p"))',
    # Earlier code with many short lines before the definition a question names.
    "declaration words": ('optimize_messages([{"role": "user", "content": "```python\\n" '
                          '+ "a b c d\\n" * 20_000 + "zz_target = 1\\n" + CODE + "```"}, '
                          '{"role": "assistant", "content": "ok"}, '
                          '{"role": "user", "content": "what about zz_target( and func_3?"}])'),
    # A Rust backtrace line with a run of spaces in it.
    "rust frame": ('optimize_messages(chat("thread \'main\' panicked at src/main.rs:3:5:\\n'
                   'boom\\nstack backtrace:\\n   0: a" + " " * 80_000 + "!\\n"))'),
    # tree-sitter's own error recovery: 8 KB of "/* " took it 8 s.
    "unclosed C comments": 'optimize_text("fix this\\n```c\\n" + "/* " * 27_000 + "\\n```")',
    # Loops rather than regular expressions, each quadratic in the prompt (pure
    # Python holds the GIL too). Lines every chunk shares, for de-duplication:
    "shared lines": ('optimize_text("fix\\n```python\\n" '
                     '+ "".join(f"def f{i}():\\n a\\n b\\n c\\n" for i in range(11_000)) + "```")'),
    # One block of many statements: its names, unioned and read per chunk.
    "merged statements": ('optimize_text("the read line part is slow\\n```python\\n'
                          'read_line = 0\\n" + "".join(f"a{i}=0\\n" for i in range(27_000)) '
                          '+ "```")'),
    # Thousands of distinct words against thousands of chunks.
    "question words": ('optimize_messages(ask(FUNCTIONS, " ".join(f"word{i}x" '
                       'for i in range(WORDS))))'),
    # Thousands of names, each looked for in each chunk.
    "named names": ('optimize_messages(ask(FUNCTIONS, " ".join(f"`name_{i}`" '
                    'for i in range(NAMES))))'),
    # Thousands of messages, the conversation's cost summed again at each step.
    "long conversation": ('optimize_messages(chat("why?")[:1] + [{"role": "user" if i % 2 else '
                          '"assistant", "content": f"short message {i}"} for i in range(8_000)] '
                          '+ [{"role": "user", "content": "why?"}])'),
}


@pytest.mark.parametrize("call", list(CASES.values()), ids=list(CASES))
def test_an_adversarial_prompt_does_not_hang_the_optimiser(call: str) -> None:
    # Not a speed measurement: these took from one to several minutes each, and
    # take well under a second now. The bound tells a hang from an answer; in a
    # process of its own because a thread cannot time out while a regular
    # expression holds the GIL.
    try:
        subprocess.run([sys.executable, "-c", _SETUP + call], cwd=ROOT, check=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the optimiser did not finish: a scan is quadratic again")
