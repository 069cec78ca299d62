/* api_sampler.c: the standalone sampler, for logits computed elsewhere (the GPU
 * backend) and for tests. The same object and code as a session's sampler, so a
 * GPU session draws exactly what a CPU session would from the same logits. */
#include "api.h"
#include "sampler.h"

EXPORT Sampler *realm_sampler_new(const SamplerParams *p) {
    rt_err_clear();
    Sampler *s = rt_malloc(sizeof(Sampler));
    if (!s) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); return NULL; }
    sampler_init(s);
    if (p) sampler_set(s, p);
    return s;
}
EXPORT uint32_t realm_sampler_set(Sampler *s, const SamplerParams *p) {
    NEED_SAMPLER(s, 0);
    if (!p) { rt_err("realm_sampler_set: null params", NULL); return 0; }
    sampler_set(s, p);
    return 1;
}
EXPORT void realm_sampler_free(Sampler *s) {
    if (!s) return;
    sampler_free(s);
    rt_free(s);
}
/* Sample from n_vocab f32 logits (modified in place) with n_hist i32 history ids. */
EXPORT int32_t realm_sampler_sample(Sampler *s, float *logits, uint32_t n_vocab, const int32_t *hist, uint32_t n_hist) {
    rt_err_clear();
    NEED_SAMPLER(s, -1);
    return sampler_sample(s, logits, n_vocab, hist, n_hist);
}

/* What the sampler needs from the GPU for the next token:
 *   1   the largest logit only (greedy, or top_k = 1; no penalties),
 *   k   the k largest logits (top-k sampling, 2 <= k <= REALM_MAX_TOPK, no penalties),
 *   0   the whole row (penalties with history, no top-k, k over the limit, or logprobs). */
EXPORT uint32_t realm_sampler_need(Sampler *s, uint32_t n_vocab, uint32_t n_hist) {
    NEED_SAMPLER(s, 0);
    const SamplerParams *p = &s->p;
    if (s->lp_want >= 0) return 0; /* logprobs are a log-softmax over the whole row */
    bool penalise = (p->repeat_penalty != 1.0f || p->frequency_penalty != 0 || p->presence_penalty != 0) &&
                    p->repeat_last_n != 0 && n_hist > 0;
    if (penalise) return 0;
    if (p->temperature <= 0 || p->top_k == 1) return 1;
    if (p->top_k > 1 && (uint32_t)p->top_k < n_vocab && p->top_k <= REALM_MAX_TOPK) return (uint32_t)p->top_k;
    return 0;
}

/* Sample from n candidates when realm_sampler_need said n (or 1): cand holds
 * n pairs (u32 token id, f32 value bits) in any order, as topk.wgsl writes them
 * (sorted here). The draw is the one the full-row sampler makes, which would
 * keep exactly these candidates. The token id, or -1. */
EXPORT int32_t realm_sampler_sample_top(Sampler *s, uint32_t *cand, uint32_t n) {
    rt_err_clear();
    NEED_SAMPLER(s, -1);
    if (!n) { rt_err("no candidates to sample from", NULL); return -1; }
    /* order by value (descending), then id: the full sampler's order */
    for (uint32_t i = 1; i < n; i++) {
        uint32_t id = cand[2 * i], vb = cand[2 * i + 1];
        float v;
        memcpy(&v, &vb, 4);
        int64_t j = (int64_t)i - 1;
        while (j >= 0) {
            float w;
            memcpy(&w, &cand[2 * j + 1], 4);
            if (!(w < v || (w == v && cand[2 * j] > id))) break;
            cand[2 * j + 2] = cand[2 * j];
            cand[2 * j + 3] = cand[2 * j + 1];
            j--;
        }
        cand[2 * j + 2] = id;
        cand[2 * j + 3] = vb;
    }
    float *vals = rt_malloc((uint64_t)n * 4);
    if (!vals) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); return -1; }
    for (uint32_t i = 0; i < n; i++) memcpy(&vals[i], &cand[2 * i + 1], 4);
    int32_t r = sampler_sample(s, vals, n, NULL, 0);
    rt_free(vals);
    return r < 0 ? -1 : (int32_t)cand[2 * r];
}

/* Logprobs of every later sample from a whole row (realm_session_set_logprobs' meaning):
 * n = -1 off, else the sampled token's and the n most likely tokens'. 1 or 0. */
EXPORT uint32_t realm_sampler_set_logprobs(Sampler *s, int32_t n) {
    rt_err_clear();
    NEED_SAMPLER(s, 0);
    return sampler_want_logprobs(s, n) ? 1 : 0;
}
/* The last sample's log-probabilities, as realm_session_logprobs. The count, 0 when none, -1 on error. */
EXPORT int32_t realm_sampler_logprobs(Sampler *s, int32_t *ids, float *logprobs, uint32_t cap) {
    rt_err_clear();
    NEED_SAMPLER(s, -1);
    if (!ids || !logprobs) { rt_err("realm_sampler_logprobs: null output arrays", NULL); return -1; }
    if (s->lp_want < 0 || s->lp_n < 0) return 0;
    uint32_t n = RT_MIN((uint32_t)s->lp_n + 1, cap);
    for (uint32_t i = 0; i < n; i++) ids[i] = s->lp_ids[i], logprobs[i] = s->lp_vals[i];
    return (int32_t)n;
}
