/* quant_impl.h: internals shared by the quant_*.c files (not for other modules).
 *
 * Block layouts (ggml-common.h; all little-endian, no padding):
 *   Q4_0  32 el, 18 B: f16 d | u8 qs[16]               x = (nibble - 8) * d
 *   Q4_1  32 el, 20 B: f16 d, f16 m | u8 qs[16]        x = nibble * d + m
 *   Q5_0  32 el, 22 B: f16 d | u32 qh | u8 qs[16]      x = ((nibble | bit<<4) - 16) * d
 *   Q5_1  32 el, 24 B: f16 d, f16 m | u32 qh | qs[16]  x = (nibble | bit<<4) * d + m
 *   Q8_0  32 el, 34 B: f16 d | i8 qs[32]
 *   Q8_1  32 el, 36 B: f16 d, f16 s (= d * sum qs) | i8 qs[32]
 *   nibbles: element j < 16 is qs[j] & 15, element j >= 16 is qs[j - 16] >> 4;
 *   high bit of element j is bit j of qh.
 *   Q2_K 256 el,  84 B: u8 scales[16] | u8 qs[64] | f16 d, dmin
 *   Q3_K 256 el, 110 B: u8 hmask[32] | u8 qs[64] | u8 scales[12] | f16 d
 *   Q4_K 256 el, 144 B: f16 d, dmin | u8 scales[12] | u8 qs[128]
 *   Q5_K 256 el, 176 B: f16 d, dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
 *   Q6_K 256 el, 210 B: u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
 *   Q8_K 256 el, 292 B: f32 d | i8 qs[256] | i16 bsums[16]
 *
 * Activation buffers ("xq", quant_act_bytes): one row per token, each row
 * act_row_bytes() apart (a multiple of 64). The values are exactly those of
 * llama.cpp's vec_dot type, but the layout is this module's own, chosen for
 * the SIMD kernels (int16 quants, so weights are widened once and reused):
 *   ACT_F32  (F32, F16, BF16 weights): f32 x[K], already rounded to f16/bf16
 *   ACT_Q8_0 (Q4_0, Q5_0, Q8_0):      i16 q[K] | f32 d[K/32] (d as rounded to f16)
 *   ACT_Q8_1 (Q4_1, Q5_1, Q8_1):      i16 q[K] | f32 (d, s)[K/32] (pairs; both f16-rounded)
 *   ACT_Q8_K (K-quants, Q8_K):        i16 q[K] | f32 d[K/256] | i16 bsum16[K/16] | i16 bsum32[K/32]
 */
#ifndef REALM_QUANT_IMPL_H
#define REALM_QUANT_IMPL_H
#include "quant.h"
#include <wasm_simd128.h>

/* build.py compiles with -fassociative-math. The kernels here spell out
 * their SIMD sums, and must not have them re-ordered: every (row, token)
 * result has to come out bit-identical whichever rows and tokens a call
 * groups it with (thread splits, prompt vs decode), and dequantization has
 * to match gguf-py bit for bit. */
#pragma clang fp reassociate(off)

#define QI_INLINE static inline __attribute__((always_inline))
/* Loops over rows / tokens / groups with compile-time bounds: unrolled fully,
 * so their accumulators live in registers (clang otherwise keeps some of them
 * in memory). */
#define QI_UNROLL _Pragma("clang loop unroll(full)")
#define QK_K 256

enum { ACT_F32 = 0, ACT_F16 = 1, ACT_BF16 = 2, ACT_Q8_0 = 3, ACT_Q8_1 = 4, ACT_Q8_K = 5, ACT_NONE = 6 };

/* Which activation format a runnable weight type takes (ACT_NONE otherwise). */
int quant_act_kind(uint32_t type);
/* Bytes of one activation row of K elements (multiple of 64). */
uint64_t quant_act_row_bytes(uint32_t type, uint64_t K);

/* A runnable type and a K its block size divides; else rt_err and false. */
bool quant_check(uint32_t type, uint64_t K);

/* After the T activation rows, Q8_0 / Q8_1 activation buffers hold, per group
 * of four tokens (tokens 4g .. 4g+3, missing ones 0), the tokens' scales
 * transposed: f32 d[K/32][4], then for Q8_1 f32 s[K/32][4]. Bytes per group: */
static inline uint64_t qi_group_bytes(int kind, uint64_t K) {
    return kind == ACT_Q8_0 ? K / 32 * 16 : kind == ACT_Q8_1 ? K / 32 * 32 : 0;
}

/* Block size of the activation format: 1, 32 or 256. */
static inline uint64_t act_block(int kind) {
    return kind == ACT_Q8_K ? 256 : (kind == ACT_Q8_0 || kind == ACT_Q8_1) ? 32 : 1;
}

/* --------------------------------------------------------------- f16 / bf16 */
static inline uint32_t qi_f2u(float f) { union { float f; uint32_t u; } v = { f }; return v.u; }
static inline float qi_u2f(uint32_t u) { union { uint32_t u; float f; } v = { u }; return v.f; }

/* Exact f16 -> f32 (subnormals, inf and NaN included), branch-free: the
 * exponent/mantissa bits shifted into an f32 are the value times 2^-112. */
QI_INLINE float qi_h2f(uint16_t h) {
    uint32_t em = (uint32_t)(h & 0x7fff) << 13;
    uint32_t u = qi_f2u(qi_u2f(em) * 0x1p112f);
    if (em >= (0x7c00u << 13)) u |= 0x7f800000u;
    return qi_u2f(u | ((uint32_t)(h & 0x8000) << 16));
}
/* Unaligned little-endian loads. (-ffreestanding makes plain memcpy a call;
 * the builtin becomes one load.) */
QI_INLINE uint16_t qi_ld16(const void *p) { uint16_t v; __builtin_memcpy(&v, p, 2); return v; }
QI_INLINE uint32_t qi_ld32(const void *p) { uint32_t v; __builtin_memcpy(&v, p, 4); return v; }
QI_INLINE float qi_ldf(const void *p) { float v; __builtin_memcpy(&v, p, 4); return v; }
QI_INLINE float qi_h2f_at(const uint8_t *p) { return qi_h2f(qi_ld16(p)); }

/* Four f16 (as the low 16 bits of u32 lanes) -> f32x4, exact. */
QI_INLINE v128_t qi_h2f_x4(v128_t u32lanes) {
    const v128_t em = wasm_i32x4_shl(wasm_v128_and(u32lanes, wasm_i32x4_splat(0x7fff)), 13);
    v128_t f = wasm_f32x4_mul(em, wasm_f32x4_splat(0x1p112f));
    const v128_t infnan = wasm_i32x4_ge(em, wasm_i32x4_splat(0x7c00 << 13));
    f = wasm_v128_or(f, wasm_v128_and(infnan, wasm_i32x4_splat(0x7f800000)));
    const v128_t sign = wasm_i32x4_shl(wasm_v128_and(u32lanes, wasm_i32x4_splat(0x8000)), 16);
    return wasm_v128_or(f, sign);
}
/* Four f16 in the HIGH 16 bits of u32 lanes -> f32x4, exact: an arithmetic
 * shift by 3 puts sign, exponent and mantissa where an f32 has them (the
 * value times 2^-112, subnormals included); clear the sign copies, scale. */
QI_INLINE v128_t qi_h2f_hi_x4(v128_t hi16) {
    const v128_t v = wasm_v128_and(wasm_i32x4_shr(hi16, 3), wasm_i32x4_splat((int32_t)0x8fffffffu));
    const v128_t f = wasm_f32x4_mul(v, wasm_f32x4_splat(0x1p112f));
    const v128_t e = wasm_i32x4_splat(0x0f800000); /* f16 exponent 31: inf / NaN */
    return wasm_v128_or(f, wasm_v128_and(wasm_i32x4_eq(wasm_v128_and(v, e), e), wasm_i32x4_splat(0x7f800000)));
}
/* Eight f16 at p -> two f32x4, exact. */
QI_INLINE void qi_h2f_x8(const uint16_t *p, v128_t *lo, v128_t *hi) {
    const v128_t h = wasm_v128_load(p), z = wasm_i32x4_splat(0);
    *lo = qi_h2f_hi_x4(wasm_i16x8_shuffle(z, h, 0, 8, 1, 9, 2, 10, 3, 11));
    *hi = qi_h2f_hi_x4(wasm_i16x8_shuffle(z, h, 4, 12, 5, 13, 6, 14, 7, 15));
}
QI_INLINE void qi_bf2f_x8(const uint16_t *p, v128_t *lo, v128_t *hi) {
    const v128_t h = wasm_v128_load(p);
    *lo = wasm_i32x4_shl(wasm_u32x4_extend_low_u16x8(h), 16);
    *hi = wasm_i32x4_shl(wasm_u32x4_extend_high_u16x8(h), 16);
}

/* f32x4 -> f16 bits in the low 16 bits of each u32 lane, round to nearest
 * even exactly as ggml (and numpy astype(float16)); NaN -> quiet NaN. */
QI_INLINE v128_t qi_f2h_x4(v128_t f) {
    const v128_t sign = wasm_v128_and(f, wasm_i32x4_splat((int32_t)0x80000000u));
    const v128_t a = wasm_v128_xor(f, sign);
    /* normal range: rebias, round half to even on bit 13 */
    const v128_t odd = wasm_v128_and(wasm_u32x4_shr(a, 13), wasm_i32x4_splat(1));
    v128_t nrm = wasm_i32x4_add(a, wasm_i32x4_splat((int32_t)(((uint32_t)(15 - 127) << 23) + 0xfff)));
    nrm = wasm_u32x4_shr(wasm_i32x4_add(nrm, odd), 13);
    /* subnormal range: let an f32 addition do the rounding */
    const v128_t magic = wasm_i32x4_splat(((127 - 15) + (23 - 10) + 1) << 23);
    const v128_t sub = wasm_i32x4_sub(wasm_f32x4_add(a, magic), magic);
    v128_t o = wasm_v128_bitselect(sub, nrm, wasm_i32x4_lt(a, wasm_i32x4_splat(113 << 23)));
    /* overflow -> inf, NaN -> quiet NaN */
    const v128_t big = wasm_i32x4_ge(a, wasm_i32x4_splat((127 + 16) << 23));
    const v128_t nan = wasm_i32x4_gt(a, wasm_i32x4_splat(0x7f800000));
    const v128_t special = wasm_v128_bitselect(wasm_i32x4_splat(0x7e00), wasm_i32x4_splat(0x7c00), nan);
    o = wasm_v128_bitselect(special, o, big);
    return wasm_v128_or(o, wasm_u32x4_shr(sign, 16));
}
/* f32x4 -> bf16 bits (low 16 of each lane), ggml_compute_fp32_to_bf16. */
QI_INLINE v128_t qi_f2bf_x4(v128_t f) {
    const v128_t a = wasm_v128_and(f, wasm_i32x4_splat(0x7fffffff));
    const v128_t nan = wasm_i32x4_gt(a, wasm_i32x4_splat(0x7f800000));
    const v128_t qnan = wasm_v128_or(wasm_u32x4_shr(f, 16), wasm_i32x4_splat(64));
    const v128_t lsb = wasm_v128_and(wasm_u32x4_shr(f, 16), wasm_i32x4_splat(1));
    const v128_t r = wasm_u32x4_shr(wasm_i32x4_add(wasm_i32x4_add(f, wasm_i32x4_splat(0x7fff)), lsb), 16);
    return wasm_v128_and(wasm_v128_bitselect(qnan, r, nan), wasm_i32x4_splat(0xffff));
}

/* ------------------------------------------------------ K-quant scales */
/* Q4_K / Q5_K 6-bit scale and min of sub-block j (ggml's get_scale_min_k4). */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q3_K: 16 signed 6-bit scales (minus 32) from 12 bytes. */
static inline void scales_q3k(const uint8_t *s, int8_t *out) {
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
        const int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* -------------------------------------------------------------- reductions */
QI_INLINE float qi_hsum_f32(v128_t v) {
    v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(v, 0);
}
QI_INLINE int32_t qi_hsum_i32(v128_t v) {
    v = wasm_i32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_i32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_i32x4_extract_lane(v, 0);
}

/* ------------------------------------------------ per-family entry points */
void quant_dequant_impl(uint32_t type, const uint8_t *src, float *dst, uint64_t n);
void quant_act_impl(int kind, const float *x, uint64_t K, uint8_t *row);
/* Convert one internal activation row to ggml's bytes of the vec_dot type
 * (f32 / f16 / bf16 values, or block_q8_0 / block_q8_1 / block_q8_K). */
void quant_act_export_row(int kind, const uint8_t *row, uint64_t K, uint8_t *out);
uint64_t quant_act_export_row_bytes(int kind, uint64_t K);

/* Kernels: rows [r0, r1) of W (row_bytes apart), tokens [0, T) with
 * activation rows xrb apart, y[t * ys + r]. */
#define QI_MM_ARGS const uint8_t *W, uint64_t rb, uint64_t K, uint64_t r0, uint64_t r1, \
                   const uint8_t *xq, uint64_t xrb, uint64_t T, float *y, uint64_t ys
void quant_mm_f32(QI_MM_ARGS);
void quant_mm_f16(QI_MM_ARGS);
void quant_mm_bf16(QI_MM_ARGS);
void quant_mm_q4_0(QI_MM_ARGS);
void quant_mm_q4_1(QI_MM_ARGS);
void quant_mm_q5_0(QI_MM_ARGS);
void quant_mm_q5_1(QI_MM_ARGS);
void quant_mm_q8_0(QI_MM_ARGS);
void quant_mm_q8_1(QI_MM_ARGS);
void quant_mm_q2_K(QI_MM_ARGS);
void quant_mm_q3_K(QI_MM_ARGS);
void quant_mm_q4_K(QI_MM_ARGS);
void quant_mm_q5_K(QI_MM_ARGS);
void quant_mm_q6_K(QI_MM_ARGS);
void quant_mm_q8_K(QI_MM_ARGS);

/* The common loop of every kernel: rows in chunks that stay in cache, tokens
 * four at a time. ROWS(w, rb, K, x, xrb, NR, NT, out, ys, G) computes rows
 * w .. w + (NR-1)*rb for NT tokens into out[t * ys + r] (G: the token
 * group's transposed scales, qi_group_bytes; unused by some); it must be
 * always_inline so that each (NR, NT) gets its own specialised body. One
 * token uses four rows at a time (the activations are loaded once for four
 * rows); several tokens use one row (its weights are widened once for up to
 * four tokens). */
#define QI_TOKEN_TILE 4
static inline uint64_t qi_chunk_rows(uint64_t rb) {
    uint64_t c = (48u << 10) / (rb ? rb : 1);
    return c < 4 ? 4 : c & ~(uint64_t)3;
}
#define QI_DEFINE_MM(NAME, ROWS, KIND, NR1)                                                            \
    void NAME(QI_MM_ARGS) {                                                                   \
        const uint64_t chunk = T > QI_TOKEN_TILE ? qi_chunk_rows(rb) : (r1 - r0);              \
        const uint64_t gb = qi_group_bytes(KIND, K);                                           \
        for (uint64_t rc = r0; rc < r1; rc += chunk) {                                         \
            const uint64_t re = rc + chunk < r1 ? rc + chunk : r1;                             \
            for (uint64_t t = 0; t < T; t += QI_TOKEN_TILE) {                                  \
                const uint64_t nt = T - t < QI_TOKEN_TILE ? T - t : QI_TOKEN_TILE;            \
                const uint8_t *x = xq + t * xrb;                                               \
                const uint8_t *G = xq + T * xrb + t / QI_TOKEN_TILE * gb;                      \
                (void)G;                                                                       \
                float *yo = y + t * ys;                                                        \
                uint64_t r = rc;                                                               \
                switch (nt) {                                                                  \
                case 4: for (; r < re; r++) ROWS(W + r * rb, rb, K, x, xrb, 1, 4, yo + r, ys, G); break; \
                case 3: for (; r < re; r++) ROWS(W + r * rb, rb, K, x, xrb, 1, 3, yo + r, ys, G); break; \
                case 2: for (; r < re; r++) ROWS(W + r * rb, rb, K, x, xrb, 1, 2, yo + r, ys, G); break; \
                default:                                                                       \
                    for (; r + NR1 <= re; r += NR1) ROWS(W + r * rb, rb, K, x, xrb, NR1, 1, yo + r, ys, G); \
                    for (; r < re; r++) ROWS(W + r * rb, rb, K, x, xrb, 1, 1, yo + r, ys, G);    \
                    break;                                                                     \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

#endif
