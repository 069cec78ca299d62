"""Shared pieces of the GPU tests: the adapter (or a clear skip), random weights of every
ggml type, numpy references of the activation formats, and a kernel runner."""
from __future__ import annotations

import os

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # silences the Vulkan loader

import numpy as np

# ggml type: (id, block elements, block bytes, activation kind of quantize.wgsl)
TYPES = {
    "F32": (0, 1, 4, 0), "F16": (1, 1, 2, 1), "BF16": (30, 1, 2, 2),
    "Q4_0": (2, 32, 18, 3), "Q4_1": (3, 32, 20, 4), "Q5_0": (6, 32, 22, 3), "Q5_1": (7, 32, 24, 4),
    "Q8_0": (8, 32, 34, 3), "Q8_1": (9, 32, 36, 4),
    "Q2_K": (10, 256, 84, 5), "Q3_K": (11, 256, 110, 5), "Q4_K": (12, 256, 144, 5),
    "Q5_K": (13, 256, 176, 5), "Q6_K": (14, 256, 210, 5), "Q8_K": (15, 256, 292, 5),
}
# byte offsets of the f16 scales in a block: set to sane values so random blocks stay finite
F16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q8_1": [0, 2],
              "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}

_dev = None
_why = None


def gpu_device():
    """The process's wgpu device, or pytest.skip with the reason (in CI: fail)."""
    global _dev, _why
    if _dev is None and _why is None:
        try:
            from realm_web.gpu.device import get_device
            _dev = get_device()
        except Exception as e:  # GPUUnavailable, a missing libvulkan, a driver error
            _why = f"no WebGPU adapter: {e} (apt-get install mesa-vulkan-drivers libvulkan1; pip install wgpu)"
    if _dev is None:
        from conftest import missing
        missing(_why)
    return _dev


def random_weights(name: str, rows: int, K: int, rng: np.random.Generator) -> np.ndarray:
    """rows x (row bytes) uint8: random valid blocks of type `name`."""
    tid, bs, ts, _ = TYPES[name]
    if name == "F32":
        return rng.standard_normal((rows, K), dtype=np.float32).view(np.uint8)
    if name == "F16":
        return rng.standard_normal((rows, K)).astype(np.float16).view(np.uint8)
    if name == "BF16":
        return (rng.standard_normal((rows, K), dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    blocks = rng.integers(0, 256, (rows * K // bs, ts), dtype=np.uint8)
    for off in F16_FIELDS.get(name, []):
        vals = rng.uniform(0.002, 0.02, len(blocks)).astype(np.float16)
        blocks[:, off:off + 2] = vals.view(np.uint8).reshape(-1, 2)
    if name == "Q8_K":
        blocks[:, 0:4] = rng.uniform(0.002, 0.02, len(blocks)).astype(np.float32).view(np.uint8).reshape(-1, 4)
    return blocks.reshape(rows, -1)


def act_words(kind: int, K: int) -> int:
    """u32 words of one activation row in quantize.wgsl's layout."""
    if kind <= 2:
        return K
    if kind == 3:
        return K // 4 + K // 32
    if kind == 4:
        return K // 4 + 2 * (K // 32)
    return K // 4 + K // 256 + K // 16


def dequant_act(kind: int, words: np.ndarray, K: int) -> np.ndarray:
    """Float64 values of one activation row in quantize.wgsl's layout."""
    w = np.asarray(words, np.uint32)
    if kind <= 2:
        return w[:K].view(np.float32).astype(np.float64)
    q = w[:K // 4].view(np.int8).astype(np.float64)
    if kind in (3, 4):
        d = w[K // 4:K // 4 + K // 32].view(np.float32).astype(np.float64)
        return q * np.repeat(d, 32)
    d = w[K // 4:K // 4 + K // 256].view(np.float32).astype(np.float64)
    return q * np.repeat(d, 256)


def f16r(a) -> np.ndarray:
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def quantize_ref(kind: int, x: np.ndarray) -> np.ndarray:
    """numpy: one f32 row -> quantize.wgsl's words, with the core's rounding rules."""
    x = np.asarray(x, np.float32)
    K = x.size
    if kind == 1:
        return f16r(x).view(np.uint32)
    if kind == 2:
        u = x.view(np.uint32).astype(np.uint64)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32)
        nan = (u & 0x7FFFFFFF) > 0x7F800000
        r[nan] = ((u[nan] >> 16) | 64).astype(np.uint32)
        return (r << 16).astype(np.uint32)
    out = np.zeros(act_words(kind, K), np.uint32)
    if kind in (3, 4):
        nb = K // 32
        q = np.zeros(K, np.int8)
        for b in range(nb):
            xb = x[32 * b:32 * b + 32]
            amax = np.float32(np.abs(xb).max())
            d = np.float32(amax / np.float32(127))
            iid = np.float32(np.float32(127) / amax) if amax != 0 else np.float32(0)
            qb = np.rint((xb * iid).astype(np.float32)).astype(np.int32)  # half to even
            q[32 * b:32 * b + 32] = qb
            out[K // 4 + b] = f16r(d).view(np.uint32)
            if kind == 4:
                out[K // 4 + nb + b] = f16r(np.float32(np.float32(qb.sum()) * d)).view(np.uint32)
        out[:K // 4] = q.view(np.uint32)
        return out
    nb = K // 256
    q = np.zeros(K, np.int8)
    for b in range(nb):
        xb = x[256 * b:256 * b + 256]
        amax = np.abs(xb).max()
        bs = out[K // 4 + nb + 16 * b: K // 4 + nb + 16 * b + 16].view(np.int32)
        if not amax > 0:
            continue
        mx = xb[np.argmax(np.abs(xb) == amax)]
        iscale = np.float32(np.float32(-127) / mx)
        qb = np.minimum(127, np.rint((iscale * xb).astype(np.float32))).astype(np.int32)
        q[256 * b:256 * b + 256] = qb
        bs[:] = qb.reshape(16, 16).sum(1)
        out[K // 4 + b] = np.float32(np.float32(1) / iscale).view(np.uint32)
    out[:K // 4] = q.view(np.uint32)
    return out


def run(dev, file: str, bufs: list, grid, params=(), step=(1, 0, 0, 0), constants=None, defines=()):
    """One dispatch of a kernel of wgsl/ (binding 0 params, 1 step, 2.. bufs); params padded to 8 words."""
    from realm_web.gpu import buffers as B
    p = list(params) + [0] * (max(8, -(-len(params) // 4) * 4) - len(params))
    B.dispatch(dev, file, bufs, grid, params=p, step=step, constants=constants, defines=defines)


def core():
    from realm_web.wasm_host import WasmCore
    return WasmCore()


def cpu_matmul(c, tid: int, W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The CPU core's y (T x rows) = W x for every token row of x."""
    rows = W.shape[0]
    T, K = x.shape
    wp = c.alloc(W.nbytes)
    xp = c.alloc(x.nbytes)
    yp = c.alloc(4 * rows * T)
    try:
        c.write(wp, np.ascontiguousarray(W))
        c.write(xp, np.ascontiguousarray(x, np.float32))
        c.check(c.call("realm_quant_matmul", tid, wp, K, rows, xp, T, yp), "realm_quant_matmul")
        return c.view(yp, np.float32, rows * T).reshape(T, rows).copy()
    finally:
        for p in (wp, xp, yp):
            c.free(p)


def cpu_dequant(c, tid: int, row: np.ndarray, n: int) -> np.ndarray:
    sp = c.alloc(row.nbytes)
    dp = c.alloc(4 * n)
    try:
        c.write(sp, np.ascontiguousarray(row))
        c.check(c.call("realm_quant_dequant", tid, sp, dp, n), "realm_quant_dequant")
        return c.view(dp, np.float32, n).copy()
    finally:
        c.free(sp)
        c.free(dp)
