"""Model routing by language."""

import pytest

from cerebrum.prompt.routing import DEFAULT_LANGUAGE_MODELS, route_model

QWEN = DEFAULT_LANGUAGE_MODELS["python"]
LLAMA = DEFAULT_LANGUAGE_MODELS["rust"]
AVAILABLE = {QWEN, LLAMA, "small-default"}


@pytest.mark.parametrize("language", ["python", "javascript", "typescript"])
def test_qwen_for_python_and_js(language: str) -> None:
    assert "qwen" in DEFAULT_LANGUAGE_MODELS[language].lower()
    assert route_model(None, language, AVAILABLE, default_model="small-default") == QWEN


@pytest.mark.parametrize("language", ["rust", "c", "cpp"])
def test_codellama_for_rust_and_c(language: str) -> None:
    assert "codellama" in DEFAULT_LANGUAGE_MODELS[language].lower()
    assert route_model("auto", language, AVAILABLE, default_model="small-default") == LLAMA


def test_explicit_model_wins() -> None:
    assert route_model("my-model", "python", AVAILABLE, default_model="small-default") == "my-model"


def test_unavailable_mapped_model_falls_back() -> None:
    assert route_model(None, "rust", {QWEN}, default_model=QWEN) == QWEN


def test_unmapped_language_gets_default() -> None:
    assert route_model("", "go", AVAILABLE, default_model="small-default") == "small-default"
    assert route_model("AUTO", "text", AVAILABLE, default_model="small-default") == "small-default"


def test_custom_map() -> None:
    assert (
        route_model(None, "go", {"gopher"}, language_models={"go": "gopher"}, default_model="x")
        == "gopher"
    )
