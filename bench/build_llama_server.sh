#!/usr/bin/env bash
# Build llama.cpp's own llama-server (C++) from the source vendored in the
# llama-cpp-python sdist, once; cached under bench/.cache/. Prints the binary's path.
# Downloads nothing but the llama-cpp-python sdist (pip download from PyPI).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
# The physical path: bench/.cache may be a symlink shared by several checkouts,
# and CMake ties a build folder to the path it was configured under.
mkdir -p "$here/.cache"
cache="$(cd "$here/.cache" && pwd -P)"
src="$cache/llama_cpp_python-$version"
build="$cache/llama-server-build-$version"
bin="$build/bin/llama-server"
if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$cache"
# One build at a time per cache (the test suite and a benchmark may both ask):
# a second caller waits for the first, then finds the binary.
if command -v flock >/dev/null; then
    exec 9>"$cache/.build.lock"
    if ! flock -n 9; then
        echo "build_llama_server: another build is running; waiting for it" >&2
        flock 9
    fi
    if [[ -x "$bin" ]]; then
        echo "$bin"
        exit 0
    fi
fi
python="${PYTHON:-$here/../.venv/bin/python}"
if [[ ! -d "$src/vendor/llama.cpp" ]]; then
    sdist="$(ls "$cache"/llama_cpp_python-"$version".tar.gz 2>/dev/null || true)"
    if [[ -z "$sdist" ]]; then
        "$python" -m pip download --no-deps --no-binary :all: \
            "llama-cpp-python==$version" -d "$cache" >&2
        sdist="$cache/llama_cpp_python-$version.tar.gz"
    fi
    tar -xzf "$sdist" -C "$cache"
fi
cmake -S "$src/vendor/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$build" --config Release --target llama-server -j2 >&2
echo "$bin"
