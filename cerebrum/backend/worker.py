"""ModelWorker: one llama.cpp model owned by one dedicated thread.

A llama context is not thread-safe, so every call into it (load, tokenize,
generate, close) runs on the worker's single-thread executor. Tokens cross to
the event loop with ``loop.call_soon_threadsafe(queue.put_nowait, ...)``; a
``threading.Event`` checked before each token stops generation within one
token of a cancel.

The generation loop drives llama-cpp-python's ``Llama.generate`` token by
token rather than ``create_completion``: it gives exact token counts for
``usage``, a context-length check before any output, and less per-token
Python work than the high-level API (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cerebrum.backend.generation import (
    Event,
    Failed,
    Finished,
    FinishReason,
    Generation,
    GenerationJob,
    PromptReady,
    StopMatcher,
    TextPiece,
)
from cerebrum.backend import tools
from cerebrum.backend.registry import ModelSpec, RegistryError
from cerebrum.errors import ApiError, BadRequest, ContextLengthExceeded

_LOGGER = logging.getLogger(__name__)

# Sampling defaults shared with llama.cpp's own server, so the two compare fairly.
TOP_K = 40
MIN_P = 0.05
REPEAT_PENALTY = 1.0


class ModelWorker:
    """Loads one model on its own thread and runs its generations one at a time."""

    def __init__(self, spec: ModelSpec, *, threads: int) -> None:
        self.spec = spec
        self.threads = spec.threads or threads
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{spec.name}")
        self._llama: Any = None
        self._formatter: Any = None

    @property
    def loaded(self) -> bool:
        return self._llama is not None

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

    def start(self, job: GenerationJob) -> Generation:
        """Start ``job`` on the worker thread; events arrive on the returned handle."""
        loop = asyncio.get_running_loop()
        generation = Generation()

        def emit(event: Event) -> None:
            loop.call_soon_threadsafe(generation.events.put_nowait, event)

        def run() -> None:
            try:
                self._generate_sync(job, emit, generation)
            except BaseException as exc:  # reported to the handler, never lost on the thread
                _LOGGER.exception("generation failed on model %s", self.spec.name)
                try:
                    emit(Failed(exc))
                except RuntimeError:
                    pass  # the loop is closed: the service is shutting down

        self._executor.submit(run)
        return generation

    # -- on the worker thread ------------------------------------------------

    def _load_sync(self) -> None:
        import llama_cpp  # imported here: only the backend host ever needs it

        _lower_this_threads_priority()
        llama = llama_cpp.Llama(
            model_path=str(self.spec.path),
            n_ctx=self.spec.context_size,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            verbose=False,
        )
        self._formatter = _chat_formatter(llama, self.spec.chat_format)
        self._native_tools = (self.spec.chat_format is None and tools.template_has_native_tools(
            llama.metadata.get("tokenizer.chat_template")))
        self._llama = llama

    def _close_sync(self) -> None:
        if self._llama is not None:
            self._llama.close()
        self._llama = None
        self._formatter = None

    def _tokenize(self, job: GenerationJob) -> tuple[list[int], list[str]]:
        llama = self._llama
        stops = list(job.params.stop)
        if job.messages is not None:
            rendered = tools.render_chat(job.messages, job.tools, native=self._native_tools)
            extras = {"tools": rendered.tools} if rendered.tools else {}
            formatted = self._formatter(messages=rendered.messages, **extras)
            extra = formatted.stop or []
            stops += [extra] if isinstance(extra, str) else list(extra)
            add_bos = not formatted.added_special and llama._model.add_bos_token()
            text = formatted.prompt
        else:
            add_bos = llama._model.add_bos_token()
            text = job.prompt or ""
            if job.suffix is not None:
                return fim_tokens(llama, text, job.suffix, add_bos), stops
        return llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True), stops

    def _generate_sync(
        self, job: GenerationJob, emit: Callable[[Event], None], generation: Generation
    ) -> None:
        import llama_cpp

        llama = self._llama
        if llama is None:
            raise RuntimeError("model is not loaded")
        try:
            tokens, stops = self._tokenize(job)
        except ApiError as exc:  # the request asks what this model cannot do
            emit(Failed(exc))
            return
        n_ctx = llama.n_ctx()
        prompt_tokens = len(tokens)
        wanted = job.params.max_tokens
        if prompt_tokens >= n_ctx:
            emit(Failed(ContextLengthExceeded(
                f"the prompt is {prompt_tokens} tokens, {prompt_tokens - n_ctx + 1} over "
                f"this model's context of {n_ctx} tokens (which must also leave room "
                "for at least one generated token)",
                param="messages" if job.messages is not None else "prompt",
            )))
            return
        if wanted is not None and prompt_tokens + wanted > n_ctx:
            emit(Failed(ContextLengthExceeded(
                f"the prompt ({prompt_tokens} tokens) plus max_tokens ({wanted}) is "
                f"{prompt_tokens + wanted - n_ctx} tokens over this model's context of "
                f"{n_ctx} tokens",
                param="max_tokens",
            )))
            return
        budget = wanted if wanted is not None else min(job.default_max_tokens,
                                                       n_ctx - prompt_tokens)
        emit(PromptReady(prompt_tokens))

        seed = job.params.seed if job.params.seed is not None else random.getrandbits(32)
        llama.set_seed(seed & 0xFFFFFFFF)
        vocab = llama._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        matcher = StopMatcher(stops)
        cancelled = generation.cancel_event
        produced = 0
        reason: FinishReason = "length"
        params = job.params
        grammar = params.grammar
        processors = None
        if params.logit_bias:
            n_vocab = llama.n_vocab()
            for token_id, _ in params.logit_bias:
                if token_id >= n_vocab:
                    emit(Failed(BadRequest(f"token {token_id} is not in this model's vocabulary "
                                           f"of {n_vocab}", param=f"logit_bias.{token_id}")))
                    return
            ids = [t for t, _ in params.logit_bias]
            biases = [b for _, b in params.logit_bias]

            def add_bias(_: Any, scores: Any) -> Any:
                scores[ids] += biases
                return scores

            processors = llama_cpp.LogitsProcessorList([add_bias])
        for token in llama.generate(
            tokens,
            top_k=params.top_k if params.top_k is not None else TOP_K,
            top_p=params.top_p,
            min_p=params.min_p if params.min_p is not None else MIN_P,
            temp=params.temperature,
            repeat_penalty=(params.repeat_penalty if params.repeat_penalty is not None
                            else REPEAT_PENALTY),
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
            logits_processor=processors,
            # Interim, until the slot engine's sampler chain: a lazy grammar
            # (tool_choice auto) cannot be expressed through Llama.generate.
            grammar=(llama_cpp.LlamaGrammar.from_string(grammar.gbnf, verbose=False)
                     if grammar is not None and not grammar.lazy else None),
        ):
            if cancelled.is_set():
                reason = "cancelled"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                reason = "stop"
                break
            produced += 1
            text, hit_stop = matcher.feed(decoder.decode(llama.detokenize([token])))
            if text:
                emit(TextPiece(text))
            if hit_stop:
                reason = "stop"
                break
            if produced >= budget:
                break
        if reason != "stop":
            tail = matcher.flush() + decoder.decode(b"", final=True)
            if tail:
                emit(TextPiece(tail))
        emit(Finished(reason, prompt_tokens, produced))


GENERATION_NICE = 5
"""How much lower than the event loop the model's threads run."""


def _lower_this_threads_priority() -> None:
    """Run this thread, and the llama.cpp threads it will start, below the event loop.

    With llama.cpp's threads on every core, a health check or the next SSE
    write waits for a core; at a lower priority the loop (and the VPS's other
    services) preempt generation at once. Linux threads inherit the nice value
    of the thread that creates them, so this covers the compute threads too.
    """
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + GENERATION_NICE))
    except (AttributeError, OSError):  # not Linux, or not allowed: run as is
        _LOGGER.debug("could not lower the model thread's priority", exc_info=True)


def _chat_formatter(llama: Any, chat_format: str | None) -> Any:
    """The chat template: the GGUF's own, or a llama-cpp-python format named in the registry."""
    from llama_cpp import llama_chat_format

    if chat_format is None:
        template = llama.metadata.get("tokenizer.chat_template")
        if template:
            eos = llama._model.token_get_text(llama.token_eos()) if llama.token_eos() != -1 else ""
            bos = llama._model.token_get_text(llama.token_bos()) if llama.token_bos() != -1 else ""
            return llama_chat_format.Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        chat_format = "chatml"
    formatter = getattr(llama_chat_format, "format_" + chat_format.replace("-", "_"), None)
    if formatter is None:
        raise RegistryError(f"unknown chat_format {chat_format!r}")
    return formatter


def fim_tokens(llama: Any, prefix: str, suffix: str, add_bos: bool) -> list[int]:
    """A fill-in-the-middle prompt (prefix, suffix, then the middle to write), or a 400
    when the model has no FIM tokens."""
    import llama_cpp

    vocab = llama._model.vocab
    pre, suf, mid = (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab),
                     llama_cpp.llama_vocab_fim_mid(vocab))
    if min(pre, suf, mid) < 0:
        raise BadRequest("'suffix' needs a model with fill-in-the-middle tokens, which this "
                         "one does not have", param="suffix", code="fim_not_supported")

    def encode(text: str) -> list[int]:
        return list(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return ([llama.token_bos()] if add_bos else []) + [pre, *encode(prefix), suf,
                                                       *encode(suffix), mid]
