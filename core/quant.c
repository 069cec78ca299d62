/* quant.c: the ggml type table, row sizes, and dispatch to the per-family
 * kernels (quant_float.c, quant_q.c, quant_k.c, quant_act.c, quant_dequant.c).
 * Switches only: a function pointer would add a 64-bit table (see PLATFORM.md). */
#include "quant_impl.h"

/* QI_ANCHOR's global (quant_impl.h) */
__asm__(".globl qi_sink\n.hidden qi_sink\n.globaltype qi_sink, i64\nqi_sink:"); /* (hidden: not exported) */

/* Every ggml type id (ggml/include/ggml.h), with block sizes and bytes per
 * block as ggml's type_traits: the one table in core/abi.json (REALM_GGML_TYPES);
 * only those marked to run have kernels here, the rest are known by name so a
 * loader can say which tensor has which unsupported type. */
#define TYPE_ENTRY(id, name, block, bytes, runs) [id] = { name, block, bytes, runs },
static const QuantType TYPES[] = { REALM_GGML_TYPES(TYPE_ENTRY) };
#undef TYPE_ENTRY
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])
static const QuantType UNKNOWN = { NULL, 0, 0, false };

const QuantType *quant_type(uint32_t type) {
    if ((type & QUANT_X4) && quant_can_x4(type & ~QUANT_X4, 0)) type &= ~QUANT_X4;
    if (type < N_TYPES && TYPES[type].name) return &TYPES[type];
    return &UNKNOWN;
}

uint64_t quant_row_bytes(uint32_t type, uint64_t n) {
    const QuantType *t = quant_type(type);
    if (!t->block_size) return 0;
    return n / t->block_size * t->type_size;
}

int quant_act_kind(uint32_t type) {
    switch (type & ~QUANT_X4) {
    case GGML_TYPE_F32: return ACT_F32;
    case GGML_TYPE_F16: return ACT_F16;
    case GGML_TYPE_BF16: return ACT_BF16;
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: return QI_RELAXED ? ACT_Q8_0B : ACT_Q8_0;
    case GGML_TYPE_Q8_0: return ACT_Q8_0;
    /* llama.cpp gives Q8_1 weights vec_dot_type Q8_1 (and no CPU kernel at
     * all); we pair them with Q8_1 activations: sum d_w d_x q_w q_x. */
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: return QI_RELAXED ? ACT_Q8_1B : ACT_Q8_1;
    case GGML_TYPE_Q8_1: return ACT_Q8_1;
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K: return QI_RELAXED ? ACT_Q8_KB : ACT_Q8_K;
    case GGML_TYPE_Q8_K: return ACT_Q8_K;
    default: return ACT_NONE;
    }
}

uint64_t quant_act_row_bytes(uint32_t type, uint64_t K) {
    uint64_t b;
    const int kind = quant_act_kind(type);
    const uint64_t q = qi_quant_bytes(kind) * K;
    switch (qi_kind_base(kind)) {
    case ACT_F32: case ACT_F16: case ACT_BF16: b = 4 * K; break;
    case ACT_Q8_0: case ACT_Q8_1: b = q + 8 * (K / 32); break;
    case ACT_Q8_K: b = q + 4 * (K / 256) + 2 * (K / 16) + 2 * (K / 32); break;
    default: return 0;
    }
    return RT_ALIGN_UP(b, 64);
}

uint64_t quant_act_bytes(uint32_t type, uint64_t K, uint64_t T) {
    return quant_act_row_bytes(type, K) * T;
}

void quant_act_quantize(uint32_t type, const float *x, uint64_t K, uint64_t T, void *xq) {
    const int kind = quant_act_kind(type);
    if (kind == ACT_NONE) return;
    const uint64_t rb = quant_act_row_bytes(type, K);
    uint8_t *out = (uint8_t *)xq;
    for (uint64_t t = 0; t < T; t++) quant_act_impl(kind, x + t * K, K, out + t * rb);
}

void quant_dequant_row(uint32_t type, const void *src, float *dst, uint64_t n) {
    quant_dequant_impl(type, (const uint8_t *)src, dst, n);
}

void quant_get_row(uint32_t type, const void *W, uint64_t r, uint64_t K, float *dst) {
    const uint64_t rb = quant_row_bytes(type, K);
    if (type & QUANT_X4) quant_x4_row(type & ~QUANT_X4, (const uint8_t *)W, rb, r, K, dst);
    else quant_dequant_impl(type, (const uint8_t *)W + r * rb, dst, K);
}

void quant_matmul_q(uint32_t type, const void *W, uint64_t K, uint64_t r0, uint64_t r1,
                    const void *xq, uint64_t T, float *y, uint64_t y_stride) {
    if (r1 <= r0 || T == 0) return;
    const uint64_t rb = quant_row_bytes(type, K), xrb = quant_act_row_bytes(type, K);
    const uint8_t *w = (const uint8_t *)W, *x = (const uint8_t *)xq;
    switch (type) {
    case GGML_TYPE_F32: quant_mm_f32(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_F16: quant_mm_f16(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_BF16: quant_mm_bf16(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q4_0: quant_mm_q4_0(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q4_1: quant_mm_q4_1(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q5_0: quant_mm_q5_0(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q5_1: quant_mm_q5_1(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q8_0: quant_mm_q8_0(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q8_1: quant_mm_q8_1(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q2_K: quant_mm_q2_K(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q3_K: quant_mm_q3_K(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q4_K: quant_mm_q4_K(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q5_K: quant_mm_q5_K(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q6_K: quant_mm_q6_K(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case GGML_TYPE_Q8_K: quant_mm_q8_K(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case QUANT_X4 | GGML_TYPE_Q4_0: quant_mm_q4_0_x4(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case QUANT_X4 | GGML_TYPE_Q4_1: quant_mm_q4_1_x4(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case QUANT_X4 | GGML_TYPE_Q5_0: quant_mm_q5_0_x4(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case QUANT_X4 | GGML_TYPE_Q5_1: quant_mm_q5_1_x4(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case QUANT_X4 | GGML_TYPE_Q8_0: quant_mm_q8_0_x4(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case QUANT_X4 | GGML_TYPE_Q2_K: quant_mm_q2_K_x4(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case QUANT_X4 | GGML_TYPE_Q3_K: quant_mm_q3_K_x4(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case QUANT_X4 | GGML_TYPE_Q4_K: quant_mm_q4_K_x4(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case QUANT_X4 | GGML_TYPE_Q5_K: quant_mm_q5_K_x4(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    case QUANT_X4 | GGML_TYPE_Q6_K: quant_mm_q6_K_x4(w, rb, K, r0, r1, x, xrb, T, y, y_stride); break;
    default: break;
    }
}

/* Checks shared by quant_matmul and the exports: a runnable type and a K the
 * block size divides. Sets rt_err and returns false otherwise. */
bool quant_check(uint32_t type, uint64_t K) {
    const QuantType *t = quant_type(type);
    if (!t->name) {
        rt_err("unknown ggml type id ", NULL), rt_err_append_u64(type);
        return false;
    }
    if (!t->can_run) {
        rt_err("ggml type ", t->name, " is not supported by this build", NULL);
        return false;
    }
    if (K % t->block_size) {
        rt_err("row length ", NULL), rt_err_append_u64(K);
        rt_err_append(" is not a multiple of the "), rt_err_append(t->name);
        rt_err_append(" block size "), rt_err_append_u64(t->block_size);
        return false;
    }
    return true;
}

static void *scratch;
static uint64_t scratch_cap;

bool quant_matmul(uint32_t type, const void *W, uint64_t K, uint64_t r0, uint64_t r1,
                  const float *x, uint64_t T, float *y, uint64_t y_stride) {
    if (!quant_check(type, K)) return false;
    const uint64_t need = quant_act_bytes(type, K, T);
    if (need > scratch_cap) {
        rt_free(scratch); /* nothing to keep: no copy */
        scratch_cap = 0;
        void *p = scratch = rt_malloc(need);
        if (!p) {
            rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory: quant_matmul needs ", NULL), rt_err_append_u64(need);
            rt_err_append(" bytes of scratch");
            return false;
        }
        scratch = p;
        scratch_cap = need;
    }
    quant_act_quantize(type, x, K, T, scratch);
    quant_matmul_q(type, W, K, r0, r1, scratch, T, y, y_stride);
    return true;
}
