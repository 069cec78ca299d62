"""realm.wasm's ggml types (core/quant*.c) against outside references.

* Dequantization: bit-exact with gguf-py's `gguf.quants.dequantize` (and, where
  llama-cpp-python is installed, with ggml's own dequantize_row_*), on random
  blocks (sane, extreme, zero and subnormal f16 scales), on blocks quantized
  from random floats, and on every tensor of the default model.
* Activation quantization: byte-exact with a numpy transcription of what
  llama.cpp's CPU backend does on x86 (quantize_row_q8_0/q8_1 with AVX,
  quantize_row_q8_K_ref, f16/bf16 round to nearest even), and with llama.cpp's
  compiled functions themselves.
* Matrix products: against float64 numpy on the dequantized weights times
  (a) the same quantized activations, with a tolerance derived from f32
  rounding only, and (b) the unquantized activations, with the activation
  quantization error bound added; against llama.cpp's ggml_vec_dot_*; and bit
  identity of any row range or token batch with the full call.

Build realm.wasm first: `python build.py`.
"""
from __future__ import annotations

import ctypes
import zlib
from pathlib import Path

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as QT
from gguf.constants import GGML_QUANT_SIZES

from f32_math import exp_f32, swiglu_f32
from realm_web import wasm_host
from realm_web.wasm_host import WasmCore

RUNNABLE = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
            "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"]
FLOAT_TYPES = ["F32", "F16", "BF16"]
LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1"]
K_TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"]
GGUF_DEQUANT = [t for t in RUNNABLE if t not in ("Q8_1", "Q8_K")]   # gguf-py has no Q8_1/Q8_K
GGUF_QUANT = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]

# llama.cpp's vec_dot_type per weight type (ggml-cpu.c type_traits_cpu). Q8_1
# weights have no CPU kernel in llama.cpp; its declared vec_dot_type is Q8_1.
VEC_DOT = {"F32": "F32", "F16": "F16", "BF16": "BF16", "Q4_0": "Q8_0", "Q5_0": "Q8_0", "Q8_0": "Q8_0",
           "Q4_1": "Q8_1", "Q5_1": "Q8_1", "Q8_1": "Q8_1", **{t: "Q8_K" for t in K_TYPES}}

# Byte offsets of the f16 scale fields in each block (ggml-common.h).
#   scale: multiplies the quants; minf: the min/offset field (zeroing it
#   leaves the scale part, zeroing `scale` leaves the min part).
SCALE = {"Q4_0": [0], "Q4_1": [0], "Q5_0": [0], "Q5_1": [0], "Q8_0": [0], "Q8_1": [0],
         "Q2_K": [80], "Q3_K": [108], "Q4_K": [0], "Q5_K": [0], "Q6_K": [208]}
MINF = {"Q4_1": [2], "Q5_1": [2], "Q8_1": [2], "Q2_K": [82], "Q4_K": [2], "Q5_K": [2]}
HAS_MIN = ("Q4_1", "Q5_1", "Q2_K", "Q4_K", "Q5_K")  # x = d*q + m (Q8_1's s is not a min)

U = 2.0 ** -24  # f32 unit roundoff


def tid(name: str) -> int:
    return int(QT[name])


def sizes(name: str) -> tuple[int, int]:
    """(elements, bytes) per block. gguf-py 0.19 lists Q8_1 with the old f32 d
    and s (40 bytes); ggml's block_q8_1 has f16 d and s: 36 bytes."""
    return (32, 36) if name == "Q8_1" else GGML_QUANT_SIZES[QT[name]]


# ----------------------------------------------------------------------- host

class Core:
    """realm.wasm with the quant exports wrapped; buffers are freed after each call."""

    def __init__(self) -> None:
        self.c = WasmCore()

    def put(self, data) -> int:
        a = np.ascontiguousarray(data)
        p = self.c.alloc(a.nbytes)
        if a.nbytes:
            self.c.write(p, a)
        return p

    def get(self, p: int, dtype, n: int) -> np.ndarray:
        return self.c.view(p, dtype, n).copy()

    def call(self, name: str, *args) -> int:
        return self.c.call(name, *args)

    def dequant(self, name: str, raw: np.ndarray, n: int) -> np.ndarray:
        src, dst = self.put(raw), self.c.alloc(4 * n)
        try:
            self.c.check(self.call("realm_quant_dequant", tid(name), src, dst, n), "dequant")
            return self.get(dst, np.float32, n)
        finally:
            self.c.free(src), self.c.free(dst)

    def act(self, wname: str, x: np.ndarray) -> np.ndarray:
        """x (T, K) f32 -> ggml bytes of the vec_dot type, (T, row bytes)."""
        T, K = x.shape
        xp = self.put(x.astype(np.float32))
        xq = self.c.alloc(self.call("realm_quant_act_bytes", tid(wname), K, T))
        nb = self.call("realm_quant_act_export_bytes", tid(wname), K, T)
        out = self.c.alloc(nb)
        try:
            self.c.check(self.call("realm_quant_act_quantize", tid(wname), xp, K, T, xq), "act")
            self.c.check(self.call("realm_quant_act_export", tid(wname), xq, K, T, out), "export")
            return self.get(out, np.uint8, nb).reshape(T, -1)
        finally:
            for p in (xp, xq, out):
                self.c.free(p)

    def matmul(self, name: str, W: np.ndarray, K: int, rows: int, x: np.ndarray,
               ranges: list[tuple[int, int]] | None = None) -> np.ndarray:
        """y (T, rows) = W x^T; with `ranges`, one realm_quant_matmul_rows call per range."""
        T = x.shape[0]
        wp, xp, yp = self.put(W), self.put(x.astype(np.float32)), self.c.alloc(4 * rows * T)
        try:
            self.c.view(yp, np.float32, rows * T)[:] = np.nan
            if ranges is None:
                self.c.check(self.call("realm_quant_matmul", tid(name), wp, K, rows, xp, T, yp), "matmul")
            else:
                for r0, r1 in ranges:
                    self.c.check(self.call("realm_quant_matmul_rows", tid(name), wp, K, r0, r1, xp, T, yp, rows),
                                 "matmul_rows")
            return self.get(yp, np.float32, rows * T).reshape(T, rows)
        finally:
            for p in (wp, xp, yp):
                self.c.free(p)


@pytest.fixture(scope="module")
def core() -> Core:
    return Core()


# ------------------------------------------------------ numpy references
# llama.cpp's activation quantizers as its CPU backend runs them on x86
# (ggml-cpu/arch/x86/quants.c: quantize_row_q8_0 / q8_1 with AVX, and
# quantize_row_q8_K = ggml-quants.c's quantize_row_q8_K_ref), in numpy with the
# same f32 operations. Blocks (ggml-common.h):
#   block_q8_0 {f16 d; i8 qs[32]}          d = amax/127, qs = rint(x * (127/amax)) (half to even)
#   block_q8_1 {f16 d; f16 s; i8 qs[32]}   as q8_0, s = f16(d * sum(qs)) with f32 d
#   block_q8_K {f32 d; i8 qs[256]; i16 bsums[16]}
#       max = first x of largest |x|, iscale = -127/max, qs = min(127, rint(iscale*x)),
#       bsums = sums of 16 qs, d = 1/iscale; an all-zero block gives d = 0, qs = 0.
# (ggml's portable quantize_row_q8_0_ref rounds half away from zero with
# 1/d instead; realm follows the x86 build, which the reference runs use.)

def ref_q8_0_parts(x: np.ndarray):
    b = x.astype(np.float32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.rint((b * inv[:, None]).astype(np.float32)).astype(np.int8)
    return d, q


def ref_q8_0(x: np.ndarray) -> np.ndarray:
    d, q = ref_q8_0_parts(x)
    return np.concatenate([d.astype(np.float16)[:, None].view(np.uint8), q.view(np.uint8)], axis=1).reshape(-1)


def ref_q8_1(x: np.ndarray) -> np.ndarray:
    d, q = ref_q8_0_parts(x)
    s = (q.astype(np.int32).sum(axis=1).astype(np.float32) * d).astype(np.float32)
    return np.concatenate([d.astype(np.float16)[:, None].view(np.uint8), s.astype(np.float16)[:, None].view(np.uint8),
                           q.view(np.uint8)], axis=1).reshape(-1)


def ref_q8_K(x: np.ndarray) -> np.ndarray:
    b = x.astype(np.float32).reshape(-1, 256)
    out = np.zeros((len(b), 292), np.uint8)
    for i, blk in enumerate(b):
        j = int(np.argmax(np.abs(blk)))  # first index of the largest magnitude
        if blk[j] == 0:
            continue  # d = 0, qs = 0, bsums = 0
        iscale = np.float32(-127) / blk[j]
        q = np.minimum(np.rint((iscale * blk).astype(np.float32)), 127).astype(np.int8)
        out[i, 0:4] = np.array([np.float32(1) / iscale], np.float32).view(np.uint8)
        out[i, 4:260] = q.view(np.uint8)
        out[i, 260:292] = q.reshape(16, 16).astype(np.int16).sum(axis=1).astype(np.int16).view(np.uint8)
    return out.reshape(-1)


def ref_act(wname: str, x: np.ndarray) -> np.ndarray:
    """Numpy reference of realm_quant_act_export: (T, K) f32 -> (T, bytes)."""
    vt = VEC_DOT[wname]
    rows = []
    for r in x.astype(np.float32):
        if vt == "F32":
            rows.append(r.view(np.uint8))
        elif vt == "F16":
            rows.append(r.astype(np.float16).view(np.uint8))
        elif vt == "BF16":
            rows.append(gguf.quants.quantize(r, QT.BF16).view(np.uint8).reshape(-1))
        else:
            rows.append({"Q8_0": ref_q8_0, "Q8_1": ref_q8_1, "Q8_K": ref_q8_K}[vt](r))
    return np.stack(rows)


def act_values(wname: str, xb: np.ndarray, K: int):
    """ggml activation bytes (T, ·) -> (values f64 (T, K), Q8_1 extra: (s, d*sum q) per block or None)."""
    vt = VEC_DOT[wname]
    T = xb.shape[0]
    if vt == "F32":
        return xb.view(np.float32).astype(np.float64), None
    if vt == "F16":
        return xb.view(np.float16).astype(np.float64), None
    if vt == "BF16":
        return (xb.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64), None
    if vt == "Q8_K":
        blk = xb.reshape(T, -1, 292)
        d = blk[..., 0:4].copy().view(np.float32).astype(np.float64)
        q = blk[..., 4:260].copy().view(np.int8).astype(np.float64)
        return (d * q).reshape(T, K), None
    bb = 34 if vt == "Q8_0" else 36
    blk = xb.reshape(T, -1, bb)
    d = blk[..., 0:2].copy().view(np.float16).astype(np.float64)
    q = blk[..., bb - 32:].copy().view(np.int8).astype(np.float64)
    vals = (d * q).reshape(T, K)
    if vt == "Q8_0":
        return vals, None
    s = blk[..., 2:4].copy().view(np.float16).astype(np.float64)[..., 0]
    return vals, (s, (d * q).sum(axis=-1))


def dequant_np(name: str, raw: np.ndarray, n: int) -> np.ndarray:
    """Reference dequantization: gguf-py, or (Q8_1, Q8_K, absent from gguf-py) ggml's layout."""
    raw = np.ascontiguousarray(raw).reshape(-1)
    if name == "Q8_1":  # block_q8_1 {f16 d; f16 s; i8 qs[32]}: x = qs * d (s is metadata)
        b = raw.reshape(-1, 36)
        return (b[:, 4:].view(np.int8).astype(np.float32) * b[:, 0:2].view(np.float16).astype(np.float32)).reshape(-1)
    if name == "Q8_K":  # block_q8_K {f32 d; i8 qs[256]; i16 bsums[16]}: x = qs * d
        b = raw.reshape(-1, 292)
        return (b[:, 4:260].view(np.int8).astype(np.float32) * b[:, 0:4].view(np.float32)).reshape(-1)
    if name == "F32":
        return raw.view(np.float32).copy()
    return gguf.quants.dequantize(raw, QT[name]).reshape(-1)[:n]


# --------------------------------------------------------------- test data

def f16_bits(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """n f16 values as uint16 bit patterns, all finite."""
    if kind == "sane":
        return (rng.standard_normal(n) * 0.02).astype(np.float16).view(np.uint16)
    if kind == "extreme":
        v = np.array([65504, -65504, 2.0 ** -14, -(2.0 ** -14), 32768, 1.0, -1.0, 1024], np.float16)
        return rng.choice(v, n).view(np.uint16)
    if kind == "zero":
        return rng.choice(np.array([0x0000, 0x8000], np.uint16), n)
    if kind == "subnormal":
        return (rng.integers(1, 0x400, n) | rng.choice([0, 0x8000], n)).astype(np.uint16)
    raise ValueError(kind)


def random_blocks(name: str, nblocks: int, rng: np.random.Generator, kinds=("sane", "extreme", "zero", "subnormal")):
    """Random payload bytes; every f16 scale field drawn per block from `kinds`."""
    bs, ts = sizes(name)
    raw = rng.integers(0, 256, (nblocks, ts), dtype=np.uint8)
    for off in SCALE.get(name, []) + MINF.get(name, []):
        which = rng.integers(0, len(kinds), nblocks)
        vals = np.empty(nblocks, np.uint16)
        for i, k in enumerate(kinds):
            sel = which == i
            vals[sel] = f16_bits(rng, int(sel.sum()), k)
        raw[:, off:off + 2] = vals.view(np.uint8).reshape(-1, 2)
    if name == "Q8_K":  # f32 d
        which = rng.integers(0, 4, nblocks)
        d = np.where(which == 0, rng.standard_normal(nblocks) * 0.01,
                     np.where(which == 1, rng.choice([1e30, -1e30, 2.0 ** -126], nblocks), 0.0)).astype(np.float32)
        sub = which == 3
        d[sub] = (rng.integers(1, 1 << 23, int(sub.sum())).astype(np.uint32)).view(np.float32)
        raw[:, 0:4] = d.view(np.uint8).reshape(-1, 4)
    return raw


def random_float_payload(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random finite F32/F16/BF16 bit patterns (all exponents, subnormals included)."""
    if name == "F32":
        b = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
        b[(b & 0x7F800000) == 0x7F800000] &= 0xBFFFFFFF  # clear one exponent bit: finite
        return b.view(np.uint8)
    b = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    if name == "F16":
        b[(b & 0x7C00) == 0x7C00] &= 0xBFFF
    else:
        b[(b & 0x7F80) == 0x7F80] &= 0xBFFF
    return b.view(np.uint8)


def make_weights(name: str, rows: int, K: int, rng: np.random.Generator) -> np.ndarray:
    """(rows, row bytes) uint8: quantized random floats where a quantizer is at hand, else random valid blocks."""
    if name in GGUF_QUANT:
        Wf = rng.standard_normal((rows, K)).astype(np.float32) * np.float32(0.05)
        Wf[0] *= 40  # rows of different magnitude
        return gguf.quants.quantize(Wf, QT[name]).view(np.uint8).reshape(rows, -1)
    if name in ("Q8_1", "Q8_K"):
        Wf = rng.standard_normal((rows, K)).astype(np.float32) * np.float32(0.05)
        f = ref_q8_1 if name == "Q8_1" else ref_q8_K
        return np.stack([f(r) for r in Wf])
    bs, ts = sizes(name)
    return random_blocks(name, rows * K // bs, rng, kinds=("sane",)).reshape(rows, -1)


def make_acts(T: int, K: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((T, K)).astype(np.float32)
    x[0] *= 30
    if T > 1:
        x[1] *= np.float32(1e-3)
    if T > 2:
        x[2, : K // 2] = 0  # zero blocks
    return x


def weight_parts(name: str, W: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """(dequantized W, |scale part| + |min part|) as f64 (rows, K): the magnitude
    the kernel's separate scale and min sums are rounded against."""
    rows = W.shape[0]
    Wd = dequant_np(name, W, rows * K).reshape(rows, K).astype(np.float64)
    if name not in HAS_MIN:
        return Wd, np.abs(Wd)
    bs, ts = sizes(name)
    blocks = W.reshape(-1, ts)
    no_min, no_scale = blocks.copy(), blocks.copy()
    for off in MINF[name]:
        no_min[:, off:off + 2] = 0
    for off in SCALE[name]:
        no_scale[:, off:off + 2] = 0
    a = dequant_np(name, no_min, rows * K).reshape(rows, K).astype(np.float64)
    b = dequant_np(name, no_scale, rows * K).reshape(rows, K).astype(np.float64)
    return Wd, np.abs(a) + np.abs(b)


def block_mins(name: str, W: np.ndarray) -> np.ndarray:
    """Q4_1 / Q5_1 min m per 32-block, (rows, K/32) f64."""
    ts = sizes(name)[1]
    b = W.reshape(W.shape[0], -1, ts)
    return b[..., 2:4].copy().view(np.float16).astype(np.float64)[..., 0]


def seq_terms(name: str, K: int) -> int:
    """Sequential f32 additions per SIMD lane in the kernel (error bound: that many roundings)."""
    if name in FLOAT_TYPES:
        return K // 8 + K % 8  # two f32x4 accumulators, then the scalar tail
    if name in LEGACY:
        return 2 * (K // 32)   # one add per block (plus the scalar m*s sum)
    return K // 256


def act_error_bound(wname: str, x: np.ndarray) -> np.ndarray:
    """Per element bound on |x - quantized x| (T, K), from the rounding rules:
    Q8_0/Q8_1: |x - d16*q| <= d/2 + |d - d16|*127 + O(u) <= 0.57 d (d = amax/127);
    Q8_K: <= d/2 + O(u); F16: half an ulp (2^-11 relative, 2^-25 absolute
    for subnormals); BF16: 2^-8 relative; F32: exact."""
    vt = VEC_DOT[wname]
    T, K = x.shape
    ax = np.abs(x.astype(np.float64))
    if vt == "F32":
        return np.zeros_like(ax)
    if vt == "F16":
        return ax * 2.0 ** -11 + 2.0 ** -25
    if vt == "BF16":
        return ax * 2.0 ** -8 + 1e-45
    bs = 256 if vt == "Q8_K" else 32
    amax = ax.reshape(T, -1, bs).max(axis=-1, keepdims=True)
    f = 0.51 if vt == "Q8_K" else 0.6
    return np.broadcast_to(f * amax / 127, (T, K // bs, bs)).reshape(T, K) * (1 + 1e-6)


# ------------------------------------------------------------------ table

def test_type_table(core: Core) -> None:
    out = core.c.alloc(16)
    known = {int(t) for t in QT}
    for t in range(256):
        p = core.call("realm_quant_type_name", t)
        name = core.c.read_cstr(p) if p else None
        ok = core.call("realm_quant_type_info", t, out)
        info = core.get(out, np.uint32, 4)
        if t in known:  # every id gguf-py knows, with its name and sizes
            assert name == QT(t).name, t
            want = sizes(name)
            assert ok == 1 and (int(info[0]), int(info[1])) == want, name
            assert bool(info[2]) == (name in RUNNABLE), name
            if name in RUNNABLE:
                assert int(info[3]) == tid(VEC_DOT[name]), name
                assert core.call("realm_quant_row_bytes", t, 4096) == 4096 // info[0] * info[1]
        elif name is not None:  # removed from ggml (Q4_2, Q4_0_4_4, ...) or newer than gguf-py: known, not runnable
            assert ok == 1 and info[2] == 0 and info[0] > 0 and info[1] > 0, name
        else:
            assert ok == 0
            assert "unknown" in core.c.last_error()
    assert core.c.read_cstr(core.call("realm_quant_type_name", 42)) == "Q2_0"
    core.c.free(out)


def test_refuses_what_it_cannot_run(core: Core) -> None:
    src, dst = core.c.alloc(64), core.c.alloc(4 * 256)
    assert core.call("realm_quant_dequant", int(QT.IQ2_XXS), src, dst, 256) == 0
    assert "IQ2_XXS" in core.c.last_error()
    assert core.call("realm_quant_dequant", int(QT.Q4_K), src, dst, 100) == 0
    assert "multiple" in core.c.last_error()
    assert core.call("realm_quant_matmul", 200, src, 32, 1, dst, 1, dst) == 0
    assert "unknown" in core.c.last_error()
    core.c.free(src), core.c.free(dst)


# ---------------------------------------------------------- dequantization

def _assert_bits_equal(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    ref = np.asarray(ref, np.float32).reshape(-1)
    assert np.isfinite(ref).all(), f"{what}: reference has non-finite values (test data bug)"
    g, r = got.view(np.uint32), ref.view(np.uint32)
    bad = np.flatnonzero(g != r)
    assert bad.size == 0, (f"{what}: {bad.size} of {g.size} values differ, first at {bad[0]}: "
                           f"{got[bad[0]]!r} vs {ref[bad[0]]!r}")


@pytest.mark.parametrize("name", [t for t in RUNNABLE if t not in FLOAT_TYPES])
def test_dequant_random_blocks(core: Core, name: str) -> None:
    rng = np.random.default_rng(1000 + tid(name))
    bs, ts = sizes(name)
    nblocks = 4096 if bs == 32 else 1024
    raw = random_blocks(name, nblocks, rng)
    n = nblocks * bs
    _assert_bits_equal(core.dequant(name, raw, n), dequant_np(name, raw, n), name)


@pytest.mark.parametrize("name", FLOAT_TYPES)
def test_dequant_random_floats_bits(core: Core, name: str) -> None:
    rng = np.random.default_rng(7 + tid(name))
    n = 1 << 16
    raw = random_float_payload(name, n, rng)
    _assert_bits_equal(core.dequant(name, raw, n), dequant_np(name, raw, n), name)
    # every f16 bit pattern (subnormals, inf and NaN payloads too), through the SIMD and the scalar tail
    if name == "F16":
        allh = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
        for m in (allh.size, 13):
            got = core.dequant(name, allh[:m].view(np.uint8), m).view(np.uint32)
            want = allh[:m].view(np.float16).astype(np.float32).view(np.uint32)  # (NaN payloads kept)
            bad = np.nonzero(got != want)[0]
            assert bad.size == 0, f"F16 all: {bad.size} patterns differ, first {[hex(int(allh[i])) for i in bad[:4]]}"


@pytest.mark.parametrize("name", GGUF_QUANT)
def test_dequant_quantized_floats(core: Core, name: str) -> None:
    rng = np.random.default_rng(11 + tid(name))
    x = rng.standard_normal((64, 1024)).astype(np.float32)
    x[:8] *= 1e-6
    x[8:16] *= 1e4
    x[16, :64] = 0
    q = gguf.quants.quantize(x, QT[name])
    ref = gguf.quants.dequantize(q, QT[name])
    _assert_bits_equal(core.dequant(name, q.view(np.uint8), x.size), ref, name)


@pytest.fixture(scope="module")
def model(default_model_path: Path) -> gguf.GGUFReader:
    """The default model (SmolLM2-135M-Instruct Q4_1: Q4_1, Q8_0 and F32 tensors)."""
    return gguf.GGUFReader(str(default_model_path))


@pytest.mark.slow
def test_dequant_model_tensors(core: Core, model: gguf.GGUFReader) -> None:
    """Every tensor of the default model (Q4_1, Q8_0, F32), bit-exact."""
    reader = model
    seen: dict[str, int] = {}
    for t in reader.tensors:
        name = t.tensor_type.name
        n = int(np.prod([int(v) for v in t.shape]))
        ref = gguf.quants.dequantize(t.data, t.tensor_type)
        _assert_bits_equal(core.dequant(name, t.data.view(np.uint8), n), ref, t.name)
        seen[name] = seen.get(name, 0) + 1
    assert {"Q4_1", "Q8_0", "F32"} <= set(seen), seen


# -------------------------------------------------- activation quantization

def act_inputs(K: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((9, K)).astype(np.float32)
    x[1] *= np.float32(1e-6)
    x[2] *= np.float32(300)
    x[3] = 0                       # all-zero blocks: d = 0
    x[4, ::7] = 0
    x[5] = np.round(x[5] * 4) / 4  # many equal magnitudes and exact halves after scaling
    x[6, :] = x[6, 0]              # constant rows
    x[7, 1::2] = -x[7, 0::2]       # +a and -a: the first one sets Q8_K's sign
    x[8] = (rng.integers(-127, 128, K) * np.float32(0.5)).astype(np.float32)  # q*id lands on .5 ties
    return x


@pytest.mark.parametrize("name", ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q4_K"])
def test_act_quantize_matches_reference(core: Core, name: str) -> None:
    rng = np.random.default_rng(5)
    K = 512
    x = act_inputs(K, rng)
    got, ref = core.act(name, x), ref_act(name, x)
    assert got.shape == ref.shape
    for t in range(len(x)):
        assert np.array_equal(got[t], ref[t]), f"{name} activations, row {t}"


def test_act_f16_rounding_ties(core: Core) -> None:
    """f32 -> f16 round to nearest even (the f16 activations of F16 weights), vs numpy."""
    h = np.arange(0, 0x7C00, dtype=np.uint16)
    lo = h.view(np.float16).astype(np.float32)
    hi = (h + 1).view(np.float16).astype(np.float32)           # next f16 (65504 -> inf)
    mid = ((lo.astype(np.float64) + np.where(np.isinf(hi), 65536.0, hi)) / 2).astype(np.float32)  # exact ties
    nudge = np.nextafter(mid, np.float32(np.inf))
    xs = np.concatenate([lo, mid, nudge, np.nextafter(mid, np.float32(0)), [65519.0, 65520.0, 1e30, 2.0 ** -25,
                                                                           2.0 ** -26, 3 * 2.0 ** -26]]).astype(np.float32)
    xs = np.concatenate([xs, -xs])
    xs = np.concatenate([xs, np.zeros((-xs.size) % 256, np.float32)]).reshape(-1, 256)
    got = core.act("F16", xs).view(np.uint16)
    with np.errstate(over="ignore"):  # 65520 and up round to inf, on purpose
        want = xs.astype(np.float16).view(np.uint16)
    assert np.array_equal(got, want)


# ----------------------------------------------------------- matrix products

def shapes() -> list[tuple[str, int, int]]:
    out = []
    for name in RUNNABLE:
        Ks = [256, 512, 1536] if name in K_TYPES else [256, 576, 1536]
        if name in FLOAT_TYPES:
            Ks = Ks + [37]  # scalar tails
        for K in Ks:
            out.append((name, K, 37))
        out.append((name, Ks[0], 3))  # fewer rows than one group of four
    return out


def check_matmul(name: str, W: np.ndarray, K: int, x: np.ndarray, y: np.ndarray, what: str) -> None:
    """y (T, rows) from realm against the two float64 references (see module doc)."""
    rows = W.shape[0]
    xb = ref_act(name, x)
    xv, q81 = act_values(name, xb, K)
    Wd, Wabs = weight_parts(name, W, K)
    ref = xv @ Wd.T                                   # same quantized activations
    mag = np.abs(xv) @ Wabs.T
    if q81 is not None:
        s, dsum = q81                                 # (T, nb) each
        m = block_mins(name, W) if name in HAS_MIN else np.zeros((rows, K // 32))
        ref += (s - dsum) @ m.T                       # llama.cpp uses s rounded to f16
        mag += np.abs(s) @ np.abs(m).T
    # Only f32 rounding separates realm from `ref`: integer block sums are
    # exact, and each (row, token) adds seq_terms() rounded terms per lane,
    # each term carrying a few roundings (scale products, i32->f32), the
    # weights' own f32 dequantization one more. First-order bound:
    tol = (seq_terms(name, K) + 16) * U * mag + 1e-30
    err = np.abs(y.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err / tol), err.shape)
    assert (err <= tol).all(), (f"{what}: |y - ref| = {err[worst]:.3g} > tol {tol[worst]:.3g} at (t, r) = {worst} "
                                f"(y = {y[worst]!r}, ref = {ref[worst]!r})")
    # Against the unquantized activations: add the activation rounding error
    # bound, sum_k |w_k| * e_k (plus 2^-11 |m s| for the f16-rounded s).
    ref_x = x.astype(np.float64) @ Wd.T
    loose = act_error_bound(name, x) @ Wabs.T + tol
    if q81 is not None:
        loose += 2.0 ** -11 * (np.abs(q81[0]) @ np.abs(m).T)
    err2 = np.abs(y.astype(np.float64) - ref_x)
    worst = np.unravel_index(np.argmax(err2 / loose), err2.shape)
    assert (err2 <= loose).all(), f"{what}: unquantized-activation check: {err2[worst]:.3g} > {loose[worst]:.3g} at {worst}"


@pytest.mark.parametrize("name,K,rows", shapes())
def test_matmul(core: Core, name: str, K: int, rows: int) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{name}/{K}/{rows}".encode()))
    W = make_weights(name, rows, K, rng)
    for T in (1, 3, 8, 17):
        x = make_acts(T, K, rng)
        y = core.matmul(name, W, K, rows, x)
        check_matmul(name, W, K, x, y, f"{name} K={K} rows={rows} T={T}")


@pytest.mark.parametrize("name", RUNNABLE)
def test_matmul_row_ranges_and_batches_are_identical(core: Core, name: str) -> None:
    """Any split of the rows, and any batch of tokens, gives the same bits as one
    call: threads may split rows, and prompt and decode must agree."""
    rng = np.random.default_rng(3)
    K = 512 if name in K_TYPES else 576
    rows = 23
    W = make_weights(name, rows, K, rng)
    for T in (1, 6):
        x = make_acts(T, K, rng)
        full = core.matmul(name, W, K, rows, x)
        for ranges in ([(0, 1), (1, 6), (6, 23)], [(0, 11), (11, 12), (12, 23)], [(r, r + 1) for r in range(rows)]):
            part = core.matmul(name, W, K, rows, x, ranges=ranges)
            assert np.array_equal(full.view(np.uint32), part.view(np.uint32)), f"{name} T={T} {ranges[:3]}"
        if T > 1:
            for t in range(T):
                one = core.matmul(name, W, K, rows, x[t:t + 1])
                assert np.array_equal(full[t].view(np.uint32), one[0].view(np.uint32)), f"{name} token {t}"


X4_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


@pytest.mark.parametrize("name", X4_TYPES)
def test_matmul_x4_layout_gives_the_same_bits(core: Core, name: str) -> None:
    """realm_model_load repacks these types' weights into the x4 layout (rows
    interleaved in groups of four; K-quants: their super-blocks): every row
    range and batch of it must match the float64 references from gguf-py's
    dequantization and give the bits of ggml's layout, and every row read back
    must be gguf-py's dequantization of the original row."""
    rng = np.random.default_rng(zlib.crc32(f"x4/{name}".encode()))
    K, rows = (512 if name in K_TYPES else 576), 24
    W = make_weights(name, rows, K, rng)
    c = core.c
    wp = core.put(W)
    try:
        x4 = core.call("realm_quant_repack_x4", tid(name), wp, K, rows)
        c.check(x4, "realm_quant_repack_x4")
        assert x4 == 0x100 | tid(name)
        assert not np.array_equal(core.get(wp, np.uint8, W.nbytes), W.reshape(-1)), "repacking changed nothing"
        # each row read back (token embeddings are read so) as gguf-py dequantizes the original
        out = c.alloc(4 * K)
        try:
            for r in range(rows):
                c.check(core.call("realm_quant_get_row", x4, wp, K, r, out), "realm_quant_get_row")
                _assert_bits_equal(core.get(out, np.float32, K), dequant_np(name, W[r], K), f"{name} x4 row {r}")
        finally:
            c.free(out)
        for T in (1, 2, 3, 6, 17):
            x = make_acts(T, K, rng)
            ref = core.matmul(name, W, K, rows, x)
            xp, yp = core.put(x.astype(np.float32)), c.alloc(4 * rows * T)
            try:
                for ranges in ([(0, rows)], [(0, 1), (1, 6), (6, 16), (16, 24)], [(r, r + 1) for r in range(rows)]):
                    c.view(yp, np.float32, rows * T)[:] = np.nan
                    for r0, r1 in ranges:
                        c.check(core.call("realm_quant_matmul_rows", x4, wp, K, r0, r1, xp, T, yp, rows), "x4 matmul")
                    got = core.get(yp, np.float32, rows * T).reshape(T, rows)
                    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), f"{name} x4 T={T} {ranges[:3]}"
                    check_matmul(name, W, K, x, got, f"{name} x4 T={T}")  # the float64 references
            finally:
                c.free(xp), c.free(yp)
        # no row of it can be dequantized alone; only whole groups of four of these types repack
        out = c.alloc(4 * K)
        try:
            assert core.call("realm_quant_dequant", x4, wp, out, K) == 0
            assert "x4" in c.last_error()
        finally:
            c.free(out)
        assert core.call("realm_quant_repack_x4", tid(name), wp, K, rows - 1) == 0
        assert "multiple of 4" in c.last_error()
    finally:
        c.free(wp)
    assert core.call("realm_quant_repack_x4", tid("Q8_K"), wp, 256, 4) == 0


def test_matmul_model_weights(core: Core, model: gguf.GGUFReader) -> None:
    """Real Q4_1 / Q8_0 tensors of the default model."""
    reader = model
    rng = np.random.default_rng(9)
    picked = {t.name: t for t in reader.tensors if t.name in ("blk.0.ffn_down.weight", "blk.3.attn_q.weight", "token_embd.weight")}
    assert len(picked) == 3
    for t in picked.values():
        K, rows = int(t.shape[0]), int(t.shape[1])
        W = np.ascontiguousarray(t.data.view(np.uint8)).reshape(rows, -1)
        if rows > 512:
            W = W[:515]
            rows = 515
        x = make_acts(5, K, rng)
        check_matmul(t.tensor_type.name, W, K, x, core.matmul(t.tensor_type.name, W, K, rows, x), t.name)


# ------------------------------------------------- llama.cpp (ggml) itself

class Ggml:
    """ggml's compiled quantizers and dot products, from llama-cpp-python's wheel."""

    def __init__(self) -> None:
        import llama_cpp  # noqa: F401
        lib = Path(llama_cpp.__file__).parent / "lib"
        self.base = ctypes.CDLL(str(lib / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        self.cpu = ctypes.CDLL(str(lib / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
        self.cpu.ggml_cpu_init()

    @staticmethod
    def _p(a: np.ndarray):
        return a.ctypes.data_as(ctypes.c_void_p)

    def quantize_ref(self, name: str, x: np.ndarray) -> np.ndarray:
        """quantize_row_<type>_ref over a 1-D float array."""
        x = np.ascontiguousarray(x, np.float32)
        bs, ts = sizes(name)
        out = np.zeros(x.size // bs * ts, np.uint8)
        fn = getattr(self.base, f"quantize_row_{name.lower()[:-2] + '_K' if name.endswith('_K') else name.lower()}_ref")
        fn(self._p(x), self._p(out), ctypes.c_int64(x.size))
        return out

    def dequantize(self, name: str, raw: np.ndarray, n: int) -> np.ndarray:
        raw = np.ascontiguousarray(raw)
        out = np.zeros(n, np.float32)
        fn = getattr(self.base, f"dequantize_row_{name.lower()[:-2] + '_K' if name.endswith('_K') else name.lower()}")
        fn(self._p(raw), self._p(out), ctypes.c_int64(n))
        return out

    def act(self, wname: str, x: np.ndarray) -> np.ndarray:
        """llama.cpp's own activation conversion for a weight type, (T, bytes)."""
        vt = VEC_DOT[wname]
        rows = []
        for r in np.ascontiguousarray(x, np.float32):
            if vt == "F32":
                rows.append(r.view(np.uint8).copy())
            elif vt in ("F16", "BF16"):
                out = np.zeros(r.size, np.uint16)
                fn = self.base.ggml_fp32_to_fp16_row if vt == "F16" else self.base.ggml_fp32_to_bf16_row_ref
                fn(self._p(r), self._p(out), ctypes.c_int64(r.size))
                rows.append(out.view(np.uint8))
            else:  # the CPU backend's own quantize_row_q8_* (what llama.cpp runs)
                bs, ts = sizes(vt)
                out = np.zeros(r.size // bs * ts, np.uint8)
                getattr(self.cpu, f"quantize_row_{vt.lower()[:-2] + '_K' if vt.endswith('_K') else vt.lower()}")(
                    self._p(r), self._p(out), ctypes.c_int64(r.size))
                rows.append(out)
        return np.stack(rows)

    def vec_dot(self, wname: str, wrow: np.ndarray, xrow: np.ndarray, K: int) -> float:
        fn = {"F32": "f32", "F16": "f16", "BF16": "bf16"}.get(wname)
        fn = fn or f"{wname.lower()[:-2] + '_K' if wname.endswith('_K') else wname.lower()}_{VEC_DOT[wname].lower()[:-2] + '_K' if VEC_DOT[wname].endswith('_K') else VEC_DOT[wname].lower()}"
        s = ctypes.c_float()
        w, xr = np.ascontiguousarray(wrow), np.ascontiguousarray(xrow)
        getattr(self.cpu, f"ggml_vec_dot_{fn}")(ctypes.c_int(K), ctypes.byref(s), ctypes.c_size_t(0), self._p(w),
                                                 ctypes.c_size_t(0), self._p(xr), ctypes.c_size_t(0), ctypes.c_int(1), None)
        return s.value


@pytest.fixture(scope="module")
def ggml() -> Ggml:
    """Only for tests marked needs_llama_cpp (conftest skips them, or fails them in
    CI, where llama-cpp-python is missing)."""
    return Ggml()


LLAMA_QUANT = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


@pytest.mark.needs_llama_cpp
@pytest.mark.parametrize("name", LLAMA_QUANT + ["Q8_K"])
def test_dequant_llama_quantized(core: Core, ggml: Ggml, name: str) -> None:
    """Blocks made by ggml's own quantizer, against gguf-py and ggml's dequantize_row_*."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal(256 * 256).astype(np.float32)
    x[:4096] *= 1e-4
    x[4096:8192] *= 1e3
    raw = ggml.quantize_ref(name, x)
    got = core.dequant(name, raw, x.size)
    _assert_bits_equal(got, ggml.dequantize(name, raw, x.size), f"{name} vs ggml")
    if name in GGUF_DEQUANT:
        _assert_bits_equal(got, dequant_np(name, raw, x.size), f"{name} vs gguf-py")


def _x86_avx() -> bool:
    import platform
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        return " avx " in " " + Path("/proc/cpuinfo").read_text().replace("\t", " ").replace("\n", " ") + " "
    except OSError:
        return False


@pytest.mark.needs_llama_cpp
@pytest.mark.parametrize("name", RUNNABLE)
def test_act_quantize_matches_llama(core: Core, ggml: Ggml, name: str) -> None:
    """Byte-identical with the activations llama.cpp's CPU backend makes (x86 with AVX:
    other builds of llama.cpp round Q8_0/Q8_1 activations differently)."""
    if VEC_DOT[name] in ("Q8_0", "Q8_1") and not _x86_avx():
        pytest.skip("llama.cpp's Q8_0/Q8_1 activation rounding differs off x86-AVX; realm follows x86")
    rng = np.random.default_rng(8)
    x = act_inputs(768 if name not in K_TYPES else 1024, rng)
    assert np.array_equal(core.act(name, x), ggml.act(name, x))


@pytest.mark.needs_llama_cpp
@pytest.mark.parametrize("name", [t for t in RUNNABLE if t not in ("Q8_1", "Q8_K")])
def test_matmul_vs_llama_vec_dot(core: Core, ggml: Ggml, name: str) -> None:
    """realm's matmul vs ggml_vec_dot_* (llama.cpp's CPU kernels, the same
    activation bytes), on weights quantized by ggml itself where it can.
    (llama.cpp has no CPU dot product for Q8_1 or Q8_K weights.)"""
    rng = np.random.default_rng(13)
    K, rows, T = 1536, 19, 5
    if name in LLAMA_QUANT:
        Wf = rng.standard_normal((rows, K)).astype(np.float32)
        W = np.stack([ggml.quantize_ref(name, r) for r in Wf])
    else:
        W = make_weights(name, rows, K, rng)
    x = make_acts(T, K, rng)
    y = core.matmul(name, W, K, rows, x)
    xb = ggml.act(name, x)
    yl = np.array([[ggml.vec_dot(name, W[r], xb[t], K) for r in range(rows)] for t in range(T)])
    check_matmul(name, W, K, x, y, f"{name} (own check)")
    # both sides compute the same sums with different f32 association
    _, Wabs = weight_parts(name, W, K)
    xv, _ = act_values(name, xb, K)
    tol = 2 * (K // 8 + 16) * U * (np.abs(xv) @ Wabs.T) + 1e-30
    err = np.abs(y.astype(np.float64) - yl)
    assert (err <= tol).all(), f"{name}: max |realm - llama.cpp| / tol = {(err / tol).max():.3g}"


# ------------------------------------------------------------------ attention over the f16 cache

def attn_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, cap: float) -> np.ndarray:
    """What llama.cpp computes without flash attention (and realm's kernel by the formula in
    core/quant_attn.c), in float64: q and the softmax weights rounded to f16 before they meet
    the f16 cache. q: (nh, D); k, v: (n, D) float16. Returns (nh, D)."""
    qh = q.astype(np.float16).astype(np.float64)
    s = qh @ k.astype(np.float64).T * scale
    if cap > 0:
        s = np.tanh(s / cap) * cap
    e = np.exp(s - s.max(axis=1, keepdims=True))
    p = (e / e.sum(axis=1, keepdims=True)).astype(np.float16).astype(np.float64)
    return p @ v.astype(np.float64)


@pytest.mark.parametrize("D,n,cap", [(64, 1, 0.0), (64, 7, 0.0), (64, 300, 0.0), (128, 129, 0.0),
                                     (40, 33, 0.0), (64, 50, 30.0)])
def test_attention_grouped_heads_are_each_head_alone(core: Core, D: int, n: int, cap: float) -> None:
    """The GQA kernel (several query heads per cache read) gives every head the very bits the
    one-head kernel gives it, for groups of 1..6 heads, and both match the float64 formula."""
    rng = np.random.default_rng(D * 1000 + n)
    n_kv, kvh = 3, 1                         # the cache holds 3 KV heads; the heads read the second
    stride = n_kv * D
    cache_k = (rng.standard_normal((n, stride)) * 2).astype(np.float16)
    cache_v = rng.standard_normal((n, stride)).astype(np.float16)
    scale = 1 / np.sqrt(D)
    for nh in range(1, 7):
        q = (rng.standard_normal((nh, D)) * 3).astype(np.float32)
        pk, pv = core.put(cache_k), core.put(cache_v)
        pq, pout, psc = core.put(q), core.c.alloc(nh * D * 4), core.c.alloc(4 * n * 4 + 64)
        koff = kvh * D * 2
        assert core.call("realm_quant_attn_f16", pq, nh, pk + koff, pv + koff, stride, n, D, scale, cap,
                         psc, n, pout) == 1
        grouped = core.get(pout, np.float32, nh * D).reshape(nh, D)
        alone = np.empty_like(grouped)
        for h in range(nh):
            assert core.call("realm_quant_attn_f16", pq + h * D * 4, 1, pk + koff, pv + koff, stride, n, D,
                             scale, cap, psc, n, pout) == 1
            alone[h] = core.get(pout, np.float32, D)
        _assert_bits_equal(grouped.reshape(-1), alone, f"D={D} n={n} nh={nh}")
        ref = attn_reference(q, cache_k[:, kvh * D:(kvh + 1) * D], cache_v[:, kvh * D:(kvh + 1) * D], scale, cap)
        np.testing.assert_allclose(grouped, ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max(),
                                   err_msg=f"D={D} n={n} nh={nh}")
        for p in (pk, pv, pq, pout, psc):
            core.c.free(p)


@pytest.mark.parametrize("n,nh", [(64, 1), (61, 3), (64, 4)])
def test_attention_weights_are_the_f16_softmax(core: Core, n: int, nh: int) -> None:
    """The softmax weights themselves, read out through one-hot value rows (out[j] = p_j, exact):
    each is the float64 softmax rounded to f16, as llama.cpp rounds it, within one f16 step
    where the f32 exp (3 ulp) meets a rounding boundary, and nearly always exactly; the scores
    span 0 .. -24, so the weights reach f16's subnormals (below 2^-14) and its zero."""
    D = 64
    rng = np.random.default_rng(n * 10 + nh)
    c = np.sort(rng.uniform(-24, 0, n)).astype(np.float16)
    c[rng.integers(n)] = 0                         # the largest score: weight 1 before normalising
    k = np.zeros((n, D), np.float16)
    k[:, 0] = c                                    # q = e_0 and scale 1: s_j = c_j exactly
    v = np.zeros((n, D), np.float16)
    v[np.arange(n), np.arange(n)] = 1              # out[j] = p_j * 1
    q = np.zeros((nh, D), np.float32)
    q[:, 0] = 1
    pk, pv, pq = core.put(k), core.put(v), core.put(q)
    pout, psc = core.c.alloc(nh * D * 4), core.c.alloc(4 * n * 4 + 64)
    assert core.call("realm_quant_attn_f16", pq, nh, pk, pv, D, n, D, 1.0, 0.0, psc, n, pout) == 1
    got = core.get(pout, np.float32, nh * D).reshape(nh, D)[:, :n]
    for p in (pk, pv, pq, pout, psc):
        core.c.free(p)
    e = np.exp(c.astype(np.float64) - c.max())
    ref = (e / e.sum()).astype(np.float16)
    assert (ref < 2.0 ** -14).sum() >= n // 4 and (ref == 0).any(), "the scores must reach f16 subnormals and 0"
    for h in range(nh):
        assert np.array_equal(got[h].astype(np.float16).astype(np.float32), got[h]), "weights not f16 values"
        step = np.spacing(ref.astype(np.float16)).astype(np.float64)
        off = np.abs(got[h].astype(np.float64) - ref.astype(np.float64))
        assert (off <= step).all(), f"head {h}: weights off by more than one f16 step at {np.nonzero(off > step)[0]}"
        assert (off == 0).mean() >= 0.9, f"head {h}: only {(off == 0).mean():.0%} of the weights exact"


def test_f32_exp_is_within_3_ulp() -> None:
    """The f32 exp of the softmax and SiLU (tests/f32_math.py replicates core/simd_exp.h; the
    tests below hold the core to it bit for bit) against float64 exp, over its whole range."""
    rng = np.random.default_rng(5)
    x = np.concatenate([np.linspace(-87.29, 88.3, 2_000_001, dtype=np.float32),
                        -rng.exponential(3, 1_000_000).astype(np.float32),
                        rng.uniform(-0.01, 0.01, 100_000).astype(np.float32)])
    e = exp_f32(x).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    normal = ref >= 2.0 ** -126
    ulp = np.abs(e - ref)[normal] / np.spacing(ref[normal].astype(np.float32)).astype(np.float64)
    assert ulp.max() <= 3 and ulp.mean() < 0.5, (ulp.max(), ulp.mean())
    special = np.array([-87.31, -100, -np.inf, 88.4, 100, np.inf, np.nan, 0.0, -0.0], np.float32)
    got = exp_f32(special)
    assert (got[:3] == 0).all() and np.isinf(got[3:6]).all() and np.isnan(got[6]) and (got[7:] == 1).all()


def test_swiglu_is_the_f32_formula(core: Core) -> None:
    """realm_quant_swiglu (the forward pass's SwiGLU, four lanes at a time and a scalar tail) gives
    the bits of g / (1 + exp_f32(-g)) * u (tests/f32_math.py), and SiLU stays within 5 ulp of
    float64's where it is a normal number, but for g < -88.37 (exp_f32(-g) is inf there: SiLU's
    tiny values, below 4e-37, come out 0)."""
    rng = np.random.default_rng(6)
    g = np.concatenate([(rng.standard_normal(4001) * 6), rng.uniform(-95, 95, 2000),
                        [0.0, -0.0, -88.5, 88.5, -1e-30, np.nan, np.inf, -np.inf]]).astype(np.float32)
    u = rng.standard_normal(g.size).astype(np.float32)
    for uu in (u, np.ones_like(u)):
        pg, pu = core.put(g), core.put(uu)
        assert core.call("realm_quant_swiglu", pg, pu, g.size) == 1
        got = core.get(pg, np.float32, g.size)
        core.c.free(pg)
        core.c.free(pu)
        want = swiglu_f32(g, uu)
        same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
        assert same.all(), f"swiglu: {np.count_nonzero(~same)} values differ, first g = {g[~same][0]!r}"
    gd = g.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = gd / (1 + np.exp(-gd))
    assert (got[(g < -88.37) & np.isfinite(g)] == 0).all()
    ok = np.isfinite(ref) & (np.abs(ref) >= 2.0 ** -126) & (g >= -88.37)
    ulp = np.abs(got.astype(np.float64)[ok] - ref[ok]) / np.spacing(np.abs(ref[ok]).astype(np.float32)).astype(np.float64)
    assert ulp.max() <= 5, ulp.max()


def test_attention_fused_multiply_adds_give_the_simd128_bits() -> None:
    """The relaxed-SIMD build lets the engine fuse attention's multiply-adds (f32x4.relaxed_madd;
    wasmtime on an FMA machine does) because every product there is exact: both factors are f16
    values (one times 2^112, the other times 2^-112). So it must give the SIMD128 build's bits
    (separate multiply and add) on the extremes: f16's largest values, its subnormals and zeros in
    the cache and the query, groups of 1..6 heads, D = 64 (unrolled) and 40 (the loop). (p . v
    shows here directly: weights left unrounded fail it; q . k reaches the output only through
    weights rounded to f16, which hide a last-bit change of a score nearly always.)"""
    relaxed, plain = (WasmCore(path=wasm_host._WASM_DIR / n) for n in ("realm-relaxed.wasm", "realm.wasm"))
    assert relaxed.simd == "relaxed" and plain.simd == "simd128"
    rng = np.random.default_rng(7)
    tiny = np.float16(2.0 ** -24)
    for D, n in ((64, 37), (40, 29)):
        special = np.array([65504, -65504, tiny, -tiny, 3 * tiny, 0, -0.0, 6.1e-5, -6.1e-5], np.float16)
        k = rng.choice(special, (n, D)) * rng.choice([1, 1, 0.5, 2 ** -10], (n, D))
        k = np.where(rng.random((n, D)) < 0.5, rng.standard_normal((n, D)) * 4, k).astype(np.float16)
        v = np.where(rng.random((n, D)) < 0.5, rng.choice(special, (n, D)), rng.standard_normal((n, D))).astype(np.float16)
        for nh in range(1, 7):
            q = np.where(rng.random((nh, D)) < 0.3, rng.choice(special[:6].astype(np.float32), (nh, D)),
                         rng.standard_normal((nh, D)) * 100).astype(np.float32)
            outs = []
            for c in (relaxed, plain):
                pk, pv, pq = (c.alloc(a.nbytes) for a in (k, v, q))
                for ptr, a in ((pk, k), (pv, v), (pq, q)):
                    c.write(ptr, np.ascontiguousarray(a))
                pout, psc = c.alloc(nh * D * 4), c.alloc(nh * n * 4 + 64)
                assert c.call("realm_quant_attn_f16", pq, nh, pk, pv, D, n, D, 1e-9, 0.0, psc, n, pout) == 1
                outs.append(c.view(pout, np.float32, nh * D).copy())
                for ptr in (pk, pv, pq, pout, psc):
                    c.free(ptr)
            assert np.isfinite(outs[1]).all()
            _assert_bits_equal(outs[0], outs[1], f"D={D} nh={nh}: relaxed vs SIMD128")
    relaxed.close(), plain.close()


def test_attention_kernel_refuses_bad_shapes(core: Core) -> None:
    assert core.call("realm_quant_attn_f16", 0, 1, 0, 0, 64, 4, 60, 1.0, 0.0, 0, 4, 0) == 0
    assert "multiple of 8" in core.c.last_error()
