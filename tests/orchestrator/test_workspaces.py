"""``/v1/workspaces`` on the real orchestrator app, and retrieval inside completions."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from cerebrum.orchestrator.workspace_views import WORKSPACES
from cerebrum.prompt.optimizer import budget_tokens
from cerebrum.prompt.tokens import estimate_tokens
from cerebrum.workspace.store import sha256_hex
from tests.orchestrator.conftest import MakeOrchestrator, MakeStub
from tests.workspace.repo import FILES

KEY_A = {"Authorization": "Bearer client-key-a"}
KEY_B = {"Authorization": "Bearer client-key-b"}


async def upload(client: TestClient, name: str, files: dict[str, str],
                 headers: dict[str, str] = KEY_A) -> dict[str, Any]:
    """The CLI's protocol: manifest, the files asked for, commit."""
    manifest = [{"path": p, "sha256": sha256_hex(t.encode()), "size": len(t.encode())}
                for p, t in files.items()]
    plan = await client.post(f"/v1/workspaces/{name}/begin", json={"files": manifest},
                             headers=headers)
    assert plan.status == 200, await plan.text()
    need = (await plan.json())["need"]
    if need:
        staged = await client.post(f"/v1/workspaces/{name}/files", headers=headers,
                                   json={"files": [{"path": p, "content": files[p]} for p in need]})
        assert staged.status == 200, await staged.text()
    done = await client.post(f"/v1/workspaces/{name}/commit", headers=headers)
    assert done.status == 200, await done.text()
    return {**(await done.json()), "need": need}


async def make(make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path,
               **overrides: Any) -> TestClient:
    _, url = await make_stub()
    return await make_orchestrator(url, client_api_keys=("client-key-a", "client-key-b"),
                                   workspace_dir=tmp_path, **overrides)


async def test_upload_list_show_and_delete(make_stub: MakeStub, make_orchestrator: MakeOrchestrator,
                                           tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path)
    first = await upload(client, "demo", FILES)
    assert sorted(first["need"]) == sorted(FILES) and first["files"] == 5
    assert first["generation"] == 1 and first["definitions"] == 7
    again = await upload(client, "demo",
                         {**FILES, "text/words.py": "def shout(s):\n    return s\n"})
    assert again["need"] == ["text/words.py"] and again["changed"] == 1
    listed = await (await client.get("/v1/workspaces", headers=KEY_A)).json()
    assert [w["name"] for w in listed["data"]] == ["demo"]
    shown = await (await client.get("/v1/workspaces/demo?files=1", headers=KEY_A)).json()
    assert shown["files"]["net/retry.py"] == sha256_hex(FILES["net/retry.py"].encode())
    gone = await client.delete("/v1/workspaces/demo", headers=KEY_A)
    assert gone.status == 200 and (await gone.json())["deleted"] is True
    assert (await client.get("/v1/workspaces/demo", headers=KEY_A)).status == 404
    assert not list((tmp_path).rglob("*.sqlite"))


async def test_one_key_cannot_see_or_delete_another_keys_workspace(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path)
    await upload(client, "private", FILES)
    for method, path in (("GET", "/v1/workspaces/private"), ("DELETE", "/v1/workspaces/private"),
                         ("POST", "/v1/workspaces/private/commit")):
        response = await client.request(method, path, headers=KEY_B)
        assert response.status == 404, (method, path)
        assert (await response.json())["error"]["code"] == "not_found"
    search = await client.post("/v1/workspaces/private/search", json={"query": "retry"},
                               headers=KEY_B)
    assert search.status == 404
    chat = await client.post("/v1/optimize", headers=KEY_B, json={
        "messages": [{"role": "user", "content": "retry?"}],
        "cerebrum": {"workspace": "private"}})
    assert chat.status == 404
    assert (await (await client.get("/v1/workspaces", headers=KEY_B)).json())["data"] == []
    # B's own workspace of the same name is a different one.
    await upload(client, "private", {"b.py": "def only_b():\n    pass\n"}, headers=KEY_B)
    mine = await (await client.get("/v1/workspaces/private", headers=KEY_A)).json()
    assert mine["files"] == 5
    assert (await client.get("/v1/workspaces/private")).status == 401


async def test_sharing_is_a_setting(make_stub: MakeStub, make_orchestrator: MakeOrchestrator,
                                    tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path, workspace_shared=True)
    await upload(client, "team", FILES)
    shown = await client.get("/v1/workspaces/team", headers=KEY_B)
    assert shown.status == 200 and (await shown.json())["files"] == 5


async def test_bad_paths_names_and_sizes_are_clear_400s(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path, workspace_max_file_bytes=1000)
    for path in ("../escape.py", "/etc/passwd.py", "a//b.py", "a\\b.py"):
        response = await client.post("/v1/workspaces/demo/begin", headers=KEY_A, json={
            "files": [{"path": path, "sha256": "0" * 64, "size": 1}]})
        body = await response.json()
        assert response.status == 400 and body["error"]["param"] == "path", (path, body)
    too_big = await client.post("/v1/workspaces/demo/begin", headers=KEY_A, json={
        "files": [{"path": "a.py", "sha256": "0" * 64, "size": 5000}]})
    assert too_big.status == 400
    assert "larger than 1000" in (await too_big.json())["error"]["message"]
    bad_name = await client.post("/v1/workspaces/..x/begin", headers=KEY_A, json={"files": []})
    assert bad_name.status == 400 and (await bad_name.json())["error"]["param"] == "name"
    for body in ({}, {"files": "x"}, {"files": [{"path": "a.py"}]}, [1]):
        response = await client.post("/v1/workspaces/demo/begin", headers=KEY_A, json=body)
        assert response.status == 400, body
    await upload(client, "demo", {"a.py": "x = 1\n"})
    after = await client.post("/v1/workspaces/demo/files", headers=KEY_A, json={
        "files": [{"path": "a.py", "content": "x = 1\n"}]})
    # The commit closed the update: nothing may be staged until the next begin.
    assert after.status == 409 and "begin one first" in (await after.json())["error"]["message"]
    await client.post("/v1/workspaces/demo/begin", headers=KEY_A, json={
        "files": [{"path": "a.py", "sha256": sha256_hex(b"x = 3\n"), "size": 6}]})
    wrong = await client.post("/v1/workspaces/demo/files", headers=KEY_A, json={
        "files": [{"path": "a.py", "content": "x = 2\n"}]})
    assert wrong.status == 400 and "does not match" in (await wrong.json())["error"]["message"]
    huge = await client.post("/v1/workspaces/demo/files", headers=KEY_A,
                             data=io.BytesIO(b'{"files": "' + b"x" * (5 * 1024 * 1024) + b'"}'))
    assert huge.status == 413
    await client.post("/v1/workspaces/demo/begin", headers=KEY_A, json={
        "files": [{"path": "a.py", "sha256": "1" * 64, "size": 3}]})
    unfinished = await client.post("/v1/workspaces/demo/commit", headers=KEY_A)
    assert unfinished.status == 409 and "a.py" in (await unfinished.json())["error"]["message"]
    search = await client.post("/v1/workspaces/demo/search", headers=KEY_A,
                               json={"query": "x", "max_tokens": 0})
    assert search.status == 400 and (await search.json())["error"]["param"] == "max_tokens"


async def test_optimize_shows_what_was_retrieved_and_the_budget_holds(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    client = await make(make_stub, make_orchestrator, tmp_path)
    await upload(client, "demo", FILES)
    pasted = ("Here is my caller:\n```python\n"
              + "def caller():\n    fetch_with_retry(s, u)\n" * 300 + "```\n"
              "why does the retry loop never stop when the server returns 503?")
    for content, max_tokens in (("why does the retry loop never stop when the server returns 503?",
                                 256), (pasted, 512)):
        answer = await client.post("/v1/optimize", headers=KEY_A, json={
            "model": "stub-model", "max_tokens": max_tokens,
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": content}],
            "cerebrum": {"workspace": "demo"}})
        assert answer.status == 200, await answer.text()
        body = await answer.json()
        retrieval = body["retrieval"]
        top = retrieval["items"][0]
        assert top["path"] == "net/retry.py" and top["name"] == "fetch_with_retry"
        assert top["whole"] and top["lines"][0] < top["lines"][1] and top["why"]
        system = body["messages"][0]
        assert system["role"] == "system" and system["content"].startswith("Be brief.")
        assert "def fetch_with_retry" in system["content"]
        total = sum(estimate_tokens(m["content"]) + 4 for m in body["messages"])
        assert total <= budget_tokens(2048, max_tokens), total


async def test_chat_completions_carry_the_retrieved_code_to_the_backend(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url, client_api_keys=("client-key-a",),
                                     workspace_dir=tmp_path)
    await upload(client, "demo", FILES)
    headers = {**KEY_A, "X-Cerebrum-Workspace": "demo"}
    response = await client.post("/v1/chat/completions", headers=headers, json={
        "model": "stub-model", "messages": [{"role": "user", "content": "make a URL-safe title"}]})
    assert response.status == 200, await response.text()
    sent = stub.received[-1].body
    assert "cerebrum" not in sent
    assert sent["messages"][0]["role"] == "system"
    assert "def slugify" in sent["messages"][0]["content"]
    assert sent["messages"][1] == {"role": "user", "content": "make a URL-safe title"}
    missing = await client.post("/v1/chat/completions", headers=KEY_A, json={
        "model": "stub-model", "messages": [{"role": "user", "content": "hi"}],
        "cerebrum": {"workspace": "nope"}})
    assert missing.status == 404 and (await missing.json())["error"]["param"] == "workspace"
    bad = await client.post("/v1/chat/completions", headers=KEY_A, json={
        "model": "stub-model", "messages": [{"role": "user", "content": "hi"}],
        "cerebrum": {"workspace": 7}})
    assert bad.status == 400 and (await bad.json())["error"]["param"] == "cerebrum.workspace"


async def test_with_optimisation_off_retrieval_only_gets_the_room_left(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url, client_api_keys=("client-key-a",),
                                     workspace_dir=tmp_path)
    await upload(client, "demo", FILES)
    long_question = "why does the retry loop never stop? " + "context " * 1800
    response = await client.post("/v1/chat/completions", json={
        "model": "stub-model", "max_tokens": 64,
        "messages": [{"role": "user", "content": long_question}],
        "cerebrum": {"workspace": "demo", "optimize": False}}, headers=KEY_A)
    assert response.status == 200, await response.text()
    sent = stub.received[-1].body["messages"]
    # Nothing fits beside a question that fills the context: nothing is added.
    assert len(sent) == 1 and sent[0]["content"] == long_question


async def test_uploads_have_their_own_slots_and_never_shed_a_chat(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator, tmp_path: Path) -> None:
    """One chat slot, one workspace slot: an upload in flight leaves the chat its slot, and a
    second workspace request (not the chat) is the one refused."""
    client = await make(make_stub, make_orchestrator, tmp_path, max_concurrent=1,
                        workspace_max_concurrent=1)
    assert client.app is not None
    workspaces = client.app[WORKSPACES]
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"files": ['
        await release.wait()  # the upload stays in flight until the chat has been served
        yield b']}'

    held = asyncio.create_task(client.post("/v1/workspaces/demo/begin", headers=KEY_A,
                                           data=slow_body()))
    for _ in range(500):
        if workspaces.slots.count:
            break
        await asyncio.sleep(0.01)
    assert workspaces.slots.count == 1
    chat = await client.post("/v1/chat/completions", headers=KEY_A, json={
        "model": "stub-model", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status == 200, await chat.text()
    second = await client.get("/v1/workspaces", headers=KEY_A)
    assert second.status == 503 and second.headers["Retry-After"] == "1"
    assert (await second.json())["error"]["code"] == "overloaded"
    release.set()
    assert (await held).status == 200
    assert workspaces.slots.count == 0
    assert (await client.get("/v1/workspaces", headers=KEY_A)).status == 200
