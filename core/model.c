/* model.c: reading a LLaMA-family model out of a GGUF, its sessions and their
 * RoPE angles. The forward pass is batch.c. */
#include "model.h"
#include "batch.h"
#include "grammar.h"
#include "lora.h"
#include "quant.h"

/* rope_table computes what it says (no reassociation under -fassociative-math):
 * the GPU backend reads its angles (docs/GPU.md). */
#pragma clang fp reassociate(off)

/* ------------------------------------------------------------ small helpers */
#define KEYBUF 128
/* "<arch>.<suffix>" into buf */
static const char *akey(const Model *m, const char *suffix, char *buf) {
    size_t n = RT_MIN(m->arch.len, (uint64_t)KEYBUF / 2), s = strlen(suffix);
    memcpy(buf, m->arch.ptr, n);
    buf[n] = '.';
    memcpy(buf + n + 1, suffix, RT_MIN(s, KEYBUF - n - 2));
    buf[n + 1 + RT_MIN(s, KEYBUF - n - 2)] = 0;
    return buf;
}

static bool get_u32(const Model *m, const char *suffix, uint32_t *out, bool required) {
    char k[KEYBUF];
    akey(m, suffix, k);
    const GGUFKV *kv = gguf_find(&m->gguf, k);
    if (kv && kv->type == GGUF_ARRAY) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: ", k, " varies per layer (an array); this core needs one value", NULL);
        return false;
    }
    uint64_t v;
    if (!gguf_get_u64(&m->gguf, k, &v)) {
        if (required) rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: required metadata ", k, " is missing", NULL);
        return !required;
    }
    if (v > 0x7fffffffu) {
        rt_err("corrupt GGUF: ", k, " = ", NULL);
        rt_err_append_u64(v);
        rt_err_append(" is out of range");
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static void get_f32(const Model *m, const char *suffix, float *out) {
    char k[KEYBUF];
    gguf_get_f32(&m->gguf, akey(m, suffix, k), out);
}

/* ------------------------------------------------------------------- open */
Model *model_open(uint8_t *buf, uint64_t len, uint64_t file_size, uint64_t *need) {
    Model *m = rt_calloc(1, sizeof(Model));
    if (!m) {
        rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL);
        return NULL;
    }
    if (gguf_parse(&m->gguf, buf, len, file_size, need) != GGUF_OK) {
        rt_free(m);
        return NULL;
    }
    m->weights_size = m->gguf.data_size;
    return m;
}

uint8_t *model_weights(Model *m) {
    if (!m->weights && m->weights_size) {
        m->weights = rt_malloc(m->weights_size);
        if (!m->weights) {
            rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory: the model's weights need ", NULL);
            rt_err_append_u64(m->weights_size);
            rt_err_append(" bytes of wasm memory");
            if (sizeof(void *) == 4) /* the wasm32 build: say the limit and the way out */
                rt_err_append(", and this wasm32 build addresses at most 4294967296 bytes (4 GiB) for weights, "
                              "KV cache and scratch together: use a smaller quant of the model, or an engine "
                              "with Memory64 (Node >= 22, Chromium >= 133, Firefox >= 134), which runs realm.wasm");
        }
    }
    return m->weights;
}

void model_free(Model *m) {
    if (!m) return;
    lora_free_all(m);
    for (Session *s = m->sessions; s; s = s->next) s->m = NULL; /* freed later: by itself (see session_free) */
    tokenizer_free(m->tok);
    gvocab_free(m->gvocab);
    batch_free(m->batch);
    rt_free(m->layers);
    rt_free(m->weights);
    gguf_free(&m->gguf); /* metadata, tensor table and the header bytes */
    rt_free(m);
}

/* -------------------------------------------------------------- tokenizer */
static Str *strs_of(const GGUF *g, const char *key, int32_t *n) {
    const GGUFKV *kv = gguf_find(g, key);
    *n = 0;
    if (!kv) return NULL;
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING) {
        rt_err("corrupt GGUF: ", key, " is not an array of strings", NULL);
        return NULL;
    }
    Str *s = rt_malloc((kv->arr_len ? kv->arr_len : 1) * sizeof(Str));
    if (!s) return NULL;
    gguf_arr_strs(kv, s);
    *n = (int32_t)kv->arr_len;
    return s;
}

static const void *array_of(const GGUF *g, const char *key, uint32_t type, uint64_t n) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv || kv->type != GGUF_ARRAY || kv->arr_type != type || kv->arr_len != n) return NULL;
    return kv->val;
}

static int32_t tok_id(const GGUF *g, const char *key) {
    uint64_t v;
    return gguf_get_u64(g, key, &v) && v < 0x7fffffff ? (int32_t)v : -1;
}

static bool build_tokenizer(Model *m) {
    const GGUF *g = &m->gguf;
    TokenizerSpec sp;
    memset(&sp, 0, sizeof sp);
    Str kind;
    if (!gguf_get_str(g, "tokenizer.ggml.model", &kind)) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: tokenizer.ggml.model is missing (the GGUF carries no tokenizer)", NULL);
        return false;
    }
    if (rt_str_eq((const char *)kind.ptr, kind.len, "llama")) sp.kind = TOK_KIND_SPM;
    else if (rt_str_eq((const char *)kind.ptr, kind.len, "gpt2")) sp.kind = TOK_KIND_BPE;
    else {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported tokenizer: tokenizer.ggml.model = '", NULL);
        rt_err_append_n((const char *)kind.ptr, RT_MIN(kind.len, 64));
        rt_err_append("' (this core runs 'llama' and 'gpt2')");
        return false;
    }
    gguf_get_str(g, "tokenizer.ggml.pre", &sp.pre);
    gguf_get_str(g, "general.name", &sp.name); /* llama.cpp special-cases phi-3 by name */
    Str *tokens = strs_of(g, "tokenizer.ggml.tokens", &sp.n_vocab);
    if (!tokens) {
        if (!*rt_err_message()) rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: tokenizer.ggml.tokens is missing", NULL);
        return false;
    }
    sp.tokens = tokens;
    sp.scores = array_of(g, "tokenizer.ggml.scores", GGUF_F32, (uint64_t)sp.n_vocab);
    sp.types = array_of(g, "tokenizer.ggml.token_type", GGUF_I32, (uint64_t)sp.n_vocab);
    Str *merges = NULL;
    if (sp.kind == TOK_KIND_BPE) {
        merges = strs_of(g, "tokenizer.ggml.merges", &sp.n_merges);
        if (!merges && *rt_err_message()) { rt_free(tokens); return false; }
        sp.merges = merges;
    }
    sp.bos = tok_id(g, "tokenizer.ggml.bos_token_id");
    sp.eos = tok_id(g, "tokenizer.ggml.eos_token_id");
    sp.eot = tok_id(g, "tokenizer.ggml.eot_token_id");
    sp.eom = tok_id(g, "tokenizer.ggml.eom_token_id");
    sp.unk = tok_id(g, "tokenizer.ggml.unknown_token_id");
    sp.pad = tok_id(g, "tokenizer.ggml.padding_token_id");
    sp.sep = tok_id(g, "tokenizer.ggml.seperator_token_id");
    sp.nl = -1;
    sp.add_bos_set = gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &sp.add_bos);
    sp.add_eos_set = gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &sp.add_eos);
    sp.add_space_prefix_set = gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &sp.add_space_prefix);
    rt_err_clear();
    m->tok = tokenizer_new(&sp);
    /* the tokenizer keeps pointers into the header, not our arrays */
    rt_free(tokens);
    rt_free(merges);
    return m->tok != NULL;
}

/* ---------------------------------------------------------------- weights */
static bool bind(Model *m, Tensor *t, const char *name, uint64_t ne0, uint64_t ne1, bool required) {
    const GGUFTensor *gt = gguf_tensor(&m->gguf, name);
    memset(t, 0, sizeof *t);
    if (!gt) {
        if (required) rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: tensor '", name, "' is missing", NULL);
        return !required;
    }
    bool one_d = ne1 == 0;
    if (gt->ne[0] != ne0 || (!one_d && gt->ne[1] != ne1) || (one_d && gt->ne[1] != 1) || gt->ne[2] != 1 || gt->ne[3] != 1) {
        rt_err("tensor '", name, "' has shape [", NULL);
        for (uint32_t d = 0; d < gt->n_dims; d++) {
            if (d) rt_err_append(", ");
            rt_err_append_u64(gt->ne[d]);
        }
        rt_err_append("], expected [");
        rt_err_append_u64(ne0);
        if (!one_d) { rt_err_append(", "); rt_err_append_u64(ne1); }
        rt_err_append("]");
        return false;
    }
    const QuantType *qt = quant_type(gt->type);
    if (!qt->can_run || (one_d && gt->type != GGML_TYPE_F32)) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "tensor '", name, "' has type ", qt->name, NULL);
        rt_err_append(one_d ? ", but norms and biases must be F32" : ", which this core cannot run yet");
        return false;
    }
    t->type = gt->type;
    t->data = m->weights + gt->offset;
    t->ne0 = gt->ne[0];
    t->ne1 = one_d ? 1 : gt->ne[1];
    t->row_bytes = quant_row_bytes(gt->type, gt->ne[0]);
    return true;
}

static bool blk_bind(Model *m, Tensor *t, uint32_t l, const char *what, uint64_t ne0, uint64_t ne1, bool req) {
    char name[96] = "blk.";
    char num[16];
    int n = 0;
    uint32_t v = l;
    do { num[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    size_t p = 4;
    while (n) name[p++] = num[--n];
    name[p++] = '.';
    size_t wl = strlen(what);
    memcpy(name + p, what, wl + 1);
    return bind(m, t, name, ne0, ne1, req);
}

/* Rows [r0, r0 + n) of a bound matrix as a matrix of their own (a fused tensor's part). */
static Tensor rows_of(const Tensor *t, uint64_t r0, uint64_t n) {
    Tensor v = *t;
    v.data += r0 * t->row_bytes;
    v.ne1 = n;
    return v;
}

/* q, k and v: attn_q/k/v, or (phi3) their rows of one fused attn_qkv, q then k then v, as
 * llama.cpp's build_qkv views them. */
static bool bind_qkv(Model *m, Layer *L, uint32_t l, uint64_t E, uint64_t QD, uint64_t KVD, bool may_fuse) {
    if (may_fuse) {
        Tensor qkv;
        if (!blk_bind(m, &qkv, l, "attn_qkv.weight", E, QD + 2 * KVD, false)) return false;
        if (qkv.data) {
            L->wq = rows_of(&qkv, 0, QD), L->wk = rows_of(&qkv, QD, KVD), L->wv = rows_of(&qkv, QD + KVD, KVD);
            return true;
        }
    }
    return blk_bind(m, &L->wq, l, "attn_q.weight", E, QD, true) && blk_bind(m, &L->wk, l, "attn_k.weight", E, KVD, true) &&
           blk_bind(m, &L->wv, l, "attn_v.weight", E, KVD, true);
}

/* An expert tensor blk.l.<what> of shape [ne0, ne1, n_expert], as a matrix of ne1 * n_expert rows. */
static bool bind_experts(Model *m, Tensor *t, uint32_t l, const char *what, uint64_t ne0, uint64_t ne1) {
    char name[96] = "blk.";
    size_t p = 4;
    char num[16];
    int n = 0;
    uint32_t v = l;
    do { num[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) name[p++] = num[--n];
    name[p++] = '.';
    memcpy(name + p, what, strlen(what) + 1);
    const GGUFTensor *gt = gguf_tensor(&m->gguf, name);
    if (!gt) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: tensor '", name, "' is missing", NULL);
        return false;
    }
    if (gt->ne[0] != ne0 || gt->ne[1] != ne1 || gt->ne[2] != m->cfg.n_expert || gt->ne[3] != 1) {
        rt_err("tensor '", name, "' has shape [", NULL);
        for (uint32_t d = 0; d < gt->n_dims; d++) {
            if (d) rt_err_append(", ");
            rt_err_append_u64(gt->ne[d]);
        }
        rt_err_append("], expected [");
        rt_err_append_u64(ne0);
        rt_err_append(", ");
        rt_err_append_u64(ne1);
        rt_err_append(", ");
        rt_err_append_u64(m->cfg.n_expert);
        rt_err_append("] (expert_count)");
        return false;
    }
    const QuantType *qt = quant_type(gt->type);
    if (!qt->can_run) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "tensor '", name, "' has type ", qt->name, ", which this core cannot run yet", NULL);
        return false;
    }
    *t = (Tensor){ .type = gt->type, .data = m->weights + gt->offset, .ne0 = ne0, .ne1 = ne1 * m->cfg.n_expert,
                   .row_bytes = quant_row_bytes(gt->type, ne0) };
    return true;
}

/* The FFN of a MoE layer: router, experts, and (qwen2moe) the shared expert with its gate. */
static bool bind_moe(Model *m, Layer *L, uint32_t l, uint64_t E) {
    const ModelConfig *c = &m->cfg;
    const bool shared = rt_str_eq((const char *)m->arch.ptr, m->arch.len, "qwen2moe");
    return blk_bind(m, &L->gate_inp, l, "ffn_gate_inp.weight", E, c->n_expert, true) &&
           bind_experts(m, &L->gate_exps, l, "ffn_gate_exps.weight", E, c->n_ff_exp) &&
           bind_experts(m, &L->up_exps, l, "ffn_up_exps.weight", E, c->n_ff_exp) &&
           bind_experts(m, &L->down_exps, l, "ffn_down_exps.weight", c->n_ff_exp, E) &&
           (!shared || (blk_bind(m, &L->gate_inp_shexp, l, "ffn_gate_inp_shexp.weight", E, 0, true) &&
                        blk_bind(m, &L->gate_shexp, l, "ffn_gate_shexp.weight", E, c->n_ff_shexp, true) &&
                        blk_bind(m, &L->up_shexp, l, "ffn_up_shexp.weight", E, c->n_ff_shexp, true) &&
                        blk_bind(m, &L->down_shexp, l, "ffn_down_shexp.weight", c->n_ff_shexp, E, true)));
}

/* gate and up: ffn_gate and ffn_up, or (phi3) one ffn_up of 2 n_ff rows, gate first (ggml_swiglu's halves). */
static bool bind_gate_up(Model *m, Layer *L, uint32_t l, uint64_t E, uint64_t F, bool fused) {
    if (fused) {
        Tensor gu;
        if (!blk_bind(m, &gu, l, "ffn_up.weight", E, 2 * F, true)) return false;
        L->w_gate = rows_of(&gu, 0, F), L->w_up = rows_of(&gu, F, F);
        return true;
    }
    return blk_bind(m, &L->w_gate, l, "ffn_gate.weight", E, F, true) && blk_bind(m, &L->w_up, l, "ffn_up.weight", E, F, true);
}

static bool read_config(Model *m) {
    ModelConfig *c = &m->cfg;
    const GGUF *g = &m->gguf;
    if (!gguf_get_str(g, "general.architecture", &m->arch)) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: general.architecture is missing", NULL);
        return false;
    }
    const char *a = (const char *)m->arch.ptr;
    size_t al = m->arch.len;
    bool neox;
    if (rt_str_eq(a, al, "llama") || rt_str_eq(a, al, "mistral") || rt_str_eq(a, al, "granite-small")) neox = false;
    const bool moe = rt_str_eq(a, al, "qwen2moe") || rt_str_eq(a, al, "qwen3moe");
    if (rt_str_eq(a, al, "llama") || rt_str_eq(a, al, "mistral") || rt_str_eq(a, al, "granite-small")) neox = false;
    else if (rt_str_eq(a, al, "qwen2") || rt_str_eq(a, al, "qwen3") || rt_str_eq(a, al, "gemma2") ||
             rt_str_eq(a, al, "gemma3") || rt_str_eq(a, al, "phi3") || moe) neox = true;
    else {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported architecture '", NULL);
        rt_err_append_n(a, RT_MIN(al, 64));
        rt_err_append("' (this core runs llama, mistral, qwen2, qwen3, qwen2moe, qwen3moe, gemma2, gemma3 and phi3)");
        return false;
    }
    if (!moe && (gguf_tensor(g, "blk.0.ffn_gate_exps.weight") || gguf_tensor(g, "blk.0.ffn_gate_inp.weight"))) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: mixture-of-experts layers (ffn_*_exps) in a '", NULL);
        rt_err_append_n(a, RT_MIN(al, 64));
        rt_err_append("' model (this core runs experts in qwen2moe and qwen3moe)");
        return false;
    }
    c->rope_type = neox ? ROPE_NEOX : ROPE_NORM;
    if (!get_u32(m, "block_count", &c->n_layer, true) || !get_u32(m, "embedding_length", &c->n_embd, true) ||
        !get_u32(m, "feed_forward_length", &c->n_ff, true) || !get_u32(m, "attention.head_count", &c->n_head, true))
        return false;
    c->n_head_kv = c->n_head;
    c->n_ctx_train = 2048;
    if (!get_u32(m, "attention.head_count_kv", &c->n_head_kv, false) || !get_u32(m, "context_length", &c->n_ctx_train, false))
        return false;
    if (c->n_layer == 0 || c->n_layer > 1024 || c->n_embd == 0 || c->n_embd > 65536 || c->n_head == 0 ||
        c->n_head_kv == 0 || c->n_head % c->n_head_kv || c->n_ff == 0 || c->n_ff > 1 << 20) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: inconsistent hyperparameters (layers, width, heads)", NULL);
        return false;
    }
    c->n_expert = c->n_expert_used = c->n_ff_exp = c->n_ff_shexp = 0, c->moe_norm_w = false;
    if (moe) { /* llama.cpp: qwen3moe renormalises the chosen experts' weights, qwen2moe not */
        c->n_ff_exp = c->n_ff, c->n_ff_shexp = c->n_ff;
        if (!get_u32(m, "expert_count", &c->n_expert, true) || !get_u32(m, "expert_used_count", &c->n_expert_used, true) ||
            !get_u32(m, "expert_feed_forward_length", &c->n_ff_exp, false) ||
            !get_u32(m, "expert_shared_feed_forward_length", &c->n_ff_shexp, false))
            return false;
        if (c->n_expert == 0 || c->n_expert > 512 || c->n_expert_used == 0 || c->n_expert_used > c->n_expert ||
            c->n_ff_exp == 0 || c->n_ff_exp > 1 << 20 || c->n_ff_shexp == 0 || c->n_ff_shexp > 1 << 20) {
            rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: inconsistent expert counts or widths "
                      "(expert_count 1..512, expert_used_count 1..expert_count)", NULL);
            return false;
        }
        c->moe_norm_w = rt_str_eq(a, al, "qwen3moe");
    }
    c->head_dim = c->n_embd / c->n_head;
    if (!get_u32(m, "attention.key_length", &c->head_dim, false)) return false;
    if (c->head_dim == 0 || c->head_dim > 1024 || c->head_dim % 2) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: head dimension must be even and at most 1024", NULL);
        return false;
    }
    c->rope_dim = c->head_dim;
    if (!get_u32(m, "rope.dimension_count", &c->rope_dim, false)) return false;
    if (c->rope_dim > c->head_dim || c->rope_dim % 2) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: rope.dimension_count exceeds the head dimension", NULL);
        return false;
    }
    c->rms_eps = 1e-5f;
    get_f32(m, "attention.layer_norm_rms_epsilon", &c->rms_eps);
    c->embd_scale = 0, c->ffn_gelu = false, c->n_swa = 0, c->swa_pattern = 0;
    c->rope_base_swa = 0, c->rope_freq_scale_swa = 1; /* (read only where n_swa) */
    c->q_prescale = false, c->attn_scale = 1.0f / rt_sqrtf((float)c->head_dim);
    c->attn_softcap = 0, c->final_softcap = 0;
    c->rope_base = 10000.0f;
    get_f32(m, "rope.freq_base", &c->rope_base);
    const bool gemma2 = rt_str_eq(a, al, "gemma2"), gemma3 = rt_str_eq(a, al, "gemma3");
    if (gemma2 || gemma3) { /* as llama.cpp's gemma2/3: sqrt(n_embd) embeddings, GeGLU, sliding-window layers */
        c->embd_scale = rt_sqrtf((float)c->n_embd);
        c->ffn_gelu = true;
        c->n_swa = 4096; /* gemma2's default */
        if (!get_u32(m, "attention.sliding_window", &c->n_swa, gemma3)) return false;
        if (c->n_swa == 0) {
            rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: attention.sliding_window is 0", NULL);
            return false;
        }
        c->swa_pattern = gemma3 ? 6 : 2; /* gemma3: 5 of 6 layers local; gemma2: every other one */
        if (!get_u32(m, "attention.sliding_window_pattern", &c->swa_pattern, false)) return false;
        if (c->swa_pattern == 0) {
            rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: attention.sliding_window_pattern is 0", NULL);
            return false;
        }
    }
    if (gemma3) c->rope_base_swa = 10000.0f; /* unscaled (rope_table_layer) */
    if (gemma2) { /* q scaled by 1/sqrt(head_dim) (the 27B's n_embd/n_head rule is by size: not ours), capped scores */
        c->rope_base_swa = c->rope_base;
        get_f32(m, "rope.freq_base_swa", &c->rope_base_swa);
        c->q_prescale = true;
        c->attn_softcap = 50.0f, c->final_softcap = 30.0f; /* llama.cpp's defaults */
        get_f32(m, "attn_logit_softcapping", &c->attn_softcap);
        get_f32(m, "final_logit_softcapping", &c->final_softcap);
        if (!(c->attn_softcap > 0) || !(c->final_softcap > 0)) {
            rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: gemma2's soft-capping values must be positive", NULL);
            return false;
        }
    }
    if (rt_str_eq(a, al, "phi3")) c->q_prescale = true; /* (llama.cpp ignores phi3's sliding_window: so do we) */
    /* RoPE scaling: none, linear, or YaRN (llama.cpp's parameters and defaults) */
    float factor = 0;
    get_f32(m, "rope.scale_linear", &factor);
    get_f32(m, "rope.scaling.factor", &factor);
    char k[KEYBUF];
    Str stype = {(const uint8_t *)"", 0};
    gguf_get_str(g, akey(m, "rope.scaling.type", k), &stype);
    c->rope_freq_scale = factor > 0 ? 1.0f / factor : 1.0f;
    c->yarn_ext_factor = 0;
    c->yarn_attn_factor = 1;
    c->yarn_beta_fast = 32;
    c->yarn_beta_slow = 1;
    c->yarn_n_ctx_orig = c->n_ctx_train;
    if (stype.len && rt_str_eq((const char *)stype.ptr, stype.len, "yarn")) {
        c->yarn_ext_factor = 1;
        get_u32(m, "rope.scaling.original_context_length", &c->yarn_n_ctx_orig, false);
        get_f32(m, "rope.scaling.yarn_beta_fast", &c->yarn_beta_fast);
        get_f32(m, "rope.scaling.yarn_beta_slow", &c->yarn_beta_slow);
    } else if (stype.len && !rt_str_eq((const char *)stype.ptr, stype.len, "linear") &&
               !rt_str_eq((const char *)stype.ptr, stype.len, "none")) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: rope.scaling.type '", NULL);
        rt_err_append_n((const char *)stype.ptr, RT_MIN(stype.len, 32));
        rt_err_append("' (supported: none, linear, yarn)");
        return false;
    }
    /* llama.cpp multiplies RoPE's mscale by rope.scaling.attn_factor whatever the scaling (phi3's LongRoPE) */
    get_f32(m, "rope.scaling.attn_factor", &c->yarn_attn_factor);
    c->rope_freq_scale_swa = gemma2 ? c->rope_freq_scale : 1.0f;
    c->rope_n_ctx_orig = c->yarn_n_ctx_orig;
    get_u32(m, "rope.scaling.original_context_length", &c->rope_n_ctx_orig, false);
    return true;
}

/* A matrix of `per` rows per expert (its whole height for a plain matrix)
 * into the x4 layout where its type and shape allow (quant.h): its kernels
 * then read one stream of four rows' interleaved blocks. Left as it is
 * otherwise, or when four rows of scratch cannot be had. */
static void repack(Tensor *t, uint64_t per) {
    if (t->data && !(t->type & QUANT_X4) && quant_can_x4(t->type, per) && t->ne1 % per == 0 &&
        quant_repack_x4(t->type, (uint8_t *)t->data, t->ne0, t->ne1))
        t->type |= QUANT_X4;
}

/* Every matrix of the forward pass that the x4 layout can hold, once: the
 * host copied the weights in and nothing has read them yet. */
static void repack_weights(Model *m) {
    const ModelConfig *c = &m->cfg;
    const bool tied = m->output.data == m->tok_embd.data;
    repack(&m->tok_embd, m->tok_embd.ne1); /* (its rows are read one at a time by quant_get_row) */
    if (tied) m->output = m->tok_embd;
    else repack(&m->output, m->output.ne1);
    for (uint32_t l = 0; l < c->n_layer; l++) {
        Layer *L = &m->layers[l];
        Tensor *mats[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down,
                           &L->gate_shexp, &L->up_shexp, &L->down_shexp };
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) repack(mats[i], mats[i]->ne1);
        repack(&L->gate_exps, c->n_ff_exp), repack(&L->up_exps, c->n_ff_exp), repack(&L->down_exps, c->n_embd);
    }
}

bool model_load(Model *m, bool vocab_only) {
    rt_err_clear();
    m->vocab_only = vocab_only;
    if (!build_tokenizer(m)) {
        if (!*rt_err_message()) rt_err("could not build the tokenizer", NULL);
        return false;
    }
    if (vocab_only) {
        m->cfg.n_vocab = (uint32_t)tokenizer_n_vocab(m->tok);
        return true;
    }
    if (!read_config(m)) return false;
    if (!m->weights) {
        rt_err("the host has not provided the weights (realm_model_weights) before realm_model_load", NULL);
        return false;
    }
    ModelConfig *c = &m->cfg;
    const GGUFTensor *emb = gguf_tensor(&m->gguf, "token_embd.weight");
    if (!emb) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "unsupported model: tensor 'token_embd.weight' is missing", NULL);
        return false;
    }
    c->n_vocab = (uint32_t)emb->ne[1];
    if ((int32_t)c->n_vocab != tokenizer_n_vocab(m->tok)) {
        rt_err("inconsistent model: token_embd has ", NULL);
        rt_err_append_u64(c->n_vocab);
        rt_err_append(" rows, the tokenizer ");
        rt_err_append_i64(tokenizer_n_vocab(m->tok));
        rt_err_append(" tokens");
        return false;
    }
    uint64_t E = c->n_embd, D = c->head_dim, QD = (uint64_t)c->n_head * D, KVD = (uint64_t)c->n_head_kv * D;
    if (!bind(m, &m->tok_embd, "token_embd.weight", E, c->n_vocab, true) ||
        !bind(m, &m->output_norm, "output_norm.weight", E, 0, true) ||
        !bind(m, &m->output, "output.weight", E, c->n_vocab, false) ||
        !bind(m, &m->rope_freqs, "rope_freqs.weight", c->rope_dim / 2, 0, false) ||
        !bind(m, &m->rope_short, "rope_factors_short.weight", c->rope_dim / 2, 0, false) ||
        !bind(m, &m->rope_long, "rope_factors_long.weight", c->rope_dim / 2, 0, false))
        return false;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
    const char *a = (const char *)m->arch.ptr;
    const size_t al = m->arch.len;
    const bool gemma3 = rt_str_eq(a, al, "gemma3"), gemma = gemma3 || rt_str_eq(a, al, "gemma2");
    const bool phi3 = rt_str_eq(a, al, "phi3");
    const bool qk_norm = gemma3 || rt_str_eq(a, al, "qwen3") || rt_str_eq(a, al, "qwen3moe"); /* per-head norms */
    m->layers = rt_calloc(c->n_layer, sizeof(Layer));
    if (!m->layers) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); return false; }
    for (uint32_t l = 0; l < c->n_layer; l++) {
        Layer *L = &m->layers[l];
        if (!blk_bind(m, &L->attn_norm, l, "attn_norm.weight", E, 0, true) || !bind_qkv(m, L, l, E, QD, KVD, phi3) ||
            !blk_bind(m, &L->wo, l, "attn_output.weight", QD, E, true) ||
            !blk_bind(m, &L->bq, l, "attn_q.bias", QD, 0, false) ||
            !blk_bind(m, &L->bk, l, "attn_k.bias", KVD, 0, false) ||
            !blk_bind(m, &L->bv, l, "attn_v.bias", KVD, 0, false) ||
            !blk_bind(m, &L->q_norm, l, "attn_q_norm.weight", D, 0, qk_norm) ||
            !blk_bind(m, &L->k_norm, l, "attn_k_norm.weight", D, 0, qk_norm) ||
            !blk_bind(m, &L->attn_post_norm, l, "post_attention_norm.weight", E, 0, gemma) ||
            !blk_bind(m, &L->ffn_post_norm, l, "post_ffw_norm.weight", E, 0, gemma) ||
            !blk_bind(m, &L->ffn_norm, l, "ffn_norm.weight", E, 0, true))
            return false;
        if (c->n_expert ? !bind_moe(m, L, l, E)
                        : !bind_gate_up(m, L, l, E, c->n_ff, phi3) || !blk_bind(m, &L->w_down, l, "ffn_down.weight", c->n_ff, E, true))
            return false;
        L->swa = c->n_swa && l % c->swa_pattern < c->swa_pattern - 1; /* llama.cpp's set_swa_pattern */
    }
    if (!m->bind_only) repack_weights(m);
    return true;
}

/* --------------------------------------------------------------- sessions */
/* Bytes of one layer's K or V cache of type `type` for n_ctx positions. */
static uint64_t kv_layer_bytes(const ModelConfig *c, uint32_t type, uint32_t n_ctx) {
    const uint64_t values = (uint64_t)n_ctx * c->n_head_kv * c->head_dim;
    return type == GGML_TYPE_Q8_0 ? values / 32 * 34 : values * 2;
}

uint64_t session_kv_bytes(const Session *s) {
    const ModelConfig *c = &s->m->cfg;
    return c->n_layer * (kv_layer_bytes(c, s->type_k, s->n_ctx) + kv_layer_bytes(c, s->type_v, s->n_ctx));
}

static bool kv_type_ok(const ModelConfig *c, uint32_t type, const char *which) {
    if (type == GGML_TYPE_F16 || (type == GGML_TYPE_Q8_0 && c->head_dim % 32 == 0)) return true;
    rt_err("the ", NULL);
    rt_err_append(which);
    rt_err_append(" cache type must be f16 (1) or q8_0 (8), got ");
    rt_err_append_u64(type);
    if (type == GGML_TYPE_Q8_0) {
        rt_err_append(": q8_0 needs a head size that is a multiple of 32, and this model's is ");
        rt_err_append_u64(c->head_dim);
    }
    return false;
}

Session *session_new(Model *m, uint32_t n_ctx, uint32_t type_k, uint32_t type_v) {
    if (m->vocab_only) {
        rt_err("this model was loaded vocab-only: it has no weights to run", NULL);
        return NULL;
    }
    const ModelConfig *c = &m->cfg;
    if (n_ctx == 0 || n_ctx > (1u << 24)) {
        rt_err("context size must be between 1 and 16777216 tokens, got ", NULL);
        rt_err_append_u64(n_ctx);
        return NULL;
    }
    if (!kv_type_ok(c, type_k, "K") || !kv_type_ok(c, type_v, "V")) return NULL;
    Session *s = rt_calloc(1, sizeof(Session));
    if (!s) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); return NULL; }
    s->m = m;
    s->n_ctx = n_ctx;
    s->n_batch = RT_MIN(n_ctx, (uint32_t)REALM_EVAL_BATCH);
    s->type_k = type_k, s->type_v = type_v;
    s->k_cache = rt_malloc(c->n_layer * kv_layer_bytes(c, type_k, n_ctx));
    s->v_cache = rt_malloc(c->n_layer * kv_layer_bytes(c, type_v, n_ctx));
    s->tokens = rt_malloc((uint64_t)n_ctx * 4);
    s->logits_cap = 1;
    s->logits = rt_malloc((uint64_t)c->n_vocab * 4);
    sampler_init(&s->sampler);
    if (!s->k_cache || !s->v_cache || !s->tokens || !s->logits) {
        const uint64_t kv_bytes = session_kv_bytes(s);
        session_free(s);
        rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory: a session with a context of ", NULL);
        rt_err_append_u64(n_ctx);
        rt_err_append(" tokens needs ");
        rt_err_append_u64(kv_bytes >> 20);
        rt_err_append(" MiB of KV cache");
        if (sizeof(void *) == 4)
            rt_err_append(" (this wasm32 build has 4 GiB for weights, KV cache and scratch together: "
                          "use a smaller context, or an engine with Memory64, which runs realm.wasm)");
        return NULL;
    }
    s->next = m->sessions;
    m->sessions = s;
    return s;
}

void session_free(Session *s) {
    if (!s) return;
    if (s->m) /* NULL once its model is gone (model_free) */
        for (Session **p = &s->m->sessions; *p; p = &(*p)->next)
            if (*p == s) { *p = s->next; break; }
    void *ps[] = {s->k_cache, s->v_cache, s->tokens, s->logits};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) rt_free(ps[i]);
    sampler_free(&s->sampler);
    gstate_free(s->grammar);
    rt_free(s);
}

bool model_has_session(const Model *m, const Session *s) {
    for (const Session *p = m->sessions; p; p = p->next)
        if (p == s) return true;
    return false;
}

void session_truncate(Session *s, uint32_t n) {
    if (n < s->n_past) s->n_past = n;
}

/* ------------------------------------------------------------------ RoPE */
static float yarn_ramp(float low, float high, int i0) {
    float y = ((float)i0 / 2 - low) / RT_MAX(0.001f, high - low);
    return 1 - RT_MIN(1.0f, RT_MAX(0.0f, y));
}

static void rope_table_base(const Model *m, float base, float freq_scale, uint32_t pos0, uint32_t n,
                            const float *freqs, float *out);

void rope_table(const Model *m, uint32_t pos0, uint32_t n, const float *freqs, float *out) {
    rope_table_base(m, m->cfg.rope_base, m->cfg.rope_freq_scale, pos0, n, freqs, out);
}

const float *model_rope_factors(const Model *m, uint32_t n_ctx) {
    if (m->rope_freqs.data) return (const float *)m->rope_freqs.data;
    const Tensor *t = n_ctx > m->cfg.rope_n_ctx_orig ? &m->rope_long : &m->rope_short;
    return t->data ? (const float *)t->data : NULL;
}

void rope_table_layer(const Model *m, bool swa, uint32_t pos0, uint32_t n, const float *freqs, float *out) {
    if (swa) rope_table_base(m, m->cfg.rope_base_swa, m->cfg.rope_freq_scale_swa, pos0, n, freqs, out);
    else rope_table(m, pos0, n, freqs, out);
}

static void rope_table_base(const Model *m, float base, float freq_scale, uint32_t pos0, uint32_t n,
                            const float *freqs, float *out) {
    const ModelConfig *c = &m->cfg;
    uint32_t nd = c->rope_dim;
    float theta_scale = rt_powf(base, -2.0f / (float)nd);
    float corr0 = 0, corr1 = 0;
    if (c->yarn_ext_factor != 0) {
        const float two_pi = 6.28318530717958647692f;
        float lb = 2 * rt_logf(base);
        corr0 = rt_floorf(nd * rt_logf((float)c->yarn_n_ctx_orig / (c->yarn_beta_fast * two_pi)) / lb);
        corr1 = __builtin_ceilf(nd * rt_logf((float)c->yarn_n_ctx_orig / (c->yarn_beta_slow * two_pi)) / lb);
        corr0 = RT_MAX(0.0f, corr0);
        corr1 = RT_MIN((float)(nd - 1), corr1);
    }
    for (uint32_t p = 0; p < n; p++) {
        float theta_base = (float)(pos0 + p);
        float *o = out + (uint64_t)p * nd;
        for (uint32_t i0 = 0; i0 < nd; i0 += 2) {
            float theta_extrap = theta_base / (freqs ? freqs[i0 / 2] : 1.0f);
            float theta = freq_scale * theta_extrap, mscale = c->yarn_attn_factor;
            if (c->yarn_ext_factor != 0) {
                float mix = yarn_ramp(corr0, corr1, (int)i0) * c->yarn_ext_factor;
                theta = theta * (1 - mix) + theta_extrap * mix;
                mscale *= 1.0f + 0.1f * rt_logf(1.0f / freq_scale);
            }
            o[i0] = rt_cosf(theta) * mscale;
            o[i0 + 1] = rt_sinf(theta) * mscale;
            theta_base *= theta_scale;
        }
    }
}
