#!/usr/bin/env python3
"""Speculative decoding: decode tokens/s with and without drafts, on text that
quotes its input (a code file to repeat) and on free text, side by side with
llama.cpp's own prompt-lookup decoding (llama-cpp-python's LlamaPromptLookupDecoding)
in the same run.

    python bench/bench_speculative.py                  # default model, 1 thread, 200 tokens
    python bench/bench_speculative.py --threads 2 --tokens 300 --json out.json

Rows: realm plain, realm + n-gram drafts, realm + a draft model (the target is
the default model requantized to F16, the draft the default Q4_1 file: same
vocabulary, ~3x cheaper), llama.cpp plain and llama.cpp + prompt lookup (its
own default model file). Greedy decoding; realm's speculative rows must produce
the plain row's tokens exactly (checked, printed). Decode time only: the prompt
is evaluated before the clock starts.
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
from realm_web.core_model import SamplerSettings  # noqa: E402
from realm_web.speculative import make_speculator  # noqa: E402

CODE = (ROOT / "realm_web" / "stops.py").read_text()
TASKS = {
    "grounded": [{"role": "user", "content": "Repeat this Python file exactly, with no comment:\n\n" + CODE}],
    "free": [{"role": "user", "content": "Write a long story about a dragon who learns to read."}],
}


def realm_decode(r: Realm, ids: list[int], n: int, spec=None) -> tuple[list[int], float]:
    s = r.session
    s.truncate(0)
    s.set_sampler(SamplerSettings(temperature=0.0))
    s.eval(ids)
    out = [s.sample()]
    t0 = time.perf_counter()
    while len(out) < n:
        out.extend(spec.step(s, out[-1], n - len(out)) if spec else [s.step(out[-1])])
    return out[:n], time.perf_counter() - t0


def llama_decode(path: Path, prompt_ids: list[int], n: int, threads: int, lookup: bool) -> float:
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
    kw = {"draft_model": LlamaPromptLookupDecoding(num_pred_tokens=8)} if lookup else {}
    llm = Llama(str(path), n_ctx=2048, n_batch=2048, n_threads=threads, n_threads_batch=threads, verbose=False,
                logits_all=lookup, **kw)
    llm.eval(prompt_ids[:-1])  # generate() reuses this prefix (reset=True matches it) and evaluates the last token
    t0 = time.perf_counter()
    got = 0
    for _tok in llm.generate(prompt_ids, temp=0.0, top_k=1):
        got += 1
        if got >= n:
            break
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--no-llama", action="store_true", help="skip the llama.cpp rows")
    ap.add_argument("--no-draft-model", action="store_true", help="skip the F16 target + Q4_1 draft rows")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import refmodels
    default = refmodels.default_model_path()
    rows = []

    def run_realm(label, path, draft=None):
        r = Realm.load(path, n_ctx=2048, threads=args.threads)
        try:
            for task, msgs in TASKS.items():
                ids = r.chat_prompt_ids(msgs) if hasattr(r, "chat_prompt_ids") else _chat_ids(r, msgs)
                plain, tp = realm_decode(r, ids, args.tokens)
                rows.append(dict(engine=f"realm {label}", task=task, mode="plain", tps=args.tokens / tp, same=True,
                                 prompt=len(ids)))
                modes = [("ngram", None)] + ([("draft", draft)] if draft else [])
                for mode, dm in modes:
                    spec = make_speculator(mode, r.model, r.n_ctx, draft_model=dm, threads=args.threads)
                    try:
                        got, ts = realm_decode(r, ids, args.tokens, spec)
                    finally:
                        spec.close()
                    rows.append(dict(engine=f"realm {label}", task=task, mode=mode, tps=args.tokens / ts,
                                     same=got == plain, acceptance=spec.stats.acceptance,
                                     speedup=tp / ts, prompt=len(ids)))
                print(f"# {label} {task}: done", file=sys.stderr)
        finally:
            r.close()
        return ids

    run_realm("Q4_1", default)
    if not args.no_draft_model:
        f16 = refmodels.requantize(default, "F16")
        run_realm("F16 (draft: Q4_1)", f16, draft=default)
    if not args.no_llama:
        r = Realm.load(default, n_ctx=2048, threads=args.threads)
        prompts = {t: _chat_ids(r, m) for t, m in TASKS.items()}
        r.close()
        for task, ids in prompts.items():
            tp = llama_decode(default, ids, args.tokens, args.threads, lookup=False)
            tl = llama_decode(default, ids, args.tokens, args.threads, lookup=True)
            rows.append(dict(engine="llama.cpp Q4_1", task=task, mode="plain", tps=args.tokens / tp, prompt=len(ids)))
            rows.append(dict(engine="llama.cpp Q4_1", task=task, mode="prompt lookup", tps=args.tokens / tl,
                             speedup=tp / tl, prompt=len(ids)))
    print(f"\nbench_speculative: {args.tokens} greedy tokens, {args.threads} thread(s), decode time only\n")
    print("| engine | task | mode | tok/s | × plain | acceptance | same tokens as plain |")
    print("|---|---|---|---|---|---|---|")
    for x in rows:
        acc = f"{x['acceptance']:.2f}" if "acceptance" in x else ""
        sp = f"{x['speedup']:.2f}×" if "speedup" in x else "1.00×"
        same = {True: "yes", False: "NO"}.get(x.get("same"), "")
        print(f"| {x['engine']} | {x['task']} | {x['mode']} | {x['tps']:.1f} | {sp} | {acc} | {same} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def _chat_ids(r: Realm, messages) -> list[int]:
    prompt = r.apply_chat_template(messages)
    ids = r.tokenize(prompt, add_special=False, parse_special=True)
    if r.info.add_bos and r.info.bos >= 0 and (not ids or ids[0] != r.info.bos):
        ids = [r.info.bos] + ids
    return ids


if __name__ == "__main__":
    main()
