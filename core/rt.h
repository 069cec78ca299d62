/* rt.h: the freestanding runtime of realm.wasm (no libc exists for wasm64).
 *
 * Memory, strings, maths and error reporting that every other core file uses.
 * The same sources also compile natively (gcc/clang, with libc) for quick
 * experiments; only the allocator's page source differs. */
#ifndef REALM_RT_H
#define REALM_RT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "abi.h" /* the exports' prototypes, structs, error kinds (generated from abi.json) */

#define EXPORT REALM_EXPORT
#define IMPORT(name) __attribute__((import_module("env"), import_name(name)))

#define RT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define RT_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((uint64_t)(a) - 1))

/* ---- memory (clang lowers these to memory.copy / memory.fill with -mbulk-memory) ---- */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* ---- allocator: 64-byte aligned blocks; returns NULL when memory cannot grow ---- */
void *rt_malloc(uint64_t n);                    /* u64: a wasm32 build refuses sizes past its 4 GiB, never truncates them */
void *rt_calloc(uint64_t count, uint64_t size);       /* NULL on overflow too */
void *rt_realloc(void *p, uint64_t n);
void rt_free(void *p);
uint64_t rt_heap_bytes(void);                     /* bytes currently handed out */

/* ---- errors: one message and kind per instance, read by the host through
 * realm_last_error / realm_last_error_kind ---- */
/* rt_err builds a message from pieces: rt_err("tensor ", name, " has type ", tname, NULL),
 * of kind REALM_ERR_INVALID_ARGUMENT; rt_err_as names the kind. */
void rt_err(const char *first, ...);
void rt_err_as(uint32_t kind, const char *first, ...);
void rt_err_set_kind(uint32_t kind);   /* re-kind the current message */
uint32_t rt_err_kind(void);            /* REALM_ERR_NONE when there is no message */
void rt_err_append(const char *s);
void rt_err_append_n(const char *s, size_t n);
void rt_err_append_u64(uint64_t v);
void rt_err_append_i64(int64_t v);
const char *rt_err_message(void);
void rt_err_clear(void);

/* ---- maths (single instructions where wasm has them) ---- */
static inline float rt_sqrtf(float x) { return __builtin_sqrtf(x); }
static inline float rt_fabsf(float x) { return __builtin_fabsf(x); }
static inline float rt_floorf(float x) { return __builtin_floorf(x); }
static inline float rt_roundf(float x) { return __builtin_roundf(x); }
float rt_expf(float x);
float rt_logf(float x);
float rt_powf(float x, float y);
float rt_sinf(float x);
float rt_cosf(float x);
float rt_tanhf(float x);
double rt_exp(double x);
double rt_log(double x);
double rt_pow(double x, double y);
double rt_sin(double x);
double rt_cos(double x);
int rt_isfinite(float x);

/* ---- half precision ---- */
float rt_f16_to_f32(uint16_t h);
uint16_t rt_f32_to_f16(float f);
static inline float rt_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}

/* ---- strings ---- */
typedef struct {
    const uint8_t *ptr; /* not NUL-terminated */
    uint64_t len;
} Str;
bool rt_str_eq(const char *a, size_t alen, const char *b); /* counted a vs NUL-terminated b */

#endif
