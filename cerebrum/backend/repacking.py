"""Whether llama.cpp may repack a model's weights for this CPU, and the guard where not.

llama.cpp copies weights into "extra" buffer types at load time for faster
matrix products (interleaved layouts, and Intel AMX tiles where the CPU has
AMX). On AMX CPUs (Sapphire Rapids and later) the AMX path crashes the process
in ``ggml_backend_amx_mul_mat`` during decoding: seen here with the embedded
Q4_1 model in the engine, in the embedder and in llama.cpp's own llama-server
alike (llama.cpp issue 20824, open). So on such a CPU every model the backend
loads skips the extra buffers, as llama-server's ``--no-repack`` does.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

_LOGGER = logging.getLogger(__name__)
_AMX = b"AMX_INT8 = 1"
_lock = threading.Lock()
_guarded = False
_original: Any = None
"""llama-cpp-python's own ``llama_model_default_params``, once the guard replaced it."""


def repacking_is_safe(system_info: bytes | None = None) -> bool:
    """False where llama.cpp would use its AMX kernels (built with them, on an AMX CPU)."""
    if system_info is None:
        import llama_cpp

        system_info = llama_cpp.llama_print_system_info()
    return _AMX not in system_info


def guard(system_info: bytes | None = None) -> bool:
    """Where repacking is unsafe, make every later model load skip the extra buffers.

    ``llama_cpp.Llama`` builds its model parameters from
    ``llama_model_default_params`` and offers no switch for this one, so the
    default itself is changed, once, for the whole process. Returns whether
    the guard is on.
    """
    global _guarded, _original
    with _lock:
        if _guarded:
            return True
        if repacking_is_safe(system_info):
            return False
        import llama_cpp
        import llama_cpp.llama_cpp as low_level

        original = _original = low_level.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        # The package re-exports the function: both names are looked up at call time.
        low_level.llama_model_default_params = without_extra_buffers
        llama_cpp.llama_model_default_params = without_extra_buffers
        _guarded = True
    _LOGGER.info("this CPU has AMX: models load without llama.cpp's weight repacking "
                 "(its AMX kernels crash; llama.cpp issue 20824)")
    return True


def llama_server_flags() -> list[str]:
    """The same choice for llama.cpp's own ``llama-server`` (the benchmarks' yardstick,
    and some tests' foreign backend): ``--no-repack`` where repacking is unsafe."""
    return [] if repacking_is_safe() else ["--no-repack"]
