/* quant_dequant.c: one row of any runnable type -> f32, bit-exact with
 * ggml's dequantize_row_* and gguf-py's dequantize (both compute each value
 * with the same f32 operations in the same order, no fused multiply-add):
 *   Q4_0 (q-8)*d   Q4_1 q*d+m   Q5_0 (q-16)*d   Q5_1 q*d+m   Q8_0/Q8_1/Q8_K q*d
 *   Q2_K (d*sc)*q - dmin*m      Q3_K (d*(sc-32))*q          Q4_K/Q5_K (d*sc)*q - dmin*m
 *   Q6_K (d*sc)*(q-32)
 * Layouts: quant_impl.h. */
#include "quant_impl.h"

static void dq_f16(const uint8_t *src, float *dst, uint64_t n) {
    uint64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        v128_t lo, hi;
        qi_h2f_x8((const uint16_t *)(src + 2 * k), &lo, &hi);
        wasm_v128_store(dst + k, lo);
        wasm_v128_store(dst + k + 4, hi);
    }
    for (; k < n; k++) dst[k] = qi_h2f_at(src + 2 * k);
}

static void dq_bf16(const uint8_t *src, float *dst, uint64_t n) {
    uint64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        v128_t lo, hi;
        qi_bf2f_x8((const uint16_t *)(src + 2 * k), &lo, &hi);
        wasm_v128_store(dst + k, lo);
        wasm_v128_store(dst + k + 4, hi);
    }
    for (; k < n; k++) dst[k] = qi_u2f((uint32_t)(src[2 * k] | (src[2 * k + 1] << 8)) << 16);
}

/* 16 bytes of nibbles -> 32 values (low nibbles first), as f32 times d plus m. */
QI_INLINE void put32(float *y, v128_t lo8, v128_t hi8, float d, float m, bool has_m) {
    const v128_t vd = wasm_f32x4_splat(d), vm = wasm_f32x4_splat(m);
    const v128_t h[4] = { wasm_i16x8_extend_low_i8x16(lo8), wasm_i16x8_extend_high_i8x16(lo8),
                          wasm_i16x8_extend_low_i8x16(hi8), wasm_i16x8_extend_high_i8x16(hi8) };
    for (int i = 0; i < 4; i++) {
        v128_t a = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(h[i])), vd);
        v128_t b = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(h[i])), vd);
        if (has_m) a = wasm_f32x4_add(a, vm), b = wasm_f32x4_add(b, vm);
        wasm_v128_store(y + 8 * i, a);
        wasm_v128_store(y + 8 * i + 4, b);
    }
}

/* The fifth bits of 32 elements (bit j of qh) as 0x10 in byte lanes. */
QI_INLINE void qh_bits(uint32_t qh, v128_t *lo, v128_t *hi) {
    const v128_t v = wasm_i32x4_splat((int32_t)qh);
    const v128_t bits = wasm_i64x2_splat(0x8040201008040201ll);
    const v128_t l = wasm_i8x16_shuffle(v, v, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const v128_t h = wasm_i8x16_shuffle(v, v, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const v128_t x10 = wasm_i8x16_splat(0x10);
    *lo = wasm_v128_and(wasm_i8x16_eq(wasm_v128_and(l, bits), bits), x10);
    *hi = wasm_v128_and(wasm_i8x16_eq(wasm_v128_and(h, bits), bits), x10);
}


static void dq_legacy(uint32_t type, const uint8_t *x, float *y, uint64_t nb) {
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    for (uint64_t b = 0; b < nb; b++, y += 32) {
        switch (type) {
        case GGML_TYPE_Q4_0: {
            const uint8_t *p = x + 18 * b;
            const v128_t q = wasm_v128_load(p + 2), o = wasm_i8x16_splat(8);
            put32(y, wasm_i8x16_sub(wasm_v128_and(q, m4), o), wasm_i8x16_sub(wasm_u8x16_shr(q, 4), o), qi_h2f_at(p), 0, false);
            break;
        }
        case GGML_TYPE_Q4_1: {
            const uint8_t *p = x + 20 * b;
            const v128_t q = wasm_v128_load(p + 4);
            put32(y, wasm_v128_and(q, m4), wasm_u8x16_shr(q, 4), qi_h2f_at(p), qi_h2f_at(p + 2), true);
            break;
        }
        case GGML_TYPE_Q5_0: {
            const uint8_t *p = x + 22 * b;
            const v128_t q = wasm_v128_load(p + 6), o = wasm_i8x16_splat(16);
            v128_t hl, hh;
            qh_bits(qi_ld32(p + 2), &hl, &hh);
            put32(y, wasm_i8x16_sub(wasm_v128_or(wasm_v128_and(q, m4), hl), o),
                  wasm_i8x16_sub(wasm_v128_or(wasm_u8x16_shr(q, 4), hh), o), qi_h2f_at(p), 0, false);
            break;
        }
        case GGML_TYPE_Q5_1: {
            const uint8_t *p = x + 24 * b;
            const v128_t q = wasm_v128_load(p + 8);
            v128_t hl, hh;
            qh_bits(qi_ld32(p + 4), &hl, &hh);
            put32(y, wasm_v128_or(wasm_v128_and(q, m4), hl), wasm_v128_or(wasm_u8x16_shr(q, 4), hh),
                  qi_h2f_at(p), qi_h2f_at(p + 2), true);
            break;
        }
        case GGML_TYPE_Q8_0: case GGML_TYPE_Q8_1: {
            const uint64_t bb = type == GGML_TYPE_Q8_0 ? 34 : 36;
            const uint8_t *p = x + bb * b;
            put32(y, wasm_v128_load(p + bb - 32), wasm_v128_load(p + bb - 16), qi_h2f_at(p), 0, false);
            break;
        }
        }
    }
}

static void dq_k(uint32_t type, const uint8_t *x, float *y, uint64_t nb) {
    for (uint64_t b = 0; b < nb; b++, y += QK_K) {
        switch (type) {
        case GGML_TYPE_Q2_K: {
            const uint8_t *p = x + 84 * b, *sc = p, *qs = p + 16;
            const float d = qi_h2f_at(p + 80), dmin = qi_h2f_at(p + 82);
            for (int e = 0; e < QK_K; e++) {
                const int h = e >> 7, j = (e >> 5) & 3, l = e & 31, s = e >> 4;
                const float dl = d * (float)(sc[s] & 0xF), ml = dmin * (float)(sc[s] >> 4);
                y[e] = dl * (float)((qs[32 * h + l] >> (2 * j)) & 3) - ml;
            }
            break;
        }
        case GGML_TYPE_Q3_K: {
            const uint8_t *p = x + 110 * b, *hm = p, *qs = p + 32;
            const float d = qi_h2f_at(p + 108);
            int8_t sc[16];
            scales_q3k(p + 96, sc);
            for (int e = 0; e < QK_K; e++) {
                const int h = e >> 7, j = (e >> 5) & 3, l = e & 31;
                const int q = ((qs[32 * h + l] >> (2 * j)) & 3) - ((hm[l] >> (4 * h + j)) & 1 ? 0 : 4);
                y[e] = (d * (float)sc[e >> 4]) * (float)q;
            }
            break;
        }
        case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: {
            const bool five = type == GGML_TYPE_Q5_K;
            const uint8_t *p = x + (five ? 176 : 144) * b, *qh = p + 16, *qs = p + (five ? 48 : 16);
            const float d = qi_h2f_at(p), dmin = qi_h2f_at(p + 2);
            for (int g = 0; g < 8; g++) {
                uint8_t s, m;
                scale_min_k4(g, p + 4, &s, &m);
                const float dl = d * (float)s, ml = dmin * (float)m;
                const uint8_t *q = qs + 32 * (g >> 1);
                const int shift = 4 * (g & 1);
                for (int l = 0; l < 32; l++) {
                    int v = (q[l] >> shift) & 0xF;
                    if (five) v |= ((qh[l] >> g) & 1) << 4;
                    y[32 * g + l] = dl * (float)v - ml;
                }
            }
            break;
        }
        case GGML_TYPE_Q6_K: {
            const uint8_t *p = x + 210 * b, *ql = p, *qh = p + 128;
            const int8_t *sc = (const int8_t *)(p + 192);
            const float d = qi_h2f_at(p + 208);
            for (int e = 0; e < QK_K; e++) {
                const int h = e >> 7, j = (e >> 5) & 3, l = e & 31;
                const int lo = (ql[64 * h + 32 * (j & 1) + l] >> (4 * (j >> 1))) & 0xF;
                const int hi = (qh[32 * h + l] >> (2 * j)) & 3;
                y[e] = (d * (float)sc[e >> 4]) * (float)((lo | (hi << 4)) - 32);
            }
            break;
        }
        case GGML_TYPE_Q8_K: {
            const uint8_t *p = x + 292 * b;
            const float d = qi_ldf(p);
            for (int e = 0; e < QK_K; e++) y[e] = (float)(int8_t)p[4 + e] * d;
            break;
        }
        }
    }
}

void quant_dequant_impl(uint32_t type, const uint8_t *src, float *dst, uint64_t n) {
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
    case GGML_TYPE_F16: dq_f16(src, dst, n); break;
    case GGML_TYPE_BF16: dq_bf16(src, dst, n); break;
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q8_1:
        dq_legacy(type, src, dst, n / 32);
        break;
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K: case GGML_TYPE_Q8_K:
        dq_k(type, src, dst, n / QK_K);
        break;
    default: break;
    }
}
