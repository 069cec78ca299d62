/* api_model.c: the exports hosts use to load models, tokenize and run sessions.
 * docs/ARCHITECTURE.md lists every export with its units and ownership. All
 * pointers are wasm64 addresses (i64); a returned 0 (or -1 where counts are
 * returned) means failure, with the reason in realm_last_error(). */
#include "model.h"
#include "quant.h"

static uint64_t last_need;

/* Parse a GGUF header from the first `len` bytes of a `file_size`-byte file at buf
 * (allocated with realm_alloc). Returns the model, or 0: then realm_model_need()
 * is > 0 if a longer prefix is needed (buf stays the caller's), else the file is
 * bad (message in realm_last_error). On success the model owns buf. */
EXPORT Model *realm_model_open(uint8_t *buf, uint64_t len, uint64_t file_size) {
    last_need = 0;
    rt_err_clear();
    if (!buf || !len) {
        rt_err("empty file: a GGUF needs at least a 24-byte header", NULL);
        return NULL;
    }
    return model_open(buf, len, file_size, &last_need);
}
EXPORT uint64_t realm_model_need(void) { return last_need; }

/* File offset where tensor data starts, and how many bytes from there the tensors use. */
EXPORT uint64_t realm_model_data_offset(Model *m) { return m->gguf.data_offset; }
EXPORT uint64_t realm_model_data_size(Model *m) { return m->weights_size; }
/* Allocate (once) and return the weights region: the host copies file bytes
 * [data_offset, data_offset + data_size) here before realm_model_load. */
EXPORT uint8_t *realm_model_weights(Model *m) { return model_weights(m); }
/* Build the tokenizer and, unless vocab_only, bind and check every tensor. 1 or 0. */
EXPORT uint32_t realm_model_load(Model *m, uint32_t vocab_only) { return model_load(m, vocab_only != 0); }
EXPORT void realm_model_free(Model *m) { model_free(m); }

/* Model hyperparameters, written as 16 little-endian u32/f32 words at out:
 * n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff,
 * bos, eos (i32, -1 if none), add_bos, add_eos (0/1), rope_type, rope_dim,
 * rope_base (f32), rms_eps (f32). */
EXPORT void realm_model_info(Model *m, uint32_t *out) {
    const ModelConfig *c = &m->cfg;
    uint32_t w[16] = {c->n_vocab, c->n_ctx_train, c->n_embd, c->n_layer, c->n_head, c->n_head_kv,
                      c->head_dim, c->n_ff, 0, 0, 0, 0, c->rope_type, c->rope_dim, 0, 0};
    int32_t bos = -1, eos = -1;
    bool add_bos = false, add_eos = false;
    if (m->tok) tokenizer_special(m->tok, &bos, &eos, &add_bos, &add_eos);
    memcpy(&w[8], &bos, 4);
    memcpy(&w[9], &eos, 4);
    w[10] = add_bos;
    w[11] = add_eos;
    memcpy(&w[14], &c->rope_base, 4);
    memcpy(&w[15], &c->rms_eps, 4);
    memcpy(out, w, sizeof w);
}

/* Metadata entry i as 6 u64 words at out: key_ptr, key_len, type | arr_type << 32,
 * arr_len, val_ptr, val_len. val_ptr points at the raw GGUF value bytes (for a
 * string: u64 length then bytes; for an array: its elements), inside the model. */
EXPORT uint64_t realm_model_meta_count(Model *m) { return m->gguf.n_kv; }
EXPORT uint32_t realm_model_meta_entry(Model *m, uint64_t i, uint64_t *out) {
    if (i >= m->gguf.n_kv) return 0;
    const GGUFKV *kv = &m->gguf.kv[i];
    out[0] = (uint64_t)(uintptr_t)kv->key.ptr;
    out[1] = kv->key.len;
    out[2] = kv->type | ((uint64_t)kv->arr_type << 32);
    out[3] = kv->arr_len;
    out[4] = (uint64_t)(uintptr_t)kv->val;
    out[5] = kv->val_len;
    return 1;
}

/* Tensor entry i as 10 u64 words at out: name_ptr, name_len, type, n_dims,
 * ne[0..3], offset (from the data section), nbytes. */
EXPORT uint64_t realm_model_tensor_count(Model *m) { return m->gguf.n_tensors; }
EXPORT uint32_t realm_model_tensor_entry(Model *m, uint64_t i, uint64_t *out) {
    if (i >= m->gguf.n_tensors) return 0;
    const GGUFTensor *t = &m->gguf.tensors[i];
    out[0] = (uint64_t)(uintptr_t)t->name.ptr;
    out[1] = t->name.len;
    out[2] = t->type;
    out[3] = t->n_dims;
    for (int d = 0; d < 4; d++) out[4 + d] = t->ne[d];
    out[8] = t->offset;
    out[9] = t->nbytes;
    return 1;
}
EXPORT uint64_t realm_model_gguf_version(Model *m) { return m->gguf.version; }
EXPORT uint64_t realm_model_alignment(Model *m) { return m->gguf.alignment; }

/* ---------------------------------------------------------------- tokens */
/* Tokenize len bytes of UTF-8 at text into out (room for cap ids). Returns the
 * full count (> cap: call again with more room), or -1 on failure. */
EXPORT int64_t realm_tokenize(Model *m, const uint8_t *text, uint64_t len, uint32_t add_special,
                              uint32_t parse_special, int32_t *out, int64_t cap) {
    rt_err_clear();
    if (!m->tok) { rt_err("the model has no tokenizer loaded", NULL); return -1; }
    return tokenizer_encode(m->tok, text, len, add_special != 0, parse_special != 0, out, cap);
}
/* The bytes token id stands for (count returned; may exceed cap), -1 if out of range. */
EXPORT int64_t realm_token_piece(Model *m, int32_t id, uint32_t special, uint8_t *out, int64_t cap) {
    if (!m->tok) return -1;
    return tokenizer_piece(m->tok, id, special != 0, out, cap);
}
EXPORT uint32_t realm_token_is_eog(Model *m, int32_t id) { return m->tok && tokenizer_is_eog(m->tok, id); }

/* -------------------------------------------------------------- sessions */
/* A session: its own KV cache (f16, n_ctx positions), history and sampler. */
EXPORT Session *realm_session_new(Model *m, uint32_t n_ctx) { rt_err_clear(); return session_new(m, n_ctx); }
EXPORT void realm_session_free(Session *s) { session_free(s); }
EXPORT uint32_t realm_session_n_past(Session *s) { return s->n_past; }
EXPORT uint32_t realm_session_n_ctx(Session *s) { return s->n_ctx; }
EXPORT const int32_t *realm_session_tokens(Session *s) { return s->tokens; }
EXPORT void realm_session_truncate(Session *s, uint32_t n) { session_truncate(s, n); }
/* Where the session's K (which=0) or V (which=1) cache starts, and its bytes (for diagnostics). */
EXPORT const uint16_t *realm_session_kv(Session *s, uint32_t which) { return which ? s->v_cache : s->k_cache; }
EXPORT uint64_t realm_session_kv_bytes(Session *s) {
    const ModelConfig *c = &s->m->cfg;
    return 2ull * 2 * c->n_layer * s->n_ctx * c->n_head_kv * c->head_dim;
}
/* Evaluate n token ids at ids; all_logits=1 keeps logits for every one. 1 or 0. */
EXPORT uint32_t realm_session_eval(Session *s, const int32_t *ids, uint32_t n, uint32_t all_logits) {
    return session_eval(s, ids, n, all_logits != 0);
}
/* f32 logits of the last eval: n_vocab per row, realm_session_logits_rows() rows. */
EXPORT float *realm_session_logits(Session *s) { return s->logits; }
EXPORT uint32_t realm_session_logits_rows(Session *s) { return s->logits_rows; }
/* Sampler settings: a SamplerParams struct (sampler.h) at p; reseeds the RNG. */
EXPORT void realm_session_set_sampler(Session *s, const SamplerParams *p) { sampler_set(&s->sampler, p); }
/* Sample the next token from the last row of logits (which it modifies). */
EXPORT int32_t realm_session_sample(Session *s) {
    if (!s->logits_rows) { rt_err("nothing to sample: evaluate tokens first", NULL); return -1; }
    float *row = s->logits + (uint64_t)(s->logits_rows - 1) * s->m->cfg.n_vocab;
    return sampler_sample(&s->sampler, row, s->m->cfg.n_vocab, s->tokens, s->n_past);
}
/* One decode step in one call: evaluate `id`, then sample. The next id, or -1. */
EXPORT int32_t realm_session_step(Session *s, int32_t id) {
    if (!session_eval(s, &id, 1, false)) return -1;
    return realm_session_sample(s);
}

/* ------------------------------------------------------- standalone sampler */
/* A sampler not tied to a session: for logits computed elsewhere (the GPU
 * backend) and for tests. params as realm_session_set_sampler. */
EXPORT Sampler *realm_sampler_new(const SamplerParams *p) {
    Sampler *s = rt_malloc(sizeof(Sampler));
    if (!s) { rt_err("out of memory", NULL); return NULL; }
    sampler_init(s);
    if (p) sampler_set(s, p);
    return s;
}
EXPORT void realm_sampler_set(Sampler *s, const SamplerParams *p) { sampler_set(s, p); }
EXPORT void realm_sampler_free(Sampler *s) {
    if (!s) return;
    sampler_free(s);
    rt_free(s);
}
/* Sample from n_vocab f32 logits (modified in place) with n_hist i32 history ids. */
EXPORT int32_t realm_sampler_sample(Sampler *s, float *logits, uint32_t n_vocab, const int32_t *hist, uint32_t n_hist) {
    return sampler_sample(s, logits, n_vocab, hist, n_hist);
}
