/* api_embed.c: hidden states for embeddings (the server's /v1/embeddings).
 *
 * An embedding is a pooled hidden state: for every token of the input, the
 * residual stream after the last layer, passed through the model's final
 * RMSNorm (output_norm) -- the vector the output head reads. The core sums
 * those vectors; the host divides by the count (mean pooling) and normalizes.
 *
 * Nothing here touches the forward pass: it evaluates the tokens with
 * session_eval, one batch (<= n_batch tokens) per call, and after each batch
 * reads the forward pass's residual stream (batch_hidden), n_embd floats per
 * token, before the final norm (see forward in batch.c). */
#include "api.h"
#include "model.h"
#include "batch.h"

/* acc += rmsnorm(x) * w, with the sum of squares in double as ggml (and model.c) do it */
static void add_normed(float *acc, const float *x, const float *w, uint64_t n, float eps) {
    double ss = 0;
    for (uint64_t i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    float scale = 1.0f / rt_sqrtf((float)(ss / (double)n) + eps);
    for (uint64_t i = 0; i < n; i++) acc[i] += (x[i] * scale) * w[i];
}

/* Evaluates n tokens at positions n_past.. (exactly as realm_session_eval does)
 * and adds each token's final-norm hidden state into acc (n_embd f32, zeroed by
 * the caller before the first call). Call it with the whole input, or chunk by
 * chunk (the host does, to interleave other sessions' work); truncate the
 * session to 0 first so the states describe the input alone.
 * Returns 1, or 0 with realm_last_error() set (bad id, full context, ...). */
EXPORT uint32_t realm_session_embed(Session *s, const int32_t *ids, uint32_t n, float *acc) {
    rt_err_clear();
    if (!s || !acc) {
        rt_err("realm_session_embed: null session or output", NULL);
        return 0;
    }
    const Model *m = s->m;
    uint64_t E = m->cfg.n_embd;
    const float *w = (const float *)m->output_norm.data;
    if (!w) {
        rt_err("realm_session_embed: the model has no output_norm", NULL);
        return 0;
    }
    if (n == 0) {
        rt_err("nothing to embed: zero tokens", NULL);
        return 0;
    }
    for (uint32_t i = 0; i < n; i += s->n_batch) {
        uint32_t T = RT_MIN(s->n_batch, n - i);
        if (!session_eval(s, ids + i, T, false)) return 0;
        /* one batch per session_eval call, so the workspace holds these T tokens' states */
        const float *x = batch_hidden(m);
        for (uint32_t t = 0; t < T; t++) add_normed(acc, x + (uint64_t)t * E, w, E, m->cfg.rms_eps);
    }
    return 1;
}
