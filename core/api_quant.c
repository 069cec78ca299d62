/* api_quant.c: exports of the quant module, for tests and benchmarks.
 *
 * Pointers are wasm addresses the host owns (realm_alloc); element counts and
 * strides are in elements, sizes in bytes. Functions returning a status give
 * 1 on success and 0 on failure, with the reason in realm_last_error(). */
#include "api.h"
#include "quant_impl.h"
#include "batch.h"

/* Name of a ggml type id as a NUL-terminated static string, or 0 (null) when
 * the id is unknown. */
EXPORT const char *realm_quant_type_name(uint32_t type) { return quant_type(type)->name; }

/* out[0..4) (u32) = block size (elements), type size (bytes per block),
 * can_run (0/1), the vec_dot type of the activations (ggml id, or 0xffffffff
 * when not runnable). Status: 0 when the id is unknown (out untouched). */
EXPORT int32_t realm_quant_type_info(uint32_t type, uint32_t *out) {
    const QuantType *t = quant_type(type);
    if (!t->name) {
        rt_err("unknown ggml type id ", NULL), rt_err_append_u64(type);
        return 0;
    }
    static const uint32_t VEC_DOT[] = { [ACT_F32] = GGML_TYPE_F32, [ACT_F16] = GGML_TYPE_F16,
                                        [ACT_BF16] = GGML_TYPE_BF16, [ACT_Q8_0] = GGML_TYPE_Q8_0,
                                        [ACT_Q8_1] = GGML_TYPE_Q8_1, [ACT_Q8_K] = GGML_TYPE_Q8_K,
                                        [ACT_Q8_0B] = GGML_TYPE_Q8_0, [ACT_Q8_1B] = GGML_TYPE_Q8_1,
                                        [ACT_Q8_KB] = GGML_TYPE_Q8_K, [ACT_NONE] = 0xffffffffu };
    out[0] = t->block_size;
    out[1] = t->type_size;
    out[2] = t->can_run;
    out[3] = VEC_DOT[quant_act_kind(type)];
    return 1;
}

/* Bytes of one row of n elements (0 for an unknown type). */
EXPORT uint64_t realm_quant_row_bytes(uint32_t type, uint64_t n) { return quant_row_bytes(type, n); }

/* dst[0..n) (f32) = dequantized src (quant_row_bytes(type, n) bytes). */
EXPORT int32_t realm_quant_dequant(uint32_t type, const void *src, float *dst, uint64_t n) {
    if (!quant_check(type, n)) return 0;
    if (type & QUANT_X4) {
        rt_err("realm_quant_dequant: a row of an x4 matrix cannot be dequantized on its own", NULL);
        return 0;
    }
    quant_dequant_row(type, src, dst, n);
    return 1;
}

/* Bytes of the activation buffer for T rows of K (the module's own layout). */
EXPORT uint64_t realm_quant_act_bytes(uint32_t type, uint64_t K, uint64_t T) { return quant_act_bytes(type, K, T); }

/* xq (quant_act_bytes(type, K, T) bytes) = x (T rows of K f32) quantized to
 * type's vec_dot type. */
EXPORT int32_t realm_quant_act_quantize(uint32_t type, const float *x, uint64_t K, uint64_t T, void *xq) {
    if (!quant_check(type, K)) return 0;
    quant_act_quantize(type, x, K, T, xq);
    return 1;
}

/* Bytes realm_quant_act_export writes: T rows in ggml's own encoding of the
 * vec_dot type (f32, f16, bf16, block_q8_0, block_q8_1 or block_q8_K). */
EXPORT uint64_t realm_quant_act_export_bytes(uint32_t type, uint64_t K, uint64_t T) {
    return quant_act_export_row_bytes(quant_act_kind(type), K) * T;
}

/* out = the activation buffer xq (from realm_quant_act_quantize) re-encoded
 * as ggml's bytes, rows back to back; for comparing with llama.cpp. */
EXPORT int32_t realm_quant_act_export(uint32_t type, const void *xq, uint64_t K, uint64_t T, void *out) {
    if (!quant_check(type, K)) return 0;
    const int kind = quant_act_kind(type);
    const uint64_t rb = quant_act_row_bytes(type, K), ob = quant_act_export_row_bytes(kind, K);
    for (uint64_t t = 0; t < T; t++)
        quant_act_export_row(kind, (const uint8_t *)xq + t * rb, K, (uint8_t *)out + t * ob);
    return 1;
}

/* y[t * y_stride + r] = sum_k W[r][k] * xq[t][k] for r in [r0, r1), t < T,
 * with xq from realm_quant_act_quantize. */
EXPORT int32_t realm_quant_matmul_q(uint32_t type, const void *W, uint64_t K, uint64_t r0, uint64_t r1,
                                    const void *xq, uint64_t T, float *y, uint64_t y_stride) {
    if (!quant_check(type, K)) return 0;
    quant_matmul_q(type, W, K, r0, r1, xq, T, y, y_stride);
    return 1;
}

/* y (T x rows f32, row-major: y[t * rows + r]) = W (rows x K, stored type)
 * times x (T x K f32), activations quantized with the module's scratch. */
EXPORT int32_t realm_quant_matmul(uint32_t type, const void *W, uint64_t K, uint64_t rows,
                                  const float *x, uint64_t T, float *y) {
    return quant_matmul(type, W, K, 0, rows, x, T, y, rows) ? 1 : 0;
}

/* As realm_quant_matmul for rows [r0, r1) only, y[t * y_stride + r]. */
EXPORT int32_t realm_quant_matmul_rows(uint32_t type, const void *W, uint64_t K, uint64_t r0, uint64_t r1,
                                       const float *x, uint64_t T, float *y, uint64_t y_stride) {
    return quant_matmul(type, W, K, r0, r1, x, T, y, y_stride) ? 1 : 0;
}

/* dst (K f32) = row r of W dequantized (quant_get_row: ggml's layout or x4). */
EXPORT int32_t realm_quant_get_row(uint32_t type, const void *W, uint64_t K, uint64_t r, float *dst) {
    rt_err_clear();
    if (!quant_check(type, K)) return 0;
    quant_get_row(type, W, r, K, dst);
    return 1;
}

/* W (rows x K, ggml's layout) -> the x4 layout in place; its type id, or 0. */
EXPORT uint32_t realm_quant_repack_x4(uint32_t type, void *W, uint64_t K, uint64_t rows) {
    rt_err_clear();
    if (!quant_check(type, K) || type & QUANT_X4) return 0;
    if (!quant_can_x4(type, rows)) {
        rt_err("realm_quant_repack_x4: the x4 layout takes Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 or Q2_K..Q6_K with a multiple of 4 rows", NULL);
        return 0;
    }
    if (!quant_repack_x4(type, (uint8_t *)W, K, rows)) {
        rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory: realm_quant_repack_x4 needs four rows of scratch", NULL);
        return 0;
    }
    return QUANT_X4 | type;
}

/* Benchmark helper: run quant_matmul_q `reps` times (one host call, so the
 * wasmtime call overhead does not count). Status as above. */
EXPORT int32_t realm_quant_bench(uint32_t type, const void *W, uint64_t K, uint64_t rows,
                                 const void *xq, uint64_t T, float *y, uint32_t reps) {
    if (!quant_check(type, K)) return 0;
    for (uint32_t i = 0; i < reps; i++) quant_matmul_q(type, W, K, 0, rows, xq, T, y, rows);
    return 1;
}

/* One row's attention in nh query heads that share a KV head, over an f16
 * cache (quant_attn_heads_f16; nh = 1 is quant_attn_head_f16): for tests.
 * scores: nh rows of n f32 at stride scores_stride (scratch). 1, or 0 (rt_err)
 * for a head_dim that is not a multiple of 8 or over 1024, or no heads. */
EXPORT int32_t realm_quant_attn_f16(const float *q, uint32_t nh, const uint16_t *k, const uint16_t *v,
                                    uint64_t kv_stride, uint32_t n, uint32_t D, float scale, float cap,
                                    float *scores, uint64_t scores_stride, float *out) {
    if (D == 0 || D % 8 || D > 1024 || nh == 0 || n == 0 || scores_stride < n) {
        rt_err("realm_quant_attn_f16: head_dim must be a multiple of 8 up to 1024, nh and n at least 1, "
               "scores_stride at least n", NULL);
        return 0;
    }
    quant_attn_heads_f16(q, nh, k, v, kv_stride, n, D, scale, cap, scores, scores_stride, out);
    return 1;
}

/* The forward pass's GeGLU, g[i] = gelu(g[i]) * u[i] (ggml's f16 table), for tests. */
EXPORT int32_t realm_quant_geglu(float *g, const float *u, uint64_t n) {
    rt_err_clear();
    if (!g || !u) { rt_err("realm_quant_geglu: null pointer", NULL); return 0; }
    batch_geglu(g, u, n);
    return 1;
}

/* The forward pass's SwiGLU, g[i] = g[i] / (1 + exp(-g[i])) * u[i], for tests. */
EXPORT int32_t realm_quant_swiglu(float *g, const float *u, uint64_t n) {
    rt_err_clear();
    if (!g || !u) { rt_err("realm_quant_swiglu: null pointer", NULL); return 0; }
    batch_swiglu(g, u, n);
    return 1;
}

/* The forward pass's soft-capping, y[i] = tanh(y[i] / cap) * cap, for tests. */
EXPORT int32_t realm_quant_softcap(float *y, uint64_t n, float cap) {
    rt_err_clear();
    if (!y || !(cap > 0)) { rt_err("realm_quant_softcap: null pointer or cap not positive", NULL); return 0; }
    batch_softcap(y, n, cap);
    return 1;
}
