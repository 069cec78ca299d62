#!/usr/bin/env python3
"""Constrained decoding: decode tokens/s with a GBNF grammar vs without, for realm and for
llama-cpp-python (the same grammar, the same model file, the same run, one thread each).

    python bench/bench_grammar.py                    # default model, 1 thread, 120 tokens
    python bench/bench_grammar.py --tokens 200 --json out.json

Greedy decoding, decode time only (the prompt is evaluated before the clock starts).
realm's grammar rows are run twice: "cold" (a fresh matcher: the allowed-token sets of
every new parser state are computed by walking the vocabulary trie) and "warm" (the same
grammar again: the session keeps its matcher's caches). The plain row generates as many
tokens as the grammar row did (ignore_eos), so the ratios compare equal work.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from realm_web import Realm  # noqa: E402
from test_grammar import ARITH, JSON  # noqa: E402

GRAMMARS = {
    "json": (JSON, "A JSON object describing a cat named Tom, aged 3, with a list of five favourite toys:\n"),
    "arith": (ARITH, "Write a long arithmetic expression:"),
    "line": ('root ::= [^\\n]+ "\\n"', "Once upon a time"),
}


def realm_run(r: Realm, ids, n, grammar=None, ignore_eos=False):
    toks = list(r.generate_tokens(ids, max_tokens=n, temperature=0, grammar=grammar, ignore_eos=ignore_eos))
    st = r.last_stats
    return toks, st.generate_seconds


def llama_run(llm, ids, n, grammar=None):
    import llama_cpp
    g = llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) if grammar else None
    llm.reset()
    llm.eval(ids[:-1])
    out, t0 = [], time.perf_counter()
    for t in llm.generate(ids[-1:], temp=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=False,
                          grammar=g):
        if len(out) >= n or (grammar and t == llm.token_eos()):
            break
        out.append(int(t))
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--tokens", type=int, default=120)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-llama", action="store_true")
    a = ap.parse_args()
    import refmodels
    path = a.model or str(refmodels.default_model_path())
    r = Realm.load(path, n_ctx=1024, threads=a.threads)
    llm = None
    if not a.no_llama:
        import llama_cpp
        import llama_cpp._logger
        llama_cpp._logger.set_verbose(False)
        llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=a.threads, n_threads_batch=a.threads,
                              n_gpu_layers=0, verbose=False, seed=0)
    rows = []
    print(f"{'grammar':8} {'engine':6} {'run':6} {'tokens':>6} {'tok/s':>8} {'vs plain':>8}")
    for name, (g, prompt) in GRAMMARS.items():
        ids = r.tokenize(prompt)
        res = {}
        for run in ("cold", "warm"):
            toks, dt = realm_run(r, ids, a.tokens, grammar=g)
            res[run] = (len(toks), dt)
        n = res["warm"][0]
        ptoks, pdt = realm_run(r, ids, n, ignore_eos=True)
        plain_tps = len(ptoks) / pdt
        for run in ("cold", "warm"):
            k, dt = res[run]
            rows.append(dict(grammar=name, engine="realm", run=run, tokens=k, tps=k / dt, ratio=(k / dt) / plain_tps))
        rows.append(dict(grammar=name, engine="realm", run="plain", tokens=len(ptoks), tps=plain_tps, ratio=1.0))
        if llm is not None:
            gt, gdt = llama_run(llm, ids, a.tokens, grammar=g)
            pt, pdt2 = llama_run(llm, ids, max(1, len(gt)))
            ltps = len(pt) / pdt2
            rows.append(dict(grammar=name, engine="llama", run="grammar", tokens=len(gt), tps=len(gt) / gdt,
                             ratio=(len(gt) / gdt) / ltps))
            rows.append(dict(grammar=name, engine="llama", run="plain", tokens=len(pt), tps=ltps, ratio=1.0))
            same = gt[:len(toks)] == toks[:len(gt)]
            rows[-2]["same_tokens_as_realm"] = same
        for row in rows:
            if row["grammar"] == name:
                print(f"{row['grammar']:8} {row['engine']:6} {row['run']:6} {row['tokens']:6d} {row['tps']:8.1f} "
                      f"{row['ratio']:8.2f}" + ("" if "same_tokens_as_realm" not in row else
                                                f"   same tokens as realm: {row['same_tokens_as_realm']}"))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    r.close()


if __name__ == "__main__":
    main()
