"""numpy replicas, operation for operation in float32, of the core's own f32 formulas
(core/simd_exp.h), so tests can hold the CPU and the GPU kernels to their exact bits
and hold the formula itself to float64 references."""
from __future__ import annotations

import numpy as np

f32 = np.float32


def exp_f32(x) -> np.ndarray:
    """core/simd_exp.h qi_expf_x4 (the exp of attention's softmax and of SiLU; wgsl/exact.wgsl
    exp_f32): x = n ln2 + r, e^r by a degree-6 polynomial, 2^n from n's bits; 0 below -87.3,
    inf above 88.37, NaN for NaN."""
    x = np.asarray(x, f32)
    with np.errstate(over="ignore", invalid="ignore"):
        magic = f32(float.fromhex("0x1.8p23"))
        z = (x * f32(float.fromhex("0x1.715476p+0"))).astype(f32) + magic
        n = (z - magic).astype(f32)
        r = ((x - (n * f32(float.fromhex("0x1.62e4p-1"))).astype(f32)).astype(f32)
             - (n * f32(float.fromhex("0x1.7f7d1cp-20"))).astype(f32)).astype(f32)
        p = f32(1) / f32(720)
        for c in (f32(1) / f32(120), f32(1) / f32(24), f32(1) / f32(6), f32(0.5), f32(1), f32(1)):
            p = ((p * r).astype(f32) + c).astype(f32)
        two_n = ((z.view(np.uint32) << np.uint32(23)) + np.uint32(127 << 23)).view(f32)
        e = (p * two_n).astype(f32)
    e = np.where(x < f32(-87.3), f32(0), e)
    e = np.where(x > f32(88.37), f32(np.inf), e)
    return np.where(np.isnan(x), x, e).astype(f32)


def swiglu_f32(g, u) -> np.ndarray:
    """core/batch.c swiglu: g / (1 + exp(-g)) * u in float32, exp as exp_f32."""
    g, u = np.asarray(g, f32), np.asarray(u, f32)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return ((g / (f32(1) + exp_f32(-g)).astype(f32)).astype(f32) * u).astype(f32)
