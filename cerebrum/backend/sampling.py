"""One request's llama.cpp sampler chain, and per-token log-probabilities.

``build_sampler`` is the one place where a request's sampling parameters
become a llama.cpp sampler chain: every slot gets its own chain, so
temperature, top_p, seed, penalties, logit_bias and the output grammar are
independent across the requests batched together.

The chain, in llama.cpp's own order (``common/sampling.cpp``): logit_bias →
penalties (repeat, frequency, presence over the last 64 tokens) → top_k →
top_p → min_p → temperature → dist, or greedy at temperature 0; a step is
only added when it changes something, so a request without the extras gets
exactly the chain (and, for a seed, the text) it got before.

A grammar (JSON mode, a JSON Schema, a tool call) is not a link of the chain:
checking every one of the 49k tokens against it each step would cost more
than decoding a 135M model. As llama.cpp's server does, the token the chain
picks is checked against the grammar alone, and only when the grammar refuses
it are the logits filtered by the grammar and sampled again. A lazy grammar
(``tool_choice: auto``) lets everything through until its trigger appears.

``token_logprobs`` turns the logits row the engine sampled from into the
sampled token's log-probability and the top-n alternatives; the engine calls
it only for requests that asked (``GenerationJob.logprobs``).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from typing import Any

import attrs

from cerebrum.backend import llama_private
from cerebrum.errors import BadRequest
from cerebrum.openai_wire import SamplingParams

# Sampling defaults shared with llama.cpp's own server, so the two compare fairly.
TOP_K = 40
MIN_P = 0.05
REPEAT_PENALTY = 1.0
"""No repeat penalty unless a request asks (llama.cpp's default)."""
PENALTY_LAST_N = 64
"""Tokens the repeat/frequency/presence penalties look back over (llama.cpp's default)."""


class NoTokenLeft(BadRequest):
    """Sampling found no token the request's constraints allow (raised mid-generation)."""


class Sampler:
    """Owns a llama.cpp sampler chain (and a grammar sampler); ``close`` frees them."""

    def __init__(self, chain: Any, grammar: Any = None, n_vocab: int = 0) -> None:
        self.chain = chain
        self.grammar = grammar
        self._n_vocab = n_vocab
        self._candidates: Any = None

    def sample(self, ctx: Any, index: int) -> int:
        """Sample (and accept) a token from output ``index`` of the last decode."""
        import llama_cpp

        if self.grammar is None:
            return int(llama_cpp.llama_sampler_sample(self.chain, ctx, index))
        return self._sample_with_grammar(ctx, index)

    def _sample_with_grammar(self, ctx: Any, index: int) -> int:
        import llama_cpp
        import numpy as np
        if self._candidates is None:
            self._candidates = llama_private.token_data_array(self._n_vocab)
        candidates = self._candidates
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index),
                                    shape=(self._n_vocab,))
        candidates.copy_logits(row)
        array = ctypes.byref(candidates.candidates)
        llama_cpp.llama_sampler_apply(self.chain, array)
        token = int(candidates.candidates.data[candidates.candidates.selected].id)
        single = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 1.0, 0.0))
        check = llama_cpp.llama_token_data_array(data=single, size=1, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(check))
        if not math.isfinite(single[0].logit):
            # Refused: filter every token by the grammar, then run the chain again.
            candidates.copy_logits(row)
            llama_cpp.llama_sampler_apply(self.grammar, array)
            llama_cpp.llama_sampler_apply(self.chain, array)
            chosen = candidates.candidates.data[candidates.candidates.selected]
            if not math.isfinite(chosen.logit):
                # Nothing the grammar allows is left (a logit_bias banned it all):
                # accepting a refused token aborts the whole process in llama.cpp.
                raise NoTokenLeft("the request's logit_bias bans every token its output "
                                  "format allows at this point of the answer",
                                  param="logit_bias")
            token = int(chosen.id)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.chain, token)
        return token

    def close(self) -> None:
        import llama_cpp

        if self.chain is not None:
            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None
        if self.grammar is not None:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None


def build_sampler(params: SamplingParams, seed: int, vocab: Any = None,
                  n_vocab: int = 0) -> Sampler:
    """The chain for one request (see the module docstring); raises BadRequest for a
    ``logit_bias`` token outside the vocabulary or a grammar llama.cpp refuses.

    ``vocab``/``n_vocab`` are needed for logit_bias, penalties and grammars.
    """
    import llama_cpp

    grammar = _grammar_sampler(params, vocab) if params.grammar is not None else None
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    try:
        if params.logit_bias:
            add(chain, _logit_bias(params.logit_bias, n_vocab))
        repeat = params.repeat_penalty if params.repeat_penalty is not None else REPEAT_PENALTY
        if repeat != 1.0 or params.frequency_penalty or params.presence_penalty:
            add(chain, llama_cpp.llama_sampler_init_penalties(
                n_vocab, PENALTY_LAST_N, repeat, params.frequency_penalty,
                params.presence_penalty))
        if params.temperature == 0.0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            add(chain, llama_cpp.llama_sampler_init_top_k(
                params.top_k if params.top_k is not None else TOP_K))
            add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_min_p(
                params.min_p if params.min_p is not None else MIN_P, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    except BaseException:
        llama_cpp.llama_sampler_free(chain)
        if grammar is not None:
            llama_cpp.llama_sampler_free(grammar)
        raise
    return Sampler(chain, grammar, n_vocab)


def _logit_bias(biases: tuple[tuple[int, float], ...], n_vocab: int) -> Any:
    import llama_cpp

    for token, _ in biases:
        if not 0 <= token < n_vocab:
            raise BadRequest(f"token {token} is not in this model's vocabulary of {n_vocab}",
                             param=f"logit_bias.{token}")
    # OpenAI's -100 bans a token outright; llama.cpp adds the bias to the logit,
    # where -100 nearly always suffices, so make it certain.
    entries = (llama_cpp.llama_logit_bias * len(biases))(*[
        llama_cpp.llama_logit_bias(token, -math.inf if bias <= -100 else bias)
        for token, bias in biases])
    return llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(biases), entries)


def _grammar_sampler(params: SamplingParams, vocab: Any) -> Any:
    import llama_cpp

    compiled = params.grammar
    text, root = compiled.gbnf.encode(), compiled.root.encode()
    if compiled.lazy:
        patterns = (ctypes.c_char_p * len(compiled.lazy_patterns))(
            *[p.encode() for p in compiled.lazy_patterns])
        sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            vocab, text, root, patterns, len(compiled.lazy_patterns), None, 0)
    else:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, text, root)
    if not sampler:
        raise BadRequest("the output grammar for this request could not be compiled",
                         param=compiled.param, code="invalid_grammar")
    return sampler


@attrs.frozen
class TokenLogprob:
    """The sampled token's log-probability and the most likely alternatives."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]
    """``(token, logprob)`` of the ``n`` most likely tokens, most likely first."""
    text_bytes: bytes = b""
    """The token's bytes (what the wire's ``token`` and ``bytes`` are made of)."""
    top_bytes: tuple[tuple[bytes, float], ...] = ()
    """``top`` with each token's bytes in place of its id."""


def token_logprobs(logits: Any, n_vocab: int, token: int, top_n: int,
                   piece: Callable[[int], bytes] | None = None) -> TokenLogprob:
    """Log-softmax of the raw logits row (a ``float*`` of ``n_vocab``) at ``token``, and top-n.

    These are the model's own probabilities, before temperature and
    truncation, as OpenAI reports them.
    """
    import numpy as np

    row = np.ctypeslib.as_array(ctypes.cast(logits, ctypes.POINTER(ctypes.c_float)),
                                shape=(n_vocab,))
    peak = float(row.max())
    log_z = peak + math.log(float(np.exp(row - peak).sum()))
    top: tuple[tuple[int, float], ...] = ()
    if top_n > 0:
        idx = np.argpartition(row, -top_n)[-top_n:]
        idx = idx[np.argsort(row[idx])[::-1]]
        top = tuple((int(i), float(row[i]) - log_z) for i in idx)
    if piece is None:
        return TokenLogprob(token, float(row[token]) - log_z, top)
    return TokenLogprob(token, float(row[token]) - log_z, top, piece(token),
                        tuple((piece(i), logprob) for i, logprob in top))
