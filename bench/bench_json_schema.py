#!/usr/bin/env python3
"""JSON-Schema-constrained decoding: decode tokens/s with a schema's grammar vs without, for
realm (the core converts the schema: realm_json_schema_gbnf) and for llama-cpp-python (its own
converter, LlamaGrammar.from_json_schema, and llama.cpp's grammar sampler), in the same run,
the same model file, one thread each. Goal (issue 14): constrained >= 0.9x unconstrained.

    python bench/bench_json_schema.py                # default model, 1 thread, up to 160 tokens
    python bench/bench_json_schema.py --threads 2 --json out.json

Greedy, decode time only; realm's rows run "cold" (a fresh matcher) and "warm" (the same
grammar again: its caches kept), and the plain rows generate as many tokens (ignore_eos).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_grammar import llama_run, realm_run  # noqa: E402
from realm_web import Realm  # noqa: E402
from test_json_schema import EVENT, PERSON  # noqa: E402
from test_server_tools import FORECAST  # noqa: E402

SCHEMAS = {
    "person": (PERSON, "A JSON object describing a person, with tags and an address:\n"),
    "forecast": (FORECAST, "A three-day weather forecast for Oslo as JSON:\n"),
    "event": (EVENT, "A calendar event as JSON:\n"),
}   # ($ref schemas are left out: llama-cpp-python's converter port does not resolve them)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--tokens", type=int, default=160)
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
    print(f"{'schema':9} {'engine':6} {'run':7} {'tokens':>6} {'tok/s':>8} {'vs plain':>8}")
    for name, (schema, prompt) in SCHEMAS.items():
        g = r.model.json_schema_gbnf(schema)
        ids = r.tokenize(prompt)
        res = {}
        for run in ("cold", "warm"):
            toks, dt = realm_run(r, ids, a.tokens, grammar=g)
            res[run] = (len(toks), dt)
        n = res["warm"][0]
        ptoks, pdt = realm_run(r, ids, n, ignore_eos=True)
        plain = len(ptoks) / pdt
        for run in ("cold", "warm"):
            k, dt = res[run]
            rows.append(dict(schema=name, engine="realm", run=run, tokens=k, tps=k / dt, ratio=(k / dt) / plain))
        rows.append(dict(schema=name, engine="realm", run="plain", tokens=len(ptoks), tps=plain, ratio=1.0))
        if llm is not None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf   # what LlamaGrammar.from_json_schema runs
            gt, gdt = llama_run(llm, ids, a.tokens, grammar=json_schema_to_gbnf(json.dumps(schema)))
            pt, pdt2 = llama_run(llm, ids, max(1, len(gt)))
            lplain = len(pt) / pdt2
            rows.append(dict(schema=name, engine="llama", run="grammar", tokens=len(gt), tps=len(gt) / gdt,
                             ratio=(len(gt) / gdt) / lplain))
            rows.append(dict(schema=name, engine="llama", run="plain", tokens=len(pt), tps=lplain, ratio=1.0))
        for row in rows:
            if row["schema"] == name:
                print(f"{row['schema']:9} {row['engine']:6} {row['run']:7} {row['tokens']:6d} {row['tps']:8.1f} "
                      f"{row['ratio']:8.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    r.close()


if __name__ == "__main__":
    main()
