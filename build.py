#!/usr/bin/env python3
"""Build realm.wasm (Memory64, SIMD128, bulk memory, no libc) from core/ and
copy the WGSL kernels into the package.

    python build.py            # build if anything changed, else do nothing
    python build.py --force    # rebuild anyway
    python build.py --debug    # -O1 -g, keeps names (for traps with stack traces)

Four modules from the same sources, same ABI, same results bit for bit:
  realm.wasm               one thread, its own memory, SIMD128
  realm-mt.wasm            wasm threads: atomics, an imported *shared* memory, an
                           exported __stack_pointer so a host can give each worker
                           instance its own stack (core/threads.c, docs/ARCHITECTURE.md)
  realm-relaxed.wasm       realm.wasm with relaxed SIMD (-mrelaxed-simd:
  realm-mt-relaxed.wasm    i16x8.relaxed_dot_i8x16_i7x16 in the quant kernels,
                           core/quant_impl.h); hosts that have relaxed SIMD load
                           these, the others the plain ones

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
from tools import abigen

ROOT = Path(__file__).resolve().parent
CORE = ROOT / "core"
WGSL = ROOT / "wgsl"
PKG = ROOT / "realm_web"
OUT_WASM = PKG / "wasm" / "realm.wasm"
OUT_MT = PKG / "wasm" / "realm-mt.wasm"
MT_CFLAGS = ["-matomics"]
MT_LDFLAGS = ["-Wl,--shared-memory", "-Wl,--import-memory", "-Wl,--export-memory", "-Wl,--export=__stack_pointer"]
# wasm-ld parses --max-memory as 32 bits, but a shared memory must declare a
# maximum: the linked module's import is patched to this many 64 KiB pages,
# 16 GiB, V8's limit for Memory64 (a bigger declared maximum fails to compile
# there). The wasmtime host raises it to its 64 GiB reservation when it loads
# the module (realm_web/wasm_binary.py).
MT_MAX_PAGES = 1 << 18
# wasm32: 4 GiB, the most a 32-bit memory can address (V8 and WebKit accept it)
MT32_MAX_PAGES = 1 << 16
RELAXED_FLAGS = ["-mrelaxed-simd"]
OUT_WGSL = PKG / "wgsl"
STAMP = PKG / "wasm" / ".build-stamp.json"

TARGET = "wasm64-freestanding"
# the wasm32 builds, for engines without Memory64 (Safari, Node 20, older
# Chromium and Firefox): 4 GiB of memory at most, same results bit for bit
TARGET32 = "wasm32-freestanding"
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
    for p in sorted(list(CORE.glob("*.[ch]")) + list(WGSL.glob("**/*.wgsl"))) + [
            Path(__file__), PKG / "wasm_binary.py", abigen.SCHEMA]:
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


def variants(opt: list[str]) -> list[tuple[Path, Path, list[str]]]:
    """(module, its stamp, its flags) for the eight builds: four Memory64 (realm*),
    four wasm32 (realm32*, the same with 32-bit pointers)."""
    out = []
    for base, target in (("realm", TARGET), ("realm32", TARGET32)):
        for mt in (False, True):
            for relaxed in (False, True):
                name = base + ("-mt" if mt else "") + ("-relaxed" if relaxed else "")
                flags = [f"--target={target}"] + CFLAGS + (MT_CFLAGS if mt else []) + (RELAXED_FLAGS if relaxed else []) \
                    + opt + LDFLAGS + (MT_LDFLAGS if mt else [])
                stamp = STAMP if name == "realm" else PKG / "wasm" / f".build-stamp{name[5:]}.json"
                out.append((PKG / "wasm" / f"{name}.wasm", stamp, flags))
    return out


def build(force: bool = False, debug: bool = False, quiet: bool = False) -> Path:
    """All four modules (those whose inputs changed, compiled side by side); returns realm.wasm's path."""
    opt = ["-O1", "-g"] if debug else ["-O3", "-s"]
    abigen.main([])  # core/abi.h and every host's view of the ABI, from core/abi.json
    if not sources():
        sys.exit("build.py: no C sources in core/")
    stale = []
    for out, stamp, flags in variants(opt):
        digest = inputs_digest(flags)
        if not force and out.exists() and stamp.exists() and json.loads(stamp.read_text()).get("digest") == digest:
            if not quiet:
                print(f"build.py: up to date: {out.relative_to(ROOT)}")
        else:
            stale.append((out, stamp, flags, digest))
    if stale:
        OUT_WASM.parent.mkdir(parents=True, exist_ok=True)
        procs = [(v, _start_compile(v[0], v[2])) for v in stale]
        failed = None
        for (out, stamp, flags, digest), proc in procs:
            stdout, stderr = proc.communicate()
            if proc.returncode != 0:
                sys.stderr.write(stdout + stderr)
                failed = failed or f"build.py: compiling {out.name} failed (exit {proc.returncode})"
                continue
            if stderr.strip() and not quiet:
                sys.stderr.write(stderr)
            _finish(out, stamp, flags, digest, quiet)
        if failed:
            sys.exit(failed)
        n_wgsl = copy_wgsl()
        if not quiet:
            print(f"build.py: copied {n_wgsl} WGSL files")
    return OUT_WASM


def _start_compile(out: Path, flags: list[str]) -> subprocess.Popen:
    tmp = out.with_suffix(".wasm.tmp")
    cmd = compiler_cmd() + flags + ["-o", str(tmp)] + [str(s) for s in sources()]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(out: Path, stamp: Path, flags: list[str], digest: str, quiet: bool) -> None:
    tmp = out.with_suffix(".wasm.tmp")
    if "-Wl,--shared-memory" in flags:
        wasm32 = f"--target={TARGET32}" in flags
        tmp.write_bytes(set_imported_memory_max(tmp.read_bytes(), MT32_MAX_PAGES if wasm32 else MT_MAX_PAGES))
    tmp.replace(out)
    stamp.write_text(json.dumps({"digest": digest, "flags": flags}))
    if not quiet:
        print(f"build.py: built {out.relative_to(ROOT)} ({out.stat().st_size:,} bytes, {len(sources())} C files, "
              f"{flags[0].split('=')[1]}, {'debug' if '-g' in flags else 'release'}"
              f"{', relaxed SIMD' if RELAXED_FLAGS[0] in flags else ''}"
              f"{', threads' if MT_CFLAGS[0] in flags else ''})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    ap.add_argument("--debug", action="store_true", help="-O1 -g build with names")
    args = ap.parse_args()
    build(force=args.force, debug=args.debug)


if __name__ == "__main__":
    main()
