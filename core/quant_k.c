/* quant_k.c: matrix kernels for Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K
 * weights against Q8_K activations (quant_act.c), per super-block of 256
 * and token, as ggml's vec_dot_*_q8_K:
 *   d * d_x * sum_j sc_j * sum(q_w * q_x)  [- dmin * d_x * sum_j m_j * bsum_j]
 * Weights are widened to i16 and multiplied by their sub-block scale once
 * (|q * sc| <= 4096 for every type, so i16 holds it), then dotted with the
 * i16 activations of up to four tokens (one token: four rows share the
 * activation loads, and Q4_K/Q5_K scale the i32 sums instead); integer sums
 * over a super-block are exact in i32 (|sum| < 2^27), and float enters once
 * per super-block. */
#include "quant_impl.h"

typedef struct {
    float d, dmin;
    v128_t sc[2];   /* i16 scales: per 16 elements (Q2_K, Q3_K, Q6_K: 16 in two vectors), per 32 (Q4_K, Q5_K: sc[0]) */
    v128_t mins[2]; /* i16 mins: Q2_K 16 (per 16), Q4_K/Q5_K 8 (per 32, mins[0]) */
    v128_t hb[2];   /* Q3_K hmask / Q5_K qh, bytes 0..31 */
    v128_t sc32[2]; /* Q4_K/Q5_K: the 8 scales as i32 (one token: scale the i32 sums instead) */
} Super;

/* 12 bytes at p into lanes 0..11 (reads nothing past p + 12). */
QI_INLINE v128_t load12(const uint8_t *p) {
    return wasm_v128_load32_lane(p + 8, wasm_v128_load64_zero(p), 2);
}

/* Scales and mins of one super-block, unpacked with SIMD (the layouts are in
 * quant_impl.h; scales_q3k / scale_min_k4 there are the scalar versions). */
QI_INLINE void super_init(const uint32_t type, const uint8_t *p, Super *s) {
    const v128_t m4 = wasm_i8x16_splat(0x0f), zero = wasm_i32x4_splat(0);
    switch (type) {
    case GGML_TYPE_Q2_K: {
        const v128_t v = wasm_v128_load(p), sc = wasm_v128_and(v, m4), m = wasm_u8x16_shr(v, 4);
        s->sc[0] = wasm_u16x8_extend_low_u8x16(sc), s->sc[1] = wasm_u16x8_extend_high_u8x16(sc);
        s->mins[0] = wasm_u16x8_extend_low_u8x16(m), s->mins[1] = wasm_u16x8_extend_high_u8x16(m);
        s->d = qi_h2f_at(p + 80), s->dmin = qi_h2f_at(p + 82);
        break;
    }
    case GGML_TYPE_Q3_K: {
        /* low 4 bits: bytes 0..7, low then high nibbles; high 2 bits of
         * scale j: byte 8 + j % 4, bits 2 * (j / 4) */
        const v128_t v = load12(p + 96);
        const v128_t lo = wasm_i8x16_shuffle(wasm_v128_and(v, m4), wasm_u8x16_shr(v, 4),
                                             0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        const v128_t h01 = wasm_i8x16_shuffle(v, wasm_u8x16_shr(v, 2), 8, 9, 10, 11, 24, 25, 26, 27,
                                              8, 9, 10, 11, 24, 25, 26, 27);
        const v128_t h23 = wasm_i8x16_shuffle(wasm_u8x16_shr(v, 4), wasm_u8x16_shr(v, 6), 8, 9, 10, 11, 24, 25, 26, 27,
                                              8, 9, 10, 11, 24, 25, 26, 27);
        const v128_t hi = wasm_i8x16_shuffle(h01, h23, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        const v128_t sc = wasm_i8x16_sub(wasm_v128_or(lo, wasm_v128_and(wasm_i8x16_shl(hi, 4), wasm_i8x16_splat(0x30))),
                                         wasm_i8x16_splat(32));
        s->sc[0] = wasm_i16x8_extend_low_i8x16(sc), s->sc[1] = wasm_i16x8_extend_high_i8x16(sc);
        s->hb[0] = wasm_v128_load(p), s->hb[1] = wasm_v128_load(p + 16);
        s->d = qi_h2f_at(p + 108), s->dmin = 0;
        break;
    }
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: {
        /* j < 4: sc = q[j] & 63, m = q[j+4] & 63;
         * j >= 4: sc = (q[j+4] & 15) | (q[j-4] >> 6) << 4, m = (q[j+4] >> 4) | (q[j] >> 6) << 4 */
        const v128_t v = load12(p + 4);
        const v128_t lo63 = wasm_v128_and(v, wasm_i8x16_splat(63));
        const v128_t hi2 = wasm_v128_and(wasm_u8x16_shr(v, 2), wasm_i8x16_splat(0x30));
        const v128_t sc = wasm_v128_or(
            wasm_i8x16_shuffle(lo63, wasm_v128_and(v, m4), 0, 1, 2, 3, 24, 25, 26, 27, 0, 0, 0, 0, 0, 0, 0, 0),
            wasm_i8x16_shuffle(zero, hi2, 0, 0, 0, 0, 16, 17, 18, 19, 0, 0, 0, 0, 0, 0, 0, 0));
        const v128_t m = wasm_v128_or(
            wasm_i8x16_shuffle(lo63, wasm_u8x16_shr(v, 4), 4, 5, 6, 7, 24, 25, 26, 27, 0, 0, 0, 0, 0, 0, 0, 0),
            wasm_i8x16_shuffle(zero, hi2, 0, 0, 0, 0, 20, 21, 22, 23, 0, 0, 0, 0, 0, 0, 0, 0));
        s->sc[0] = wasm_u16x8_extend_low_u8x16(sc);
        s->sc32[0] = wasm_u32x4_extend_low_u16x8(s->sc[0]), s->sc32[1] = wasm_u32x4_extend_high_u16x8(s->sc[0]);
        s->mins[0] = wasm_u16x8_extend_low_u8x16(m);
        if (type == GGML_TYPE_Q5_K) s->hb[0] = wasm_v128_load(p + 16), s->hb[1] = wasm_v128_load(p + 32);
        s->d = qi_h2f_at(p), s->dmin = qi_h2f_at(p + 2);
        break;
    }
    case GGML_TYPE_Q6_K: {
        const v128_t v = wasm_v128_load(p + 192);
        s->sc[0] = wasm_i16x8_extend_low_i8x16(v), s->sc[1] = wasm_i16x8_extend_high_i8x16(v);
        s->d = qi_h2f_at(p + 208), s->dmin = 0;
        break;
    }
    default: /* Q8_K */
        s->d = qi_ldf(p);
        s->dmin = 0;
        break;
    }
}

/* Lane j (0..7, a constant once unrolled) of an i16x8 in every lane. */
QI_INLINE v128_t splat16(v128_t v, const int j) {
    switch (j) {
    case 0: return wasm_i16x8_shuffle(v, v, 0, 0, 0, 0, 0, 0, 0, 0);
    case 1: return wasm_i16x8_shuffle(v, v, 1, 1, 1, 1, 1, 1, 1, 1);
    case 2: return wasm_i16x8_shuffle(v, v, 2, 2, 2, 2, 2, 2, 2, 2);
    case 3: return wasm_i16x8_shuffle(v, v, 3, 3, 3, 3, 3, 3, 3, 3);
    case 4: return wasm_i16x8_shuffle(v, v, 4, 4, 4, 4, 4, 4, 4, 4);
    case 5: return wasm_i16x8_shuffle(v, v, 5, 5, 5, 5, 5, 5, 5, 5);
    case 6: return wasm_i16x8_shuffle(v, v, 6, 6, 6, 6, 6, 6, 6, 6);
    default: return wasm_i16x8_shuffle(v, v, 7, 7, 7, 7, 7, 7, 7, 7);
    }
}

/* Elements 32g..32g+31 of a super-block as four i16x8, scales applied
 * (for Q4_K / Q5_K only if `scale`: their one scale per group can multiply
 * the i32 sums instead, see gscale). */
QI_INLINE void group(const uint32_t type, const uint8_t *p, const Super *s, const int g, v128_t w[4], const bool scale) {
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    v128_t a, b;            /* elements 0..15 and 16..31 of the group, i8 */
    v128_t sa, sb;          /* their scales, i16 splats */
    switch (type) {
    case GGML_TYPE_Q2_K: {
        const uint8_t *qs = p + 16 + 32 * (g >> 2);
        const int sh = 2 * (g & 3);
        const v128_t m3 = wasm_i8x16_splat(3);
        a = wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(qs), sh), m3);
        b = wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(qs + 16), sh), m3);
        sa = splat16(s->sc[g >> 2], (2 * g) & 7), sb = splat16(s->sc[g >> 2], (2 * g + 1) & 7);
        break;
    }
    case GGML_TYPE_Q3_K: {
        const uint8_t *qs = p + 32 + 32 * (g >> 2);
        const int sh = 2 * (g & 3);
        const v128_t m3 = wasm_i8x16_splat(3), bit = wasm_i8x16_splat((int8_t)(1 << g)), four = wasm_i8x16_splat(4);
        /* minus 4 where the hmask bit is clear */
        const v128_t ha = wasm_v128_andnot(four, wasm_i8x16_eq(wasm_v128_and(s->hb[0], bit), bit));
        const v128_t hb = wasm_v128_andnot(four, wasm_i8x16_eq(wasm_v128_and(s->hb[1], bit), bit));
        a = wasm_i8x16_sub(wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(qs), sh), m3), ha);
        b = wasm_i8x16_sub(wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(qs + 16), sh), m3), hb);
        sa = splat16(s->sc[g >> 2], (2 * g) & 7), sb = splat16(s->sc[g >> 2], (2 * g + 1) & 7);
        break;
    }
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: {
        const bool five = type == GGML_TYPE_Q5_K;
        const uint8_t *qs = p + (five ? 48 : 16) + 32 * (g >> 1);
        const v128_t qa = wasm_v128_load(qs), qb = wasm_v128_load(qs + 16);
        if (g & 1) a = wasm_u8x16_shr(qa, 4), b = wasm_u8x16_shr(qb, 4);
        else a = wasm_v128_and(qa, m4), b = wasm_v128_and(qb, m4);
        if (five) {
            const v128_t bit = wasm_i8x16_splat((int8_t)(1 << g)), x10 = wasm_i8x16_splat(0x10);
            a = wasm_v128_or(a, wasm_v128_and(wasm_i8x16_eq(wasm_v128_and(s->hb[0], bit), bit), x10));
            b = wasm_v128_or(b, wasm_v128_and(wasm_i8x16_eq(wasm_v128_and(s->hb[1], bit), bit), x10));
        }
        if (!scale) {
            w[0] = wasm_u16x8_extend_low_u8x16(a), w[1] = wasm_u16x8_extend_high_u8x16(a);
            w[2] = wasm_u16x8_extend_low_u8x16(b), w[3] = wasm_u16x8_extend_high_u8x16(b);
            return;
        }
        sa = sb = splat16(s->sc[0], g);
        break;
    }
    case GGML_TYPE_Q6_K: {
        const int h = g >> 2, j = g & 3;
        const uint8_t *ql = p + 64 * h + 32 * (j & 1), *qh = p + 128 + 32 * h;
        v128_t la = wasm_v128_load(ql), lb = wasm_v128_load(ql + 16);
        if (j >> 1) la = wasm_u8x16_shr(la, 4), lb = wasm_u8x16_shr(lb, 4);
        else la = wasm_v128_and(la, m4), lb = wasm_v128_and(lb, m4);
        const v128_t x30 = wasm_i8x16_splat(0x30), o = wasm_i8x16_splat(32);
        v128_t ha = wasm_v128_load(qh), hb = wasm_v128_load(qh + 16);
        /* bits 2j, 2j+1 of qh -> bits 4, 5 */
        if (j == 0) ha = wasm_i8x16_shl(ha, 4), hb = wasm_i8x16_shl(hb, 4);
        if (j == 1) ha = wasm_i8x16_shl(ha, 2), hb = wasm_i8x16_shl(hb, 2);
        if (j == 3) ha = wasm_u8x16_shr(ha, 2), hb = wasm_u8x16_shr(hb, 2);
        a = wasm_i8x16_sub(wasm_v128_or(la, wasm_v128_and(ha, x30)), o);
        b = wasm_i8x16_sub(wasm_v128_or(lb, wasm_v128_and(hb, x30)), o);
        sa = splat16(s->sc[g >> 2], (2 * g) & 7), sb = splat16(s->sc[g >> 2], (2 * g + 1) & 7);
        break;
    }
    default: { /* Q8_K: no sub-block scales */
        w[0] = wasm_i16x8_load8x8(p + 4 + 32 * g), w[1] = wasm_i16x8_load8x8(p + 12 + 32 * g);
        w[2] = wasm_i16x8_load8x8(p + 20 + 32 * g), w[3] = wasm_i16x8_load8x8(p + 28 + 32 * g);
        return;
    }
    }
    w[0] = wasm_i16x8_mul(wasm_i16x8_extend_low_i8x16(a), sa);
    w[1] = wasm_i16x8_mul(wasm_i16x8_extend_high_i8x16(a), sa);
    w[2] = wasm_i16x8_mul(wasm_i16x8_extend_low_i8x16(b), sb);
    w[3] = wasm_i16x8_mul(wasm_i16x8_extend_high_i8x16(b), sb);
}

/* Q4_K / Q5_K scale of group g in every i32 lane. */
QI_INLINE v128_t gscale(const Super *s, const int g) {
    const v128_t v = s->sc32[g >> 2];
    switch (g & 3) {
    case 0: return wasm_i32x4_shuffle(v, v, 0, 0, 0, 0);
    case 1: return wasm_i32x4_shuffle(v, v, 1, 1, 1, 1);
    case 2: return wasm_i32x4_shuffle(v, v, 2, 2, 2, 2);
    default: return wasm_i32x4_shuffle(v, v, 3, 3, 3, 3);
    }
}

QI_INLINE v128_t dot32(const v128_t w[4], const int16_t *y) {
    const v128_t a = wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[0], wasm_v128_load(y)),
                                    wasm_i32x4_dot_i16x8(w[1], wasm_v128_load(y + 8)));
    const v128_t b = wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[2], wasm_v128_load(y + 16)),
                                    wasm_i32x4_dot_i16x8(w[3], wasm_v128_load(y + 24)));
    return wasm_i32x4_add(a, b);
}

QI_INLINE uint64_t kblock_bytes(const uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q2_K: return 84;
    case GGML_TYPE_Q3_K: return 110;
    case GGML_TYPE_Q4_K: return 144;
    case GGML_TYPE_Q5_K: return 176;
    case GGML_TYPE_Q6_K: return 210;
    default: return 292;
    }
}

QI_INLINE void rows_k(const uint32_t type, const uint8_t *w, uint64_t rb, uint64_t K, const uint8_t *x,
                      uint64_t xrb, const int NR, const int NT, float *out, uint64_t ys) {
    const uint64_t nb = K / QK_K, bb = kblock_bytes(type);
    const bool mins16 = type == GGML_TYPE_Q2_K;
    const bool mins32 = type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K;
    const bool late = mins32 && NT == 1; /* one token: scale i32 sums, not i16 weights */
    const int16_t *yq[4], *b16[4], *b32[4];
    const float *yd[4];
    v128_t acc[4][4];
    QI_UNROLL
    for (int t = 0; t < NT; t++) {
        const uint8_t *xr = x + t * xrb;
        yq[t] = (const int16_t *)xr;
        yd[t] = (const float *)(xr + 2 * K);
        b16[t] = (const int16_t *)(yd[t] + nb);
        b32[t] = b16[t] + K / 16;
    }
    QI_UNROLL
    for (int r = 0; r < NR; r++)
        QI_UNROLL
        for (int t = 0; t < NT; t++) acc[r][t] = wasm_f32x4_splat(0);
    for (uint64_t b = 0; b < nb; b++) {
        Super s[4];
        v128_t isum[4][4];
        QI_UNROLL
        for (int r = 0; r < NR; r++) {
            super_init(type, w + r * rb + bb * b, &s[r]);
            QI_UNROLL
            for (int t = 0; t < NT; t++) isum[r][t] = wasm_i32x4_splat(0);
        }
        QI_UNROLL
        for (int g = 0; g < 8; g++) {
            if (NR == 1) { /* weights widened once for up to four tokens */
                v128_t wv[4];
                group(type, w + bb * b, &s[0], g, wv, !late);
                QI_UNROLL
                for (int t = 0; t < NT; t++) {
                    v128_t d = dot32(wv, yq[t] + QK_K * b + 32 * g);
                    if (late) d = wasm_i32x4_mul(d, gscale(&s[0], g));
                    isum[0][t] = wasm_i32x4_add(isum[0][t], d);
                }
            } else { /* activations loaded once for four rows */
                const int16_t *yy = yq[0] + QK_K * b + 32 * g;
                const v128_t y0 = wasm_v128_load(yy), y1 = wasm_v128_load(yy + 8);
                const v128_t y2 = wasm_v128_load(yy + 16), y3 = wasm_v128_load(yy + 24);
                QI_UNROLL
                for (int r = 0; r < NR; r++) {
                    v128_t wv[4];
                    group(type, w + r * rb + bb * b, &s[r], g, wv, !late);
                    v128_t d = wasm_i32x4_add(
                        wasm_i32x4_add(wasm_i32x4_dot_i16x8(wv[0], y0), wasm_i32x4_dot_i16x8(wv[1], y1)),
                        wasm_i32x4_add(wasm_i32x4_dot_i16x8(wv[2], y2), wasm_i32x4_dot_i16x8(wv[3], y3)));
                    if (late) d = wasm_i32x4_mul(d, gscale(&s[r], g));
                    isum[r][0] = wasm_i32x4_add(isum[r][0], d);
                }
            }
        }
        QI_UNROLL
        for (int t = 0; t < NT; t++) {
            const float dy = yd[t][b];
            v128_t bs0 = wasm_i32x4_splat(0), bs1 = bs0;
            if (mins16) bs0 = wasm_v128_load(b16[t] + 16 * b), bs1 = wasm_v128_load(b16[t] + 16 * b + 8);
            if (mins32) bs0 = wasm_v128_load(b32[t] + 8 * b);
            QI_UNROLL
            for (int r = 0; r < NR; r++) {
                acc[r][t] = wasm_f32x4_add(acc[r][t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isum[r][t]), wasm_f32x4_splat(s[r].d * dy)));
                if (mins16 || mins32) {
                    v128_t mi = wasm_i32x4_dot_i16x8(s[r].mins[0], bs0);
                    if (mins16) mi = wasm_i32x4_add(mi, wasm_i32x4_dot_i16x8(s[r].mins[1], bs1));
                    acc[r][t] = wasm_f32x4_sub(acc[r][t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(mi), wasm_f32x4_splat(s[r].dmin * dy)));
                }
            }
        }
    }
    QI_UNROLL
    for (int r = 0; r < NR; r++)
        QI_UNROLL
        for (int t = 0; t < NT; t++) out[t * ys + r] = qi_hsum_f32(acc[r][t]);
}

#define ROWS_Q2_K(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_k(GGML_TYPE_Q2_K, w, rb, K, x, xrb, NR, NT, out, ys)
#define ROWS_Q3_K(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_k(GGML_TYPE_Q3_K, w, rb, K, x, xrb, NR, NT, out, ys)
#define ROWS_Q4_K(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_k(GGML_TYPE_Q4_K, w, rb, K, x, xrb, NR, NT, out, ys)
#define ROWS_Q5_K(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_k(GGML_TYPE_Q5_K, w, rb, K, x, xrb, NR, NT, out, ys)
#define ROWS_Q6_K(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_k(GGML_TYPE_Q6_K, w, rb, K, x, xrb, NR, NT, out, ys)
#define ROWS_Q8_K(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_k(GGML_TYPE_Q8_K, w, rb, K, x, xrb, NR, NT, out, ys)
QI_DEFINE_MM(quant_mm_q2_K, ROWS_Q2_K, ACT_Q8_K, 4)
QI_DEFINE_MM(quant_mm_q3_K, ROWS_Q3_K, ACT_Q8_K, 4)
QI_DEFINE_MM(quant_mm_q4_K, ROWS_Q4_K, ACT_Q8_K, 4)
QI_DEFINE_MM(quant_mm_q5_K, ROWS_Q5_K, ACT_Q8_K, 4)
QI_DEFINE_MM(quant_mm_q6_K, ROWS_Q6_K, ACT_Q8_K, 4)
QI_DEFINE_MM(quant_mm_q8_K, ROWS_Q8_K, ACT_Q8_K, 4)
