/* gguf.c: GGUF v2/v3 parser. Every read is bounds-checked against the bytes
 * given; running out of bytes means either "give me more" (the host passed a
 * prefix of the file) or "the file is truncated" (it passed the whole file). */
#include "gguf.h"
#include "quant.h"

typedef struct {
    const uint8_t *p, *end, *start;
    uint64_t file_size;
    bool short_read; /* ran past the bytes given */
} Reader;

static uint64_t pos(const Reader *r) { return (uint64_t)(r->p - r->start); }

static bool take(Reader *r, uint64_t n, const uint8_t **out) {
    if (r->short_read || (uint64_t)(r->end - r->p) < n) {
        r->short_read = true;
        return false;
    }
    *out = r->p;
    r->p += n;
    return true;
}

static bool rd_u32(Reader *r, uint32_t *v) {
    const uint8_t *b;
    if (!take(r, 4, &b)) return false;
    memcpy(v, b, 4);
    return true;
}
static bool rd_u64(Reader *r, uint64_t *v) {
    const uint8_t *b;
    if (!take(r, 8, &b)) return false;
    memcpy(v, b, 8);
    return true;
}
/* A GGUF string: u64 length then bytes. Lengths larger than the file are hostile. */
static bool rd_str(Reader *r, Str *s, const char *what) {
    uint64_t n;
    if (!rd_u64(r, &n)) return false;
    if (n > r->file_size) {
        rt_err_as(REALM_ERR_FORMAT, "corrupt GGUF: ", what, " has length ", NULL);
        rt_err_append_u64(n);
        rt_err_append(", larger than the file");
        return false;
    }
    const uint8_t *b;
    if (!take(r, n, &b)) return false;
    s->ptr = b;
    s->len = n;
    return true;
}

uint64_t gguf_scalar_size(uint32_t t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(uint32_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                  "string", "array", "u64", "i64", "f64"};
    return t < GGUF_TYPE_COUNT ? names[t] : "unknown";
}

/* Read one value of type t (not an array) and skip it, checking sizes. */
static bool skip_value(Reader *r, uint32_t t, const char *what) {
    if (t == GGUF_STRING) {
        Str s;
        return rd_str(r, &s, what);
    }
    uint64_t n = gguf_scalar_size(t);
    const uint8_t *b;
    return take(r, n, &b);
}

static bool bad_key(const Str *key, const char *msg, uint64_t v) {
    rt_err_as(REALM_ERR_FORMAT, "corrupt GGUF: metadata key '", NULL);
    rt_err_append_n((const char *)key->ptr, RT_MIN(key->len, 200));
    rt_err_append("' ");
    rt_err_append(msg);
    rt_err_append_u64(v);
    return false;
}

static bool parse_kv(Reader *r, GGUFKV *kv) {
    if (!rd_str(r, &kv->key, "a metadata key")) return false;
    if (!rd_u32(r, &kv->type)) return false;
    if (kv->type >= GGUF_TYPE_COUNT) return bad_key(&kv->key, "has unknown value type ", kv->type);
    const uint8_t *start = r->p;
    kv->arr_type = 0;
    kv->arr_len = 0;
    if (kv->type == GGUF_ARRAY) {
        if (!rd_u32(r, &kv->arr_type) || !rd_u64(r, &kv->arr_len)) return false;
        if (kv->arr_type >= GGUF_TYPE_COUNT || kv->arr_type == GGUF_ARRAY)
            return bad_key(&kv->key, "has an array of unsupported type ", kv->arr_type);
        start = r->p;
        uint64_t es = gguf_scalar_size(kv->arr_type);
        /* a string takes at least 8 bytes: bound the count by the file size */
        uint64_t min_es = es ? es : 8;
        if (kv->arr_len > r->file_size / min_es)
            return bad_key(&kv->key, "has an array too long for the file: ", kv->arr_len);
        if (es) {
            const uint8_t *b;
            if (!take(r, es * kv->arr_len, &b)) return false;
        } else {
            for (uint64_t i = 0; i < kv->arr_len; i++)
                if (!skip_value(r, kv->arr_type, "an array string")) return false;
        }
    } else if (!skip_value(r, kv->type, "a metadata string")) {
        return false;
    }
    kv->val = start;
    kv->val_len = (uint64_t)(r->p - start);
    return true;
}

static bool bad_tensor(const GGUFTensor *t, const char *msg) {
    rt_err_as(REALM_ERR_FORMAT, "corrupt GGUF: tensor '", NULL);
    rt_err_append_n((const char *)t->name.ptr, RT_MIN(t->name.len, 200));
    rt_err_append("' ");
    rt_err_append(msg);
    return false;
}

static bool parse_tensor(Reader *r, GGUFTensor *t) {
    if (!rd_str(r, &t->name, "a tensor name")) return false;
    if (!rd_u32(r, &t->n_dims)) return false;
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) {
        bad_tensor(t, "has ");
        rt_err_append_u64(t->n_dims);
        rt_err_append(" dimensions (1 to 4 allowed)");
        return false;
    }
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        if (!rd_u64(r, &t->ne[d])) return false;
    if (!rd_u32(r, &t->type) || !rd_u64(r, &t->offset)) return false;
    return true;
}

/* Sizes of a tensor, checked for overflow, block alignment and known type. */
static bool size_tensor(GGUFTensor *t, uint64_t file_size) {
    const QuantType *qt = quant_type(t->type);
    if (!qt || !qt->name) {
        bad_tensor(t, "has unknown ggml type id ");
        rt_err_append_u64(t->type);
        return false;
    }
    uint64_t n = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        if (t->ne[d] == 0 || t->ne[d] > (1ull << 40) || n > (1ull << 48) / t->ne[d]) {
            bad_tensor(t, "has an absurd shape (dimension ");
            rt_err_append_u64(d);
            rt_err_append(" = ");
            rt_err_append_u64(t->ne[d]);
            rt_err_append(")");
            return false;
        }
        n *= t->ne[d];
    }
    if (qt->block_size == 0 || t->ne[0] % qt->block_size) {
        bad_tensor(t, "has a row of ");
        rt_err_append_u64(t->ne[0]);
        rt_err_append(" elements, not a multiple of ");
        rt_err_append(qt->name);
        rt_err_append("'s block size");
        return false;
    }
    t->nbytes = quant_row_bytes(t->type, t->ne[0]) * (n / t->ne[0]);
    if (t->nbytes > file_size) {
        bad_tensor(t, "needs more bytes than the whole file has");
        return false;
    }
    return true;
}

GGUFStatus gguf_parse(GGUF *g, uint8_t *buf, uint64_t len, uint64_t file_size, uint64_t *need) {
    memset(g, 0, sizeof *g);
    *need = 0;
    if (len > file_size) file_size = len;
    Reader r = {buf, buf + len, buf, file_size, false};
    const uint8_t *magic;
    uint32_t version = 0;
    uint64_t n_tensors = 0, n_kv = 0;
    GGUFStatus st = GGUF_ERROR;
    rt_err_clear();
    if (!take(&r, 4, &magic)) goto short_read;
    if (memcmp(magic, "GGUF", 4) != 0) {
        rt_err_as(REALM_ERR_FORMAT, "not a GGUF file: bad magic (expected 'GGUF' in the first 4 bytes)", NULL);
        return GGUF_ERROR;
    }
    if (!rd_u32(&r, &version)) goto short_read;
    if (version != 2 && version != 3) {
        rt_err_as(REALM_ERR_FORMAT, "GGUF version ", NULL);
        rt_err_append_u64(version);
        rt_err_append(" is not supported (this core reads versions 2 and 3)");
        return GGUF_ERROR;
    }
    if (!rd_u64(&r, &n_tensors) || !rd_u64(&r, &n_kv)) goto short_read;
    /* each tensor info takes >= 8+4+8+4+8 bytes, each kv >= 8+4+1 */
    if (n_tensors > file_size / 32) {
        rt_err_as(REALM_ERR_FORMAT, "corrupt GGUF: tensor count ", NULL);
        rt_err_append_u64(n_tensors);
        rt_err_append(" is impossible for a file of ");
        rt_err_append_u64(file_size);
        rt_err_append(" bytes");
        return GGUF_ERROR;
    }
    if (n_kv > file_size / 13) {
        rt_err_as(REALM_ERR_FORMAT, "corrupt GGUF: metadata count ", NULL);
        rt_err_append_u64(n_kv);
        rt_err_append(" is impossible for a file of ");
        rt_err_append_u64(file_size);
        rt_err_append(" bytes");
        return GGUF_ERROR;
    }
    g->kv = rt_calloc(n_kv ? n_kv : 1, sizeof(GGUFKV));
    g->tensors = rt_calloc(n_tensors ? n_tensors : 1, sizeof(GGUFTensor));
    if (!g->kv || !g->tensors) {
        rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory reading the GGUF header", NULL);
        goto fail;
    }
    for (uint64_t i = 0; i < n_kv; i++)
        if (!parse_kv(&r, &g->kv[i])) {
            if (r.short_read) goto short_read;
            goto fail;
        }
    g->n_kv = n_kv;
    g->alignment = 32;
    uint64_t al;
    if (gguf_get_u64(g, "general.alignment", &al)) {
        if (al == 0 || (al & (al - 1)) || al > (1u << 20)) {
            rt_err_as(REALM_ERR_FORMAT, "corrupt GGUF: general.alignment ", NULL);
            rt_err_append_u64(al);
            rt_err_append(" is not a power of two up to 1 MiB");
            goto fail;
        }
        g->alignment = al;
    }
    for (uint64_t i = 0; i < n_tensors; i++)
        if (!parse_tensor(&r, &g->tensors[i])) {
            if (r.short_read) goto short_read;
            goto fail;
        }
    g->n_tensors = n_tensors;
    g->data_offset = RT_ALIGN_UP(pos(&r), g->alignment);
    if (g->data_offset > file_size && n_tensors) {
        rt_err_as(REALM_ERR_FORMAT, "truncated GGUF: the file ends before its tensor data starts", NULL);
        goto fail;
    }
    {
        uint64_t avail = file_size > g->data_offset ? file_size - g->data_offset : 0;
        for (uint64_t i = 0; i < n_tensors; i++) {
            GGUFTensor *t = &g->tensors[i];
            if (!size_tensor(t, file_size)) goto fail;
            if (t->offset % g->alignment) {
                bad_tensor(t, "has a data offset not aligned to ");
                rt_err_append_u64(g->alignment);
                goto fail;
            }
            if (t->offset > avail || t->nbytes > avail - t->offset) {
                bad_tensor(t, "lies past the end of the file (truncated GGUF?): it needs bytes up to ");
                rt_err_append_u64(g->data_offset + t->offset + t->nbytes);
                rt_err_append(", the file has ");
                rt_err_append_u64(file_size);
                goto fail;
            }
            if (t->offset + t->nbytes > g->data_size) g->data_size = t->offset + t->nbytes;
            for (uint64_t j = 0; j < i; j++)
                if (g->tensors[j].name.len == t->name.len &&
                    memcmp(g->tensors[j].name.ptr, t->name.ptr, t->name.len) == 0) {
                    bad_tensor(t, "appears twice in the tensor table");
                    goto fail;
                }
        }
    }
    g->hdr = buf;
    g->hdr_len = len;
    g->file_size = file_size;
    g->version = version;
    return GGUF_OK;

short_read:
    if (len < file_size) {
        /* a prefix was given: ask for twice as much (the header may be large) */
        uint64_t want = len * 2 < (1u << 20) ? (1u << 20) : len * 2;
        *need = want < file_size ? want : file_size;
        st = GGUF_NEED_MORE;
    } else {
        rt_err_as(REALM_ERR_FORMAT, "truncated GGUF: the file ends inside its header (", NULL);
        rt_err_append_u64(file_size);
        rt_err_append(" bytes)");
    }
fail:
    rt_free(g->kv);
    rt_free(g->tensors);
    memset(g, 0, sizeof *g);
    return st;
}

void gguf_free(GGUF *g) {
    rt_free(g->kv);
    rt_free(g->tensors);
    rt_free(g->hdr);
    memset(g, 0, sizeof *g);
}

const GGUFKV *gguf_find(const GGUF *g, const char *key) {
    size_t n = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len == n && memcmp(g->kv[i].key.ptr, key, n) == 0) return &g->kv[i];
    return NULL;
}

bool gguf_get_u64(const GGUF *g, const char *key, uint64_t *out) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) return false;
    const uint8_t *v = kv->val;
    switch (kv->type) {
    case GGUF_U8: case GGUF_BOOL: *out = v[0]; return true;
    case GGUF_I8: *out = (uint64_t)(int64_t)(int8_t)v[0]; return true;
    case GGUF_U16: { uint16_t x; memcpy(&x, v, 2); *out = x; return true; }
    case GGUF_I16: { int16_t x; memcpy(&x, v, 2); *out = (uint64_t)(int64_t)x; return true; }
    case GGUF_U32: { uint32_t x; memcpy(&x, v, 4); *out = x; return true; }
    case GGUF_I32: { int32_t x; memcpy(&x, v, 4); *out = (uint64_t)(int64_t)x; return true; }
    case GGUF_U64: case GGUF_I64: memcpy(out, v, 8); return true;
    default: return false;
    }
}

bool gguf_get_f32(const GGUF *g, const char *key, float *out) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) return false;
    if (kv->type == GGUF_F32) { memcpy(out, kv->val, 4); return true; }
    if (kv->type == GGUF_F64) { double d; memcpy(&d, kv->val, 8); *out = (float)d; return true; }
    uint64_t u;
    if (gguf_get_u64(g, key, &u)) { *out = (float)(int64_t)u; return true; }
    return false;
}

bool gguf_get_bool(const GGUF *g, const char *key, bool *out) {
    uint64_t u;
    if (!gguf_get_u64(g, key, &u)) return false;
    *out = u != 0;
    return true;
}

bool gguf_get_str(const GGUF *g, const char *key, Str *out) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv || kv->type != GGUF_STRING) return false;
    memcpy(&out->len, kv->val, 8);
    out->ptr = kv->val + 8;
    return true;
}

void gguf_arr_strs(const GGUFKV *kv, Str *out) {
    const uint8_t *p = kv->val;
    for (uint64_t i = 0; i < kv->arr_len; i++) {
        memcpy(&out[i].len, p, 8);
        out[i].ptr = p + 8;
        p += 8 + out[i].len;
    }
}

Str gguf_arr_str(const GGUFKV *kv, uint64_t i) {
    const uint8_t *p = kv->val;
    Str s = {0, 0};
    for (uint64_t j = 0; j <= i; j++) {
        memcpy(&s.len, p, 8);
        s.ptr = p + 8;
        p += 8 + s.len;
    }
    return s;
}

const GGUFTensor *gguf_tensor(const GGUF *g, const char *name) {
    size_t n = strlen(name);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name.len == n && memcmp(g->tensors[i].name.ptr, name, n) == 0)
            return &g->tensors[i];
    return NULL;
}
