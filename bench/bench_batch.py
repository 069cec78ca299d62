#!/usr/bin/env python3
"""Continuous batching benchmark (GitHub issue 12): aggregate decode tok/s of N
sessions of one model, stepped together (CoreModel.step_batch: one forward pass,
one call into the core per step for all N) vs stepped one by one
(Session.step: N forward passes per step). Not a test: nothing is asserted.

    python bench/bench_batch.py                                # default model, N = 1,2,4,8, threads 1,2
    python bench/bench_batch.py --sessions 1,4,16 --threads 1 --steps 32 --file model.gguf

Each session first evaluates its own prompt (--prompt-tokens ids), then every
stream generates --steps tokens greedily; both ways compute the same bits
(tests/test_batch.py), so only the time differs. Best of --repeat runs.
Machine load matters (2 shared cores): the load average is printed.
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

from realm_web.core_model import CoreModel, Session  # noqa: E402


def run(model: CoreModel, n: int, steps: int, prompt_tokens: int, batched: bool) -> float:
    ss = [Session(model, prompt_tokens + steps + 8) for _ in range(n)]
    try:
        prompts = [[1000 + 37 * i + k for k in range(prompt_tokens)] for i in range(n)]
        for s, p in zip(ss, prompts):
            s.eval(p)
        toks = [s.sample() for s in ss]
        t0 = time.perf_counter()
        for _ in range(steps):
            if batched:
                toks = model.step_batch(ss, toks)
            else:
                toks = [s.step(t) for s, t in zip(ss, toks)]
        return n * steps / (time.perf_counter() - t0)
    finally:
        for s in ss:
            s.close()


def prompt_rate(model: CoreModel, tokens: int = 64, repeat: int = 3) -> float:
    """Prompt tok/s of one session (one eval of `tokens` ids, the core's batch): the ceiling
    batched decoding approaches on a CPU (issue 12's goal: 0.9x at 8 streams)."""
    s = Session(model, tokens + 8)
    try:
        ids = [1000 + k for k in range(tokens)]
        best = 0.0
        for _ in range(repeat):
            s.truncate(0)
            t0 = time.perf_counter()
            s.eval(ids)
            best = max(best, tokens / (time.perf_counter() - t0))
        return best
    finally:
        s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", help="GGUF file (default: the default model)")
    ap.add_argument("--sessions", default="1,2,4,8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    if a.file:
        path = Path(a.file)
    else:
        import refmodels
        path = refmodels.default_model_path()
    print(f"# {path.name}; load average {os.getloadavg()[0]:.2f}; {a.steps} decode steps after "
          f"{a.prompt_tokens}-token prompts; best of {a.repeat}")
    print(f"{'threads':>7} {'N':>3} {'one by one tok/s':>17} {'batched tok/s':>14} {'speed-up':>9} "
          f"{'prompt tok/s':>13} {'batched / prompt':>17}")
    for th in (int(x) for x in a.threads.split(",")):
        model = CoreModel(path, threads=th)
        try:
            pp = prompt_rate(model, model.batch_max_tokens(), a.repeat + 1)
            for n in (int(x) for x in a.sessions.split(",")):
                if n > model.batch_max_tokens():
                    print(f"{th:>7} {n:>3}  (more sessions than the core's budget of {model.batch_max_tokens()})")
                    continue
                seq = max(run(model, n, a.steps, a.prompt_tokens, False) for _ in range(a.repeat))
                bat = max(run(model, n, a.steps, a.prompt_tokens, True) for _ in range(a.repeat))
                print(f"{model.threads:>7} {n:>3} {seq:>17.1f} {bat:>14.1f} {bat / seq:>8.2f}x {pp:>13.1f} "
                      f"{bat / pp:>16.2f}x", flush=True)
        finally:
            model.close()


if __name__ == "__main__":
    main()
