"""`realm bench`: prompt-processing and generation speed and peak RSS of
realm.wasm, side by side with llama.cpp (llama-cpp-python) on the same file,
the same prompt tokens and the same thread count, measured in the same run.

Each engine runs in its own subprocess so that peak RSS is its own.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

TEXT = ("The history of the city begins with a small settlement on the river, where traders met to exchange "
        "grain, salt and cloth. Over the centuries the town grew into a busy port, its streets lined with "
        "workshops, markets and houses of stone. ")


def prompt_ids(tokenize, n: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < n:
        ids += tokenize(TEXT)
    return ids[:n]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_realm(model: str, n_prompt: int, n_gen: int, threads: int, repeat: int) -> dict:
    from .realm import Realm
    t0 = time.perf_counter()
    r = Realm.load(model, n_ctx=n_prompt + n_gen + 8)
    load_s = time.perf_counter() - t0
    ids = prompt_ids(lambda s: r.tokenize(s, add_special=False), n_prompt)
    pp, tg = [], []
    for _ in range(repeat):
        r.session.truncate(0)
        t0 = time.perf_counter()
        r.session.eval(ids)
        pp.append(n_prompt / (time.perf_counter() - t0))
        tok = int(r.session.logits()[-1].argmax())
        t0 = time.perf_counter()
        for _ in range(n_gen):
            tok = r.session.step(tok)  # greedy: the sampler defaults to temperature 0
        tg.append(n_gen / (time.perf_counter() - t0))
    return {"engine": "realm.wasm (wasmtime)", "threads": 1, "load_s": load_s, "pp_tps": max(pp),
            "tg_tps": max(tg), "peak_rss_mb": _peak_rss_mb()}


def run_llama(model: str, n_prompt: int, n_gen: int, threads: int, repeat: int) -> dict:
    import llama_cpp
    import numpy as np
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=model, n_ctx=n_prompt + n_gen + 8, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    load_s = time.perf_counter() - t0
    ids = prompt_ids(lambda s: llm.tokenize(s.encode(), add_bos=False, special=False), n_prompt)
    pp, tg = [], []
    for _ in range(repeat):
        llm.reset()
        llm._ctx.memory_clear(True) if hasattr(llm._ctx, "memory_clear") else None
        t0 = time.perf_counter()
        llm.eval(ids)
        pp.append(n_prompt / (time.perf_counter() - t0))
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t0 = time.perf_counter()
        for _ in range(n_gen):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        tg.append(n_gen / (time.perf_counter() - t0))
    return {"engine": f"llama.cpp {llama_cpp.__version__} (native)", "threads": threads, "load_s": load_s,
            "pp_tps": max(pp), "tg_tps": max(tg), "peak_rss_mb": _peak_rss_mb()}


def _child(side: str, model: str, n_prompt: int, n_gen: int, threads: int, repeat: int) -> dict:
    cmd = [sys.executable, "-m", "realm_web.bench", side, model, str(n_prompt), str(n_gen), str(threads), str(repeat)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"engine": side, "error": (res.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def table(rows: list[dict], base: dict) -> str:
    out = [f"{'engine':38} {'thr':>3} {'pp tok/s':>10} {'tg tok/s':>10} {'peak RSS MB':>12} {'pp ratio':>9} {'tg ratio':>9}"]
    for r in rows:
        if "error" in r:
            out.append(f"{r['engine']:38} error: {r['error']}")
            continue
        ok = base and "error" not in base
        ppr = f"{r['pp_tps'] / base['pp_tps']:.2f}x" if ok else "-"
        tgr = f"{r['tg_tps'] / base['tg_tps']:.2f}x" if ok else "-"
        out.append(f"{r['engine']:38} {r['threads']:>3} {r['pp_tps']:>10.1f} {r['tg_tps']:>10.1f} "
                   f"{r['peak_rss_mb']:>12.0f} {ppr:>9} {tgr:>9}")
    return "\n".join(out)


def main(args) -> int:
    from .default_model import default_model_path
    model = str(args.model or default_model_path())
    print(f"model {model}\nprompt {args.prompt_tokens} tokens, generate {args.gen_tokens} tokens (greedy), "
          f"best of {args.repeat}\n", flush=True)
    rows = []
    base = None
    if not args.no_llama:
        base = _child("llama", model, args.prompt_tokens, args.gen_tokens, args.threads, args.repeat)
        rows.append(base)
    rows.append(_child("realm", model, args.prompt_tokens, args.gen_tokens, args.threads, args.repeat))
    if base:
        rows = rows[1:] + [base]  # realm first; ratios are realm / llama.cpp
    print(table(rows, base if base and "error" not in base else None))
    print("\nratios: realm.wasm / llama.cpp, same file, same prompt tokens, same run")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    side, model, n_prompt, n_gen, threads, repeat = sys.argv[1:7]
    fn = run_realm if side == "realm" else run_llama
    print(json.dumps(fn(model, int(n_prompt), int(n_gen), int(threads), int(repeat))))
