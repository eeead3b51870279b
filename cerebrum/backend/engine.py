"""The batching engine: one llama context, several sequences, one decode per step.

The engine owns a llama.cpp context with ``slots`` parallel sequences (one
sequence id per slot, each with its own KV stream of the model's context
size) and runs on the model's single worker thread. Each step it

1. admits new requests: tokenizes them, checks their length, picks a slot by
   longest common token prefix (saving the slot's old state to the prompt
   cache, or restoring a better one from it) and drops the slot's KV past
   the shared prefix;
2. asks the scheduler for a plan: one token for every generating sequence,
   then prompt chunks of those still prefilling (chunked prefill);
3. decodes that one batch with the thread count the ``ThreadTuner`` measured
   fastest (fewer when a busy neighbour holds a core), samples each
   sequence that produced logits with its own sampler chain, and emits
   text through the request's ``emit`` (which crosses to the event loop
   with ``call_soon_threadsafe``).

A request's cancel flag is checked at the start of every step, so a client
disconnect frees its slot within one step. Decisions live in
``cerebrum.backend.scheduler``; this module only carries them out.
"""

from __future__ import annotations

import codecs
import ctypes
import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from cerebrum.backend import scheduler
from cerebrum.backend.generation import (
    Event,
    Failed,
    Finished,
    FinishReason,
    Generation,
    GenerationError,
    GenerationJob,
    PromptReady,
    StopMatcher,
    TextPiece,
)
from cerebrum.backend.neighbours import IdleWatch
from cerebrum.backend.prompt_cache import CacheEntry, PromptCache
from cerebrum.backend.sampling import (
    NoTokenLeft,
    Sampler,
    TokenLogprob,
    build_sampler,
    token_logprobs,
)
from cerebrum.errors import ApiError, BadRequest, ContextLengthExceeded

_LOGGER = logging.getLogger(__name__)

IDLE_RECHECK_S = 1.0
"""After a pause this long the host may have changed: the thread tuner looks again."""

Tokenizer = Callable[[GenerationJob], tuple[list[int], list[str]]]
"""A job's prompt tokens and its stop strings (the request's plus the chat template's)."""


@attrs.define
class EngineStats:
    """Plain counters, read by ``/metrics`` and the tests (written on the engine thread only)."""

    prefill_tokens: int = 0
    """Prompt tokens computed (prefilled)."""
    reused_tokens: int = 0
    """Prompt tokens not computed because a slot or the prompt cache already held them."""
    generated_tokens: int = 0
    steps: int = 0
    batched_steps: int = 0
    """Steps that decoded more than one sequence at once."""
    restores: int = 0
    threads: int = 0
    """Threads used by the latest step."""


@attrs.define(eq=False)
class _Request:
    job: GenerationJob
    generation: Generation
    emit: Callable[[Event], None]
    arrived: int
    tokens: list[int] = attrs.field(factory=list)
    stops: list[str] = attrs.field(factory=list)
    budget: int = 0
    sampler: Sampler | None = None
    pending: list[int] = attrs.field(factory=list)
    """Tokens to feed: the prompt's uncomputed tail, then the last sampled token."""
    generating: bool = False
    began: int | None = None
    """The arrival clock's value when the first token came (see ``scheduler.plan_batch``)."""
    passed: int = 0
    """Steps this prompt waited while others prefilled."""
    setup: scheduler.SlotChoice | None = None
    """The slot choice still to carry out, at the first step that decodes this
    request (``Engine._ready``)."""
    restoring: CacheEntry | None = None
    """The cache entry that setup restores, taken out of the cache at admission."""
    produced: int = 0
    decoder: Any = None
    matcher: StopMatcher | None = None
    logprobs: list[TokenLogprob] = attrs.field(factory=list)
    siblings: list[_Request] = attrs.field(factory=list)
    """The other choices of an ``n`` > 1 request (on the first one, the leader)."""
    follows: _Request | None = None
    """For a sibling: the leader whose prompt KV it will copy instead of prefilling."""
    index: int = 0
    """The choice's index (its seed is the request's plus this)."""

    def group(self) -> list[_Request]:
        return [self, *self.siblings]


@attrs.define(eq=False)
class _Slot:
    seq: int
    cached: list[int] = attrs.field(factory=list)
    """Tokens whose KV the sequence holds now, in position order."""
    request: _Request | None = None
    last_used: float = 0.0


class Engine:
    """Continuous batching over one llama context; every method runs on the worker thread
    except ``submit``, ``wake`` and ``active``, which are thread-safe."""

    def __init__(
        self,
        model: Any,
        vocab: Any,
        tokenize: Tokenizer,
        *,
        slots: int,
        context_size: int,
        max_threads: int,
        prefill_chunk: int = 256,
        cache: PromptCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_step: Callable[[Engine], None] | None = None,
        flush: Callable[[], None] = lambda: None,
    ) -> None:
        """``flush`` is called after each step (and when ``run`` returns): the
        requests' ``emit`` may hold their events until then."""
        import llama_cpp

        self.slots = slots
        self.context_size = context_size
        self.max_threads = max_threads
        self.threads = scheduler.ThreadTuner(max_threads)
        self.step_costs = scheduler.StepCostModel()
        self.batch_size = max(prefill_chunk, slots)
        self._llama = llama_cpp
        self._model = model
        self._vocab = vocab
        self._tokenize = tokenize
        self._clock = clock
        self._on_step = on_step
        self._flush = flush
        self.cache = cache if cache is not None else PromptCache(0)
        self.stats = EngineStats()
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)

        params = llama_cpp.llama_context_default_params()
        # One KV stream per sequence (kv_unified off): each slot gets the
        # model's whole context, so a request's limit does not depend on
        # what the other slots hold, and a sequence's attention never reads
        # the other slots' cells, so its numbers (and its greedy text) do not
        # depend on what they hold either. (A unified cache mixes the cells:
        # the same prompt then decodes differently beside other requests.)
        params.n_ctx = context_size * slots
        params.n_seq_max = slots
        params.kv_unified = False
        params.n_batch = self.batch_size
        params.n_ubatch = self.batch_size
        params.n_threads = max_threads
        params.n_threads_batch = max_threads
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model, params)
        if ctx is None:
            raise RuntimeError("llama.cpp could not create a context")
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(self.batch_size, 0, 1)
        self._threads_set = max_threads
        self.stats.threads = max_threads
        self._slots = [_Slot(seq) for seq in range(slots)]
        self._piece = ctypes.create_string_buffer(64)
        self._lock = threading.Lock()
        self._inbox: deque[_Request] = deque()
        self._waiting: deque[_Request] = deque()
        self._arrivals = itertools.count()
        self._running = False
        self._idle_since: float | None = None
        self._idle_watch = IdleWatch()
        self._warm_up()

    def _warm_up(self) -> None:
        """Decode one token and forget it, so the first request does not pay for
        llama.cpp's lazy set-up (almost a second on 2 cores), as llama-server does."""
        llama_cpp = self._llama
        token = llama_cpp.llama_vocab_bos(self._vocab)
        token = max(token, 0)
        batch = self._batch
        batch.token[0] = token
        batch.pos[0] = 0
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = 1
        batch.n_tokens = 1
        llama_cpp.llama_decode(self._ctx, batch)
        llama_cpp.llama_memory_clear(self._memory, True)

    # -- thread-safe ---------------------------------------------------------

    def submit(self, job: GenerationJob, generation: Generation,
               emit: Callable[[Event], None]) -> bool:
        """Queue ``job``; True when the caller must start ``run`` on the worker thread."""
        return self.submit_choices(job, [(generation, emit)])

    def submit_choices(self, job: GenerationJob,
                       choices: list[tuple[Generation, Callable[[Event], None]]]) -> bool:
        """Queue ``job`` for ``len(choices)`` answers (OpenAI's ``n``), one per handle.

        The choices share the prompt: the first prefills it and the others copy
        its KV state (``llama_memory_seq_cp``) and sample their first token from
        the same logits, so ``n`` answers cost one prefill. The group waits
        until that many slots are free.
        """
        arrived = next(self._arrivals)
        leader, *rest = [_Request(job, generation, emit, arrived, index=i)
                         for i, (generation, emit) in enumerate(choices)]
        leader.siblings = rest
        with self._lock:
            self._inbox.append(leader)
            if self._running:
                return False
            self._running = True
            return True

    def slot_states(self) -> dict[str, int]:
        """How many slots are idle, prefilling, generating (approximate: read off-thread)."""
        counts = {"idle": 0, "prefilling": 0, "generating": 0}
        for slot in list(self._slots):
            req = slot.request
            if req is None:
                counts["idle"] += 1
            elif req.generating:
                counts["generating"] += 1
            else:
                counts["prefilling"] += 1
        return counts

    # -- on the worker thread ----------------------------------------------------

    def run(self) -> None:
        """Step until no request is left; then return (``submit`` starts it again)."""
        if self._idle_since is not None and self._clock() - self._idle_since >= IDLE_RECHECK_S:
            self.threads.wake(self._idle_watch.free_cores())
        try:
            while True:
                with self._lock:
                    new = self._pop_inbox()
                    idle = not new and not self._waiting and not self._busy()
                    if idle:
                        self._running = False
                        self._idle_since = self._clock()
                if idle:
                    # (Outside the lock: a submit must not wait for psutil.)
                    self._idle_watch.start()
                    return
                self._waiting.extend(new)
                self._admit_waiting()
                # The rest of a burst arrives while its first request is
                # admitted: take it into this step, not the next one (a step
                # is 15-50 ms; admitting is under 1 ms a request).
                while self._take_inbox():
                    self._admit_waiting()
                if self._busy():
                    self.step()
                elif self._waiting:
                    # Cannot happen while the manager admits at most ``slots``
                    # requests; if it does, fail rather than spin.
                    self._fail(self._waiting.popleft(),
                               GenerationError("no free slot in the engine"))
                self._flush()
        except BaseException as exc:
            _LOGGER.exception("engine step failed")
            self._fail_everything(exc)
        finally:
            self._flush()

    def close(self) -> None:
        """Free the context and the batch (after ``run`` has returned)."""
        llama_cpp = self._llama
        for slot in self._slots:
            if slot.request is not None and slot.request.sampler is not None:
                slot.request.sampler.close()
            slot.request = None
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        self.cache.clear()

    def _take_inbox(self) -> bool:
        """Move newly submitted requests to the wait queue; True if there were any."""
        with self._lock:
            new = self._pop_inbox()
        self._waiting.extend(new)
        return bool(new)

    def _pop_inbox(self) -> list[_Request]:
        """The requests submitted since the last call (the caller holds the lock)."""
        new = list(self._inbox)
        self._inbox.clear()
        return new

    def _busy(self) -> bool:
        return any(slot.request is not None for slot in self._slots)

    def _admit_waiting(self) -> None:
        if self._waiting and len(self.cache):
            self.cache.trim()  # RAM fell below the floor since the last save: give it back
        while self._waiting:
            req = self._waiting[0]
            if req.generation.cancel_event.is_set():
                self._waiting.popleft()
                for member in req.group():
                    member.emit(Finished("cancelled", 0, 0))
                continue
            if sum(slot.request is None for slot in self._slots) < len(req.group()):
                if len(req.group()) > len(self._slots):
                    self._waiting.popleft()  # the manager refuses these; never wait forever
                    self._fail_group(req, GenerationError("more choices than engine slots"))
                    continue
                return
            self._waiting.popleft()
            try:
                self._admit(req)
            except ApiError as exc:  # the request asks what this model cannot do
                self._fail_group(req, exc)
            except Exception as exc:  # a bad template or tokenizer error fails this request only
                _LOGGER.exception("admitting a request failed")
                self._fail_group(req, exc)

    def _admit(self, req: _Request) -> None:
        job = req.job
        tokens, stops = job.tokenized if job.tokenized is not None else self._tokenize(job)
        n_ctx = self.context_size
        prompt_tokens = len(tokens)
        wanted = job.params.max_tokens
        if prompt_tokens == 0:
            # A model without a BOS token makes "" no tokens at all: nothing to decode
            # (llama_decode refuses an empty batch, and that used to fail the engine step).
            raise BadRequest("the prompt is empty: it must hold at least one token",
                             param="messages" if job.messages is not None else "prompt")
        if prompt_tokens >= n_ctx:
            raise ContextLengthExceeded(
                f"the prompt is {prompt_tokens} tokens, {prompt_tokens - n_ctx + 1} over "
                f"this model's context of {n_ctx} tokens (which must also leave room "
                "for at least one generated token)",
                param="messages" if job.messages is not None else "prompt",
            )
        if wanted is not None and prompt_tokens + wanted > n_ctx:
            raise ContextLengthExceeded(
                f"the prompt ({prompt_tokens} tokens) plus max_tokens ({wanted}) is "
                f"{prompt_tokens + wanted - n_ctx} tokens over this model's context of "
                f"{n_ctx} tokens",
                param="max_tokens",
            )
        req.tokens, req.stops = tokens, stops
        req.budget = wanted if wanted is not None else min(job.default_max_tokens,
                                                           n_ctx - prompt_tokens)
        choice = scheduler.choose_slot(
            tokens,
            [scheduler.SlotInfo(s.seq, tuple(s.cached), s.request is None, s.last_used)
             for s in self._slots],
            self.cache.infos(),
        )
        assert choice is not None  # _admit_waiting checked for a free slot
        slot = self._slots[choice.slot]
        seed = job.params.seed if job.params.seed is not None else random.getrandbits(32)
        # Samplers first: a grammar llama.cpp refuses fails the group before
        # any slot is taken.
        for member in req.group():
            member.sampler = build_sampler(job.params, seed + member.index, self._vocab,
                                           self._n_vocab)
        # The slot's old state is saved, and a cached one restored, only at the
        # first step that decodes this request (``_ready``). Admitting a burst
        # is then bookkeeping, and the saves for its later prompts run after
        # the loop has handed them all over: each save's ctypes calls wait for
        # the GIL behind the loop, 5-20 ms apiece during a burst (traced).
        req.setup = choice
        if choice.restore is not None:
            # Out of the cache now, so that no save before setup evicts it.
            req.restoring = self.cache.take(choice.restore)
        expected = (choice.reuse if req.restoring is not None
                    else 0 if choice.restore is not None
                    else min(choice.reuse, len(slot.cached)))
        req.pending = tokens[expected:]
        self._start(slot, req)
        for sibling in req.siblings:
            self._admit_sibling(req, sibling)

    def _start(self, slot: _Slot, req: _Request) -> None:
        req.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        req.matcher = StopMatcher(req.stops)
        slot.request = req
        req.emit(PromptReady(len(req.tokens)))

    def _ready(self, slot: _Slot, req: _Request) -> None:
        """Carry out the slot choice made at admission: save what the slot held,
        restore a cached state, keep the shared prefix."""
        llama_cpp = self._llama
        choice, entry = req.setup, req.restoring
        assert choice is not None
        req.setup = req.restoring = None
        if choice.save_first:
            self._save(slot)
        if choice.restore is not None:
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
            data = (ctypes.c_uint8 * len(entry.data)).from_buffer_copy(entry.data) \
                if entry is not None else None
            if entry is not None and llama_cpp.llama_state_seq_set_data(
                    self._ctx, data, len(entry.data), slot.seq):
                slot.cached = list(entry.tokens)
                self.stats.restores += 1
            else:
                _LOGGER.warning("restoring a cached prompt state failed; prefilling instead")
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
                slot.cached = []
        elif len(self.cache):
            self.cache.miss()
        reuse = min(choice.reuse, len(slot.cached))
        if not llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, reuse, -1):
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
            reuse = 0
        del slot.cached[reuse:]
        self.stats.reused_tokens += reuse
        req.pending = req.tokens[reuse:]

    def _admit_sibling(self, leader: _Request, sibling: _Request) -> None:
        """Give a further choice a slot of its own; it waits there for the leader's prompt."""
        llama_cpp = self._llama
        choice = scheduler.choose_slot(
            [], [scheduler.SlotInfo(s.seq, tuple(s.cached), s.request is None, s.last_used)
                 for s in self._slots])
        assert choice is not None  # _admit_waiting counted a free slot per choice
        slot = self._slots[choice.slot]
        if choice.save_first:
            self._save(slot)
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
        slot.cached = []
        sibling.tokens, sibling.stops, sibling.budget = leader.tokens, leader.stops, leader.budget
        sibling.follows = leader
        self._start(slot, sibling)

    def _save(self, slot: _Slot) -> None:
        """Copy the slot's KV state into the prompt cache before it is overwritten."""
        llama_cpp = self._llama
        if self.cache.largest_entry <= 0 or not slot.cached:
            return
        # A request repeated (a retry, the same question again) leaves the same
        # tokens in its slot: copying that state out again costs 0.4-1 ms per
        # request right before its first token, and keeps nothing new.
        tokens = tuple(slot.cached)
        if self.cache.holds(tokens):
            return
        size = llama_cpp.llama_state_seq_get_size(self._ctx, slot.seq)
        if size <= 0 or size > self.cache.largest_entry:
            return
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self._ctx, buffer, size, slot.seq)
        if written:
            self.cache.put(tokens, bytes(memoryview(buffer)[:written]))

    def step(self) -> None:
        """One decode of every running sequence (and prompt chunks), then sampling."""
        llama_cpp = self._llama
        for slot in self._slots:
            req = slot.request
            if req is not None and req.generation.cancel_event.is_set():
                self._finish(slot, "cancelled")
        demands = [
            scheduler.SeqDemand(slot.seq, 0 if slot.request.generating
                                else len(slot.request.pending), slot.request.arrived,
                                slot.request.began, slot.request.passed)
            for slot in self._slots
            if slot.request is not None and slot.request.follows is None
        ]
        if not demands:
            return
        # Laid out in sequence order: with a KV stream per sequence, llama.cpp
        # cuts a batch wherever the sequence id goes down, and each piece is
        # a pass over all the weights (two streams in slots 1 and 0, in that
        # order, decoded at two thirds of the tokens/s of the same pair in order).
        plan = sorted(scheduler.plan_batch(demands, self.batch_size, self.step_costs.estimate()))
        for seq, _ in plan:
            slot = self._slots[seq]
            if slot.request is not None and slot.request.setup is not None:
                # (A failed restore leaves more to prefill than planned: the
                # planned count is then a chunk, and the rest follows.)
                self._ready(slot, slot.request)
        planned = {seq for seq, _ in plan}
        for d in demands:
            if d.prompt_left and d.seq not in planned:
                request = self._slots[d.seq].request
                assert request is not None
                request.passed += 1
        batch = self._batch
        n = 0
        outputs: list[tuple[_Slot, int]] = []
        for seq, count in plan:
            slot = self._slots[seq]
            req = slot.request
            assert req is not None
            start = len(slot.cached)
            chunk = req.pending[:count]
            for j, token in enumerate(chunk):
                batch.token[n] = token
                batch.pos[n] = start + j
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = 0
                n += 1
            if count == len(req.pending):
                # The last prompt token (or the last sampled one): its logits
                # give the next token.
                batch.logits[n - 1] = 1
                outputs.append((slot, n - 1))
            if not req.generating:
                self.stats.prefill_tokens += len(chunk)
        batch.n_tokens = n
        # Only a step of single tokens (every sequence generating) is a fair
        # sample of decode speed for the tuner; prompt chunks vary too much.
        key = n if n == len(plan) else None
        threads = self.threads.choose(key)
        if threads != self._threads_set:
            llama_cpp.llama_set_n_threads(self._ctx, threads, threads)
            self._threads_set = threads
        self.stats.threads = threads
        started = time.perf_counter()
        rc = llama_cpp.llama_decode(self._ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        elapsed = time.perf_counter() - started
        self.threads.observe(key, threads, elapsed)
        self.step_costs.observe(n, elapsed)
        self.stats.steps += 1
        if len(plan) > 1:
            self.stats.batched_steps += 1
        for seq, count in plan:
            slot = self._slots[seq]
            req = slot.request
            assert req is not None
            slot.cached.extend(req.pending[:count])
            del req.pending[:count]
        now = self._clock()
        for slot, index in outputs:
            slot.last_used = now
            self._sampled(slot, index)
        if self._on_step is not None:
            self._on_step(self)

    def _sampled(self, slot: _Slot, index: int) -> None:
        llama_cpp = self._llama
        req = slot.request
        assert req is not None and req.sampler is not None and req.matcher is not None
        if not req.generating and req.siblings:
            self._branch(slot, index)
        try:
            token = req.sampler.sample(self._ctx, index)
        except NoTokenLeft as exc:  # this request's constraints, not the engine: it alone ends
            self._finish(slot, "stop", failed=exc)
            return
        if not req.generating:
            req.generating, req.began = True, next(self._arrivals)
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._finish(slot, "stop")
            return
        req.produced += 1
        self.stats.generated_tokens += 1
        if req.job.logprobs is not None:
            req.logprobs.append(token_logprobs(llama_cpp.llama_get_logits_ith(self._ctx, index),
                                               self._n_vocab, token, req.job.logprobs,
                                               self._token_bytes))
        text, hit_stop = req.matcher.feed(req.decoder.decode(self._token_bytes(token)))
        if text:
            self._emit_text(req, text)
        if hit_stop:
            self._finish(slot, "stop")
        elif req.produced >= req.budget:
            self._finish(slot, "length")
        else:
            req.pending = [token]

    def _branch(self, leader_slot: _Slot, index: int) -> None:
        """The leader's prompt is in: each waiting sibling copies its KV and samples
        its first token from the same logits row."""
        llama_cpp = self._llama
        leader = leader_slot.request
        assert leader is not None
        for slot in self._slots:
            sibling = slot.request
            if sibling is None or sibling.follows is not leader:
                continue
            # Across KV streams only a whole sequence can be copied; llama.cpp
            # does it at the next decode, before anything reads it.
            llama_cpp.llama_memory_seq_cp(self._memory, leader_slot.seq, slot.seq, -1, -1)
            slot.cached = list(leader_slot.cached)
            sibling.follows = None
            self.stats.reused_tokens += len(slot.cached)
            slot.last_used = leader_slot.last_used
            self._sampled(slot, index)

    def _emit_text(self, req: _Request, text: str) -> None:
        if req.logprobs:
            req.emit(TextPiece(text, tuple(req.logprobs)))
            req.logprobs = []
        else:
            req.emit(TextPiece(text))

    def _token_bytes(self, token: int) -> bytes:
        llama_cpp = self._llama
        n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0,
                                           False)
        if n < 0:
            self._piece = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece,
                                               len(self._piece), 0, False)
        return self._piece.raw[:n]

    def _finish(self, slot: _Slot, reason: FinishReason,
                failed: BaseException | None = None) -> None:
        """The request in ``slot`` is done (or, with ``failed``, ends with that error)."""
        req = slot.request
        assert req is not None and req.matcher is not None
        if reason != "stop" and failed is None:
            tail = req.matcher.flush() + req.decoder.decode(b"", final=True)
            if tail:
                self._emit_text(req, tail)
        if req.sampler is not None:
            req.sampler.close()
        # Siblings still waiting for this prompt must compute it themselves.
        for other in self._slots:
            if other.request is not None and other.request.follows is req:
                other.request.follows = None
                other.request.pending = list(other.request.tokens)
        # Free the slot before the handler hears of the end: it may start the
        # next request (or read the slot states) at once.
        if req.restoring is not None:
            # Ended before its first step: the slot still holds what it held,
            # and the state it would have restored goes back to the cache.
            self.cache.put(req.restoring.tokens, req.restoring.data)
        slot.request = None
        slot.last_used = self._clock()
        # A sequence left mid-prompt (cancelled) keeps only what it computed:
        # ``cached`` already matches its KV.
        req.emit(Failed(failed) if failed is not None
                 else Finished(reason, len(req.tokens), req.produced))

    def _fail_group(self, req: _Request, error: BaseException) -> None:
        for member in req.group():
            if member.sampler is not None:
                member.sampler.close()
                member.sampler = None
            self._fail(member, error)

    def _fail(self, req: _Request, error: BaseException) -> None:
        try:
            req.emit(Failed(error))
        except RuntimeError:
            pass  # the loop is closed: the service is shutting down

    def _fail_everything(self, error: BaseException) -> None:
        llama_cpp = self._llama
        for slot in self._slots:
            req = slot.request
            if req is not None:
                if req.sampler is not None:
                    req.sampler.close()
                slot.request = None
                self._fail(req, error)
            # The KV state is unknown after a failed decode: start the slot afresh.
            if self._memory is not None:
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
            slot.cached = []
        for req in self._waiting:
            self._fail_group(req, error)
        self._waiting.clear()
        with self._lock:
            for req in self._inbox:
                self._fail_group(req, error)
            self._inbox.clear()
            self._running = False
