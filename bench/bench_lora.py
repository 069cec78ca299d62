#!/usr/bin/env python3
"""LoRA adapter benchmark (GitHub issue 13): decode tok/s of one session with a rank 8/16/64
adapter on every attention and FFN weight (tests/refmodels.py lora_adapter: F16, seeded) vs
the base model, realm (the CPU core, one thread) and llama.cpp (llama-cpp-python, one thread,
the same adapter through Llama(lora_path=)) in one run. Not a test: nothing is asserted.

    python bench/bench_lora.py                       # default model, ranks 8,16,64
    python bench/bench_lora.py --ranks 16 --steps 64 --repeat 3 --file model.gguf

Overhead = 1 - (tok/s with the adapter) / (tok/s of the base), per engine. Issue 13's goal:
at most 10% at rank 16. Best of --repeat runs; machine load matters (2 shared cores).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

import refmodels  # noqa: E402
from realm_web import lora  # noqa: E402
from realm_web.core_model import CoreModel, Session  # noqa: E402


def realm_decode(model: CoreModel, adapter, steps: int, prompt: list[int]) -> float:
    s = Session(model, len(prompt) + steps + 8)
    try:
        s.set_lora([(adapter, 1.0)] if adapter is not None else [])
        s.eval(prompt)
        t = int(np.argmax(s.logits()[-1]))
        t0 = time.perf_counter()
        for _ in range(steps):
            t = s.step(t)
        return steps / (time.perf_counter() - t0)
    finally:
        s.close()


def llama_decode(path: Path, adapter: Path | None, steps: int, prompt: list[int]) -> float:
    import llama_cpp
    import llama_cpp._logger
    llama_cpp._logger.set_verbose(False)
    kw = dict(lora_path=str(adapter), lora_scale=1.0) if adapter is not None else {}
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=len(prompt) + steps + 8, n_batch=512, n_threads=1,
                          n_threads_batch=1, n_gpu_layers=0, use_mmap=False, verbose=False, **kw)
    try:
        llm.eval(prompt)
        t0 = time.perf_counter()
        for _ in range(steps):
            llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
        return steps / (time.perf_counter() - t0)
    finally:
        llm.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", default=None, help="base GGUF (default: the default model)")
    ap.add_argument("--ranks", default="8,16,64")
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--qtype", default="F16", help="the adapters' tensor type: F32, F16 or Q8_0 (ranks multiples of 32)")
    ap.add_argument("--no-llama", action="store_true")
    a = ap.parse_args()
    base = Path(a.file) if a.file else refmodels.default_model_path()
    ranks = [int(r) for r in a.ranks.split(",")]
    adapters = {r: refmodels.lora_adapter(base, rank=r, qtype=a.qtype, strength=0.05) for r in ranks}
    prompt = [1000 + 7 * k for k in range(a.prompt_tokens)]
    model = CoreModel(str(base), threads=1)
    print(f"# {base.name}, decode {a.steps} tokens after {a.prompt_tokens}, 1 thread, best of {a.repeat}; "
          f"load average {os.getloadavg()[0]:.2f} (a shared 2-core machine)")
    rows = []
    for r in [None] + ranks:
        ad = lora.acquire(model, adapters[r]) if r else None
        best_r = max(realm_decode(model, ad, a.steps, prompt) for _ in range(a.repeat))
        best_l = None if a.no_llama else max(llama_decode(base, adapters[r] if r else None, a.steps, prompt)
                                             for _ in range(a.repeat))
        if ad is not None:
            lora.release(ad)
        rows.append((r, best_r, best_l))
    r0, l0 = rows[0][1], rows[0][2]
    print("| adapter | realm tok/s | realm overhead | llama.cpp tok/s | llama.cpp overhead |")
    print("|---|---|---|---|---|")
    for r, tr, tl in rows:
        name = "base" if r is None else f"rank {r} (all attn + FFN, {a.qtype})"
        ov_r = "" if r is None else f"{100 * (1 - tr / r0):.1f}%"
        ov_l = "" if r is None or tl is None else f"{100 * (1 - tl / l0):.1f}%"
        print(f"| {name} | {tr:.1f} | {ov_r} | {'-' if tl is None else f'{tl:.1f}'} | {ov_l} |")
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
