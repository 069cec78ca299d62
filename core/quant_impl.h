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
 * the SIMD kernels:
 *   ACT_F32, ACT_BF16 (F32, BF16 weights): f32 x[K], already rounded to bf16 for BF16
 *   ACT_F16  (F16 weights): f32 x[K] rounded to f16, times 2^112 (the kernel's weights carry 2^-112)
 *   ACT_Q8_0 (Q4_0, Q5_0, Q8_0):      i16 q[K] | per block of 32: f32 d * 2^112, i32 sum(q)
 *   ACT_Q8_1 (Q4_1, Q5_1, Q8_1):      i16 q[K] | per block of 32: f32 d * 2^112, f32 s * 2^112
 *   ACT_Q8_K (K-quants, Q8_K):        i16 q[K] | f32 d[K/256] | i16 bsum16[K/16] | i16 bsum32[K/32]
 *   ACT_Q8_0B, ACT_Q8_1B, ACT_Q8_KB (relaxed-SIMD builds, see below): the same
 *   with i8 q[K] in natural order
 * (d and s of Q8_0 / Q8_1 as rounded to f16, so below 2^16 and d * 2^112 is
 * exact.) The i16 quants of every block of 32 are stored permuted:
 *   [x0 x2 x4 .. x14 | x1 x3 .. x15 | x16 x18 .. x30 | x17 x19 .. x31]
 * A 16-bit lane of weight bytes holds two neighbouring elements; one mask or
 * shift turns it into two lanes that meet these vectors in i32x4.dot_i16x8
 * (quant_q.c, quant_k.c). quant_act_export_row undoes all of it.
 */
#ifndef REALM_QUANT_IMPL_H
#define REALM_QUANT_IMPL_H
#include "quant.h"

/* build.py compiles with -fassociative-math. The kernels here spell out
 * their SIMD sums, and must not have them re-ordered: every (row, token)
 * result has to come out bit-identical whichever rows and tokens a call
 * groups it with (thread splits, prompt vs decode), and dequantization has
 * to match gguf-py bit for bit. The pragma comes before <wasm_simd128.h>:
 * its intrinsics (wasm_f32x4_mul, ...) are functions whose float operations
 * take the flags in force where they are defined; included first, they kept
 * "reassoc", and LLVM rewrote a * (b * c) as (a * b) * c in some kernels but
 * not others. (No .c file of the quant module includes the header itself.)
 * contract(off): no a * b + c becomes a multiply-add; the relaxed-SIMD build otherwise
 * turned the float kernels' scalar tails (K not a multiple of 8: LoRA ranks such as 4)
 * into f32x4.relaxed_madd, other bits than the SIMD128 build and the GPU. */
#pragma clang fp reassociate(off) contract(off)
#include <wasm_simd128.h>

#define QI_INLINE static inline __attribute__((always_inline))
/* Loops over rows / tokens / groups with compile-time bounds: unrolled fully,
 * so their accumulators live in registers (clang otherwise keeps some of them
 * in memory). */
#define QI_UNROLL _Pragma("clang loop unroll(full)")
#define QK_K 256
/* An empty asm with a memory clobber: the compiler may not move loads across
 * it. LLVM's wasm backend does not weigh register pressure, and left alone it
 * hoists every load of an unrolled super-block to the top; the engine's
 * register allocator (x86 has 16 vector registers) then spills them all. */
#define QI_BARRIER() __asm__ volatile("" ::: "memory")
/* The same, and the value v must be computed before it: pins arithmetic, not
 * only loads, to its place (LLVM sinks arithmetic below plain barriers). */
#define QI_PIN(v) __asm__ volatile("" : "+r"(v) :: "memory")
/* Both of those steer LLVM only: the wasm has no trace of them. Cranelift
 * (wasmtime) keeps a function's loads, stores and global writes in order but
 * places pure arithmetic just before its first use by one of them; a kernel's
 * sums are first used after its last load, so every load of an unrolled
 * super-block came first and lived on the stack (Q4_K's matvec: 210 spill
 * moves per four rows and 256 columns). QI_ANCHOR(v) writes a lane of v to a
 * global of this instance (one store, no bounds check, never read): the
 * arithmetic v depends on is computed there, before the loads that follow. */
__asm__(".globaltype qi_sink, i64");
#define QI_ANCHOR(v) __asm__ volatile("local.get %0\n\tglobal.set qi_sink" :: "r"(wasm_i64x2_extract_lane((v), 0)))

enum { ACT_F32 = 0, ACT_F16 = 1, ACT_BF16 = 2, ACT_Q8_0 = 3, ACT_Q8_1 = 4, ACT_Q8_K = 5,
       ACT_Q8_0B = 6, ACT_Q8_1B = 7, ACT_Q8_KB = 8, ACT_NONE = 9 };

/* Relaxed-SIMD builds (python build.py --relaxed: -mrelaxed-simd) give the
 * weight types whose quants fit in 7 bits (Q4_0, Q4_1, Q5_0, Q5_1, Q2_K ..
 * Q6_K) i8 activations ("B" kinds: the same values, one byte each, natural
 * order) and multiply with i16x8.relaxed_dot_i8x16_i7x16 (x86: pmaddubsw;
 * ARM: sdot). Every integer sum is the same as the SIMD128 build's, and so
 * is every result, bit for bit. Q8_0 / Q8_1 / Q8_K weights (8 signed bits)
 * keep the i16 path. */
#if defined(__wasm_relaxed_simd__)
#define QI_RELAXED 1
#else
#define QI_RELAXED 0
#endif
/* The ggml vec_dot type a kind stands for (B kinds -> their i16 twins), and bytes per quant. */
static inline int qi_kind_base(int kind) { return kind >= ACT_Q8_0B && kind <= ACT_Q8_KB ? kind - 3 : kind; }
static inline uint64_t qi_quant_bytes(int kind) { return kind >= ACT_Q8_0B && kind <= ACT_Q8_KB ? 1 : 2; }

/* Which activation format a runnable weight type takes (ACT_NONE otherwise). */
int quant_act_kind(uint32_t type);
/* Bytes of one activation row of K elements (multiple of 64). */
uint64_t quant_act_row_bytes(uint32_t type, uint64_t K);

/* A runnable type and a K its block size divides; else rt_err and false. */
bool quant_check(uint32_t type, uint64_t K);

/* --------------------------------------------------------------- f16 / bf16 */
static inline uint32_t qi_f2u(float f) { union { float f; uint32_t u; } v = { f }; return v.u; }
static inline float qi_u2f(uint32_t u) { union { uint32_t u; float f; } v = { u }; return v.f; }

/* Exact f16 -> f32 (subnormals, inf and NaN included), branch-free, and no
 * subnormal f32 ever enters a float operation (x86 takes a slow path for those:
 * Q6_K super-block scales, about max|w| / 4064, are subnormal halves for small
 * weights, and made its matvec half again slower when they were converted
 * through one, see bench/results/cpu-2026-12-07.md): normal halves get their exponent rebiased
 * as an integer; subnormal ones are m * 2^-24, m converted exactly from an integer. */
QI_INLINE float qi_h2f(uint16_t h) {
    const uint32_t em = h & 0x7fff;
    uint32_t u = (em << 13) + ((127u - 15u) << 23);
    if (em >= 0x7c00u) u |= 0x7f800000u;                 /* inf / NaN */
    if (em < 0x0400u) u = qi_f2u((float)em * 0x1p-24f);  /* subnormal, zero */
    return qi_u2f(u | ((uint32_t)(h & 0x8000) << 16));
}
/* Unaligned little-endian loads. (-ffreestanding makes plain memcpy a call;
 * the builtin becomes one load.) */
QI_INLINE uint16_t qi_ld16(const void *p) { uint16_t v; __builtin_memcpy(&v, p, 2); return v; }
QI_INLINE uint32_t qi_ld32(const void *p) { uint32_t v; __builtin_memcpy(&v, p, 4); return v; }
QI_INLINE float qi_ldf(const void *p) { float v; __builtin_memcpy(&v, p, 4); return v; }
QI_INLINE float qi_h2f_at(const uint8_t *p) { return qi_h2f(qi_ld16(p)); }

/* Four f16 (as the low 16 bits of u32 lanes) -> f32x4, exact, as qi_h2f (no
 * subnormal f32 enters a float operation). */
QI_INLINE v128_t qi_h2f_x4(v128_t u32lanes) {
    const v128_t em = wasm_v128_and(u32lanes, wasm_i32x4_splat(0x7fff));
    const v128_t sign = wasm_i32x4_shl(wasm_v128_and(u32lanes, wasm_i32x4_splat(0x8000)), 16);
    v128_t f = wasm_i32x4_add(wasm_i32x4_shl(em, 13), wasm_i32x4_splat((127 - 15) << 23));
    /* exponent 0 (zero, subnormal) or 31 (inf, NaN) somewhere: (e + 1) & 31 <= 1 */
    const v128_t e1 = wasm_v128_and(wasm_i32x4_add(em, wasm_i32x4_splat(0x0400)), wasm_i32x4_splat(0x7c00));
    if (!wasm_v128_any_true(wasm_i32x4_le(e1, wasm_i32x4_splat(0x0400)))) return wasm_v128_or(f, sign);
    f = wasm_v128_or(f, wasm_v128_and(wasm_i32x4_ge(em, wasm_i32x4_splat(0x7c00)), wasm_i32x4_splat(0x7f800000)));
    const v128_t sub = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(em), wasm_f32x4_splat(0x1p-24f));
    f = wasm_v128_bitselect(sub, f, wasm_i32x4_lt(em, wasm_i32x4_splat(0x0400)));
    return wasm_v128_or(f, sign);
}
/* Four f16 in the HIGH 16 bits of u32 lanes (the low halves may hold anything) -> f32x4, exact. */
QI_INLINE v128_t qi_h2f_hi_x4(v128_t hi16) { return qi_h2f_x4(wasm_u32x4_shr(hi16, 16)); }
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

/* ------------------------------------------------------ integer row sums */
/* Two rows' i32x4 partial sums a, b folded into [a, a, b, b] (each row in two
 * partials); two such folds into [sum(a), sum(b), sum(c), sum(d)]. Exact. */
QI_INLINE v128_t qi_fold2(v128_t a, v128_t b) {
    return wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 1, 4, 5), wasm_i32x4_shuffle(a, b, 2, 3, 6, 7));
}
QI_INLINE v128_t qi_fold4(v128_t ab, v128_t cd) {
    return wasm_i32x4_add(wasm_i32x4_shuffle(ab, cd, 0, 2, 4, 6), wasm_i32x4_shuffle(ab, cd, 1, 3, 5, 7));
}
/* [sum(a), sum(b), sum(c), sum(d)] of four i32x4 (exact). */
QI_INLINE v128_t reduce4(v128_t a, v128_t b, v128_t c, v128_t d) { return qi_fold4(qi_fold2(a, b), qi_fold2(c, d)); }

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
void quant_x4_row(uint32_t type, const uint8_t *W, uint64_t rb, uint64_t r, uint64_t K, float *dst);
void quant_act_impl(int kind, const float *x, uint64_t K, uint8_t *row);
/* Convert one internal activation row to ggml's bytes of the vec_dot type
 * (f32 / f16 / bf16 values, or block_q8_0 / block_q8_1 / block_q8_K). */
void quant_act_export_row(int kind, const uint8_t *row, uint64_t K, uint8_t *out);
uint64_t quant_act_export_row_bytes(int kind, uint64_t K);
/* the softmax both KV caches share (quant_attn.c): capped scores -> e_j in place; returns (float)(1 / sum) */
float quant_attn_softmax_exp(float *scores, uint32_t n, float cap);

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
void quant_mm_q4_0_x4(QI_MM_ARGS); /* the x4 layout (quant.h) */
void quant_mm_q4_1_x4(QI_MM_ARGS);
void quant_mm_q5_0_x4(QI_MM_ARGS);
void quant_mm_q5_1_x4(QI_MM_ARGS);
void quant_mm_q8_0_x4(QI_MM_ARGS);
void quant_mm_q2_K_x4(QI_MM_ARGS);
void quant_mm_q3_K_x4(QI_MM_ARGS);
void quant_mm_q4_K_x4(QI_MM_ARGS);
void quant_mm_q5_K_x4(QI_MM_ARGS);
void quant_mm_q6_K_x4(QI_MM_ARGS);

/* The loop every kernel family shares (quant_q.c, quant_k.c, quant_float.c):
 *   R4(p0, p1, p2, p3, K, x)   -> v128_t: rows p0..p3 (pointers to their first
 *                                 block) times one token (activation row x);
 *                                 lanes = rows
 *   T4(p, x0, x1, x2, x3, K)   -> v128_t: the row at p times four tokens
 *                                 (activation rows x0..x3); lanes = tokens
 * Both must compute each (row, token) result with the same f32 operations, so
 * results do not depend on how rows and tokens are grouped.
 * One token: rows four at a time, taken from the four quarters of [r0, r1), so
 * the weights stream as four long sequential runs (hardware prefetchers lose
 * four short interleaved ones: SmolLM2's 576-wide Q8_0 output matrix streamed
 * at 3-4 GB/s with rows r..r+3 together, ~10 GB/s by quarters). Missing rows
 * repeat the last one. Several tokens: rows in chunks that stay in cache,
 * tokens four at a time (a missing token repeats the last one), one row at a
 * time, so each block of weights is decoded once for four tokens. */
static inline uint64_t qi_chunk_rows(uint64_t rb) {
    uint64_t c = (48u << 10) / (rb ? rb : 1);
    return c < 4 ? 4 : c & ~(uint64_t)3;
}
/* T == 1: rows four at a time from the quarters of [r0, r1) (see above). */
#define QI_MM_ONE_TOKEN(R4)                                                                     \
    do {                                                                                        \
        const uint64_t n = r1 - r0, q = n < 16 ? 1 : (n + 3) / 4, s = n < 16 ? 1 : q;           \
        for (uint64_t i = 0; i < q; i++)                                                        \
            for (uint64_t r = r0 + i; r < (n < 16 ? r1 : r0 + i + 1); r += 4) {                 \
                uint64_t ri[4];                                                                 \
                for (int j = 0; j < 4; j++) {                                                   \
                    const uint64_t v = r + (uint64_t)j * s;                                     \
                    ri[j] = v < r1 ? v : r1 - 1;                                                \
                }                                                                               \
                float o[4];                                                                     \
                wasm_v128_store(o, R4(W + ri[0] * rb, W + ri[1] * rb, W + ri[2] * rb,           \
                                      W + ri[3] * rb, K, xq));                                  \
                for (int j = 0; j < 4; j++)                                                     \
                    if (r + (uint64_t)j * s < r1) y[r + (uint64_t)j * s] = o[j];                \
            }                                                                                   \
    } while (0)
#define QI_DEFINE_MM(NAME, R4, T4)                                                               \
    void NAME(QI_MM_ARGS) {                                                                     \
        if (T == 1) {                                                                           \
            QI_MM_ONE_TOKEN(R4);                                                                \
            return;                                                                             \
        }                                                                                       \
        const uint64_t chunk = qi_chunk_rows(rb);                                               \
        for (uint64_t rc = r0; rc < r1; rc += chunk) {                                          \
            const uint64_t re = rc + chunk < r1 ? rc + chunk : r1;                              \
            for (uint64_t t = 0; t < T; t += 4) {                                               \
                const uint64_t nt = T - t < 4 ? T - t : 4;                                      \
                const uint8_t *x0 = xq + t * xrb;                                               \
                const uint8_t *x1 = x0 + (nt > 1 ? xrb : 0), *x2 = x0 + (nt > 2 ? 2 * xrb : 0); \
                const uint8_t *x3 = x0 + (nt > 3 ? 3 * xrb : (nt - 1) * xrb);                   \
                for (uint64_t r = rc; r < re; r++) {                                            \
                    float o[4];                                                                 \
                    wasm_v128_store(o, T4(W + r * rb, x0, x1, x2, x3, K));                      \
                    for (uint64_t j = 0; j < nt; j++) y[(t + j) * ys + r] = o[j];               \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }
/* The same with a tile of rows x tokens for several tokens:
 *   R4N(p0, p1, p2, p3, K, xs, out)  -> out[0..N): rows p0..p3 times the N
 *                                 tokens at activation rows xs[0..N); lanes = rows
 * (the same f32 operations per (row, token) as R4). Rows in chunks that stay
 * in cache; in each, tokens N at a time (a last group of more than N / 2
 * repeats its last token; smaller ones go one by one through R4), rows four
 * at a time (consecutive; missing ones repeat the last), so each block of
 * weights is loaded and unpacked once per N tokens and each block of
 * activations once per four rows. */
#define QI_DEFINE_MM_RN(NAME, R4, R4N, N)                                                     \
    /* (one wasm function per path: Cranelift allocates registers per function, \
     * and the tile's pressure spilled into the one-token loop when they shared one) */ \
    static __attribute__((noinline)) void NAME##_one(QI_MM_ARGS) {                              \
        (void)T, (void)xrb, (void)ys;                                                           \
        QI_MM_ONE_TOKEN(R4);                                                                    \
    }                                                                                           \
    static __attribute__((noinline)) void NAME##_many(QI_MM_ARGS) {                             \
        const uint64_t chunk = qi_chunk_rows(rb);                                               \
        for (uint64_t rc = r0; rc < r1; rc += chunk) {                                          \
            const uint64_t re = rc + chunk < r1 ? rc + chunk : r1;                              \
            for (uint64_t t = 0; t < T;) {                                                      \
                const uint64_t nt = T - t < N ? T - t : N, step = 2 * nt > N ? N : 1;           \
                const uint8_t *xs[N];                                                           \
                for (uint64_t j = 0; j < N; j++) xs[j] = xq + (t + (j < nt ? j : nt - 1)) * xrb; \
                for (uint64_t r = rc; r < re; r += 4) {                                         \
                    const uint64_t nr = re - r < 4 ? re - r : 4;                                \
                    const uint8_t *p = W + r * rb;                                              \
                    const uint8_t *p1 = p + (nr > 1 ? rb : 0), *p2 = p + (nr > 2 ? 2 * rb : 0);  \
                    const uint8_t *p3 = p + (nr > 3 ? 3 * rb : (nr - 1) * rb);                  \
                    v128_t o[N];                                                                \
                    if (step == N) R4N(p, p1, p2, p3, K, xs, o);                                \
                    else o[0] = R4(p, p1, p2, p3, K, xs[0]);                                    \
                    for (uint64_t j = 0; j < (step == N ? nt : 1); j++) {                       \
                        float *yr = y + (t + j) * ys + r;                                       \
                        if (nr == 4) {                                                          \
                            wasm_v128_store(yr, o[j]);                                          \
                        } else {                                                                \
                            float f[4];                                                         \
                            wasm_v128_store(f, o[j]);                                           \
                            for (uint64_t i = 0; i < nr; i++) yr[i] = f[i];                     \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
                t += step == N ? nt : 1;                                                        \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    void NAME(QI_MM_ARGS) {                                                                     \
        if (T == 1) NAME##_one(W, rb, K, r0, r1, xq, xrb, T, y, ys);                            \
        else if (2 * T <= N) /* no tile: each token streams the rows by quarters (batched decode) */ \
            for (uint64_t t = 0; t < T; t++) NAME##_one(W, rb, K, r0, r1, xq + t * xrb, xrb, 1, y + t * ys, ys); \
        else NAME##_many(W, rb, K, r0, r1, xq, xrb, T, y, ys);                                  \
    }

/* The x4 layout's matrices (quant.h): rows a group of four at a time,
 *   R4X(g, K, x)        -> v128_t: the group at g times one token; lanes = rows
 *   R4NX(g, K, xs, out) -> out[0..4): the group times four tokens
 * (the same f32 operations per (row, token) as the family's R4). [r0, r1) may
 * cut groups: a group's rows outside it are computed and dropped. One token:
 * group after group, one sequential stream; several: as QI_DEFINE_MM_RN. */
#define QI_DEFINE_MM_X4(NAME, R4X, R4NX)                                                                   \
    static __attribute__((noinline)) void NAME##_one(QI_MM_ARGS) {                                         \
        (void)T, (void)xrb, (void)ys;                                                                      \
        for (uint64_t r = r0 & ~(uint64_t)3; r < r1; r += 4) {                                             \
            float o[4];                                                                                    \
            wasm_v128_store(o, R4X(W + r * rb, K, xq));                                                    \
            for (uint64_t i = 0; i < 4; i++)                                                               \
                if (r + i >= r0 && r + i < r1) y[r + i] = o[i];                                            \
        }                                                                                                  \
    }                                                                                                      \
    static __attribute__((noinline)) void NAME##_many(QI_MM_ARGS) {                                        \
        const uint64_t chunk = qi_chunk_rows(rb);                                                          \
        for (uint64_t rc = r0 & ~(uint64_t)3; rc < r1; rc += chunk) {                                      \
            const uint64_t re = rc + chunk < r1 ? rc + chunk : r1;                                         \
            for (uint64_t t = 0; t < T;) {                                                                 \
                const uint64_t nt = T - t < 4 ? T - t : 4, step = 2 * nt > 4 ? 4 : 1;                      \
                const uint8_t *xs[4];                                                                      \
                for (uint64_t j = 0; j < 4; j++) xs[j] = xq + (t + (j < nt ? j : nt - 1)) * xrb;           \
                for (uint64_t r = rc; r < re; r += 4) {                                                    \
                    v128_t o[4];                                                                           \
                    if (step == 4) R4NX(W + r * rb, K, xs, o);                                             \
                    else o[0] = R4X(W + r * rb, K, xs[0]);                                                 \
                    for (uint64_t j = 0; j < (step == 4 ? nt : 1); j++) {                                  \
                        float f[4];                                                                        \
                        wasm_v128_store(f, o[j]);                                                          \
                        for (uint64_t i = 0; i < 4; i++)                                                   \
                            if (r + i >= r0 && r + i < re) y[(t + j) * ys + r + i] = f[i];                 \
                    }                                                                                      \
                }                                                                                          \
                t += step == 4 ? nt : 1;                                                                   \
            }                                                                                              \
        }                                                                                                  \
    }                                                                                                      \
    void NAME(QI_MM_ARGS) {                                                                                \
        if (T == 1) NAME##_one(W, rb, K, r0, r1, xq, xrb, T, y, ys);                                       \
        else if (T <= 2) /* batched decode: each token streams the rows */                                 \
            for (uint64_t t = 0; t < T; t++) NAME##_one(W, rb, K, r0, r1, xq + t * xrb, xrb, 1, y + t * ys, ys); \
        else NAME##_many(W, rb, K, r0, r1, xq, xrb, T, y, ys);                                             \
    }

#endif
