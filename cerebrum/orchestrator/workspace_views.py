"""``/v1/workspaces``: upload a repository, see it, delete it; and the retriever for completions.

Routes (all behind the client key; shapes in docs/workspaces.md):

    GET    /v1/workspaces                   this key's workspaces and their figures
    GET    /v1/workspaces/{name}            one workspace (``?files=1``: path → sha256 too)
    POST   /v1/workspaces/{name}/begin      {"files": [{"path", "sha256", "size"}]}
                                            → {"need": [...], "update": token}
    POST   /v1/workspaces/{name}/files      {"files": [{"path", "content"}], "update"}: parse,
                                            stage a batch
    POST   /v1/workspaces/{name}/commit     {"update"}: staged files go live, removed ones go,
                                            atomically
    POST   /v1/workspaces/{name}/search     {"query", "max_tokens"}: what retrieval would add
    DELETE /v1/workspaces/{name}

Each key's workspaces live in their own directory (a digest of the key), so
one client can neither see nor delete another's unless
``CEREBRUM_WORKSPACE_SHARED`` puts them all in one. Parsing and SQLite run in
a worker thread; one update per workspace at a time and one parse at a time
overall, so indexing never takes the Pi's cores from the streams it serves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
from aiohttp import web

from cerebrum.bodies import read_json
from cerebrum.errors import ApiError, BadRequest, NotFound, Unavailable
from cerebrum.middlewares import presented_key
from cerebrum.orchestrator.config import OrchestratorConfig
from cerebrum.orchestrator.shedding import Concurrency
from cerebrum.orchestrator.state import ORCHESTRATOR
from cerebrum.orchestrator.upstream import UPSTREAM
from cerebrum.orchestrator.workspace_vectors import (
    VectorSettings,
    WorkspaceVectors,
    vector_bridge,
)
from cerebrum.workspace.augment import Retriever, requested_workspace
from cerebrum.workspace.paths import InvalidPath, check_name, owner_id
from cerebrum.workspace.retrieve import Retrieved, retrieve
from cerebrum.workspace.store import (
    Gone,
    Incomplete,
    Limits,
    ManifestEntry,
    NoUpdate,
    WorkspaceError,
    WorkspaceStore,
    delete_workspace,
    list_workspaces,
    workspace_path,
)

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

WORKSPACE_ROUTES = ("/v1/workspaces",)
"""Path prefix of every workspace route: shed by their own slots, not the chats'."""
MAX_SEARCH_TOKENS = 16_000
DEFAULT_SEARCH_TOKENS = 1500
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")


class Conflict(ApiError):
    status = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class _TooMany(WorkspaceError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"this key already has {limit} workspaces, the most it may have; "
                         "delete one first (CEREBRUM_WORKSPACE_MAX_PER_KEY)")


@attrs.define
class Workspaces:
    """Where workspaces live and who may touch which; the app's single instance."""

    root: Path
    limits: Limits
    shared: bool
    max_per_key: int = 64
    """Workspaces one key may have (CEREBRUM_WORKSPACE_MAX_PER_KEY): a key cannot fill the
    disk with names."""
    locks: dict[Path, asyncio.Lock] = attrs.field(factory=dict)
    parsing: asyncio.Semaphore = attrs.field(factory=lambda: asyncio.Semaphore(1))
    slots: Concurrency = attrs.field(factory=lambda: Concurrency(1, "workspace requests"))
    """Workspace requests in flight (CEREBRUM_WORKSPACE_MAX_CONCURRENT), apart from the
    chat slots: the load-shedding middleware counts ``WORKSPACE_ROUTES`` here."""
    vectors: WorkspaceVectors | None = None
    """Set by ``setup_workspaces`` when CEREBRUM_WORKSPACE_EMBEDDINGS_MODEL names a model."""
    vector_settings: VectorSettings | None = None
    """What ``setup_workspaces`` builds ``vectors`` from; None: vectors off."""
    up_to_date: set[Path] = attrs.field(factory=set)
    """Workspace files whose schema this process has checked (or brought up to date)."""

    @classmethod
    def from_config(cls, config: OrchestratorConfig) -> Workspaces:
        return cls(config.workspace_root(),
                   Limits(config.workspace_max_files, config.workspace_max_file_bytes,
                          config.workspace_max_bytes),
                   config.workspace_shared,
                   max_per_key=config.workspace_max_per_key,
                   slots=Concurrency(config.workspace_max_concurrent, "workspace requests"),
                   vector_settings=VectorSettings(config.workspace_embeddings_model,
                                                  config.workspace_embeddings_batch,
                                                  config.workspace_embeddings_timeout_s)
                   if config.workspace_embeddings_model else None)

    def owner(self, request: web.Request) -> str:
        return owner_id(presented_key(request), self.shared)

    def path(self, request: web.Request, name: str) -> Path:
        try:
            return workspace_path(self.root, self.owner(request), check_name(name))
        except InvalidPath as exc:
            raise BadRequest(str(exc), param="name") from None

    def existing(self, request: web.Request, name: str) -> WorkspaceStore:
        """The workspace, or 404 (also for another key's: its existence is not revealed)."""
        path = self.path(request, name)
        if not path.is_file():
            raise NotFound(f"there is no workspace '{name}'; index one with `cerebrum index`",
                           param="workspace")
        if path in self.up_to_date:
            return WorkspaceStore(path, name, self.limits)
        store = WorkspaceStore.open(path, name, self.limits)
        self.up_to_date.add(path)  # the check reads the file: once per path, not per request
        return store

    def lock(self, path: Path) -> asyncio.Lock:
        return self.locks.setdefault(path, asyncio.Lock())


WORKSPACES = web.AppKey("workspaces", Workspaces)


def setup_workspaces(app: web.Application, workspaces: Workspaces) -> None:
    """Add the workspace routes and their state to the orchestrator's app."""
    app[WORKSPACES] = workspaces
    settings = workspaces.vector_settings
    if settings is not None:
        vectors = workspaces.vectors = WorkspaceVectors(settings, lambda: app[UPSTREAM])

        async def stop_fills(_: web.Application) -> None:
            await vectors.close()  # before the upstream session closes (on_cleanup)

        app.on_shutdown.append(stop_fills)
    app.router.add_get("/v1/workspaces", list_all)
    app.router.add_get("/v1/workspaces/{name}", show)
    app.router.add_post("/v1/workspaces/{name}/begin", begin)
    app.router.add_post("/v1/workspaces/{name}/files", upload)
    app.router.add_post("/v1/workspaces/{name}/commit", commit)
    app.router.add_post("/v1/workspaces/{name}/search", search)
    app.router.add_delete("/v1/workspaces/{name}", delete)


async def _in_thread(call: Callable[[], _T]) -> _T:
    """Run store work off the loop; its refusals become 4xx, SQLite failures a logged 500."""
    try:
        return await asyncio.get_running_loop().run_in_executor(None, call)
    except Incomplete as exc:
        raise Conflict(f"{exc}: {', '.join(exc.missing[:5])}", param="files") from None
    except NoUpdate as exc:
        raise Conflict(str(exc), param="update") from None
    except _TooMany as exc:
        raise Conflict(str(exc), param="name") from None
    except Gone as exc:
        raise NotFound(str(exc), param="workspace") from None
    except InvalidPath as exc:
        raise BadRequest(str(exc), param="path") from None
    except WorkspaceError as exc:
        raise BadRequest(str(exc), param="files") from None
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        # Another process holds the file (SQLite waited 30 s for it): not this client's fault.
        raise Unavailable("the workspace is busy; try again", retry_after=5) from None


def _status(store: WorkspaceStore, vectors_on: bool) -> dict[str, Any]:
    return {"object": "workspace", **attrs.asdict(store.status()), "vectors_enabled": vectors_on}


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request, request.app[ORCHESTRATOR].config.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _files(body: Mapping[str, Any]) -> list[Any]:
    files = body.get("files")
    if not isinstance(files, list):
        raise BadRequest("'files' must be a list", param="files")
    return files


def _update(body: Mapping[str, Any]) -> str | None:
    """The update token ``begin`` answered with, if the client sends it (older ones do not)."""
    update = body.get("update")
    if update is not None and not isinstance(update, str):
        raise BadRequest("'update' must be the string that begin answered with", param="update")
    return update


async def list_all(request: web.Request) -> web.Response:
    """``GET /v1/workspaces``: this key's workspaces."""
    workspaces = request.app[WORKSPACES]
    owner = workspaces.owner(request)

    def read() -> list[dict[str, Any]]:
        answer = []
        for name in list_workspaces(workspaces.root, owner):
            try:
                store = WorkspaceStore.open(workspace_path(workspaces.root, owner, name), name)
                answer.append(_status(store, workspaces.vectors is not None))
            except Gone:
                continue  # deleted since the directory was read
        return answer

    return web.json_response({"object": "list", "data": await _in_thread(read)})


async def show(request: web.Request) -> web.Response:
    """``GET /v1/workspaces/{name}``: figures, and with ``?files=1`` every path's hash."""
    workspaces = request.app[WORKSPACES]
    store = workspaces.existing(request, request.match_info["name"])
    with_files = request.query.get("files", "") in ("1", "true", "yes")

    def read() -> dict[str, Any]:
        answer = _status(store, workspaces.vectors is not None)
        if with_files:
            answer["files"] = store.hashes()
        return answer

    return web.json_response(await _in_thread(read))


async def begin(request: web.Request) -> web.Response:
    """``POST /v1/workspaces/{name}/begin``: create if new, record the manifest, say what to
    send."""
    workspaces = request.app[WORKSPACES]
    name = request.match_info["name"]
    path = workspaces.path(request, name)
    entries = []
    for position, item in enumerate(_files(await _body(request))):
        if not (isinstance(item, dict) and isinstance(item.get("path"), str)
                and isinstance(item.get("sha256"), str)
                and _SHA256_RE.fullmatch(item["sha256"])
                and isinstance(item.get("size"), int) and not isinstance(item["size"], bool)
                and item["size"] >= 0):
            raise BadRequest(f"files[{position}] must be {{\"path\": str, \"sha256\": 64 hex "
                             "digits, \"size\": bytes}", param=f"files[{position}]")
        entries.append(ManifestEntry(item["path"], item["sha256"].lower(), item["size"]))
    async with workspaces.lock(path):
        def run() -> dict[str, Any]:
            # Checked before anything is made: a refused begin leaves no workspace behind.
            WorkspaceStore.check_manifest(entries, workspaces.limits)
            if not path.is_file():
                owner = workspaces.owner(request)
                if len(list_workspaces(workspaces.root, owner)) >= workspaces.max_per_key:
                    raise _TooMany(workspaces.max_per_key)
            store = WorkspaceStore.create(path, name, workspaces.limits)
            plan = store.begin(entries)
            return {"object": "workspace.plan", "name": name, "need": list(plan.need),
                    "unchanged": plan.unchanged, "removed": plan.removed,
                    "update": plan.update}

        return web.json_response(await _in_thread(run))


async def upload(request: web.Request) -> web.Response:
    """``POST /v1/workspaces/{name}/files``: parse and stage one batch (never served until
    commit)."""
    workspaces = request.app[WORKSPACES]
    name = request.match_info["name"]
    path = workspaces.path(request, name)
    body = await _body(request)
    update = _update(body)
    batch: list[tuple[str, bytes]] = []
    for position, item in enumerate(_files(body)):
        if not (isinstance(item, dict) and isinstance(item.get("path"), str)
                and isinstance(item.get("content"), str)):
            raise BadRequest(f"files[{position}] must be {{\"path\": str, \"content\": str}}",
                             param=f"files[{position}]")
        try:
            content = item["content"].encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"files[{position}]: content is not valid Unicode",
                             param=f"files[{position}].content") from None
        batch.append((item["path"], content))
    async with workspaces.lock(path), workspaces.parsing:
        # Looked up under the lock: a delete that came first has finished.
        store = workspaces.existing(request, name)
        result = await _in_thread(functools.partial(store.stage, batch, update))
    return web.json_response({"object": "workspace.staged", "files": result.files,
                              "units": result.units})


async def commit(request: web.Request) -> web.Response:
    """``POST /v1/workspaces/{name}/commit``: the update goes live in one transaction."""
    workspaces = request.app[WORKSPACES]
    name = request.match_info["name"]
    path = workspaces.path(request, name)
    update = _update(await _body(request)) if request.can_read_body else None
    async with workspaces.lock(path):
        store = workspaces.existing(request, name)
        result = await _in_thread(functools.partial(store.commit, update))
        if workspaces.vectors is not None:
            workspaces.vectors.fill(store)  # in the background: the commit does not wait
        status = await _in_thread(functools.partial(_status, store,
                                                    workspaces.vectors is not None))
    return web.json_response({**status, "changed": result.files, "removed": result.removed})


async def delete(request: web.Request) -> web.Response:
    """``DELETE /v1/workspaces/{name}``."""
    workspaces = request.app[WORKSPACES]
    name = request.match_info["name"]
    async with workspaces.lock(workspaces.path(request, name)):
        store = workspaces.existing(request, name)
        if workspaces.vectors is not None:
            await workspaces.vectors.stop(store.path)
        await _in_thread(functools.partial(delete_workspace, store.path))
    workspaces.locks.pop(store.path, None)
    workspaces.up_to_date.discard(store.path)
    return web.json_response({"object": "workspace.deleted", "name": store.name, "deleted": True})


async def search(request: web.Request) -> web.Response:
    """``POST /v1/workspaces/{name}/search``: the context retrieval would add for a question."""
    workspaces = request.app[WORKSPACES]
    store = workspaces.existing(request, request.match_info["name"])
    body = await _body(request)
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("'query' must be a non-empty string", param="query")
    tokens = body.get("max_tokens", DEFAULT_SEARCH_TOKENS)
    if (not isinstance(tokens, int) or isinstance(tokens, bool)
            or not 1 <= tokens <= MAX_SEARCH_TOKENS):
        raise BadRequest(f"'max_tokens' must be an integer from 1 to {MAX_SEARCH_TOKENS}",
                         param="max_tokens")
    vector = (await workspaces.vectors.question_vector(store, query)
              if workspaces.vectors is not None else None)
    result = await _in_thread(functools.partial(retrieve, store, query, tokens,
                                                question_vector=vector))
    return web.json_response({"object": "workspace.retrieval", **result.as_dict(),
                              "text": result.text})


def retriever_for(request: web.Request, body: Mapping[str, Any]) -> Retriever | None:
    """The retriever a completion asked for (``"cerebrum": {"workspace": ...}`` or the header).

    None when it asked for none; 404 for a workspace this key does not have.
    A failure while retrieving costs the request its context, not the request.
    """
    name = requested_workspace(request.headers, body)
    if name is None:
        return None
    workspaces = request.app[WORKSPACES]
    store = workspaces.existing(request, name)
    embed = (vector_bridge(workspaces.vectors, asyncio.get_running_loop(), store)
             if workspaces.vectors is not None else None)

    def run(question: str, budget: int) -> Retrieved:
        try:
            result = retrieve(store, question, budget,
                              question_vector=embed(question) if embed else None)
        except Exception:  # a bug included: the promise above holds whatever failed
            _LOGGER.exception("retrieval from workspace %s failed; answering without it", name)
            return Retrieved("", 0, budget, (), 0)
        _LOGGER.info("retrieved %d units (%d tokens of %d) from workspace %s in %.1f ms",
                     len(result.items), result.tokens, budget, name, result.elapsed_ms,
                     extra={"event": "retrieval", "workspace": name,
                            "units": len(result.items), "tokens": result.tokens,
                            "vectors": result.vectors})
        return result

    return run
