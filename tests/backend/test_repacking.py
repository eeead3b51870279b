"""The AMX guard: on a CPU whose llama.cpp uses AMX kernels, models load without repacking."""

from __future__ import annotations

import llama_cpp
import pytest

from cerebrum.backend import repacking

AMX_INFO = b"CPU : AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | OPENMP = 1 | REPACK = 1 | "
PLAIN_INFO = b"CPU : AVX2 = 1 | FMA = 1 | OPENMP = 1 | REPACK = 1 | "


def test_amx_is_unsafe_and_avx2_is_safe() -> None:
    assert not repacking.repacking_is_safe(AMX_INFO)
    assert repacking.repacking_is_safe(PLAIN_INFO)


@pytest.fixture
def unguarded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process where the guard has not run yet (restored afterwards)."""
    # On an AMX machine an earlier test's model load has already guarded this process.
    original = repacking._original or llama_cpp.llama_cpp.llama_model_default_params
    monkeypatch.setattr(repacking, "_guarded", False)
    monkeypatch.setattr(repacking, "_original", None)
    monkeypatch.setattr(llama_cpp.llama_cpp, "llama_model_default_params", original)
    monkeypatch.setattr(llama_cpp, "llama_model_default_params", original)


@pytest.mark.usefixtures("unguarded")
def test_guard_turns_extra_buffers_off_on_amx() -> None:
    assert repacking.guard(AMX_INFO)
    assert llama_cpp.llama_model_default_params().use_extra_bufts is False
    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is False


@pytest.mark.usefixtures("unguarded")
def test_guard_leaves_other_cpus_alone() -> None:
    assert not repacking.guard(PLAIN_INFO)
    assert llama_cpp.llama_model_default_params().use_extra_bufts is True
