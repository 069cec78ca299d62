#!/usr/bin/env python3
"""Build realm.wasm (Memory64, SIMD128, bulk memory, no libc) from core/ and
copy the WGSL kernels into the package.

    python build.py            # build if anything changed, else do nothing
    python build.py --force    # rebuild anyway
    python build.py --debug    # -O1 -g, keeps names (for traps with stack traces)
    python build.py --relaxed  # also realm_web/wasm/realm-relaxed.wasm (relaxed SIMD, see below)

Two modules from the same sources, same ABI: realm.wasm (one thread, its own
memory) and realm-mt.wasm (wasm threads: atomics, an imported *shared*
memory, an exported __stack_pointer so a host can give each worker instance
its own stack; see core/threads.c and docs/ARCHITECTURE.md "Threads").

The compiler is clang as shipped in the `ziglang` PyPI package
(`python -m ziglang cc`); see ../shared/PLATFORM.md for why.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

from realm_web.wasm_binary import set_imported_memory_max

ROOT = Path(__file__).resolve().parent
CORE = ROOT / "core"
WGSL = ROOT / "wgsl"
PKG = ROOT / "realm_web"
OUT_WASM = PKG / "wasm" / "realm.wasm"
# --relaxed: a second module built with -mrelaxed-simd (i16x8.relaxed_dot_i8x16_i7x16
# in the quant kernels, core/quant_impl.h). Same ABI, same results bit for bit;
# hosts that support relaxed SIMD (V8/Chromium/Node by default; wasmtime with
# Config.wasm_relaxed_simd, on by default in wasmtime-py 50) may load it instead.
OUT_RELAXED = PKG / "wasm" / "realm-relaxed.wasm"
OUT_MT = PKG / "wasm" / "realm-mt.wasm"
MT_CFLAGS = ["-matomics"]
MT_LDFLAGS = ["-Wl,--shared-memory", "-Wl,--import-memory", "-Wl,--export-memory", "-Wl,--export=__stack_pointer"]
# wasm-ld parses --max-memory as 32 bits, but a shared memory must declare a
# maximum: the linked module's import is patched to this many 64 KiB pages,
# 16 GiB, V8's limit for Memory64 (a bigger declared maximum fails to compile
# there). The wasmtime host raises it to its 64 GiB reservation when it loads
# the module (realm_web/wasm_binary.py).
MT_MAX_PAGES = 1 << 18
RELAXED_FLAGS = ["-mrelaxed-simd"]
OUT_WGSL = PKG / "wgsl"
STAMP = PKG / "wasm" / ".build-stamp.json"

TARGET = "wasm64-freestanding"
CFLAGS = [
    "-std=c11", "-ffreestanding", "-nostdlib", "-msimd128", "-mbulk-memory",
    "-mnontrapping-fptoint", "-msign-ext",
    # reductions may reassociate (SIMD sums); keep NaN/Inf semantics otherwise
    "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math",
    "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror=implicit-function-declaration",
]
LDFLAGS = [
    "-Wl,--no-entry", "-Wl,--export-dynamic",
    "-Wl,-z,stack-size=8388608",     # 8 MiB shadow stack
    "-Wl,--initial-memory=16777216",  # 16 MiB; the allocator grows it
]


def compiler_cmd() -> list[str]:
    if importlib.util.find_spec("ziglang") is None:
        sys.exit("build.py: the C compiler is missing. Install it with:  pip install ziglang")
    return [sys.executable, "-m", "ziglang", "cc"]


def sources() -> list[Path]:
    return sorted(CORE.glob("*.c"))


def inputs_digest(flags: list[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(flags).encode())
    for p in sorted(list(CORE.glob("*.[ch]")) + list(WGSL.glob("**/*.wgsl"))) + [Path(__file__), PKG / "wasm_binary.py"]:
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def copy_wgsl() -> int:
    if OUT_WGSL.exists():
        shutil.rmtree(OUT_WGSL)
    OUT_WGSL.mkdir(parents=True)
    n = 0
    for f in sorted(WGSL.glob("**/*.wgsl")):
        dst = OUT_WGSL / f.relative_to(WGSL)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
        n += 1
    return n


def build(force: bool = False, debug: bool = False, quiet: bool = False, relaxed: bool = False) -> Path:
    """realm.wasm and realm-mt.wasm (or, with relaxed, realm-relaxed.wasm alone); returns realm.wasm's path."""
    opt = ["-O1", "-g"] if debug else ["-O3", "-s"]
    if relaxed:  # a separate module with its own stamp; realm.wasm is left as it is
        return _build_one(OUT_RELAXED, OUT_RELAXED.with_name(".build-stamp-relaxed.json"),
                          CFLAGS + RELAXED_FLAGS + opt + LDFLAGS, force, quiet)
    _build_one(OUT_MT, OUT_MT.with_name(".build-stamp-mt.json"), CFLAGS + MT_CFLAGS + opt + LDFLAGS + MT_LDFLAGS,
               force, quiet)
    return _build_one(OUT_WASM, STAMP, CFLAGS + opt + LDFLAGS, force, quiet)


def _build_one(OUT_WASM: Path, STAMP: Path, flags: list[str], force: bool, quiet: bool) -> Path:
    digest = inputs_digest(flags)
    if not force and OUT_WASM.exists() and STAMP.exists():
        if json.loads(STAMP.read_text()).get("digest") == digest:
            if not quiet:
                print(f"build.py: up to date: {OUT_WASM.relative_to(ROOT)}")
            return OUT_WASM
    srcs = sources()
    if not srcs:
        sys.exit("build.py: no C sources in core/")
    OUT_WASM.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT_WASM.with_suffix(".wasm.tmp")
    cmd = compiler_cmd() + [f"--target={TARGET}"] + flags + ["-o", str(tmp)] + [str(s) for s in srcs]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout + res.stderr)
        sys.exit(f"build.py: compiling realm.wasm failed (exit {res.returncode})")
    if res.stderr.strip() and not quiet:
        sys.stderr.write(res.stderr)
    if "-Wl,--shared-memory" in flags:
        tmp.write_bytes(set_imported_memory_max(tmp.read_bytes(), MT_MAX_PAGES))
    tmp.replace(OUT_WASM)
    n_wgsl = copy_wgsl()
    STAMP.write_text(json.dumps({"digest": digest, "flags": flags}))
    if not quiet:
        size = OUT_WASM.stat().st_size
        print(f"build.py: built {OUT_WASM.relative_to(ROOT)} ({size:,} bytes, {len(srcs)} C files, "
              f"{TARGET}, {'debug' if '-g' in flags else 'release'}"
              f"{', relaxed SIMD' if RELAXED_FLAGS[0] in flags else ''}"
              f"{', threads' if MT_CFLAGS[0] in flags else ''}); copied {n_wgsl} WGSL files")
    return OUT_WASM


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    ap.add_argument("--debug", action="store_true", help="-O1 -g build with names")
    ap.add_argument("--relaxed", action="store_true",
                    help="also build realm-relaxed.wasm (-mrelaxed-simd) next to realm.wasm")
    args = ap.parse_args()
    build(force=args.force, debug=args.debug)
    if args.relaxed:
        build(force=args.force, debug=args.debug, relaxed=True)


if __name__ == "__main__":
    main()
