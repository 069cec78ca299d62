/* quant_attn.c: one attention head over an f16 KV cache, for the forward pass
 * (attention_head, for every head_dim D that is a multiple of 8).
 *
 * What it computes, in these f32 and f64 operations per value (whichever
 * heads, positions and dimensions a call groups, so the bits never depend on
 * the plan):
 *   qh[d]  = f16r(q[d])                                      (f16r: round to f16 and back)
 *   s_j    = hsum4(a) * scale, a the f32x4 sum of qh[d..d+3] k_j[d..d+3], then
 *            qh[d+4..d+7] k_j[d+4..d+7], for d = 0, 8, 16, .. in turn (lane l sums
 *            dimensions l, l + 4, l + 8, .. in order); hsum4(v) = ((v0 + v1) + v2) + v3
 *   mx     = the largest s_j (NaNs skipped), e_j = qi_expf(s_j - mx) (simd_exp.h),
 *            sum = the e_j in double (quant_attn_softmax_exp), inv = (float)(1 / sum)
 *   out[d] = (..((0 + p_0 v_0[d]) + p_1 v_1[d]) + ..), p_j = f16r(e_j * inv)
 * (every product of two f16-rounded values is exact in f32, so each "+ p v" and
 * each lane's "+ q k" rounds once, fused or not: exact_madd). llama.cpp's
 * attention without flash attention rounds q and p to f16 the same way; its
 * exp is ggml_v_expf, the polynomial qi_expf_x4 computes without FMA. Fast because:
 * - four cache rows at a time in the q.k pass (two for each of S heads that
 *   share a KV head): the query is loaded once per four (two) rows, and four
 *   sums are reduced by one 4x4 transpose and three vector adds (lane by lane
 *   the same additions as hsum4); one accumulator per row and head (two, before,
 *   did not fit the registers at S = 3 with two rows), and the running sums
 *   anchored after every eight dimensions (QI_ANCHOR): Cranelift otherwise
 *   computed each sum's whole chain in turn and spilled the converted cache
 *   values that the others still needed (q.k at S = 3: 23 -> 18.5 ns per row);
 * - the output accumulates in registers over all positions, instead of a
 *   load and a store of the accumulator per position and 8 dimensions; the
 *   weights of four positions come in one load per head and are splat lane
 *   by lane (a bounds-checked scalar load and a broadcast each, before);
 * - the softmax runs four lanes at a time: its maximum, its exp (f32, not
 *   rt_expf's f64 polynomial), its sum (two f64x2 lanes), and f16r of the
 *   weights in f32 itself (f16r_x4_weights, exactly qi_f2h_x4 then qi_h2f_x4
 *   for weights in [0, 1], tests/test_quant.py);
 * - a prompt's consecutive tokens go two at a time (quant_attn_pair_f16): each
 *   cache row is read and converted once for both, and the 2 S heads' sums in
 *   flight hide the latency of each one's chain of adds (SmolLM2, three heads
 *   per KV head, per row and head: q.k 6.4 -> 4.4 ns, p.v 6.6 -> 4.0 ns);
 * - the multiply-adds fuse in the relaxed-SIMD build (exact_madd: q.k at S = 3
 *   19 -> 15 ns per row);
 * - the f16 cache values are converted cheaply: the halves go to the
 *   high 16 bits of i32 lanes, an arithmetic shift by 3 and a mask make them
 *   f32 times 2^-112 (exact for the finite values a cache holds), and the
 *   other factor carries 2^112 (exact: it is f16-rounded).
 * wasmtime bounds-checks every load of a Memory64 module: a value kept in a
 * local (a register or the engine's own stack) costs none. */
#include "quant_impl.h"
#include "simd_exp.h"

/* acc + a * b, where the product is exact in f32 (here always: an f16 value
 * times 2^112 and an f16 value times 2^-112, 22 significant bits, far from
 * overflow and underflow), so a fused multiply-add rounds exactly as the
 * multiply and the add do: the relaxed-SIMD build lets the engine fuse them
 * (x86 vfmadd, ARM fmla) and every engine, fusing or not, gives the SIMD128
 * build's bits (tests/test_quant.py). */
QI_INLINE v128_t exact_madd(v128_t acc, v128_t a, v128_t b) {
#if QI_RELAXED
    return wasm_f32x4_relaxed_madd(a, b, acc);
#else
    return wasm_f32x4_add(acc, wasm_f32x4_mul(a, b));
#endif
}

/* f16 -> f32 times 2^-112 for the low / high four of eight halves (see above). */
QI_INLINE v128_t h2f_lo(v128_t h) {
    const v128_t w = wasm_i16x8_shuffle(wasm_i32x4_splat(0), h, 0, 8, 1, 9, 2, 10, 3, 11);
    return wasm_v128_and(wasm_i32x4_shr(w, 3), wasm_i32x4_splat((int32_t)0x8fffffffu));
}
QI_INLINE v128_t h2f_hi(v128_t h) {
    const v128_t w = wasm_i16x8_shuffle(wasm_i32x4_splat(0), h, 4, 12, 5, 13, 6, 14, 7, 15);
    return wasm_v128_and(wasm_i32x4_shr(w, 3), wasm_i32x4_splat((int32_t)0x8fffffffu));
}
/* f16r of four lanes, times 2^112 (exact) */
QI_INLINE v128_t f16r_x4_scaled(v128_t x) {
    return wasm_f32x4_mul(qi_h2f_x4(qi_f2h_x4(x)), wasm_f32x4_splat(0x1p112f));
}
QI_INLINE float hsum4(v128_t v) {
    return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
           wasm_f32x4_extract_lane(v, 3);
}

/* q.k of one cache row, q scaled by 2^112 */
QI_INLINE float dot1(const float *qh, const uint16_t *k, uint32_t D) {
    v128_t a = wasm_f32x4_splat(0);
    for (uint32_t d = 0; d < D; d += 8) {
        const v128_t h = wasm_v128_load(k + d);
        a = exact_madd(a, wasm_v128_load(qh + d), h2f_lo(h));
        a = exact_madd(a, wasm_v128_load(qh + d + 4), h2f_hi(h));
    }
    return hsum4(a);
}

/* Lanes l of the result: hsum4 of v[l] (v[0..4)), by a 4x4 transpose and three vector adds
 * (lane by lane the same additions as hsum4). */
QI_INLINE v128_t hsum4x4(v128_t v0, v128_t v1, v128_t v2, v128_t v3) {
    const v128_t u0 = wasm_i32x4_shuffle(v0, v1, 0, 4, 1, 5), u1 = wasm_i32x4_shuffle(v2, v3, 0, 4, 1, 5);
    const v128_t u2 = wasm_i32x4_shuffle(v0, v1, 2, 6, 3, 7), u3 = wasm_i32x4_shuffle(v2, v3, 2, 6, 3, 7);
    const v128_t t0 = wasm_i32x4_shuffle(u0, u1, 0, 1, 4, 5), t1 = wasm_i32x4_shuffle(u0, u1, 2, 3, 6, 7);
    const v128_t t2 = wasm_i32x4_shuffle(u2, u3, 0, 1, 4, 5), t3 = wasm_i32x4_shuffle(u2, u3, 2, 3, 6, 7);
    return wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_add(t0, t1), t2), t3);
}

/* q.k of cache rows k, k + st, k + 2 st, k + 3 st as four lanes, each lane
 * summed as dot1 sums it. D a compile-time constant where `unrolled` (the
 * query then stays in locals: no loads). */
#define DOT4_STEP(d)                                                                  \
    do {                                                                              \
        const v128_t q0 = wasm_v128_load(qh + (d)), q1 = wasm_v128_load(qh + (d) + 4); \
        QI_UNROLL for (int i = 0; i < 4; i++) {                                       \
            const v128_t h = wasm_v128_load(k + i * st + (d));                        \
            a[i] = exact_madd(a[i], q0, h2f_lo(h));              \
            a[i] = exact_madd(a[i], q1, h2f_hi(h));              \
        }                                                                             \
        if (ANCHOR) QI_ANCHOR(wasm_v128_or(wasm_v128_or(a[0], a[1]), wasm_v128_or(a[2], a[3]))); \
    } while (0)
QI_INLINE v128_t dot4(const float *qh, const uint16_t *k, uint64_t st, const uint32_t D, const bool unrolled) {
    v128_t a[4];
    QI_UNROLL for (int i = 0; i < 4; i++) a[i] = wasm_f32x4_splat(0);
    if (unrolled) {
        const bool ANCHOR = true;
        QI_UNROLL for (uint32_t d = 0; d < D; d += 8) DOT4_STEP(d);
    } else {
        const bool ANCHOR = false;
        for (uint32_t d = 0; d < D; d += 8) DOT4_STEP(d);
    }
    return hsum4x4(a[0], a[1], a[2], a[3]);
}

/* out[d0 .. d0 + 8W) = sum over j of p_j v_j[d0 ..], W vectors of 4 (W = 8
 * where a compile-time constant), accumulated in order j = 0, 1, .. */
QI_INLINE void pv(const float *ps, const uint16_t *v, uint64_t st, uint32_t n, uint32_t d0, const int W, float *out) {
    v128_t acc[8];
    QI_UNROLL for (int i = 0; i < 8; i++) acc[i] = wasm_f32x4_splat(0);
    for (uint32_t j = 0; j < n; j++) {
        const v128_t p = wasm_v128_load32_splat(ps + j); /* p_j * 2^112 */
        const uint16_t *vr = v + j * st + d0;
        QI_UNROLL for (int i = 0; i < 8; i += 2) {
            if (i >= W) break;
            const v128_t h = wasm_v128_load(vr + 4 * i);
            acc[i] = exact_madd(acc[i], p, h2f_lo(h));
            acc[i + 1] = exact_madd(acc[i + 1], p, h2f_hi(h));
        }
    }
    QI_UNROLL for (int i = 0; i < 8; i++) {
        if (i >= W) break;
        wasm_v128_store(out + d0 + 4 * i, acc[i]);
    }
}

/* Both caches' softmax up to its weights: scores capped (cap > 0: cap * tanh(s / cap)),
 * e_j = qi_expf(s_j - mx) in place (mx the largest, NaNs skipped); returns
 * inv = (float)(1 / sum), the sum in double: lane pairs (e_4i, e_4i+1) and
 * (e_4i+2, e_4i+3) each summed over i in order, then the tail in order. */
float quant_attn_softmax_exp(float *scores, uint32_t n, float cap) {
    uint32_t j;
    if (cap > 0)
        for (j = 0; j < n; j++) scores[j] = rt_tanhf(scores[j] * (1.0f / cap)) * cap;
    v128_t vm = wasm_f32x4_splat(-__builtin_inff());
    for (j = 0; j + 4 <= n; j += 4) {
        const v128_t s = wasm_v128_load(scores + j);
        vm = wasm_v128_bitselect(s, vm, wasm_f32x4_gt(s, vm)); /* a NaN never wins */
    }
    float m4[4] __attribute__((aligned(16)));
    wasm_v128_store(m4, vm);
    float mx = m4[0];
    for (int i = 1; i < 4; i++)
        if (m4[i] > mx) mx = m4[i];
    for (uint32_t t = j; t < n; t++)
        if (scores[t] > mx) mx = scores[t];
    const v128_t vmx = wasm_f32x4_splat(mx);
    v128_t s0 = wasm_f64x2_splat(0), s1 = s0;
    for (j = 0; j + 4 <= n; j += 4) {
        const v128_t e = qi_expf_x4(wasm_f32x4_sub(wasm_v128_load(scores + j), vmx));
        wasm_v128_store(scores + j, e);
        s0 = wasm_f64x2_add(s0, wasm_f64x2_promote_low_f32x4(e));
        s1 = wasm_f64x2_add(s1, wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(e, e, 1, 0)));
    }
    double sum = (wasm_f64x2_extract_lane(s0, 0) + wasm_f64x2_extract_lane(s0, 1)) +
                 (wasm_f64x2_extract_lane(s1, 0) + wasm_f64x2_extract_lane(s1, 1));
    for (; j < n; j++) {
        const float e = wasm_f32x4_extract_lane(qi_expf_x4(wasm_f32x4_splat(scores[j] - mx)), 0);
        scores[j] = e;
        sum += e;
    }
    return (float)(1.0 / sum);
}

/* f16r of four lanes in [0, 1] or NaN (softmax weights), times 2^112: round to
 * nearest even at f16's precision without leaving f32 (f16 normals: on bit 13
 * of the bits; below 2^-14, f16's subnormal grid of 2^-24, by adding 0.5, whose
 * f32 ulp that is), exactly qi_f2h_x4 then qi_h2f_x4 (tests/test_quant.py). */
QI_INLINE v128_t f16r_x4_weights(v128_t x) {
    const v128_t odd = wasm_v128_and(wasm_u32x4_shr(x, 13), wasm_i32x4_splat(1));
    const v128_t nrm = wasm_v128_and(wasm_i32x4_add(wasm_i32x4_add(x, wasm_i32x4_splat(0xfff)), odd),
                                     wasm_i32x4_splat((int32_t)0xffffe000u));
    const v128_t sub = wasm_f32x4_sub(wasm_f32x4_add(x, wasm_f32x4_splat(0.5f)), wasm_f32x4_splat(0.5f));
    v128_t r = wasm_v128_bitselect(sub, nrm, wasm_f32x4_lt(x, wasm_f32x4_splat(0x1p-14f)));
    r = wasm_v128_bitselect(x, r, wasm_f32x4_ne(x, x));
    return wasm_f32x4_mul(r, wasm_f32x4_splat(0x1p112f));
}

/* The softmax of one head's scores, as attn_head: p_j = f16r(e_j * inv) times 2^112, in place. */
QI_INLINE void softmax_f16r(float *scores, uint32_t n, float cap) {
    const float inv = quant_attn_softmax_exp(scores, n, cap);
    const v128_t vi = wasm_f32x4_splat(inv);
    uint32_t j;
    for (j = 0; j + 4 <= n; j += 4)
        wasm_v128_store(scores + j, f16r_x4_weights(wasm_f32x4_mul(wasm_v128_load(scores + j), vi)));
    for (; j < n; j++) scores[j] = wasm_f32x4_extract_lane(f16r_x4_weights(wasm_f32x4_splat(scores[j] * inv)), 0);
}

/* f16r(q) times 2^112 for n floats (n a multiple of 4) */
QI_INLINE void round_queries(float *qh, const float *q, uint32_t n) {
    for (uint32_t i = 0; i + 4 <= n; i += 4) wasm_v128_store(qh + i, f16r_x4_scaled(wasm_v128_load(q + i)));
}

QI_INLINE void attn_head(const float *q, const uint16_t *k, const uint16_t *v, uint64_t st, uint32_t n,
                         const uint32_t D, const bool unrolled, float scale, float cap, float *scores, float *out) {
    float qh[1024] __attribute__((aligned(16)));
    round_queries(qh, q, D);
    /* q . k */
    uint32_t j = 0;
    const v128_t vs = wasm_f32x4_splat(scale);
    for (; j + 4 <= n; j += 4) wasm_v128_store(scores + j, wasm_f32x4_mul(dot4(qh, k + j * st, st, D, unrolled), vs));
    for (; j < n; j++) scores[j] = dot1(qh, k + j * st, D) * scale;
    softmax_f16r(scores, n, cap);
    /* p . v, 32 dimensions at a time */
    uint32_t d = 0;
    for (; d + 32 <= D; d += 32) pv(scores, v, st, n, d, 8, out);
    for (; d < D; d += 8) pv(scores, v, st, n, d, 2, out);
}

/* ------------------------------------------------------------------ grouped heads
 * GQA: the S query heads that share a KV head (S <= 4 at a time; 8 for a
 * pair of tokens: quant_attn_pair_f16) read each
 * cache value once and convert it once, for all S of them, in both passes.
 * Per head every value is computed exactly as attn_head computes it (the same
 * f32 and f64 operations in the same order: one accumulator over the dimensions,
 * hsum4, the softmax of each head in its own row of scores, p . v in order of
 * j), so the bits do not depend on how heads are grouped. */

/* q.k of cache rows k and k + st (NR = 2) or k alone (NR = 1) for S heads
 * (queries qh + g * D, scaled by 2^112): sc[g * ss + i] = dot * scale. ANCHOR
 * (D unrolled): an OR of every running sum goes to qi_sink after each step, so
 * Cranelift computes them all there (a real loop does so at its back edge). */
#define GDOT_STEP(d)                                                                      \
    do {                                                                                  \
        v128_t lo[2], hi[2];                                                              \
        QI_UNROLL for (int i = 0; i < NR; i++) {                                          \
            const v128_t h = wasm_v128_load(k + i * st + (d));                            \
            lo[i] = h2f_lo(h), hi[i] = h2f_hi(h);                                         \
        }                                                                                 \
        QI_UNROLL for (int g = 0; g < S; g++) {                                           \
            const v128_t q0 = wasm_v128_load(qh + g * D + (d)), q1 = wasm_v128_load(qh + g * D + (d) + 4); \
            QI_UNROLL for (int i = 0; i < NR; i++) {                                      \
                a[g * NR + i] = exact_madd(a[g * NR + i], q0, lo[i]);   \
                a[g * NR + i] = exact_madd(a[g * NR + i], q1, hi[i]);   \
            }                                                                             \
        }                                                                                 \
        if (ANCHOR) {                                                                     \
            v128_t all = a[0];                                                            \
            QI_UNROLL for (int i = 1; i < S * NR; i++) all = wasm_v128_or(all, a[i]);     \
            QI_ANCHOR(all);                                                               \
        }                                                                                 \
    } while (0)
QI_INLINE void gdot(const float *qh, const int S, const uint16_t *k, uint64_t st, const int NR, const uint32_t D,
                    const bool unrolled, float scale, float *sc, uint64_t ss) {
    v128_t a[8];
    QI_UNROLL for (int i = 0; i < 8; i++) a[i] = wasm_f32x4_splat(0);
    if (unrolled) {
        const bool ANCHOR = true;
        QI_UNROLL for (uint32_t d = 0; d < D; d += 8) GDOT_STEP(d);
    } else {
        const bool ANCHOR = false;
        for (uint32_t d = 0; d < D; d += 8) GDOT_STEP(d);
    }
    const int n = S * NR;
    float s[8]; /* (sums past S * NR are zero: reduced, never stored) */
    wasm_v128_store(s, wasm_f32x4_mul(hsum4x4(a[0], a[1], a[2], a[3]), wasm_f32x4_splat(scale)));
    if (n > 4) wasm_v128_store(s + 4, wasm_f32x4_mul(hsum4x4(a[4], a[5], a[6], a[7]), wasm_f32x4_splat(scale)));
    QI_UNROLL for (int g = 0; g < S; g++)
        QI_UNROLL for (int i = 0; i < NR; i++) sc[g * ss + i] = s[g * NR + i];
}

/* out_g[d0 .. + 4W) = sum over j of p_gj v_j[d0 ..] for S heads (p_gj at
 * ps[g * ss + j], times 2^112), accumulated in order j = 0, 1, .., where out_g
 * is out + g * D, or for a pair of queries (out1 set: heads g >= S / 2 are the
 * second query's) out1 + (g - S / 2) * D. `more`: the sums go on from out_g's
 * values (a pair's last row, which only its second query sees) instead of 0. */
QI_INLINE float *gpv_out(float *out, float *out1, const int S, int g, const uint32_t D) {
    return out1 && g >= S / 2 ? out1 + (g - S / 2) * D : out + g * D;
}
QI_INLINE void gpv(const float *ps, uint64_t ss, const int S, const uint16_t *v, uint64_t st, uint32_t n, uint32_t d0,
                   const int W, const uint32_t D, float *out, float *out1, const bool more) {
    v128_t acc[8][4];
    QI_UNROLL for (int g = 0; g < S; g++)
        QI_UNROLL for (int i = 0; i < W; i++)
            acc[g][i] = more ? wasm_v128_load(gpv_out(out, out1, S, g, D) + d0 + 4 * i) : wasm_f32x4_splat(0);
#define GPV_ROW(vr, P_OF_G)                                                                             \
    do {                                                                                                \
        v128_t x[4];                                                                                    \
        if (W == 1) x[0] = h2f_lo(wasm_v128_load64_zero(vr)); /* (four halves: no read past d0 + 4) */  \
        else                                                                                            \
            QI_UNROLL for (int i = 0; i < W; i += 2) {                                                  \
                const v128_t h = wasm_v128_load((vr) + 4 * i);                                          \
                x[i] = h2f_lo(h), x[i + 1] = h2f_hi(h);                                                 \
            }                                                                                           \
        QI_UNROLL for (int g = 0; g < S; g++) {                                                         \
            const v128_t p = P_OF_G;                                                                    \
            QI_UNROLL for (int i = 0; i < W; i++) acc[g][i] = exact_madd(acc[g][i], p, x[i]); \
        }                                                                                               \
    } while (0)
    uint32_t j = 0;
    /* four rows at a time: each head's four weights in one load, splat lane by lane */
    for (; j + 4 <= n; j += 4) {
        v128_t P[8];
        QI_UNROLL for (int g = 0; g < S; g++) P[g] = wasm_v128_load(ps + g * ss + j);
        const uint16_t *vr = v + j * st + d0;
        GPV_ROW(vr, wasm_i32x4_shuffle(P[g], P[g], 0, 0, 0, 0));
        GPV_ROW(vr + st, wasm_i32x4_shuffle(P[g], P[g], 1, 1, 1, 1));
        GPV_ROW(vr + 2 * st, wasm_i32x4_shuffle(P[g], P[g], 2, 2, 2, 2));
        GPV_ROW(vr + 3 * st, wasm_i32x4_shuffle(P[g], P[g], 3, 3, 3, 3));
    }
    for (; j < n; j++) GPV_ROW(v + j * st + d0, wasm_v128_load32_splat(ps + g * ss + j));
#undef GPV_ROW
    QI_UNROLL for (int g = 0; g < S; g++)
        QI_UNROLL for (int i = 0; i < W; i++) wasm_v128_store(gpv_out(out, out1, S, g, D) + d0 + 4 * i, acc[g][i]);
}

/* q . k for positions [j0, j1) of S (<= 8) heads, their queries rounded (qh + g * D):
 * two cache rows at a time up to four heads, one row for more (2 S accumulators,
 * or S, fit the registers) */
QI_INLINE void qk_rows(const float *qh, const int S, const uint16_t *k, uint64_t st, uint32_t j0, uint32_t j1,
                       const uint32_t D, const bool unrolled, float scale, float *scores, uint64_t ss) {
    const int NR = S <= 4 ? 2 : 1;
    uint32_t j = j0;
    for (; j + NR <= j1; j += NR) gdot(qh, S, k + j * st, st, NR, D, unrolled, scale, scores + j, ss);
    for (; j < j1; j++) gdot(qh, S, k + j * st, st, 1, D, unrolled, scale, scores + j, ss);
}

/* q . k for positions [j0, j1) of S heads (queries q + g * D, not yet rounded) */
QI_INLINE void attn_qk(const float *q, const int S, const uint16_t *k, uint64_t st, uint32_t j0, uint32_t j1,
                       const uint32_t D, const bool unrolled, float scale, float *scores, uint64_t ss) {
    float qh[4 * 1024] __attribute__((aligned(16)));
    round_queries(qh, q, (uint32_t)S * D);
    qk_rows(qh, S, k, st, j0, j1, D, unrolled, scale, scores, ss);
}

/* p . v for dimensions [d0, d1) (multiples of 8) of S (<= 8) heads: as many
 * dimensions per pass as keep the S accumulators of each in registers (gpv) */
QI_INLINE void attn_pv(const float *scores, uint64_t ss, const int S, const uint16_t *v, uint64_t st, uint32_t n,
                       uint32_t d0, uint32_t d1, const uint32_t D, float *out, float *out1, const bool more) {
    uint32_t d = d0;
    if (S <= 3) /* (S = 3: 12 accumulators; their chains hide the fused adds' latency: 19.9 -> 16.5 ns per row) */
        for (; d + 16 <= d1; d += 16) gpv(scores, ss, S, v, st, n, d, 4, D, out, out1, more);
    if (S <= 6)
        for (; d < d1; d += 8) gpv(scores, ss, S, v, st, n, d, 2, D, out, out1, more);
    for (; d < d1; d += 4) gpv(scores, ss, S, v, st, n, d, 1, D, out, out1, more);
}

/* Two queries of one sequence, the second one position later (a prompt's
 * consecutive tokens), nh (<= 4) heads each: the first sees cache rows [0, n0),
 * the second [0, n0 + 1). Rows [0, n0) are read and converted once for all
 * 2 nh heads; row n0 then goes to the second query's heads alone, its p . v
 * sums going on from where the shared rows left them. Every value as attn_qk,
 * the softmax and attn_pv compute it for each query alone. */
QI_INLINE void attn_pair(const float *q0, const float *q1, const int nh, const uint16_t *k, const uint16_t *v,
                         uint64_t st, uint32_t n0, const uint32_t D, const bool unrolled, float scale, float cap,
                         float *scores, uint64_t ss, float *out0, float *out1) {
    float qh[8 * 1024] __attribute__((aligned(16)));
    round_queries(qh, q0, (uint32_t)nh * D);
    round_queries(qh + nh * D, q1, (uint32_t)nh * D);
    float *sc1 = scores + nh * ss;
    qk_rows(qh, 2 * nh, k, st, 0, n0, D, unrolled, scale, scores, ss);
    qk_rows(qh + nh * D, nh, k, st, n0, n0 + 1, D, unrolled, scale, sc1, ss);
    for (int g = 0; g < nh; g++) {
        softmax_f16r(scores + g * ss, n0, cap);
        softmax_f16r(sc1 + g * ss, n0 + 1, cap);
    }
    attn_pv(scores, ss, 2 * nh, v, st, n0, 0, D, D, out0, out1, false);
    attn_pv(sc1 + n0, ss, nh, v + n0 * st, st, 1, 0, D, D, out1, NULL, true);
}

/* S (1..4) and D (64, 128 or any multiple of 8) as compile-time constants where they help */
#define ATTN_DISPATCH(CALL)                                    \
    do {                                                       \
        switch (nh) {                                          \
        case 1: ATTN_D(CALL, 1); break;                        \
        case 2: ATTN_D(CALL, 2); break;                        \
        case 3: ATTN_D(CALL, 3); break;                        \
        default: ATTN_D(CALL, 4); break;                       \
        }                                                      \
    } while (0)
#define ATTN_D(CALL, S)                                        \
    do {                                                       \
        if (D == 64) CALL(S, 64, true);                        \
        else if (D == 128) CALL(S, 128, true);                 \
        else CALL(S, D, false);                                \
    } while (0)

void quant_attn_qk_f16(const float *q, uint32_t nh, const uint16_t *k, uint64_t kv_stride, uint32_t j0, uint32_t j1,
                       uint32_t D, float scale, float *scores, uint64_t ss) {
    for (; nh > 4; nh -= 4, q += 4 * D, scores += 4 * ss) quant_attn_qk_f16(q, 4, k, kv_stride, j0, j1, D, scale, scores, ss);
#define QK(S, DD, U) attn_qk(q, S, k, kv_stride, j0, j1, DD, U, scale, scores, ss)
    ATTN_DISPATCH(QK);
#undef QK
}

void quant_attn_softmax_f16(float *scores, uint32_t n, float cap) { softmax_f16r(scores, n, cap); }

void quant_attn_pv_f16(const float *p, uint64_t ss, uint32_t nh, const uint16_t *v, uint64_t kv_stride, uint32_t n,
                       uint32_t d0, uint32_t d1, uint32_t D, float *out) {
    for (; nh > 4; nh -= 4, p += 4 * ss, out += 4 * D) quant_attn_pv_f16(p, ss, 4, v, kv_stride, n, d0, d1, D, out);
#define PV(S, DD, U) attn_pv(p, ss, S, v, kv_stride, n, d0, d1, DD, out, NULL, false)
    ATTN_DISPATCH(PV);
#undef PV
}

void quant_attn_heads_f16(const float *q, uint32_t nh, const uint16_t *k, const uint16_t *v, uint64_t kv_stride,
                          uint32_t n, uint32_t D, float scale, float cap, float *scores, uint64_t ss, float *out) {
    if (nh == 1) { /* one head: four cache rows at a time (attn_head) */
        quant_attn_head_f16(q, k, v, kv_stride, n, D, scale, cap, scores, out);
        return;
    }
    for (; nh > 4; nh -= 4, q += 4 * D, out += 4 * D) /* scores rows reused */
        quant_attn_heads_f16(q, 4, k, v, kv_stride, n, D, scale, cap, scores, ss, out);
    quant_attn_qk_f16(q, nh, k, kv_stride, 0, n, D, scale, scores, ss);
    for (uint32_t g = 0; g < nh; g++) softmax_f16r(scores + g * ss, n, cap);
    quant_attn_pv_f16(scores, ss, nh, v, kv_stride, n, 0, D, D, out);
}

void quant_attn_head_f16(const float *q, const uint16_t *k, const uint16_t *v, uint64_t kv_stride, uint32_t n,
                         uint32_t D, float scale, float cap, float *scores, float *out) {
    if (D == 64) attn_head(q, k, v, kv_stride, n, 64, true, scale, cap, scores, out);
    else if (D == 128) attn_head(q, k, v, kv_stride, n, 128, true, scale, cap, scores, out);
    else attn_head(q, k, v, kv_stride, n, D, false, scale, cap, scores, out);
}

void quant_attn_pair_f16(const float *q0, const float *q1, uint32_t nh, const uint16_t *k, const uint16_t *v,
                         uint64_t kv_stride, uint32_t n0, uint32_t D, float scale, float cap, float *scores, uint64_t ss,
                         float *out0, float *out1) {
#define PAIR(S, DD, U) attn_pair(q0, q1, S, k, v, kv_stride, n0, DD, U, scale, cap, scores, ss, out0, out1)
    ATTN_DISPATCH(PAIR);
#undef PAIR
}
