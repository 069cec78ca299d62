/* quant_q.c: matrix kernels for the 32-element block types Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0 and Q8_1, against Q8_0 / Q8_1 activations (quant_act.c).
 *
 * Per block and token, as ggml's vec_dot_*_q8_*:
 *   Q4_0, Q5_0, Q8_0, Q8_1:  d_w * d_x * sum(q_w * q_x)
 *   Q4_1, Q5_1:              d_w * d_x * sum(q_w * q_x) + m_w * s_x
 *
 * Speed (the decode matvec streams these weights):
 * - Four rows per step share every activation load. The integer sums of the
 *   four rows are reduced into one i32x4 (lanes = rows), so the float work of
 *   a block (convert, scale, accumulate) is one vector op for four rows.
 * - The weights are never widened byte by byte. The activations' i16 quants
 *   are stored permuted (quant_act.c: [0 2 .. 14 | 1 3 .. 15 | 16 18 .. 30 |
 *   17 19 .. 31] per block), so that a 16-bit lane of weight bytes splits
 *   with one shift or mask into the two weights that meet lanes of those
 *   vectors: 4 bits -> (v & 15, v >> 8 & 15, v >> 4 & 15, v >> 12), 8 bits ->
 *   (v << 8 >> 8, v >> 8). Offsets (-8, -16) are taken out of the integer
 *   sum with the activations' block sums instead of from every weight.
 * - The weights' f16 scales of four rows are gathered into the high halves of
 *   i32 lanes, where an arithmetic shift by 3 and a mask make them f32 times
 *   2^-112 (exact, subnormals included); the activations store d * 2^112
 *   (exact: an f16 d is below 2^16), so d_w * d_x is one multiply and rounds
 *   exactly as the plain product does.
 * - Several tokens (prompt processing): a tile of four consecutive rows times
 *   four tokens (rows4n), so each block of weights is loaded and unpacked
 *   once per four tokens and each block of activations loaded once per four
 *   rows (wasmtime bounds-checks every load of a Memory64 module: loads cost
 *   about four instructions each), and the float work stays one vector op
 *   for four rows, as in rows4.
 * - The model's matrices come in the x4 layout (below; realm_model_load
 *   repacks them): one stream of four rows' interleaved blocks, the rows'
 *   scales in one load, Q5's fifth bits by one shift and mask per row instead
 *   of a shuffle, mask, compare and mask per half (SmolLM2's shapes, one
 *   thread, streamed: Q4_0 matvec 12.0 -> 13.9 GB/s, Q5_0 7.5 -> 11.2, Q5_1
 *   7.4 -> 11.8, Q8_0 16.2 -> 17.4; prompt tiles +6 % Q4_0, +9 % Q8_0, +25 %
 *   Q5_0: bench/results/cpu-2026-12-07c.md).
 * Integer sums are exact (|sum| < 2^18), so every (row, token) result is the
 * same sequence of f32 operations whichever rows and tokens a call holds:
 *   acc += f32(isum) * (d_w * d_x);  macc += m_w * s_x;  y = acc + macc. */
#include "quant_impl.h"

/* The fifth bits of 32 elements (bit j of qh) as 0x10 in byte lanes. */
QI_INLINE void qh_bits(const uint8_t *p, v128_t *lo, v128_t *hi) {
    const v128_t v = wasm_v128_load32_splat(p);
    const v128_t bits = wasm_i64x2_splat(0x8040201008040201ll);
    const v128_t l = wasm_i8x16_shuffle(v, v, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const v128_t h = wasm_i8x16_shuffle(v, v, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const v128_t x10 = wasm_i8x16_splat(0x10);
    v128_t lb = wasm_v128_and(l, bits), hb = wasm_v128_and(h, bits);
    /* (opaque to LLVM, which otherwise rewrites (x & bit) == bit as (x & bit) != 0:
     * one compare on x86 becomes three in the engines) */
    QI_PIN(lb);
    QI_PIN(hb);
    *lo = wasm_v128_and(wasm_i8x16_eq(lb, bits), x10);
    *hi = wasm_v128_and(wasm_i8x16_eq(hb, bits), x10);
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

/* The 32 nibbles of a Q4_0 / Q4_1 block's 16 quant bytes v: two u8x16 (B: i8
 * activations) or four i16x8 against the permuted i16 activations. */
QI_INLINE void q4_nibbles(const bool B, v128_t v, v128_t *w) {
    if (B) {
        const v128_t m4 = wasm_i8x16_splat(15);
        w[0] = wasm_v128_and(v, m4), w[1] = wasm_v128_and(wasm_u16x8_shr(v, 4), m4);
    } else {
        const v128_t m = wasm_i16x8_splat(15);
        w[0] = wasm_v128_and(v, m);
        w[1] = wasm_v128_and(wasm_u16x8_shr(v, 8), m);
        w[2] = wasm_v128_and(wasm_u16x8_shr(v, 4), m);
        w[3] = wasm_u16x8_shr(v, 12);
    }
}

/* A Q5 block's vectors from its 16 quant bytes q and fifth bits (0x10 in
 * byte lanes) hl (elements 0..15) and hh (16..31), as unpack_at. */
QI_INLINE void q5_unpack(const bool B, v128_t q, v128_t hl, v128_t hh, v128_t *w) {
    const v128_t m4 = wasm_i8x16_splat(15);
    const v128_t lo = wasm_v128_or(wasm_v128_and(q, m4), hl);                  /* elements 0..15 */
    const v128_t hi = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(q, 4), m4), hh); /* 16..31 */
    if (B) {
        w[0] = lo, w[1] = hi;
    } else {
        const v128_t m8 = wasm_i16x8_splat(255);
        w[0] = wasm_v128_and(lo, m8), w[1] = wasm_u16x8_shr(lo, 8);
        w[2] = wasm_v128_and(hi, m8), w[3] = wasm_u16x8_shr(hi, 8);
    }
}

/* A block's vectors that meet the activations, from its quants at qs (and,
 * Q5_*, its u32 qh at qh): four i16x8 of weights (w[0..3], against the
 * permuted i16 activations), or, for i8 activations (B, relaxed-SIMD builds),
 * two u8x16 (w[0]: elements 0..15, w[1]: 16..31). */
QI_INLINE void unpack_at(const uint32_t type, const bool B, const uint8_t *qs, const uint8_t *qh, v128_t *w) {
    switch (type) {
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1:
        q4_nibbles(B, wasm_v128_load(qs), w);
        break;
    case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: {
        v128_t hl, hh;
        qh_bits(qh, &hl, &hh);
        q5_unpack(B, wasm_v128_load(qs), hl, hh, w);
        break;
    }
    default: { /* Q8_0, Q8_1: signed bytes (never B) */
        const v128_t v = wasm_v128_load(qs), u = wasm_v128_load(qs + 16);
        w[0] = wasm_i16x8_shr(wasm_i16x8_shl(v, 8), 8), w[1] = wasm_i16x8_shr(v, 8);
        w[2] = wasm_i16x8_shr(wasm_i16x8_shl(u, 8), 8), w[3] = wasm_i16x8_shr(u, 8);
        break;
    }
    }
}

/* Where a block's quants start (ggml's layout) */
QI_INLINE uint64_t quants_at(const uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q8_0: return 2;
    case GGML_TYPE_Q5_0: return 6;
    case GGML_TYPE_Q5_1: return 8;
    default: return 4; /* Q4_1, Q8_1 */
    }
}

/* The block at p (ggml's layout), as unpack_at. */
QI_INLINE void block_unpack(const uint32_t type, const bool B, const uint8_t *p, v128_t *w) {
    unpack_at(type, B, p + quants_at(type), p + (type == GGML_TYPE_Q5_0 ? 2 : 4), w);
}

/* sum(q_w * q_x) of one block as an i32x4 (the sum of its lanes), before the
 * Q4_0 / Q5_0 offset; w from block_unpack, a the block's activations (four
 * permuted i16x8, or for B two i8x16 in natural order). For B:
 * relaxed_dot_i8x16_i7x16 sums pairs of products into i16 (|.| <= 2*31*127;
 * the weights, 0..31, fit the i7 operand), two of them still fit (15748), one
 * i32x4.dot_i16x8 with ones widens. */
QI_INLINE v128_t block_dot_w(const bool B, const v128_t *w, const v128_t *a) {
    if (B) {
#if QI_RELAXED
        const v128_t s = wasm_i16x8_add(wasm_i16x8_relaxed_dot_i8x16_i7x16(a[0], w[0]),
                                        wasm_i16x8_relaxed_dot_i8x16_i7x16(a[1], w[1]));
        return wasm_i32x4_dot_i16x8(s, wasm_i16x8_splat(1));
#else
        return wasm_i32x4_splat(0);
#endif
    }
    return wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[0], a[0]), wasm_i32x4_dot_i16x8(w[1], a[1])),
                          wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[2], a[2]), wasm_i32x4_dot_i16x8(w[3], a[3])));
}

/* sum(q_w * q_x) of the block at p as an i32x4 (the sum of its lanes), before
 * the Q4_0 / Q5_0 offset; a0..a3: the block's permuted activations. */
QI_INLINE v128_t block_dot(const uint32_t type, const uint8_t *p, v128_t a0, v128_t a1, v128_t a2, v128_t a3) {
    v128_t w[4];
    const v128_t a[4] = { a0, a1, a2, a3 };
    block_unpack(type, false, p, w);
    return block_dot_w(false, w, a);
}

#if QI_RELAXED
/* As block_dot for the 4- and 5-bit types against i8 activations in natural
 * order: a0 = elements 0..15, a1 = 16..31. */
QI_INLINE v128_t block_dot_b(const uint32_t type, const uint8_t *p, v128_t a0, v128_t a1) {
    v128_t w[4];
    const v128_t a[2] = { a0, a1 };
    block_unpack(type, true, p, w);
    return block_dot_w(true, w, a);
}
#endif

/* A block's integer sums for the kernels that fold rows (B: the i16 pair sums
 * of block_dot_w before its widening dot; else block_dot_w), and two rows'
 * folded as qi_fold2 folds them. For B the halves of each row are added as i16
 * (|.| <= 2 * 15748 fits) and widened by one dot for both rows: one
 * instruction less per two rows and token than widening each row first. The
 * same integers either way. */
QI_INLINE v128_t block_sums(const bool B, const v128_t *w, const v128_t *a) {
#if QI_RELAXED
    if (B) return wasm_i16x8_add(wasm_i16x8_relaxed_dot_i8x16_i7x16(a[0], w[0]),
                                 wasm_i16x8_relaxed_dot_i8x16_i7x16(a[1], w[1]));
#endif
    return block_dot_w(B, w, a);
}
QI_INLINE v128_t fold2(const bool B, v128_t d0, v128_t d1) {
    if (B) {
        const v128_t h = wasm_i16x8_add(wasm_i64x2_shuffle(d0, d1, 0, 2), wasm_i64x2_shuffle(d0, d1, 1, 3));
        return wasm_i32x4_dot_i16x8(h, wasm_i16x8_splat(1));
    }
    return qi_fold2(d0, d1);
}

/* f16 in the high 16 bits of i32 lanes -> f32 times 2^-112, exact (sign,
 * subnormals; an f16 inf / NaN becomes inf / NaN). */
QI_INLINE v128_t h2f_hi_scaled(v128_t h) { /* (the low halves may hold anything) */
    const v128_t v = wasm_v128_and(wasm_i32x4_shr(h, 3), wasm_i32x4_splat((int32_t)0x8fffe000u));
    const v128_t e = wasm_i32x4_splat(0x0f800000);
    return wasm_v128_or(v, wasm_v128_and(wasm_i32x4_eq(wasm_v128_and(v, e), e), wasm_i32x4_splat(0x7f800000)));
}

QI_INLINE bool has_min(const uint32_t type) { return type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1; }
/* The Q4_0 / Q5_0 offset (8, 16) as a shift of the activations' block sum. */
QI_INLINE int off_shift(const uint32_t type) { return type == GGML_TYPE_Q4_0 ? 3 : type == GGML_TYPE_Q5_0 ? 4 : 0; }

/* The scales of four rows' blocks at p0..p3: d in the high halves of i32
 * lanes, or (Q4_1, Q5_1) d | m << 16, one 32-bit load each. */
QI_INLINE v128_t gather_scales(const uint32_t type, const uint8_t *p0, const uint8_t *p1, const uint8_t *p2,
                               const uint8_t *p3) {
    if (has_min(type)) {
        v128_t dm = wasm_v128_load32_zero(p0);
        dm = wasm_v128_load32_lane(p1, dm, 1);
        dm = wasm_v128_load32_lane(p2, dm, 2);
        return wasm_v128_load32_lane(p3, dm, 3);
    }
    v128_t d = wasm_i32x4_splat(0);
    d = wasm_v128_load16_lane(p0, d, 1);
    d = wasm_v128_load16_lane(p1, d, 3);
    d = wasm_v128_load16_lane(p2, d, 5);
    return wasm_v128_load16_lane(p3, d, 7);
}

/* A block's float work for four rows and one token, as every kernel here does
 * it: is = the rows' integer sums (reduce4), sc = their scales gathered (d, or
 * d | m << 16, in i32 lanes), meta = the token's (d_x, s_x) of the block. */
QI_INLINE void block_acc(const uint32_t type, v128_t is, v128_t sc, const uint8_t *meta, v128_t *acc, v128_t *macc) {
    const v128_t mt = wasm_v128_load64_zero(meta); /* f32 d_x * 2^112, i32 sum(q_x) or f32 s_x * 2^112 */
    const v128_t dx = wasm_i32x4_shuffle(mt, mt, 0, 0, 0, 0), sx = wasm_i32x4_shuffle(mt, mt, 1, 1, 1, 1);
    if (off_shift(type)) is = wasm_i32x4_sub(is, wasm_i32x4_shl(sx, off_shift(type)));
    v128_t dw;
    if (has_min(type)) {
        dw = h2f_hi_scaled(wasm_i32x4_shl(sc, 16));
        *macc = wasm_f32x4_add(*macc, wasm_f32x4_mul(h2f_hi_scaled(sc), sx));
    } else {
        dw = h2f_hi_scaled(sc);
    }
    *acc = wasm_f32x4_add(*acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(is), wasm_f32x4_mul(dw, dx)));
}

/* ------------------------------------------------------------------ the x4 layout
 * quant_repack_x4 (at model load) may store a Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0
 * matrix with its rows in groups of four, interleaved block column by block
 * column. Per block of a group:
 *   the four rows' headers: f16 d each (Q4_0, Q5_0, Q8_0: 8 bytes), or
 *                           f16 d, f16 m each (Q4_1, Q5_1: 16 bytes)
 *   their fifth bits (Q5_0, Q5_1: 16 bytes), transposed: bit 2j of byte k is
 *     row j's bit of element k, bit 2j + 1 its bit of element k + 16, so that
 *     one shift and one mask put a row's bits where its nibbles need them
 *   their quants, row by row (16 bytes each; Q8_0: 32)
 * Four blocks' bytes, so a group occupies what its four rows did. The kernels
 * then read one sequential stream instead of four rows' streams, the four
 * rows' scales with one load instead of four (every Memory64 load is
 * bounds-checked), and compute exactly rows4's operations. */
QI_INLINE bool is_q5(const uint32_t type) { return type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q5_1; }
QI_INLINE uint64_t x4_hdr(const uint32_t type) { return has_min(type) ? 16 : 8; }
QI_INLINE uint64_t x4_quants(const uint32_t type) { return x4_hdr(type) + (is_q5(type) ? 16 : 0); }
QI_INLINE uint64_t x4_qlen(const uint32_t type) { return type == GGML_TYPE_Q8_0 ? 32 : 16; }
/* The transposed fifth bits of the group's block at g (Q5 types; else unused). */
QI_INLINE v128_t x4_bits(const uint32_t type, const uint8_t *g) {
    return is_q5(type) ? wasm_v128_load(g + x4_hdr(type)) : wasm_i32x4_splat(0);
}
/* bit 4 - s of every byte of v moved to bit 4 (0x10 or 0) */
QI_INLINE v128_t bit_to_4(v128_t v, const int s) {
    if (s > 0) v = wasm_i16x8_shl(v, s);
    if (s < 0) v = wasm_u16x8_shr(v, -s); /* (16-bit shifts: the masked bit never crosses a byte) */
    return wasm_v128_and(v, wasm_i8x16_splat(0x10));
}
/* Row j's block in the group's block at g, as unpack_at; hb = x4_bits(type, g). */
QI_INLINE void x4_unpack(const uint32_t type, const bool B, const uint8_t *g, v128_t hb, int j, v128_t *w) {
    const uint8_t *qs = g + x4_quants(type) + (uint64_t)j * x4_qlen(type);
    if (is_q5(type)) q5_unpack(B, wasm_v128_load(qs), bit_to_4(hb, 4 - 2 * j), bit_to_4(hb, 3 - 2 * j), w);
    else unpack_at(type, B, qs, NULL, w);
}
/* The four rows' scales gathered as rows4 gathers them. */
QI_INLINE v128_t x4_scales(const uint32_t type, const uint8_t *g) {
    if (has_min(type)) return wasm_v128_load(g);
    return wasm_i16x8_shuffle(wasm_i32x4_splat(0), wasm_v128_load64_zero(g), 0, 8, 1, 9, 2, 10, 3, 11);
}

/* The group at g (x4 layout) times one token: rows4's operations. */
QI_INLINE v128_t rows4x(const uint32_t type, const bool B, const uint8_t *g, uint64_t K, const uint8_t *x) {
    const uint64_t nb = K / 32, gb = 4 * block_bytes(type);
    const uint8_t *aq = x, *meta = x + (B ? 1 : 2) * K;
    v128_t acc = wasm_f32x4_splat(0), macc = acc;
    for (uint64_t b = 0; b < nb; b++, g += gb, aq += B ? 32 : 64, meta += 8) {
        v128_t a[4], d[4];
        QI_UNROLL for (int i = 0; i < (B ? 2 : 4); i++) a[i] = wasm_v128_load(aq + 16 * i);
        const v128_t hb = x4_bits(type, g);
        QI_UNROLL for (int j = 0; j < 4; j++) {
            v128_t w[4];
            x4_unpack(type, B, g, hb, j, w);
            d[j] = block_sums(B, w, a);
        }
        block_acc(type, qi_fold4(fold2(B, d[0], d[1]), fold2(B, d[2], d[3])), x4_scales(type, g), meta, &acc, &macc);
    }
    return has_min(type) ? wasm_f32x4_add(acc, macc) : acc;
}

/* Rows p0..p3 (block 0 at each) times one token (activation row x): lanes = rows. */
QI_INLINE v128_t rows4(const uint32_t type, const bool B, const uint8_t *p0, const uint8_t *p1, const uint8_t *p2,
                       const uint8_t *p3, uint64_t K, const uint8_t *x) {
    const uint64_t nb = K / 32, bb = block_bytes(type);
    const uint8_t *aq = x;                         /* 32 quants: 64 bytes (i16) or 32 (B: i8) */
    const uint8_t *meta = x + (B ? 1 : 2) * K;
    v128_t acc = wasm_f32x4_splat(0), macc = acc;
    for (uint64_t b = 0; b < nb; b++, p0 += bb, p1 += bb, p2 += bb, p3 += bb, aq += B ? 32 : 64, meta += 8) {
        v128_t is = wasm_i32x4_splat(0);
        if (B) {
#if QI_RELAXED
            const v128_t a0 = wasm_v128_load(aq), a1 = wasm_v128_load(aq + 16);
            is = reduce4(block_dot_b(type, p0, a0, a1), block_dot_b(type, p1, a0, a1),
                         block_dot_b(type, p2, a0, a1), block_dot_b(type, p3, a0, a1));
#endif
        } else {
            const v128_t a0 = wasm_v128_load(aq), a1 = wasm_v128_load(aq + 16);
            const v128_t a2 = wasm_v128_load(aq + 32), a3 = wasm_v128_load(aq + 48);
            is = reduce4(block_dot(type, p0, a0, a1, a2, a3), block_dot(type, p1, a0, a1, a2, a3),
                         block_dot(type, p2, a0, a1, a2, a3), block_dot(type, p3, a0, a1, a2, a3));
        }
        block_acc(type, is, gather_scales(type, p0, p1, p2, p3), meta, &acc, &macc);
    }
    return has_min(type) ? wasm_f32x4_add(acc, macc) : acc;
}

/* The raw bytes of one block of four rows, loaded one block ahead of their
 * use by rows4p (see there): the quants (q: 16 bytes at the quants' start;
 * q2: the next 16, Q8_*) and the scales of the four rows gathered (sc: d,
 * or d | m << 16, in i32 lanes, as rows4 gathers them). */
typedef struct { v128_t q[4], q2[4], sc; } Raw4;

QI_INLINE void raw4_load(const uint32_t type, const uint8_t *const *p, uint64_t off, Raw4 *r) {
    const uint64_t qo = type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q8_0 ? 2 : 4;
    QI_UNROLL for (int j = 0; j < 4; j++) {
        r->q[j] = wasm_v128_load(p[j] + off + qo);
        if (type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q8_1) r->q2[j] = wasm_v128_load(p[j] + off + qo + 16);
    }
    r->sc = gather_scales(type, p[0] + off, p[1] + off, p[2] + off, p[3] + off);
}

/* block_unpack from loaded bytes (raw4_load's q and q2; Q4_* and Q8_*). */
QI_INLINE void raw_unpack(const uint32_t type, const bool B, v128_t v, v128_t u, v128_t *w) {
    if (type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_1) {
        q4_nibbles(B, v, w);
    } else {
        w[0] = wasm_i16x8_shr(wasm_i16x8_shl(v, 8), 8), w[1] = wasm_i16x8_shr(v, 8);
        w[2] = wasm_i16x8_shr(wasm_i16x8_shl(u, 8), 8), w[3] = wasm_i16x8_shr(u, 8);
    }
}

/* rows4 with the weights' loads one block ahead (Q4_0, Q4_1, Q8_0, Q8_1;
 * not the Q5 types, whose longer arithmetic per block hides the loads anyway
 * and which only lost to the extra registers):
 * a block's bytes are requested a whole block of work before they are
 * needed, so the four weight streams' cache misses overlap the arithmetic of
 * the block before (the loop body is long: the engine's out-of-order window
 * holds little more than one block). The same operations as rows4. */
QI_INLINE v128_t rows4p(const uint32_t type, const bool B, const uint8_t *p0, const uint8_t *p1, const uint8_t *p2,
                        const uint8_t *p3, uint64_t K, const uint8_t *x) {
    const uint64_t nb = K / 32, bb = block_bytes(type);
    const uint8_t *aq = x;
    const uint8_t *meta = x + (B ? 1 : 2) * K;
    const uint8_t *p[4] = { p0, p1, p2, p3 };
    v128_t acc = wasm_f32x4_splat(0), macc = acc;
    Raw4 cur, nxt;
    raw4_load(type, p, 0, &cur);
    for (uint64_t b = 0; b < nb; b++, aq += B ? 32 : 64, meta += 8) {
        raw4_load(type, p, (b + 1 < nb ? b + 1 : b) * bb, &nxt);
        v128_t a[4];
        QI_UNROLL for (int i = 0; i < (B ? 2 : 4); i++) a[i] = wasm_v128_load(aq + 16 * i);
        v128_t d[4];
        QI_UNROLL for (int j = 0; j < 4; j++) {
            v128_t w[4];
            raw_unpack(type, B, cur.q[j], cur.q2[j], w);
            d[j] = block_sums(B, w, a);
        }
        block_acc(type, qi_fold4(fold2(B, d[0], d[1]), fold2(B, d[2], d[3])), cur.sc, meta, &acc, &macc);
        cur = nxt;
    }
    return has_min(type) ? wasm_f32x4_add(acc, macc) : acc;
}

/* Row j's block b of a tile: at p[j] (ggml's layout), or in the group at p[0] (x4). */
QI_INLINE void tile_unpack(const uint32_t type, const bool B, const bool X4, const uint8_t *const *p, v128_t hb,
                           int j, uint64_t b, v128_t *w) {
    if (X4) x4_unpack(type, B, p[0] + b * 4 * block_bytes(type), hb, j, w);
    else block_unpack(type, B, p[j] + b * block_bytes(type), w);
}

/* Rows p0..p3 (block 0 at each) times N tokens (activation rows xs[0..N)),
 * the prompt-processing tile: out[n] = rows times token n, lanes = rows, by
 * the same f32 operations per (row, token) as rows4. Per block, each row's
 * weights are loaded and unpacked once for the N tokens and each token's
 * activations loaded once for the four rows; the integer sums of a token's
 * four rows are reduced as in rows4. */
#define QQ_NMAX 4 /* most tokens per rows4n tile */
QI_INLINE void rows4n(const uint32_t type, const bool B, const bool X4, const int N, const uint8_t *p0,
                      const uint8_t *p1, const uint8_t *p2, const uint8_t *p3, uint64_t K, const uint8_t *const *xs,
                      v128_t *out) {
    const uint64_t nb = K / 32, bb = block_bytes(type), gb = 4 * bb, qb = B ? 32 : 64, nq = B ? 2 : 4;
    const uint64_t mo = (B ? 1 : 2) * K; /* per-block (d_x, s_x) after the quants */
    v128_t acc[QQ_NMAX], macc[QQ_NMAX]; /* (fixed sizes: arrays with a variable bound stay in memory) */
    QI_UNROLL for (int n = 0; n < N; n++) acc[n] = macc[n] = wasm_f32x4_splat(0);
    const uint8_t *p[4] = { p0, p1, p2, p3 };
    for (uint64_t b = 0; b < nb; b++) {
        v128_t a[QQ_NMAX][4], ab[QQ_NMAX], is4[QQ_NMAX];
        QI_UNROLL for (int n = 0; n < N; n++)
            QI_UNROLL for (uint64_t i = 0; i < nq; i++) a[n][i] = wasm_v128_load(xs[n] + b * qb + 16 * i);
        const v128_t hb = X4 ? x4_bits(type, p0 + b * gb) : wasm_i32x4_splat(0);
        /* row by row, the integer sums of rows (0, 1) and (2, 3) folded into
         * one vector per token as they come. (The barriers keep LLVM from
         * hoisting all four rows' loads and unpacking to the top; Cranelift
         * places the arithmetic after the block's loads regardless, but this
         * order measured a little faster.) */
        QI_UNROLL for (int j = 0; j < 4; j += 2) {
            v128_t w0[4], w1[4], d0[QQ_NMAX];
            QI_BARRIER();
            tile_unpack(type, B, X4, p, hb, j, b, w0);
            QI_UNROLL for (int n = 0; n < N; n++) {
                d0[n] = block_sums(B, w0, a[n]);
                QI_PIN(d0[n]);
            }
            QI_BARRIER();
            tile_unpack(type, B, X4, p, hb, j + 1, b, w1);
            QI_UNROLL for (int n = 0; n < N; n++) {
                const v128_t h = fold2(B, d0[n], block_sums(B, w1, a[n]));
                if (j == 0) {
                    ab[n] = h;
                    QI_PIN(ab[n]);
                    QI_ANCHOR(ab[n]);
                } else {
                    is4[n] = qi_fold4(ab[n], h);
                    QI_PIN(is4[n]);
                    QI_ANCHOR(is4[n]); /* (each token's sums computed before the next token's) */
                }
            }
        }
        const v128_t sc = X4 ? x4_scales(type, p0 + b * gb)
                             : gather_scales(type, p0 + b * bb, p1 + b * bb, p2 + b * bb, p3 + b * bb);
        const v128_t dw = h2f_hi_scaled(has_min(type) ? wasm_i32x4_shl(sc, 16) : sc);
        const v128_t mw = has_min(type) ? h2f_hi_scaled(sc) : wasm_i32x4_splat(0);
        QI_UNROLL for (int n = 0; n < N; n++) {
            v128_t is = is4[n]; /* = reduce4 of the four rows' block_dot_w */
            const v128_t mt = wasm_v128_load64_zero(xs[n] + mo + 8 * b);
            const v128_t dx = wasm_i32x4_shuffle(mt, mt, 0, 0, 0, 0), sx = wasm_i32x4_shuffle(mt, mt, 1, 1, 1, 1);
            if (off_shift(type)) is = wasm_i32x4_sub(is, wasm_i32x4_shl(sx, off_shift(type)));
            if (has_min(type)) macc[n] = wasm_f32x4_add(macc[n], wasm_f32x4_mul(mw, sx));
            acc[n] = wasm_f32x4_add(acc[n], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(is), wasm_f32x4_mul(dw, dx)));
        }
    }
    QI_UNROLL for (int n = 0; n < N; n++) out[n] = has_min(type) ? wasm_f32x4_add(acc[n], macc[n]) : acc[n];
}

#define QQ_KERNEL(NAME, TYPE, KIND)                                                                        \
    QI_INLINE v128_t NAME##_r4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3, \
                               uint64_t K, const uint8_t *x) {                                             \
        if (TYPE != GGML_TYPE_Q5_0 && TYPE != GGML_TYPE_Q5_1)                                              \
            return rows4p(TYPE, qi_quant_bytes(KIND) == 1, p0, p1, p2, p3, K, x);                          \
        return rows4(TYPE, qi_quant_bytes(KIND) == 1, p0, p1, p2, p3, K, x);                               \
    }                                                                                                      \
    QI_INLINE void NAME##_r4n(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3,  \
                              uint64_t K, const uint8_t *const *xs, v128_t *out) {                         \
        rows4n(TYPE, qi_quant_bytes(KIND) == 1, false, 4, p0, p1, p2, p3, K, xs, out);                     \
    }                                                                                                      \
    QI_DEFINE_MM_RN(NAME, NAME##_r4, NAME##_r4n, 4)
/* (the activation kinds must be quant.c's quant_act_kind) */
#define QQ_B(kind) (QI_RELAXED ? kind + 3 : kind)
QQ_KERNEL(quant_mm_q4_0, GGML_TYPE_Q4_0, QQ_B(ACT_Q8_0))
QQ_KERNEL(quant_mm_q4_1, GGML_TYPE_Q4_1, QQ_B(ACT_Q8_1))
QQ_KERNEL(quant_mm_q5_0, GGML_TYPE_Q5_0, QQ_B(ACT_Q8_0))
QQ_KERNEL(quant_mm_q5_1, GGML_TYPE_Q5_1, QQ_B(ACT_Q8_1))
QQ_KERNEL(quant_mm_q8_0, GGML_TYPE_Q8_0, ACT_Q8_0)
QQ_KERNEL(quant_mm_q8_1, GGML_TYPE_Q8_1, ACT_Q8_1)

#define QQ_X4_KERNEL(NAME, TYPE, KIND)                                                                     \
    QI_INLINE v128_t NAME##r(const uint8_t *g, uint64_t K, const uint8_t *x) {                             \
        return rows4x(TYPE, qi_quant_bytes(KIND) == 1, g, K, x);                                           \
    }                                                                                                      \
    QI_INLINE void NAME##rn(const uint8_t *g, uint64_t K, const uint8_t *const *xs, v128_t *out) {         \
        rows4n(TYPE, qi_quant_bytes(KIND) == 1, true, 4, g, NULL, NULL, NULL, K, xs, out);                 \
    }                                                                                                      \
    QI_DEFINE_MM_X4(NAME, NAME##r, NAME##rn)
QQ_X4_KERNEL(quant_mm_q4_0_x4, GGML_TYPE_Q4_0, QQ_B(ACT_Q8_0))
QQ_X4_KERNEL(quant_mm_q4_1_x4, GGML_TYPE_Q4_1, QQ_B(ACT_Q8_1))
QQ_X4_KERNEL(quant_mm_q5_0_x4, GGML_TYPE_Q5_0, QQ_B(ACT_Q8_0))
QQ_X4_KERNEL(quant_mm_q5_1_x4, GGML_TYPE_Q5_1, QQ_B(ACT_Q8_1))
QQ_X4_KERNEL(quant_mm_q8_0_x4, GGML_TYPE_Q8_0, ACT_Q8_0)

bool quant_can_x4(uint32_t type, uint64_t rows) {
    switch (type) {
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
        return rows % 4 == 0;
    default: return false;
    }
}
/* The K-quants' x4 layout only interleaves: a group's four super-blocks of
 * each column one after the other, each as in ggml (quant_k.c). */
QI_INLINE bool is_k(uint32_t type) { return type >= GGML_TYPE_Q2_K && type <= GGML_TYPE_Q6_K; }

bool quant_repack_x4(uint32_t type, uint8_t *W, uint64_t K, uint64_t rows) {
    const uint64_t bs = quant_type(type)->block_size;
    if (!quant_can_x4(type, rows) || K % bs) return false;
    const uint64_t bb = quant_type(type)->type_size, rb = K / bs * bb, nb = K / bs;
    const uint64_t hs = x4_hdr(type) / 4, qh = x4_quants(type) > x4_hdr(type), qo = quants_at(type), ql = x4_qlen(type);
    uint8_t *tmp = rt_malloc(4 * rb);
    if (!tmp) return false;
    for (uint64_t g = 0; g < rows; g += 4) {
        uint8_t *grp = W + g * rb;
        memcpy(tmp, grp, 4 * rb);
        for (uint64_t b = 0; b < nb; b++) {
            uint8_t *o = grp + b * 4 * bb;
            if (is_k(type)) {
                for (uint64_t j = 0; j < 4; j++) memcpy(o + j * bb, tmp + j * rb + b * bb, bb);
                continue;
            }
            for (uint64_t j = 0; j < 4; j++) {
                const uint8_t *src = tmp + j * rb + b * bb;
                memcpy(o + j * hs, src, hs);
                if (qh) { /* bit k of row j's qh -> bit 2j (k < 16) or 2j + 1 (k >= 16) of byte k % 16 */
                    v128_t lo, hi; /* (0x10 where set: bit 4, moved by the 16-bit shifts that never cross a byte) */
                    qh_bits(src + hs, &lo, &hi);
                    const v128_t prev = j ? wasm_v128_load(o + x4_hdr(type)) : wasm_i32x4_splat(0);
                    const int sl = (int)(2 * j) - 4, sh = sl + 1;
                    lo = sl < 0 ? wasm_u16x8_shr(lo, -sl) : wasm_i16x8_shl(lo, sl);
                    hi = sh < 0 ? wasm_u16x8_shr(hi, -sh) : wasm_i16x8_shl(hi, sh);
                    wasm_v128_store(o + x4_hdr(type), wasm_v128_or(prev, wasm_v128_or(lo, hi)));
                }
                memcpy(o + x4_quants(type) + j * ql, src + qo, ql);
            }
        }
    }
    rt_free(tmp);
    return true;
}

/* Row r of an x4 matrix (rows rb bytes apart, as in ggml's layout) dequantized:
 * each of its blocks put back in ggml's layout, then dequantized as such. */
void quant_x4_row(uint32_t type, const uint8_t *W, uint64_t rb, uint64_t r, uint64_t K, float *dst) {
    const uint64_t bb = quant_type(type)->type_size, hs = x4_hdr(type) / 4, qo = quants_at(type), ql = x4_qlen(type);
    const uint64_t j = r & 3;
    const uint8_t *g = W + (r - j) * rb;
    if (is_k(type)) {
        for (uint64_t b = 0; b < K / QK_K; b++) quant_dequant_impl(type, g + (4 * b + j) * bb, dst + QK_K * b, QK_K);
        return;
    }
    uint8_t blk[40];
    for (uint64_t b = 0; b < K / 32; b++, g += 4 * bb) {
        memcpy(blk, g + j * hs, hs);
        if (is_q5(type)) { /* the transposed bits back: bit k of qh */
            uint32_t qh = 0;
            for (int k = 0; k < 32; k++) qh |= (uint32_t)(g[x4_hdr(type) + k % 16] >> (2 * j + k / 16) & 1) << k;
            memcpy(blk + hs, &qh, 4);
        }
        memcpy(blk + qo, g + x4_quants(type) + j * ql, ql);
        quant_dequant_impl(type, blk, dst + 32 * b, 32);
    }
}
