/* quant_act.c: activations (f32 rows) -> the vec_dot type of a weight type,
 * rounded exactly as llama.cpp's CPU backend does it on x86 (AVX/AVX2, the
 * build every reference run here uses; ggml-cpu/arch/x86/quants.c):
 *   F16   round to nearest even (F16C, = GGML_FP32_TO_FP16), kept times 2^112 (quant_float.c)
 *   BF16  round to nearest even, NaN quieted (ggml_compute_fp32_to_bf16)
 *   Q8_0  d = amax/127 (stored as f16), q = round_half_even(x * (127/amax))
 *   Q8_1  as Q8_0, plus s = f16(d * sum q) with the unrounded d
 *   Q8_K  (= quantize_row_q8_K_ref) max = first x of largest |x|,
 *         iscale = -127/max, q = min(127, nearest_int(iscale * x)) (half to
 *         even), bsums, d = 1/iscale (f32)
 * ggml's portable reference quantize_row_q8_0_ref / q8_1_ref instead use
 * q = roundf(x * (1/d)) (half away from zero, and 1/d is not always 127/amax):
 * compile with -DREALM_Q8_REF_ROUNDING for that. Scalar x86 builds, ARM and
 * llama.cpp's own wasm build each round differently again; on SmolLM2 a single
 * flipped activation rounding can move logits by tenths, so matching the
 * reference engine matters.
 * Layout of the result: quant_impl.h. */
#include "quant_impl.h"

#ifdef REALM_Q8_REF_ROUNDING
/* roundf (half away from zero) of four floats, exact: x - trunc(x) is exact. */
QI_INLINE v128_t round_away(v128_t v) {
    const v128_t t = wasm_f32x4_trunc(v);
    const v128_t frac = wasm_f32x4_abs(wasm_f32x4_sub(v, t));
    const v128_t one = wasm_v128_or(wasm_f32x4_splat(1.0f), wasm_v128_and(v, wasm_i32x4_splat((int32_t)0x80000000u)));
    return wasm_f32x4_add(t, wasm_v128_and(one, wasm_f32x4_ge(frac, wasm_f32x4_splat(0.5f))));
}
#endif

QI_INLINE float absmax(const float *x, uint64_t n) { /* n a multiple of 16 */
    v128_t m0 = wasm_f32x4_splat(0), m1 = m0;
    for (uint64_t j = 0; j < n; j += 8) {
        m0 = wasm_f32x4_pmax(m0, wasm_f32x4_abs(wasm_v128_load(x + j)));
        m1 = wasm_f32x4_pmax(m1, wasm_f32x4_abs(wasm_v128_load(x + j + 4)));
    }
    m0 = wasm_f32x4_pmax(m0, m1);
    m0 = wasm_f32x4_pmax(m0, wasm_i32x4_shuffle(m0, m0, 2, 3, 0, 1));
    m0 = wasm_f32x4_pmax(m0, wasm_i32x4_shuffle(m0, m0, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(m0, 0);
}

/* Q8_0 / Q8_1 row (layout: quant_impl.h): i16 quants, each block of 32
 * permuted to [0 2 .. 14 | 1 3 .. 15 | 16 18 .. 30 | 17 19 .. 31] for the
 * kernels (quant_q.c), then per block f32 d * 2^112 and i32 sum(q) (Q8_0) or
 * f32 s * 2^112 (Q8_1), d and s as rounded to f16. */
static void act_q8_0(const float *x, uint64_t K, uint8_t *row, bool with_s, bool bytes) {
    const uint64_t nb = K / 32;
    int16_t *q = (int16_t *)row;
    uint32_t *meta = (uint32_t *)(row + (bytes ? 1 : 2) * K);
    for (uint64_t b = 0; b < nb; b++) {
        const float *xb = x + 32 * b;
        const float amax = absmax(xb, 32);
        const float d = amax / 127.0f;
#ifdef REALM_Q8_REF_ROUNDING
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
#define Q8_ROUND(v) round_away(v)
#else
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
#define Q8_ROUND(v) wasm_f32x4_nearest(v)
#endif
        const v128_t vid = wasm_f32x4_splat(id);
        v128_t sum = wasm_i32x4_splat(0), e[4];
        for (int j = 0; j < 32; j += 8) {
            const v128_t a = wasm_i32x4_trunc_sat_f32x4(Q8_ROUND(wasm_f32x4_mul(wasm_v128_load(xb + j), vid)));
            const v128_t c = wasm_i32x4_trunc_sat_f32x4(Q8_ROUND(wasm_f32x4_mul(wasm_v128_load(xb + j + 4), vid)));
            sum = wasm_i32x4_add(sum, wasm_i32x4_add(a, c));
            e[j / 8] = wasm_i16x8_narrow_i32x4(a, c);
        }
        int16_t *qb = q + 32 * b;
        if (bytes) { /* B kinds: i8, natural order */
            wasm_v128_store(row + 32 * b, wasm_i8x16_narrow_i16x8(e[0], e[1]));
            wasm_v128_store(row + 32 * b + 16, wasm_i8x16_narrow_i16x8(e[2], e[3]));
        } else {
        wasm_v128_store(qb, wasm_i16x8_shuffle(e[0], e[1], 0, 2, 4, 6, 8, 10, 12, 14));
        wasm_v128_store(qb + 8, wasm_i16x8_shuffle(e[0], e[1], 1, 3, 5, 7, 9, 11, 13, 15));
        wasm_v128_store(qb + 16, wasm_i16x8_shuffle(e[2], e[3], 0, 2, 4, 6, 8, 10, 12, 14));
        wasm_v128_store(qb + 24, wasm_i16x8_shuffle(e[2], e[3], 1, 3, 5, 7, 9, 11, 13, 15));
        }
        const int32_t isum = qi_hsum_i32(sum);
        meta[2 * b] = qi_f2u(qi_h2f(rt_f32_to_f16(d)) * 0x1p112f);
        meta[2 * b + 1] = with_s ? qi_f2u(qi_h2f(rt_f32_to_f16((float)isum * d)) * 0x1p112f) : (uint32_t)isum;
    }
}

static void act_q8_K(const float *x, uint64_t K, uint8_t *row, bool bytes) {
    const uint64_t nb = K / QK_K;
    int16_t *q = (int16_t *)row;
    float *dd = (float *)(row + (bytes ? 1 : 2) * K);
    int16_t *bs16 = (int16_t *)(dd + nb), *bs32 = bs16 + K / 16;
    for (uint64_t b = 0; b < nb; b++) {
        const float *xb = x + QK_K * b;
        int16_t *qb = q + QK_K * b;
        const float amax = absmax(xb, QK_K);
        if (!(amax > 0.0f)) {
            dd[b] = 0.0f;
            memset(bytes ? (void *)(row + QK_K * b) : (void *)qb, 0, QK_K * (bytes ? 1 : sizeof(int16_t)));
            memset(bs16 + 16 * b, 0, 16 * sizeof(int16_t));
            memset(bs32 + 8 * b, 0, 8 * sizeof(int16_t));
            continue;
        }
        float max = 0.0f; /* the first element of largest magnitude, as ggml picks it */
        for (int j = 0; j < QK_K; j++)
            if (rt_fabsf(xb[j]) == amax) { max = xb[j]; break; }
        const float iscale = -127.0f / max;
        const v128_t vs = wasm_f32x4_splat(iscale), lim = wasm_i32x4_splat(127);
        for (int j = 0; j < QK_K; j += 16) {
            v128_t i[4];
            for (int k = 0; k < 4; k++)
                i[k] = wasm_i32x4_min(wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(
                           wasm_f32x4_mul(wasm_v128_load(xb + j + 4 * k), vs))), lim);
            const v128_t s = wasm_i32x4_add(wasm_i32x4_add(i[0], i[1]), wasm_i32x4_add(i[2], i[3]));
            bs16[16 * b + j / 16] = (int16_t)qi_hsum_i32(s);
            const v128_t e0 = wasm_i16x8_narrow_i32x4(i[0], i[1]), e1 = wasm_i16x8_narrow_i32x4(i[2], i[3]);
            /* permuted as for Q8_0: even elements of these 16, then odd ones */
            if (bytes) {
                wasm_v128_store(row + QK_K * b + j, wasm_i8x16_narrow_i16x8(e0, e1));
            } else {
                wasm_v128_store(qb + j, wasm_i16x8_shuffle(e0, e1, 0, 2, 4, 6, 8, 10, 12, 14));
                wasm_v128_store(qb + j + 8, wasm_i16x8_shuffle(e0, e1, 1, 3, 5, 7, 9, 11, 13, 15));
            }
        }
        for (int j = 0; j < 8; j++) bs32[8 * b + j] = (int16_t)(bs16[16 * b + 2 * j] + bs16[16 * b + 2 * j + 1]);
        dd[b] = 1.0f / iscale;
    }
}

void quant_act_impl(int kind, const float *x, uint64_t K, uint8_t *row) {
    float *o = (float *)row;
    uint64_t k = 0;
    switch (kind) {
    case ACT_F32:
        memcpy(o, x, K * sizeof(float));
        break;
    case ACT_F16: /* f16-rounded, times 2^112 (exact): the F16 kernels then convert weights with
                   * two integer ops and no scaling (quant_float.c load8), products unchanged */
        for (; k + 4 <= K; k += 4)
            wasm_v128_store(o + k, wasm_f32x4_mul(qi_h2f_x4(qi_f2h_x4(wasm_v128_load(x + k))), wasm_f32x4_splat(0x1p112f)));
        for (; k < K; k++) o[k] = qi_h2f(rt_f32_to_f16(x[k])) * 0x1p112f;
        break;
    case ACT_BF16:
        for (; k + 4 <= K; k += 4)
            wasm_v128_store(o + k, wasm_i32x4_shl(qi_f2bf_x4(wasm_v128_load(x + k)), 16));
        for (; k < K; k++) {
            const v128_t v = qi_f2bf_x4(wasm_f32x4_splat(x[k]));
            o[k] = qi_u2f((uint32_t)wasm_i32x4_extract_lane(v, 0) << 16);
        }
        break;
    case ACT_Q8_0: act_q8_0(x, K, row, false, false); break;
    case ACT_Q8_1: act_q8_0(x, K, row, true, false); break;
    case ACT_Q8_K: act_q8_K(x, K, row, false); break;
    case ACT_Q8_0B: act_q8_0(x, K, row, false, true); break;
    case ACT_Q8_1B: act_q8_0(x, K, row, true, true); break;
    case ACT_Q8_KB: act_q8_K(x, K, row, true); break;
    default: break;
    }
}

/* ------------------------------------------------------------------ export */
uint64_t quant_act_export_row_bytes(int kind, uint64_t K) {
    switch (qi_kind_base(kind)) {
    case ACT_F32: return 4 * K;
    case ACT_F16: case ACT_BF16: return 2 * K;
    case ACT_Q8_0: return K / 32 * 34;
    case ACT_Q8_1: return K / 32 * 36;
    case ACT_Q8_K: return K / QK_K * 292;
    default: return 0;
    }
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

void quant_act_export_row(int kind, const uint8_t *row, uint64_t K, uint8_t *out) {
    const float *f = (const float *)row;
    const int16_t *q = (const int16_t *)row;
    const bool bytes = qi_quant_bytes(kind) == 1;
    const int8_t *q8 = (const int8_t *)row;
    kind = qi_kind_base(kind);
    switch (kind) {
    case ACT_F32: memcpy(out, row, 4 * K); break;
    case ACT_F16: for (uint64_t k = 0; k < K; k++) put16(out + 2 * k, rt_f32_to_f16(f[k] * 0x1p-112f)); break;
    case ACT_BF16: for (uint64_t k = 0; k < K; k++) put16(out + 2 * k, (uint16_t)(qi_f2u(f[k]) >> 16)); break;
    case ACT_Q8_0: case ACT_Q8_1: {
        const uint64_t nb = K / 32, bb = kind == ACT_Q8_0 ? 34 : 36;
        const float *meta = (const float *)(row + (bytes ? 1 : 2) * K);
        for (uint64_t b = 0; b < nb; b++) {
            uint8_t *o = out + b * bb;
            put16(o, rt_f32_to_f16(meta[2 * b] * 0x1p-112f));
            if (kind == ACT_Q8_1) put16(o + 2, rt_f32_to_f16(meta[2 * b + 1] * 0x1p-112f));
            for (int j = 0; j < 32; j++) { /* undo the permutation */
                const int h = j >> 4, i = j & 15;
                o[bb - 32 + j] = bytes ? (uint8_t)q8[32 * b + j] : (uint8_t)(int8_t)q[32 * b + 16 * h + 8 * (i & 1) + (i >> 1)];
            }
        }
        break;
    }
    case ACT_Q8_K: {
        const uint64_t nb = K / QK_K;
        const float *dd = (const float *)(row + (bytes ? 1 : 2) * K);
        const int16_t *bs16 = (const int16_t *)(dd + nb);
        for (uint64_t b = 0; b < nb; b++) {
            uint8_t *o = out + b * 292;
            memcpy(o, &dd[b], 4);
            for (int j = 0; j < QK_K; j++) /* undo the permutation */
                o[4 + j] = bytes ? (uint8_t)q8[QK_K * b + j] : (uint8_t)(int8_t)q[QK_K * b + (j & ~15) + 8 * (j & 1) + ((j & 15) >> 1)];
            for (int j = 0; j < 16; j++) put16(o + 260 + 2 * j, (uint16_t)bs16[16 * b + j]);
        }
        break;
    }
    default: break;
    }
}
