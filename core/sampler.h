/* sampler.h: turning logits into the next token, as llama.cpp's common sampler
 * chain does: repetition/frequency/presence penalties -> top-k -> top-p ->
 * min-p -> temperature -> a seeded draw. temperature <= 0 is greedy (argmax). */
#ifndef REALM_SAMPLER_H
#define REALM_SAMPLER_H
#include "rt.h"

/* SamplerParams (the host's settings, little-endian) is defined in abi.h from abi.json. */

#define SAMPLER_MAX_LOGPROBS REALM_MAX_LOGPROBS   /* abi.json: OpenAI's top_logprobs limit */

typedef struct Sampler {
    SamplerParams p;
    uint64_t rng[2];
    /* log-probabilities recorded with each sample when lp_want >= 0 (sampler_want_logprobs):
     * [0] the sampled token, [1..lp_n] the lp_want most likely ones, most likely first; over
     * the distribution the sampler starts from (after penalties, temperature 1, nothing cut) */
    int32_t lp_want, lp_n;    /* lp_n: -1 until a sample is recorded */
    int32_t lp_ids[1 + SAMPLER_MAX_LOGPROBS];
    float lp_vals[1 + SAMPLER_MAX_LOGPROBS];
    /* scratch over the vocabulary */
    int32_t *idx;
    float *val;
    uint32_t cap;
} Sampler;

void sampler_init(Sampler *s);
void sampler_set(Sampler *s, const SamplerParams *p);
void sampler_free(Sampler *s);
/* Pick a token from logits[0..n_vocab); history are the tokens so far (for penalties).
 * -1 with rt_err if scratch cannot be allocated. logits are modified. */
int32_t sampler_sample(Sampler *s, float *logits, uint32_t n_vocab, const int32_t *history, uint32_t n_hist);
/* Record log-probabilities with each sample: n = -1 (off) or 0..SAMPLER_MAX_LOGPROBS top ones
 * besides the sampled token's. False if n is out of range. */
bool sampler_want_logprobs(Sampler *s, int32_t n);

#endif
