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

QI_INLINE void rows_float(const int kind, const uint8_t *w, uint64_t rb, uint64_t K, const uint8_t *x,
                          uint64_t xrb, const int NR, const int NT, float *out, uint64_t ys) {
    const float *xt[4];
    QI_UNROLL
    for (int t = 0; t < NT; t++) xt[t] = (const float *)(x + t * xrb);
    uint64_t k = 0;
    float s[4][4];
    /* Each (row, token) is summed the same way whatever NR and NT are, so a
     * result does not depend on how rows or tokens were grouped. */
    {
        v128_t a[4][4][2];
        QI_UNROLL
        for (int r = 0; r < NR; r++)
            QI_UNROLL
            for (int t = 0; t < NT; t++) a[r][t][0] = a[r][t][1] = wasm_f32x4_splat(0);
        for (; k + 8 <= K; k += 8) {
            if (NR == 1) { /* weights once, several tokens */
                v128_t w0, w1;
                load8(kind, w, k, &w0, &w1);
                QI_UNROLL
                for (int t = 0; t < NT; t++) {
                    a[0][t][0] = wasm_f32x4_add(a[0][t][0], wasm_f32x4_mul(w0, wasm_v128_load(xt[t] + k)));
                    a[0][t][1] = wasm_f32x4_add(a[0][t][1], wasm_f32x4_mul(w1, wasm_v128_load(xt[t] + k + 4)));
                }
            } else { /* one token, activations once for several rows */
                const v128_t x0 = wasm_v128_load(xt[0] + k), x1 = wasm_v128_load(xt[0] + k + 4);
                QI_UNROLL
                for (int r = 0; r < NR; r++) {
                    v128_t w0, w1;
                    load8(kind, w + r * rb, k, &w0, &w1);
                    a[r][0][0] = wasm_f32x4_add(a[r][0][0], wasm_f32x4_mul(w0, x0));
                    a[r][0][1] = wasm_f32x4_add(a[r][0][1], wasm_f32x4_mul(w1, x1));
                }
            }
        }
        QI_UNROLL
        for (int r = 0; r < NR; r++)
            QI_UNROLL
            for (int t = 0; t < NT; t++) s[r][t] = qi_hsum_f32(wasm_f32x4_add(a[r][t][0], a[r][t][1]));
    }
    for (; k < K; k++)
        QI_UNROLL
        for (int r = 0; r < NR; r++) {
            const float wk = load1(kind, w + r * rb, k);
            QI_UNROLL
            for (int t = 0; t < NT; t++) s[r][t] += wk * xt[t][k];
        }
    QI_UNROLL
    for (int r = 0; r < NR; r++)
        QI_UNROLL
        for (int t = 0; t < NT; t++) out[t * ys + r] = s[r][t];
}

#define ROWS_F32(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_float(WF32, w, rb, K, x, xrb, NR, NT, out, ys)
#define ROWS_F16(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_float(WF16, w, rb, K, x, xrb, NR, NT, out, ys)
#define ROWS_BF16(w, rb, K, x, xrb, NR, NT, out, ys, G) rows_float(WBF16, w, rb, K, x, xrb, NR, NT, out, ys)
QI_DEFINE_MM(quant_mm_f32, ROWS_F32, ACT_F32, 4)
QI_DEFINE_MM(quant_mm_f16, ROWS_F16, ACT_F32, 4)
QI_DEFINE_MM(quant_mm_bf16, ROWS_BF16, ACT_F32, 4)
