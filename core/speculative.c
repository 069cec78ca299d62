/* speculative.c: exact speculative decoding inside one session.
 *
 * Verification follows llama.cpp's common_sampler_sample_and_accept_n: the
 * session evaluates the last sampled token and the drafted ones in one pass
 * (the same bits as one-token evals: every token's row is summed alone), then
 * its own sampler samples after each position in order, with the history plain
 * decoding would have had at that step; the first sample that differs from the
 * next draft ends the step. Each sample is the very draw plain decoding makes
 * (one RNG draw per sampled token), so the output is the same token for token,
 * greedy or seeded: drafts change the speed, never the text.
 *
 * Drafting by prompt lookup: the continuation of the latest earlier occurrence
 * of the context's last n tokens, for the longest n in [ngram_min, ngram_max]
 * that has one (no second model; strong on text that quotes its input). */
#include "api.h"
#include "model.h"

/* token i of the session's history followed by `last` */
static inline int32_t seq_at(const Session *s, int32_t last, uint64_t i) {
    return i < s->n_past ? s->tokens[i] : last;
}

uint32_t spec_draft_ngram(const Session *s, int32_t last, uint32_t ngram_min, uint32_t ngram_max,
                          int32_t *out, uint32_t k) {
    uint64_t L = (uint64_t)s->n_past + 1;
    if (ngram_min < 1) ngram_min = 1;
    for (uint64_t n = RT_MIN((uint64_t)ngram_max, L - 1); n >= ngram_min; n--) {
        /* latest j < L - n with seq[j .. j+n) == seq[L-n .. L) */
        for (uint64_t j = L - n; j-- > 0;) {
            uint64_t m = 0;
            while (m < n && seq_at(s, last, j + m) == seq_at(s, last, L - n + m)) m++;
            if (m < n) continue;
            uint32_t c = 0;
            for (uint64_t p = j + n; p < L && c < k; p++) out[c++] = seq_at(s, last, p);
            return c;
        }
    }
    return 0;
}

int32_t spec_verify(Session *s, const int32_t *ids, uint32_t n, int32_t *out) {
    uint32_t p0 = s->n_past, V = s->m->cfg.n_vocab;
    if (!session_eval(s, ids, n, n > 1)) return -1;
    uint32_t r = 0;
    for (uint32_t i = 0; i < n; i++) {
        float *row = s->logits + (uint64_t)i * V;
        int32_t t = session_sample(s, row, p0 + i + 1); /* a grammar masks and advances as plain steps do */
        if (t < 0) { session_truncate(s, p0 + i + 1); return -1; }
        out[r++] = t;
        if (i + 1 < n && t == ids[i + 1] && !tokenizer_is_eog(s->m->tok, t)) continue;
        break;
    }
    session_truncate(s, p0 + r); /* keep ids[0 .. r): the last sampled token is not evaluated yet */
    return (int32_t)r;
}

/* ------------------------------------------------------------------ exports */
EXPORT int32_t realm_session_verify(Session *s, const int32_t *ids, uint32_t n, int32_t *out) {
    rt_err_clear();
    NEED_SESSION(s, -1);
    if (!n || !ids || !out) {
        rt_err("realm_session_verify: needs at least the last sampled token and room for n results", NULL);
        return -1;
    }
    return spec_verify(s, ids, n, out);
}

EXPORT int32_t realm_session_draft_ngram(Session *s, int32_t last, uint32_t ngram_min, uint32_t ngram_max,
                                         int32_t *out, uint32_t k) {
    rt_err_clear();
    NEED_SESSION(s, -1);
    if (k && !out) {
        rt_err("realm_session_draft_ngram: null output", NULL);
        return -1;
    }
    return (int32_t)spec_draft_ngram(s, last, ngram_min, ngram_max, out, k);
}
