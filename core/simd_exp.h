/* simd_exp.h: qi_expf_x4, the f32 exp of the attention softmax and SiLU.
 * Include after `#pragma clang fp reassociate(off)` and <wasm_simd128.h>:
 * nothing here may be reordered (the GPU computes the same operations). */
#ifndef REALM_SIMD_EXP_H
#define REALM_SIMD_EXP_H

/* exp of four f32 lanes in f32 arithmetic, what llama.cpp's CPU kernels use for
 * the softmax and SiLU (ggml_v_expf), without FMA: x = n ln2 + r, |r| <= ln2 / 2,
 * 2^n from n's bits, e^r by a degree-6 polynomial; within 3 ulp of exp(x)
 * (tests/test_quant.py). Below -87.3 (where f32's normals end) 0; above 88.37,
 * where 2^n would leave the exponent field, inf (exp overflows f32 from 88.72:
 * in between, inf is early); NaN stays NaN. rt_expf's correctly rounded f64
 * polynomial, two lanes at a time, which the core used before, cost three times
 * as much. The GPU kernels compute the same operations (wgsl/exact.wgsl: exp_f32). */
static inline __attribute__((always_inline)) v128_t qi_expf_x4(v128_t x) {
    const v128_t magic = wasm_f32x4_splat(0x1.8p23f);
    const v128_t z = wasm_f32x4_add(wasm_f32x4_mul(x, wasm_f32x4_splat(0x1.715476p+0f)), magic);
    const v128_t n = wasm_f32x4_sub(z, magic);
    const v128_t r = wasm_f32x4_sub(wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0x1.62e4p-1f))),
                                    wasm_f32x4_mul(n, wasm_f32x4_splat(0x1.7f7d1cp-20f)));
    v128_t p = wasm_f32x4_splat(1.0f / 720);
    p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 120));
    p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 24));
    p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 6));
    p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(0.5f));
    p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
    p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
    const v128_t two_n = wasm_i32x4_add(wasm_i32x4_shl(z, 23), wasm_i32x4_splat(127 << 23));
    v128_t e = wasm_f32x4_mul(p, two_n);
    e = wasm_v128_andnot(e, wasm_f32x4_lt(x, wasm_f32x4_splat(-87.3f)));
    e = wasm_v128_bitselect(wasm_f32x4_splat(__builtin_inff()), e, wasm_f32x4_gt(x, wasm_f32x4_splat(88.37f)));
    return wasm_v128_bitselect(x, e, wasm_f32x4_ne(x, x));
}

#endif
