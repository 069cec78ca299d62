/* api_grammar.c: GBNF grammars that constrain a session's sampling (grammar.h).
 * A grammar handle is compiled text, made for one model; a session given one
 * takes its own copy (and matcher state), so the handle may be freed at once. */
#include "api.h"
#include "model.h"
#include "grammar.h"
#include "json_schema.h"

EXPORT Grammar *realm_grammar_new(Model *m, const uint8_t *text, uint64_t len, const char *root) {
    rt_err_clear();
    NEED_MODEL(m, NULL);
    if (!m->tok) { rt_err("realm_grammar_new: the model has no tokenizer loaded", NULL); return NULL; }
    if (len && !text) { rt_err("realm_grammar_new: null text", NULL); return NULL; }
    Grammar *g = grammar_parse(text, len, root);
    if (g) g->owner = m;
    return g;
}

EXPORT void realm_grammar_free(Grammar *g) { grammar_free(g); }

EXPORT uint32_t realm_session_set_grammar(Session *s, const Grammar *g) {
    rt_err_clear();
    NEED_SESSION(s, 0);
    if (!g) {
        gstate_free(s->grammar);
        s->grammar = NULL;
        return 1;
    }
    if (g->owner != s->m) { rt_err("realm_session_set_grammar: the grammar was made for another model", NULL); return 0; }
    if (s->grammar && gstate_serial(s->grammar) == g->serial) return gstate_reset(s->grammar) ? 1 : 0; /* caches kept */
    if (!s->m->gvocab && !(s->m->gvocab = gvocab_build(s->m->tok))) return 0;
    GrammarState *st = gstate_new(g, s->m->gvocab);
    if (!st) return 0;
    gstate_free(s->grammar);
    s->grammar = st;
    return 1;
}

EXPORT int32_t realm_session_grammar_state(Session *s) {
    rt_err_clear();
    NEED_SESSION(s, -1);
    if (!s->grammar) return 0;
    int32_t c = gstate_complete(s->grammar);
    return c < 0 ? 3 : c ? 2 : 1;
}

EXPORT int64_t realm_session_grammar_mask(Session *s, uint32_t *bits, uint32_t words) {
    rt_err_clear();
    NEED_SESSION(s, -1);
    if (!s->grammar) { rt_err("realm_session_grammar_mask: the session has no grammar", NULL); return -1; }
    uint32_t need = (gstate_n_vocab(s->grammar) + 31) / 32;
    if (!bits || words < need) {
        rt_err("realm_session_grammar_mask: needs room for ", NULL), rt_err_append_u64(need), rt_err_append(" u32 words");
        return -1;
    }
    const uint32_t *b;
    uint32_t count;
    if (!gstate_bits(s->grammar, &b, &count)) return -1;
    memcpy(bits, b, (uint64_t)need * 4);
    return count;
}

EXPORT uint32_t realm_session_grammar_accept(Session *s, int32_t id) {
    rt_err_clear();
    NEED_SESSION(s, 0);
    if (!s->grammar) { rt_err("realm_session_grammar_accept: the session has no grammar", NULL); return 0; }
    return gstate_accept(s->grammar, id) ? 1 : 0;
}

/* A grammar's matcher state for a standalone sampler (the GPU backend: its logits come
 * from elsewhere, its sampler is realm_sampler_new's); the state copies what it needs of g. */
EXPORT GrammarState *realm_grammar_state_new(Model *m, const Grammar *g) {
    rt_err_clear();
    NEED_MODEL(m, NULL);
    if (!g) { rt_err("realm_grammar_state_new: null grammar", NULL); return NULL; }
    if (g->owner != m) { rt_err("realm_grammar_state_new: the grammar was made for another model", NULL); return NULL; }
    if (!m->gvocab && !(m->gvocab = gvocab_build(m->tok))) return NULL;
    return gstate_new(g, m->gvocab);
}
EXPORT void realm_grammar_state_free(GrammarState *st) { gstate_free(st); }

/* realm_sampler_sample under a grammar: tokens it refuses are masked first, the drawn one
 * advances it (as a session's sample does). The id, or -1 (a dead grammar, an error). */
EXPORT int32_t realm_sampler_sample_grammar(Sampler *sm, GrammarState *st, float *logits, uint32_t n_vocab,
                                            const int32_t *hist, uint32_t n_hist) {
    rt_err_clear();
    if (!sm || !st || !logits) { rt_err("realm_sampler_sample_grammar: null sampler, grammar state or logits", NULL); return -1; }
    if (!gstate_mask(st, logits, n_vocab)) return -1;
    int32_t t = sampler_sample(sm, logits, n_vocab, hist, n_hist);
    if (t >= 0 && !gstate_accept(st, t)) return -1;
    return t;
}

int32_t session_sample(Session *s, float *row, uint32_t n_hist) {
    uint32_t V = s->m->cfg.n_vocab;
    if (s->grammar && !gstate_mask(s->grammar, row, V)) return -1;
    int32_t t = sampler_sample(&s->sampler, row, V, s->tokens, n_hist);
    if (t >= 0 && s->grammar && !gstate_accept(s->grammar, t)) return -1;
    return t;
}

EXPORT char *realm_json_schema_gbnf(const uint8_t *json, uint64_t len, const char *prefix, uint64_t *out_len) {
    rt_err_clear();
    if (!out_len || (len && !json)) { rt_err("realm_json_schema_gbnf: null json or out_len", NULL); return NULL; }
    return json_schema_to_gbnf(json, len, prefix, out_len);
}
