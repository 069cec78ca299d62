/* sampler.c: penalties, top-k, top-p, min-p, temperature and a seeded draw. */
#include "sampler.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* xoroshiro128+: small, fast, and the same sequence on every host */
static uint64_t rng_next(uint64_t s[2]) {
    uint64_t s0 = s[0], s1 = s[1], r = s0 + s1;
    s1 ^= s0;
    s[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
    s[1] = (s1 << 37) | (s1 >> 27);
    return r;
}
static double rng_uniform(uint64_t s[2]) { return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

void sampler_init(Sampler *s) {
    memset(s, 0, sizeof *s);
    s->lp_want = s->lp_n = -1;
    SamplerParams p = {0};
    p.temperature = 0;
    p.top_p = 1;
    p.repeat_penalty = 1;
    p.repeat_last_n = 64;
    p.seed = 0;
    sampler_set(s, &p);
}

void sampler_set(Sampler *s, const SamplerParams *p) {
    s->p = *p;
    uint64_t x = p->seed;
    s->rng[0] = splitmix64(&x);
    s->rng[1] = splitmix64(&x);
}

void sampler_free(Sampler *s) {
    rt_free(s->idx);
    rt_free(s->val);
    s->idx = NULL;
    s->val = NULL;
    s->cap = 0;
}

static void apply_penalties(const SamplerParams *p, float *logits, uint32_t n_vocab, const int32_t *hist,
                            uint32_t n_hist, int32_t *count /* n_vocab scratch, zeroed */) {
    uint32_t last = p->repeat_last_n < 0 ? n_hist : RT_MIN((uint32_t)p->repeat_last_n, n_hist);
    const int32_t *h = hist + (n_hist - last);
    for (uint32_t i = 0; i < last; i++)
        if (h[i] >= 0 && (uint32_t)h[i] < n_vocab) count[h[i]]++;
    for (uint32_t i = 0; i < last; i++) {
        int32_t t = h[i];
        if (t < 0 || (uint32_t)t >= n_vocab || count[t] == 0) continue;
        float *l = &logits[t];
        if (p->repeat_penalty != 1.0f) *l = *l <= 0 ? *l * p->repeat_penalty : *l / p->repeat_penalty;
        *l -= (float)count[t] * p->frequency_penalty + p->presence_penalty;
        count[t] = 0; /* each distinct token once */
    }
}

/* Sort candidates by value, descending (insertion sort below 16, else quicksort). */
static void sort_desc(int32_t *idx, float *val, int64_t lo, int64_t hi) {
    while (hi - lo > 16) {
        float pivot = val[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi - 1;
        while (i <= j) {
            while (val[i] > pivot) i++;
            while (val[j] < pivot) j--;
            if (i <= j) {
                float tv = val[i]; val[i] = val[j]; val[j] = tv;
                int32_t ti = idx[i]; idx[i] = idx[j]; idx[j] = ti;
                i++, j--;
            }
        }
        if (j - lo < hi - i) { sort_desc(idx, val, lo, j + 1); lo = i; }
        else { sort_desc(idx, val, i, hi); hi = j + 1; }
    }
    for (int64_t i = lo + 1; i < hi; i++) {
        float v = val[i];
        int32_t x = idx[i];
        int64_t j = i - 1;
        while (j >= lo && (val[j] < v || (val[j] == v && idx[j] > x))) {
            val[j + 1] = val[j];
            idx[j + 1] = idx[j];
            j--;
        }
        val[j + 1] = v;
        idx[j + 1] = x;
    }
}

/* Keep the k largest in [0, k), in any order (quickselect). */
static void select_top(int32_t *idx, float *val, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = val[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (val[i] > pivot) i++;
            while (val[j] < pivot) j--;
            if (i <= j) {
                float tv = val[i]; val[i] = val[j]; val[j] = tv;
                int32_t ti = idx[i]; idx[i] = idx[j]; idx[j] = ti;
                i++, j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

bool sampler_want_logprobs(Sampler *s, int32_t n) {
    if (n < -1 || n > SAMPLER_MAX_LOGPROBS) {
        rt_err("top logprobs must be -1 (off) or 0..", NULL);
        rt_err_append_u64(SAMPLER_MAX_LOGPROBS);
        rt_err_append(", got ");
        rt_err_append_i64(n);
        return false;
    }
    s->lp_want = n;
    s->lp_n = -1;
    return true;
}

/* log(sum(exp(logits))) in double, and the k largest logits (first index wins a tie) into
 * ids/vals[0..k), largest first. */
static double log_sum_exp_top(const float *logits, uint32_t n_vocab, int32_t k, int32_t *ids, float *vals) {
    float mx = logits[0];
    for (uint32_t i = 1; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (uint32_t i = 0; i < n_vocab; i++) sum += rt_exp((double)logits[i] - mx);
    int32_t have = 0;
    for (uint32_t i = 0; i < n_vocab && k > 0; i++) {
        float v = logits[i];
        if (have == k && !(v > vals[k - 1])) continue;
        int32_t j = have < k ? have++ : k - 1;
        while (j > 0 && v > vals[j - 1]) { vals[j] = vals[j - 1]; ids[j] = ids[j - 1]; j--; }
        vals[j] = v, ids[j] = (int32_t)i;
    }
    return (double)mx + rt_log(sum);
}

static int32_t pick(Sampler *s, float *logits, uint32_t n_vocab);

int32_t sampler_sample(Sampler *s, float *logits, uint32_t n_vocab, const int32_t *history, uint32_t n_hist) {
    const SamplerParams *p = &s->p;
    if (s->cap < n_vocab) {
        rt_free(s->idx);
        rt_free(s->val);
        s->idx = rt_malloc((uint64_t)n_vocab * 4);
        s->val = rt_malloc((uint64_t)n_vocab * 4);
        if (!s->idx || !s->val) {
            s->cap = 0;
            rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory in the sampler", NULL);
            return -1;
        }
        s->cap = n_vocab;
    }
    bool penalise = p->repeat_penalty != 1.0f || p->frequency_penalty != 0 || p->presence_penalty != 0;
    if (penalise && p->repeat_last_n != 0 && n_hist) {
        memset(s->idx, 0, (uint64_t)n_vocab * 4);
        apply_penalties(p, logits, n_vocab, history, n_hist, s->idx);
    }
    double lse = 0;
    if (s->lp_want >= 0) {
        lse = log_sum_exp_top(logits, n_vocab, s->lp_want, s->lp_ids + 1, s->lp_vals + 1);
        for (int32_t i = 1; i <= s->lp_want; i++) s->lp_vals[i] = (float)((double)s->lp_vals[i] - lse);
    }
    int32_t tok = pick(s, logits, n_vocab);
    if (s->lp_want >= 0) {
        s->lp_ids[0] = tok;
        s->lp_vals[0] = (float)((double)logits[tok] - lse);
        s->lp_n = RT_MIN(s->lp_want, (int32_t)n_vocab);
    }
    return tok;
}

/* The draw itself, from penalised logits: greedy, or top-k -> top-p -> min-p -> temperature. */
static int32_t pick(Sampler *s, float *logits, uint32_t n_vocab) {
    const SamplerParams *p = &s->p;
    if (p->temperature <= 0) { /* greedy: the first maximum, like std::max_element */
        uint32_t best = 0;
        for (uint32_t i = 1; i < n_vocab; i++)
            if (logits[i] > logits[best]) best = i;
        return (int32_t)best;
    }
    int32_t *idx = s->idx;
    float *val = s->val;
    int64_t n = n_vocab;
    for (uint32_t i = 0; i < n_vocab; i++) idx[i] = (int32_t)i, val[i] = logits[i];
    if (p->top_k > 0 && p->top_k < n) {
        select_top(idx, val, n, p->top_k);
        n = p->top_k;
    }
    sort_desc(idx, val, 0, n);
    while (n > 1 && val[n - 1] == -__builtin_inff()) n--; /* tokens a grammar masked never win the draw */
    /* probabilities at temperature 1 for top-p and min-p, as llama.cpp orders them */
    double sum = 0;
    float mx = val[0];
    for (int64_t i = 0; i < n; i++) sum += rt_exp((double)val[i] - mx);
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int64_t i = 0; i < n; i++) {
            cum += rt_exp((double)val[i] - mx) / sum;
            if (cum >= p->top_p) { n = i + 1; break; }
        }
    }
    if (p->min_p > 0) { /* keep tokens with prob >= min_p * max prob */
        double cut = (double)mx + rt_log(p->min_p);
        int64_t keep = 1;
        while (keep < n && val[keep] >= cut) keep++;
        n = keep;
    }
    /* temperature, then draw */
    double t = p->temperature, total = 0;
    for (int64_t i = 0; i < n; i++) total += rt_exp(((double)val[i] - mx) / t);
    double u = rng_uniform(s->rng) * total, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += rt_exp(((double)val[i] - mx) / t);
        if (u < acc) return idx[i];
    }
    return idx[n - 1];
}
