#!/usr/bin/env python3
"""Where realm.wasm spends its time, per function, next to llama.cpp: a
sampling profile (Linux `perf`) of decode and of prompt processing.

    python bench/profile_core.py                       # decode + 128-token prompt, realm and llama.cpp
    python bench/profile_core.py --phase decode --seconds 20
    python bench/profile_core.py --relaxed             # profile the relaxed-SIMD build
    python bench/profile_core.py --wasm /tmp/x.wasm    # a module you built (keep its name section)
    python bench/profile_core.py --cranelift-flag enable_heap_access_spectre_mitigation=false
    python bench/profile_core.py --no-llama --json out.json
    python bench/profile_core.py --time-only --rounds 3 --no-llama   # tok/s (thread CPU) only, no perf
    python bench/profile_core.py --phase decode --prompt-tokens 4000  # decode at a long context

How:
  * The module profiled is realm.wasm's code, built from core/ with build.py's
    flags (-O3) into a temporary directory, but with its name section kept
    (no -s: the code section is byte-identical to the release build's) and
    with a copy of batch.c (the forward pass) edited so that its helpers
    (rmsnorm, rope, attention, add_bias, matmul) are never inlined and each
    weight's matmul goes through its own wrapper (mm_wq, mm_wk, ..., mm_output),
    so every sample's call chain names the weight matrix (hence its shape).
    core/ itself is not touched.
  * wasmtime (wasmtime-py, realm_web.wasm_host's own Config, plus
    profiler="perfmap") writes /tmp/perf-PID.map, which names the JIT code of
    each wasm function; `perf record -g` (frame pointers; wasmtime keeps them)
    samples the child process at --freq Hz of CPU clock. The child enables
    perf (--control fifo) only after the model is loaded, compiled and warmed
    up, so compilation and loading are not in the profile.
  * Workloads (both engines the same, one thread, the default model unless
    --model): "prompt" evaluates the same 128-token prompt (realm's default
    batch of 64 tokens: two T=64 matmul passes) again and again from an empty
    cache; "decode" generates 32 tokens greedily after that prompt (context
    128..160), again and again. The child reports tokens and its thread CPU
    time; only samples of that thread count.
  * Each sample goes to one category by its call chain (classify_realm /
    classify_llama below); ms/token = share of samples x CPU ms per token.
    For matmuls the table adds GB/s of weight bytes (decode) or GOP/s
    (2*K*rows*T, prompt).
llama.cpp (llama-cpp-python, libggml-cpu.so has dynamic symbols for its
kernels) is profiled the same way for comparison. perf's sampling costs a few
per cent of speed: the tok/s printed here are lower than `realm bench`'s.
Requires `perf` (Debian: linux-perf) and perf_event_paranoid <= 2.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_PROMPT, N_GEN = 128, 32

# ------------------------------------------------------------------ build
WRAP_WEIGHTS = ["wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down", "output"]


def _wrap(src: str, fn: str, sites: list[tuple[str, str]], notes: list[str]) -> str:
    """Give each call site `fn(<args starting with pattern>` its own noinline copy mm_<name>."""
    m = re.search(r"^static __attribute__\(\(noinline\)\) (bool|void) %s\(([^)]*)\)\s*\{" % fn, src, flags=re.M)
    if not m:
        notes.append(f"{fn}() not found: samples will not name weights")
        return src
    ret, params = m.group(1), m.group(2)
    names = [re.findall(r"\w+", p)[-1] for p in params.split(",")]
    end = src.index("\n}\n", m.end()) + 3
    count, wrappers = 0, ""
    for name, rx in sites:
        src2, k = re.subn(r"\b%s\((%s)" % (fn, rx), r"mm_%s(\1" % name, src[end:])
        if k:
            src = src[:end] + src2
            call = f"{fn}({', '.join(names)});"
            wrappers += (f"static __attribute__((noinline)) {ret} mm_{name}({params}) "
                         f"{{ {'return ' if ret != 'void' else ''}{call} }}\n")
            count += k
    notes.append(f"{count} {fn}() call sites wrapped")
    return src[:end] + wrappers + src[end:]


def patch_forward_c(src: str) -> tuple[str, list[str]]:
    """batch.c for the profiling build: the forward pass's helpers noinline, and
    each matmul call site (one weight, or several sharing their activations,
    e.g. q/k/v) through its own wrapper mm_<name>, so samples name the weights."""
    notes = []
    src, n = re.subn(r"^(static )?(void|bool|float) (rmsnorm|rope|attention|attention_heads|add_bias|matmul|matmuls|swiglu|geglu|cache_row)\(",
                     r"\1__attribute__((noinline)) \2 \3(", src, flags=re.M)
    notes.append(f"{n} helpers made noinline")
    # several weights at once: matmuls(s, 3, qkv, ...) -> mm_qkv
    multi = sorted(set(re.findall(r"\bmatmuls\(\s*\w+\s*,\s*\d+\s*,\s*(\w+)\s*,", src)))
    src = _wrap(src, "matmuls", [(v, r"\s*\w+\s*,\s*\d+\s*,\s*%s\b" % v) for v in multi], notes)
    src = _wrap(src, "matmul", [(w, r"\s*\w+\s*,\s*&\s*(?:L|m)->%s\b" % w) for w in WRAP_WEIGHTS], notes)
    return src, notes


def build_profiling_wasm(relaxed: bool, out_dir: Path, core: Path | None = None, extra: list[str] = ()) -> Path:
    sys.path.insert(0, str(ROOT))
    import build as B  # the repository's build.py: same compiler and flags
    src = out_dir / "core"
    shutil.copytree(core or ROOT / "core", src)
    mc = src / "batch.c"   # the forward pass
    text, notes = patch_forward_c(mc.read_text())
    mc.write_text(text)
    out = out_dir / ("realm-prof-relaxed.wasm" if relaxed else "realm-prof.wasm")
    flags = B.CFLAGS + (B.RELAXED_FLAGS if relaxed else []) + ["-O3"] + list(extra) + B.LDFLAGS
    cmd = B.compiler_cmd() + [f"--target={B.TARGET}"] + flags + ["-o", str(out)] + [str(s) for s in sorted(src.glob("*.c"))]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit("profile_core.py: building the profiling module failed:\n" + r.stdout + r.stderr)
    print(f"profiling build: {out} ({'; '.join(notes)})", file=sys.stderr)
    return out


# ------------------------------------------------------------------ children
class PerfCtl:
    def __init__(self, ctl: str, ack: str):
        self.ctl = open(ctl, "w") if ctl else None
        self.ack = open(ack, "r") if ack else None

    def __call__(self, cmd: str) -> None:
        if self.ctl:
            self.ctl.write(cmd + "\n")
            self.ctl.flush()
            self.ack.readline()


def child_realm(a) -> dict:
    import wasmtime
    real_engine = wasmtime.Engine

    def engine(cfg=None):  # realm_web.wasm_host's own Config, plus the perf map and any flags
        cfg = cfg or wasmtime.Config()
        if a.ctl:
            cfg.profiler = "perfmap"
        for f in a.cranelift_flag:
            k, _, v = f.partition("=")
            cfg.cranelift_flag_set(k, v or "true")
        return real_engine(cfg)
    wasmtime.Engine = engine
    os.environ["REALM_THREADS"] = "1"  # one thread
    if a.wasm:
        os.environ["REALM_WASM"] = a.wasm
    from realm_web import wasm_host
    if a.wasm:
        wasm_host.WASM_PATH = Path(a.wasm)
    from realm_web.realm import Realm
    from realm_web.bench import prompt_ids
    N_PROMPT = a.prompt_tokens
    r = Realm.load(a.model, n_ctx=N_PROMPT + N_GEN + 8)
    ids = prompt_ids(lambda s: r.tokenize(s, add_special=False), N_PROMPT)
    s = r.session

    def one():
        if a.phase == "prompt":
            s.truncate(0)
            s.eval(ids)
            return N_PROMPT
        s.truncate(N_PROMPT)
        tok = 1
        for _ in range(N_GEN):
            tok = s.step(tok)
        return N_GEN
    s.eval(ids)
    one()  # warm up
    return run_timed(a, one)


def child_llama(a) -> dict:
    import llama_cpp
    from realm_web.bench import prompt_ids
    N_PROMPT = a.prompt_tokens
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=N_PROMPT + N_GEN + 8, n_batch=512, n_threads=1,
                          n_threads_batch=1, verbose=False)
    ids = prompt_ids(lambda t: llm.tokenize(t.encode(), add_bos=False, special=False), N_PROMPT)

    # (Llama.eval drops the KV cache past n_tokens first)
    def one():
        if a.phase == "prompt":
            llm.reset()
            llm.eval(ids)
            return N_PROMPT
        llm.n_tokens = N_PROMPT
        tok = 1
        for _ in range(N_GEN):
            llm.eval([tok])
        return N_GEN
    llm.eval(ids)
    one()
    return run_timed(a, one)


def run_timed(a, one) -> dict:
    perf = PerfCtl(a.ctl, a.ack)
    tid = threading.get_native_id()
    perf("enable")
    t_end = time.monotonic() + a.seconds
    n, c0 = 0, time.thread_time()
    while time.monotonic() < t_end:
        n += one()
    cpu = time.thread_time() - c0
    perf("disable")
    return {"tid": tid, "tokens": n, "cpu_s": cpu, "tok_s": n / cpu}


# ------------------------------------------------------------------ classify
def classify_realm(chain: list[str]) -> str:
    """chain: wasm function names, leaf first. One category per sample."""
    weight = next((f[3:] for f in chain if f.startswith("mm_")), None)
    wl = f" [{weight}]" if weight else ""
    leaf = chain[0]
    for f in chain:
        if f.startswith("quant_mm_"):
            typ = re.sub(r"_(one|many)$", "", f[9:])
            return f"matmul {typ}{wl}"
        if f in ("quant_matmul_q", "threads_matmul"):
            return f"matmul dispatch{wl}"
        if f.startswith("act_") or f.startswith("quant_act") or f in ("absmax", "threads_quantize"):
            return f"activation quantization{wl}"
        if f in ("swiglu", "geglu", "glu_item"):
            return "SwiGLU / GeGLU"
        if f == "cache_row":
            return "KV cache store (f32->f16)"
        if f.startswith("attention") or f in ("step_item", "threads_step"):
            return "attention (QK dot, softmax, PV)"
        if f == "rmsnorm":
            return "rmsnorm"
        if f == "rope":
            return "rope (sin/cos, rotation)"
        if f == "add_bias":
            return "bias add"
        if f.startswith("quant_dequant"):
            return "embedding row dequant"
        if f.startswith("sampler") or f.startswith("realm_sampler"):
            return "sampling / logits read"
        if f in ("forward", "run", "forward_batch", "session_eval", "session_step"):
            if leaf == "rt_expf":
                return "SwiGLU (expf)"
            if leaf in ("rt_f32_to_f16",):
                return "KV cache store (f32->f16)"
            return "forward pass inline code (residual adds, rope, norms' loops)"
    return f"other wasm: {leaf}"


LLAMA_MAP = [  # (regex on the leaf symbol, category)
    (r"ggml_vec_dot_q4_1_q8_1", "matmul q4_1 (vec_dot)"),
    (r"ggml_vec_dot_q8_0_q8_0|gemv_q8_0|gemm_q8_0", "matmul q8_0 (vec_dot / repack)"),
    (r"ggml_vec_dot_f16|soft_max|flash_attn|ggml_vec_mad_f16|ggml_vec_scale", "attention (f16 KQ/KQV, softmax)"),
    (r"ggml_vec_dot_|ggml_gemv|ggml_gemm|sgemm|tinyBLAS", "matmul other kernels"),
    (r"ggml_compute_forward_mul_mat", "mul_mat driver (ggml_compute_forward_mul_mat*)"),
    (r"quantize_row_q8|quantize_mat|ggml_quantize", "activation quantization"),
    (r"rms_norm", "rmsnorm"),
    (r"rope", "rope"),
    (r"swiglu|glu|silu", "SwiGLU"),
    (r"fp32_to_fp16|set_rows|cpy|dup", "KV cache store / copies (f32->f16)"),
    (r"get_rows", "embedding row dequant"),
    (r"ggml_compute_forward_add|ggml_vec_add", "residual adds"),
]


def classify_llama(chain: list[str], dsos: list[str]) -> str:
    leaf, dso = chain[0], dsos[0]
    if "libggml" in dso:
        for rx, cat in LLAMA_MAP:
            if re.search(rx, leaf):
                return cat
        return "other ggml (graph bookkeeping, unresolved addresses)"
    if "libllama" in dso:
        return "llama.cpp graph build / scheduling"
    return "host (Python, libc, kernel)"


# ------------------------------------------------------------------ perf
def perf_samples(data: Path, tid: int):
    """Yield (frames, dsos) of the given thread's samples, leaf first."""
    p = subprocess.Popen(["perf", "script", "-i", str(data), "-F", "tid,ip,sym,dso"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace")
    cur_tid, frames, dsos = None, [], []
    for line in p.stdout:
        if not line.strip():
            if cur_tid == tid and frames:
                yield frames, dsos
            cur_tid, frames, dsos = None, [], []
            continue
        if not line.startswith("\t") and not line.startswith(" " * 8):
            try:
                cur_tid = int(line.split()[0])
            except ValueError:
                cur_tid = None
            continue
        m = re.match(r"\s*([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$", line)
        if m:
            frames.append(m.group(2).split("+0x")[0])
            dsos.append(m.group(3))
    if cur_tid == tid and frames:
        yield frames, dsos
    p.wait()


def is_wasm(dso: str) -> bool:
    return dso.startswith("/tmp/perf-") and dso.endswith(".map")


def profile(engine: str, phase: str, a, wasm: str, tmp: Path) -> dict:
    ctl, ack = tmp / f"{engine}-{phase}.ctl", tmp / f"{engine}-{phase}.ack"
    for f in (ctl, ack):
        if f.exists():
            f.unlink()
        os.mkfifo(f)
    data = tmp / f"{engine}-{phase}.data"
    out = tmp / f"{engine}-{phase}.json"
    cmd = ["perf", "record", "-F", str(a.freq), "-g", "--control", f"fifo:{ctl},{ack}", "-D", "-1",
           "-o", str(data), "--", sys.executable, __file__, "--child", engine, "--phase", phase,
           "--seconds", str(a.seconds), "--model", a.model, "--wasm", wasm, "--prompt-tokens", str(a.prompt_tokens),
           "--ctl", str(ctl), "--ack", str(ack), "--out", str(out)] + sum((["--cranelift-flag", f] for f in a.cranelift_flag), [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode or not out.exists():
        sys.exit(f"profile_core.py: perf run failed ({' '.join(cmd[:6])} ...):\n{r.stderr[-3000:]}")
    res = json.loads(out.read_text())
    cats: collections.Counter = collections.Counter()
    n = 0
    for frames, dsos in perf_samples(data, res["tid"]):
        n += 1
        if engine == "realm":
            wasm_frames = [f for f, d in zip(frames, dsos) if is_wasm(d)]
            if not wasm_frames:
                cats["host (Python, wasmtime, kernel)"] += 1
            elif not is_wasm(dsos[0]):
                cats["host (Python, wasmtime, kernel)"] += 1  # e.g. a host call made from wasm
            else:
                cats[classify_realm(wasm_frames)] += 1
        else:
            cats[classify_llama(frames, dsos)] += 1
    res["samples"] = n
    res["categories"] = dict(cats)
    return res


# ------------------------------------------------------------------ report
def model_shapes(model: str) -> dict:
    """weight -> (type name, K, rows, bytes) of layer 0 (all layers are alike) and of the head."""
    import gguf
    rd = gguf.GGUFReader(model)
    t = {x.name: x for x in rd.tensors}
    names = {"wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
             "w_gate": "ffn_gate", "w_up": "ffn_up", "w_down": "ffn_down"}
    n_layer = sum(1 for k in t if k.endswith(".attn_norm.weight"))
    out = {}
    for w, g in names.items():
        x = t[f"blk.0.{g}.weight"]
        out[w] = (x.tensor_type.name, int(x.shape[0]), int(x.shape[1]), int(x.n_bytes) * n_layer, n_layer)
    x = t.get("output.weight") or t["token_embd.weight"]
    out["output"] = (x.tensor_type.name, int(x.shape[0]), int(x.shape[1]), int(x.n_bytes), 1)
    for group, ws in (("qkv", ("wq", "wk", "wv")), ("gate_up", ("w_gate", "w_up"))):
        if all(w in out for w in ws):  # (K, summed rows, summed bytes)
            out[group] = ("+".join(sorted({out[w][0] for w in ws})), out[ws[0]][1], sum(out[w][2] for w in ws),
                          sum(out[w][3] for w in ws), n_layer)
    return out


def fold_small(results: dict, limit: float = 0.003) -> None:
    """Categories under `limit` of the samples in every phase go to one line."""
    for eng in ("realm", "llama"):
        rs = [r for (e, _), r in results.items() if e == eng]
        cats = {c for r in rs for c in r["categories"]}
        for c in cats:
            if all(r["categories"].get(c, 0) < limit * max(r["samples"], 1) for r in rs):
                for r in rs:
                    n = r["categories"].pop(c, 0)
                    if n:
                        r["categories"]["other (each < 0.3%)"] = r["categories"].get("other (each < 0.3%)", 0) + n


def report(results: dict, shapes: dict, phases: list[str], n_prompt: int = N_PROMPT) -> str:
    fold_small(results)
    lines = []
    for eng in ("realm", "llama"):
        if not any((eng, p) in results for p in phases):
            continue
        cats = sorted({c for p in phases if (eng, p) in results for c in results[eng, p]["categories"]},
                      key=lambda c: -max(results[eng, p]["categories"].get(c, 0) / max(results[eng, p]["samples"], 1)
                                         for p in phases if (eng, p) in results))
        parts = [f"{p}: {results[eng, p]['tok_s']:.1f} tok/s cpu, {results[eng, p]['samples']} samples"
                 for p in phases if (eng, p) in results]
        hdr = f"{'realm.wasm' if eng == 'realm' else 'llama.cpp'} ({'; '.join(parts)})"
        lines.append(hdr)
        head = f"{'function':62s}" + "".join(f" {p + ' %':>9s} {'ms/tok':>7s} {'rate':>11s}" for p in phases)
        lines.append(head)
        for c in cats:
            row = f"{c[:62]:62s}"
            for p in phases:
                r = results.get((eng, p))
                if not r:
                    row += " " * 29
                    continue
                frac = r["categories"].get(c, 0) / max(r["samples"], 1)
                ms = frac * r["cpu_s"] / r["tokens"] * 1e3
                rate = ""
                m = re.match(r"matmul \S+ \[(\w+)\]", c)
                if m and m.group(1) in shapes and ms > 0:
                    typ, K, rows, nbytes, nl = shapes[m.group(1)]
                    if p == "decode":
                        rate = f"{nbytes / (ms * 1e-3) / 1e9:.1f} GB/s"
                    else:
                        per_tok = nl if m.group(1) != "output" else nl / n_prompt  # head: last token only
                        rate = f"{2 * K * rows * per_tok / (ms * 1e-3) / 1e9:.1f} GOP/s"
                row += f" {100 * frac:9.1f} {ms:7.2f} {rate:>11s}"
            lines.append(row)
        lines.append("")
    return "\n".join(lines)


def time_only(a, phases: list[str]) -> None:
    """tok/s of each engine and phase, each a fresh child process, engines taking turns."""
    wasm = a.wasm or os.environ.get("REALM_WASM") or ""
    engines = ["realm"] + ([] if a.no_llama else ["llama"])
    res: dict = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="realm-time-") as td:
        for _ in range(a.rounds):
            for p in phases:
                for eng in engines:
                    out = Path(td) / "r.json"
                    cmd = [sys.executable, __file__, "--child", eng, "--phase", p, "--seconds", str(a.seconds),
                           "--model", a.model, "--prompt-tokens", str(a.prompt_tokens), "--out", str(out)] + \
                        (["--wasm", wasm] if wasm else []) + \
                        sum((["--cranelift-flag", f] for f in a.cranelift_flag), [])
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    if r.returncode:
                        sys.exit(r.stderr[-2000:])
                    res[eng, p].append(json.loads(out.read_text())["tok_s"])
    load = os.getloadavg()
    print(f"tok/s (thread CPU time), {a.rounds} round(s) of {a.seconds:g} s; wasm {wasm or 'default'}"
          f"{'; cranelift ' + str(a.cranelift_flag) if a.cranelift_flag else ''}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for (eng, p), v in res.items():
        print(f"  {eng:6s} {p:7s} " + " ".join(f"{x:7.1f}" for x in v) + f"   median {sorted(v)[len(v) // 2]:.1f}")


GROUPS = [  # (name, regex on realm categories, regex on llama.cpp categories)
    ("matmul, layer weights (Q4_1 in SmolLM2)", r"^matmul (?!dispatch).*\[(wq|wk|wv|wo|w_gate|w_up|w_down|qkv|gate_up)\]",
     r"^matmul q4_1"),
    ("matmul, output head (Q8_0 576x49152)", r"^matmul .*\[output\]", r"^matmul q8_0"),
    ("matmul dispatch / driver", r"^matmul dispatch|^matmul other", r"mul_mat driver|^matmul other"),
    ("activation quantization", r"^activation quantization", r"^activation quantization"),
    ("attention", r"^attention", r"^attention"),
    ("SwiGLU", r"^SwiGLU", r"^SwiGLU"),
    ("rope", r"^rope", r"^rope"),
    ("rmsnorm", r"^rmsnorm", r"^rmsnorm"),
    ("KV cache store", r"^KV cache", r"^KV cache"),
    ("residual adds and other inline forward code", r"^forward pass inline|^bias add", r"^residual"),
    ("embedding, sampling", r"^embedding|^sampling", r"^embedding"),
    ("host, graph, other", r".", r"."),
]


def summary(results: dict, phases: list[str]) -> str:
    """One table, both engines: ms per token (and % of the engine's time) per group."""
    lines = ["summary: ms per token (% of that engine's time)"]
    hdr = f"{'':44s}" + "".join(f" {'realm ' + p:>17s} {'llama ' + p:>17s}" for p in phases)
    lines.append(hdr)
    tot = {k: 0.0 for k in results}
    rows = []
    for name, rx_realm, rx_llama in GROUPS:
        row = f"{name[:44]:44s}"
        for p in phases:
            for eng, rx in (("realm", rx_realm), ("llama", rx_llama)):
                r = results.get((eng, p))
                if not r:
                    row += f" {'-':>17s}"
                    continue
                taken = r.setdefault("_taken", set())
                n = 0
                for c, k in r["categories"].items():
                    if c not in taken and re.search(rx, c):
                        taken.add(c)
                        n += k
                frac = n / max(r["samples"], 1)
                ms = frac * r["cpu_s"] / r["tokens"] * 1e3
                tot[eng, p] += ms
                row += f" {ms:8.2f} ({100 * frac:4.1f}%)"
        rows.append(row)
    lines += rows
    row = f"{'total':44s}"
    for p in phases:
        for eng in ("realm", "llama"):
            row += f" {tot.get((eng, p), 0):8.2f}        " if (eng, p) in results else f" {'-':>17s}"
    lines.append(row)
    for r in results.values():
        r.pop("_taken", None)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=["decode", "prompt", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=10.0, help="profiled seconds per engine and phase")
    ap.add_argument("--freq", type=int, default=2000, help="perf sampling frequency (Hz)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompt-tokens", type=int, default=N_PROMPT,
                    help="prompt length; decode runs after it (default %(default)s; e.g. 4000 for long-context decode)")
    ap.add_argument("--wasm", default=None, help="profile this module (default: build one from core/)")
    ap.add_argument("--relaxed", action="store_true", help="build and profile the relaxed-SIMD variant")
    ap.add_argument("--core", default=None, help="build from this copy of core/ (default: the repository's)")
    ap.add_argument("--cflags", default="", help="extra compiler flags for the profiling build, e.g. -DNAME=1")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--cranelift-flag", action="append", default=[], help="NAME=VALUE for wasmtime's Cranelift")
    ap.add_argument("--json", default=None)
    ap.add_argument("--time-only", action="store_true",
                    help="no perf: print tok/s (thread CPU time) of each engine and phase, --rounds times")
    ap.add_argument("--rounds", type=int, default=1, help="with --time-only: repetitions (engines take turns)")
    ap.add_argument("--child", choices=["realm", "llama"], help=argparse.SUPPRESS)
    ap.add_argument("--ctl", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ack", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.model is None:
        from realm_web.default_model import default_model_path
        a.model = str(default_model_path())
    if a.child:
        res = child_realm(a) if a.child == "realm" else child_llama(a)
        Path(a.out).write_text(json.dumps(res))
        return
    if not shutil.which("perf"):
        sys.exit("profile_core.py needs Linux perf (Debian: apt-get install linux-perf)")
    phases = ["decode", "prompt"] if a.phase == "both" else [a.phase]
    if a.time_only:
        return time_only(a, phases)
    with tempfile.TemporaryDirectory(prefix="realm-prof-") as td:
        tmp = Path(td)
        wasm = a.wasm or str(build_profiling_wasm(a.relaxed, tmp, Path(a.core) if a.core else None,
                                                  a.cflags.split()))
        results = {}
        for p in phases:
            for eng in ["realm"] + ([] if a.no_llama else ["llama"]):
                results[eng, p] = profile(eng, p, a, wasm, tmp)
                print(f"{eng} {p}: {results[eng, p]['tok_s']:.1f} tok/s (thread CPU, under perf), "
                      f"{results[eng, p]['samples']} samples", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"model {a.model}\nprompt {a.prompt_tokens} tokens (realm: batches of 64), decode {N_GEN} tokens after it; "
          f"1 thread; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
          + (f"; cranelift flags {a.cranelift_flag}" if a.cranelift_flag else "") + "\n")
    print(report(results, model_shapes(a.model), phases, a.prompt_tokens))
    print(summary(results, phases))
    if a.json:
        Path(a.json).write_text(json.dumps({f"{e}/{p}": v for (e, p), v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
