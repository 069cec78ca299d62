/* batch.c: the forward pass, over the rows of one or more sessions (batch.h),
 * and session_eval, its one-session case. */
#include "batch.h"
#include "lora.h"
#include "quant.h"
#include "threads.h"

/* The forward pass computes what it says (no reassociation under -fassociative-math):
 * the GPU backend reproduces it operation for operation (docs/GPU.md). */
#pragma clang fp reassociate(off)
#include <wasm_simd128.h>
#include "simd_exp.h"

static int32_t failed_seq = -1;
int32_t batch_failed(void) { return failed_seq; }
void batch_reset_failed(void) { failed_seq = -1; }
void batch_set_failed(int32_t i) { failed_seq = i; }

/* ------------------------------------------------------------------ maths */
static void rmsnorm(float *out, const float *x, const float *w, uint64_t n, float eps) {
    double ss = 0; /* ggml sums squares in double */
    for (uint64_t i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    float scale = 1.0f / rt_sqrtf((float)(ss / (double)n) + eps);
    for (uint64_t i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

/* g[i] = g[i] / (1 + exp(-g[i])) * u[i] (SwiGLU), exp as llama.cpp's SiLU
 * computes it (qi_expf_x4, simd_exp.h), four at a time and in the tail alike. */
static inline v128_t swiglu_x4(v128_t gv, v128_t uv) {
    const v128_t den = wasm_f32x4_add(wasm_f32x4_splat(1.0f), qi_expf_x4(wasm_f32x4_neg(gv)));
    return wasm_f32x4_mul(wasm_f32x4_div(gv, den), uv);
}
static void swiglu(float *g, const float *u, uint64_t n) {
    uint64_t i = 0;
    for (; i + 4 <= n; i += 4) wasm_v128_store(g + i, swiglu_x4(wasm_v128_load(g + i), wasm_v128_load(u + i)));
    for (; i < n; i++) g[i] = wasm_f32x4_extract_lane(swiglu_x4(wasm_f32x4_splat(g[i]), wasm_f32x4_splat(u[i])), 0);
}

/* Where each of n (<= 3) weights that read the same activations finds them in
 * xq: x is quantized once per activation type those weights need (same[i] >=
 * 0: weight i shares weight same[i]'s copy). Returns the bytes for T rows. */
static uint64_t act_layout(uint32_t n, const Tensor *const *ws, uint64_t T, uint64_t *off, int *same) {
    uint64_t need = 0;
    for (uint32_t i = 0; i < n; i++) {
        same[i] = -1;
        for (uint32_t k = 0; k < i && same[i] < 0; k++)
            if (ws[k]->ne0 == ws[i]->ne0 && quant_act_kind(ws[k]->type) == quant_act_kind(ws[i]->type)) same[i] = (int)k;
        off[i] = same[i] >= 0 ? off[same[i]] : need;
        if (same[i] < 0) need += RT_ALIGN_UP(quant_act_bytes(ws[i]->type, ws[i]->ne0, T), 64);
    }
    return need;
}

/* gemma3: each of T rows of a branch's output RMS-normed in place (no weight: nothing) */
static void post_norm(float *y, const Tensor *w, uint32_t T, uint64_t E, float eps) {
    if (!w->data) return;
    for (uint32_t t = 0; t < T; t++) rmsnorm(y + t * E, y + t * E, (const float *)w->data, E, eps);
}

/* g[i] = gelu(g[i]) * u[i] (GeGLU) as ggml computes it on the CPU: gelu's tanh form read
 * from a table over f16 inputs (GGML_GELU_FP16), 0 below -10, the identity above 10. */
static uint16_t gelu_f16[1 << 16];
static bool gelu_ready;
static void gelu_table(void) { /* (on the main thread, before any worker reads it) */
    if (gelu_ready) return;
    for (uint32_t i = 0; i < 1u << 16; i++) {
        float x = rt_f16_to_f32((uint16_t)i);
        float y = 0.5f * x * (1.0f + rt_tanhf(0.79788456080286535588f * x * (1.0f + 0.044715f * x * x)));
        gelu_f16[i] = rt_f32_to_f16(y);
    }
    gelu_ready = true;
}
static void geglu(float *g, const float *u, uint64_t n) {
    gelu_table();
    for (uint64_t i = 0; i < n; i++) {
        float x = g[i];
        float y = x <= -10.0f ? 0.0f : x >= 10.0f ? x : rt_f16_to_f32(gelu_f16[rt_f32_to_f16(x)]);
        g[i] = y * u[i];
    }
}

/* floats per item of the gating: about four items per thread, 256 to 4096
 * floats each (a multiple of 4: the same SIMD groups), so one decoded row's
 * gating is split too */
static uint64_t glu_chunk(uint64_t n) {
    const uint64_t items = 4 * ((uint64_t)threads_count() + 1), per = RT_ALIGN_UP((n + items - 1) / items, 4);
    return RT_MIN(RT_MAX(per, 256), 4096);
}
enum { ATT_ROWS, ATT_QK, ATT_SOFTMAX, ATT_PV, STEP_GLU }; /* step_item's phases */

/* g = act(g) * u over n floats (SwiGLU, or GeGLU for gelu), in chunks on every
 * thread: each value is computed alone, so any split gives the same bits. */
static void glu(Batch *b, float *g, const float *u, uint64_t n, bool gelu) {
    if (gelu) gelu_table();
    b->glu_g = g, b->glu_u = u, b->glu_n = n, b->glu_gelu = gelu, b->glu_chunk = glu_chunk(n);
    threads_step(b, 0, STEP_GLU, (n + b->glu_chunk - 1) / b->glu_chunk);
}

static void glu_item(const Batch *b, uint64_t item) {
    const uint64_t i0 = item * b->glu_chunk, n = RT_MIN(b->glu_n - i0, b->glu_chunk);
    if (b->glu_gelu) geglu(b->glu_g + i0, b->glu_u + i0, n);
    else swiglu(b->glu_g + i0, b->glu_u + i0, n);
}

/* y_i = x W_i^T for n (<= 3) weights that read the same activations x (T
 * rows), as one threaded job. b->xq holds T rows (batch_reserve). */
static void matmuls(Batch *b, uint32_t n, const Tensor *const *ws, float *const *ys, const float *x, uint64_t T) {
    MatmulSpec m[THREADS_MAX_MATMULS];
    uint64_t off[THREADS_MAX_MATMULS];
    int same[THREADS_MAX_MATMULS];
    act_layout(n, ws, T, off, same);
    for (uint32_t i = 0; i < n; i++) {
        if (same[i] < 0) threads_quantize(ws[i]->type, x, ws[i]->ne0, T, b->xq + off[i]);
        m[i] = (MatmulSpec){ .type = ws[i]->type, .W = ws[i]->data, .xq = b->xq + off[i], .K = ws[i]->ne0,
                             .rows = ws[i]->ne1, .y_stride = ws[i]->ne1, .y = ys[i] };
    }
    threads_matmul(m, n, T);
}

static void matmul(Batch *b, const Tensor *w, const float *x, uint64_t T, float *y) {
    matmuls(b, 1, &w, &y, x, T);
}

/* The most activation bytes per row any matmul of the forward pass needs. */
static uint64_t act_per_row(const Model *m) {
    uint64_t off[THREADS_MAX_MATMULS], most = 0;
    int same[THREADS_MAX_MATMULS];
    const Tensor *out[] = {&m->output};
    most = act_layout(1, out, 1, off, same);
    for (uint32_t l = 0; l < m->cfg.n_layer; l++) {
        const Layer *L = &m->layers[l];
        const Tensor *qkv[] = {&L->wq, &L->wk, &L->wv}, *wo[] = {&L->wo}, *gu[] = {&L->w_gate, &L->w_up},
                     *dn[] = {&L->w_down};
        most = RT_MAX(most, act_layout(3, qkv, 1, off, same));
        most = RT_MAX(most, act_layout(1, wo, 1, off, same));
        if (m->cfg.n_expert) { /* MoE: router, experts, shared expert and its gate */
            const Tensor *r[] = {&L->gate_inp}, *egu[] = {&L->gate_exps, &L->up_exps}, *ed[] = {&L->down_exps};
            const Tensor *sg[] = {&L->gate_inp_shexp}, *sgu[] = {&L->gate_shexp, &L->up_shexp}, *sd[] = {&L->down_shexp};
            most = RT_MAX(most, act_layout(1, r, 1, off, same));
            most = RT_MAX(most, act_layout(2, egu, 1, off, same));
            most = RT_MAX(most, act_layout(1, ed, 1, off, same));
            if (L->gate_shexp.data) {
                most = RT_MAX(most, act_layout(1, sg, 1, off, same));
                most = RT_MAX(most, act_layout(2, sgu, 1, off, same));
                most = RT_MAX(most, act_layout(1, sd, 1, off, same));
            }
            continue;
        }
        most = RT_MAX(most, act_layout(2, gu, 1, off, same));
        most = RT_MAX(most, act_layout(1, dn, 1, off, same));
    }
    return most;
}

static void add_bias(float *y, const Tensor *b, uint64_t T) {
    if (!b->data) return;
    const float *bv = (const float *)b->data;
    for (uint64_t t = 0; t < T; t++)
        for (uint64_t i = 0; i < b->ne0; i++) y[t * b->ne0 + i] += bv[i];
}

/* Rotate n_heads heads of `x` (head_dim apart) by one position's rope_table row. */
static void rope(const ModelConfig *c, float *x, uint32_t n_heads, const float *cs) {
    uint32_t nd = c->rope_dim;
    for (uint32_t i0 = 0; i0 < nd; i0 += 2) {
        float ct = cs[i0], st = cs[i0 + 1];
        uint32_t a = c->rope_type == ROPE_NEOX ? i0 / 2 : i0, b = c->rope_type == ROPE_NEOX ? i0 / 2 + nd / 2 : i0 + 1;
        for (uint32_t h = 0; h < n_heads; h++) {
            float *v = x + (uint64_t)h * c->head_dim;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * ct - x1 * st;
            v[b] = x0 * st + x1 * ct;
        }
    }
}

/* gemma2: cap * tanh(x / cap), in ggml's order (scale by 1 / cap, tanh, scale by cap) */
static inline float softcap(float x, float cap) { return rt_tanhf(x * (1.0f / cap)) * cap; }

static void softcap_rows(float *y, uint64_t n, float cap) {
    if (cap > 0)
        for (uint64_t i = 0; i < n; i++) y[i] = softcap(y[i], cap);
}

static inline float f16r(float x) { return rt_f16_to_f32(rt_f32_to_f16(x)); }

static void attention_scalar(const float *q, const uint16_t *kc, const uint16_t *vc, uint64_t kvd, uint32_t n,
                             uint32_t D, float scale, float cap, float *scores, float *out);
static bool regrow(void *p, uint64_t n);

#define ATTN_GROUP_MAX 4   /* query heads per item and row: quant_attn.c's widest group */
#define ATTN_SCORE_ROWS (2 * ATTN_GROUP_MAX) /* scores rows per thread: a pair of rows' heads (quant_attn_pair_f16) */
#define ATTN_SPLIT_MIN 512 /* positions from which a few rows' attention is split by positions and dimensions */
#define ATTN_QK_CHUNK 256  /* positions per q.k item when split */
#define ATTN_PV_CHUNK 32   /* dimensions per p.v item when split: one 64-byte line of the f16 cache */

/* Row r's view of layer l's cache in KV head kvh: how many positions it sees
 * (a sliding-window layer sees the last n_swa) and where the first of them
 * starts in its session's K and V caches (session_kv_row). */
static uint32_t row_cache(const Batch *b, uint32_t l, uint32_t r, uint32_t kvh, const uint8_t **kc, const uint8_t **vc) {
    const Session *s = b->rows[r].s;
    const ModelConfig *c = &s->m->cfg;
    uint32_t n = b->rows[r].pos + 1, first = 0;
    if (s->m->layers[l].swa && n > c->n_swa) first = n - c->n_swa, n = c->n_swa;
    if (kc) {
        *kc = session_kv_row(s, 0, l, kvh, first);
        *vc = session_kv_row(s, 1, l, kvh, first);
    }
    return n;
}

/* Attention of nh heads (q, out: nh x D) over n cache rows where K or V or both
 * are Q8_0 (quant_attn_q8.c); the parts of an f16 K or V as quant_attn.c computes them. */
static void attention_heads_mixed(const Session *s, const float *q, uint32_t nh, const uint8_t *kc, const uint8_t *vc,
                                  uint32_t n, float scale, float cap, float *scores, uint64_t ss, float *out) {
    const uint32_t D = s->m->cfg.head_dim;
    const uint64_t kvd = (uint64_t)s->m->cfg.n_head_kv * D;
    if (s->type_k == GGML_TYPE_Q8_0) quant_attn_qk_q8(q, nh, kc, 0, n, D, scale, scores, ss);
    else quant_attn_qk_f16(q, nh, (const uint16_t *)kc, kvd, 0, n, D, scale, scores, ss);
    for (uint32_t g = 0; g < nh; g++) {
        if (s->type_v == GGML_TYPE_Q8_0) quant_attn_softmax_f32(scores + g * ss, n, cap);
        else quant_attn_softmax_f16(scores + g * ss, n, cap);
    }
    if (s->type_v == GGML_TYPE_Q8_0) quant_attn_pv_q8(scores, ss, nh, vc, n, 0, D, D, out);
    else quant_attn_pv_f16(scores, ss, nh, (const uint16_t *)vc, kvd, n, 0, D, D, out);
}

/* The factor of the scores (1 where q was scaled after RoPE: gemma2, phi3), and
 * thread tid's ATTN_SCORE_ROWS rows of b->scores. */
static inline float score_scale(const ModelConfig *c) { return c->q_prescale ? 1.0f : c->attn_scale; }
static inline float *thread_scores(const Batch *b, uint32_t tid) {
    return b->scores + (uint64_t)tid * ATTN_SCORE_ROWS * b->scores_len;
}

/* Attention of row r of the step (its session's position rows[r].pos) in heads
 * [h0, h0 + nh) (all of one KV head's group) over its session's cache of layer
 * l, into b->att; thread `tid` uses its own rows of b->scores (thread_scores).
 * As llama.cpp does without flash attention: q and the softmax weights are rounded
 * to f16 before meeting the f16 cache; sums run in f32. */
static void attention_heads(const Batch *b, uint32_t l, uint32_t r, uint32_t h0, uint32_t nh, uint32_t tid) {
    const Session *s = b->rows[r].s;
    const ModelConfig *c = &s->m->cfg;
    uint32_t D = c->head_dim, H = c->n_head, G = c->n_head / c->n_head_kv;
    uint64_t kvd = (uint64_t)c->n_head_kv * D;
    const uint8_t *kc, *vc;
    uint32_t n = row_cache(b, l, r, h0 / G, &kc, &vc);
    float *scores = thread_scores(b, tid);
    float scale = score_scale(c), cap = c->attn_softcap;
    const float *q = b->q + (uint64_t)r * H * D + (uint64_t)h0 * D;
    float *out = b->att + (uint64_t)r * H * D + (uint64_t)h0 * D;
    if (s->type_k != GGML_TYPE_F16 || s->type_v != GGML_TYPE_F16) { /* a Q8_0 cache (D % 32 == 0) */
        attention_heads_mixed(s, q, nh, kc, vc, n, scale, cap, scores, b->scores_len, out);
        return;
    }
    const uint16_t *k16 = (const uint16_t *)kc, *v16 = (const uint16_t *)vc;
    if (D % 8 == 0) { /* every real model (read_config caps D at 1024): SIMD, quant_attn.c */
        quant_attn_heads_f16(q, nh, k16, v16, kvd, n, D, scale, cap, scores, b->scores_len, out);
        return;
    }
    for (uint32_t i = 0; i < nh; i++, q += D, out += D)
        attention_scalar(q, k16, v16, kvd, n, D, scale, cap, scores, out);
}

/* Whether rows r and r + 1 of the step are consecutive positions of one
 * session over the same f16 cache rows (the second seeing one more): a
 * prompt's tokens, which quant_attn_pair_f16 takes two at a time. */
static bool rows_pair(const Batch *b, uint32_t l, uint32_t r) {
    if (r + 1 >= b->n) return false;
    const Session *s = b->rows[r].s;
    if (b->rows[r + 1].s != s || b->rows[r + 1].pos != b->rows[r].pos + 1) return false;
    if (s->type_k != GGML_TYPE_F16 || s->type_v != GGML_TYPE_F16 || s->m->cfg.head_dim % 8) return false;
    const uint8_t *k0, *v0, *k1, *v1;
    const uint32_t n0 = row_cache(b, l, r, 0, &k0, &v0), n1 = row_cache(b, l, r + 1, 0, &k1, &v1);
    return n1 == n0 + 1 && k0 == k1; /* (not a sliding window that moved on) */
}

/* Heads [h0, h0 + nh) of rows r and r + 1 (rows_pair), as attention_heads
 * computes each row's. */
static void attention_pair(const Batch *b, uint32_t l, uint32_t r, uint32_t h0, uint32_t nh, uint32_t tid) {
    const ModelConfig *c = &b->rows[r].s->m->cfg;
    const uint32_t D = c->head_dim, H = c->n_head, G = c->n_head / c->n_head_kv;
    const uint64_t kvd = (uint64_t)c->n_head_kv * D, row = (uint64_t)H * D;
    const uint8_t *kc, *vc;
    const uint32_t n = row_cache(b, l, r, h0 / G, &kc, &vc);
    const float *q = b->q + r * row + (uint64_t)h0 * D;
    float *out = b->att + r * row + (uint64_t)h0 * D;
    quant_attn_pair_f16(q, q + row, nh, (const uint16_t *)kc, (const uint16_t *)vc, kvd, n, D, score_scale(c),
                        c->attn_softcap, thread_scores(b, tid), b->scores_len, out, out + row);
}

/* One item of layer l's attention (step_item's attention phases). ATT_ROWS:
 * (row, KV head, run of att_S of its heads), or with att_pairs (rows 2u and
 * 2u + 1, KV head, run): a pair (rows_pair) in one call, else each row. Split, for a few long rows that
 * would leave threads idle: ATT_QK (row, KV head, chunk of
 * positions): scores of all the group's heads; ATT_SOFTMAX (row, head);
 * ATT_PV (row, KV head, chunk of dimensions). Each value is computed by the
 * same operations either way (quant_attn.c), so the plan never changes bits. */
static void attention_item(const Batch *b, uint32_t l, uint32_t phase, uint64_t item, uint32_t tid) {
    const ModelConfig *c = &b->rows[0].s->m->cfg;
    const uint32_t D = c->head_dim, H = c->n_head, n_kv = c->n_head_kv, G = H / n_kv;
    if (phase == ATT_ROWS) {
        const uint64_t per_row = (uint64_t)n_kv * b->att_sub;
        const uint32_t u = (uint32_t)(item / per_row), it = (uint32_t)(item % per_row);
        const uint32_t kvh = it / b->att_sub, h0 = kvh * G + it % b->att_sub * b->att_S;
        const uint32_t nh = RT_MIN(b->att_S, (kvh + 1) * G - h0);
        if (!b->att_pairs) {
            attention_heads(b, l, u, h0, nh, tid);
        } else if (rows_pair(b, l, 2 * u)) {
            attention_pair(b, l, 2 * u, h0, nh, tid);
        } else {
            attention_heads(b, l, 2 * u, h0, nh, tid);
            if (2 * u + 1 < b->n) attention_heads(b, l, 2 * u + 1, h0, nh, tid);
        }
        return;
    }
    const uint64_t kvd = (uint64_t)n_kv * D, ss = b->att_max_n;
    const float scale = score_scale(c);
    if (phase == ATT_SOFTMAX) {
        const uint32_t r = (uint32_t)(item / H);
        const uint32_t n = row_cache(b, l, r, 0, NULL, NULL);
        if (b->rows[r].s->type_v == GGML_TYPE_Q8_0) quant_attn_softmax_f32(b->split_scores + item * ss, n, c->attn_softcap);
        else quant_attn_softmax_f16(b->split_scores + item * ss, n, c->attn_softcap);
        return;
    }
    const uint32_t chunks = phase == ATT_QK ? b->att_qk_chunks : b->att_pv_chunks;
    const uint64_t per_row = (uint64_t)n_kv * chunks;
    const uint32_t r = (uint32_t)(item / per_row), kvh = (uint32_t)(item % per_row / chunks);
    const uint32_t chunk = (uint32_t)(item % chunks);
    const Session *s = b->rows[r].s;
    const uint8_t *kc, *vc;
    const uint32_t n = row_cache(b, l, r, kvh, &kc, &vc);
    const uint64_t h0 = (uint64_t)kvh * G;
    float *scores = b->split_scores + ((uint64_t)r * H + h0) * ss;
    if (phase == ATT_QK) {
        const uint32_t j0 = chunk * ATTN_QK_CHUNK, j1 = RT_MIN(n, j0 + ATTN_QK_CHUNK);
        const float *q = b->q + ((uint64_t)r * H + h0) * D;
        if (j0 >= n) return;
        if (s->type_k == GGML_TYPE_Q8_0) quant_attn_qk_q8(q, G, kc, j0, j1, D, scale, scores, ss);
        else quant_attn_qk_f16(q, G, (const uint16_t *)kc, kvd, j0, j1, D, scale, scores, ss);
    } else {
        const uint32_t d0 = chunk * ATTN_PV_CHUNK, d1 = RT_MIN(D, d0 + ATTN_PV_CHUNK);
        float *out = b->att + ((uint64_t)r * H + h0) * D;
        if (s->type_v == GGML_TYPE_Q8_0) quant_attn_pv_q8(scores, ss, G, vc, n, d0, d1, D, out);
        else quant_attn_pv_f16(scores, ss, G, (const uint16_t *)vc, kvd, n, d0, d1, D, out);
    }
}

/* One item of phase `phase` of layer l (threads.c calls it for every item of a phase). */
void step_item(const Batch *b, uint32_t l, uint32_t phase, uint64_t item, uint32_t tid) {
    if (phase == STEP_GLU) glu_item(b, item);
    else attention_item(b, l, phase, item, tid);
}

/* Layer l's attention for the step's T rows, on every thread. Items are runs
 * of a KV head's query heads (each cache value read and converted once for
 * all of them), as many heads per item as still gives every thread two items; a
 * few rows over a long context (decoding) would still leave threads idle, so
 * they are split by positions and dimensions instead. */
static void attention_layer(Batch *b, const ModelConfig *c, uint32_t l, uint32_t T) {
    const uint32_t H = c->n_head, n_kv = c->n_head_kv, G = H / n_kv;
    const uint64_t n_threads = threads_count() + 1;
    uint32_t max_n = 0;
    for (uint32_t r = 0; r < T; r++) max_n = RT_MAX(max_n, row_cache(b, l, r, 0, NULL, NULL));
    if (n_threads > 1 && c->head_dim % 8 == 0 && max_n >= ATTN_SPLIT_MIN && (uint64_t)T * n_kv < 2 * n_threads) {
        const uint64_t need = (uint64_t)T * H * max_n;
        if (need <= b->split_cap || regrow(&b->split_scores, need * 4 + 64)) { /* else: the other plan */
            b->split_cap = RT_MAX(b->split_cap, need);
            b->att_max_n = max_n;
            b->att_qk_chunks = (max_n + ATTN_QK_CHUNK - 1) / ATTN_QK_CHUNK;
            b->att_pv_chunks = (c->head_dim + ATTN_PV_CHUNK - 1) / ATTN_PV_CHUNK;
            threads_step(b, l, ATT_QK, (uint64_t)T * n_kv * b->att_qk_chunks);
            threads_step(b, l, ATT_SOFTMAX, (uint64_t)T * H);
            threads_step(b, l, ATT_PV, (uint64_t)T * n_kv * b->att_pv_chunks);
            return;
        }
    }
    /* a prompt's rows two at a time (each cache value converted once for both,
     * and twice the heads in flight: q.k + p.v -30 % per row, SmolLM2 prompt),
     * when at least half the rows pair up */
    uint32_t pairs = 0;
    for (uint32_t r = 0; r + 1 < T; r += 2) pairs += rows_pair(b, l, r);
    b->att_pairs = 4 * pairs >= T && pairs > 0;
    const uint64_t units = b->att_pairs ? (T + 1) / 2 : T;
    uint32_t S = RT_MIN(G, ATTN_GROUP_MAX);
    /* at least two items per thread when there is more than one: with three KV heads
     * on two threads, three items leave one thread idle a third of the time
     * (SmolLM2's decode: 2-thread tok/s +5 % at 200 positions, +10 % at 500) */
    while (n_threads > 1 && S > 1 && units * n_kv * ((G + S - 1) / S) < 2 * n_threads) S = (S + 1) / 2;
    b->att_S = S, b->att_sub = (G + S - 1) / S;
    threads_step(b, l, ATT_ROWS, units * n_kv * b->att_sub);
}

/* An even head_dim that is not a multiple of 8 (tiny test models): scalar. */
static void attention_scalar(const float *q, const uint16_t *kc, const uint16_t *vc, uint64_t kvd, uint32_t n,
                             uint32_t D, float scale, float cap, float *scores, float *out) {
    float qh[1024], acc[1024];
    for (uint32_t d = 0; d < D; d++) qh[d] = f16r(q[d]);
    for (uint32_t j = 0; j < n; j++) {
        const uint16_t *k = kc + (uint64_t)j * kvd;
        float dot = 0;
        for (uint32_t d = 0; d < D; d++) dot += qh[d] * rt_f16_to_f32(k[d]);
        scores[j] = dot * scale;
    }
    quant_attn_softmax_f32(scores, n, cap); /* the SIMD path's softmax: e_j * inv */
    for (uint32_t d = 0; d < D; d++) acc[d] = 0;
    for (uint32_t j = 0; j < n; j++) {
        float p = f16r(scores[j]);
        const uint16_t *v = vc + (uint64_t)j * kvd;
        for (uint32_t d = 0; d < D; d++) acc[d] += p * rt_f16_to_f32(v[d]);
    }
    memcpy(out, acc, D * 4);
}

/* -------------------------------------------------------------- workspace */
void batch_free(Batch *b) {
    if (!b) return;
    void *ps[] = {b->rows, b->x, b->xb, b->q, b->k, b->v, b->att, b->hb, b->hb2, b->rope_cs, b->rope_cs_swa, b->scores,
                  b->xq, b->logits, b->moe, b->split_scores};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) rt_free(ps[i]);
    rt_free(b);
}

static bool oom(const char *what) {
    rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory for the forward pass's ", what, NULL);
    return false;
}

/* Replace *p by a fresh block of n bytes (contents not kept); false if none. */
static bool regrow(void *p, uint64_t n) {
    void *q = rt_malloc(n);
    if (!q) return false;
    rt_free(*(void **)p);
    *(void **)p = q;
    return true;
}

/* Room for a step of T rows over sessions of contexts up to max_ctx, logits
 * scratch for n_logits rows (0: none needed), activations and attention
 * scores for the current thread count. Changes no session. */
static Batch *batch_reserve(Model *m, uint32_t T, uint32_t max_ctx, uint32_t n_logits) {
    Batch *b = m->batch;
    if (!b) {
        b = m->batch = rt_calloc(1, sizeof(Batch));
        if (!b) { oom("workspace"); return NULL; }
        b->xq_per_row = act_per_row(m);
    }
    const ModelConfig *c = &m->cfg;
    if (T > b->cap) {
        uint64_t B = T, E = c->n_embd, qd = (uint64_t)c->n_head * c->head_dim, kvd = (uint64_t)c->n_head_kv * c->head_dim;
        uint64_t ffw = RT_MAX(c->n_ff, RT_MAX(c->n_ff_exp, c->n_ff_shexp)); /* the widest FFN (MoE: experts') */
        uint64_t wide = RT_MAX(RT_MAX(E, qd), ffw);
        /* all or nothing: a failed grow leaves a smaller, consistent workspace */
        Batch nb = *b;
        void **ps[] = {(void **)&nb.rows, (void **)&nb.x, (void **)&nb.xb, (void **)&nb.q, (void **)&nb.k, (void **)&nb.v,
                       (void **)&nb.att, (void **)&nb.hb, (void **)&nb.hb2, (void **)&nb.rope_cs, (void **)&nb.rope_cs_swa};
        uint64_t sz[] = {B * sizeof(BatchRow), B * E * 4, B * wide * 4, B * qd * 4, B * kvd * 4, B * kvd * 4,
                         B * qd * 4, B * ffw * 4, B * ffw * 4, B * RT_MAX(c->rope_dim, 2u) * 4,
                         c->n_swa ? B * RT_MAX(c->rope_dim, 2u) * 4 : 0};
        const size_t n_ps = c->n_swa ? sizeof ps / sizeof *ps : sizeof ps / sizeof *ps - 1;
        nb.rope_cs_swa = NULL;
        bool ok = true;
        for (size_t i = 0; i < n_ps; i++) {
            *ps[i] = ok ? rt_malloc(sz[i]) : NULL;
            ok = ok && *ps[i];
        }
        if (!ok) {
            for (size_t i = 0; i < n_ps; i++) rt_free(*ps[i]);
            oom("activations");
            return NULL;
        }
        void *old[] = {b->rows, b->x, b->xb, b->q, b->k, b->v, b->att, b->hb, b->hb2, b->rope_cs, b->rope_cs_swa};
        for (size_t i = 0; i < sizeof old / sizeof *old; i++) rt_free(old[i]);
        nb.cap = T;
        *b = nb;
    }
    if (c->n_expert && T > b->moe_cap) {
        uint64_t B = T, E = c->n_embd, K = c->n_expert_used;
        uint64_t floats = B * c->n_expert + B * K + B * K * E + 2 * B * E, n = floats + 2 * B * K;
        if (!regrow(&b->moe, n * 4)) { oom("expert scratch"); return NULL; }
        b->moe_router = b->moe, b->moe_w = b->moe_router + B * c->n_expert, b->moe_acc = b->moe_w + B * K;
        b->moe_x = b->moe_acc + B * K * E, b->moe_y = b->moe_x + B * E;
        b->moe_sel = (uint32_t *)(b->moe_y + B * E), b->moe_slot = b->moe_sel + B * K;
        b->moe_cap = T;
    }
    uint64_t xq = b->xq_per_row * T;
    if (xq > b->xq_cap) {
        if (!regrow(&b->xq, xq)) { oom("quantized activations"); return NULL; }
        b->xq_cap = xq;
    }
    uint32_t srows = threads_count() + 1;
    if (srows > b->scores_rows || max_ctx > b->scores_len) {
        uint64_t len = RT_MAX((uint64_t)max_ctx, b->scores_len);
        uint32_t rows = RT_MAX(srows, b->scores_rows);
        if (!regrow(&b->scores, rows * ATTN_SCORE_ROWS * len * 4 + 64)) { oom("attention scores"); return NULL; }
        b->scores_rows = rows, b->scores_len = len;
    }
    if (n_logits > b->logits_cap) {
        if (!regrow(&b->logits, (uint64_t)n_logits * c->n_vocab * 4)) { oom("logits"); return NULL; }
        b->logits_cap = n_logits;
    }
    return b;
}

/* s->logits with room for rows rows; the rows it holds are kept (a batch that
 * fails later leaves them as they were). */
static bool ensure_logits(Session *s, uint32_t rows) {
    if (rows <= s->logits_cap) return true;
    uint64_t V = s->m->cfg.n_vocab;
    float *nl = rt_malloc((uint64_t)rows * V * 4);
    if (!nl) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory for logits", NULL); return false; }
    if (s->logits_rows) memcpy(nl, s->logits, (uint64_t)s->logits_rows * V * 4);
    rt_free(s->logits);
    s->logits = nl;
    s->logits_cap = rows;
    return true;
}

/* ------------------------------------------------------------ mixture of experts */
/* Expert e's matrix of a 3-D expert tensor (rows rows each). */
static Tensor expert(const Tensor *t, uint32_t e, uint64_t rows) {
    Tensor v = *t;
    v.data += (uint64_t)e * rows * t->row_bytes;
    v.ne1 = rows;
    return v;
}

/* The MoE FFN of T rows of b->xb, into b->xb, as llama.cpp's build_moe_ffn (softmax gating):
 * router softmax; the n_expert_used most probable experts (the first of equals); their
 * probabilities as weights (qwen3moe: divided by their sum); each chosen expert's SwiGLU
 * times its weight, summed in rank order; qwen2moe then adds the shared expert times
 * sigmoid(its gate). Each expert runs once over the rows that chose it (row by row the same
 * sums as alone: batch.h). */
static void moe_ffn(Model *m, Batch *b, const Layer *L, uint32_t T) {
    const ModelConfig *c = &m->cfg;
    const uint64_t E = c->n_embd, NE = c->n_expert, K = c->n_expert_used, Fe = c->n_ff_exp, Fs = c->n_ff_shexp;
    matmul(b, &L->gate_inp, b->xb, T, b->moe_router);
    for (uint32_t t = 0; t < T; t++) {
        float *p = b->moe_router + t * NE, mx = -__builtin_inff();
        for (uint64_t e = 0; e < NE; e++) mx = p[e] > mx ? p[e] : mx;
        double sum = 0;
        for (uint64_t e = 0; e < NE; e++) sum += (p[e] = rt_expf(p[e] - mx));
        const float inv = (float)(1.0 / sum);
        for (uint64_t e = 0; e < NE; e++) p[e] *= inv;
        uint32_t *sel = b->moe_sel + t * K;
        float *w = b->moe_w + t * K;
        for (uint64_t j = 0; j < K; j++) { /* top-K by repeated first-largest */
            int64_t best = -1;
            for (uint64_t e = 0; e < NE; e++) {
                bool taken = false;
                for (uint64_t i = 0; i < j; i++) taken |= sel[i] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = (int64_t)e;
            }
            sel[j] = (uint32_t)best, w[j] = p[best];
        }
        if (c->moe_norm_w) {
            double ws = 0;
            for (uint64_t j = 0; j < K; j++) ws += w[j];
            const float s = RT_MAX((float)ws, 6.103515625e-5f); /* ggml_clamp's floor */
            for (uint64_t j = 0; j < K; j++) w[j] /= s;
        }
    }
    for (uint32_t e = 0; e < NE; e++) {
        uint32_t n = 0;
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t j = 0; j < K; j++)
                if (b->moe_sel[t * K + j] == e) {
                    memcpy(b->moe_x + (uint64_t)n * E, b->xb + (uint64_t)t * E, E * 4);
                    b->moe_slot[n++] = t * (uint32_t)K + j;
                }
        if (!n) continue;
        const Tensor g = expert(&L->gate_exps, e, Fe), u = expert(&L->up_exps, e, Fe), d = expert(&L->down_exps, e, E);
        const Tensor *gu[] = {&g, &u};
        float *gu_out[] = {b->hb, b->hb2};
        matmuls(b, 2, gu, gu_out, b->moe_x, n);
        glu(b, b->hb, b->hb2, n * Fe, false);
        matmul(b, &d, b->hb, n, b->moe_y);
        for (uint32_t i = 0; i < n; i++) {
            float *o = b->moe_acc + (uint64_t)b->moe_slot[i] * E;
            const float *y = b->moe_y + (uint64_t)i * E, wi = b->moe_w[b->moe_slot[i]];
            for (uint64_t k = 0; k < E; k++) o[k] = y[k] * wi;
        }
    }
    const bool shared = L->gate_shexp.data != NULL;
    if (shared) { /* the shared expert (into moe_y) and its gate (into moe_router) */
        matmul(b, &L->gate_inp_shexp, b->xb, T, b->moe_router);
        const Tensor *gu[] = {&L->gate_shexp, &L->up_shexp};
        float *gu_out[] = {b->hb, b->hb2};
        matmuls(b, 2, gu, gu_out, b->xb, T);
        glu(b, b->hb, b->hb2, T * Fs, false);
        matmul(b, &L->down_shexp, b->hb, T, b->moe_y);
    }
    for (uint32_t t = 0; t < T; t++) {
        float *out = b->xb + (uint64_t)t * E;
        const float *a = b->moe_acc + (uint64_t)t * K * E;
        for (uint64_t k = 0; k < E; k++) out[k] = a[k];
        for (uint64_t j = 1; j < K; j++)
            for (uint64_t k = 0; k < E; k++) out[k] += a[j * E + k];
        if (shared) {
            const float gate = 1.0f / (1.0f + rt_expf(-b->moe_router[t])), *y = b->moe_y + (uint64_t)t * E;
            for (uint64_t k = 0; k < E; k++) out[k] += y[k] * gate;
        }
    }
}

/* Store one position's K (which = 0) or V (1) values of every KV head in s's cache of layer l,
 * in the cache's type: f16 (round to nearest even) or Q8_0 (as llama.cpp's CPU backend). */
static void cache_row(const Session *s, int which, uint32_t l, uint32_t pos, const float *x) {
    const uint32_t D = s->m->cfg.head_dim, n_kv = s->m->cfg.n_head_kv;
    if ((which ? s->type_v : s->type_k) == GGML_TYPE_Q8_0) {
        for (uint32_t h = 0; h < n_kv; h++) quant_q8_0_row(x + (uint64_t)h * D, D, session_kv_row(s, which, l, h, pos));
        return;
    }
    uint16_t *dst = (uint16_t *)session_kv_row(s, which, l, 0, pos);
    for (uint64_t i = 0; i < (uint64_t)n_kv * D; i++) dst[i] = rt_f32_to_f16(x[i]);
}

/* ------------------------------------------------------------ the forward pass */
/* The step in b->rows[0..b->n): every value of a row computed as if it ran
 * alone (batch.h). Cannot fail: batch_reserve made the room. */
static void forward(Model *m, Batch *b) {
    const ModelConfig *c = &m->cfg;
    const uint32_t T = b->n;
    uint64_t E = c->n_embd, D = c->head_dim, QD = (uint64_t)c->n_head * D, KVD = (uint64_t)c->n_head_kv * D, F = c->n_ff;
    const BatchRow *rows = b->rows;
    Session *rs[BATCH_MAX_TOKENS]; /* each row's session, for its LoRA adapters (lora.h) */
    for (uint32_t t = 0; t < T; t++) rs[t] = rows[t].s;
#define LORA(which, x, K, y, N) lora_apply(m, rs, l * LORA_PER_LAYER + (which), x, K, y, N, T)
    for (uint32_t t = 0; t < T; t++)
        quant_get_row(m->tok_embd.type, m->tok_embd.data, (uint64_t)rows[t].id, E, b->x + t * E);
    if (c->embd_scale != 0) /* gemma3 */
        for (uint64_t i = 0; i < T * E; i++) b->x[i] *= c->embd_scale;
    /* RoPE angles once for every layer: one table per run of consecutive positions of a session */
    for (uint32_t t = 0; t < T;) {
        const float *freqs = model_rope_factors(m, rows[t].s->n_ctx); /* (phi3: by the session's context) */
        uint32_t e = t + 1;
        while (e < T && rows[e].s == rows[t].s && rows[e].pos == rows[e - 1].pos + 1) e++;
        rope_table(m, rows[t].pos, e - t, freqs, b->rope_cs + (uint64_t)t * c->rope_dim);
        if (b->rope_cs_swa) rope_table_layer(m, true, rows[t].pos, e - t, freqs, b->rope_cs_swa + (uint64_t)t * c->rope_dim);
        t = e;
    }
    for (uint32_t l = 0; l < c->n_layer; l++) {
        const Layer *L = &m->layers[l];
        for (uint32_t t = 0; t < T; t++) rmsnorm(b->xb + t * E, b->x + t * E, (const float *)L->attn_norm.data, E, c->rms_eps);
        const Tensor *qkv[] = {&L->wq, &L->wk, &L->wv};
        float *qkv_out[] = {b->q, b->k, b->v};
        matmuls(b, 3, qkv, qkv_out, b->xb, T);
        LORA(LORA_Q, b->xb, E, b->q, QD);
        LORA(LORA_K, b->xb, E, b->k, KVD);
        LORA(LORA_V, b->xb, E, b->v, KVD);
        add_bias(b->q, &L->bq, T);
        add_bias(b->k, &L->bk, T);
        add_bias(b->v, &L->bv, T);
        if (L->q_norm.data) /* qwen3: each head of q and k RMS-normed (in place) before RoPE */
            for (uint32_t t = 0; t < T; t++) {
                for (uint32_t h = 0; h < c->n_head; h++) {
                    float *q = b->q + t * QD + (uint64_t)h * D;
                    rmsnorm(q, q, (const float *)L->q_norm.data, D, c->rms_eps);
                }
                for (uint32_t h = 0; h < c->n_head_kv; h++) {
                    float *k = b->k + t * KVD + (uint64_t)h * D;
                    rmsnorm(k, k, (const float *)L->k_norm.data, D, c->rms_eps);
                }
            }
        const float *cs = L->swa ? b->rope_cs_swa : b->rope_cs;
        for (uint32_t t = 0; t < T; t++) {
            rope(c, b->q + t * QD, c->n_head, cs + (uint64_t)t * c->rope_dim);
            rope(c, b->k + t * KVD, c->n_head_kv, cs + (uint64_t)t * c->rope_dim);
            if (c->q_prescale) /* gemma2, phi3: the attention scale goes into q (attention_head) */
                for (uint64_t i = 0; i < QD; i++) b->q[t * QD + i] *= c->attn_scale;
            cache_row(rows[t].s, 0, l, rows[t].pos, b->k + t * KVD);
            cache_row(rows[t].s, 1, l, rows[t].pos, b->v + t * KVD);
        }
        attention_layer(b, c, l, T);
        matmul(b, &L->wo, b->att, T, b->xb);
        LORA(LORA_O, b->att, QD, b->xb, E);
        post_norm(b->xb, &L->attn_post_norm, T, E, c->rms_eps);
        for (uint64_t i = 0; i < T * E; i++) b->x[i] += b->xb[i];
        for (uint32_t t = 0; t < T; t++) rmsnorm(b->xb + t * E, b->x + t * E, (const float *)L->ffn_norm.data, E, c->rms_eps);
        if (c->n_expert) moe_ffn(m, b, L, T);   /* adapters never name expert tensors (lora.c checks) */
        else {
            const Tensor *gate_up[] = {&L->w_gate, &L->w_up};
            float *gate_up_out[] = {b->hb, b->hb2};
            matmuls(b, 2, gate_up, gate_up_out, b->xb, T);
            LORA(LORA_GATE, b->xb, E, b->hb, F);
            LORA(LORA_UP, b->xb, E, b->hb2, F);
            glu(b, b->hb, b->hb2, T * F, c->ffn_gelu);
            matmul(b, &L->w_down, b->hb, T, b->xb);
            LORA(LORA_DOWN, b->hb, F, b->xb, E);
        }
        post_norm(b->xb, &L->ffn_post_norm, T, E, c->rms_eps);
        for (uint64_t i = 0; i < T * E; i++) b->x[i] += b->xb[i];
    }
    /* logits of the rows that want them, in one matmul (the output matrix read once) */
    uint32_t nl = 0;
    bool direct = true; /* all of them consecutive rows of one session's buffer */
    const BatchRow *first = NULL;
    for (uint32_t t = 0; t < T; t++) {
        if (rows[t].logits_row < 0) continue;
        if (!first) first = &rows[t];
        else if (rows[t].s != first->s || rows[t].logits_row != first->logits_row + (int32_t)nl) direct = false;
        rmsnorm(b->xb + (uint64_t)nl * E, b->x + t * E, (const float *)m->output_norm.data, E, c->rms_eps);
        rs[nl++] = rows[t].s;
    }
#undef LORA
    if (!nl) return;
    uint64_t V = c->n_vocab;
    if (direct) {
        float *y = first->s->logits + (uint64_t)first->logits_row * V;
        matmul(b, &m->output, b->xb, nl, y);
        lora_apply(m, rs, lora_output_slot(m), b->xb, E, y, V, nl);
        softcap_rows(y, nl * V, c->final_softcap);
        return;
    }
    matmul(b, &m->output, b->xb, nl, b->logits);
    lora_apply(m, rs, lora_output_slot(m), b->xb, E, b->logits, V, nl);
    softcap_rows(b->logits, nl * V, c->final_softcap);
    for (uint32_t t = 0, i = 0; t < T; t++)
        if (rows[t].logits_row >= 0)
            memcpy(rows[t].s->logits + (uint64_t)rows[t].logits_row * V, b->logits + (uint64_t)i++ * V, V * 4);
}

void batch_geglu(float *g, const float *u, uint64_t n) { geglu(g, u, n); }
void batch_swiglu(float *g, const float *u, uint64_t n) { swiglu(g, u, n); }
void batch_softcap(float *y, uint64_t n, float cap) { softcap_rows(y, n, cap); }

const float *batch_hidden(const Model *m) { return m->batch ? m->batch->x : NULL; }

/* A checked step: seqs[i] adds n ids; logits: rows [row0, row0 + n) of its
 * buffer (ALL), row row0 for its last id (neither flag), or none (NO). The
 * caller made room in every session's logits. Reserves, then writes. */
typedef struct { Session *s; const int32_t *ids; uint32_t n, flags, row0; } Step;

static bool run(Model *m, const Step *st, uint32_t n_steps) {
    uint32_t T = 0, max_ctx = 0, n_logits = 0, with_logits = 0;
    for (uint32_t i = 0; i < n_steps; i++) {
        T += st[i].n;
        max_ctx = RT_MAX(max_ctx, st[i].s->n_ctx);
        uint32_t k = st[i].flags & BATCH_NO_LOGITS ? 0 : st[i].flags & BATCH_ALL_LOGITS ? st[i].n : 1;
        n_logits += k;
        with_logits += k > 0;
    }
    Batch *b = batch_reserve(m, T, max_ctx, with_logits > 1 ? n_logits : 0);
    if (!b || !lora_reserve(m, T)) return false;
    b->n = T;
    for (uint32_t i = 0, r = 0; i < n_steps; i++) {
        Session *s = st[i].s;
        for (uint32_t t = 0; t < st[i].n; t++, r++) {
            b->rows[r] = (BatchRow){ .s = s, .pos = s->n_past + t, .id = st[i].ids[t], .logits_row = -1 };
            if (st[i].flags & BATCH_ALL_LOGITS) b->rows[r].logits_row = (int32_t)(st[i].row0 + t);
            else if (!(st[i].flags & BATCH_NO_LOGITS) && t + 1 == st[i].n) b->rows[r].logits_row = (int32_t)st[i].row0;
        }
        memcpy(s->tokens + s->n_past, st[i].ids, (uint64_t)st[i].n * 4);
    }
    forward(m, b);
    for (uint32_t i = 0; i < n_steps; i++) st[i].s->n_past += st[i].n;
    return true;
}

/* ----------------------------------------------------------------- checks */
static bool check_ids(const Model *m, const int32_t *ids, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= m->cfg.n_vocab) {
            rt_err_append("token id ");
            rt_err_append_i64(ids[i]);
            rt_err_append(" is out of range (vocabulary of ");
            rt_err_append_u64(m->cfg.n_vocab);
            rt_err_append(")");
            return false;
        }
    return true;
}

static bool check_room(const Session *s, uint32_t n) {
    if ((uint64_t)s->n_past + n <= s->n_ctx) return true;
    rt_err_append("context full: ");
    rt_err_append_u64(s->n_past);
    rt_err_append(" tokens in the session plus ");
    rt_err_append_u64(n);
    rt_err_append(" new ones exceed its context of ");
    rt_err_append_u64(s->n_ctx);
    rt_err_set_kind(REALM_ERR_CONTEXT_FULL);
    return false;
}

bool session_eval(Session *s, const int32_t *ids, uint32_t n, bool all_logits) {
    rt_err_clear();
    failed_seq = -1;
    if (n == 0) {
        rt_err("nothing to evaluate: zero tokens", NULL);
        return false;
    }
    if (!check_room(s, n) || !check_ids(s->m, ids, n)) return false;
    uint32_t rows = all_logits ? n : 1;
    if (!ensure_logits(s, rows)) return false;
    s->logits_rows = rows;
    for (uint32_t i = 0; i < n; i += s->n_batch) {
        uint32_t T = RT_MIN(s->n_batch, n - i);
        Step st = { s, ids + i, T, all_logits ? BATCH_ALL_LOGITS : i + T == n ? 0 : BATCH_NO_LOGITS, all_logits ? i : 0 };
        if (!run(s->m, &st, 1)) return false; /* finished batches stay cached */
    }
    return true;
}

/* rt_err: "batch session i of n: " then what is wrong with it */
static bool seq_err(uint32_t i, uint32_t n, const char *what) {
    failed_seq = (int32_t)i;
    rt_err("batch session ", NULL);
    rt_err_append_u64(i);
    rt_err_append(" of ");
    rt_err_append_u64(n);
    rt_err_append(": ");
    if (what) rt_err_append(what);
    return false;
}

bool batch_eval(Model *m, const BatchSeq *seqs, uint32_t n_seqs) {
    rt_err_clear();
    failed_seq = -1;
    if (!m || m->vocab_only || !m->layers) {
        rt_err("batch: not a model with weights loaded", NULL);
        return false;
    }
    if (n_seqs == 0 || !seqs) {
        rt_err("batch: no sessions (an empty batch)", NULL);
        return false;
    }
    if (n_seqs > BATCH_MAX_TOKENS) {
        rt_err("batch: ", NULL);
        rt_err_append_u64(n_seqs);
        rt_err_append(" sessions in one step exceed the core's budget of ");
        rt_err_append_u64(BATCH_MAX_TOKENS);
        rt_err_append(" tokens");
        return false;
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < n_seqs; i++) {
        const BatchSeq *q = &seqs[i];
        if (!q->s) return seq_err(i, n_seqs, "null session handle");
        if (!model_has_session(m, q->s)) return seq_err(i, n_seqs, "not a live session of this model (freed, or another model's)");
        for (uint32_t k = 0; k < i; k++)
            if (seqs[k].s == q->s) {
                seq_err(i, n_seqs, "the same session as batch session ");
                rt_err_append_u64(k);
                rt_err_append(" (a session takes one place per step)");
                return false;
            }
        if (q->n == 0) return seq_err(i, n_seqs, "no tokens (a session in a step adds at least one)");
        if (!q->ids) return seq_err(i, n_seqs, "null ids");
        if (q->flags & ~(uint32_t)BATCH_FLAGS || q->flags == BATCH_FLAGS) {
            seq_err(i, n_seqs, "bad flags ");
            rt_err_append_u64(q->flags);
            rt_err_append(" (1: all logits, 2: no logits)");
            return false;
        }
        total += q->n;
    }
    if (total > BATCH_MAX_TOKENS) {
        rt_err("batch: ", NULL);
        rt_err_append_u64(total);
        rt_err_append(" tokens in one step exceed the core's budget of ");
        rt_err_append_u64(BATCH_MAX_TOKENS);
        rt_err_append(" (split prompts into chunks)");
        return false;
    }
    for (uint32_t i = 0; i < n_seqs; i++) {
        seq_err(i, n_seqs, NULL);
        if (!check_room(seqs[i].s, seqs[i].n) || !check_ids(m, seqs[i].ids, seqs[i].n)) return false;
    }
    rt_err_clear();
    failed_seq = -1;
    for (uint32_t i = 0; i < n_seqs; i++) {
        uint32_t f = seqs[i].flags;
        if (!ensure_logits(seqs[i].s, f & BATCH_ALL_LOGITS ? seqs[i].n : 1)) return false;
    }
    Step st[BATCH_MAX_TOKENS];
    for (uint32_t i = 0; i < n_seqs; i++) st[i] = (Step){ seqs[i].s, seqs[i].ids, seqs[i].n, seqs[i].flags, 0 };
    if (!run(m, st, n_seqs)) return false;
    for (uint32_t i = 0; i < n_seqs; i++) {
        uint32_t f = seqs[i].flags;
        seqs[i].s->logits_rows = f & BATCH_NO_LOGITS ? 0 : f & BATCH_ALL_LOGITS ? seqs[i].n : 1;
    }
    return true;
}
