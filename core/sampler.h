/* sampler.h: turning logits into the next token, as llama.cpp's common sampler
 * chain does: repetition/frequency/presence penalties -> top-k -> top-p ->
 * min-p -> temperature -> a seeded draw. temperature <= 0 is greedy (argmax). */
#ifndef REALM_SAMPLER_H
#define REALM_SAMPLER_H
#include "rt.h"

/* SamplerParams (the host's settings, little-endian) is defined in abi.h from abi.json. */

typedef struct Sampler {
    SamplerParams p;
    uint64_t rng[2];
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

#endif
