"""Model catalogues from different OpenAI-compatible servers."""

from __future__ import annotations

from cerebrum.orchestrator.backends import BackendPool


def test_context_sizes_from_each_kind_of_backend() -> None:
    pool = BackendPool.from_urls(("http://a", "http://b", "http://c", "http://d"),
                                 failure_threshold=3, cooldown_s=10)
    cerebrum, vllm, llama_server, ollama = pool.backends
    cerebrum.set_models([{"id": "smollm2-135m", "context_length": 2048}])
    vllm.set_models([{"id": "qwen", "max_model_len": 32768}])
    # As llama-server answers /v1/models (seen with the build in bench/.cache).
    llama_server.set_models([{"id": "smollm2-llamacpp", "owned_by": "llamacpp",
                              "meta": {"n_ctx": 4096, "n_ctx_train": 8192}}])
    ollama.set_models([{"id": "codellama:7b", "owned_by": "library"}])
    assert pool.contexts() == {"smollm2-135m": 2048, "qwen": 32768, "smollm2-llamacpp": 4096,
                               "codellama:7b": None}
