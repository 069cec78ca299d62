/* lora.h: LoRA adapters in llama.cpp's GGUF format (general.type = adapter,
 * adapter.type = lora, adapter.lora.alpha, tensors "<weight>.lora_a" and
 * "<weight>.lora_b"), applied merge-free in the forward pass:
 *
 *   y = W x + sum over the session's adapters of scale * (alpha / rank) * B (A x)
 *
 * (alpha = 0: scale alone, as llama.cpp). A is stored ne0 = W's input width,
 * ne1 = rank; B ne0 = rank, ne1 = W's rows: both are ordinary weight matrices
 * for the matmul kernels (F32, F16, Q8_0; activations quantized per type as
 * llama.cpp does). An adapter belongs to one model, lives once in its
 * instance and is shared by every session that names it; the base weights are
 * never touched. */
#ifndef REALM_LORA_H
#define REALM_LORA_H
#include "model.h"

/* The weights an adapter may adapt: seven per layer, then the output head. */
enum { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_PER_LAYER };

typedef struct {
    Tensor a, b;    /* the file's bytes (F32, F16 or Q8_0); a.data == NULL: this weight is not adapted */
} LoraPair;

typedef struct Lora {
    Model *m;
    struct Lora *next;     /* in m->loras */
    GGUF gguf;             /* owns the whole file's bytes */
    float alpha;           /* adapter.lora.alpha (0: none) */
    LoraPair *pairs;       /* n_layer * LORA_PER_LAYER + 1 (the output head) */
    uint32_t n_pairs, max_rank;
    uint64_t max_in, max_out;
} Lora;

/* Parse and validate a whole adapter file (buf, len bytes, from rt_malloc)
 * against m. On success the adapter owns buf; on NULL rt_err names the
 * problem and buf is still the caller's. */
Lora *lora_load(Model *m, uint8_t *buf, uint64_t len);
/* Detaches it from every session of its model, then frees it (NULL: no-op). */
void lora_free(Lora *a);
/* Every adapter of m (model_free). */
void lora_free_all(Model *m);
bool model_has_lora(const Model *m, const Lora *a);

/* adapters[0..n) with scales[0..n) for one session of m: at most SESSION_MAX_LORA,
 * each a live adapter of m, named once, with a finite scale (else false and rt_err). */
bool lora_check_adapters(const Model *m, Lora *const *adapters, const float *scales, uint32_t n);
/* s uses adapters[0..n) with scales[0..n) from its next eval (n = 0: none). */
bool session_set_lora(Session *s, Lora *const *adapters, const float *scales, uint32_t n);

/* Forward-pass hooks (batch.c). lora_reserve: scratch for a step of T rows
 * (before anything changes; false with rt_err when memory cannot grow).
 * lora_apply adds the adapters' term to y (T rows of N floats) for weight
 * slot (layer * LORA_PER_LAYER + which, or lora_output_slot) from the T rows
 * of x (K floats each) whose sessions are rs[0..T): rows of sessions with the
 * same adapters and scales run together, the others each with their own. */
bool lora_reserve(Model *m, uint32_t T);
void lora_apply(Model *m, Session *const *rs, uint32_t slot, const float *x, uint64_t K, float *y, uint64_t N, uint32_t T);
static inline uint32_t lora_output_slot(const Model *m) { return m->cfg.n_layer * LORA_PER_LAYER; }

#endif
