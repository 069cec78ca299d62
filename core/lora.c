/* lora.c: reading, validating and applying LoRA adapters (lora.h). */
#include "lora.h"
#include "batch.h"
#include "quant.h"
#include "threads.h"

/* y += s * t is a multiply, then an add: never contracted into a multiply-add (the relaxed-SIMD
 * build would emit f32x4.relaxed_madd, fused on some engines and not on others) nor
 * reassociated, so every build, engine and the GPU (wgsl/lora.wgsl) get the same bits. */
#pragma clang fp contract(off) reassociate(off)

#define LORA_MAX_RANK 4096u /* past any real adapter; bounds the scratch a hostile file can ask for */

static const char *const slot_names[LORA_PER_LAYER] = {
    "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
    "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};

/* Scratch of the adapters' matmuls: one per model (like the Batch). */
typedef struct LoraWork {
    uint8_t *xq;
    float *t1, *t2; /* A x (T x rank), B (A x) (T x N) */
    uint64_t xq_cap, t1_cap, t2_cap;
} LoraWork;

static bool fail(uint32_t kind, const char *a, const char *b, const char *c) {
    rt_err_as(kind, "LoRA adapter: ", a, b, c, NULL);
    return false;
}

/* The base weight a tensor's base name names, and its slot; NULL if none. */
static const Tensor *base_weight(const Model *m, const char *name, size_t n, uint32_t *slot) {
    if (rt_str_eq(name, n, "output.weight")) {
        *slot = lora_output_slot(m);
        return m->output.data && m->output.data != m->tok_embd.data ? &m->output : NULL; /* tied: no output.weight */
    }
    if (n < 5 || memcmp(name, "blk.", 4) != 0) return NULL;
    uint64_t l = 0;
    size_t i = 4;
    for (; i < n && name[i] >= '0' && name[i] <= '9' && i < 12; i++) l = l * 10 + (uint64_t)(name[i] - '0');
    if (i == 4 || i >= n || name[i] != '.' || l >= m->cfg.n_layer) return NULL;
    const Layer *L = &m->layers[l];
    const Tensor *ts[LORA_PER_LAYER] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    for (uint32_t k = 0; k < LORA_PER_LAYER; k++)
        if (rt_str_eq(name + i + 1, n - i - 1, slot_names[k])) {
            *slot = (uint32_t)l * LORA_PER_LAYER + k;
            return ts[k];
        }
    return NULL;
}

/* One half of a pair as it is in the file (F16 halves run on the F16 kernels: activations
 * rounded to f16, as llama.cpp's are; the file's bytes are read, never copied). */
static bool bind_half(Lora *a, const GGUFTensor *t, Tensor *out, char *nm) {
    uint32_t ty = t->type;
    if (ty != GGML_TYPE_F32 && ty != GGML_TYPE_F16 && ty != GGML_TYPE_Q8_0)
        return fail(REALM_ERR_UNSUPPORTED, "tensor '", nm, "' has a type other than F32, F16 or Q8_0");
    if (t->n_dims != 2 || t->ne[2] != 1 || t->ne[3] != 1) return fail(REALM_ERR_FORMAT, "tensor '", nm, "' is not a matrix");
    if (t->ne[0] % quant_type(ty)->block_size)
        return fail(REALM_ERR_FORMAT, "tensor '", nm, "': its rows are not whole Q8_0 blocks (32 values)");
    *out = (Tensor){ .type = ty, .data = a->gguf.hdr + a->gguf.data_offset + t->offset, .ne0 = t->ne[0], .ne1 = t->ne[1],
                     .row_bytes = quant_row_bytes(ty, t->ne[0]) };
    return true;
}

static bool shape_err(const char *nm, const char *what, uint64_t got, uint64_t want) {
    rt_err_as(REALM_ERR_FORMAT, "LoRA adapter: tensor '", nm, "' ", what, " ", NULL);
    rt_err_append_u64(got);
    rt_err_append(", the base model ");
    rt_err_append_u64(want);
    return false;
}

/* Pair every lora_a with its lora_b and check both against the base weight. */
static bool bind_all(Lora *a) {
    const Model *m = a->m;
    const GGUF *g = &a->gguf;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const GGUFTensor *t = &g->tensors[i];
        char nm[256];
        size_t n = RT_MIN(t->name.len, sizeof nm - 1);
        memcpy(nm, t->name.ptr, n);
        nm[n] = 0;
        bool is_a = n > 7 && rt_str_eq(nm + n - 7, 7, ".lora_a"), is_b = n > 7 && rt_str_eq(nm + n - 7, 7, ".lora_b");
        if (!is_a && !is_b) return fail(REALM_ERR_FORMAT, "tensor '", nm, "' is neither a .lora_a nor a .lora_b");
        if (!is_a) continue; /* found through its lora_a */
        char other[256];
        memcpy(other, nm, n + 1);
        other[n - 1] = 'b';
        const GGUFTensor *tb = gguf_tensor(g, other);
        if (!tb) return fail(REALM_ERR_FORMAT, "tensor '", nm, "' has no matching .lora_b");
        nm[n - 7] = 0; /* the base weight's name */
        if (rt_str_eq(nm, n - 7, "token_embd.weight"))
            return fail(REALM_ERR_UNSUPPORTED, "it adapts the token embeddings (token_embd.weight), which changes ",
                        "the vocabulary's embedding rows; only attention, FFN and output-head adapters are supported", "");
        uint32_t slot;
        const Tensor *w = base_weight(m, nm, n - 7, &slot);
        if (!w) {
            if (rt_str_eq(nm, n - 7, "output.weight"))
                return fail(REALM_ERR_FORMAT, "it adapts output.weight, which the base model does not have (its output head ",
                            "is the tied token embedding)", "");
            return fail(REALM_ERR_FORMAT, "tensor '", nm, "' (adapted) is not a weight of the base model this core can adapt");
        }
        LoraPair *p = &a->pairs[slot];
        if (p->a.data) return fail(REALM_ERR_FORMAT, "tensor '", nm, "' is adapted twice");
        nm[n - 7] = '.';
        if (!bind_half(a, t, &p->a, nm) || !bind_half(a, tb, &p->b, other)) return false;
        uint64_t rank = p->a.ne1;
        bool out_head = slot == lora_output_slot(m);
        if (p->a.ne0 != w->ne0)
            return shape_err(nm, w->ne0 == m->cfg.n_embd ? "expects an embedding size of" : "has an input width of",
                             p->a.ne0, w->ne0);
        if (p->b.ne1 != w->ne1)
            return shape_err(other, out_head ? "has a vocabulary of" : w->ne1 == m->cfg.n_embd ? "expects an embedding size of" : "has an output width of",
                             p->b.ne1, w->ne1);
        if (p->b.ne0 != rank) return shape_err(other, "has a rank of", p->b.ne0, rank);
        if (rank == 0 || rank > LORA_MAX_RANK || rank > RT_MIN(w->ne0, w->ne1))
            return shape_err(nm, "has an absurd rank (at most min(input, output) and 4096):", rank, RT_MIN(w->ne0, w->ne1));
        a->n_pairs++;
        a->max_rank = RT_MAX(a->max_rank, (uint32_t)rank);
        a->max_in = RT_MAX(a->max_in, w->ne0);
        a->max_out = RT_MAX(a->max_out, w->ne1);
    }
    if (!a->n_pairs) return fail(REALM_ERR_FORMAT, "it has no .lora_a/.lora_b tensors", "", "");
    return true;
}

/* general.type = adapter, adapter.type = lora, the base's architecture, a sane alpha. */
static bool check_meta(Lora *a) {
    const GGUF *g = &a->gguf;
    Str s;
    if (!gguf_get_str(g, "general.type", &s) || !rt_str_eq((const char *)s.ptr, s.len, "adapter"))
        return fail(REALM_ERR_FORMAT, "general.type is not 'adapter' (is this a base model's file?)", "", "");
    if (!gguf_get_str(g, "adapter.type", &s) || !rt_str_eq((const char *)s.ptr, s.len, "lora"))
        return fail(REALM_ERR_UNSUPPORTED, "adapter.type is not 'lora'", "", "");
    if (!gguf_get_str(g, "general.architecture", &s)) return fail(REALM_ERR_FORMAT, "general.architecture is missing", "", "");
    if (s.len != a->m->arch.len || memcmp(s.ptr, a->m->arch.ptr, s.len) != 0) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "LoRA adapter: its architecture '", NULL);
        rt_err_append_n((const char *)s.ptr, s.len);
        rt_err_append("' is not the base model's '");
        rt_err_append_n((const char *)a->m->arch.ptr, a->m->arch.len);
        rt_err_append("'");
        return false;
    }
    a->alpha = 0;
    if (gguf_find(g, "adapter.lora.alpha") && !gguf_get_f32(g, "adapter.lora.alpha", &a->alpha))
        return fail(REALM_ERR_FORMAT, "adapter.lora.alpha is not a number", "", "");
    if (!rt_isfinite(a->alpha) || a->alpha < 0) return fail(REALM_ERR_FORMAT, "adapter.lora.alpha is negative or not finite", "", "");
    return true;
}


Lora *lora_load(Model *m, uint8_t *buf, uint64_t len) {
    rt_err_clear();
    if (!m->layers) { /* loaded with weights, or prepared for the GPU (realm_gpu_prepare: realm_gpu_lora_plan) */
        rt_err_as(REALM_ERR_UNSUPPORTED, "LoRA adapters need the model's weights or its GPU preparation; this model "
                  "was loaded vocab-only", NULL);
        return NULL;
    }
    Lora *a = rt_calloc(1, sizeof(Lora));
    uint32_t n_slots = m->cfg.n_layer * LORA_PER_LAYER + 1;
    LoraPair *pairs = rt_calloc(n_slots, sizeof(LoraPair));
    if (!a || !pairs) {
        rt_free(a), rt_free(pairs);
        rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory for a LoRA adapter", NULL);
        return NULL;
    }
    a->m = m;
    a->pairs = pairs;
    uint64_t need = 0;
    GGUFStatus st = gguf_parse(&a->gguf, buf, len, len, &need);
    if (st != GGUF_OK) {
        if (st == GGUF_NEED_MORE) rt_err_as(REALM_ERR_FORMAT, "LoRA adapter: the file is truncated", NULL);
        else {
            char msg[512];
            size_t n = RT_MIN(strlen(rt_err_message()), sizeof msg - 1);
            memcpy(msg, rt_err_message(), n);
            msg[n] = 0;
            rt_err_as(REALM_ERR_FORMAT, "LoRA adapter: ", msg, NULL);
        }
        rt_free(pairs), rt_free(a);
        return NULL;
    }
    if (!check_meta(a) || !bind_all(a)) {
        a->gguf.hdr = NULL; /* buf goes back to the caller */
        gguf_free(&a->gguf);
        rt_free(a->pairs);
        rt_free(a);
        return NULL;
    }
    a->next = m->loras;
    m->loras = a;
    return a;
}

bool model_has_lora(const Model *m, const Lora *a) {
    for (const Lora *x = m->loras; x; x = x->next)
        if (x == a) return true;
    return false;
}

void lora_free(Lora *a) {
    if (!a) return;
    Model *m = a->m;
    for (Session *s = m->sessions; s; s = s->next) { /* detach: the sessions go on without it */
        uint32_t k = 0;
        for (uint32_t i = 0; i < s->n_lora; i++)
            if (s->lora[i] != a) s->lora[k] = s->lora[i], s->lora_scale[k++] = s->lora_scale[i];
        s->n_lora = k;
    }
    for (Lora **p = &m->loras; *p; p = &(*p)->next)
        if (*p == a) { *p = a->next; break; }
    gguf_free(&a->gguf);
    rt_free(a->pairs);
    rt_free(a);
}

void lora_free_all(Model *m) {
    while (m->loras) lora_free(m->loras);
    LoraWork *w = m->lora_work;
    if (w) rt_free(w->xq), rt_free(w->t1), rt_free(w->t2), rt_free(w);
    m->lora_work = NULL;
}

bool lora_check_adapters(const Model *m, Lora *const *adapters, const float *scales, uint32_t n) {
    if (n > SESSION_MAX_LORA) {
        rt_err("LoRA: at most 8 adapters per session, got ", NULL);
        rt_err_append_u64(n);
        return false;
    }
    if (n && (!adapters || !scales)) { rt_err("LoRA: null adapter or scale array", NULL); return false; }
    for (uint32_t i = 0; i < n; i++) {
        if (!adapters[i] || !model_has_lora(m, adapters[i])) {
            rt_err("LoRA: adapter ", NULL);
            rt_err_append_u64(i);
            rt_err_append(" is not a live adapter of this model (freed, or loaded for another model)");
            return false;
        }
        if (!rt_isfinite(scales[i])) {
            rt_err("LoRA: the scale of adapter ", NULL);
            rt_err_append_u64(i);
            rt_err_append(" is not a finite number (NaN or infinite)");
            return false;
        }
        for (uint32_t j = 0; j < i; j++)
            if (adapters[j] == adapters[i]) { rt_err("LoRA: the same adapter is named twice", NULL); return false; }
    }
    return true;
}

bool session_set_lora(Session *s, Lora *const *adapters, const float *scales, uint32_t n) {
    if (!lora_check_adapters(s->m, adapters, scales, n)) return false;
    for (uint32_t i = 0; i < n; i++) s->lora[i] = adapters[i], s->lora_scale[i] = scales[i];
    s->n_lora = n;
    return true;
}

/* ------------------------------------------------------------ the forward pass */
static bool grow(void *p, uint64_t *cap, uint64_t n) {
    if (n <= *cap) return true;
    void *q = rt_malloc(n);
    if (!q) return false;
    rt_free(*(void **)p);
    *(void **)p = q;
    *cap = n;
    return true;
}

bool lora_reserve(Model *m, uint32_t T) {
    if (!m->loras) return true;
    LoraWork *w = m->lora_work;
    if (!w && !(w = m->lora_work = rt_calloc(1, sizeof(LoraWork)))) goto oom;
    uint64_t xq = 0, rank = 0, out = 0;
    for (const Lora *a = m->loras; a; a = a->next) {
        rank = RT_MAX(rank, a->max_rank), out = RT_MAX(out, a->max_out);
        uint32_t n = m->cfg.n_layer * LORA_PER_LAYER + 1;
        for (uint32_t i = 0; i < n; i++) {
            const LoraPair *p = &a->pairs[i];
            if (!p->a.data) continue;
            xq = RT_MAX(xq, RT_MAX(quant_act_bytes(p->a.type, p->a.ne0, T), quant_act_bytes(p->b.type, p->b.ne0, T)));
        }
    }
    if (grow(&w->xq, &w->xq_cap, xq) && grow(&w->t1, &w->t1_cap, rank * T * 4) && grow(&w->t2, &w->t2_cap, out * T * 4))
        return true;
oom:
    rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory for the LoRA adapters' scratch", NULL);
    return false;
}

static void mm(LoraWork *w, const Tensor *t, const float *x, uint64_t T, float *y) {
    quant_act_quantize(t->type, x, t->ne0, T, w->xq);
    MatmulSpec s = { .type = t->type, .W = t->data, .xq = w->xq, .K = t->ne0, .rows = t->ne1, .y_stride = t->ne1, .y = y };
    threads_matmul(&s, 1, T);
}

static bool same_set(const Session *a, const Session *b) {
    if (a == b) return true;
    if (a->n_lora != b->n_lora) return false;
    for (uint32_t i = 0; i < a->n_lora; i++)
        if (a->lora[i] != b->lora[i] || a->lora_scale[i] != b->lora_scale[i]) return false;
    return true;
}

void lora_apply(Model *m, Session *const *rs, uint32_t slot, const float *x, uint64_t K, float *y, uint64_t N, uint32_t T) {
    if (!m->loras) return;
    LoraWork *w = m->lora_work;
    for (uint32_t t0 = 0, t1; t0 < T; t0 = t1) {
        const Session *s = rs[t0];
        for (t1 = t0 + 1; t1 < T && same_set(s, rs[t1]); t1++) {}
        for (uint32_t i = 0; i < s->n_lora; i++) {
            const Lora *a = s->lora[i];
            const LoraPair *p = &a->pairs[slot];
            if (!p->a.data || s->lora_scale[i] == 0) continue; /* scale 0 is the base, exactly */
            float rank = (float)p->a.ne1;
            float sc = a->alpha != 0 ? s->lora_scale[i] * a->alpha / rank : s->lora_scale[i]; /* llama.cpp's get_scale */
            uint64_t n = t1 - t0;
            mm(w, &p->a, x + t0 * K, n, w->t1);
            mm(w, &p->b, w->t1, n, w->t2);
            float *yr = y + t0 * N;
            for (uint64_t j = 0; j < n * N; j++) yr[j] += sc * w->t2[j];
        }
    }
}
