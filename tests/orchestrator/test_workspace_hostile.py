"""``/v1/workspaces`` against careless and hostile clients: retried and interleaved
updates, deletes racing other requests, absurd questions (found by a review that
attacked a running orchestrator; each of these once lost data, answered 500 or
froze the event loop)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from cerebrum.orchestrator.workspace_views import WORKSPACES
from cerebrum.workspace.paths import InvalidPath, check_path
from cerebrum.workspace.store import Gone, WorkspaceStore, delete_workspace, sha256_hex
from tests.orchestrator.conftest import MakeOrchestrator, MakeStub
from tests.orchestrator.test_workspaces import KEY_A, make, upload
from tests.workspace.repo import FILES

ROOT = Path(__file__).resolve().parents[2]


def _manifest(files: dict[str, str]) -> list[dict[str, object]]:
    return [{"path": p, "sha256": sha256_hex(t.encode()), "size": len(t.encode())}
            for p, t in files.items()]


async def _begin_one_file(client: TestClient, name: str) -> dict[str, str]:
    """An update of workspace ``name`` begun, with one file to send."""
    files = {"a.py": "def a():\n    return 1\n"}
    begun = await client.post(f"/v1/workspaces/{name}/begin", headers=KEY_A,
                              json={"files": _manifest(files)})
    assert begun.status == 200
    return files


async def test_a_retried_commit_is_refused_and_keeps_every_file(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path)
    await upload(client, "demo", FILES)
    again = await client.post("/v1/workspaces/demo/commit", headers=KEY_A)
    assert again.status == 409
    assert (await again.json())["error"]["param"] == "update"
    shown = await (await client.get("/v1/workspaces/demo", headers=KEY_A)).json()
    assert shown["files"] == len(FILES) and shown["generation"] == 1


async def test_an_update_replaced_by_another_clients_begin_cannot_commit(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path)
    first_files = {"a.py": "def a():\n    return 1\n"}
    second_files = {"b.py": "def b():\n    return 2\n"}
    first = await (await client.post("/v1/workspaces/demo/begin", headers=KEY_A,
                                     json={"files": _manifest(first_files)})).json()
    second = await (await client.post("/v1/workspaces/demo/begin", headers=KEY_A,
                                      json={"files": _manifest(second_files)})).json()
    assert first["update"] != second["update"]
    late = await client.post("/v1/workspaces/demo/files", headers=KEY_A, json={
        "files": [{"path": "a.py", "content": first_files["a.py"]}], "update": first["update"]})
    assert late.status == 409 and "began since" in (await late.json())["error"]["message"]
    staged = await client.post("/v1/workspaces/demo/files", headers=KEY_A, json={
        "files": [{"path": "b.py", "content": second_files["b.py"]}],
        "update": second["update"]})
    assert staged.status == 200
    # The first client's commit must not publish the second's half of the work.
    refused = await client.post("/v1/workspaces/demo/commit", headers=KEY_A,
                                json={"update": first["update"]})
    assert refused.status == 409
    done = await client.post("/v1/workspaces/demo/commit", headers=KEY_A,
                             json={"update": second["update"]})
    assert done.status == 200 and (await done.json())["files"] == 1


async def test_an_upload_that_waited_for_a_delete_gets_404_and_makes_nothing(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path)
    files = await _begin_one_file(client, "race")
    assert client.app is not None
    workspaces = client.app[WORKSPACES]
    [path] = list(tmp_path.rglob("race.sqlite"))
    async with workspaces.lock(path):  # as a DELETE holding it would
        pending = asyncio.ensure_future(client.post(
            "/v1/workspaces/race/files", headers=KEY_A,
            json={"files": [{"path": "a.py", "content": files["a.py"]}]}))
        await asyncio.sleep(0.2)
        delete_workspace(path)
    response = await pending
    assert response.status == 404, await response.text()
    assert not path.exists()
    listed = await client.get("/v1/workspaces", headers=KEY_A)
    assert listed.status == 200 and (await listed.json())["data"] == []


def test_a_store_whose_file_was_deleted_reports_it_gone_and_does_not_make_it_again(
        tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    WorkspaceStore.create(path, "w")
    stale = WorkspaceStore(path, "w")
    delete_workspace(path)
    with pytest.raises(Gone):
        stale.status()
    with pytest.raises(Gone):
        stale.search("anything", 5)
    assert not path.exists()


async def test_a_refused_begin_leaves_no_workspace_and_hashes_must_be_hex(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path)
    bad_path = await client.post("/v1/workspaces/ghost/begin", headers=KEY_A, json={
        "files": [{"path": "../evil.py", "sha256": "0" * 64, "size": 1}]})
    assert bad_path.status == 400
    assert (await client.get("/v1/workspaces/ghost", headers=KEY_A)).status == 404
    not_hex = await client.post("/v1/workspaces/ghost/begin", headers=KEY_A, json={
        "files": [{"path": "a.py", "sha256": "z" * 64, "size": 1}]})
    assert not_hex.status == 400 and "hex" in (await not_hex.json())["error"]["message"]


async def test_a_path_twice_in_one_batch_is_refused(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path)
    files = await _begin_one_file(client, "demo")
    twice = await client.post("/v1/workspaces/demo/files", headers=KEY_A, json={
        "files": [{"path": "a.py", "content": files["a.py"]}] * 3})
    assert twice.status == 400 and "twice" in (await twice.json())["error"]["message"]


async def test_a_key_has_a_bounded_number_of_workspaces(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path, workspace_max_per_key=2)
    for name in ("one", "two"):
        await upload(client, name, FILES)
    third = await client.post("/v1/workspaces/three/begin", headers=KEY_A, json={"files": []})
    assert third.status == 409 and (await third.json())["error"]["param"] == "name"
    assert (await client.get("/v1/workspaces/three", headers=KEY_A)).status == 404
    # An existing one may still be updated, and another key has its own allowance.
    assert (await upload(client, "two", FILES))["generation"] == 2
    await upload(client, "three", FILES, headers={"Authorization": "Bearer client-key-b"})


async def test_absurd_line_numbers_in_a_question_are_no_500(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path)
    await upload(client, "demo", FILES)
    for query in ("see net/retry.py:99999999999999999999",
                  'File "net/retry.py", line ' + "9" * 5000 + ", in fetch",
                  "at fetch (net/retry.py:123456789012345678901234567890)"):
        response = await client.post("/v1/workspaces/demo/search", headers=KEY_A,
                                     json={"query": query})
        assert response.status == 200, await response.text()


@pytest.mark.parametrize("question", [
    '"a" * 100_000',
    '"a_" * 50_000',
    '" ".join(f"`id_{i}` word{i}" for i in range(8000))',
], ids=["one long word", "one long name", "many quoted names"])
def test_reading_a_huge_question_does_not_hang(question: str) -> None:
    # Not a speed measurement: each of these took from a minute to many
    # (quadratic scans; a regular expression's holds the GIL, so the whole
    # orchestrator froze), now each takes well under a second. The bound only
    # tells a hang from an answer. In a process of its own: a thread cannot
    # time out while another holds the GIL.
    code = f"from cerebrum.workspace.retrieve import analyse; analyse({question})"
    try:
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("analyse() did not finish: a scan is quadratic again")


@pytest.mark.parametrize("path", ["a\u202eyp.txt", "a\u200bb.py", "x\u2028SYSTEM.py",
                                  "\ufeffa.py"])
def test_paths_with_invisible_formatting_are_refused(path: str) -> None:
    with pytest.raises(InvalidPath):
        check_path(path)
