/* quant_float.c: matrix kernels for F32, F16 and BF16 weights.
 * Activations arrive as f32 values already rounded to the weight's vec_dot
 * type (quant_act.c; F16's times 2^112, see load8), so products of two f16 (or bf16) values are exact in
 * f32, as in ggml_vec_dot_f16/bf16; sums are f32 in SIMD lanes. */
#include "quant_impl.h"

enum { WF32, WF16, WBF16 };

/* Eight weights from element k on, as two f32x4. F16: each value times 2^-112, by two
 * integer ops (the halves in the high bits of i32 lanes, an arithmetic shift by 3 and a
 * mask put sign, exponent and mantissa where an f32 has them, subnormals included), which
 * the activations' factor 2^112 (quant_act.c) undoes exactly: w * x is the same product.
 * (An inf or NaN weight becomes a large finite one: no GGUF worth running has them.) */
QI_INLINE void load8(const int kind, const uint8_t *w, uint64_t k, v128_t *a, v128_t *b) {
    if (kind == WF32) {
        *a = wasm_v128_load(w + 4 * k);
        *b = wasm_v128_load(w + 4 * k + 16);
    } else if (kind == WF16) {
        const v128_t h = wasm_v128_load(w + 2 * k), z = wasm_i32x4_splat(0), m = wasm_i32x4_splat((int32_t)0x8fffffffu);
        *a = wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(z, h, 0, 8, 1, 9, 2, 10, 3, 11), 3), m);
        *b = wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(z, h, 4, 12, 5, 13, 6, 14, 7, 15), 3), m);
    } else {
        qi_bf2f_x8((const uint16_t *)(w + 2 * k), a, b);
    }
}
QI_INLINE float load1(const int kind, const uint8_t *w, uint64_t k) {
    if (kind == WF32) return qi_ldf(w + 4 * k);
    const uint16_t h = qi_ld16(w + 2 * k);
    return kind == WF16 ? qi_h2f(h) : qi_u2f((uint32_t)h << 16);
}

/* qi_hsum_f32 of v[0..4) as the lanes of one vector: a 4x4 transpose, then per lane the
 * same two-level additions ((x0 + x2) + (x1 + x3)), so the same bits as four hsums. */
QI_INLINE v128_t hsum_x4(v128_t v0, v128_t v1, v128_t v2, v128_t v3) {
    const v128_t u0 = wasm_i32x4_shuffle(v0, v1, 0, 4, 1, 5), u1 = wasm_i32x4_shuffle(v2, v3, 0, 4, 1, 5);
    const v128_t u2 = wasm_i32x4_shuffle(v0, v1, 2, 6, 3, 7), u3 = wasm_i32x4_shuffle(v2, v3, 2, 6, 3, 7);
    const v128_t t0 = wasm_i32x4_shuffle(u0, u1, 0, 1, 4, 5), t1 = wasm_i32x4_shuffle(u0, u1, 2, 3, 6, 7);
    const v128_t t2 = wasm_i32x4_shuffle(u2, u3, 0, 1, 4, 5), t3 = wasm_i32x4_shuffle(u2, u3, 2, 3, 6, 7);
    return wasm_f32x4_add(wasm_f32x4_add(t0, t2), wasm_f32x4_add(t1, t3));
}

/* Four rows (w0..w3) times one token x: each (row, token) dot product summed the
 * same way everywhere (two f32x4 accumulators over 8 elements at a time, their
 * lane sum, then the scalar tail; tile() below keeps it), so a result does not
 * depend on how rows or tokens were grouped. Lane r = row r. */
QI_INLINE v128_t dots(const int kind, const uint8_t *w0, const uint8_t *w1, const uint8_t *w2, const uint8_t *w3,
                      uint64_t K, const float *x) {
    const uint8_t *w[4] = { w0, w1, w2, w3 };
    uint64_t k = 0;
    v128_t a[4][2];
    QI_UNROLL for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = wasm_f32x4_splat(0);
    for (; k + 8 <= K; k += 8) { /* the activations once for the four rows */
        const v128_t v0 = wasm_v128_load(x + k), v1 = wasm_v128_load(x + k + 4);
        QI_UNROLL for (int r = 0; r < 4; r++) {
            v128_t u0, u1;
            load8(kind, w[r], k, &u0, &u1);
            a[r][0] = wasm_f32x4_add(a[r][0], wasm_f32x4_mul(u0, v0));
            a[r][1] = wasm_f32x4_add(a[r][1], wasm_f32x4_mul(u1, v1));
        }
    }
    float s[4];
    wasm_v128_store(s, hsum_x4(wasm_f32x4_add(a[0][0], a[0][1]), wasm_f32x4_add(a[1][0], a[1][1]),
                               wasm_f32x4_add(a[2][0], a[2][1]), wasm_f32x4_add(a[3][0], a[3][1])));
    const float unscale = kind == WF16 ? 0x1p-112f : 1.0f; /* F16 activations carry 2^112 (exact either way) */
    for (; k < K; k++)
        QI_UNROLL for (int r = 0; r < 4; r++) s[r] += load1(kind, w[r], k) * (x[k] * unscale);
    return wasm_v128_load(s);
}

/* A tile for prompts: rows p0..p3 times the QF_N tokens at xs[0..QF_N), o[t] lane r = (row r,
 * token t), each summed exactly as dots() sums it (the weights of a block converted once for
 * every token, the activations loaded once for four rows). */
#define QF_N 4
QI_INLINE void tile(const int kind, const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3,
                    uint64_t K, const uint8_t *const *xs, v128_t *o) {
    const uint8_t *w[4] = { p0, p1, p2, p3 };
    const float *x[QF_N];
    v128_t a[4][QF_N][2];
    QI_UNROLL for (int t = 0; t < QF_N; t++) x[t] = (const float *)xs[t];
    QI_UNROLL for (int r = 0; r < 4; r++) QI_UNROLL for (int t = 0; t < QF_N; t++) a[r][t][0] = a[r][t][1] = wasm_f32x4_splat(0);
    uint64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        v128_t v[QF_N][2];
        QI_UNROLL for (int t = 0; t < QF_N; t++) v[t][0] = wasm_v128_load(x[t] + k), v[t][1] = wasm_v128_load(x[t] + k + 4);
        QI_UNROLL for (int r = 0; r < 4; r++) {
            v128_t u0, u1;
            load8(kind, w[r], k, &u0, &u1);
            QI_UNROLL for (int t = 0; t < QF_N; t++) {
                a[r][t][0] = wasm_f32x4_add(a[r][t][0], wasm_f32x4_mul(u0, v[t][0]));
                a[r][t][1] = wasm_f32x4_add(a[r][t][1], wasm_f32x4_mul(u1, v[t][1]));
            }
        }
    }
    const float unscale = kind == WF16 ? 0x1p-112f : 1.0f;
    QI_UNROLL for (int t = 0; t < QF_N; t++) {
        float s[4];
        wasm_v128_store(s, hsum_x4(wasm_f32x4_add(a[0][t][0], a[0][t][1]), wasm_f32x4_add(a[1][t][0], a[1][t][1]),
                                   wasm_f32x4_add(a[2][t][0], a[2][t][1]), wasm_f32x4_add(a[3][t][0], a[3][t][1])));
        for (uint64_t j = k; j < K; j++)
            QI_UNROLL for (int r = 0; r < 4; r++) s[r] += load1(kind, w[r], j) * (x[t][j] * unscale);
        o[t] = wasm_v128_load(s);
    }
}

#define QF_KERNEL(NAME, KIND)                                                                              \
    QI_INLINE v128_t NAME##_r4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3, \
                               uint64_t K, const uint8_t *x) {                                             \
        return dots(KIND, p0, p1, p2, p3, K, (const float *)x);                                            \
    }                                                                                                      \
    QI_INLINE void NAME##_r4n(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3,  \
                              uint64_t K, const uint8_t *const *xs, v128_t *o) {                           \
        tile(KIND, p0, p1, p2, p3, K, xs, o);                                                              \
    }                                                                                                      \
    QI_DEFINE_MM_RN(NAME, NAME##_r4, NAME##_r4n, QF_N)
QF_KERNEL(quant_mm_f32, WF32)
QF_KERNEL(quant_mm_f16, WF16)
QF_KERNEL(quant_mm_bf16, WBF16)
