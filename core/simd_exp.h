/* simd_exp.h: rt_expf (core/rt.c) on four f32 lanes, bit for bit.
 *
 * rt_expf(x) = (float)rt_exp((double)x); rt_exp reduces x = k ln2 + r and sums
 * a degree-13 Taylor polynomial in double. Here the same operations run in
 * the same order on f64x2 lanes (which round lane by lane as scalar f64
 * does), for lanes with |x| < 700, where rt_exp takes no special case; other
 * lanes (huge, infinite, NaN) go through rt_expf itself. Include after
 * `#pragma clang fp reassociate(off)` and <wasm_simd128.h>: nothing here may
 * be reordered. */
#ifndef REALM_SIMD_EXP_H
#define REALM_SIMD_EXP_H
#include "rt.h"

static inline __attribute__((always_inline)) v128_t rt_exp_f64x2_(v128_t x) {
    const v128_t kd = wasm_f64x2_floor(wasm_f64x2_add(wasm_f64x2_mul(x, wasm_f64x2_splat(1.44269504088896338700e+00)),
                                                      wasm_f64x2_splat(0.5)));
    const v128_t r = wasm_f64x2_sub(wasm_f64x2_sub(x, wasm_f64x2_mul(kd, wasm_f64x2_splat(6.93147180369123816490e-01))),
                                    wasm_f64x2_mul(kd, wasm_f64x2_splat(1.90821492927058770002e-10)));
    static const double C[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                               1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
    v128_t p = wasm_f64x2_splat(1.0 / 6227020800.0);
    for (int i = 0; i < 13; i++) p = wasm_f64x2_add(wasm_f64x2_mul(p, r), wasm_f64x2_splat(C[i]));
    /* 2^k: k + 1023 into the exponent field (|k| <= 1010 here). k is read from the
     * low bits of kd + 1.5 * 2^52 (exact: kd is an integer), whose high bits the
     * shift drops; a float -> int conversion became two scalar ones with range
     * checks and branches under wasmtime, some 30 instructions per two lanes. */
    const v128_t kb = wasm_f64x2_add(kd, wasm_f64x2_splat(0x1.8p52));
    return wasm_f64x2_mul(p, wasm_i64x2_shl(wasm_i64x2_add(kb, wasm_i64x2_splat(1023)), 52));
}

/* rt_expf of each lane of x */
static inline __attribute__((always_inline)) v128_t rt_expf_x4(v128_t x) {
    const v128_t lo = wasm_f64x2_promote_low_f32x4(x);
    const v128_t hi = wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(x, x, 1, 0));
    const v128_t lim = wasm_f64x2_splat(700.0);
    if (wasm_i64x2_all_true(wasm_v128_and(wasm_f64x2_lt(wasm_f64x2_abs(lo), lim),
                                          wasm_f64x2_lt(wasm_f64x2_abs(hi), lim))))
        return wasm_i64x2_shuffle(wasm_f32x4_demote_f64x2_zero(rt_exp_f64x2_(lo)),
                                  wasm_f32x4_demote_f64x2_zero(rt_exp_f64x2_(hi)), 0, 2);
    float v[4] __attribute__((aligned(16)));
    wasm_v128_store(v, x);
    for (int i = 0; i < 4; i++) v[i] = rt_expf(v[i]);
    return wasm_v128_load(v);
}
#endif
