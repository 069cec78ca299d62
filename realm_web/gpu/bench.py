"""`realm bench --device gpu`: prompt and generation speed of the WebGPU backend, and the
GB/s of weights it streams per generated token, next to the adapter's name and type.

On a machine without a GPU the adapter is a software rasterizer (lavapipe, SwiftShader):
the figures then measure that CPU emulation, nothing about GPUs, and the report says so.
"""
from __future__ import annotations

import json
import time

SOFTWARE_NOTE = ("the adapter is a software implementation running on the CPU ({name}): these figures "
                 "measure that emulation, nothing about GPUs; the CPU core (realm bench) is the fast path here")


def weights_per_token(plan) -> int:
    """Bytes of weights one decode step reads: every tensor an op binds, but only one row
    of an embedding table that nothing else reads."""
    emb = next((t for t in plan.tensors if t["name"] == "token_embd.weight"), None)
    used = set()
    for name in ("body", "head"):
        for op in plan.programs[name]:
            if plan.kernels[op["k"]]["file"] == "embed.wgsl":  # the lookup reads one row
                continue
            for b in op["b"]:
                if not isinstance(b, str):
                    used.add(b[0])
    total = sum(t["nbytes"] for t in plan.tensors if t["id"] in used)
    if emb is not None and emb["id"] not in used:
        total += emb["row_bytes"]
    return total


def run_gpu_bench(model=None, n_prompt: int = 128, n_gen: int = 32, repeat: int = 1, **plan_options) -> dict:
    """Measure one model on the process's WebGPU device. Returns a dict (see format_report)."""
    from .. import store
    from ..bench import prompt_ids
    from ..core_model import SamplerSettings
    from ..default_model import default_model_path
    from . import acquire_model, get_device, open_gpu_session
    path = str(model or default_model_path())
    dev = get_device()
    t0 = time.perf_counter()
    m = acquire_model(path)
    s = open_gpu_session(m, n_prompt + n_gen + 8, **plan_options)
    load_s = time.perf_counter() - t0
    try:
        s.set_sampler(SamplerSettings(temperature=0))
        ids = prompt_ids(lambda t: m.tokenize(t, add_special=False), n_prompt)
        # warm-up: every pipeline compiled, every code path once
        s.eval(ids[:2])
        s.step(s.sample())
        pp, tg = [], []
        for _ in range(max(1, repeat)):
            s.truncate(0)
            t0 = time.perf_counter()
            s.eval(ids)
            tok = s.sample()  # waits for the GPU (8 bytes read back)
            pp.append(n_prompt / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for _ in range(n_gen):
                tok = s.step(tok)
            tg.append(n_gen / (time.perf_counter() - t0))
        wpt = weights_per_token(s.plan)
        tg_best = max(tg)
        res = {
            "engine": "realm WebGPU (wgpu-py)", "model": path, "adapter": dev.name, "adapter_type": dev.adapter_type,
            "backend": dev.info.get("backend_type", "?"), "software": dev.is_software,
            "features": sorted(f for f in dev.features if f in ("shader-f16", "subgroup")),
            "load_s": load_s, "n_prompt": n_prompt, "n_gen": n_gen,
            "pp_tps": max(pp), "tg_tps": tg_best, "weights_per_token": wpt, "weights_gbps": wpt * tg_best / 1e9,
            "note": SOFTWARE_NOTE.format(name=dev.name) if dev.is_software else "",
        }
        return res
    finally:
        s.close()
        store.release(m)


def format_report(r: dict) -> str:
    lines = [
        f"adapter  {r['adapter']} ({r['adapter_type']}, {r['backend']}; {', '.join(r['features']) or 'no optional features'})",
        f"model    {r['model']}",
        f"load     {r['load_s']:.2f} s (plan, weights upload, kernels)",
        f"prompt   {r['n_prompt']} tokens: {r['pp_tps']:.1f} tok/s",
        f"generate {r['n_gen']} tokens: {r['tg_tps']:.2f} tok/s, {r['weights_per_token'] / 1e6:.1f} MB of weights per token "
        f"= {r['weights_gbps']:.3f} GB/s streamed",
    ]
    if r.get("note"):
        lines.append(f"note     {r['note']}")
    return "\n".join(lines)


def main(args) -> int:
    """For `realm bench --device gpu` (args: model, prompt_tokens, gen_tokens, repeat, json)."""
    r = run_gpu_bench(getattr(args, "model", None), getattr(args, "prompt_tokens", 128),
                      getattr(args, "gen_tokens", 32), getattr(args, "repeat", 1))
    print(format_report(r))
    if getattr(args, "json", None):
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


def run_gpu_batch_bench(model=None, sessions=(1, 2, 4), steps: int = 8, n_prompt: int = 16, repeat: int = 1) -> list:
    """Aggregate greedy decode tok/s of N GPU sessions of one model stepped together
    (GpuModel.step_batch: one forward pass, one submission per step for all N) and one by
    one (GpuSession.step: N passes per step). Both compute the same tokens (tests/test_gpu_batch.py).
    Returns one dict per N: {"n", "one_by_one_tps", "batched_tps", "same_tokens"}."""
    from .. import store
    from ..bench import prompt_ids
    from ..core_model import SamplerSettings
    from ..default_model import default_model_path
    from . import acquire_model, open_gpu_session
    m = acquire_model(str(model or default_model_path()))
    out = []
    try:
        base = prompt_ids(lambda t: m.tokenize(t, add_special=False), n_prompt + max(sessions))
        for n in sessions:
            ss = [open_gpu_session(m, n_prompt + steps + 8) for _ in range(n)]
            try:
                g = ss[0].gmodel
                if n > g.batch_max_tokens():
                    out.append({"n": n, "skipped": f"more sessions than the plan's {g.batch_max_tokens()} rows"})
                    continue
                res = {}
                for mode in ("one_by_one", "batched"):
                    best, toks_all = 0.0, None
                    for _ in range(max(1, repeat)):
                        for i, s in enumerate(ss):  # the same prompts each time, a different one per stream
                            s.truncate(0)
                            s.set_sampler(SamplerSettings(temperature=0))
                        g.eval_batch(ss, [base[i:i + n_prompt] for i in range(n)])
                        toks = [s.sample() for s in ss]
                        got = [[t] for t in toks]  # (eval_batch above compiled the batch's ops)
                        t0 = time.perf_counter()
                        for _ in range(steps):
                            toks = g.step_batch(ss, toks) if mode == "batched" else [s.step(t) for s, t in zip(ss, toks)]
                            for o, t in zip(got, toks):
                                o.append(t)
                        best = max(best, n * steps / (time.perf_counter() - t0))
                        toks_all = got
                    res[mode] = (best, toks_all)
                out.append({"n": n, "one_by_one_tps": res["one_by_one"][0], "batched_tps": res["batched"][0],
                            "same_tokens": res["one_by_one"][1] == res["batched"][1]})
            finally:
                for s in ss:
                    s.close()
    finally:
        store.release(m)
    return out


def format_batch_report(rows: list, adapter: str, software: bool) -> str:
    lines = [f"batched decode on {adapter}" + (" (software adapter: indicative only)" if software else ""),
             f"{'N':>3} {'one by one tok/s':>17} {'batched tok/s':>14} {'speed-up':>9}  same tokens"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['n']:>3}  ({r['skipped']})")
            continue
        lines.append(f"{r['n']:>3} {r['one_by_one_tps']:>17.2f} {r['batched_tps']:>14.2f} "
                     f"{r['batched_tps'] / r['one_by_one_tps']:>8.2f}x  {r['same_tokens']}")
    return "\n".join(lines)
