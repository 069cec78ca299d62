#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (the reference server of issue 12's benchmark,
# bench/bench_server_batch.py) from the llama.cpp sources vendored in the
# llama-cpp-python sdist, the same llama.cpp the tests compare against. Prints the
# path of the binary on the last line of stdout. Idempotent: a finished build is
# cached and reused; a second caller waits on a lock instead of building twice.
#
#   bash scripts/build_llama_server.sh            # -> .../bin/llama-server
#   LLAMA_SERVER_JOBS=4 bash scripts/build_llama_server.sh
#
# Not part of the tests or CI (benchmarks are not tests); bench_server_batch.py
# calls it when it needs llama-server.
#
# Needs (Debian 12): the apt packages cmake g++ make (setup.sh installs cmake and
# g++ with --no-install-recommends, which leaves out make, a mere Recommends of
# cmake: missing ones are installed here, after one apt-get update, as root or
# through sudo), python3 with pip, and PyPI reachable the first time (for the
# sdist, ~77 MB). Nothing else is downloaded: no curl, no OpenSSL, no web UI (the
# server is built with an empty UI table), no submodules. About 6-10 minutes on 2
# idle cores (19 min seen while other builds shared them); CPU only.
#
# Environment:
#   REALM_CACHE         cache root (default ~/.cache/realm-web)
#   LLAMA_CPP_VERSION   llama-cpp-python version (default: the one scripts/setup.sh pins)
#   LLAMA_SERVER_JOBS   build jobs (default 2)
#   PYTHON              interpreter whose pip fetches the sdist (default python3)
#
# Layout under $REALM_CACHE:
#   sdist/llama_cpp_python-V.tar.gz               the sdist (kept)
#   llama-server/V-<cpu>/src/                     its vendor/llama.cpp
#   llama-server/V-<cpu>/build/bin/llama-server   the binary (GGML_NATIVE: built for
#                                                 this CPU, so the folder is keyed by
#                                                 a hash of /proc/cpuinfo's flags)
#   llama-server/V-<cpu>/build.log
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REALM_CACHE=${REALM_CACHE:-$HOME/.cache/realm-web}
PYTHON=${PYTHON:-python3}
JOBS=${LLAMA_SERVER_JOBS:-2}
if [ -z "${LLAMA_CPP_VERSION:-}" ]; then
    LLAMA_CPP_VERSION=$(sed -n 's/^LLAMA_CPP_VERSION=\([0-9.]*\).*/\1/p' "$ROOT/scripts/setup.sh" | head -n1)
fi
[ -n "$LLAMA_CPP_VERSION" ] || { echo "build_llama_server: no LLAMA_CPP_VERSION" >&2; exit 1; }

log() { echo "build_llama_server: $*" >&2; }

APT_PACKAGES=(cmake g++ make)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    command -v "$p" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    log "installing ${missing[*]} (apt-get)"
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || { log "could not install ${missing[*]}: apt-get install ${APT_PACKAGES[*]}"; exit 1; }
fi

cpu_key=$( (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m) | sha256sum | cut -c1-8)
DIR=$REALM_CACHE/llama-server/$LLAMA_CPP_VERSION-$cpu_key
BIN=$DIR/build/bin/llama-server
STAMP=$DIR/.done

if [ -f "$STAMP" ] && [ -x "$BIN" ]; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$DIR" "$REALM_CACHE/sdist"
exec 9>"$DIR/.lock"
flock 9
if [ -f "$STAMP" ] && [ -x "$BIN" ]; then   # built by whoever held the lock
    echo "$BIN"
    exit 0
fi

# 1. the sdist: our cache, then pip's --find-links folders, then PyPI through pip
#    (pip download reuses pip's own HTTP cache when it has the file)
SDIST_NAME=llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz
SDIST=$REALM_CACHE/sdist/$SDIST_NAME
if [ ! -s "$SDIST" ]; then
    for d in ${PIP_FIND_LINKS:-}; do
        if [ -s "$d/$SDIST_NAME" ]; then
            log "sdist from $d"
            cp "$d/$SDIST_NAME" "$SDIST.part" && mv "$SDIST.part" "$SDIST"
            break
        fi
    done
fi
if [ ! -s "$SDIST" ]; then
    log "downloading the llama-cpp-python $LLAMA_CPP_VERSION sdist (pip download)"
    tmp=$(mktemp -d "$REALM_CACHE/sdist/.dl.XXXXXX")
    "$PYTHON" -m pip download --no-binary :all: --no-deps --disable-pip-version-check \
        -d "$tmp" "llama-cpp-python==$LLAMA_CPP_VERSION" >&2
    mv "$tmp/$SDIST_NAME" "$SDIST"
    rm -rf "$tmp"
fi

# 2. its vendor/llama.cpp
SRC=$DIR/src
if [ ! -f "$SRC/CMakeLists.txt" ] || [ ! -f "$SRC/tools/server/CMakeLists.txt" ]; then
    log "unpacking vendor/llama.cpp from $SDIST"
    rm -rf "$SRC" "$DIR/unpack"
    mkdir -p "$DIR/unpack"
    tar -xzf "$SDIST" -C "$DIR/unpack" "llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp"
    mv "$DIR/unpack/llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp" "$SRC"
    rm -rf "$DIR/unpack"
fi

# 3. configure + build only the llama-server target
#    LLAMA_CURL=OFF: no libcurl (deprecated in this llama.cpp, kept for older ones);
#    LLAMA_OPENSSL=OFF: no HTTPS; LLAMA_USE_PREBUILT_UI=OFF / LLAMA_BUILD_UI=OFF: the
#    web UI would be downloaded or built with npm: the server runs without it.
LOGF=$DIR/build.log
log "building llama-server ($JOBS jobs; log: $LOGF)"
t0=$SECONDS
if ! { cmake -S "$SRC" -B "$DIR/build" -DCMAKE_BUILD_TYPE=Release \
            -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
            -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
            -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
            -DBUILD_SHARED_LIBS=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF \
       && cmake --build "$DIR/build" --config Release --target llama-server -j "$JOBS"; } >"$LOGF" 2>&1; then
    tail -n 40 "$LOGF" >&2
    log "build failed (full log: $LOGF)"
    exit 1
fi
"$BIN" --version >/dev/null 2>&1 || { log "$BIN does not run"; exit 1; }
touch "$STAMP"
log "built in $((SECONDS - t0)) s"
echo "$BIN"
