/* quant_float.c: matrix kernels for F32, F16 and BF16 weights.
 * Activations arrive as f32 values already rounded to the weight's vec_dot
 * type (quant_act.c), so products of two f16 (or bf16) values are exact in
 * f32, as in ggml_vec_dot_f16/bf16; sums are f32 in SIMD lanes. */
#include "quant_impl.h"

enum { WF32, WF16, WBF16 };

/* Eight weights from element k on, as two f32x4. */
QI_INLINE void load8(const int kind, const uint8_t *w, uint64_t k, v128_t *a, v128_t *b) {
    if (kind == WF32) {
        *a = wasm_v128_load(w + 4 * k);
        *b = wasm_v128_load(w + 4 * k + 16);
    } else if (kind == WF16) {
        qi_h2f_x8((const uint16_t *)(w + 2 * k), a, b);
    } else {
        qi_bf2f_x8((const uint16_t *)(w + 2 * k), a, b);
    }
}
QI_INLINE float load1(const int kind, const uint8_t *w, uint64_t k) {
    if (kind == WF32) return qi_ldf(w + 4 * k);
    const uint16_t h = qi_ld16(w + 2 * k);
    return kind == WF16 ? qi_h2f(h) : qi_u2f((uint32_t)h << 16);
}

/* One (row, token) dot product, always summed the same way (two f32x4
 * accumulators over 8 elements at a time, their lane sum, then the scalar
 * tail), so a result does not depend on how rows or tokens were grouped.
 * NR rows (w, w + rb, ..) times NT tokens (xt[0..NT)): s[r][t]. */
QI_INLINE void dots(const int kind, const uint8_t *w0, const uint8_t *w1, const uint8_t *w2, const uint8_t *w3,
                    uint64_t K, const float *x0, const float *x1, const float *x2, const float *x3,
                    const int NR, const int NT, float s[4]) {
    const uint8_t *w[4] = { w0, w1, w2, w3 };
    const float *xt[4] = { x0, x1, x2, x3 };
    uint64_t k = 0;
    v128_t a[4][2];
    QI_UNROLL
    for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = wasm_f32x4_splat(0);
    for (; k + 8 <= K; k += 8) {
        if (NR == 1) { /* weights once, several tokens */
            v128_t u0, u1;
            load8(kind, w[0], k, &u0, &u1);
            QI_UNROLL
            for (int t = 0; t < NT; t++) {
                a[t][0] = wasm_f32x4_add(a[t][0], wasm_f32x4_mul(u0, wasm_v128_load(xt[t] + k)));
                a[t][1] = wasm_f32x4_add(a[t][1], wasm_f32x4_mul(u1, wasm_v128_load(xt[t] + k + 4)));
            }
        } else { /* one token, activations once for several rows */
            const v128_t v0 = wasm_v128_load(xt[0] + k), v1 = wasm_v128_load(xt[0] + k + 4);
            QI_UNROLL
            for (int r = 0; r < NR; r++) {
                v128_t u0, u1;
                load8(kind, w[r], k, &u0, &u1);
                a[r][0] = wasm_f32x4_add(a[r][0], wasm_f32x4_mul(u0, v0));
                a[r][1] = wasm_f32x4_add(a[r][1], wasm_f32x4_mul(u1, v1));
            }
        }
    }
    QI_UNROLL
    for (int i = 0; i < 4; i++) s[i] = qi_hsum_f32(wasm_f32x4_add(a[i][0], a[i][1]));
    for (; k < K; k++)
        QI_UNROLL
        for (int i = 0; i < 4; i++)
            s[i] += load1(kind, w[NR == 1 ? 0 : i], k) * xt[NR == 1 ? i : 0][k];
}

#define QF_KERNEL(NAME, KIND)                                                                              \
    QI_INLINE v128_t NAME##_r4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3, \
                               uint64_t K, const uint8_t *x) {                                             \
        float s[4];                                                                                        \
        const float *xf = (const float *)x;                                                                \
        dots(KIND, p0, p1, p2, p3, K, xf, xf, xf, xf, 4, 1, s);                                            \
        return wasm_v128_load(s);                                                                          \
    }                                                                                                      \
    QI_INLINE v128_t NAME##_t4(const uint8_t *p, const uint8_t *x0, const uint8_t *x1, const uint8_t *x2,  \
                               const uint8_t *x3, uint64_t K) {                                            \
        float s[4];                                                                                        \
        dots(KIND, p, p, p, p, K, (const float *)x0, (const float *)x1, (const float *)x2,                 \
             (const float *)x3, 1, 4, s);                                                                  \
        return wasm_v128_load(s);                                                                          \
    }                                                                                                      \
    QI_DEFINE_MM(NAME, NAME##_r4, NAME##_t4)
QF_KERNEL(quant_mm_f32, WF32)
QF_KERNEL(quant_mm_f16, WF16)
QF_KERNEL(quant_mm_bf16, WBF16)
