#!/usr/bin/env bash
# Create .venv from Python >= 3.12 and install the project (editable) with its dev extra.
# Usage: bash scripts/setup.sh [--with-lm]   (--with-lm adds transformers/torch for src.infer)
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local candidates=(python3.13 python3.12 python3)
  for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  # pyenv installs that are not the global version
  local root="${PYENV_ROOT:-$HOME/.pyenv}"
  for p in "$root"/versions/3.1[2-9]*/bin/python3; do
    if [ -x "$p" ]; then echo "$p"; return 0; fi
  done
  return 1
}

PY=$(find_python) || { echo "setup: Python >= 3.12 not found (install it, e.g. with pyenv)" >&2; exit 1; }
extras="dev"
[ "${1:-}" = "--with-lm" ] && extras="dev,lm"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$extras" = "dev,lm" ]; then
  # llama-cpp-python (the real OpenAI-compatible server of the HTTP-backend tests) compiles
  # from source; a native build switches on AMX on some CPUs and crashes at the first decode
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
  echo "setup: installing the language-model extra (torch, transformers; llama.cpp compiles for several minutes)" >&2
fi
.venv/bin/python -m pip install -q -e ".[${extras}]"
echo "setup: ready ($(.venv/bin/python --version), extras: ${extras})" >&2
