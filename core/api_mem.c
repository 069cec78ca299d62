/* api_mem.c: exports for memory and errors, used by every host. */
#include "api.h"

EXPORT void *realm_alloc(uint64_t n) {
    void *p = rt_malloc(n);
    if (!p) rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory: could not allocate ", NULL), rt_err_append_u64(n), rt_err_append(" bytes");
    return p;
}
EXPORT void realm_free(void *p) { rt_free(p); }
EXPORT const char *realm_last_error(void) { return rt_err_message(); }
EXPORT uint32_t realm_last_error_kind(void) { return rt_err_kind(); }
EXPORT uint64_t realm_heap_bytes(void) { return rt_heap_bytes(); }
EXPORT uint32_t realm_abi_version(void) { return REALM_ABI_VERSION; }
