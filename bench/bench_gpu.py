#!/usr/bin/env python3
"""Benchmark of the WebGPU backend (realm_web/gpu): prompt and generation tokens/s and the
GB/s of weights streamed per generated token, with the adapter's name and type.

    python bench/bench_gpu.py                        # the default model
    python bench/bench_gpu.py model.gguf --prompt-tokens 64 --gen-tokens 16
    python bench/bench_gpu.py --cpu                  # the CPU core's figures beside it
    python bench/bench_gpu.py --batch 1,2,4          # aggregate decode tok/s: N sessions batched vs one by one

On a machine without a GPU the adapter is lavapipe (a software rasterizer): the report
says so, and its figures measure nothing about GPUs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--cpu", action="store_true", help="also run the CPU core (realm_web.bench) for comparison")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--batch", metavar="N,N,...", help="instead: N GPU sessions stepped together (step_batch) vs one "
                    "by one, aggregate greedy decode tok/s (--gen-tokens steps after --prompt-tokens prompts)")
    args = ap.parse_args()
    if args.batch:
        from realm_web.gpu import get_device
        from realm_web.gpu.bench import format_batch_report, run_gpu_batch_bench
        dev = get_device()
        rows = run_gpu_batch_bench(args.model, [int(x) for x in args.batch.split(",")], args.gen_tokens,
                                   args.prompt_tokens, args.repeat)
        print(format_batch_report(rows, dev.describe(), dev.is_software))
        if args.json:
            Path(args.json).write_text(json.dumps({"gpu_batch": rows}, indent=1))
        return
    from realm_web.gpu.bench import format_report, run_gpu_bench
    r = run_gpu_bench(args.model, args.prompt_tokens, args.gen_tokens, args.repeat)
    print(format_report(r))
    out = {"gpu": r}
    if args.cpu:
        from realm_web.bench import run_realm
        from realm_web.default_model import default_model_path
        c = run_realm(str(args.model or default_model_path()), args.prompt_tokens, args.gen_tokens, 1, args.repeat)
        print(f"cpu core  prompt {c['pp_tps']:.1f} tok/s, generate {c['tg_tps']:.1f} tok/s (1 thread, wasmtime)")
        out["cpu"] = c
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
