"""ModelWorker: one llama.cpp model owned by one dedicated thread.

A llama context is not thread-safe, so every call into it (load, tokenize,
generate, close) runs on the worker's single-thread executor. Generation is
the batching ``Engine`` (``cerebrum.backend.engine``): requests are handed to
it from the loop, it runs on that thread while any request is active, and
tokens cross back with ``loop.call_soon_threadsafe(queue.put_nowait, ...)``
into each request's own queue. A ``threading.Event`` per request, checked at
every step, stops that request within one step of a cancel.

The model's weights are loaded with llama-cpp-python's ``LlamaModel`` (for
tokenizing, metadata and the chat template); generation runs on the engine's
own context and batches through the low-level API.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from cerebrum.backend import llama_private, scheduler, tools
from cerebrum.backend.engine import Engine, EngineStats
from cerebrum.backend.generation import (
    Event,
    Failed,
    Generation,
    GenerationJob,
)
from cerebrum.backend.priority import run_model_thread_at
from cerebrum.backend.prompt_cache import DiskTier, PromptCache
from cerebrum.backend.registry import ModelSpec, RegistryError
from cerebrum.errors import BadRequest, ContextLengthExceeded

_LOGGER = logging.getLogger(__name__)


def kv_mb_per_slot(model: Any, context_size: int) -> float:
    """KV cache of one slot (f16 K and V for every layer, the model's whole context), MiB."""
    import llama_cpp

    layers = llama_cpp.llama_model_n_layer(model)
    heads = max(1, llama_cpp.llama_model_n_head(model))
    head_dim = llama_cpp.llama_model_n_embd(model) // heads
    kv_heads = llama_cpp.llama_model_n_head_kv(model)
    return float(2 * layers * kv_heads * head_dim * 2 * context_size / (1024 * 1024))


class Outbox:
    """Events from the engine's thread to the event loop: one wake-up per engine step.

    Each ``call_soon_threadsafe`` writes to the loop's self-pipe and wakes it
    (at real-time priority the loop then preempts a model thread at once); one
    per token and stream was 4% of the engine thread's time with 4 streams.
    The engine emits during a step and flushes after it, so the loop wakes
    once per step and delivers every stream's events in the order emitted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.AbstractEventLoop, Generation, Event]] = []

    def put(self, loop: asyncio.AbstractEventLoop, generation: Generation, event: Event) -> None:
        with self._lock:
            self._items.append((loop, generation, event))

    def flush(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Generation, Event]]] = {}
        for loop, generation, event in items:
            by_loop.setdefault(loop, []).append((generation, event))
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, batch)
            except RuntimeError:
                pass  # that loop is closed: nobody is left to read these events


def _deliver(batch: list[tuple[Generation, Event]]) -> None:
    for generation, event in batch:
        generation.events.put_nowait(event)


class ModelWorker:
    """Loads one model on its own thread and runs its generations batched, ``slots`` at once."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        threads: int,
        slots: int = 1,
        prompt_cache_mb: float = 0.0,
        prompt_cache_disk_mb: float = 0.0,
        prompt_cache_dir: Path | None = None,
        prefill_chunk: int = 256,
        room_mb: Callable[[], float] = lambda: float("inf"),
        on_step: Callable[[Engine], None] | None = None,
        model_nice: int = 0,
    ) -> None:
        """``room_mb`` is RAM available above the floor now (it bounds the slots' KV
        at load and the prompt cache). Each step's thread count is the engine's
        to choose (``scheduler.ThreadTuner``), at most ``threads``; the model's
        threads run at ``model_nice``."""
        self.spec = spec
        self.threads = spec.threads or threads
        self.slots = slots
        self._prompt_cache_mb = prompt_cache_mb
        self._prompt_cache_disk_mb = prompt_cache_disk_mb
        self._prompt_cache_dir = prompt_cache_dir
        self._prefill_chunk = prefill_chunk
        self._room_mb = room_mb
        self._on_step = on_step
        self._outbox = Outbox()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{spec.name}",
                                            initializer=run_model_thread_at,
                                            initargs=(model_nice,))
        # Prompts are tokenized here, not on the engine's thread; one thread, so
        # requests reach the engine in the order they were admitted.
        self._tokenizer = ThreadPoolExecutor(max_workers=1,
                                             thread_name_prefix=f"tokenize-{spec.name}",
                                             initializer=run_model_thread_at,
                                             initargs=(model_nice,))
        self._model: Any = None
        self._model_lock = threading.Lock()
        """Held while tokenizing off the worker thread, and while the model is freed."""
        self._formatter: Any = None
        self._special_texts: tuple[str, ...] = ()
        self._native_tools = False
        self.engine: Engine | None = None

    @property
    def loaded(self) -> bool:
        return self.engine is not None

    @property
    def stats(self) -> EngineStats:
        assert self.engine is not None
        return self.engine.stats

    async def load(self) -> None:
        """Load the GGUF on the worker thread (the loop stays free meanwhile)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load_sync)

    async def close(self) -> None:
        """Free the model and stop the thread."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_sync)
        finally:
            self._executor.shutdown(wait=False)
            self._tokenizer.shutdown(wait=False)

    def start(self, job: GenerationJob) -> Generation:
        """Hand ``job`` to the engine; events arrive on the returned handle."""
        return self.start_choices(job, 1)[0]

    def start_choices(self, job: GenerationJob, n: int) -> list[Generation]:
        """``n`` answers to ``job`` sharing one prefill; a handle for each."""
        loop = asyncio.get_running_loop()
        generations = [Generation() for _ in range(n)]

        def emitter(generation: Generation) -> Callable[[Event], None]:
            def emit(event: Event) -> None:
                self._outbox.put(loop, generation, event)
            return emit

        engine = self.engine
        if engine is None:
            for generation in generations:
                generation.events.put_nowait(Failed(RuntimeError("model is not loaded")))
            return generations
        if engine.submit_choices(job, [(g, emitter(g)) for g in generations]):
            self._executor.submit(engine.run)
        return generations

    async def prepare(self, job: GenerationJob) -> GenerationJob:
        """``job`` with its prompt tokenized, off the engine's thread.

        A chat template over thousands of messages can take llama.cpp seconds to
        tokenize (its special-token pass grows faster than the text); done at
        admission on the engine's thread, that would stall every stream."""
        context = self.spec.context_size
        if job.messages is not None and len(job.messages) >= context:
            # Every template spends at least a token per message: refused unread.
            raise ContextLengthExceeded(
                f"{len(job.messages)} messages cannot fit this model's context of {context} "
                "tokens (each takes at least one)", param="messages")
        loop = asyncio.get_running_loop()
        tokenized = await loop.run_in_executor(self._tokenizer, self._tokenize_locked, job)
        return attrs.evolve(job, tokenized=tokenized)

    async def tokenize(self, job: GenerationJob | None = None, *,
                       text: str | None = None) -> list[int]:
        """The model's tokens for ``job`` (chat formatted as generation formats it, BOS
        included) or for raw ``text`` (no special tokens added).

        Tokenizing only reads the vocabulary, so it runs on the default executor
        beside the engine's thread (never queued behind a running generation);
        ``_model_lock`` keeps an unload from freeing the model meanwhile.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._count_sync, job, text)

    # -- on the worker thread ------------------------------------------------

    def _spells_special(self, text: str) -> bool:
        return any(special in text for special in self._special_texts)

    def _content_as_text(self, messages: list[dict[str, Any]], extras: dict[str, Any],
                         add_bos: bool) -> list[int] | None:
        """The chat's tokens with each message's content read as text, never as
        special tokens: a pasted file that holds ``<|im_start|>system`` must not
        open a turn of its own (the template's own markers still do).

        The template renders marks in place of the contents; the text between
        them is the template's, tokenized with special tokens on, each content
        with them off. None (tokenize the whole prompt) where the template does
        not keep every mark exactly once, in order.
        """
        contents: list[str] = []
        marked = []
        for message in messages:
            content = message.get("content")
            if isinstance(content, str) and content:
                marked.append({**message, "content": _CONTENT_MARK.format(len(contents))})
                contents.append(content)
            else:
                marked.append(message)
        template = self._formatter(messages=marked, **extras).prompt
        pieces = _CONTENT_MARK_RE.split(template)
        if [int(index) for index in pieces[1::2]] != list(range(len(contents))):
            return None
        model = self._model
        tokens: list[int] = list(model.tokenize(pieces[0].encode("utf-8"), add_bos=add_bos,
                                                special=True))
        for at in range(1, len(pieces), 2):
            tokens += model.tokenize(contents[int(pieces[at])].encode("utf-8"), add_bos=False,
                                     special=False)
            tokens += model.tokenize(pieces[at + 1].encode("utf-8"), add_bos=False, special=True)
        return tokens

    def _tokenize_locked(self, job: GenerationJob) -> tuple[list[int], list[str]]:
        with self._model_lock:
            if self._model is None:
                raise RuntimeError("model is not loaded")
            return self._tokenize(job)

    def _count_sync(self, job: GenerationJob | None, text: str | None) -> list[int]:
        if job is not None:
            return self._tokenize_locked(job)[0]
        with self._model_lock:
            if self._model is None:
                raise RuntimeError("model is not loaded")
            return list(self._model.tokenize((text or "").encode("utf-8"), add_bos=False,
                                             special=False))

    def _load_sync(self) -> None:
        model = llama_private.load_model(self.spec.path)
        try:
            self._formatter = _chat_formatter(model, self.spec.chat_format)
            self._special_texts = special_token_texts(model)
            self._native_tools = self.spec.chat_format is None and \
                tools.template_has_native_tools(model.metadata().get("tokenizer.chat_template"))
            from cerebrum.backend.models import (
                estimated_ram_mb,  # (models imports this module)
            )

            per_slot = kv_mb_per_slot(model.model, self.spec.context_size)
            # room_mb is measured above the floor already; the weights' pages
            # may not show in available RAM yet, so count them here.
            slots = scheduler.slots_for_ram(self.slots, per_slot, self._room_mb(),
                                            estimated_ram_mb(self.spec), 0.0)
            if slots < self.slots:
                _LOGGER.warning("only %d of %d slots fit above the RAM floor", slots, self.slots)
            cache = PromptCache(
                int(self._prompt_cache_mb * 1024 * 1024),
                room_bytes=lambda: self._room_mb() * 1024 * 1024,
                disk=self._disk_tier(),
            )
            self.engine = Engine(
                model.model, model.vocab, self._tokenize,
                slots=slots, context_size=self.spec.context_size, max_threads=self.threads,
                prefill_chunk=self._prefill_chunk, cache=cache, on_step=self._on_step,
                flush=self._outbox.flush,
            )
            self.slots = slots
        except BaseException:
            model.close()
            raise
        self._model = model

    def _disk_tier(self) -> DiskTier | None:
        if self._prompt_cache_disk_mb <= 0 or self._prompt_cache_dir is None:
            return None
        folder = re.sub(r"[^A-Za-z0-9._-]", "_", self.spec.name)
        try:
            return DiskTier(self._prompt_cache_dir / folder,
                            int(self._prompt_cache_disk_mb * 1024 * 1024))
        except OSError as exc:
            # A cache is an optimisation: serve without it rather than not at all.
            _LOGGER.warning("prompt cache on disk is off: %s", exc)
            return None

    def _close_sync(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        with self._model_lock:
            if self._model is not None:
                self._model.close()
            self._model = None
            self._formatter = None

    def _tokenize(self, job: GenerationJob) -> tuple[list[int], list[str]]:
        model = self._model
        stops = list(job.params.stop)
        if job.messages is not None:
            rendered = tools.render_chat(job.messages, job.tools, native=self._native_tools)
            extras = {"tools": rendered.tools} if rendered.tools else {}
            formatted = self._formatter(messages=rendered.messages, **extras)
            extra = formatted.stop or []
            stops += [extra] if isinstance(extra, str) else list(extra)
            add_bos = not formatted.added_special and model.add_bos_token()
            if any(isinstance(m.get("content"), str) and self._spells_special(m["content"])
                   for m in rendered.messages):
                plain = self._content_as_text(rendered.messages, extras, add_bos)
                if plain is not None:
                    return plain, stops
            text = formatted.prompt
        else:
            add_bos = model.add_bos_token()
            text = job.prompt or ""
            if job.suffix is not None:
                return fim_tokens(model, text, job.suffix, add_bos), stops
        return model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True), stops


# Stands for a message's content while the template renders: control characters no
# template adds, trims or escapes, so each one is found again exactly once.
_CONTENT_MARK = "\x1ecerebrum-content-{}\x1e"
_CONTENT_MARK_RE = re.compile("\x1ecerebrum-content-(\\d+)\x1e")
_SPECIAL_ATTRS = ("LLAMA_TOKEN_ATTR_CONTROL", "LLAMA_TOKEN_ATTR_USER_DEFINED",
                  "LLAMA_TOKEN_ATTR_UNKNOWN")


def special_token_texts(model: Any) -> tuple[str, ...]:
    """The text of every token llama.cpp reads as special when asked to
    (``<|im_start|>``, ``<|endoftext|>``...): control, user-defined, unknown."""
    import llama_cpp

    mask = 0
    for name in _SPECIAL_ATTRS:
        mask |= getattr(llama_cpp, name)
    vocab = model.vocab
    buffer = ctypes.create_string_buffer(256)
    texts = []
    for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        if llama_cpp.llama_vocab_get_attr(vocab, token) & mask:
            # (LlamaModel.token_to_piece returns its whole 32-byte buffer, NULs included.)
            size = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, True)
            if size > 0:
                texts.append(buffer.raw[:size].decode("utf-8", "replace"))
    return tuple(texts)


def _chat_formatter(model: Any, chat_format: str | None) -> Any:
    """The chat template: the GGUF's own, or a llama-cpp-python format named in the registry."""
    from llama_cpp import llama_chat_format

    if chat_format is None:
        template = model.metadata().get("tokenizer.chat_template")
        if template:
            eos = model.token_get_text(model.token_eos()) if model.token_eos() != -1 else ""
            bos = model.token_get_text(model.token_bos()) if model.token_bos() != -1 else ""
            return llama_chat_format.Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        chat_format = "chatml"
    formatter = getattr(llama_chat_format, "format_" + chat_format.replace("-", "_"), None)
    if formatter is None:
        raise RegistryError(f"unknown chat_format {chat_format!r}")
    return formatter


def fim_tokens(model: Any, prefix: str, suffix: str, add_bos: bool) -> list[int]:
    """A fill-in-the-middle prompt (prefix, suffix, then the middle to write), or a 400
    when the model has no FIM tokens."""
    import llama_cpp

    vocab = model.vocab
    pre, suf, mid = (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab),
                     llama_cpp.llama_vocab_fim_mid(vocab))
    if min(pre, suf, mid) < 0:
        raise BadRequest("'suffix' needs a model with fill-in-the-middle tokens, which this "
                         "one does not have", param="suffix", code="fim_not_supported")

    def encode(text: str) -> list[int]:
        return list(model.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return ([model.token_bos()] if add_bos else []) + [pre, *encode(prefix), suf,
                                                       *encode(suffix), mid]
