/* quant_k.c: matrix kernels for Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K
 * weights against Q8_K activations (quant_act.c), per super-block of 256
 * and token, as ggml's vec_dot_*_q8_K:
 *   d * d_x * sum_j sc_j * sum(q_w * q_x)  [- dmin * d_x * sum_j m_j * bsum_j]
 *
 * The activations' i16 quants are permuted within each group of 32 as for the
 * 32-element types ([0 2 .. 14 | 1 3 .. 15 | 16 18 .. 30 | 17 19 .. 31], see
 * quant_q.c), so 16-bit lanes of weight bytes split into two weights with a
 * shift or a mask, no byte widening. Offsets (Q3_K's -4 where the high bit is
 * clear, Q6_K's -32) come out of the integer sum through the activations'
 * block sums: sum sc (q - o) x = sum sc q x - o sum sc bsum16.
 *
 * One token (rows4, four rows sharing the activation loads): per group of 32
 * and row, the products q_w * q_x (|q_w| <= 63, |q_x| <= 127) are summed in
 * i16 lanes (at most 4 * 63 * 127 = 32004) and multiplied by the sub-block
 * scale with one i32x4.dot_i16x8 (two for the 16-element sub-blocks of Q2_K,
 * Q3_K, Q6_K). Several tokens (rows4n: four rows times four tokens): the
 * weights are multiplied by their scale once (|q * sc| <= 8001), then dotted
 * with each token's activations. Either way the integer sum over a super-block is exact
 * (|sum| < 2^28) and reduced across lanes before float enters, once per
 * super-block and (row, token):
 *   acc += f32(isum) * (d * d_x);  [acc -= f32(msum) * (dmin * d_x)]
 * so results do not depend on how rows and tokens are grouped. */
#include "quant_impl.h"

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
QI_INLINE bool has_mins(const uint32_t type) {
    return type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K;
}
/* sub-block scales per 16 elements (16 of them) rather than per 32 (8) */
QI_INLINE bool sc16(const uint32_t type) {
    return type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q6_K;
}
/* the offset taken out through sum sc * bsum16: 4 (Q3_K), 32 (Q6_K), as a shift */
QI_INLINE int off_shift(const uint32_t type) { return type == GGML_TYPE_Q3_K ? 2 : type == GGML_TYPE_Q6_K ? 5 : 0; }

/* 12 bytes at p into lanes 0..11 (reads nothing past p + 12). */
QI_INLINE v128_t load12(const uint8_t *p) {
    return wasm_v128_load32_lane(p + 8, wasm_v128_load64_zero(p), 2);
}

/* The i16 scales (sc[0]: sub-blocks 0..7, sc[1]: 8..15 where there are 16)
 * and mins (the same way) of the super-block at p (layouts: quant_impl.h). */
typedef struct { v128_t sc[2], mn[2]; } Scales;

QI_INLINE void scales(const uint32_t type, const uint8_t *p, Scales *s) {
    const v128_t m4 = wasm_i8x16_splat(0x0f), zero = wasm_i32x4_splat(0);
    switch (type) {
    case GGML_TYPE_Q2_K: {
        const v128_t v = wasm_v128_load(p), sc = wasm_v128_and(v, m4), m = wasm_v128_and(wasm_u16x8_shr(v, 4), m4);
        s->sc[0] = wasm_u16x8_extend_low_u8x16(sc), s->sc[1] = wasm_u16x8_extend_high_u8x16(sc);
        s->mn[0] = wasm_u16x8_extend_low_u8x16(m), s->mn[1] = wasm_u16x8_extend_high_u8x16(m);
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
        s->mn[0] = wasm_u16x8_extend_low_u8x16(m);
        break;
    }
    case GGML_TYPE_Q6_K: {
        const v128_t v = wasm_v128_load(p + 192);
        s->sc[0] = wasm_i16x8_extend_low_i8x16(v), s->sc[1] = wasm_i16x8_extend_high_i8x16(v);
        break;
    }
    default: break; /* Q8_K: no sub-block scales */
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
/* Shift 16-bit lanes left by n (n < 0: logical right); a constant once unrolled. */
QI_INLINE v128_t shl16(v128_t v, const int n) {
    return n > 0 ? wasm_i16x8_shl(v, n) : n < 0 ? wasm_u16x8_shr(v, -n) : v;
}

/* Group g (elements 32g .. 32g+31) of the super-block at p as four i16x8 in
 * the activations' permuted order: w[0] = even elements of 0..15, w[1] = odd
 * ones, w[2], w[3] the same of 16..31. Values before offsets and scales:
 * Q2_K 0..3, Q3_K 0..7, Q4_K 0..15, Q5_K 0..31, Q6_K 0..63, Q8_K -128..127. */
/* Group g of the super-block at p (not Q8_K) as bytes in natural order:
 * c0 = elements 0..15, c1 = 16..31 (so two per 16-bit lane). */
QI_INLINE void group_bytes(const uint32_t type, const uint8_t *p, const int g, v128_t *pc0, v128_t *pc1) {
    v128_t c0, c1;
    switch (type) {
    case GGML_TYPE_Q2_K: { /* qs[32h + l], bits 2j..2j+1, g = 4h + j */
        const uint8_t *q = p + 16 + 32 * (g >> 2);
        const int j = g & 3;
        const v128_t m = wasm_i16x8_splat(0x0303);
        c0 = wasm_v128_and(shl16(wasm_v128_load(q), -2 * j), m);
        c1 = wasm_v128_and(shl16(wasm_v128_load(q + 16), -2 * j), m);
        break;
    }
    case GGML_TYPE_Q3_K: { /* low bits as Q2_K from qs at p + 32; bit g of hmask[l] is bit 2 */
        const uint8_t *q = p + 32 + 32 * (g >> 2);
        const int j = g & 3;
        const v128_t m = wasm_i16x8_splat(0x0303), h = wasm_i16x8_splat(0x0404);
        c0 = wasm_v128_or(wasm_v128_and(shl16(wasm_v128_load(q), -2 * j), m), wasm_v128_and(shl16(wasm_v128_load(p), 2 - g), h));
        c1 = wasm_v128_or(wasm_v128_and(shl16(wasm_v128_load(q + 16), -2 * j), m),
                          wasm_v128_and(shl16(wasm_v128_load(p + 16), 2 - g), h));
        break;
    }
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: { /* qs[32(g/2) + l], low nibbles for even g */
        const bool five = type == GGML_TYPE_Q5_K;
        const uint8_t *q = p + (five ? 48 : 16) + 32 * (g >> 1);
        const v128_t m = wasm_i16x8_splat(0x0f0f);
        c0 = wasm_v128_and(shl16(wasm_v128_load(q), g & 1 ? -4 : 0), m);
        c1 = wasm_v128_and(shl16(wasm_v128_load(q + 16), g & 1 ? -4 : 0), m);
        if (five) { /* bit g of qh[l] is bit 4 */
            const v128_t h = wasm_i16x8_splat(0x1010);
            c0 = wasm_v128_or(c0, wasm_v128_and(shl16(wasm_v128_load(p + 16), 4 - g), h));
            c1 = wasm_v128_or(c1, wasm_v128_and(shl16(wasm_v128_load(p + 32), 4 - g), h));
        }
        break;
    }
    case GGML_TYPE_Q6_K: { /* g = 4h + j: ql[64h + 32(j&1) + l] nibble j/2, qh[32h + l] bits 2j..2j+1 as bits 4, 5 */
        const int h = g >> 2, j = g & 3;
        const uint8_t *ql = p + 64 * h + 32 * (j & 1), *qh = p + 128 + 32 * h;
        const v128_t m = wasm_i16x8_splat(0x0f0f), mh = wasm_i16x8_splat(0x3030);
        c0 = wasm_v128_or(wasm_v128_and(shl16(wasm_v128_load(ql), j >> 1 ? -4 : 0), m),
                          wasm_v128_and(shl16(wasm_v128_load(qh), 4 - 2 * j), mh));
        c1 = wasm_v128_or(wasm_v128_and(shl16(wasm_v128_load(ql + 16), j >> 1 ? -4 : 0), m),
                          wasm_v128_and(shl16(wasm_v128_load(qh + 16), 4 - 2 * j), mh));
        break;
    }
    default: c0 = c1 = wasm_i32x4_splat(0); break; /* Q8_K: see group() */
    }
    *pc0 = c0, *pc1 = c1;
}

QI_INLINE void group(const uint32_t type, const uint8_t *p, const int g, v128_t w[4]) {
    if (type == GGML_TYPE_Q8_K) { /* signed bytes at p + 4 */
        const v128_t v = wasm_v128_load(p + 4 + 32 * g), u = wasm_v128_load(p + 20 + 32 * g);
        w[0] = wasm_i16x8_shr(wasm_i16x8_shl(v, 8), 8), w[1] = wasm_i16x8_shr(v, 8);
        w[2] = wasm_i16x8_shr(wasm_i16x8_shl(u, 8), 8), w[3] = wasm_i16x8_shr(u, 8);
        return;
    }
    v128_t c0, c1;
    group_bytes(type, p, g, &c0, &c1);
    const v128_t m8 = wasm_i16x8_splat(0xff);
    w[0] = wasm_v128_and(c0, m8), w[1] = wasm_u16x8_shr(c0, 8);
    w[2] = wasm_v128_and(c1, m8), w[3] = wasm_u16x8_shr(c1, 8);
}

/* byte offsets of a super-block's f16 d and dmin */
QI_INLINE int d_off(const uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q2_K: return 80;
    case GGML_TYPE_Q3_K: return 108;
    case GGML_TYPE_Q6_K: return 208;
    default: return 0; /* Q4_K, Q5_K (dmin at 2); Q8_K: f32 d at 0 */
    }
}

/* sum_j m_j * bsum_j (mins) or sum_k sc_k * bsum16_k (offsets) of one row's
 * super-block against one token's block sums (bs16, bs32 of that super-block),
 * as an i32x4 whose lanes sum to it. */
QI_INLINE v128_t side_sum(const uint32_t type, const Scales *s, const int16_t *bs16, const int16_t *bs32) {
    if (type == GGML_TYPE_Q2_K)
        return wasm_i32x4_add(wasm_i32x4_dot_i16x8(s->mn[0], wasm_v128_load(bs16)),
                              wasm_i32x4_dot_i16x8(s->mn[1], wasm_v128_load(bs16 + 8)));
    if (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K) return wasm_i32x4_dot_i16x8(s->mn[0], wasm_v128_load(bs32));
    return wasm_i32x4_add(wasm_i32x4_dot_i16x8(s->sc[0], wasm_v128_load(bs16)),
                          wasm_i32x4_dot_i16x8(s->sc[1], wasm_v128_load(bs16 + 8)));
}

/* f32 d (lanes 0..3) of four rows' super-blocks at p0..p3 (and dmin, for types with mins). */
QI_INLINE v128_t gather_d(const uint32_t type, const uint8_t *p0, const uint8_t *p1, const uint8_t *p2,
                          const uint8_t *p3, v128_t *dmin) {
    const int o = d_off(type);
    if (type == GGML_TYPE_Q8_K) {
        v128_t d = wasm_v128_load32_zero(p0);
        d = wasm_v128_load32_lane(p1, d, 1);
        d = wasm_v128_load32_lane(p2, d, 2);
        return wasm_v128_load32_lane(p3, d, 3);
    }
    if (!has_mins(type)) { /* f16 d alone (Q3_K, Q6_K end with it: no wider load) */
        v128_t v = wasm_i32x4_splat(0);
        v = wasm_v128_load16_lane(p0 + o, v, 1);
        v = wasm_v128_load16_lane(p1 + o, v, 3);
        v = wasm_v128_load16_lane(p2 + o, v, 5);
        return qi_h2f_hi_x4(wasm_v128_load16_lane(p3 + o, v, 7));
    }
    v128_t v = wasm_v128_load32_zero(p0 + o); /* d in the low half, dmin in the high half */
    v = wasm_v128_load32_lane(p1 + o, v, 1);
    v = wasm_v128_load32_lane(p2 + o, v, 2);
    v = wasm_v128_load32_lane(p3 + o, v, 3);
    *dmin = qi_h2f_hi_x4(wasm_v128_and(v, wasm_i32x4_splat((int32_t)0xffff0000u)));
    return qi_h2f_hi_x4(wasm_i32x4_shl(v, 16));
}

/* Rows p0..p3 (block 0 at each) times one token (activation row x): lanes = rows.
 * bb: bytes from a row's super-block to its next (kblock_bytes; four times it in
 * the x4 layout, where p1..p3 are p0 + 1..3 super-blocks). */
QI_INLINE v128_t rows4(const uint32_t type, const bool B, const uint8_t *p0, const uint8_t *p1, const uint8_t *p2,
                       const uint8_t *p3, uint64_t K, const uint8_t *x, const uint64_t bb) {
    const uint64_t nb = K / QK_K;
    const uint8_t *aq = x; /* 256 quants: 512 bytes (i16) or 256 (B: i8) */
    const float *dx = (const float *)(x + (B ? 1 : 2) * K);
    const int16_t *bs16 = (const int16_t *)(dx + nb), *bs32 = bs16 + K / 16;
    v128_t acc = wasm_f32x4_splat(0);
    for (uint64_t b = 0; b < nb; b++, p0 += bb, p1 += bb, p2 += bb, p3 += bb, aq += B ? QK_K : 2 * QK_K, bs16 += 16, bs32 += 8) {
        const uint8_t *p[4] = { p0, p1, p2, p3 };
        Scales s[4];
        v128_t ms[4];
        QI_UNROLL
        for (int r = 0; r < 4; r++) {
            scales(type, p[r], &s[r]);
            if (has_mins(type) || off_shift(type)) ms[r] = side_sum(type, &s[r], bs16, bs32);
            /* computed once: else LLVM folds the unpacking into every splat16 below */
            QI_PIN(s[r].sc[0]);
            if (sc16(type)) QI_PIN(s[r].sc[1]);
        }
        /* per row: lanes summing to its integer sum over the super-block (reduced across
         * lanes once, after the eight groups) */
        v128_t R[4] = { wasm_i32x4_splat(0), wasm_i32x4_splat(0), wasm_i32x4_splat(0), wasm_i32x4_splat(0) };
        QI_UNROLL
        for (int g = 0; g < 8; g++) {
            v128_t P[4];
#if QI_RELAXED
            if (B) { /* i8 activations, weights as bytes: relaxed_dot sums pairs into i16 */
                const v128_t a0 = wasm_v128_load(aq + 32 * g), a1 = wasm_v128_load(aq + 32 * g + 16);
                QI_UNROLL
                for (int r = 0; r < 4; r++) {
                    v128_t c0, c1;
                    group_bytes(type, p[r], g, &c0, &c1);
                    const v128_t lo = wasm_i16x8_relaxed_dot_i8x16_i7x16(a0, c0), hi = wasm_i16x8_relaxed_dot_i8x16_i7x16(a1, c1);
                    if (sc16(type)) {
                        const v128_t sv = s[r].sc[g >> 2];
                        P[r] = wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo, splat16(sv, (2 * g) & 7)),
                                              wasm_i32x4_dot_i16x8(hi, splat16(sv, (2 * g + 1) & 7)));
                    } else {
                        P[r] = wasm_i32x4_dot_i16x8(wasm_i16x8_add(lo, hi), splat16(s[r].sc[0], g));
                    }
                }
                QI_UNROLL for (int r = 0; r < 4; r++) R[r] = wasm_i32x4_add(R[r], P[r]);
                if (sc16(type) || (g & 1)) QI_ANCHOR(wasm_v128_xor(wasm_v128_xor(R[0], R[1]), wasm_v128_xor(R[2], R[3])));
                continue;
            }
#endif
            const int16_t *a = (const int16_t *)aq + 32 * g;
            const v128_t a0 = wasm_v128_load(a), a1 = wasm_v128_load(a + 8);
            const v128_t a2 = wasm_v128_load(a + 16), a3 = wasm_v128_load(a + 24);
            QI_UNROLL
            for (int r = 0; r < 4; r++) {
                v128_t w[4];
                group(type, p[r], g, w);
                if (type == GGML_TYPE_Q8_K) {
                    P[r] = wasm_i32x4_add(
                        wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[0], a0), wasm_i32x4_dot_i16x8(w[1], a1)),
                        wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[2], a2), wasm_i32x4_dot_i16x8(w[3], a3)));
                } else if (sc16(type)) { /* scales per 16: elements 0..15 are w[0], w[1] */
                    const v128_t lo = wasm_i16x8_add(wasm_i16x8_mul(w[0], a0), wasm_i16x8_mul(w[1], a1));
                    const v128_t hi = wasm_i16x8_add(wasm_i16x8_mul(w[2], a2), wasm_i16x8_mul(w[3], a3));
                    const v128_t sv = s[r].sc[g >> 2];
                    P[r] = wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo, splat16(sv, (2 * g) & 7)),
                                          wasm_i32x4_dot_i16x8(hi, splat16(sv, (2 * g + 1) & 7)));
                } else {
                    const v128_t sum = wasm_i16x8_add(wasm_i16x8_add(wasm_i16x8_mul(w[0], a0), wasm_i16x8_mul(w[1], a1)),
                                                      wasm_i16x8_add(wasm_i16x8_mul(w[2], a2), wasm_i16x8_mul(w[3], a3)));
                    P[r] = wasm_i32x4_dot_i16x8(sum, splat16(s[r].sc[0], g));
                }
            }
            QI_UNROLL for (int r = 0; r < 4; r++) R[r] = wasm_i32x4_add(R[r], P[r]);
            if (g & 1) QI_BARRIER(); /* (groups 2j, 2j+1 share their loads) */
        }
        if (off_shift(type)) /* the offset's side sum joins each row's lanes before the one reduction */
            QI_UNROLL for (int r = 0; r < 4; r++) R[r] = wasm_i32x4_sub(R[r], wasm_i32x4_shl(ms[r], off_shift(type)));
        v128_t I = reduce4(R[0], R[1], R[2], R[3]), dmin = I, M = I;
        if (has_mins(type)) M = reduce4(ms[0], ms[1], ms[2], ms[3]);
        const v128_t d = gather_d(type, p0, p1, p2, p3, &dmin), vdx = wasm_f32x4_splat(dx[b]);
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(I), wasm_f32x4_mul(d, vdx)));
        if (has_mins(type))
            acc = wasm_f32x4_sub(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(M), wasm_f32x4_mul(dmin, vdx)));
    }
    return acc;
}

/* Rows p0..p3 (block 0 at each) times N tokens (activation rows xs[0..N)),
 * the prompt-processing tile: out[n] = rows times token n, lanes = rows, by
 * the same f32 operations per (row, token) as rows4. Per group of 32, each
 * row's weights are unpacked and multiplied by their sub-block scales once
 * for the N tokens (|q * sc| <= 8001; the same integer sums) and each
 * token's activations loaded once for the four rows (wasmtime bounds-checks
 * every load); each token's four integer sums are reduced across lanes per
 * group (sixteen running sums would not fit the registers; rows4 reduces once
 * per super-block: the same exact sums). Relaxed-SIMD builds (i8 activations)
 * unpack the four rows' bytes of a group, then go token by token, each token's
 * sums anchored (QI_ANCHOR) before the next token's loads: Cranelift otherwise
 * loaded every token's activations first and spilled them (Q4_K 49 -> 57
 * GOP/s at K = 4096, bench_kernels.py T = 64). bb as in rows4. */
#define QK_NMAX 4
#ifndef QK_NT
#define QK_NT 4
#endif
QI_INLINE void rows4n(const uint32_t type, const bool B, const int N, const uint8_t *p0, const uint8_t *p1,
                      const uint8_t *p2, const uint8_t *p3, uint64_t K, const uint8_t *const *xs, v128_t *out,
                      const uint64_t bb) {
    const uint64_t nb = K / QK_K, qb = B ? 1 : 2;
    const uint8_t *p[4] = { p0, p1, p2, p3 };
    v128_t acc[QK_NMAX];
    QI_UNROLL for (int n = 0; n < N; n++) acc[n] = wasm_f32x4_splat(0);
    for (uint64_t b = 0; b < nb; b++) {
        Scales s[4];
        QI_UNROLL for (int r = 0; r < 4; r++) {
            scales(type, p[r] + b * bb, &s[r]);
            QI_PIN(s[r].sc[0]);
            if (sc16(type)) QI_PIN(s[r].sc[1]);
        }
        v128_t I[QK_NMAX];
        QI_UNROLL for (int n = 0; n < N; n++) I[n] = wasm_i32x4_splat(0);
        QI_UNROLL for (int g = 0; g < 8; g++) {
#if QI_RELAXED
            if (B) { /* four rows' weights unpacked once, then token by token */
                v128_t c[4][2];
                QI_UNROLL for (int r = 0; r < 4; r++) group_bytes(type, p[r] + b * bb, g, &c[r][0], &c[r][1]);
                QI_UNROLL for (int n = 0; n < N; n++) {
                    const uint8_t *ap = xs[n] + QK_K * b + 32 * g;
                    const v128_t a0 = wasm_v128_load(ap), a1 = wasm_v128_load(ap + 16);
                    v128_t P[4];
                    QI_UNROLL for (int r = 0; r < 4; r++) {
                        const v128_t lo = wasm_i16x8_relaxed_dot_i8x16_i7x16(a0, c[r][0]);
                        const v128_t hi = wasm_i16x8_relaxed_dot_i8x16_i7x16(a1, c[r][1]);
                        if (sc16(type)) {
                            const v128_t sv = s[r].sc[g >> 2];
                            P[r] = wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo, splat16(sv, (2 * g) & 7)),
                                                  wasm_i32x4_dot_i16x8(hi, splat16(sv, (2 * g + 1) & 7)));
                        } else {
                            P[r] = wasm_i32x4_dot_i16x8(wasm_i16x8_add(lo, hi), splat16(s[r].sc[0], g));
                        }
                    }
                    I[n] = wasm_i32x4_add(I[n], reduce4(P[0], P[1], P[2], P[3]));
                    QI_ANCHOR(I[n]);
                }
                continue;
            }
#endif
            v128_t a[QK_NMAX][4], P[QK_NMAX][4]; /* (i16 activations from here on) */
            QI_UNROLL for (int n = 0; n < N; n++) {
                const uint8_t *ap = xs[n] + 2 * (QK_K * b + 32 * g);
                QI_UNROLL for (int i = 0; i < 4; i++) a[n][i] = wasm_v128_load(ap + 16 * i);
            }
            QI_UNROLL for (int r = 0; r < 4; r++) {
                const uint8_t *pr = p[r] + b * bb;
                v128_t w[4];
                group(type, pr, g, w);
                if (sc16(type)) {
                    const v128_t sa = splat16(s[r].sc[g >> 2], (2 * g) & 7), sb = splat16(s[r].sc[g >> 2], (2 * g + 1) & 7);
                    w[0] = wasm_i16x8_mul(w[0], sa), w[1] = wasm_i16x8_mul(w[1], sa);
                    w[2] = wasm_i16x8_mul(w[2], sb), w[3] = wasm_i16x8_mul(w[3], sb);
                } else if (type != GGML_TYPE_Q8_K) {
                    const v128_t sv = splat16(s[r].sc[0], g);
                    QI_UNROLL for (int i = 0; i < 4; i++) w[i] = wasm_i16x8_mul(w[i], sv);
                }
                QI_UNROLL for (int n = 0; n < N; n++)
                    P[n][r] = wasm_i32x4_add(
                        wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[0], a[n][0]), wasm_i32x4_dot_i16x8(w[1], a[n][1])),
                        wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[2], a[n][2]), wasm_i32x4_dot_i16x8(w[3], a[n][3])));
            }
            QI_UNROLL for (int n = 0; n < N; n++) I[n] = wasm_i32x4_add(I[n], reduce4(P[n][0], P[n][1], P[n][2], P[n][3]));
            QI_ANCHOR(wasm_v128_xor(wasm_v128_xor(I[0], I[N > 1]), wasm_v128_xor(I[N > 2 ? 2 : 0], I[N > 3 ? 3 : 0])));
        }
        v128_t dmin = I[0];
        const v128_t d = gather_d(type, p0 + b * bb, p1 + b * bb, p2 + b * bb, p3 + b * bb, &dmin);
        QI_UNROLL for (int n = 0; n < N; n++) {
            const float *dx = (const float *)(xs[n] + qb * K);
            const int16_t *bs16 = (const int16_t *)(dx + nb) + 16 * b, *bs32 = (const int16_t *)(dx + nb) + K / 16 + 8 * b;
            v128_t In = I[n], M = In;
            if (has_mins(type) || off_shift(type)) {
                v128_t ms[4];
                QI_UNROLL for (int r = 0; r < 4; r++) ms[r] = side_sum(type, &s[r], bs16, bs32);
                M = reduce4(ms[0], ms[1], ms[2], ms[3]);
            }
            if (off_shift(type)) In = wasm_i32x4_sub(In, wasm_i32x4_shl(M, off_shift(type)));
            const v128_t vdx = wasm_v128_load32_splat(dx + b);
            acc[n] = wasm_f32x4_add(acc[n], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(In), wasm_f32x4_mul(d, vdx)));
            if (has_mins(type))
                acc[n] = wasm_f32x4_sub(acc[n], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(M), wasm_f32x4_mul(dmin, vdx)));
        }
    }
    QI_UNROLL for (int n = 0; n < N; n++) out[n] = acc[n];
}

#define QK_KERNEL(NAME, TYPE, KIND)                                                                        \
    QI_INLINE v128_t NAME##_r4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3, \
                               uint64_t K, const uint8_t *x) {                                             \
        return rows4(TYPE, qi_quant_bytes(KIND) == 1, p0, p1, p2, p3, K, x, kblock_bytes(TYPE));           \
    }                                                                                                      \
    QI_INLINE void NAME##_r4n(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3,  \
                              uint64_t K, const uint8_t *const *xs, v128_t *out) {                         \
        rows4n(TYPE, qi_quant_bytes(KIND) == 1, QK_NT, p0, p1, p2, p3, K, xs, out, kblock_bytes(TYPE));    \
    }                                                                                                      \
    QI_DEFINE_MM_RN(NAME, NAME##_r4, NAME##_r4n, QK_NT)
/* The x4 layout (quant.h): a group's four super-blocks of a column together, each as in ggml. */
#define QK_KERNEL_X4(NAME, TYPE, KIND)                                                                     \
    QK_KERNEL(NAME, TYPE, KIND)                                                                            \
    QI_INLINE v128_t NAME##_x4r(const uint8_t *g, uint64_t K, const uint8_t *x) {                          \
        const uint64_t bb = kblock_bytes(TYPE);                                                            \
        return rows4(TYPE, qi_quant_bytes(KIND) == 1, g, g + bb, g + 2 * bb, g + 3 * bb, K, x, 4 * bb);    \
    }                                                                                                      \
    QI_INLINE void NAME##_x4rn(const uint8_t *g, uint64_t K, const uint8_t *const *xs, v128_t *out) {      \
        const uint64_t bb = kblock_bytes(TYPE);                                                            \
        rows4n(TYPE, qi_quant_bytes(KIND) == 1, QK_NT, g, g + bb, g + 2 * bb, g + 3 * bb, K, xs, out, 4 * bb); \
    }                                                                                                      \
    QI_DEFINE_MM_X4(NAME##_x4, NAME##_x4r, NAME##_x4rn)
/* (the activation kinds must be quant.c's quant_act_kind) */
#define QK_B (QI_RELAXED ? ACT_Q8_KB : ACT_Q8_K)
QK_KERNEL_X4(quant_mm_q2_K, GGML_TYPE_Q2_K, QK_B)
QK_KERNEL_X4(quant_mm_q3_K, GGML_TYPE_Q3_K, QK_B)
QK_KERNEL_X4(quant_mm_q4_K, GGML_TYPE_Q4_K, QK_B)
QK_KERNEL_X4(quant_mm_q5_K, GGML_TYPE_Q5_K, QK_B)
QK_KERNEL_X4(quant_mm_q6_K, GGML_TYPE_Q6_K, QK_B)
QK_KERNEL(quant_mm_q8_K, GGML_TYPE_Q8_K, ACT_Q8_K)
