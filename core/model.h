/* model.h: a LLaMA-family model (llama, mistral, qwen2, qwen3, gemma3 and their kin) and its
 * sessions. One Model holds one copy of the weights; every Session holds its
 * own KV cache, token history, sampler state and scratch, and nothing else. */
#ifndef REALM_MODEL_H
#define REALM_MODEL_H
#include "rt.h"
#include "gguf.h"
#include "tokenizer.h"
#include "sampler.h"

enum { ROPE_NORM = 0, ROPE_NEOX = 2 };

typedef struct {
    uint32_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    float rms_eps;
    /* RoPE, as llama.cpp parameterises it */
    uint32_t rope_type, rope_dim;
    float rope_base, rope_freq_scale;      /* freq_scale = 1 / scaling factor */
    float yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow;
    uint32_t yarn_n_ctx_orig;
    /* gemma3: embeddings scaled by embd_scale (0: not), GeGLU FFN instead of SwiGLU, and
     * sliding-window layers (Layer.swa: keys at most n_swa - 1 positions back) with their
     * own RoPE base */
    float embd_scale;
    bool ffn_gelu;
    uint32_t n_swa;
    uint32_t swa_pattern;     /* layer l slides when l % swa_pattern < swa_pattern - 1 (llama.cpp's set_swa_pattern) */
    float rope_base_swa, rope_freq_scale_swa;
    /* gemma2, phi3: q times attn_scale after RoPE (before it meets the f16 cache) and the
     * scores unscaled, as their llama.cpp graphs do; otherwise scores times 1/sqrt(head_dim) */
    bool q_prescale;
    float attn_scale;
    /* gemma2: scores and logits soft-capped, cap * tanh(x / cap) (0: not) */
    float attn_softcap, final_softcap;
    /* phi3 (LongRoPE): contexts longer than this use rope_long's factors, others rope_short's */
    uint32_t rope_n_ctx_orig;
    /* qwen2moe, qwen3moe: each row's FFN is the weighted sum of the n_expert_used experts (of
     * n_expert, n_ff_exp wide) its router ranks highest (weights: the router's softmax, renormed
     * over the chosen when moe_norm_w); qwen2moe adds a shared expert (n_ff_shexp wide) times
     * sigmoid(its gate). n_expert 0: a dense FFN. */
    uint32_t n_expert, n_expert_used, n_ff_exp, n_ff_shexp;
    bool moe_norm_w;
} ModelConfig;

/* A weight matrix in its stored type: ne0 = input width (K), ne1 = rows. */
typedef struct {
    uint32_t type;
    const uint8_t *data;
    uint64_t ne0, ne1, row_bytes;
} Tensor;

typedef struct {
    Tensor attn_norm, wq, wk, wv, wo, bq, bk, bv;
    Tensor q_norm, k_norm;   /* qwen3, gemma3: RMSNorm of each head of q and k before RoPE (head_dim wide) */
    Tensor attn_post_norm, ffn_post_norm;   /* gemma3: RMSNorm of each branch's output before the residual */
    bool swa;                /* gemma3: a sliding-window layer */
    Tensor ffn_norm, w_gate, w_up, w_down;
    /* MoE: router [n_embd -> n_expert]; the experts' matrices, expert e's rows at
     * [e * rows_per_expert, ..) (one 3-D tensor per kind); the shared expert and its gate */
    Tensor gate_inp, gate_exps, up_exps, down_exps;
    Tensor gate_inp_shexp, gate_shexp, up_shexp, down_shexp;
} Layer;

struct Batch;
struct Session;
struct GrammarVocab;
struct GrammarState;
struct Lora;
struct LoraWork;

#define SESSION_MAX_LORA 8 /* adapters one session may apply at once (lora.h) */

typedef struct Model {
    GGUF gguf;
    bool vocab_only;
    uint8_t *weights;       /* the tensor data section, copied in by the host */
    bool bind_only;         /* realm_gpu_prepare: tensors bound to a stand-in base, no bytes behind them */
    uint64_t weights_size;
    ModelConfig cfg;
    Tensor tok_embd, output_norm, output, rope_freqs;
    Tensor rope_short, rope_long;   /* phi3 LongRoPE frequency factors (rope_dim/2 f32 each), or none */
    Layer *layers;
    Tokenizer *tok;
    Str arch;
    struct Batch *batch;        /* the forward pass's workspace (batch.h), shared by its sessions */
    struct Session *sessions;   /* the live sessions, newest first */
    struct GrammarVocab *gvocab; /* the vocabulary as code points for grammars (grammar.h), built on first use */
    struct Lora *loras;          /* its LoRA adapters (lora.h), newest first */
    struct LoraWork *lora_work;  /* their matmuls' scratch */
} Model;

/* Parse a header (see gguf_parse for buf ownership and *need). NULL on error or need-more. */
Model *model_open(uint8_t *buf, uint64_t len, uint64_t file_size, uint64_t *need);
/* The region the host fills with file bytes [data_offset, data_offset + weights_size). */
uint8_t *model_weights(Model *m);
/* Build tokenizer and (unless vocab_only) bind and validate every tensor. */
bool model_load(Model *m, bool vocab_only);
void model_free(Model *m);

typedef struct Session {
    Model *m;
    struct Session *next;        /* in m->sessions */
    uint32_t n_ctx, n_past, n_batch; /* n_batch: tokens per forward pass of session_eval */
    /* The KV cache, K and V each of its own type (llama.cpp's -ctk / -ctv):
     * GGML_TYPE_F16 (default): [n_layer][n_ctx][n_head_kv * head_dim] halves;
     * GGML_TYPE_Q8_0 (34 bytes per 32 values, 53 %): [n_layer][n_head_kv][n_ctx] rows of head_dim
     * values in ggml's block_q8_0, each KV head's rows together, so that one head's K is an
     * ordinary Q8_0 matrix for the matmul kernels (quant_attn_q8.c). session_kv_row finds a row. */
    uint32_t type_k, type_v;
    void *k_cache, *v_cache;
    int32_t *tokens;             /* the n_past tokens in the cache */
    float *logits;               /* n_vocab * logits_rows */
    uint32_t logits_rows, logits_cap;
    Sampler sampler;
    struct GrammarState *grammar; /* constrains sampling when set (realm_session_set_grammar), else NULL */
    struct Lora *lora[SESSION_MAX_LORA]; /* the adapters its forward passes apply (realm_session_set_lora) */
    float lora_scale[SESSION_MAX_LORA];
    uint32_t n_lora;
} Session;

/* out[(p - pos0) * rope_dim + 2i, +1] = (cos, sin) * mscale of RoPE pair i at
 * position p, for p in [pos0, pos0 + n) (ggml_rope_ext's angles: frequency
 * factors freqs (rope_dim/2 values, or NULL), linear and YaRN scaling). The
 * CPU forward pass and the GPU plan (realm_gpu_rope_table) both use it. */
void rope_table(const Model *m, uint32_t pos0, uint32_t n, const float *freqs, float *out);
/* The same for a layer: sliding-window layers (gemma3) use their own base, unscaled. */
void rope_table_layer(const Model *m, bool swa, uint32_t pos0, uint32_t n, const float *freqs, float *out);

/* The RoPE frequency factors a session of context n_ctx uses (llama.cpp's get_rope_factors:
 * rope_freqs, else phi3's long factors past rope_n_ctx_orig, else its short ones), or NULL. */
const float *model_rope_factors(const Model *m, uint32_t n_ctx);

/* type_k, type_v: GGML_TYPE_F16 or GGML_TYPE_Q8_0 (head_dim a multiple of 32), else rt_err names them. */
Session *session_new(Model *m, uint32_t n_ctx, uint32_t type_k, uint32_t type_v);
/* Bytes of s's K and V caches together. */
uint64_t session_kv_bytes(const Session *s);
/* Where KV head h's values at position pos of layer l start in s's K (which = 0) or V (1) cache. */
static inline uint8_t *session_kv_row(const Session *s, int which, uint32_t l, uint32_t h, uint32_t pos) {
    const ModelConfig *c = &s->m->cfg;
    uint8_t *cache = (uint8_t *)(which ? s->v_cache : s->k_cache);
    if ((which ? s->type_v : s->type_k) == GGML_TYPE_Q8_0)
        return cache + (((uint64_t)l * c->n_head_kv + h) * s->n_ctx + pos) * (c->head_dim / 32 * 34);
    return cache + (((uint64_t)l * s->n_ctx + pos) * c->n_head_kv + h) * c->head_dim * 2;
}
void session_free(Session *s);
/* s is one of m's live sessions (compares pointers only: s may be anything). */
bool model_has_session(const Model *m, const Session *s);
/* Evaluate n tokens at positions n_past.. ; logits for the last token, or for
 * every token when all_logits. False with rt_err on a bad id or a full context.
 * (batch.c: a batch of this one session, n_batch tokens per forward pass.) */
bool session_eval(Session *s, const int32_t *ids, uint32_t n, bool all_logits);
/* Forget everything after the first n tokens (prefix reuse, rewinds). */
void session_truncate(Session *s, uint32_t n);
/* Sample from row (n_vocab logits, modified) with the session's sampler and the first n_hist
 * tokens of its history as the penalties' history; with a grammar, disallowed tokens are
 * masked first and the grammar advances past the sampled token (api_grammar.c). -1 with rt_err. */
int32_t session_sample(Session *s, float *row, uint32_t n_hist);

#endif
