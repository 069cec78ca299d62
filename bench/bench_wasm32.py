#!/usr/bin/env python3
"""wasm32 (realm32*.wasm) vs Memory64 (realm*.wasm) tokens/s in the same engine,
same run, alternating: prompt (one batched eval) and greedy decode.

    PYTHONPATH=. python bench/bench_wasm32.py [--model PATH] [--prompt 128] [--gen 32] [--reps 3]

Engines covered so far: wasmtime (Python host). Node 24 and Chromium: not yet."""
from __future__ import annotations

import argparse
import time

import numpy as np

from realm_web.core_model import CoreModel, Session
from realm_web.default_model import default_model_path
from realm_web.wasm_host import _WASM_DIR, WasmCore

PAIRS = [("realm.wasm", "realm32.wasm"), ("realm-relaxed.wasm", "realm32-relaxed.wasm")]


def run(build: str, model, n_prompt: int, n_gen: int) -> tuple[float, float]:
    m = CoreModel(model, core=WasmCore(path=_WASM_DIR / build), threads=1)
    try:
        s = Session(m, n_prompt + n_gen + 8)
        ids = [int(t) for t in np.random.default_rng(0).integers(100, m.info.n_vocab - 1, n_prompt)]
        t0 = time.perf_counter()
        s.eval(ids)
        t1 = time.perf_counter()
        tok = int(np.argmax(np.asarray(s.logits()).reshape(-1)[-m.info.n_vocab:]))
        for _ in range(n_gen):
            s.eval([tok])
            tok = int(np.argmax(np.asarray(s.logits()).reshape(-1)[-m.info.n_vocab:]))
        t2 = time.perf_counter()
        return n_prompt / (t1 - t0), n_gen / (t2 - t1)
    finally:
        m.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    model = a.model or default_model_path()
    print(f"wasmtime, 1 thread, {model}, prompt {a.prompt}, decode {a.gen}, best of {a.reps} (alternating)")
    for b64, b32 in PAIRS:
        best = {b64: [0, 0], b32: [0, 0]}
        for _ in range(a.reps):
            for b in (b64, b32):
                p, d = run(b, model, a.prompt, a.gen)
                best[b] = [max(best[b][0], p), max(best[b][1], d)]
        (p64, d64), (p32, d32) = best[b64], best[b32]
        print(f"{b64:22s} prompt {p64:7.1f} tok/s  decode {d64:6.1f} tok/s")
        print(f"{b32:22s} prompt {p32:7.1f} tok/s  decode {d32:6.1f} tok/s   wasm32/wasm64: prompt {p32 / p64:.2f}x, decode {d32 / d64:.2f}x")


if __name__ == "__main__":
    main()
