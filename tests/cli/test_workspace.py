"""``cerebrum index`` and ``ask``/``chat --repo`` through the real orchestrator."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cli.conftest import (
    CEREBRUM,
    ESCAPE,
    TEST_KEY,
    RunningService,
    Terminal,
    clean_env,
    free_port,
    run_cli,
    start_orchestrator,
)
from tests.workspace.repo import write_repo


def env_for(home: Path, url: str) -> dict[str, str]:
    return clean_env(home, CEREBRUM_URL=url, CEREBRUM_API_KEY=TEST_KEY)


def git_repo(root: Path) -> Path:
    """The test repository as a git work tree, with things ``index`` must leave out."""
    write_repo(root)
    (root / ".gitignore").write_text("build/\n")
    (root / "build").mkdir()
    (root / "build" / "generated.py").write_text("def generated_code():\n    pass\n")
    (root / "README.md").write_text("# demo\n")
    (root / "blob.py").write_bytes(b"\x00\x01binary")
    outside = root.parent / "outside.py"
    outside.write_text("def secret_outside():\n    pass\n")
    os.symlink(outside, root / "link.py")
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(command, cwd=root, check=True, capture_output=True)
    return root


def optimize(url: str, workspace: str, question: str) -> dict:
    request = urllib.request.Request(
        url + "/v1/optimize", method="POST",
        data=json.dumps({"messages": [{"role": "user", "content": question}],
                         "cerebrum": {"workspace": workspace}}).encode(),
        headers={"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict = json.loads(response.read())
        return answer


def test_index_is_incremental_and_status_tells_what_changed(
        home: Path, orchestrator: RunningService) -> None:
    repo = git_repo(home / "demo-repo")
    env = env_for(home, orchestrator.url)
    first = run_cli("index", str(repo), cwd=home, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("workspace demo-repo: 5 files (5 sent, 0 unchanged, "
                                   "0 removed) · 11 units, 7 definitions"), first.stdout
    assert "symlink outside the repository 1" in first.stdout
    assert "binary or not UTF-8 1" in first.stdout and "not source code 2" in first.stdout
    assert not ESCAPE.search(first.stdout + first.stderr)  # no progress bar when piped
    status = run_cli("index", "--status", cwd=repo, env=env)
    assert status.returncode == 0 and status.stdout.endswith("up to date\n"), status.stdout

    (repo / "text" / "words.py").write_text("def shout(text):\n    return text.upper()\n")
    status = run_cli("index", "--status", cwd=repo, env=env)
    assert "since then 1 changed, 0 new, 0 deleted" in status.stdout, status.stdout
    again = run_cli("index", cwd=repo, env=env)
    assert "5 files (1 sent, 4 unchanged, 0 removed)" in again.stdout, again.stdout
    found = optimize(orchestrator.url, "demo-repo", "turn text into capitals")
    assert found["retrieval"]["items"][0]["name"] == "shout"
    assert all(item["path"] != "build/generated.py" and item["path"] != "link.py"
               for item in found["retrieval"]["items"])

    named = run_cli("index", str(repo), "--name", "other", cwd=home, env=env)
    assert named.stdout.startswith("workspace other: 5 files (5 sent"), named.stdout
    missing = run_cli("index", "--status", "--name", "never-indexed", cwd=repo, env=env)
    assert "not indexed yet" in missing.stdout


def test_index_shows_a_progress_bar_on_a_terminal(home: Path, orchestrator: RunningService,
                                                  terminal: list[Terminal]) -> None:
    repo = write_repo(home / "tty-repo")
    term = Terminal([str(CEREBRUM), "index", str(repo)], cwd=home,
                    env=clean_env(home, CEREBRUM_URL=orchestrator.url, CEREBRUM_API_KEY=TEST_KEY,
                                  TERM="xterm-256color"))
    terminal.append(term)
    term.expect(r"indexing tty-repo \[#*\.*\] \d+/5 files", 60)
    term.expect(r"workspace tty-repo: 5 files \(5 sent", 60)
    assert term.wait(60) == 0


def test_index_failures_are_sentences(home: Path) -> None:
    env = clean_env(home, CEREBRUM_URL=f"http://127.0.0.1:{free_port()}")
    down = run_cli("index", str(write_repo(home / "r")), cwd=home, env=env)
    assert down.returncode == 3 and "Cannot reach the service at" in down.stderr
    (home / "file.py").write_text("x = 1\n")
    not_dir = run_cli("index", "file.py", cwd=home, env=env)
    assert not_dir.returncode == 2 and "not a directory" in not_dir.stderr
    assert "Traceback" not in down.stderr + not_dir.stderr


@pytest.mark.model
def test_index_against_a_backend_says_where_to_point_it(home: Path,
                                                         backend: RunningService) -> None:
    result = run_cli("index", str(write_repo(home / "at-backend")), cwd=home,
                     env=env_for(home, backend.url))
    assert result.returncode == 1, result.stderr
    assert "has no workspace API: point --url at the orchestrator" in result.stderr


@pytest.mark.model
def test_ask_and_chat_with_repo_draw_on_the_repository(
        home: Path, orchestrator: RunningService) -> None:
    repo = git_repo(home / "ask-repo")
    env = env_for(home, orchestrator.url)
    asked = run_cli("ask", "--repo", str(repo), "Why does fetch keep asking the server again "
                    "when it answers 503?", "--max-tokens", "3", cwd=home, env=env)
    assert asked.returncode == 0, asked.stderr
    assert re.search(r"workspace ask-repo: 5 files \(5 sent", asked.stderr), asked.stderr
    assert re.search(r"request [0-9a-f]{32} · smollm2-135m", asked.stderr)
    found = optimize(orchestrator.url, "ask-repo", "Why does fetch keep asking the server "
                     "again when it answers 503?")
    assert found["retrieval"]["items"][0]["name"] == "fetch_with_retry"
    assert "def fetch_with_retry" in found["messages"][0]["content"]
    chat = run_cli("chat", "--repo", str(repo), "--max-tokens", "3", cwd=home, env=env,
                   input="What does slugify do?\n")
    assert chat.returncode == 0, chat.stderr
    # Nothing changed since ask: nothing was sent, so no indexing line.
    assert "workspace ask-repo" not in chat.stderr
    assert re.search(r"request [0-9a-f]{32}", chat.stderr), chat.stderr
    # By name alone, from anywhere: the workspace as last indexed; a name this key
    # does not have is a sentence, not a question silently asked without it.
    retrievals = orchestrator.log_text().count("from workspace ask-repo")
    named = run_cli("ask", "--workspace", "ask-repo", "What does slugify do?", "--max-tokens",
                    "3", cwd=home, env=env)
    assert named.returncode == 0, named.stderr
    assert orchestrator.log_text().count("from workspace ask-repo") == retrievals + 1
    unknown = run_cli("ask", "--workspace", "nosuch", "What does slugify do?", cwd=home, env=env)
    assert unknown.returncode != 0 and "no workspace 'nosuch'" in unknown.stderr, unknown.stderr


@pytest.mark.model
def test_with_vectors_on_index_and_status_say_how_many_units_have_vectors(
        home: Path, backend: RunningService) -> None:
    orchestrator = start_orchestrator(home, backend.url,
                                      CEREBRUM_WORKSPACE_EMBEDDINGS_MODEL="smollm2-135m",
                                      CEREBRUM_WORKSPACE_EMBEDDINGS_TIMEOUT_S="300")
    try:
        repo = git_repo(home / "vec-repo")
        env = env_for(home, orchestrator.url)
        first = run_cli("index", str(repo), cwd=home, env=env)
        assert first.returncode == 0, first.stderr
        assert re.search(r"· vectors for \d of 7 units", first.stdout), first.stdout
        deadline = time.monotonic() + 300
        while "vectors for 7 of 7 units\n" not in (status := run_cli(
                "index", "--status", cwd=repo, env=env)).stdout:
            assert time.monotonic() < deadline, status.stdout
            time.sleep(0.5)
        assert status.stdout.endswith("up to date\n"), status.stdout
        found = optimize(orchestrator.url, "vec-repo", "how many words does a text have?")
        assert found["retrieval"]["vectors"] is True
        assert found["retrieval"]["items"][0]["name"] == "count_words"
    finally:
        assert orchestrator.stop() == 0, orchestrator.log_text()
