/* quant.h: ggml tensor types, dequantization and the matrix kernels of the forward pass.
 *
 * Block layouts are ggml's (ggml-common.h); numbers are ggml's type ids as
 * stored in GGUF. Activations are quantized the way llama.cpp does it for
 * each weight type (its "vec_dot_type"), so logits track llama.cpp closely:
 *   F32 -> f32, F16 -> f16, BF16 -> bf16,
 *   Q4_0, Q5_0, Q8_0 -> Q8_0;  Q4_1, Q5_1 -> Q8_1;  Q2_K..Q6_K, Q8_K -> Q8_K.
 */
#ifndef REALM_QUANT_H
#define REALM_QUANT_H
#include "rt.h"

/* The GGML_TYPE_* ids and the table of every type are in abi.h (from abi.json). */

typedef struct {
    const char *name;     /* "Q4_K", or NULL for an id this core does not know */
    uint32_t block_size;  /* elements per block */
    uint32_t type_size;   /* bytes per block */
    bool can_run;         /* dequantize + matmul implemented */
} QuantType;

/* Info for any id 0..255; name==NULL for ids unknown to ggml as well. */
const QuantType *quant_type(uint32_t type);
/* Bytes of one row of n elements (n must be a multiple of block_size). */
uint64_t quant_row_bytes(uint32_t type, uint64_t n);

/* dst[0..n) = dequantized src; n a multiple of the block size. Bit-exact with gguf-py. */
void quant_dequant_row(uint32_t type, const void *src, float *dst, uint64_t n);

/* The x4 layout: a Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 or Q2_K..Q6_K matrix with its
 * rows interleaved in groups of four, for the kernels only: per block column,
 * the group's four blocks' fields regrouped (32-element types, quant_q.c) or
 * its four super-blocks one after the other (K-quants, quant_k.c); a row is
 * read back whole only by quant_get_row. Its type is QUANT_X4 | the ggml type, which every
 * function here takes (row and activation sizes: the ggml type's).
 * quant_repack_x4 rearranges W (rows x K, ggml's layout) in place and returns
 * true; false, W untouched, where quant_can_x4 says no or scratch of four rows
 * cannot be allocated. */
#define QUANT_X4 0x100u
bool quant_can_x4(uint32_t type, uint64_t rows);
bool quant_repack_x4(uint32_t type, uint8_t *W, uint64_t K, uint64_t rows);
/* dst[0..K) = row r of W (rows of K, quant_row_bytes(type, K) apart in ggml's
 * layout; or an x4 matrix of as many rows) dequantized, bit-exact with gguf-py. */
void quant_get_row(uint32_t type, const void *W, uint64_t r, uint64_t K, float *dst);

/* Matrix products with a weight matrix W in its stored type:
 *   y[t * y_stride + r] = sum_k W[r][k] * x[t * K + k]
 * for rows r in [r0, r1) and tokens t in [0, T). W's rows are
 * quant_row_bytes(type, K) apart, starting at W (row 0).
 *
 * Two steps, so that activations are quantized once per matmul even when
 * several threads split the rows [r0, r1) between them:
 *   1. quant_act_quantize: T f32 rows -> W's vec_dot type (above), in a buffer
 *      of quant_act_bytes(type, K, T) bytes the caller owns;
 *   2. quant_matmul_q on any row range. */
uint64_t quant_act_bytes(uint32_t type, uint64_t K, uint64_t T);
/* Which activation format W's kernels read; two types of one kind (and one K)
 * can share one quantized copy of the activations. */
int quant_act_kind(uint32_t type);
void quant_act_quantize(uint32_t type, const float *x, uint64_t K, uint64_t T, void *xq);
void quant_matmul_q(uint32_t type, const void *W, uint64_t K, uint64_t r0, uint64_t r1,
                    const void *xq, uint64_t T, float *y, uint64_t y_stride);

/* Both steps with scratch the quant module owns (single-threaded callers).
 * Returns false (and sets rt_err) only when scratch cannot be allocated. */
bool quant_matmul(uint32_t type, const void *W, uint64_t K, uint64_t r0, uint64_t r1,
                  const float *x, uint64_t T, float *y, uint64_t y_stride);

/* One attention head of one token over an f16 KV cache (quant_attn.c): the
 * query q (D f32), cache rows k and v of the head's KV head (row j at
 * k + j * kv_stride, v + j * kv_stride), n positions, scores: n f32 of
 * scratch, out: D f32. D a multiple of 8, at most 1024 (the formula, sum by
 * sum, is in quant_attn.c). cap > 0 (gemma2): each score s becomes
 * tanh(s * (1 / cap)) * cap before the softmax. */
void quant_attn_head_f16(const float *q, const uint16_t *k, const uint16_t *v, uint64_t kv_stride, uint32_t n,
                         uint32_t D, float scale, float cap, float *scores, float *out);

/* nh query heads that share one KV head (GQA), each exactly as
 * quant_attn_head_f16 computes it, but every cache value read and converted
 * once for up to four of them: queries q + g * D, outputs out + g * D, head g's
 * scores (n f32 of scratch) at scores + g * scores_stride. */
void quant_attn_heads_f16(const float *q, uint32_t nh, const uint16_t *k, const uint16_t *v, uint64_t kv_stride,
                          uint32_t n, uint32_t D, float scale, float cap, float *scores, uint64_t scores_stride,
                          float *out);

/* Two queries of one sequence, q1 the token after q0 (a prompt's consecutive
 * tokens), nh (<= 4) heads each, exactly as quant_attn_heads_f16 computes each
 * alone: q0 over cache rows [0, n0), q1 over [0, n0 + 1); every shared row read
 * and converted once for both. Outputs out0 + g * D, out1 + g * D; scores:
 * 2 nh rows of scratch, scores_stride apart, n0 + 1 f32 each. */
void quant_attn_pair_f16(const float *q0, const float *q1, uint32_t nh, const uint16_t *k, const uint16_t *v,
                         uint64_t kv_stride, uint32_t n0, uint32_t D, float scale, float cap, float *scores,
                         uint64_t scores_stride, float *out0, float *out1);

/* The same in three parts a caller may split across threads (same bits):
 * scores[g * ss + j] = scale * q_g . k_j for positions [j0, j1); the softmax
 * of one head's n scores (capped when cap > 0), in place, into the f16-rounded
 * weights pv reads; out[g * D + d] for dimensions [d0, d1) (multiples of 8). */
void quant_attn_qk_f16(const float *q, uint32_t nh, const uint16_t *k, uint64_t kv_stride, uint32_t j0, uint32_t j1,
                       uint32_t D, float scale, float *scores, uint64_t scores_stride);
void quant_attn_softmax_f16(float *scores, uint32_t n, float cap);
void quant_attn_pv_f16(const float *p, uint64_t scores_stride, uint32_t nh, const uint16_t *v, uint64_t kv_stride,
                       uint32_t n, uint32_t d0, uint32_t d1, uint32_t D, float *out);

/* A Q8_0 KV cache (quant_attn_q8.c; rows in ggml's block_q8_0, D a multiple of 32, at most 1024):
 * quant_q8_0_row writes D values as llama.cpp's CPU backend quantizes a K or V row into such a
 * cache; quant_attn_qk_q8: scores[g * ss + j] = scale * q_g . k_j for positions [j0, j1) of one KV
 * head (row j at k + j * (D / 32 * 34)), q_g quantized to Q8_0; quant_attn_softmax_f32: one
 * head's softmax (capped when cap > 0), f32 weights, in place; quant_attn_pv_q8: out[g * D + d]
 * for d in [d0, d1) (multiples of 32) = sum over j of p_gj v_j[d], in order of j. */
void quant_q8_0_row(const float *x, uint32_t D, uint8_t *out);
void quant_attn_qk_q8(const float *q, uint32_t nh, const uint8_t *k, uint32_t j0, uint32_t j1, uint32_t D, float scale,
                      float *scores, uint64_t scores_stride);
void quant_attn_softmax_f32(float *scores, uint32_t n, float cap);
void quant_attn_pv_q8(const float *p, uint64_t scores_stride, uint32_t nh, const uint8_t *v, uint32_t n, uint32_t d0,
                      uint32_t d1, uint32_t D, float *out);

#endif
