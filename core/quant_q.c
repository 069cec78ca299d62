/* quant_q.c: matrix kernels for the 32-element block types Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0 and Q8_1, against Q8_0 / Q8_1 activations (quant_act.c).
 *
 * Per block and token, as ggml's vec_dot_*_q8_*:
 *   Q4_0, Q5_0, Q8_0, Q8_1:  d_w * d_x * sum(q_w * q_x)
 *   Q4_1, Q5_1:              d_w * d_x * sum(q_w * q_x) + m_w * s_x
 * The integer sums are exact (i16 lanes, i32x4.dot_i16x8_s). Several tokens:
 * one row at a time, each block's weights widened once for up to four
 * tokens. One token: four rows at a time, sharing the activation loads.
 * Either way the per-block float work of four results shares one vector. */
#include "quant_impl.h"

/* The fifth bits of 32 elements (bit j of qh) as 0x10 in byte lanes. */
QI_INLINE void qh_bits(const uint8_t *p, v128_t *lo, v128_t *hi) {
    const v128_t v = wasm_i32x4_splat((int32_t)qi_ld32(p));
    const v128_t bits = wasm_i64x2_splat(0x8040201008040201ll);
    const v128_t l = wasm_i8x16_shuffle(v, v, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const v128_t h = wasm_i8x16_shuffle(v, v, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const v128_t x10 = wasm_i8x16_splat(0x10);
    *lo = wasm_v128_and(wasm_i8x16_eq(wasm_v128_and(l, bits), bits), x10);
    *hi = wasm_v128_and(wasm_i8x16_eq(wasm_v128_and(h, bits), bits), x10);
}

/* Block b of a row -> 32 weights as four i16x8 (elements 0..31 in order),
 * scale d and (Q4_1/Q5_1) min m. */
QI_INLINE void decode(const uint32_t type, const uint8_t *row, uint64_t b, v128_t w[4], float *d, float *m) {
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    v128_t lo, hi;
    bool sign = true;
    switch (type) {
    case GGML_TYPE_Q4_0: {
        const uint8_t *p = row + 18 * b;
        const v128_t q = wasm_v128_load(p + 2), o = wasm_i8x16_splat(8);
        lo = wasm_i8x16_sub(wasm_v128_and(q, m4), o);
        hi = wasm_i8x16_sub(wasm_u8x16_shr(q, 4), o);
        *d = qi_h2f_at(p);
        break;
    }
    case GGML_TYPE_Q4_1: {
        const uint8_t *p = row + 20 * b;
        const v128_t q = wasm_v128_load(p + 4);
        lo = wasm_v128_and(q, m4);
        hi = wasm_u8x16_shr(q, 4);
        const uint32_t dm = qi_ld32(p);
        *d = qi_h2f((uint16_t)dm), *m = qi_h2f((uint16_t)(dm >> 16));
        sign = false;
        break;
    }
    case GGML_TYPE_Q5_0: {
        const uint8_t *p = row + 22 * b;
        const v128_t q = wasm_v128_load(p + 6), o = wasm_i8x16_splat(16);
        v128_t hl, hh;
        qh_bits(p + 2, &hl, &hh);
        lo = wasm_i8x16_sub(wasm_v128_or(wasm_v128_and(q, m4), hl), o);
        hi = wasm_i8x16_sub(wasm_v128_or(wasm_u8x16_shr(q, 4), hh), o);
        *d = qi_h2f_at(p);
        break;
    }
    case GGML_TYPE_Q5_1: {
        const uint8_t *p = row + 24 * b;
        const v128_t q = wasm_v128_load(p + 8);
        v128_t hl, hh;
        qh_bits(p + 4, &hl, &hh);
        lo = wasm_v128_or(wasm_v128_and(q, m4), hl);
        hi = wasm_v128_or(wasm_u8x16_shr(q, 4), hh);
        const uint32_t dm = qi_ld32(p);
        *d = qi_h2f((uint16_t)dm), *m = qi_h2f((uint16_t)(dm >> 16));
        sign = false;
        break;
    }
    default: { /* Q8_0 (34-byte blocks) and Q8_1 (36) */
        const uint64_t bb = type == GGML_TYPE_Q8_0 ? 34 : 36;
        const uint8_t *p = row + bb * b;
        lo = wasm_v128_load(p + bb - 32);
        hi = wasm_v128_load(p + bb - 16);
        *d = qi_h2f_at(p);
        break;
    }
    }
    if (sign) {
        w[0] = wasm_i16x8_extend_low_i8x16(lo), w[1] = wasm_i16x8_extend_high_i8x16(lo);
        w[2] = wasm_i16x8_extend_low_i8x16(hi), w[3] = wasm_i16x8_extend_high_i8x16(hi);
    } else {
        w[0] = wasm_u16x8_extend_low_u8x16(lo), w[1] = wasm_u16x8_extend_high_u8x16(lo);
        w[2] = wasm_u16x8_extend_low_u8x16(hi), w[3] = wasm_u16x8_extend_high_u8x16(hi);
    }
}

QI_INLINE v128_t dot32(const v128_t w[4], const int16_t *y) {
    const v128_t a = wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[0], wasm_v128_load(y)),
                                    wasm_i32x4_dot_i16x8(w[1], wasm_v128_load(y + 8)));
    const v128_t b = wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[2], wasm_v128_load(y + 16)),
                                    wasm_i32x4_dot_i16x8(w[3], wasm_v128_load(y + 24)));
    return wasm_i32x4_add(a, b);
}

/* The f16 at p0..p3 as one f32x4 (lanes 0..3). */
QI_INLINE v128_t h2f_gather4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    v128_t v = wasm_i32x4_splat(0);
    v = wasm_v128_load16_lane(p0, v, 0);
    v = wasm_v128_load16_lane(p1, v, 2);
    v = wasm_v128_load16_lane(p2, v, 4);
    v = wasm_v128_load16_lane(p3, v, 6);
    return qi_h2f_x4(v);
}

QI_INLINE uint64_t block_bytes(const uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0: return 18;
    case GGML_TYPE_Q4_1: return 20;
    case GGML_TYPE_Q5_0: return 22;
    case GGML_TYPE_Q5_1: return 24;
    case GGML_TYPE_Q8_0: return 34;
    default: return 36;
    }
}

/* [sum(a), sum(b), sum(c), sum(d)] of four i32x4 (exact). */
QI_INLINE v128_t reduce4(v128_t a, v128_t b, v128_t c, v128_t d) {
    const v128_t ab = wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 1, 4, 5), wasm_i32x4_shuffle(a, b, 2, 3, 6, 7));
    const v128_t cd = wasm_i32x4_add(wasm_i32x4_shuffle(c, d, 0, 1, 4, 5), wasm_i32x4_shuffle(c, d, 2, 3, 6, 7));
    return wasm_i32x4_add(wasm_i32x4_shuffle(ab, cd, 0, 2, 4, 6), wasm_i32x4_shuffle(ab, cd, 1, 3, 5, 7));
}

/* Rows w .. w+(NR-1)*rb for NT tokens. Every (row, token) result is, in
 * every path below, the same sequence of f32 operations:
 *   acc += f32(block integer sum) * (d_w * d_x);  macc += m_w * s_x;  y = acc + macc
 * (integer sums exact), so results do not depend on how rows and tokens are
 * grouped. The float work is done for four rows (NR = 4) or four tokens
 * (NT > 1, with the tokens' scales transposed by quant_act_quantize into
 * `gs`: d[nb][4] then, for Q8_1, s[nb][4]) in the lanes of one vector. */
QI_INLINE void rows_q(const uint32_t type, const uint8_t *w, uint64_t rb, uint64_t K, const uint8_t *x,
                      uint64_t xrb, const int NR, const int NT, float *out, uint64_t ys, const float *gs) {
    const bool has_m = type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1;
    const uint64_t ds_step = has_m || type == GGML_TYPE_Q8_1 ? 2 : 1; /* Q8_1 activations: (d, s) pairs */
    const uint64_t nb = K / 32, bb = block_bytes(type);
    const int16_t *yq[4];
    const float *yd[4]; /* d[nb], or (d, s)[nb] for Q8_1 */
    QI_UNROLL
    for (int t = 0; t < NT; t++) {
        yq[t] = (const int16_t *)(x + t * xrb);
        yd[t] = (const float *)(x + t * xrb + 2 * K);
    }
    const v128_t zero = wasm_i32x4_splat(0);
    v128_t acc = wasm_f32x4_splat(0), macc = acc; /* lanes: rows (NR = 4) or tokens (NT > 1) */
    float acc1 = 0, macc1 = 0;                    /* NR = NT = 1 */
    for (uint64_t b = 0; b < nb; b++) {
        if (NR == 1 && NT == 1) {
            v128_t wv[4];
            float d, m = 0;
            decode(type, w, b, wv, &d, &m);
            const float is = (float)qi_hsum_i32(dot32(wv, yq[0] + 32 * b));
            acc1 += is * (d * yd[0][ds_step * b]);
            if (has_m) macc1 += m * yd[0][2 * b + 1];
        } else if (NR == 1) { /* one row, two to four tokens */
            v128_t wv[4], is[4];
            float d, m = 0;
            decode(type, w, b, wv, &d, &m);
            QI_UNROLL
            for (int t = 0; t < 4; t++) is[t] = t < NT ? dot32(wv, yq[t] + 32 * b) : zero;
            const v128_t dxd = wasm_f32x4_mul(wasm_f32x4_splat(d), wasm_v128_load(gs + 4 * b));
            acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(reduce4(is[0], is[1], is[2], is[3])), dxd));
            if (has_m) macc = wasm_f32x4_add(macc, wasm_f32x4_mul(wasm_f32x4_splat(m), wasm_v128_load(gs + 4 * nb + 4 * b)));
        } else { /* four rows, one token: activations and scales loaded once */
            const uint8_t *p = w + bb * b;
            v128_t dv;
            if (has_m) { /* (d, m) of four rows in one load each */
                v128_t dm = wasm_v128_load32_lane(p, zero, 0);
                dm = wasm_v128_load32_lane(p + rb, dm, 1);
                dm = wasm_v128_load32_lane(p + 2 * rb, dm, 2);
                dm = wasm_v128_load32_lane(p + 3 * rb, dm, 3);
                const v128_t ds = wasm_v128_load64_zero(yd[0] + 2 * b);
                dv = wasm_f32x4_mul(qi_h2f_x4(wasm_v128_and(dm, wasm_i32x4_splat(0xffff))), wasm_i32x4_shuffle(ds, ds, 0, 0, 0, 0));
                macc = wasm_f32x4_add(macc, wasm_f32x4_mul(qi_h2f_x4(wasm_u32x4_shr(dm, 16)), wasm_i32x4_shuffle(ds, ds, 1, 1, 1, 1)));
            } else {
                dv = wasm_f32x4_mul(h2f_gather4(p, p + rb, p + 2 * rb, p + 3 * rb), wasm_f32x4_splat(yd[0][ds_step * b]));
            }
            const int16_t *yy = yq[0] + 32 * b;
            const v128_t y0 = wasm_v128_load(yy), y1 = wasm_v128_load(yy + 8);
            const v128_t y2 = wasm_v128_load(yy + 16), y3 = wasm_v128_load(yy + 24);
            v128_t is[4];
            QI_UNROLL
            for (int r = 0; r < 4; r++) {
                v128_t wv[4];
                float d, m;
                decode(type, w + r * rb, b, wv, &d, &m);
                is[r] = wasm_i32x4_add(
                    wasm_i32x4_add(wasm_i32x4_dot_i16x8(wv[0], y0), wasm_i32x4_dot_i16x8(wv[1], y1)),
                    wasm_i32x4_add(wasm_i32x4_dot_i16x8(wv[2], y2), wasm_i32x4_dot_i16x8(wv[3], y3)));
            }
            acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(reduce4(is[0], is[1], is[2], is[3])), dv));
        }
    }
    if (NR == 1 && NT == 1) {
        out[0] = acc1 + macc1;
    } else {
        float a[4], m[4];
        wasm_v128_store(a, acc);
        wasm_v128_store(m, macc);
        QI_UNROLL
        for (int i = 0; i < 4; i++)
            if (i < NR * NT) out[NR > 1 ? i : i * ys] = a[i] + m[i];
    }
}

#define ROWS_Q4_0(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_q(GGML_TYPE_Q4_0, w, rb, K, x, xrb, NR, NT, out, ys, (const float *)(G))
#define ROWS_Q4_1(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_q(GGML_TYPE_Q4_1, w, rb, K, x, xrb, NR, NT, out, ys, (const float *)(G))
#define ROWS_Q5_0(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_q(GGML_TYPE_Q5_0, w, rb, K, x, xrb, NR, NT, out, ys, (const float *)(G))
#define ROWS_Q5_1(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_q(GGML_TYPE_Q5_1, w, rb, K, x, xrb, NR, NT, out, ys, (const float *)(G))
#define ROWS_Q8_0(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_q(GGML_TYPE_Q8_0, w, rb, K, x, xrb, NR, NT, out, ys, (const float *)(G))
#define ROWS_Q8_1(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_q(GGML_TYPE_Q8_1, w, rb, K, x, xrb, NR, NT, out, ys, (const float *)(G))
QI_DEFINE_MM(quant_mm_q4_0, ROWS_Q4_0, ACT_Q8_0, 4)
QI_DEFINE_MM(quant_mm_q4_1, ROWS_Q4_1, ACT_Q8_1, 4)
QI_DEFINE_MM(quant_mm_q5_0, ROWS_Q5_0, ACT_Q8_0, 4)
QI_DEFINE_MM(quant_mm_q5_1, ROWS_Q5_1, ACT_Q8_1, 4)
QI_DEFINE_MM(quant_mm_q8_0, ROWS_Q8_0, ACT_Q8_0, 4)
QI_DEFINE_MM(quant_mm_q8_1, ROWS_Q8_1, ACT_Q8_1, 4)
