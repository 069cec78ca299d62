#!/usr/bin/env python3
"""CPU benchmark (GitHub issue 6): realm.wasm vs llama.cpp native and wllama on the
default model in llama.cpp's own quantizations. Not a test: nothing is asserted.

    python bench/bench_cpu.py                                   # Q4_0, Q4_1, Q4_K_M, Q5_K_M, Q6_K, Q8_0; 512 / 128 tokens; 1 thread
    python bench/bench_cpu.py --threads 1,2 --browser           # the full table: every engine at 1 and 2 threads
    python bench/bench_cpu.py --types Q4_0 --prompt-tokens 32 --gen-tokens 8 --repeat 1 --threads 1,2 --browser

The same table as `realm bench --quant-table` (realm_web/bench.py does the work),
plus wasmtime variants of realm.wasm. For each file (the default model's exact F32
dequantization quantized by llama.cpp's quantizer, tests/refmodels.default_llama_quant,
or --files TYPE=FILE.gguf) and each thread count N in --threads, each engine in its
own process (so peak RSS is its own): prompt processing of a 512-token prompt (one
eval call; tok/s), greedy generation of 128 tokens (one call per token; tok/s), peak
RSS, CPU time / wall time. Best of --repeat runs.

  realm        wasmtime (the Python host as shipped: realm_web.bench.run_realm, Realm.load(threads=N):
               realm-mt-relaxed.wasm, relaxed SIMD, no Spectre heap mitigation)
  realm        wasmtime variants (--wasmtime-variants): the SIMD128 build (REALM_SIMD=simd128), and the
               Spectre heap mitigation on (wasmtime's default for untrusted code)
  realm        Node 22+ through the JS SDK (js-sdk/bench/bench.mjs, Realm.load({threads: N}))
  llama.cpp    llama-cpp-python, native, n_threads = n_threads_batch = N
  wllama       llama.cpp's wasm build in headless Chromium, and realm.wasm (JS SDK) in the
               same Chromium (bench/bench_browser.py), with --browser: 1 thread on a page
               without COOP/COEP, N > 1 threads on a page with them (--isolation both: each
               count both ways)

Ratios are against each peer at the same thread count: llama.cpp native and wllama.
Machine load matters (2 shared cores): the script prints the load average and warns
above 1.5.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- wasmtime variants (children)

def child_realm(model: str, n_prompt: int, n_gen: int, threads: int, repeat: int, wasm: str | None, simd: str,
                spectre: bool) -> dict:
    """run_realm with the host configured here: another build, REALM_SIMD, the Spectre heap mitigation back on."""
    if wasm:
        os.environ["REALM_WASM"] = wasm
    os.environ["REALM_SIMD"] = simd
    import wasmtime
    from realm_web import wasm_host
    if wasm:
        wasm_host.WASM_PATH = Path(wasm)
    if spectre:
        class Wasmtime:
            """wasmtime as wasm_host sees it, with the mitigation set back on in the Config of every Engine
            (so the variant keeps whatever else the host configures: memory64, threads, reservation ...)."""

            def __getattr__(self, name):
                return getattr(wasmtime, name)

            @staticmethod
            def Engine(cfg=None):
                cfg.cranelift_flag_set("enable_heap_access_spectre_mitigation", "true")
                return wasmtime.Engine(cfg)
        wasm_host.wasmtime = Wasmtime()
    from realm_web.bench import run_realm
    return run_realm(model, n_prompt, n_gen, threads, repeat)


def variants(a):
    """extra_realm for realm_web.bench.quant_table: the --extra-wasm builds and --wasmtime-variants."""
    from realm_web.bench import spawn_json
    specs = [(f"realm ({label}), wasmtime", path, "auto", "0")
             for label, _, path in (s.partition("=") for s in a.extra_wasm)]
    if a.wasmtime_variants:
        specs.append(("realm, wasmtime", "-", "simd128", "0"))
        specs.append(("realm, wasmtime, Spectre mitigation on", "-", "auto", "1"))
    if not specs:
        return None

    def extra(model: str, threads: int) -> list[dict]:
        rows = []
        for label, wasm, simd, spectre in specs:
            print(f"  {label}, {simd}, {threads} thread(s) ...", file=sys.stderr, flush=True)
            r = spawn_json([sys.executable, str(Path(__file__).resolve()), "--child", model, str(a.prompt_tokens),
                            str(a.gen_tokens), str(threads), str(a.repeat), wasm, simd, spectre])
            r.update({"engine": label, "kind": "realm", "threads": threads})
            rows.append(r)
        return rows
    return extra


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="Q4_0,Q4_1,Q4_K_M,Q5_K_M,Q6_K,Q8_0", help="llama.cpp ftypes of the default model")
    ap.add_argument("--files", help="TYPE=FILE.gguf,... instead of quantizing the default model")
    ap.add_argument("--threads", default="1", help="thread counts, e.g. 1,2 (every engine at each)")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-node", action="store_true")
    ap.add_argument("--browser", action="store_true", help="also wllama and realm.wasm in Chromium (bench_browser.py)")
    ap.add_argument("--isolation", default="auto", choices=["auto", "both"],
                    help="Chromium pages: auto = COOP/COEP only for N > 1 threads; both = every count both ways")
    ap.add_argument("--wasmtime-variants", action="store_true",
                    help="also wasmtime with the SIMD128 build, and with the Spectre heap mitigation on")
    ap.add_argument("--extra-wasm", action="append", default=[], metavar="LABEL=PATH",
                    help="also run this build of realm.wasm under wasmtime (e.g. before=/tmp/old.wasm)")
    ap.add_argument("--verbose", action="store_true", help="show bench_browser.py's progress")
    ap.add_argument("--json")
    ap.add_argument("--child", nargs=8, metavar=("MODEL", "P", "G", "T", "R", "WASM", "SIMD", "SPECTRE"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        model, p, g, t, r, wasm, simd, spectre = a.child
        from realm_web.bench import NotAvailable
        try:
            res = child_realm(model, int(p), int(g), int(t), int(r), None if wasm == "-" else wasm,
                              simd, spectre == "1")
        except NotAvailable as e:
            print(str(e), file=sys.stderr)
            return 3
        print(json.dumps(res))
        return 0

    from realm_web.bench import quant_table
    from realm_web.errors import RealmError
    a.cmdline = " ".join([Path(sys.executable).name, "bench/bench_cpu.py"] + sys.argv[1:])
    try:
        return quant_table(a, extra_realm=variants(a))
    except RealmError as e:
        print(f"bench_cpu: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
