#!/usr/bin/env python3
"""Attention over the f16 KV cache, the kernel alone (realm_quant_attn_f16: q.k, softmax,
p.v of nh query heads that share one KV head), in nanoseconds per cache position.

    python bench/bench_attention.py                          # D = 64, 1 and 3 heads (SmolLM2: 3)
    python bench/bench_attention.py --heads 1,3,4 --D 64,128
    python bench/bench_attention.py --wasm before.wasm,after.wasm   # builds side by side

Marginal cost: (t(n2) - t(n1)) / (n2 - n1) with n1 = 500 and n2 = --positions (3000), so
the host's call overhead (about 0.1 ms per call in wasmtime-py) drops out; best of 7 rounds
of 30 calls. The cache holds three KV heads, as SmolLM2's, and the heads read the second
(rows 384 bytes apart at D = 64: the forward pass's stride). Also prints a hash of the
output: builds that compute the same bits print the same hash. Not a test.
"""
from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np

from realm_web.wasm_host import WasmCore


def bench(core: WasmCore, nh: int, D: int, n2: int, n1: int = 500) -> tuple[float, str]:
    rng = np.random.default_rng(1)
    n_kv = 3
    stride = n_kv * D
    k = (rng.standard_normal((n2, stride)) * 2).astype(np.float16)
    v = rng.standard_normal((n2, stride)).astype(np.float16)
    q = rng.standard_normal((nh, D)).astype(np.float32)

    def put(a: np.ndarray) -> int:
        p = core.alloc(a.nbytes)
        core.write(p, np.ascontiguousarray(a))
        return p

    pk, pv, pq = put(k), put(v), put(q)
    pout, psc = core.alloc(nh * D * 4), core.alloc(4 * nh * n2 + 64)
    koff = D * 2  # the second KV head

    def run(n: int) -> float:
        def call() -> None:
            assert core.call("realm_quant_attn_f16", pq, nh, pk + koff, pv + koff, stride, n, D,
                             1 / np.sqrt(D), 0.0, psc, n, pout) == 1
        for _ in range(3):
            call()
        best = float("inf")
        for _ in range(7):
            t = time.perf_counter()
            for _ in range(30):
                call()
            best = min(best, (time.perf_counter() - t) / 30)
        return best

    t1, t2 = run(n1), run(n2)
    digest = hashlib.md5(core.view(pout, np.uint8, nh * D * 4).tobytes()).hexdigest()[:10]
    for p in (pk, pv, pq, pout, psc):
        core.free(p)
    return (t2 - t1) / (n2 - n1) * 1e9, digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", default="1,3", help="query heads per KV head, comma-separated")
    ap.add_argument("--D", default="64", help="head_dim values, comma-separated (multiples of 8)")
    ap.add_argument("--positions", type=int, default=3000)
    ap.add_argument("--wasm", help="comma-separated realm*.wasm builds (default: the one the host picks)")
    a = ap.parse_args()
    for wasm in (a.wasm.split(",") if a.wasm else [None]):
        core = WasmCore(path=wasm) if wasm else WasmCore()
        for D in (int(x) for x in a.D.split(",")):
            for nh in (int(x) for x in a.heads.split(",")):
                ns, digest = bench(core, nh, D, a.positions)
                print(f"{core.path}: D={D} heads={nh}: {ns:6.1f} ns per position "
                      f"({ns / nh:5.1f} per head)  bits {digest}")


if __name__ == "__main__":
    main()
