#!/usr/bin/env python3
"""The arithmetic ceiling of this CPU for realm.wasm's kernels, next to llama.cpp's:
multiply-adds per nanosecond of the instructions the matrix and attention kernels
are built from, in WebAssembly SIMD under wasmtime (realm_web's own engine
settings) and natively with AVX2 + F16C (what llama-cpp-python's portable ggml
uses on x86-64), measured in one run.

    python bench/simd_ceiling.py

Each row is a loop of eight independent chains of one instruction, so it
measures throughput, not latency:

  int16 dot        i32x4.dot_i16x8_s (pmaddwd)          vs  vpmaddwd ymm
  u8 x i8 dot      i16x8.relaxed_dot_i8x16_i7x16_s      vs  vpmaddubsw ymm
                   (pmaddubsw)
  f32 multiply-add f32x4.relaxed_madd (vfmadd xmm)      vs  vfmadd ymm
  f16 -> f32       realm's conversion (quant_attn.c: a shuffle with zeros, a
                   shift, a mask per four values)  vs  vcvtph2ps ymm (F16C)

What the kernels need per 32 products, on the multiply ports: Q8_0 weights x
Q8_0 activations, four int16 dots in WebAssembly (the relaxed dot takes one
operand of 7 bits, and signed weights do not fit it) against ggml's vpmaddubsw +
vpmaddwd on 32 bytes (after vpsignb); Q4_0 / Q4_K, two u8 x i8 dots and half an
int16 dot (Q4_0: two rows folded first) or one (Q4_K: the sub-block scale) against
one vpmaddubsw and one vpmaddwd ymm; attention, f32 multiply-adds and the f16
cache's conversion (bench/results/cpu-2026-12-07f.md puts the kernels against these).

The ratio column is WebAssembly / native. WebAssembly's SIMD is 128 bits wide and
has no f16 conversion; on a CPU that runs 256-bit instructions at the rate of
128-bit ones (AMD Zen 4 here) every integer dot product has half the native
throughput, so a kernel as efficient as ggml's (the same fraction of its peak)
runs at half its speed wherever the work is compute-bound (prompt processing);
decode streams weights from memory and is not bound by this. Not a test.
"""
from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import build  # noqa: E402
from realm_web.wasm_host import engine  # noqa: E402

# Eight independent chains per loop; `m` is made opaque each iteration so the
# compiler cannot hoist or fold the work.
WASM_C = r"""
#include <wasm_simd128.h>
#define CH 8
#define LOOP(INIT, ...) /* ...: the step of chain i */ \
    v128_t a[CH]; for (int i = 0; i < CH; i++) a[i] = INIT; \
    v128_t m = wasm_i32x4_splat(seed * 3 + 1); \
    for (long k = 0; k < n; k++) { _Pragma("clang loop unroll(full)") for (int i = 0; i < CH; i++) { __VA_ARGS__; } __asm__ volatile("" : "+r"(m)); } \
    v128_t s = a[0]; for (int i = 1; i < CH; i++) s = wasm_v128_xor(s, a[i]); return wasm_i32x4_extract_lane(s, 0);
__attribute__((export_name("dot16"))) int dot16(long n, int seed) { LOOP(wasm_i32x4_splat(i + seed), a[i] = wasm_i32x4_dot_i16x8(a[i], m)) }
__attribute__((export_name("dot8"))) int dot8(long n, int seed) { LOOP(wasm_i32x4_splat(i + seed), a[i] = wasm_i16x8_relaxed_dot_i8x16_i7x16(m, a[i])) }
__attribute__((export_name("fma"))) int fma_(long n, int seed) { LOOP(wasm_f32x4_splat(i + seed), a[i] = wasm_f32x4_relaxed_madd(a[i], m, a[i])) }
/* eight halves -> two f32x4, as core/quant_attn.c's h2f_lo / h2f_hi (times 2^-112) */
__attribute__((export_name("h2f"))) int h2f(long n, int seed) {
    LOOP(wasm_i32x4_splat(i + seed), {
        const v128_t h = wasm_v128_xor(a[i], m), z = wasm_i32x4_splat(0), msk = wasm_i32x4_splat((int)0x8fffffff);
        const v128_t lo = wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(z, h, 0, 8, 1, 9, 2, 10, 3, 11), 3), msk);
        const v128_t hi = wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(z, h, 4, 12, 5, 13, 6, 14, 7, 15), 3), msk);
        a[i] = wasm_v128_xor(lo, hi);
    })
}
"""

NATIVE_C = r"""
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define CH 8
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static long long sink;
#define LOOP(NAME, INIT, ...) do { \
    __m256i a[CH]; for (int i = 0; i < CH; i++) a[i] = INIT; __m256i m = _mm256_set1_epi32(7); \
    double best = 1e9; \
    for (int r = 0; r < reps; r++) { \
        double t = now(); \
        for (long k = 0; k < n; k++) { for (int i = 0; i < CH; i++) { __VA_ARGS__; } __asm__ volatile("" : "+x"(m)); } \
        double dt = now() - t; if (dt < best) best = dt; } \
    __m256i s = a[0]; for (int i = 1; i < CH; i++) s = _mm256_xor_si256(s, a[i]); sink ^= _mm256_extract_epi64(s, 0); \
    printf("%s %.6f\n", NAME, best); } while (0)
int main(int argc, char **argv) {
    const long n = atol(argv[1]); const int reps = atoi(argv[2]);
    LOOP("dot16", _mm256_set1_epi32(i + 1), a[i] = _mm256_madd_epi16(a[i], m));
    LOOP("dot8", _mm256_set1_epi32(i + 1), a[i] = _mm256_maddubs_epi16(a[i], m));
    LOOP("fma", _mm256_castps_si256(_mm256_set1_ps(i + 1)),
         a[i] = _mm256_castps_si256(_mm256_fmadd_ps(_mm256_castsi256_ps(a[i]), _mm256_castsi256_ps(m), _mm256_castsi256_ps(a[i]))));
    LOOP("h2f", _mm256_set1_epi32(i + 1), {
        const __m256 f = _mm256_cvtph_ps(_mm_xor_si128(_mm256_castsi256_si128(a[i]), _mm256_castsi256_si128(m)));
        a[i] = _mm256_castps_si256(f);
    });
    return (int)(sink & 1);
}
"""

# (export / label, what, unit, units per chain step: WebAssembly, native)
ROWS = [
    ("dot16", "int16 dot (i32x4.dot_i16x8_s / vpmaddwd)", "MAC", 8, 16),
    ("dot8", "u8 x i8 dot (relaxed_dot_i8x16_i7x16 / vpmaddubsw)", "MAC", 16, 32),
    ("fma", "f32 multiply-add (relaxed_madd / vfmadd)", "MAC", 4, 8),
    ("h2f", "f16 -> f32 (realm's 3 ops per 4 / vcvtph2ps)", "value", 8, 8),
]


def run_wasm(n: int, reps: int, tmp: Path) -> dict[str, float]:
    src, out = tmp / "ceiling.c", tmp / "ceiling.wasm"
    src.write_text(WASM_C)
    subprocess.run(build.compiler_cmd() + ["--target=wasm32-freestanding", "-msimd128", "-mrelaxed-simd", "-O2",
                                           "-nostdlib", "-Wl,--no-entry", "-o", str(out), str(src)], check=True)
    eng = engine()
    store = wasmtime.Store(eng)
    ex = wasmtime.Instance(store, wasmtime.Module.from_file(eng, str(out)), []).exports(store)
    best: dict[str, float] = {}
    for r in range(reps):
        for name, *_ in ROWS:
            t = time.perf_counter()
            ex[name](store, n, r)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t)
    return best


def run_native(n: int, reps: int, tmp: Path) -> dict[str, float] | None:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    src, out = tmp / "ceiling_native.c", tmp / "ceiling_native"
    src.write_text(NATIVE_C)
    subprocess.run(build.compiler_cmd() + ["-O2", "-mavx2", "-mfma", "-mf16c", "-o", str(out), str(src)], check=True)
    run = subprocess.run([str(out), str(n), str(reps)], capture_output=True, text=True)
    if run.returncode:  # (no AVX2 / F16C: SIGILL)
        print(f"simd_ceiling: the native loops did not run (exit {run.returncode}): no AVX2, FMA or F16C?")
        return None
    lines = run.stdout
    return {name: float(t) for name, t in (line.split() for line in lines.splitlines())}


def main() -> None:
    n, reps = 20_000_000, 5
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        wasm = run_wasm(n, reps, tmp)
        native = run_native(n, reps, tmp)
    steps = n * 8  # eight chains
    print(f"per nanosecond, one thread; {platform.processor() or platform.machine()}; "
          "WebAssembly: wasmtime with realm_web's engine settings; native: AVX2 + FMA + F16C")
    print(f"{'':54s} {'WebAssembly':>14s} {'native':>14s} {'ratio':>7s}")
    for name, what, unit, per_wasm, per_native in ROWS:
        w = steps * per_wasm / wasm[name] * 1e-9
        if native is None:
            print(f"{what:54s} {w:8.1f} {unit:5s}")
            continue
        nat = steps * per_native / native[name] * 1e-9
        print(f"{what:54s} {w:8.1f} {unit:5s} {nat:8.1f} {unit:5s} {w / nat:6.2f}x")


if __name__ == "__main__":
    main()
