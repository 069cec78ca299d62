#!/usr/bin/env python3
"""Micro-benchmark of realm.wasm's matrix kernels (core/quant_*.c) under wasmtime,
optionally next to llama.cpp's (ggml's CPU backend, through libggml of
llama-cpp-python) at the same shapes.

For every runnable ggml type: a rows x K weight matrix of random valid blocks,
activations quantized once (realm_quant_act_quantize), then
realm_quant_bench runs the kernel `reps` times inside one call (so the
wasmtime call overhead does not count). Prints, per type:

  T=1   GB/s of weight bytes streamed (the decode / matvec case)
  T=8, T=32   GFLOP/s (2*rows*K*T flops per matmul; prompt processing)

    python bench/bench_kernels.py                  # K=4096, rows=4096 (a 7B layer's q/o matrix)
    python bench/bench_kernels.py --K 576 --rows 1536 --types Q4_0,Q8_0
    python bench/bench_kernels.py --min-time 2     # longer runs, steadier numbers
    python bench/bench_kernels.py --smollm2        # T=1 at SmolLM2-135M's shapes (576/1536 wide, 49152-row head)
    python bench/bench_kernels.py --smollm2 --types Q4_1,Q8_0 --tokens 1,64 --llama --stream 64
          # realm vs llama.cpp at SmolLM2's shapes; T=1 weights streamed from DRAM as in decode
    python bench/bench_kernels.py --smollm2 --types Q4_1 --wasm a.wasm,b.wasm
          # two builds, measured alternately in one process (A/B on a busy machine)
    python bench/bench_kernels.py --smollm2 --types Q5_0,Q5_0x4 --tokens 1,64
          # a type name ending in x4: the matrix repacked into the x4 layout realm_model_load
          # gives Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 weights (realm_quant_repack_x4), next to ggml's layout
    REALM_SIMD=simd128 python bench/bench_kernels.py   # the SIMD128 build (default: relaxed SIMD, as the host picks)
    python bench/bench_kernels.py --cranelift-flag enable_heap_access_spectre_mitigation=true

--stream MB: the weight matrix is repeated (its rows tiled) until it holds at
least MB megabytes, and the whole of it is the matmul: the T=1 kernel then
streams weights from DRAM as decode does with a real model (SmolLM2's 98 MB
exceed the 32 MB L3 here); without it a small matrix is re-read from cache.
In --smollm2 mode the default is --stream 64 for T=1.

Build first: python build.py (the host then loads realm-mt-relaxed.wasm: wasmtime
has relaxed SIMD). Single-threaded; times are this thread's CPU
time (best of --repeat, measured round-robin across engines), so other
processes on the machine disturb them less, but not memory bandwidth: check
`uptime` (printed). llama.cpp's times include its activation quantization
(ggml quantizes src1 inside mul_mat); realm's exclude theirs (a separate
step, quant_act_quantize; it is printed as 'act' in --smollm2 mode).
No numbers are asserted anywhere.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from realm_web import wasm_host  # noqa: E402
from realm_web.abi import GGML_TYPES  # noqa: E402
from realm_web.wasm_host import WasmCore  # noqa: E402

# name: (id, block elements, block bytes) of every type the core runs (core/abi.json)
TYPES = {t["name"]: (tid, t["block"], t["bytes"]) for tid, t in sorted(GGML_TYPES.items()) if t["runs"]}
# byte offsets of f16 scales inside a block (set to small sane values)
F16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q8_1": [0, 2],
              "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
X4 = "x4"  # a type name with this suffix (Q4_0x4): the matrix repacked into the x4 layout (realm_quant_repack_x4)


def base_name(name: str) -> str:
    return name[:-len(X4)] if name.endswith(X4) else name


SMOLLM2_SHAPES = [(576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152)]  # q/o, k/v, gate/up, down, head


def apply_cranelift_flags(flags: list[str]) -> None:
    """Compile the module with extra Cranelift settings (NAME=VALUE): wasm_host's
    own Config, plus these (for measuring, e.g., the Spectre mitigation of
    bounds checks). Must run before the first WasmCore."""
    if not flags:
        return
    import wasmtime
    real_engine = wasmtime.Engine

    def engine(cfg=None):
        cfg = cfg or wasmtime.Config()
        for f in flags:
            k, _, v = f.partition("=")
            cfg.cranelift_flag_set(k, v or "true")
        return real_engine(cfg)
    wasmtime.Engine = engine
    wasm_host._engine = None


def new_core(path: str | None) -> WasmCore:
    """A WasmCore of the module at path (None: wasm_host's default)."""
    if path is None:
        return WasmCore()
    try:  # hosts that take a path
        return WasmCore(path=path)
    except TypeError:  # one module per process: swap it
        wasm_host.WASM_PATH = Path(path)
        wasm_host._module = None
        return WasmCore()


def random_weights(name: str, rows: int, K: int, rng: np.random.Generator) -> np.ndarray:
    name = base_name(name)
    tid, bs, ts = TYPES[name]
    if name == "F32":
        return rng.standard_normal((rows, K), dtype=np.float32).view(np.uint8)
    if name == "F16":
        return rng.standard_normal((rows, K)).astype(np.float16).view(np.uint8)
    if name == "BF16":
        return (rng.standard_normal((rows, K), dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    blocks = rng.integers(0, 256, (rows * K // bs, ts), dtype=np.uint8)
    for off in F16_FIELDS.get(name, []):
        blocks[:, off:off + 2] = np.full(len(blocks), 0.01, np.float16).view(np.uint8).reshape(-1, 2)
    if name == "Q8_K":
        blocks[:, 0:4] = np.full(len(blocks), 0.01, np.float32).view(np.uint8).reshape(-1, 4)
    return blocks.reshape(rows, -1)


# ------------------------------------------------------------------ engines
class RealmCase:
    """One (type, K, rows, T) problem set up in one realm.wasm instance."""

    def __init__(self, c: WasmCore, name: str, W: np.ndarray, K: int, x: np.ndarray):
        self.c, self.tid, self.K = c, TYPES[base_name(name)][0], K
        self.rows, self.T = W.shape[0], x.shape[0]
        self.wp = c.alloc(W.nbytes)
        c.write(self.wp, np.ascontiguousarray(W))
        if name.endswith(X4):
            self.tid = c.call("realm_quant_repack_x4", self.tid, self.wp, K, self.rows)
            c.check(self.tid, "realm_quant_repack_x4")
        self.xp = c.alloc(x.nbytes)
        c.write(self.xp, np.ascontiguousarray(x))
        self.xq = c.alloc(c.call("realm_quant_act_bytes", self.tid, K, self.T))
        c.check(c.call("realm_quant_act_quantize", self.tid, self.xp, K, self.T, self.xq), "act")
        self.yp = c.alloc(4 * self.rows * self.T)

    def run(self, reps: int) -> None:
        self.c.call("realm_quant_bench", self.tid, self.wp, self.K, self.rows, self.xq, self.T, self.yp, reps)

    def run_act(self, reps: int) -> None:
        for _ in range(reps):
            self.c.call("realm_quant_act_quantize", self.tid, self.xp, self.K, self.T, self.xq)

    def free(self) -> None:
        for p in (self.wp, self.xp, self.xq, self.yp):
            self.c.free(p)


class Ggml:
    """ggml (llama.cpp's CPU backend) from llama-cpp-python's shared libraries, via ctypes."""

    class Params(ctypes.Structure):
        _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]

    def __init__(self):
        import llama_cpp
        d = Path(llama_cpp.__file__).parent / "lib"
        self.base = b = ctypes.CDLL(str(d / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        self.cpu = cpu = ctypes.CDLL(str(d / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
        vp = ctypes.c_void_p
        b.ggml_init.restype, b.ggml_init.argtypes = vp, [Ggml.Params]
        b.ggml_new_tensor_2d.restype, b.ggml_new_tensor_2d.argtypes = vp, [vp, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        b.ggml_mul_mat.restype, b.ggml_mul_mat.argtypes = vp, [vp, vp, vp]
        b.ggml_new_graph_custom.restype, b.ggml_new_graph_custom.argtypes = vp, [vp, ctypes.c_size_t, ctypes.c_bool]
        b.ggml_build_forward_expand.argtypes = [vp, vp]
        b.ggml_get_data.restype, b.ggml_get_data.argtypes = vp, [vp]
        b.ggml_nbytes.restype, b.ggml_nbytes.argtypes = ctypes.c_size_t, [vp]
        b.ggml_free.argtypes = [vp]
        cpu.ggml_graph_compute_with_ctx.restype = ctypes.c_int
        cpu.ggml_graph_compute_with_ctx.argtypes = [vp, vp, ctypes.c_int]
        cpu.ggml_cpu_init()
        self.version = llama_cpp.__version__


class GgmlCase:
    """The same problem as one ggml graph: y = mul_mat(W, x), `reps` copies of
    the node (so one compute call runs the kernel reps times)."""

    def __init__(self, g: Ggml, name: str, W: np.ndarray, K: int, x: np.ndarray, reps_max: int = 64,
                 calls: int = 1000):
        self.g, b = g, g.base
        tid = TYPES[base_name(name)][0]
        # (ggml_graph_compute_with_ctx takes each call's work buffer from the context)
        self.ctx = b.ggml_init(Ggml.Params(W.nbytes + x.nbytes * 3 + 4 * W.shape[0] * x.shape[0] * (reps_max + 1)
                                           + (x.nbytes + 4096) * calls + (16 << 20), None, False))
        self.W = b.ggml_new_tensor_2d(self.ctx, tid, K, W.shape[0])
        ctypes.memmove(b.ggml_get_data(self.W), np.ascontiguousarray(W).ctypes.data, W.nbytes)
        self.x = b.ggml_new_tensor_2d(self.ctx, 0, K, x.shape[0])
        ctypes.memmove(b.ggml_get_data(self.x), np.ascontiguousarray(x, dtype=np.float32).ctypes.data, x.nbytes)
        self.graphs: dict[int, int] = {}
        self.reps_max = reps_max

    def run(self, reps: int) -> None:
        reps = min(reps, self.reps_max)
        gf = self.graphs.get(reps)
        if gf is None:
            b = self.g.base
            gf = self.graphs[reps] = b.ggml_new_graph_custom(self.ctx, 4 * reps + 16, False)
            for _ in range(reps):
                b.ggml_build_forward_expand(gf, b.ggml_mul_mat(self.ctx, self.W, self.x))
        self.g.cpu.ggml_graph_compute_with_ctx(self.ctx, gf, 1)

    def free(self) -> None:
        self.g.base.ggml_free(self.ctx)


def calibrate(case, min_time: float, repeat: int, cap: int = 1 << 30) -> int:
    """reps such that one call takes about min_time / repeat seconds."""
    reps, target = 1, min_time / repeat
    while True:
        t0 = time.thread_time()
        case.run(reps)
        dt = time.thread_time() - t0
        if dt >= target or reps >= cap:
            return reps
        reps = min(cap, max(reps * 2, int(reps * target / max(dt, 1e-6) * 1.2)))


def time_cases(cases: list, min_time: float, repeat: int) -> list[float]:
    """Seconds per kernel run of each case: best of `repeat` calls, the cases
    taking turns (so a disturbance hits all of them alike)."""
    reps = [calibrate(c, min_time / len(cases), repeat, getattr(c, "reps_max", 1 << 30)) for c in cases]
    best = [float("inf")] * len(cases)
    for _ in range(repeat):
        for i, c in enumerate(cases):
            t0 = time.thread_time()
            c.run(reps[i])
            best[i] = min(best[i], (time.thread_time() - t0) / reps[i])
    return best


def load_line() -> str:
    a = os.getloadavg()
    return f"load average {a[0]:.2f} {a[1]:.2f} {a[2]:.2f}"


# ------------------------------------------------------------------ modes
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--K", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--tokens", default=None, help="token counts T (default 1,8,32; --smollm2: 1)")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per type and T")
    ap.add_argument("--repeat", type=int, default=30, help="best of this many timed calls")
    ap.add_argument("--smollm2", action="store_true",
                    help="SmolLM2-135M's matmul shapes (K x rows): 576x576, 576x192, 576x1536, 1536x576, 576x49152")
    ap.add_argument("--stream", type=float, default=None,
                    help="tile weights to at least this many MB (T=1 only; --smollm2 default 64)")
    ap.add_argument("--wasm", default=None, help="comma-separated builds to compare (default: wasm_host's module)")
    ap.add_argument("--llama", action="store_true", help="also time llama.cpp's ggml CPU kernels")
    ap.add_argument("--cranelift-flag", action="append", default=[], metavar="NAME=VALUE",
                    help="extra Cranelift setting for wasmtime (repeatable)")
    args = ap.parse_args()
    apply_cranelift_flags(args.cranelift_flag)
    if args.smollm2:
        return smollm2(args)
    if args.wasm or args.llama:
        return compare(args, [(args.K, args.rows)], [int(t) for t in (args.tokens or "1,8,32").split(",")],
                       args.stream or 0)

    c = WasmCore()
    rng = np.random.default_rng(0)
    toks = [int(t) for t in (args.tokens or "1,8,32").split(",")]
    K, rows = args.K, args.rows
    print(f"realm.wasm kernels, wasmtime, 1 thread, rows={rows} K={K}; {load_line()}")
    print(f"{'type':6s} {'MB':>7s} " + " ".join(
        f"{('T=%d GB/s' % t) if t == 1 else ('T=%d GFLOP/s' % t):>14s}" for t in toks))
    for name in args.types.split(","):
        tid, bs, ts = TYPES[base_name(name)]
        if K % bs:
            print(f"{name:6s}  (K={K} is not a multiple of its block size {bs})")
            continue
        W = random_weights(name, rows, K, rng)
        cols = []
        for T in toks:
            case = RealmCase(c, name, W, K, rng.standard_normal((T, K), dtype=np.float32))
            sec = time_cases([case], args.min_time, args.repeat)[0]
            cols.append(W.nbytes / sec / 1e9 if T == 1 else 2.0 * rows * K * T / sec / 1e9)
            case.free()
        print(f"{name:6s} {W.nbytes / 1e6:7.1f} " + " ".join(f"{v:14.2f}" for v in cols), flush=True)


def smollm2(args) -> None:
    toks = [int(t) for t in (args.tokens or "1").split(",")]
    stream = 64.0 if args.stream is None else args.stream
    compare(args, SMOLLM2_SHAPES, toks, stream)


def compare(args, shapes, toks, stream_mb: float) -> None:
    """Every (type, shape, T): realm build(s) and optionally llama.cpp, measured in turns."""
    paths = args.wasm.split(",") if args.wasm else [None]
    cores = [new_core(p) for p in paths]
    names = [Path(p).name if p else "realm.wasm" for p in paths]
    g = Ggml() if args.llama else None
    if g:
        names.append(f"llama.cpp {g.version}")
    rng = np.random.default_rng(0)
    print(f"matmul kernels, 1 thread; T=1: GB/s of weights{f' (streamed, >= {stream_mb:g} MB)' if stream_mb else ''}, "
          f"T>1: GOP/s (2*K*rows*T); {load_line()}")
    if args.cranelift_flag:
        print(f"cranelift flags: {args.cranelift_flag}")
    hdr = f"{'type':6s} {'K x rows':>11s} {'T':>3s} " + " ".join(f"{n[:18]:>18s}" for n in names)
    if g:
        hdr += "  " + " ".join(f"{'/llama':>7s}" for _ in cores)
    print(hdr)
    for name in args.types.split(","):
        tid, bs, ts = TYPES[base_name(name)]
        for K, rows in shapes:
            if K % bs:
                continue
            W0 = random_weights(name, rows, K, rng)
            for T in toks:
                W = W0
                if T == 1 and stream_mb and W0.nbytes < stream_mb * 1e6:
                    W = np.tile(W0, (int(np.ceil(stream_mb * 1e6 / W0.nbytes)), 1))
                x = rng.standard_normal((T, K), dtype=np.float32)
                cases = [RealmCase(c, name, W, K, x) for c in cores]
                if g:
                    cases.append(GgmlCase(g, name, W, K, x, calls=args.repeat + 100))
                secs = time_cases(cases, args.min_time, args.repeat)
                vals = [W.nbytes / s / 1e9 if T == 1 else 2.0 * W.shape[0] * K * T / s / 1e9 for s in secs]
                line = f"{name:6s} {f'{K}x{rows}':>11s} {T:3d} " + " ".join(f"{v:18.2f}" for v in vals)
                if g:  # each realm build / llama.cpp
                    line += "  " + " ".join(f"{v / vals[-1]:6.2f}x" for v in vals[:-1])
                print(line, flush=True)
                for cs in cases:
                    cs.free()


if __name__ == "__main__":
    main()
