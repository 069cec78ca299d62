/* sampler.h: turning logits into the next token, as llama.cpp's common sampler
 * chain does: repetition/frequency/presence penalties -> top-k -> top-p ->
 * min-p -> temperature -> a seeded draw. temperature <= 0 is greedy (argmax). */
#ifndef REALM_SAMPLER_H
#define REALM_SAMPLER_H
#include "rt.h"

/* The host writes this struct (little-endian, this exact layout) into wasm
 * memory and passes its address to realm_session_set_sampler. */
typedef struct {
    float temperature;      /* <= 0: greedy */
    float top_p;            /* 1: off */
    float min_p;            /* 0: off */
    float repeat_penalty;   /* 1: off */
    float frequency_penalty;/* 0: off */
    float presence_penalty; /* 0: off */
    int32_t top_k;          /* <= 0: off */
    int32_t repeat_last_n;  /* tokens of history the penalties look at; -1: whole context */
    uint64_t seed;
} SamplerParams;

typedef struct {
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
