"""One request's llama.cpp sampler chain, and per-token log-probabilities.

``build_sampler`` is the one place where a request's sampling parameters
become a llama.cpp sampler chain: every slot gets its own chain, so
temperature, top_p, seed (and later grammar, penalties, logit_bias) are
independent across the requests batched together. Extend it here.

``token_logprobs`` turns the logits row the engine sampled from into the
sampled token's log-probability and the top-n alternatives; the engine calls
it only for requests that asked (``GenerationJob.logprobs``).
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import attrs

from cerebrum.openai_wire import SamplingParams

# Sampling defaults shared with llama.cpp's own server, so the two compare fairly.
TOP_K = 40
MIN_P = 0.05
REPEAT_PENALTY = 1.0
"""No repeat penalty (llama.cpp's default): the chain leaves the penalties sampler out."""


class Sampler:
    """Owns a llama.cpp sampler chain; ``close`` frees it (idempotent)."""

    def __init__(self, chain: Any) -> None:
        self.chain = chain

    def sample(self, ctx: Any, index: int) -> int:
        """Sample (and accept) a token from output ``index`` of the last decode."""
        import llama_cpp

        return int(llama_cpp.llama_sampler_sample(self.chain, ctx, index))

    def close(self) -> None:
        import llama_cpp

        if self.chain is not None:
            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None


def build_sampler(params: SamplingParams, seed: int, vocab: Any = None) -> Sampler:
    """The chain for one request: greedy at temperature 0, else top-k → top-p → min-p → temp → dist.

    The order and defaults are llama-cpp-python's ``Llama.generate`` ones
    (without its identity steps), so a given seed gives the text it gave
    before the engine existed. ``vocab`` (the model's ``llama_vocab``) is
    what a grammar sampler, penalties or logit bias need
    (``llama_sampler_init_grammar(vocab, ...)``, ``llama_vocab_n_tokens(vocab)``):
    add them to the chain here, before the final selection.
    """
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    if params.temperature == 0.0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
    else:
        add(chain, llama_cpp.llama_sampler_init_top_k(TOP_K))
        add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        add(chain, llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return Sampler(chain)


@attrs.frozen
class TokenLogprob:
    """The sampled token's log-probability and the most likely alternatives."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]
    """``(token, logprob)`` of the ``n`` most likely tokens, most likely first."""


def token_logprobs(logits: Any, n_vocab: int, token: int, top_n: int) -> TokenLogprob:
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
    return TokenLogprob(token, float(row[token]) - log_z, top)
