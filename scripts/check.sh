#!/usr/bin/env bash
# README command 2 (and what CI's .ci/run calls): install everything the tests
# need (scripts/setup.sh: apt, pip, npm, the llama.cpp reference, the default
# model, realm.wasm), then run the whole test suite (scripts/test.sh).
# Extra arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
t0=$SECONDS
bash "$ROOT/scripts/setup.sh"
echo "check: setup took $((SECONDS - t0)) s; running the tests"
exec bash "$ROOT/scripts/test.sh" "$@"
