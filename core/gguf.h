/* gguf.h: GGUF v2/v3 parsing (metadata and tensor table), with every size
 * checked against the file's size, so a truncated or hostile file gives an
 * error message and never a trap. Spec: ggml/docs/gguf.md. */
#ifndef REALM_GGUF_H
#define REALM_GGUF_H
#include "rt.h"

enum {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5,
    GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10,
    GGUF_I64 = 11, GGUF_F64 = 12, GGUF_TYPE_COUNT = 13
};

#define GGUF_MAX_DIMS 4

typedef struct {
    Str key;
    uint32_t type;      /* GGUF_* */
    uint32_t arr_type;  /* element type when type == GGUF_ARRAY */
    uint64_t arr_len;   /* element count when type == GGUF_ARRAY */
    const uint8_t *val; /* raw little-endian value bytes inside the header copy */
    uint64_t val_len;   /* bytes of the raw value */
} GGUFKV;

typedef struct {
    Str name;
    uint32_t type;            /* ggml type id */
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* elements per dimension, ne[0] innermost; unused dims are 1 */
    uint64_t offset;          /* from the start of the tensor data section */
    uint64_t nbytes;
} GGUFTensor;

typedef struct {
    uint8_t *hdr;        /* the header bytes (owned) */
    uint64_t hdr_len;
    uint64_t file_size;
    uint32_t version;
    uint64_t n_kv;
    GGUFKV *kv;
    uint64_t n_tensors;
    GGUFTensor *tensors;
    uint64_t alignment;
    uint64_t data_offset; /* file offset of the tensor data section */
    uint64_t data_size;   /* bytes of tensor data the tensors reach (<= file_size - data_offset) */
} GGUF;

typedef enum { GGUF_OK = 0, GGUF_NEED_MORE = 1, GGUF_ERROR = 2 } GGUFStatus;

/* Parse the first `len` bytes of a file of `file_size` bytes. On GGUF_OK, g
 * owns `buf` (freed by gguf_free). On GGUF_NEED_MORE, *need is how many bytes
 * from the start of the file it needs; buf is untouched and still the caller's.
 * On GGUF_ERROR rt_err holds the reason; buf is the caller's. */
GGUFStatus gguf_parse(GGUF *g, uint8_t *buf, uint64_t len, uint64_t file_size, uint64_t *need);
void gguf_free(GGUF *g);

const GGUFKV *gguf_find(const GGUF *g, const char *key);
/* Typed getters: false if absent or not convertible (integers of any width convert). */
bool gguf_get_u64(const GGUF *g, const char *key, uint64_t *out);
bool gguf_get_f32(const GGUF *g, const char *key, float *out);
bool gguf_get_bool(const GGUF *g, const char *key, bool *out);
bool gguf_get_str(const GGUF *g, const char *key, Str *out);
/* Array element readers; i < kv->arr_len is the caller's to check. */
Str gguf_arr_str(const GGUFKV *kv, uint64_t i); /* linear scan; use gguf_arr_strs for all */
/* Fill out[0..arr_len) with the strings of a string array. */
void gguf_arr_strs(const GGUFKV *kv, Str *out);
const GGUFTensor *gguf_tensor(const GGUF *g, const char *name);

const char *gguf_type_name(uint32_t t);
uint64_t gguf_scalar_size(uint32_t t); /* 0 for STRING/ARRAY */

#endif
