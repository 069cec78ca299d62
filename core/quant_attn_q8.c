/* quant_attn_q8.c: attention over a Q8_0 KV cache (llama.cpp's -ctk q8_0 /
 * -ctv q8_0: 34 bytes per 32 values, 53 % of the f16 cache).
 *
 * A session with a Q8_0 cache keeps each KV head's rows together (model.h), so
 * one head's K over n positions is an ordinary Q8_0 weight matrix of n rows of
 * D values, and q . k for the query heads of a group is a matmul with those
 * heads as the "tokens": the query is quantized to Q8_0 as llama.cpp quantizes
 * it for a Q8_0 K (its vec_dot type), and the integer block sums use the same
 * kernels as the weights (quant_q.c). As in llama.cpp's flash attention for a
 * quantized V, the softmax weights stay f32 and each V row is dequantized
 * (d * q) and accumulated in f32, in order of position. D must be a multiple
 * of 32 (llama.cpp requires the same of a quantized cache). */
#include "quant_impl.h"

#define Q8_ROW(D) ((uint64_t)(D) / 32 * 34)

void quant_attn_qk_q8(const float *q, uint32_t nh, const uint8_t *k, uint32_t j0, uint32_t j1, uint32_t D, float scale,
                      float *scores, uint64_t ss) {
    if (j1 <= j0) return;
    uint8_t xq[4 * 1024 / 32 * 34 + 4 * 1024 * 2 + 256] __attribute__((aligned(16))); /* >= quant_act_bytes(Q8_0, D, 4) */
    for (; nh > 4; nh -= 4, q += 4 * D, scores += 4 * ss) quant_attn_qk_q8(q, 4, k, j0, j1, D, scale, scores, ss);
    quant_act_quantize(GGML_TYPE_Q8_0, q, D, nh, xq);
    quant_matmul_q(GGML_TYPE_Q8_0, k, D, j0, j1, xq, nh, scores, ss);
    for (uint32_t g = 0; g < nh; g++)
        for (uint32_t j = j0; j < j1; j++) scores[g * ss + j] *= scale;
}

void quant_attn_softmax_f32(float *scores, uint32_t n, float cap) {
    const float inv = quant_attn_softmax_exp(scores, n, cap);
    const v128_t vi = wasm_f32x4_splat(inv);
    uint32_t j;
    for (j = 0; j + 4 <= n; j += 4) wasm_v128_store(scores + j, wasm_f32x4_mul(wasm_v128_load(scores + j), vi));
    for (; j < n; j++) scores[j] *= inv;
}

/* out[d0 .. d0 + 32) of one head = sum over j of p_j * dequant(v_j)[d0 ..] (block d0 / 32 of each row) */
QI_INLINE void pv_block(const float *p, const uint8_t *v, uint64_t row, uint32_t n, uint32_t d0, float *out) {
    v128_t acc[8];
    QI_UNROLL for (int i = 0; i < 8; i++) acc[i] = wasm_f32x4_splat(0);
    const uint8_t *blk = v + (uint64_t)d0 / 32 * 34;
    for (uint32_t j = 0; j < n; j++, blk += row) {
        const v128_t s = wasm_f32x4_splat(p[j] * qi_h2f(qi_ld16(blk)));
        const v128_t b0 = wasm_v128_load(blk + 2), b1 = wasm_v128_load(blk + 18);
        const v128_t h[4] = {wasm_i16x8_extend_low_i8x16(b0), wasm_i16x8_extend_high_i8x16(b0),
                             wasm_i16x8_extend_low_i8x16(b1), wasm_i16x8_extend_high_i8x16(b1)};
        QI_UNROLL for (int i = 0; i < 4; i++) {
            acc[2 * i] = wasm_f32x4_add(acc[2 * i], wasm_f32x4_mul(s, wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(h[i]))));
            acc[2 * i + 1] = wasm_f32x4_add(acc[2 * i + 1],
                                            wasm_f32x4_mul(s, wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(h[i]))));
        }
    }
    QI_UNROLL for (int i = 0; i < 8; i++) wasm_v128_store(out + d0 + 4 * i, acc[i]);
}

void quant_attn_pv_q8(const float *p, uint64_t ss, uint32_t nh, const uint8_t *v, uint32_t n, uint32_t d0, uint32_t d1,
                      uint32_t D, float *out) {
    for (uint32_t g = 0; g < nh; g++)
        for (uint32_t d = d0; d < d1; d += 32) pv_block(p + g * ss, v, Q8_ROW(D), n, d, out + (uint64_t)g * D);
}

void quant_q8_0_row(const float *x, uint32_t D, uint8_t *out) {
    uint8_t xq[1024 * 2 + 1024 / 32 * 16 + 64] __attribute__((aligned(16))); /* >= quant_act_bytes(Q8_0, D, 1) */
    quant_act_quantize(GGML_TYPE_Q8_0, x, D, 1, xq);
    quant_act_export_row(quant_act_kind(GGML_TYPE_Q8_0), xq, D, out);
}
