/* api_lora.c: LoRA adapter exports (lora.h; docs/ARCHITECTURE.md, "LoRA adapters"). */
#include "api.h"
#include "lora.h"

/* buf (from realm_alloc) holds a whole adapter file of len bytes; validated
 * against m. On success the adapter owns buf; on 0 buf is still the caller's. */
EXPORT Lora *realm_lora_load(Model *m, uint8_t *buf, uint64_t len) {
    NEED_MODEL(m, 0);
    if (!buf || !len) { rt_err_as(REALM_ERR_FORMAT, "LoRA adapter: empty file", NULL); return 0; }
    return lora_load(m, buf, len);
}

EXPORT void realm_lora_free(Lora *a) { lora_free(a); }

EXPORT uint32_t realm_lora_info(Lora *a, uint32_t *out) {
    API_NEED(a, "LoRA adapter", 0);
    if (!out) { rt_err("realm_lora_info: null output", NULL); return 0; }
    union { float f; uint32_t u; } alpha = { .f = a->alpha };
    out[0] = a->n_pairs, out[1] = a->max_rank, out[2] = alpha.u;
    return 1;
}

EXPORT uint32_t realm_session_set_lora(Session *s, Lora *const *adapters, const float *scales, uint32_t n) {
    NEED_SESSION(s, 0);
    rt_err_clear();
    if (!s->m) { rt_err("realm_session_set_lora: the session's model was freed", NULL); return 0; }
    return session_set_lora(s, adapters, scales, n);
}
