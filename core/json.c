/* json.c: the JSON reader of json.h (recursive descent, one arena per document). */
#include "json.h"

typedef struct Block { struct Block *next; uint64_t used, cap; } Block;
struct JsonDoc { Block *head; };

typedef struct {
    const uint8_t *p, *start, *end;
    JsonDoc *doc;
    uint32_t depth, max_depth;
    bool failed;
} JP;

static void *arena(JsonDoc *d, uint64_t n) {
    n = RT_ALIGN_UP(n, 8);
    Block *b = d->head;
    if (!b || b->used + n > b->cap) {
        uint64_t cap = RT_MAX(n, (uint64_t)64 << 10);
        b = rt_malloc(sizeof(Block) + cap);
        if (!b) return NULL;
        b->next = d->head, b->used = 0, b->cap = cap;
        d->head = b;
    }
    void *r = (uint8_t *)(b + 1) + b->used;
    b->used += n;
    return r;
}

void json_free(JsonDoc *d) {
    if (!d) return;
    for (Block *b = d->head, *n; b; b = n) n = b->next, rt_free(b);
    rt_free(d);
}

static void fail(JP *P, const char *what) {
    if (P->failed) return;
    P->failed = true;
    rt_err("invalid JSON at byte ", NULL), rt_err_append_u64((uint64_t)(P->p - P->start));
    rt_err_append(": "), rt_err_append(what);
}

static void ws(JP *P) {
    while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r')) P->p++;
}

static int hex4(const uint8_t *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0) return -1;
        v = v << 4 | h;
    }
    return v;
}

static uint32_t put_utf8(uint8_t *o, uint32_t c) {
    if (c < 0x80) { o[0] = (uint8_t)c; return 1; }
    if (c < 0x800) { o[0] = (uint8_t)(0xC0 | c >> 6); o[1] = (uint8_t)(0x80 | (c & 63)); return 2; }
    if (c < 0x10000) { o[0] = (uint8_t)(0xE0 | c >> 12); o[1] = (uint8_t)(0x80 | (c >> 6 & 63)); o[2] = (uint8_t)(0x80 | (c & 63)); return 3; }
    o[0] = (uint8_t)(0xF0 | c >> 18); o[1] = (uint8_t)(0x80 | (c >> 12 & 63));
    o[2] = (uint8_t)(0x80 | (c >> 6 & 63)); o[3] = (uint8_t)(0x80 | (c & 63));
    return 4;
}

/* A string at P->p (the opening quote); decoded output is never longer than its source. */
static bool string(JP *P, JsonVal *v) {
    const uint8_t *q = ++P->p;
    while (q < P->end && *q != '"') q += *q == '\\' ? 2 : 1;
    if (q >= P->end) { fail(P, "unterminated string"); return false; }
    uint8_t *o = arena(P->doc, (uint64_t)(q - P->p) + 1);
    if (!o) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); P->failed = true; return false; }
    uint64_t n = 0;
    while (*P->p != '"') {
        uint8_t c = *P->p;
        if (c < 0x20) { fail(P, "control character in a string"); return false; }
        if (c != '\\') { o[n++] = c; P->p++; continue; }
        uint8_t e = P->p[1];
        P->p += 2;
        switch (e) {
        case '"': case '\\': case '/': o[n++] = e; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'u': {
            int c1 = P->p + 4 <= P->end ? hex4(P->p) : -1;
            if (c1 < 0) { fail(P, "expecting 4 hex digits after \\u"); return false; }
            P->p += 4;
            uint32_t cp = (uint32_t)c1;
            if (cp >= 0xD800 && cp < 0xDC00 && P->p + 6 <= P->end && P->p[0] == '\\' && P->p[1] == 'u') {
                int c2 = hex4(P->p + 2);
                if (c2 >= 0xDC00 && c2 < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)c2 - 0xDC00), P->p += 6;
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;   /* a lone surrogate */
            n += put_utf8(o + n, cp);   /* at most 4 bytes for 6+ source bytes */
            break;
        }
        default: P->p -= 2; fail(P, "unknown escape in a string"); return false;
        }
    }
    P->p++;
    o[n] = 0;
    v->type = JSON_STR, v->s = o, v->slen = n;
    return true;
}

static bool number(JP *P, JsonVal *v) {
    const uint8_t *s = P->p;
    bool neg = false;
    if (*P->p == '-') neg = true, P->p++;
    if (P->p >= P->end || *P->p < '0' || *P->p > '9') { fail(P, "expecting a digit"); return false; }
    double x = 0;
    if (*P->p == '0') P->p++;
    else while (P->p < P->end && *P->p >= '0' && *P->p <= '9') x = x * 10 + (*P->p++ - '0');
    if (P->p < P->end && *P->p == '.') {
        P->p++;
        if (P->p >= P->end || *P->p < '0' || *P->p > '9') { fail(P, "expecting a digit after '.'"); return false; }
        double f = 0.1;
        while (P->p < P->end && *P->p >= '0' && *P->p <= '9') x += f * (*P->p++ - '0'), f *= 0.1;
    }
    if (P->p < P->end && (*P->p == 'e' || *P->p == 'E')) {
        P->p++;
        bool eneg = false;
        if (P->p < P->end && (*P->p == '+' || *P->p == '-')) eneg = *P->p++ == '-';
        if (P->p >= P->end || *P->p < '0' || *P->p > '9') { fail(P, "expecting an exponent"); return false; }
        int e = 0;
        while (P->p < P->end && *P->p >= '0' && *P->p <= '9') { if (e < 10000) e = e * 10 + (*P->p - '0'); P->p++; }
        x *= rt_pow(10.0, eneg ? -e : e);
    }
    v->type = JSON_NUM, v->num = neg ? -x : x, v->s = s, v->slen = (uint64_t)(P->p - s);
    return true;
}

static bool literal(JP *P, const char *word, uint32_t type, JsonVal *v) {
    uint64_t n = strlen(word);
    if ((uint64_t)(P->end - P->p) < n || memcmp(P->p, word, n)) { fail(P, "unexpected character"); return false; }
    P->p += n;
    v->type = type;
    return true;
}

static bool value(JP *P, JsonVal *v);

/* The items (or key/value pairs) of an array or object, gathered then copied into the arena. */
static bool container(JP *P, JsonVal *v, bool obj) {
    if (++P->depth > P->max_depth) { fail(P, "nested too deeply"); return false; }
    uint8_t close = obj ? '}' : ']';
    P->p++;
    JsonVal *tmp = NULL;
    uint32_t n = 0, cap = 0;
    bool ok = false;
    ws(P);
    if (P->p < P->end && *P->p == close) { P->p++; ok = true; goto done; }
    for (;;) {
        if (n + 2 > cap) {
            cap = cap ? cap * 2 : 16;
            JsonVal *t = rt_realloc(tmp, (uint64_t)cap * sizeof(JsonVal));
            if (!t) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); P->failed = true; goto done; }
            tmp = t;
        }
        ws(P);
        if (obj) {
            if (P->p >= P->end || *P->p != '"') { fail(P, "expecting a string key"); goto done; }
            if (!string(P, &tmp[n++])) goto done;
            ws(P);
            if (P->p >= P->end || *P->p != ':') { fail(P, "expecting ':'"); goto done; }
            P->p++;
        }
        if (!value(P, &tmp[n++])) goto done;
        ws(P);
        if (P->p < P->end && *P->p == ',') { P->p++; continue; }
        if (P->p < P->end && *P->p == close) { P->p++; ok = true; break; }
        fail(P, obj ? "expecting ',' or '}'" : "expecting ',' or ']'");
        goto done;
    }
done:
    if (ok) {
        v->type = obj ? JSON_OBJ : JSON_ARR;
        v->n = obj ? n / 2 : n;
        v->items = n ? arena(P->doc, (uint64_t)n * sizeof(JsonVal)) : NULL;
        if (n && !v->items) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); ok = false; P->failed = true; }
        else if (n) memcpy(v->items, tmp, (uint64_t)n * sizeof(JsonVal));
    }
    rt_free(tmp);
    P->depth--;
    return ok;
}

static bool value(JP *P, JsonVal *v) {
    memset(v, 0, sizeof *v);
    ws(P);
    if (P->p >= P->end) { fail(P, "unexpected end of input"); return false; }
    switch (*P->p) {
    case '{': return container(P, v, true);
    case '[': return container(P, v, false);
    case '"': return string(P, v);
    case 't': return literal(P, "true", JSON_TRUE, v);
    case 'f': return literal(P, "false", JSON_FALSE, v);
    case 'n': return literal(P, "null", JSON_NULL, v);
    default: return number(P, v);
    }
}

JsonVal *json_parse(const uint8_t *text, uint64_t len, uint32_t max_depth, JsonDoc **doc) {
    *doc = NULL;
    JsonDoc *d = rt_calloc(1, sizeof *d);
    if (!d) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); return NULL; }
    JP P = { text, text, text + len, d, 0, max_depth, false };
    JsonVal *v = arena(d, sizeof *v);
    if (!v) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); json_free(d); return NULL; }
    if (value(&P, v)) {
        ws(&P);
        if (P.p == P.end) { *doc = d; return v; }
        fail(&P, "text after the value");
    }
    json_free(d);
    return NULL;
}

const JsonVal *json_get(const JsonVal *v, const char *key) {
    if (!v || v->type != JSON_OBJ) return NULL;
    for (uint32_t i = 0; i < v->n; i++)
        if (json_str_is(&v->items[2 * i], key)) return &v->items[2 * i + 1];
    return NULL;
}

bool json_str_is(const JsonVal *v, const char *s) {
    return v && v->type == JSON_STR && rt_str_eq((const char *)v->s, v->slen, s);
}
