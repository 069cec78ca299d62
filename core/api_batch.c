/* api_batch.c: continuous batching, one forward pass for several sessions of a
 * model (batch.h; docs/ARCHITECTURE.md, "Exports: batches"). */
#include "api.h"
#include "batch.h"

/* Read n sequences from the host's arrays: sessions (n i64 handles), ids (the
 * sequences' ids one after another), counts (n u32; 0 = one id each), flags
 * (n u32 BATCH_* words; 0 = the last row's logits for each). */
static bool gather(Model *m, Session *const *sessions, uint32_t n, const int32_t *ids, const uint32_t *counts,
                   const uint32_t *flags, BatchSeq *seqs) {
    rt_err_clear();
    batch_reset_failed();
    if (n == 0 || !sessions || !ids) { rt_err("batch: no sessions (an empty batch), or null arrays", NULL); return false; }
    if (n > BATCH_MAX_TOKENS) {
        rt_err("batch: ", NULL);
        rt_err_append_u64(n);
        rt_err_append(" sessions in one step exceed the core's budget of ");
        rt_err_append_u64(BATCH_MAX_TOKENS);
        rt_err_append(" tokens");
        return false;
    }
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = counts ? counts[i] : 1;
        seqs[i] = (BatchSeq){ .s = sessions[i], .ids = ids + at, .n = c, .flags = flags ? flags[i] : 0 };
        at += c; /* (no id is read before batch_eval has checked the total against its budget) */
    }
    return true;
}

/* Evaluate one step: session i adds counts[i] ids (a prompt chunk, or one
 * decode token) at its n_past.., all in one forward pass. 1, or 0 with
 * realm_last_error() (and realm_batch_failed()) naming the session; then no
 * session changed. */
EXPORT uint32_t realm_batch_eval(Model *m, Session *const *sessions, uint32_t n, const int32_t *ids,
                                 const uint32_t *counts, const uint32_t *flags) {
    NEED_MODEL(m, 0);
    BatchSeq seqs[BATCH_MAX_TOKENS];
    if (!gather(m, sessions, n, ids, counts, flags, seqs)) return 0;
    return batch_eval(m, seqs, n);
}

/* realm_batch_eval, then each session samples its next token with its own
 * sampler into out[i] (-1 for a session evaluated with BATCH_NO_LOGITS): the
 * decode loop of N streams is one call per step. 1 or 0. */
EXPORT uint32_t realm_batch_step(Model *m, Session *const *sessions, uint32_t n, const int32_t *ids,
                                 const uint32_t *counts, const uint32_t *flags, int32_t *out) {
    NEED_MODEL(m, 0);
    if (!out) { rt_err("batch: null output array", NULL); return 0; }
    if (!realm_batch_eval(m, sessions, n, ids, counts, flags)) return 0;
    for (uint32_t i = 0; i < n; i++) {
        Session *s = sessions[i];
        out[i] = -1;
        if (!s->logits_rows) continue;
        float *row = s->logits + (uint64_t)(s->logits_rows - 1) * m->cfg.n_vocab;
        out[i] = session_sample(s, row, s->n_past);
        if (out[i] < 0) { batch_set_failed((int32_t)i); return 0; } /* out of memory, or its grammar refused */
    }
    return 1;
}

/* Index of the session the last failed batch call was about, -1 if none. */
EXPORT int32_t realm_batch_failed(void) { return batch_failed(); }
/* Tokens one step may hold, all sessions together. */
EXPORT uint32_t realm_batch_max_tokens(void) { return BATCH_MAX_TOKENS; }
