"""The WGSL kernels (wgsl/) one by one on the native WebGPU adapter (lavapipe in CI),
against numpy on random data and against the CPU core's own kernels.

Every kernel is meant to give the CPU core's results bit for bit (docs/GPU.md): the
integer block sums are exact, and the float operations are the CPU's in the CPU's
order (products kept out of fused multiply-adds, exp/division/sqrt correctly rounded,
double sums as pairs of f32). So most comparisons here are array_equal; the numpy
references (float64) check the meaning independently of the core.
"""
from __future__ import annotations

import gguf
import numpy as np
import pytest

from f32_math import exp_f32, swiglu_f32
from gpu_helpers import (TYPES, act_words, core, cpu_dequant, cpu_matmul, dequant_act, f16r, gpu_device,
                         quantize_ref, random_weights, run)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def dev():
    return gpu_device()


@pytest.fixture(scope="module")
def cpu():
    return core()


def B():
    from realm_web.gpu import buffers
    return buffers


def read(dev, buf, dtype, n):
    return B().read(dev, buf, dtype, n)


# ------------------------------------------------------------------ device, preprocessor
def test_device_limits_and_features(dev):
    lim = dev.adapter.limits
    # required_limits: the device gets the adapter's limits, not WebGPU's defaults
    assert dev.limits["max-storage-buffer-binding-size"] == lim["max-storage-buffer-binding-size"]
    assert dev.limits["max-buffer-size"] == lim["max-buffer-size"]
    for f in ("shader-f16", "subgroup"):
        assert (f in dev.features) == (f in dev.adapter.features)


def test_preprocessor():
    from realm_web.gpu.kernels import preprocess
    files = {
        "a.wgsl": "//#include b.wgsl\n//#if X\nx\n//#else\nnotx\n//#endif\n//#include b.wgsl\nend\n",
        "b.wgsl": "b\n//#if Y\n//#if X\nxy\n//#endif\n//#endif\n",
    }
    read = files.__getitem__
    assert preprocess("a.wgsl", (), read) == "b\nnotx\nend\n"
    assert preprocess("a.wgsl", ("X",), read) == "b\nx\nend\n"
    assert preprocess("a.wgsl", ("X", "Y"), read) == "b\nxy\nx\nend\n"
    with pytest.raises(ValueError):
        preprocess("c.wgsl", (), {"c.wgsl": "//#if X\n"}.__getitem__)


def test_every_kernel_compiles_in_every_variant(dev):
    from realm_web.gpu.kernels import wgsl_dir
    variants = [()]
    if "shader-f16" in dev.features:
        variants.append(("F16",))
    if "subgroup" in dev.features:
        variants.append(("SUBGROUPS",))
    n = 0
    for f in sorted(p.name for p in wgsl_dir().glob("*.wgsl")):
        if "@compute" not in (wgsl_dir() / f).read_text():
            continue  # an include
        for v in variants:
            dev.pipelines.get(f, "main", v, {})
            n += 1
    assert n >= 11


# ------------------------------------------------------------------ matmul, every type
def _matmul_case(dev, name, K, rows, T, seed):
    rng = np.random.default_rng(seed)
    tid, _, _, kind = TYPES[name]
    W = random_weights(name, rows, K, rng)
    x = rng.standard_normal((T, K), dtype=np.float32)
    x[0, min(7, K - 1)] = 40.0  # an outlier, as real models have
    b = B()
    wb = b.storage(dev, W.nbytes + 4, data=W)
    xb = b.storage(dev, x.nbytes, data=x)
    if kind:
        xs = act_words(kind, K)
        xq = b.storage(dev, 4 * xs * T)
        units = -(-K // 32) if kind <= 2 else (K // 32 if kind < 5 else K // 256)
        run(dev, "quantize.wgsl", [xb, xq], (-(-units // 64), 1, T), params=[K, K, xs, 0], step=(T, 0, 0, 0),
            constants={"KIND": kind, "WG": 64})
        acts = read(dev, xq, np.uint32, xs * T).reshape(T, xs)
    else:
        xs, xq, acts = K, xb, x.view(np.uint32)
    return rng, tid, kind, W, x, wb, xq, xs, acts


def _numpy_matmul(cpu, name, W, acts, kind, K):
    tid = TYPES[name][0]
    if name in ("Q8_1", "Q8_K"):  # gguf-py cannot dequantize these
        Wd = np.stack([cpu_dequant(cpu, tid, W[r], K) for r in range(W.shape[0])]).astype(np.float64)
    else:
        Wd = gguf.quants.dequantize(np.ascontiguousarray(W), gguf.GGMLQuantizationType[name]).reshape(W.shape[0], K)
        Wd = Wd.astype(np.float64)
    Xd = np.stack([dequant_act(kind, acts[t], K) for t in range(acts.shape[0])])
    y = Xd @ Wd.T
    if name in ("Q4_1", "Q5_1"):
        # with a min m per block, ggml uses the activations' stored s = f16(d * sum q)
        # for sum(x) of the block: y += m * (s - sum(x))
        nb, bb = K // 32, TYPES[name][2]
        m = np.ascontiguousarray(W.reshape(W.shape[0], nb, bb)[:, :, 2:4]).view(np.float16)[..., 0].astype(np.float64)
        sx = np.stack([acts[t][K // 4 + nb:K // 4 + 2 * nb].view(np.float32) for t in range(acts.shape[0])]).astype(np.float64)
        xs = Xd.reshape(Xd.shape[0], nb, 32).sum(2)
        y += (sx - xs) @ m.T
    return y


@pytest.mark.parametrize("name", list(TYPES))
def test_quantize_activations(dev, cpu, name):
    """quantize.wgsl: the activation formats, bit for bit as numpy applies the core's rules."""
    K, T = 512, 3
    rng, tid, kind, W, x, wb, xq, xs, acts = _matmul_case(dev, name, K, 8, T, 1)
    if not kind:
        pytest.skip("F32 weights take f32 activations as they are")
    for t in range(T):
        assert np.array_equal(acts[t], quantize_ref(kind, x[t])), f"token {t}"


@pytest.mark.parametrize("name", list(TYPES))
def test_matmul_vec_and_mat(dev, cpu, name):
    """matmul.wgsl, matrix-vector (T=1) and matrix-matrix (T=5, 8 tokens per invocation):
    the CPU core's results bit for bit, and numpy's (float64) within rounding."""
    K, rows, T = 512, 80, 5
    rng, tid, kind, W, x, wb, xq, xs, acts = _matmul_case(dev, name, K, rows, T, 2)
    want = cpu_matmul(cpu, tid, W, x)
    ref = _numpy_matmul(cpu, name, W, acts, kind, K)
    b = B()
    for T_, tt in ((1, 1), (T, 8)):
        yb = b.storage(dev, 4 * rows * T_)
        run(dev, "matmul.wgsl", [wb, xq, yb], (-(-rows // 64), 1, -(-T_ // tt)),
            params=[K, rows, W.shape[1], xs, rows, 0, 0, 0], step=(T_, 0, 0, 0),
            constants={"QT": tid, "WG": 64, "TPR": 1, "TT": tt})
        y = read(dev, yb, np.float32, rows * T_).reshape(T_, rows)
        assert np.array_equal(y, want[:T_]), f"T={T_}: max diff {np.abs(y - want[:T_]).max()}"
        scale = np.abs(ref[:T_]).max()
        assert np.abs(y - ref[:T_]).max() <= 1e-5 * scale


@pytest.mark.parametrize("name", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("K", [4, 12])
def test_matmul_float_scalar_tail(dev, cpu, name, K):
    """Float weights whose rows are not a multiple of 8 (LoRA ranks such as 4): the scalar
    tail after the eight lanes, a multiply then an add on both sides (the relaxed-SIMD core
    once fused it into relaxed_madd), so still the CPU's bits."""
    rows, T = 40, 3
    rng, tid, kind, W, x, wb, xq, xs, acts = _matmul_case(dev, name, K, rows, T, 5)
    want = cpu_matmul(cpu, tid, W, x)
    b = B()
    for T_, tt in ((1, 1), (T, 8)):
        yb = b.storage(dev, 4 * rows * T_)
        run(dev, "matmul.wgsl", [wb, xq, yb], (1, 1, -(-T_ // tt)), params=[K, rows, W.shape[1], xs, rows, 0, 0, 0],
            step=(T_, 0, 0, 0), constants={"QT": tid, "WG": 64, "TPR": 1, "TT": tt})
        y = read(dev, yb, np.float32, rows * T_).reshape(T_, rows)
        assert np.array_equal(y, want[:T_]), f"T={T_}: max diff {np.abs(y - want[:T_]).max()}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TYPES))
@pytest.mark.parametrize("tpr,sub", [(16, False), (4, True)], ids=["tpr16-workgroup", "tpr4-subgroups"])
def test_matmul_split_rows(dev, cpu, name, tpr, sub):
    """The GPU matrix-vector variant (TPR invocations per row; workgroup memory or subgroup
    shuffles): still the CPU's order of additions, so still bit for bit."""
    if sub and "subgroup" not in dev.features:
        pytest.skip("the adapter has no subgroups")
    K, rows, T = 512, 40, 2
    rng, tid, kind, W, x, wb, xq, xs, acts = _matmul_case(dev, name, K, rows, T, 3)
    want = cpu_matmul(cpu, tid, W, x)
    yb = B().storage(dev, 4 * rows * T)
    run(dev, "matmul.wgsl", [wb, xq, yb], (-(-rows * tpr // 64), 1, T), params=[K, rows, W.shape[1], xs, rows, 0, 0, 0],
        step=(T, 0, 0, 0), constants={"QT": tid, "WG": 64, "TPR": tpr, "TT": 1}, defines=("SUBGROUPS",) if sub else ())
    y = read(dev, yb, np.float32, rows * T).reshape(T, rows)
    assert np.array_equal(y, want)


def test_matmul_part_offset_and_accumulate(dev, cpu):
    """A part of a split tensor writes at its row offset; accum adds (fused residuals)."""
    K, rows, T = 256, 24, 2
    rng, tid, kind, W, x, wb, xq, xs, acts = _matmul_case(dev, "Q8_0", K, rows, T, 4)
    want = cpu_matmul(cpu, tid, W, x)
    y0 = rng.standard_normal((T, 100), dtype=np.float32)
    yb = B().storage(dev, y0.nbytes, data=y0)
    run(dev, "matmul.wgsl", [wb, xq, yb], (1, 1, T), params=[K, rows, W.shape[1], xs, 100, 30, 1, 0],
        step=(T, 0, 0, 0), constants={"QT": tid, "WG": 64, "TPR": 1, "TT": 1})
    y = read(dev, yb, np.float32, 200).reshape(T, 100)
    exp = y0.copy()
    exp[:, 30:30 + rows] = y0[:, 30:30 + rows] + want
    assert np.array_equal(y, exp)


# ------------------------------------------------------------------ embedding
@pytest.mark.parametrize("name", [n for n in TYPES])
def test_embed(dev, cpu, name):
    """embed.wgsl: rows of any type, bit for bit as gguf-py (and the core) dequantize them;
    a part holding rows [row0, row0 + rows) writes only its own."""
    rng = np.random.default_rng(5)
    tid, _, _, _ = TYPES[name]
    E, V = 512, 40
    W = random_weights(name, V, E, rng)
    if name in ("Q8_1", "Q8_K"):
        ref = np.stack([cpu_dequant(cpu, tid, W[r], E) for r in range(V)])
    else:
        ref = gguf.quants.dequantize(np.ascontiguousarray(W), gguf.GGMLQuantizationType[name]).reshape(V, E)
    ids = np.array([3, 0, 39, 17, 25], np.uint32)
    b = B()
    part = W[20:]  # the second half, as a split tensor's part 1
    wb = b.storage(dev, part.nbytes + 4, data=part)
    ib = b.storage(dev, ids.nbytes, data=ids)
    sentinel = np.full((5, E), 7.0, np.float32)
    xb = b.storage(dev, sentinel.nbytes, data=sentinel)
    run(dev, "embed.wgsl", [wb, ib, xb], (1, 1, 5), params=[E, W.shape[1], 20, 20, E, 0, 0, 0], step=(5, 0, 0, 0),
        constants={"QT": tid, "WG": 64})
    x = read(dev, xb, np.float32, 5 * E).reshape(5, E)
    for t, i in enumerate(ids):
        if i >= 20:
            assert np.array_equal(x[t], ref[i].astype(np.float32)), f"row {i}"
        else:
            assert np.all(x[t] == 7.0), "a part wrote a row it does not hold"


# ------------------------------------------------------------------ the rest of a layer
def test_rmsnorm(dev):
    """rmsnorm.wgsl = (x * scale) * w with scale = 1/sqrt(f32(sum(f32 squares) / n) + eps), the
    sum exact as a double; rows t0.. (the output head's last rows)."""
    rng = np.random.default_rng(6)
    E, T, t0 = 576, 4, 2
    x = rng.standard_normal((T + t0, E), dtype=np.float32)
    x[1, 3] = 3e4
    w = rng.standard_normal(E, dtype=np.float32)
    eps = np.float32(1e-5)
    b = B()
    xb, wb, yb = b.storage(dev, x.nbytes, data=x), b.storage(dev, w.nbytes, data=w), b.storage(dev, 4 * T * E)
    run(dev, "rmsnorm.wgsl", [xb, wb, yb], (1, 1, T), params=[E, int(eps.view(np.uint32)), E, E],
        step=(T, 0, t0, 0), constants={"WG": 64})
    y = read(dev, yb, np.float32, T * E).reshape(T, E)
    for t in range(T):
        v = x[t0 + t]
        ss = np.sum((v * v).astype(np.float64))
        scale = np.float32(1) / np.sqrt(np.float32(ss / E) + eps)
        assert np.array_equal(y[t], (v * scale) * w), f"row {t}"
    # GATHER (the head of a batch of several sessions): output row t from input row rows[t]
    rows = np.array([5, 0, 3], np.uint32)
    rb = b.storage(dev, rows.nbytes, data=rows)
    run(dev, "rmsnorm.wgsl", [xb, wb, yb, rb], (1, 1, 3), params=[E, int(eps.view(np.uint32)), E, E],
        step=(3, 0, 0, 0), constants={"WG": 64}, defines=("GATHER",))
    g = read(dev, yb, np.float32, 3 * E).reshape(3, E)
    yb2 = b.storage(dev, 4 * (T + t0) * E)
    run(dev, "rmsnorm.wgsl", [xb, wb, yb2], (1, 1, T + t0), params=[E, int(eps.view(np.uint32)), E, E],
        step=(T + t0, 0, 0, 0), constants={"WG": 64})
    allr = read(dev, yb2, np.float32, (T + t0) * E).reshape(T + t0, E)
    assert np.array_equal(g, allr[rows])


def test_swiglu(dev):
    """swiglu.wgsl: g / (1 + exp(-g)) * u as the core computes it (tests/f32_math.py: its f32
    exp operation for operation, a correctly rounded division), bit for bit."""
    rng = np.random.default_rng(7)
    F, T = 1000, 3
    g = (rng.standard_normal((T, F)) * 6).astype(np.float32)
    g[0, :4] = [-120.0, 100.0, 0.0, -0.0]
    u = rng.standard_normal((T, F), dtype=np.float32)
    b = B()
    gb, ub = b.storage(dev, g.nbytes, data=g), b.storage(dev, u.nbytes, data=u)
    run(dev, "swiglu.wgsl", [gb, ub], (-(-F // 64), 1, T), params=[F, F, 0, 0], step=(T, 0, 0, 0), constants={"WG": 64})
    h = read(dev, gb, np.float32, T * F).reshape(T, F)
    assert np.array_equal(h, swiglu_f32(g, u))


def test_add_bias(dev):
    rng = np.random.default_rng(8)
    y = rng.standard_normal((3, 70), dtype=np.float32)
    bias = rng.standard_normal(70, dtype=np.float32)
    b = B()
    yb, bb = b.storage(dev, y.nbytes, data=y), b.storage(dev, bias.nbytes, data=bias)
    run(dev, "add.wgsl", [yb, bb], (2, 1, 3), params=[70, 70, 0, 0], step=(3, 0, 0, 0), constants={"WG": 64, "BIAS": 1})
    assert np.array_equal(read(dev, yb, np.float32, 210).reshape(3, 70), y + bias)


def _attention_ref(q, kc, vc, rope, p0, H, Hkv, D, scale):
    """core/model.c's rope (normal) + attention for T new tokens at p0.., numpy, CPU order."""
    T = q.shape[0]
    G = H // Hkv
    out = np.zeros((T, H * D), np.float32)
    for t in range(T):
        n = p0 + t + 1
        cs = rope[p0 + t]
        for h in range(H):
            x = q[t, h * D:(h + 1) * D]
            qr = x.copy()
            x0, x1 = x[0::2], x[1::2]
            qr[0::2] = (x0 * cs[:, 0]) - (x1 * cs[:, 1])
            qr[1::2] = (x0 * cs[:, 1]) + (x1 * cs[:, 0])
            qh = f16r(qr)
            k = kc[:n, (h // G) * D:(h // G + 1) * D]
            a = np.zeros((n, 4), np.float32)      # every position's accumulator, in the CPU's order
            for d in range(0, D, 8):
                a = (a + qh[d:d + 4] * k[:, d:d + 4]).astype(np.float32)
                a = (a + qh[d + 4:d + 8] * k[:, d + 4:d + 8]).astype(np.float32)
            sc = ((((a[:, 0] + a[:, 1]).astype(np.float32) + a[:, 2]).astype(np.float32) + a[:, 3]).astype(np.float32)
                  * scale).astype(np.float32)
            e = exp_f32(sc - sc.max())
            inv = np.float32(1.0 / np.sum(e.astype(np.float64)))
            p = f16r(e * inv)
            acc = np.zeros(D, np.float32)
            for j in range(n):
                acc = (acc + p[j] * vc[j, (h // G) * D:(h // G + 1) * D]).astype(np.float32)
            out[t, h * D:(h + 1) * D] = acc
    return out


@pytest.mark.parametrize("n_ctx,p0", [(16, 5), (320, 300)], ids=["short", "300-positions"])
@pytest.mark.parametrize("f16", [False, True], ids=["u32-cache", "f16-cache"])
def test_rope_kv_and_attention(dev, f16, n_ctx, p0):
    """rope_kv.wgsl stores rotated keys and values as f16 at n_past..; attention.wgsl (causal,
    grouped-query, q rotated and rounded to f16, weights rounded to f16) gives core/model.c's
    values bit for bit; the shader-f16 variant the same bits. Over 300 positions some weights
    sit near an f16 rounding boundary, where a score summed in another order or another exp
    moves them: the bits then check the CPU's order of operations, not only the formula."""
    if f16 and "shader-f16" not in dev.features:
        pytest.skip("the adapter has no shader-f16")
    defines = ("F16",) if f16 else ()
    rng = np.random.default_rng(9)
    H, Hkv, D, T = 6, 2, 64, 3
    KVD = Hkv * D
    nd = D
    base = np.float32(10000.0)
    theta_scale = np.float32(base ** np.float32(-2.0 / nd))
    rope = np.zeros((n_ctx, nd // 2, 2), np.float32)
    for p in range(n_ctx):
        tb = np.float32(p)
        for i in range(nd // 2):
            rope[p, i] = (np.cos(np.float64(tb)), np.sin(np.float64(tb)))
            tb = np.float32(tb * theta_scale)
    kc0 = f16r(rng.standard_normal((n_ctx, KVD)))  # earlier positions already in the cache
    vc0 = f16r(rng.standard_normal((n_ctx, KVD)))
    k = rng.standard_normal((T, KVD), dtype=np.float32)
    v = rng.standard_normal((T, KVD), dtype=np.float32)
    q = rng.standard_normal((T, H * D), dtype=np.float32)
    b = B()
    kcb = b.storage(dev, kc0.nbytes // 2, data=kc0.astype(np.float16))
    vcb = b.storage(dev, vc0.nbytes // 2, data=vc0.astype(np.float16))
    rb = b.storage(dev, rope.nbytes, data=rope)
    kb, vb, qb = b.storage(dev, k.nbytes, data=k), b.storage(dev, v.nbytes, data=v), b.storage(dev, q.nbytes, data=q)
    ob = b.storage(dev, 4 * T * H * D)
    step = (T, p0, 0, 0)
    run(dev, "rope_kv.wgsl", [kb, vb, kcb, vcb, rb], (-(-(KVD // 2) // 64), 1, T), params=[KVD, D, nd, 0, KVD, 0, 0, 0],
        step=step, constants={"WG": 64}, defines=defines)
    kc = read(dev, kcb, np.float16, n_ctx * KVD).reshape(n_ctx, KVD).astype(np.float32)
    vc = read(dev, vcb, np.float16, n_ctx * KVD).reshape(n_ctx, KVD).astype(np.float32)
    exp_k = kc0.copy()
    exp_v = vc0.copy()
    for t in range(T):
        cs = rope[p0 + t]
        for h in range(Hkv):
            x = k[t, h * D:(h + 1) * D]
            r = x.copy()
            r[0::2] = (x[0::2] * cs[:, 0]) - (x[1::2] * cs[:, 1])
            r[1::2] = (x[0::2] * cs[:, 1]) + (x[1::2] * cs[:, 0])
            exp_k[p0 + t, h * D:(h + 1) * D] = f16r(r)
        exp_v[p0 + t] = f16r(v[t])
    assert np.array_equal(kc, exp_k) and np.array_equal(vc, exp_v)
    scale = np.float32(1) / np.sqrt(np.float32(D))
    run(dev, "attention.wgsl", [qb, kcb, vcb, rb, ob], (H, 1, T),
        params=[H, H // Hkv, D, nd, 0, H * D, H * D, KVD // 2, int(scale.view(np.uint32)), 0, 0, 0, 0, 0, 0, 0],
        step=step, constants={"WG": 64}, defines=defines)
    out = read(dev, ob, np.float32, T * H * D).reshape(T, H * D)
    ref = _attention_ref(q, kc, vc, rope, p0, H, Hkv, D, scale)
    assert np.array_equal(out, ref), np.abs(out - ref).max()
    # a session's rows inside a batch (rows t0.., step {T, n_past, t0, 0}): the same cache and outputs
    t0 = 2
    pad = lambda a: np.concatenate([rng.standard_normal((t0, a.shape[1]), dtype=np.float32), a,
                                    rng.standard_normal((1, a.shape[1]), dtype=np.float32)])
    kb2, vb2, qb2 = (b.storage(dev, pad(a).nbytes, data=pad(a)) for a in (k, v, q))
    kcb2 = b.storage(dev, kc0.nbytes // 2, data=kc0.astype(np.float16))
    vcb2 = b.storage(dev, vc0.nbytes // 2, data=vc0.astype(np.float16))
    ob2 = b.storage(dev, 4 * (T + t0 + 1) * H * D)
    step2 = (T, p0, t0, 0)
    run(dev, "rope_kv.wgsl", [kb2, vb2, kcb2, vcb2, rb], (-(-(KVD // 2) // 64), 1, T),
        params=[KVD, D, nd, 0, KVD, 0, 0, 0], step=step2, constants={"WG": 64}, defines=defines)
    assert np.array_equal(read(dev, kcb2, np.float16, n_ctx * KVD).reshape(n_ctx, KVD).astype(np.float32), kc)
    assert np.array_equal(read(dev, vcb2, np.float16, n_ctx * KVD).reshape(n_ctx, KVD).astype(np.float32), vc)
    run(dev, "attention.wgsl", [qb2, kcb2, vcb2, rb, ob2], (H, 1, T),
        params=[H, H // Hkv, D, nd, 0, H * D, H * D, KVD // 2, int(scale.view(np.uint32)), 0, 0, 0, 0, 0, 0, 0],
        step=step2, constants={"WG": 64}, defines=defines)
    out2 = read(dev, ob2, np.float32, (T + t0) * H * D).reshape(T + t0, H * D)
    assert np.array_equal(out2[t0:], ref)


# ------------------------------------------------------------------ sampling helpers
def test_argmax_first_of_ties(dev):
    rng = np.random.default_rng(10)
    V = 49152
    L = rng.standard_normal((2, V), dtype=np.float32)
    L[1, 777] = L[1, 30000] = L[1].max() + 1  # a tie: the first index wins, as the CPU sampler
    b = B()
    lb, ob = b.storage(dev, L.nbytes, data=L), b.storage(dev, 16)
    run(dev, "argmax.wgsl", [lb, ob], (1, 1, 1), params=[V, 0, 0, 0], step=(2, 0, 0, 0), constants={"WG": 256})
    o = read(dev, ob, np.uint32, 2)
    assert o[0] == 777 and o[1:2].view(np.float32)[0] == L[1, 777]


@pytest.mark.parametrize("k", [1, 2, 40, 256])
def test_topk(dev, k):
    rng = np.random.default_rng(11 + k)
    V = 10000
    L = rng.standard_normal((1, V), dtype=np.float32)
    L[0, :50] = np.round(L[0, :50])  # ties
    b = B()
    lb, ob = b.storage(dev, L.nbytes, data=L), b.storage(dev, 4 * (2 + 2 * 256))
    run(dev, "topk.wgsl", [lb, ob], (1, 1, 1), params=[V, 0, 0, 0], step=(1, 0, 0, k), constants={"WG": 256})
    o = read(dev, ob, np.uint32, 2 + 2 * k)
    assert o[0] == k
    idx, vals = o[2::2], o[3::2].view(np.float32)
    assert len(set(idx.tolist())) == k
    assert np.array_equal(L[0, idx], vals)
    kth = np.sort(L[0])[-k]
    assert np.all(vals >= kth) and np.sum(L[0] > kth) <= k


def test_softmax(dev):
    rng = np.random.default_rng(12)
    V = 3000
    L = (rng.standard_normal((2, V)) * 4).astype(np.float32)
    b = B()
    lb = b.storage(dev, L.nbytes, data=L)
    run(dev, "softmax.wgsl", [lb], (1, 1, 2), params=[V, int(np.float32(1 / 0.7).view(np.uint32)), 0, 0],
        step=(2, 0, 0, 0), constants={"WG": 256})
    p = read(dev, lb, np.float32, 2 * V).reshape(2, V)
    z = (L.astype(np.float64) - L.max(1, keepdims=True)) / 0.7
    ref = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert np.allclose(p, ref, rtol=2e-5, atol=1e-9)


def test_f16_rounding(dev):
    """f32 -> f16 -> f32 in integer arithmetic: round to nearest even, subnormals, overflow, NaN."""
    specials = np.array([0.0, -0.0, 1.0, 65504.0, 65519.99, 65520.0, 1e6, -1e6, 6.1e-5, 5.96e-8, 2.98e-8, 2.99e-8,
                         1e-9, np.inf, -np.inf, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 3.14159], np.float32)
    rng = np.random.default_rng(13)
    x = np.concatenate([specials, (rng.standard_normal(4096 - len(specials)) * np.exp(rng.uniform(-20, 12, 4096 - len(specials)))).astype(np.float32)])
    b = B()
    xb, ob = b.storage(dev, x.nbytes, data=x), b.storage(dev, x.nbytes)
    run(dev, "quantize.wgsl", [xb, ob], (2, 1, 1), params=[4096, 4096, 4096, 0], step=(1, 0, 0, 0), constants={"KIND": 1, "WG": 64})
    y = read(dev, ob, np.float32, 4096)
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16).astype(np.float32)
    assert np.array_equal(y, ref)
