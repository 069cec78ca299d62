/* api_model.c: the exports hosts use to load models, tokenize and run sessions.
 * docs/ARCHITECTURE.md lists every export with its units and ownership. All
 * pointers are wasm64 addresses (i64); a returned 0 (or -1 where counts are
 * returned) means failure, with the reason in realm_last_error() and its kind
 * in realm_last_error_kind(). A file that fails to open or load is a format
 * error unless the core said otherwise (unsupported, out of memory). */
#include "api.h"
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
        rt_err_as(REALM_ERR_FORMAT, "empty file: a GGUF needs at least a 24-byte header", NULL);
        return NULL;
    }
    Model *m = model_open(buf, len, file_size, &last_need);
    if (!m && rt_err_kind() == REALM_ERR_INVALID_ARGUMENT) rt_err_set_kind(REALM_ERR_FORMAT);
    return m;
}
EXPORT uint64_t realm_model_need(void) { return last_need; }

/* File offset where tensor data starts, and how many bytes from there the tensors use. */
EXPORT uint64_t realm_model_data_offset(Model *m) { NEED_MODEL(m, 0); return m->gguf.data_offset; }
EXPORT uint64_t realm_model_data_size(Model *m) { NEED_MODEL(m, 0); return m->weights_size; }
/* Allocate (once) and return the weights region: the host copies file bytes
 * [data_offset, data_offset + data_size) here before realm_model_load. */
EXPORT uint8_t *realm_model_weights(Model *m) { NEED_MODEL(m, NULL); return model_weights(m); }
/* Build the tokenizer and, unless vocab_only, bind and check every tensor. 1 or 0. */
EXPORT uint32_t realm_model_load(Model *m, uint32_t vocab_only) {
    rt_err_clear();
    NEED_MODEL(m, 0);
    bool ok = model_load(m, vocab_only != 0);
    if (!ok && rt_err_kind() == REALM_ERR_INVALID_ARGUMENT) rt_err_set_kind(REALM_ERR_FORMAT);
    return ok;
}
EXPORT void realm_model_free(Model *m) { if (m) model_free(m); }

/* Model hyperparameters and special tokens as a RealmModelInfo at out. */
EXPORT uint32_t realm_model_info(Model *m, RealmModelInfo *out) {
    NEED_MODEL(m, 0);
    const ModelConfig *c = &m->cfg;
    RealmModelInfo i = {
        .n_vocab = c->n_vocab, .n_ctx_train = c->n_ctx_train, .n_embd = c->n_embd, .n_layer = c->n_layer,
        .n_head = c->n_head, .n_head_kv = c->n_head_kv, .head_dim = c->head_dim, .n_ff = c->n_ff,
        .bos = -1, .eos = -1, .rope_type = c->rope_type, .rope_dim = c->rope_dim,
        .rope_base = c->rope_base, .rms_eps = c->rms_eps,
    };
    bool add_bos = false, add_eos = false;
    if (m->tok) tokenizer_special(m->tok, &i.bos, &i.eos, &add_bos, &add_eos);
    i.add_bos = add_bos;
    i.add_eos = add_eos;
    memcpy(out, &i, sizeof i);
    return 1;
}

/* Metadata entry i as a RealmMetaEntry at out: the key and the raw GGUF value
 * bytes (a string: u64 length then bytes; an array: its elements), both
 * inside the model. */
EXPORT uint64_t realm_model_meta_count(Model *m) { NEED_MODEL(m, 0); return m->gguf.n_kv; }
EXPORT uint32_t realm_model_meta_entry(Model *m, uint64_t i, RealmMetaEntry *out) {
    NEED_MODEL(m, 0);
    if (i >= m->gguf.n_kv) { rt_err("realm_model_meta_entry: index out of range", NULL); return 0; }
    const GGUFKV *kv = &m->gguf.kv[i];
    RealmMetaEntry e = {
        .key_ptr = (uint64_t)(uintptr_t)kv->key.ptr, .key_len = kv->key.len, .type = kv->type,
        .arr_type = kv->type == GGUF_ARRAY ? kv->arr_type : 0, .arr_len = kv->arr_len,
        .val_ptr = (uint64_t)(uintptr_t)kv->val, .val_len = kv->val_len,
    };
    memcpy(out, &e, sizeof e);
    return 1;
}

/* Tensor entry i as a RealmTensorEntry at out (offset from the data section). */
EXPORT uint64_t realm_model_tensor_count(Model *m) { NEED_MODEL(m, 0); return m->gguf.n_tensors; }
EXPORT uint32_t realm_model_tensor_entry(Model *m, uint64_t i, RealmTensorEntry *out) {
    NEED_MODEL(m, 0);
    if (i >= m->gguf.n_tensors) { rt_err("realm_model_tensor_entry: index out of range", NULL); return 0; }
    const GGUFTensor *g = &m->gguf.tensors[i];
    RealmTensorEntry e = {
        .name_ptr = (uint64_t)(uintptr_t)g->name.ptr, .name_len = g->name.len, .type = g->type, .n_dims = g->n_dims,
        .ne0 = g->ne[0], .ne1 = g->ne[1], .ne2 = g->ne[2], .ne3 = g->ne[3], .offset = g->offset, .nbytes = g->nbytes,
    };
    memcpy(out, &e, sizeof e);
    return 1;
}
EXPORT uint64_t realm_model_gguf_version(Model *m) { NEED_MODEL(m, 0); return m->gguf.version; }
EXPORT uint64_t realm_model_alignment(Model *m) { NEED_MODEL(m, 0); return m->gguf.alignment; }

/* ---------------------------------------------------------------- tokens */
/* Tokenize len bytes of UTF-8 at text into out (room for cap ids). Returns the
 * full count (> cap: call again with more room), or -1 on failure. */
EXPORT int64_t realm_tokenize(Model *m, const uint8_t *text, uint64_t len, uint32_t add_special,
                              uint32_t parse_special, int32_t *out, int64_t cap) {
    rt_err_clear();
    NEED_MODEL(m, -1);
    if (!m->tok) { rt_err("the model has no tokenizer loaded", NULL); return -1; }
    return tokenizer_encode(m->tok, text, len, add_special != 0, parse_special != 0, out, cap);
}
/* The bytes token id stands for (count returned; may exceed cap), -1 if out of range. */
EXPORT int64_t realm_token_piece(Model *m, int32_t id, uint32_t special, uint8_t *out, int64_t cap) {
    rt_err_clear();
    NEED_MODEL(m, -1);
    if (!m->tok) { rt_err("the model has no tokenizer loaded", NULL); return -1; }
    int64_t n = tokenizer_piece(m->tok, id, special != 0, out, cap);
    if (n < 0) rt_err("realm_token_piece: token id ", NULL), rt_err_append_i64(id), rt_err_append(" is out of range");
    return n;
}
EXPORT uint32_t realm_token_is_eog(Model *m, int32_t id) { NEED_MODEL(m, 0); return m->tok && tokenizer_is_eog(m->tok, id); }

/* -------------------------------------------------------------- sessions */
/* A session: its own KV cache (f16, n_ctx positions), history and sampler. */
EXPORT Session *realm_session_new(Model *m, uint32_t n_ctx) {
    rt_err_clear();
    NEED_MODEL(m, NULL);
    return session_new(m, n_ctx, GGML_TYPE_F16, GGML_TYPE_F16);
}
EXPORT Session *realm_session_new_kv(Model *m, uint32_t n_ctx, uint32_t type_k, uint32_t type_v) {
    rt_err_clear();
    NEED_MODEL(m, NULL);
    return session_new(m, n_ctx, type_k, type_v);
}
EXPORT void realm_session_free(Session *s) { if (s) session_free(s); }
EXPORT uint32_t realm_session_n_past(Session *s) { NEED_SESSION(s, 0); return s->n_past; }
EXPORT uint32_t realm_session_n_ctx(Session *s) { NEED_SESSION(s, 0); return s->n_ctx; }
EXPORT const int32_t *realm_session_tokens(Session *s) { NEED_SESSION(s, NULL); return s->tokens; }
EXPORT uint32_t realm_session_truncate(Session *s, uint32_t n) {
    NEED_SESSION(s, 0);
    session_truncate(s, n);
    return 1;
}
/* Where the session's K (which=0) or V (which=1) cache starts, and its bytes (for diagnostics). */
EXPORT const uint16_t *realm_session_kv(Session *s, uint32_t which) {
    NEED_SESSION(s, NULL);
    return (const uint16_t *)(which ? s->v_cache : s->k_cache);
}
EXPORT uint64_t realm_session_kv_bytes(Session *s) {
    NEED_SESSION(s, 0);
    return session_kv_bytes(s);
}
/* Evaluate n token ids at ids; all_logits=1 keeps logits for every one. 1 or 0. */
EXPORT uint32_t realm_session_eval(Session *s, const int32_t *ids, uint32_t n, uint32_t all_logits) {
    rt_err_clear();
    NEED_SESSION(s, 0);
    return session_eval(s, ids, n, all_logits != 0);
}
/* f32 logits of the last eval: n_vocab per row, realm_session_logits_rows() rows. */
EXPORT float *realm_session_logits(Session *s) { NEED_SESSION(s, NULL); return s->logits; }
EXPORT uint32_t realm_session_logits_rows(Session *s) { NEED_SESSION(s, 0); return s->logits_rows; }
/* Sampler settings (SamplerParams at p); reseeds the RNG. */
EXPORT uint32_t realm_session_set_sampler(Session *s, const SamplerParams *p) {
    NEED_SESSION(s, 0);
    if (!p) { rt_err("realm_session_set_sampler: null params", NULL); return 0; }
    sampler_set(&s->sampler, p);
    return 1;
}
/* Sample the next token from the last row of logits (which it modifies). */
EXPORT int32_t realm_session_sample(Session *s) {
    rt_err_clear();
    NEED_SESSION(s, -1);
    if (!s->logits_rows) { rt_err("nothing to sample: evaluate tokens first", NULL); return -1; }
    float *row = s->logits + (uint64_t)(s->logits_rows - 1) * s->m->cfg.n_vocab;
    return session_sample(s, row, s->n_past);
}
/* Record log-probabilities with each sample: n = -1 off, else the sampled token's and the n
 * (<= 20) most likely tokens'. 1 or 0. */
EXPORT uint32_t realm_session_set_logprobs(Session *s, int32_t n) {
    rt_err_clear();
    NEED_SESSION(s, 0);
    return sampler_want_logprobs(&s->sampler, n) ? 1 : 0;
}
/* The last sample's log-probabilities: ids[0], logprobs[0] the sampled token; then the most
 * likely tokens, most likely first; at most cap entries. The count, 0 when none is recorded. */
EXPORT int32_t realm_session_logprobs(Session *s, int32_t *ids, float *logprobs, uint32_t cap) {
    rt_err_clear();
    NEED_SESSION(s, -1);
    if (!ids || !logprobs) { rt_err("realm_session_logprobs: null output arrays", NULL); return -1; }
    const Sampler *sm = &s->sampler;
    if (sm->lp_want < 0 || sm->lp_n < 0) return 0;
    uint32_t n = RT_MIN((uint32_t)sm->lp_n + 1, cap);
    for (uint32_t i = 0; i < n; i++) ids[i] = sm->lp_ids[i], logprobs[i] = sm->lp_vals[i];
    return (int32_t)n;
}
/* One decode step in one call: evaluate `id`, then sample. The next id, or -1. */
EXPORT int32_t realm_session_step(Session *s, int32_t id) {
    rt_err_clear();
    NEED_SESSION(s, -1);
    if (!session_eval(s, &id, 1, false)) return -1;
    return realm_session_sample(s);
}
