#!/usr/bin/env python3
"""Micro-benchmark of realm.wasm's matrix kernels (core/quant_*.c) under wasmtime.

For every runnable ggml type: a rows x K weight matrix of random valid blocks,
activations quantized once (realm_quant_act_quantize), then
realm_quant_bench runs the kernel `reps` times inside one call (so the
wasmtime call overhead does not count). Prints, per type:

  T=1   GB/s of weight bytes streamed (the decode / matvec case)
  T=8, T=32   GFLOP/s (2*rows*K*T flops per matmul; prompt processing)

    python bench/bench_kernels.py                  # K=4096, rows=4096 (a 7B layer's q/o matrix)
    python bench/bench_kernels.py --K 576 --rows 1536 --types Q4_0,Q8_0
    python bench/bench_kernels.py --min-time 2     # longer runs, steadier numbers
    python bench/bench_kernels.py --smollm2        # T=1 at SmolLM2-135M's shapes (576/1536 wide, 49152-row head)
    REALM_WASM=realm_web/wasm/realm-relaxed.wasm python bench/bench_kernels.py   # the relaxed-SIMD build

Build first: python build.py (--relaxed for realm-relaxed.wasm; wasmtime-py 50
runs relaxed SIMD by default). Single-threaded; times are this thread's CPU
time (best of --repeat), so other processes on the machine disturb them less,
but not memory bandwidth: check `uptime`. Weights bigger than the L3 cache (32
MB here) stream from DRAM; smaller ones are re-read from cache. No numbers are
asserted anywhere.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from realm_web.wasm_host import WasmCore  # noqa: E402

TYPES = {  # name: (id, block elements, block bytes)
    "F32": (0, 1, 4), "F16": (1, 1, 2), "BF16": (30, 1, 2),
    "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24),
    "Q8_0": (8, 32, 34), "Q8_1": (9, 32, 36),
    "Q2_K": (10, 256, 84), "Q3_K": (11, 256, 110), "Q4_K": (12, 256, 144),
    "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "Q8_K": (15, 256, 292),
}
# byte offsets of f16 scales inside a block (set to small sane values)
F16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q8_1": [0, 2],
              "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def random_weights(name: str, rows: int, K: int, rng: np.random.Generator) -> np.ndarray:
    tid, bs, ts = TYPES[name]
    if name == "F32":
        return rng.standard_normal((rows, K), dtype=np.float32).view(np.uint8)
    if name == "F16":
        return rng.standard_normal((rows, K)).astype(np.float16).view(np.uint8)
    if name == "BF16":
        return (rng.standard_normal((rows, K), dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    blocks = rng.integers(0, 256, (rows * K // bs, ts), dtype=np.uint8)
    for off in F16_FIELDS.get(name, []):
        blocks[:, off:off + 2] = np.full(len(blocks), 0.01, np.float16).view(np.uint8).reshape(-1, 2)
    if name == "Q8_K":
        blocks[:, 0:4] = np.full(len(blocks), 0.01, np.float32).view(np.uint8).reshape(-1, 4)
    return blocks.reshape(rows, -1)


def time_call(c: WasmCore, args: tuple, min_time: float, repeat: int) -> float:
    """Seconds per kernel run: grow reps until one call takes min_time/repeat,
    then the best of `repeat` such calls (other processes only slow us down)."""
    reps, target = 1, min_time / repeat
    while True:
        t0 = time.thread_time()
        c.check(c.call("realm_quant_bench", *args, reps), "realm_quant_bench")
        dt = time.thread_time() - t0
        if dt >= target:
            break
        reps = max(reps * 2, int(reps * target / max(dt, 1e-6) * 1.2))
    best = dt
    for _ in range(repeat - 1):
        t0 = time.thread_time()
        c.call("realm_quant_bench", *args, reps)
        best = min(best, time.thread_time() - t0)
    return best / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--K", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--tokens", default="1,8,32")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per type and T")
    ap.add_argument("--repeat", type=int, default=30, help="best of this many timed calls")
    ap.add_argument("--smollm2", action="store_true",
                    help="T=1 GB/s at SmolLM2-135M's matmul shapes (K x rows): 576x576, 576x1536, 1536x576, 576x49152")
    args = ap.parse_args()
    if args.smollm2:
        return smollm2(args)

    c = WasmCore()
    rng = np.random.default_rng(0)
    toks = [int(t) for t in args.tokens.split(",")]
    K, rows = args.K, args.rows
    print(f"realm.wasm kernels, wasmtime, 1 thread, rows={rows} K={K}")
    print(f"{'type':6s} {'MB':>7s} " + " ".join(
        f"{('T=%d GB/s' % t) if t == 1 else ('T=%d GFLOP/s' % t):>14s}" for t in toks))
    for name in args.types.split(","):
        tid, bs, ts = TYPES[name]
        if K % bs:
            print(f"{name:6s}  (K={K} is not a multiple of its block size {bs})")
            continue
        W = random_weights(name, rows, K, rng)
        wp = c.alloc(W.nbytes)
        c.write(wp, np.ascontiguousarray(W))
        cols = []
        for T in toks:
            x = rng.standard_normal((T, K), dtype=np.float32)
            xp = c.alloc(x.nbytes)
            c.write(xp, x)
            xq = c.alloc(c.call("realm_quant_act_bytes", tid, K, T))
            c.check(c.call("realm_quant_act_quantize", tid, xp, K, T, xq), "act")
            yp = c.alloc(4 * rows * T)
            sec = time_call(c, (tid, wp, K, rows, xq, T, yp), args.min_time, args.repeat)
            cols.append(W.nbytes / sec / 1e9 if T == 1 else 2.0 * rows * K * T / sec / 1e9)
            for p in (xp, xq, yp):
                c.free(p)
        c.free(wp)
        print(f"{name:6s} {W.nbytes / 1e6:7.1f} " + " ".join(f"{v:14.2f}" for v in cols), flush=True)


SMOLLM2_SHAPES = [(576, 576), (576, 1536), (1536, 576), (576, 49152)]  # q/o, gate/up, down, output head


def smollm2(args) -> None:
    c = WasmCore()
    rng = np.random.default_rng(0)
    print("realm.wasm kernels, wasmtime, 1 thread, T=1, GB/s of weights at SmolLM2-135M shapes (K x rows)")
    print(f"{'type':6s} " + " ".join(f"{f'{K}x{n}':>11s}" for K, n in SMOLLM2_SHAPES))
    for name in args.types.split(","):
        tid, bs, ts = TYPES[name]
        cols = []
        for K, rows in SMOLLM2_SHAPES:
            if K % bs:
                cols.append(float("nan"))
                continue
            W = random_weights(name, rows, K, rng)
            wp = c.alloc(W.nbytes)
            c.write(wp, np.ascontiguousarray(W))
            x = rng.standard_normal((1, K), dtype=np.float32)
            xp = c.alloc(x.nbytes)
            c.write(xp, x)
            xq = c.alloc(c.call("realm_quant_act_bytes", tid, K, 1))
            c.check(c.call("realm_quant_act_quantize", tid, xp, K, 1, xq), "act")
            yp = c.alloc(4 * rows)
            sec = time_call(c, (tid, wp, K, rows, xq, 1, yp), args.min_time, args.repeat)
            cols.append(W.nbytes / sec / 1e9)
            for p in (wp, xp, xq, yp):
                c.free(p)
        print(f"{name:6s} " + " ".join(f"{v:11.2f}" for v in cols), flush=True)


if __name__ == "__main__":
    main()
