/* json_schema.c: JSON Schema -> GBNF (json_schema.h). Every schema node becomes one rule
 * (prefix "s<n>", the top one "root"); shared primitives (string, number, space, ...) are
 * emitted once at the end, only those used. Rule bodies follow llama.cpp's
 * json-schema-to-grammar.cpp so the two accept the same JSON texts. */
#include "json_schema.h"
#include "json.h"

typedef struct { char *p; uint64_t n, cap; } Buf;

/* Primitive rules: bodies name other primitives as @name (@ becomes the prefix). */
enum { P_SPACE, P_BOOLEAN, P_NULL, P_DECIMAL, P_INTEGRAL, P_NUMBER, P_INTEGER, P_CHAR, P_STRING, P_VALUE,
       P_OBJECT, P_ARRAY, P_UUID, P_DATE, P_TIME, P_DATETIME, P_DATE_S, P_TIME_S, P_DATETIME_S, P_COUNT };
static const struct { const char *name, *body; uint32_t deps; } PRIM[P_COUNT] = {
    [P_SPACE] = {"space", "| \" \" | \"\\n\"{1,2} [ \\t]{0,20}", 0},
    [P_BOOLEAN] = {"boolean", "(\"true\" | \"false\") @space", 1u << P_SPACE},
    [P_NULL] = {"null", "\"null\" @space", 1u << P_SPACE},
    [P_DECIMAL] = {"decimal-part", "[0-9]{1,16}", 0},
    [P_INTEGRAL] = {"integral-part", "[0] | [1-9] [0-9]{0,15}", 0},
    [P_NUMBER] = {"number", "(\"-\"? @integral-part) (\".\" @decimal-part)? ([eE] [-+]? @integral-part)? @space",
                  1u << P_INTEGRAL | 1u << P_DECIMAL | 1u << P_SPACE},
    [P_INTEGER] = {"integer", "(\"-\"? @integral-part) @space", 1u << P_INTEGRAL | 1u << P_SPACE},
    [P_CHAR] = {"char", "[^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4})", 0},
    [P_STRING] = {"string", "\"\\\"\" @char* \"\\\"\" @space", 1u << P_CHAR | 1u << P_SPACE},
    [P_VALUE] = {"value", "@object | @array | @string | @number | @boolean | @null",
                 1u << P_OBJECT | 1u << P_ARRAY | 1u << P_STRING | 1u << P_NUMBER | 1u << P_BOOLEAN | 1u << P_NULL},
    [P_OBJECT] = {"object", "\"{\" @space ( @string \":\" @space @value (\",\" @space @string \":\" @space @value)* )? \"}\" @space",
                  1u << P_SPACE | 1u << P_STRING | 1u << P_VALUE},
    [P_ARRAY] = {"array", "\"[\" @space ( @value (\",\" @space @value)* )? \"]\" @space", 1u << P_SPACE | 1u << P_VALUE},
    [P_UUID] = {"uuid", "\"\\\"\" [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" "
                        "[0-9a-fA-F]{12} \"\\\"\" @space", 1u << P_SPACE},
    [P_DATE] = {"date", "[0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [1-2] [0-9] | \"3\" [0-1] )", 0},
    [P_TIME] = {"time", "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{3} )? "
                        "( \"Z\" | ( \"+\" | \"-\" ) ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )", 0},
    [P_DATETIME] = {"date-time", "@date \"T\" @time", 1u << P_DATE | 1u << P_TIME},
    [P_DATE_S] = {"date-string", "\"\\\"\" @date \"\\\"\" @space", 1u << P_DATE | 1u << P_SPACE},
    [P_TIME_S] = {"time-string", "\"\\\"\" @time \"\\\"\" @space", 1u << P_TIME | 1u << P_SPACE},
    [P_DATETIME_S] = {"date-time-string", "\"\\\"\" @date-time \"\\\"\" @space", 1u << P_DATETIME | 1u << P_SPACE},
};

typedef struct { const JsonVal *target; uint32_t rule; } Ref;
typedef struct { const uint8_t *s; uint64_t n; int64_t index; } Seg;   /* index >= 0: an array index */

typedef struct {
    Buf out;
    const char *prefix;
    const JsonVal *root;
    uint32_t n_rules, prims;
    Ref refs[4096];
    uint32_t n_refs;
    Seg path[JSCHEMA_MAX_DEPTH + 8];
    uint32_t depth;
    uint64_t total;       /* bytes of all buffers, against JSCHEMA_MAX_GRAMMAR */
    bool failed;
} Conv;

/* ------------------------------------------------------------------ errors and buffers */

static void cerr(Conv *C, const char *a, const char *b, const char *c) {
    if (C->failed) return;
    C->failed = true;
    rt_err("JSON schema at ", NULL);
    if (!C->depth) rt_err_append("/");
    for (uint32_t i = 0; i < C->depth; i++) {
        rt_err_append("/");
        if (C->path[i].index >= 0) rt_err_append_u64((uint64_t)C->path[i].index);
        else rt_err_append_n((const char *)C->path[i].s, C->path[i].n);
    }
    rt_err_append(": "), rt_err_append(a);
    if (b) rt_err_append(b);
    if (c) rt_err_append(c);
}

static void put(Conv *C, Buf *b, const char *s, uint64_t n) {
    if (C->failed) return;
    if ((C->total += n) > JSCHEMA_MAX_GRAMMAR) {
        cerr(C, "the grammar for this schema would be larger than 1 MiB (the limit)", NULL, NULL);
        return;
    }
    if (b->n + n + 1 > b->cap) {
        uint64_t cap = RT_MAX(b->cap * 2, b->n + n + 256);
        char *p = rt_realloc(b->p, cap);
        if (!p) { C->failed = true; rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); return; }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(Conv *C, Buf *b, const char *s) { put(C, b, s, strlen(s)); }
static void put_u64(Conv *C, Buf *b, uint64_t v) {
    char t[24];
    int i = 24;
    do t[--i] = (char)('0' + v % 10), v /= 10; while (v);
    put(C, b, t + i, (uint64_t)(24 - i));
}
static void put_hex(Conv *C, Buf *b, char esc, uint32_t v, int digits) {
    char t[12] = {'\\', esc};
    for (int i = 0; i < digits; i++) t[2 + i] = "0123456789ABCDEF"[(v >> (4 * (digits - 1 - i))) & 15];
    put(C, b, t, (uint64_t)(2 + digits));
}

static void name(Conv *C, Buf *b, uint32_t rule) {
    puts_(C, b, C->prefix);
    if (!rule) { puts_(C, b, "root"); return; }
    puts_(C, b, "s"), put_u64(C, b, rule);
}
static void prim(Conv *C, Buf *b, uint32_t p) {
    C->prims |= 1u << p;
    puts_(C, b, C->prefix), puts_(C, b, PRIM[p].name);
}
static void rule_done(Conv *C, uint32_t id, Buf *body) {
    name(C, &C->out, id);
    puts_(C, &C->out, " ::= ");
    if (body->p) put(C, &C->out, body->p, body->n);
    puts_(C, &C->out, "\n");
    C->total -= body->n;     /* moved, not copied twice */
    rt_free(body->p);
    body->p = NULL, body->n = body->cap = 0;
}

/* GBNF literal for bytes (valid UTF-8: code points above ASCII stay as they are). */
static void lit(Conv *C, Buf *b, const uint8_t *s, uint64_t n) {
    puts_(C, b, "\"");
    for (uint64_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; put(C, b, e, 2); }
        else if (c < 0x20 || c == 0x7F) put_hex(C, b, 'x', c, 2);
        else put(C, b, (const char *)&c, 1);
    }
    puts_(C, b, "\"");
}

/* ------------------------------------------------------------------ JSON text of values */

/* The JSON text of a string (quoted, escaped as JSON) into b, as raw bytes. */
static void json_string_text(Conv *C, Buf *b, const uint8_t *s, uint64_t n) {
    puts_(C, b, "\"");
    for (uint64_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"') puts_(C, b, "\\\"");
        else if (c == '\\') puts_(C, b, "\\\\");
        else if (c == '\n') puts_(C, b, "\\n");
        else if (c == '\r') puts_(C, b, "\\r");
        else if (c == '\t') puts_(C, b, "\\t");
        else if (c == '\b') puts_(C, b, "\\b");
        else if (c == '\f') puts_(C, b, "\\f");
        else if (c < 0x20) {
            char t[6] = {'\\', 'u', '0', '0', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]};
            put(C, b, t, 6);
        } else put(C, b, (const char *)&c, 1);
    }
    puts_(C, b, "\"");
}

/* Compact JSON text of a value (const, enum) into b. */
static void json_text(Conv *C, Buf *b, const JsonVal *v, uint32_t depth) {
    if (depth > JSCHEMA_MAX_DEPTH) { cerr(C, "a const or enum value is nested too deeply", NULL, NULL); return; }
    switch (v->type) {
    case JSON_NULL: puts_(C, b, "null"); break;
    case JSON_TRUE: puts_(C, b, "true"); break;
    case JSON_FALSE: puts_(C, b, "false"); break;
    case JSON_NUM: put(C, b, (const char *)v->s, v->slen); break;
    case JSON_STR: json_string_text(C, b, v->s, v->slen); break;
    case JSON_ARR:
        puts_(C, b, "[");
        for (uint32_t i = 0; i < v->n; i++) { if (i) puts_(C, b, ","); json_text(C, b, &v->items[i], depth + 1); }
        puts_(C, b, "]");
        break;
    default:
        puts_(C, b, "{");
        for (uint32_t i = 0; i < v->n; i++) {
            if (i) puts_(C, b, ",");
            json_text(C, b, &v->items[2 * i], depth + 1), puts_(C, b, ":"), json_text(C, b, &v->items[2 * i + 1], depth + 1);
        }
        puts_(C, b, "}");
    }
}

/* A JSON value as a grammar literal followed by space. */
static void value_lit(Conv *C, Buf *b, const JsonVal *v) {
    Buf t = {0};
    json_text(C, &t, v, 0);
    if (t.p) lit(C, b, (const uint8_t *)t.p, t.n);
    C->total -= t.n;
    rt_free(t.p);
    puts_(C, b, " "), prim(C, b, P_SPACE);
}

/* ------------------------------------------------------------------ integers */

/* Numbers of exactly d digits from a to b (digit strings of length d, a <= b). */
static void digits_range(Conv *C, Buf *o, const char *a, const char *b, int d) {
    if (C->failed) return;
    if (d == 0) return;
    if (a[0] == b[0]) {
        char c[2] = {a[0], 0};
        lit(C, o, (const uint8_t *)c, 1);
        if (d > 1) puts_(C, o, " "), digits_range(C, o, a + 1, b + 1, d - 1);
        return;
    }
    bool a_low = true, b_high = true;   /* a's tail all 0s / b's tail all 9s */
    for (int i = 1; i < d; i++) a_low &= a[i] == '0', b_high &= b[i] == '9';
    char nines[20], zeros[20];
    for (int i = 0; i < d; i++) nines[i] = '9', zeros[i] = '0';
    puts_(C, o, "(");
    char lo = a_low ? a[0] : (char)(a[0] + 1), hi = b_high ? b[0] : (char)(b[0] - 1);
    bool first = true;
    if (!a_low) {
        char c[2] = {a[0], 0};
        lit(C, o, (const uint8_t *)c, 1), puts_(C, o, " "), digits_range(C, o, a + 1, nines, d - 1);
        first = false;
    }
    if (lo <= hi) {
        if (!first) puts_(C, o, " | ");
        char cls[8] = {'[', lo, '-', hi, ']', 0};
        puts_(C, o, cls);
        if (d > 1) puts_(C, o, " [0-9]{"), put_u64(C, o, (uint64_t)(d - 1)), puts_(C, o, "}");
        first = false;
    }
    if (!b_high) {
        if (!first) puts_(C, o, " | ");
        char c[2] = {b[0], 0};
        lit(C, o, (const uint8_t *)c, 1), puts_(C, o, " "), digits_range(C, o, zeros, b + 1, d - 1);
    }
    puts_(C, o, ")");
}

static int u64_digits(uint64_t v, char *out) {   /* decimal text, returns its length */
    char t[20];
    int n = 0;
    do t[n++] = (char)('0' + v % 10), v /= 10; while (v);
    for (int i = 0; i < n; i++) out[i] = t[n - 1 - i];
    return n;
}

/* Non-negative integers in [lo, hi] (hi = UINT64_MAX: unbounded), no leading zeros. */
static void uint_range(Conv *C, Buf *o, uint64_t lo, uint64_t hi) {
    char a[20], b[20];
    int da = u64_digits(lo, a);
    int db = hi == UINT64_MAX ? 16 : u64_digits(hi, b);   /* unbounded: up to 16 digits, as integral-part */
    if (da > db) { cerr(C, "the integer bounds leave no value", NULL, NULL); return; }
    puts_(C, o, "(");
    for (int d = da; d <= db; d++) {
        char x[20], y[20];
        if (d == da) memcpy(x, a, (uint64_t)d);
        else { x[0] = '1'; for (int i = 1; i < d; i++) x[i] = '0'; }
        if (d == db && hi != UINT64_MAX) memcpy(y, b, (uint64_t)d);
        else for (int i = 0; i < d; i++) y[i] = '9';
        if (d > da) puts_(C, o, " | ");
        digits_range(C, o, x, y, d);
    }
    puts_(C, o, ")");
}

/* Integers in [lo, hi] (has_lo/has_hi: bounded on that side), as JSON text. */
static void int_range(Conv *C, Buf *o, bool has_lo, int64_t lo, bool has_hi, int64_t hi) {
    if (has_lo && has_hi && lo > hi) { cerr(C, "the bounds leave no value (minimum above maximum)", NULL, NULL); return; }
    bool neg = !has_lo || lo < 0, pos = !has_hi || hi >= 0;
    puts_(C, o, "(");
    if (neg) {   /* -(|x|) for x in [lo, min(hi, -1)] */
        uint64_t alo = has_hi && hi < 0 ? (uint64_t)(-(hi + 1)) + 1 : 1;
        uint64_t ahi = has_lo ? (uint64_t)(-(lo + 1)) + 1 : UINT64_MAX;
        puts_(C, o, "\"-\" "), uint_range(C, o, alo, ahi);
    }
    if (pos) {
        if (neg) puts_(C, o, " | ");
        uint_range(C, o, has_lo && lo > 0 ? (uint64_t)lo : 0, has_hi ? (uint64_t)hi : UINT64_MAX);
    }
    puts_(C, o, ")");
}

static bool whole(double x) { return x >= -9.0e15 && x <= 9.0e15 && (double)(int64_t)x == x; }

/* minimum / maximum / exclusive ones as inclusive integer bounds (ceil of lower, floor of upper). */
static bool int_bounds(Conv *C, const JsonVal *S, bool *has_lo, int64_t *lo, bool *has_hi, int64_t *hi) {
    *has_lo = *has_hi = false;
    static const char *keys[4] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    for (int k = 0; k < 4; k++) {
        const JsonVal *v = json_get(S, keys[k]);
        if (!v) continue;
        if (v->type == JSON_TRUE || v->type == JSON_FALSE) {   /* draft 4's boolean exclusives */
            if (v->type == JSON_TRUE) { cerr(C, "boolean '", keys[k], "' (draft 4) is not supported: give the bound as a number"); return false; }
            continue;
        }
        if (v->type != JSON_NUM) { cerr(C, "'", keys[k], "' must be a number"); return false; }
        double x = v->num;
        if (x < -9.0e15 || x > 9.0e15) { cerr(C, "'", keys[k], "' is out of range (|bound| up to 9e15)"); return false; }
        int64_t f = (int64_t)x;
        if ((double)f > x) f--;        /* floor */
        int64_t c = (double)f == x ? f : f + 1;   /* ceil */
        int64_t b = k == 0 ? c : k == 1 ? ((double)f == x ? f + 1 : c) : k == 2 ? f : ((double)c == x ? c - 1 : f);
        if (k < 2) { if (!*has_lo || b > *lo) *lo = b; *has_lo = true; }
        else { if (!*has_hi || b < *hi) *hi = b; *has_hi = true; }
    }
    return true;
}

/* ------------------------------------------------------------------ regex subset (pattern) */

typedef struct { const uint8_t *p, *end; uint32_t group_depth; uint64_t weight; } Rx;

static uint32_t rx_cp(Rx *R) {   /* one UTF-8 code point */
    uint8_t b = *R->p++;
    if (b < 0x80) return b;
    int n = (b >> 5) == 6 ? 1 : (b >> 4) == 14 ? 2 : 3;
    uint32_t v = b & (0x3F >> n);
    for (int i = 0; i < n && R->p < R->end; i++) v = v << 6 | (*R->p++ & 63);
    return v;
}

/* A code point inside a class (never '"', '\\' or a control: those must be escaped in JSON text). */
static void cls_cp(Conv *C, Buf *o, uint32_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) { char t = (char)c; put(C, o, &t, 1); }
    else if (c < 0x100) put_hex(C, o, 'x', c, 2);
    else if (c < 0x10000) put_hex(C, o, 'u', c, 4);
    else put_hex(C, o, 'U', c, 8);
}
/* A literal code point of the matched string, as its JSON text. */
static void lit_cp(Conv *C, Buf *o, uint32_t c) {
    uint8_t t[4];
    uint64_t n;
    if (c < 0x80) t[0] = (uint8_t)c, n = 1;
    else if (c < 0x800) t[0] = (uint8_t)(0xC0 | c >> 6), t[1] = (uint8_t)(0x80 | (c & 63)), n = 2;
    else if (c < 0x10000) t[0] = (uint8_t)(0xE0 | c >> 12), t[1] = (uint8_t)(0x80 | (c >> 6 & 63)), t[2] = (uint8_t)(0x80 | (c & 63)), n = 3;
    else t[0] = (uint8_t)(0xF0 | c >> 18), t[1] = (uint8_t)(0x80 | (c >> 12 & 63)), t[2] = (uint8_t)(0x80 | (c >> 6 & 63)), t[3] = (uint8_t)(0x80 | (c & 63)), n = 4;
    Buf j = {0};
    json_string_text(C, &j, t, n);   /* "\"x\"": drop the quotes */
    if (j.p) lit(C, o, (const uint8_t *)j.p + 1, j.n - 2);
    C->total -= j.n;
    rt_free(j.p);
}

#define RX_EXCLUDE "\\x22\\x5C\\x00-\\x1F\\x7F"   /* what a class never admits raw: " \ controls */

static bool rx_alt(Conv *C, Rx *R, Buf *o);

/* A class escape (\d \w \s and negations) as a bracket expression; false if c is not one. */
static bool rx_class_escape(Conv *C, Buf *o, uint8_t c) {
    switch (c) {
    case 'd': puts_(C, o, "[0-9]"); return true;
    case 'w': puts_(C, o, "[a-zA-Z0-9_]"); return true;
    case 's': puts_(C, o, "[ ]"); return true;            /* tab and newline need JSON escapes: a subset */
    case 'D': puts_(C, o, "[^0-9" RX_EXCLUDE "]"); return true;
    case 'W': puts_(C, o, "[^a-zA-Z0-9_" RX_EXCLUDE "]"); return true;
    case 'S': puts_(C, o, "[^ \\t\\n\\r\\x0B\\x0C" RX_EXCLUDE "]"); return true;
    }
    return false;
}

static uint32_t rx_escaped_cp(uint8_t c) {
    switch (c) { case 'n': return '\n'; case 't': return '\t'; case 'r': return '\r'; case 'f': return '\f'; case 'v': return 11; }
    return c;
}

/* [...]: positive classes drop " \ and controls (a subset); negated ones exclude them too. */
static bool rx_class(Conv *C, Rx *R, Buf *o) {
    R->p++;
    bool neg = R->p < R->end && *R->p == '^';
    if (neg) R->p++;
    Buf b = {0};
    puts_(C, &b, neg ? "[^" : "[");
    bool any = false, first = true;
    while (R->p < R->end && (*R->p != ']' || first)) {
        first = false;
        uint32_t c;
        if (*R->p == '\\' && R->p + 1 < R->end) {
            uint8_t e = R->p[1];
            R->p += 2;
            if (e == 'd') { puts_(C, &b, "0-9"); any = true; continue; }
            if (e == 'w') { puts_(C, &b, "a-zA-Z0-9_"); any = true; continue; }
            if (e == 's') { if (neg) puts_(C, &b, " \\t\\n\\r"); else puts_(C, &b, " "); any = true; continue; }
            if (e == 'D' || e == 'W' || e == 'S') { cerr(C, "pattern: \\D, \\W, \\S inside [...] are not supported", NULL, NULL); rt_free(b.p); return false; }
            c = rx_escaped_cp(e);
        } else c = rx_cp(R);
        uint32_t hi = c;
        if (R->p + 1 < R->end && *R->p == '-' && R->p[1] != ']') {
            R->p++;
            if (*R->p == '\\' && R->p + 1 < R->end) hi = rx_escaped_cp(R->p[1]), R->p += 2;
            else hi = rx_cp(R);
            if (hi < c) { cerr(C, "pattern: a class range is out of order", NULL, NULL); rt_free(b.p); return false; }
        }
        /* positive: clip the range's parts that JSON text cannot hold raw */
        if (!neg) {
            uint32_t lo2 = c;
            while (lo2 <= hi) {
                if (lo2 < 0x20) { lo2 = 0x20; continue; }
                if (lo2 == '"' || lo2 == '\\' || lo2 == 0x7F) { lo2++; continue; }
                uint32_t stop = hi;
                if (lo2 < '"' && stop >= '"') stop = '"' - 1;
                else if (lo2 < '\\' && stop >= '\\') stop = '\\' - 1;
                else if (lo2 < 0x7F && stop >= 0x7F) stop = 0x7E;
                cls_cp(C, &b, lo2);
                if (stop > lo2) puts_(C, &b, "-"), cls_cp(C, &b, stop);
                any = true;
                lo2 = stop + 1;
                if (stop == 0xFFFFFFFFu) break;
            }
        } else {
            cls_cp(C, &b, c);
            if (hi > c) puts_(C, &b, "-"), cls_cp(C, &b, hi);
            any = true;
        }
    }
    if (R->p >= R->end) { cerr(C, "pattern: unterminated [...]", NULL, NULL); rt_free(b.p); return false; }
    R->p++;
    if (neg) puts_(C, &b, RX_EXCLUDE);
    puts_(C, &b, "]");
    if (!any && !neg) { cerr(C, "pattern: a class admits no character a JSON string holds unescaped", NULL, NULL); rt_free(b.p); return false; }
    if (b.p) put(C, o, b.p, b.n);
    C->total -= b.n;
    rt_free(b.p);
    return !C->failed;
}

/* One atom plus its quantifier. */
static bool rx_piece(Conv *C, Rx *R, Buf *o) {
    uint8_t c = *R->p;
    Buf a = {0};
    uint64_t inner_weight = 1;
    if (c == '(') {
        R->p++;
        if (R->p + 1 < R->end && R->p[0] == '?' && R->p[1] == ':') R->p += 2;
        else if (R->p < R->end && R->p[0] == '?') { cerr(C, "pattern: lookarounds and named groups are not supported", NULL, NULL); return false; }
        if (++R->group_depth > 32) { cerr(C, "pattern: groups nested more than 32 deep", NULL, NULL); return false; }
        uint64_t saved = R->weight;
        R->weight = 1;
        puts_(C, &a, "(");
        if (!rx_alt(C, R, &a)) { rt_free(a.p); return false; }
        if (R->p >= R->end || *R->p != ')') { cerr(C, "pattern: unbalanced '('", NULL, NULL); rt_free(a.p); return false; }
        R->p++, R->group_depth--;
        puts_(C, &a, ")");
        inner_weight = R->weight;
        R->weight = saved;
    } else if (c == '[') {
        if (!rx_class(C, R, &a)) { rt_free(a.p); return false; }
    } else if (c == '.') {
        R->p++;
        puts_(C, &a, "[^\\n" RX_EXCLUDE "]");
    } else if (c == '\\') {
        if (R->p + 1 >= R->end) { cerr(C, "pattern: a trailing '\\'", NULL, NULL); return false; }
        uint8_t e = R->p[1];
        R->p += 2;
        if (!rx_class_escape(C, &a, e)) {
            if ((e >= '0' && e <= '9') || e == 'b' || e == 'B' || e == 'p' || e == 'P' || e == 'u' || e == 'x') {
                char t[3] = {'\\', (char)e, 0};
                cerr(C, "pattern: the escape ", t, " is not supported");
                return false;
            }
            lit_cp(C, &a, rx_escaped_cp(e));
        }
    } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        cerr(C, "pattern: a quantifier with nothing to repeat", NULL, NULL);
        return false;
    } else lit_cp(C, &a, rx_cp(R));
    /* quantifier */
    uint64_t m = 1, n = 1;
    bool rep = false;
    if (R->p < R->end) {
        uint8_t q = *R->p;
        if (q == '*' || q == '+' || q == '?') { R->p++; rep = true; m = q == '+'; n = q == '?' ? 1 : UINT64_MAX; }
        else if (q == '{') {
            const uint8_t *s = R->p + 1;
            uint64_t v1 = 0, v2;
            int d1 = 0, d2 = 0;
            while (s < R->end && *s >= '0' && *s <= '9' && d1 < 9) v1 = v1 * 10 + (*s++ - '0'), d1++;
            v2 = v1;
            if (s < R->end && *s == ',') {
                s++, v2 = 0;
                while (s < R->end && *s >= '0' && *s <= '9' && d2 < 9) v2 = v2 * 10 + (*s++ - '0'), d2++;
                if (!d2) v2 = UINT64_MAX;
            }
            if (d1 && s < R->end && *s == '}') {
                R->p = s + 1, rep = true, m = v1, n = v2;
                if (n < m) { cerr(C, "pattern: {m,n} with n < m", NULL, NULL); rt_free(a.p); return false; }
                if (m > JSCHEMA_MAX_REPEAT || (n != UINT64_MAX && n > JSCHEMA_MAX_REPEAT)) {
                    cerr(C, "pattern: a repetition count above 2000", NULL, NULL); rt_free(a.p); return false;
                }
            }
        }
        if (rep && R->p < R->end && (*R->p == '?' || *R->p == '+')) R->p++;   /* lazy/possessive: same language */
    }
    /* nested repetitions multiply: bound the product (an exploding pattern) */
    uint64_t w = inner_weight * (n == UINT64_MAX ? (m > 1 ? m : 1) : (n > 1 ? n : 1));
    if (w > 100000) { cerr(C, "pattern: nested repetitions expand past 100000 copies", NULL, NULL); rt_free(a.p); return false; }
    if (w > R->weight) R->weight = w;
    if (a.p) put(C, o, a.p, a.n);
    C->total -= a.n;
    rt_free(a.p);
    if (rep) {
        if (m == 0 && n == UINT64_MAX) puts_(C, o, "*");
        else if (m == 1 && n == UINT64_MAX) puts_(C, o, "+");
        else if (m == 0 && n == 1) puts_(C, o, "?");
        else {
            puts_(C, o, "{"), put_u64(C, o, m);
            if (n != m) { puts_(C, o, ","); if (n != UINT64_MAX) put_u64(C, o, n); }
            puts_(C, o, "}");
        }
    }
    return !C->failed;
}

static bool rx_alt(Conv *C, Rx *R, Buf *o) {
    bool empty = true;
    for (;;) {
        if (R->p >= R->end || *R->p == ')' || *R->p == '|') {
            if (empty) puts_(C, o, "\"\"");
            if (R->p < R->end && *R->p == '|') { R->p++; puts_(C, o, " | "); empty = true; continue; }
            return !C->failed;
        }
        if (*R->p == '$' && R->p + 1 == R->end) { R->p++; continue; }   /* the end anchor */
        if (*R->p == '^' || *R->p == '$') { cerr(C, "pattern: '^' and '$' only at its start and end", NULL, NULL); return false; }
        if (!empty) puts_(C, o, " ");
        if (!rx_piece(C, R, o)) return false;
        empty = false;
    }
}

/* A string fully matching the pattern (an unanchored pattern's match is then the whole string:
 * a subset of the strings it accepts). */
static void pattern_string(Conv *C, Buf *o, const JsonVal *pat) {
    if (pat->type != JSON_STR) { cerr(C, "'pattern' must be a string", NULL, NULL); return; }
    if (pat->slen > JSCHEMA_MAX_PATTERN) { cerr(C, "'pattern' is longer than 4096 bytes (the limit)", NULL, NULL); return; }
    Rx R = {pat->s, pat->s + pat->slen, 0, 1};
    if (R.p < R.end && *R.p == '^') R.p++;
    puts_(C, o, "\"\\\"\" (");
    if (!rx_alt(C, &R, o)) return;
    if (R.p != R.end) { cerr(C, "pattern: unbalanced ')'", NULL, NULL); return; }
    puts_(C, o, ") \"\\\"\" "), prim(C, o, P_SPACE);
}

/* ------------------------------------------------------------------ schemas */

static uint32_t schema_rule(Conv *C, const JsonVal *S);

static void push(Conv *C, const char *key, int64_t index) {
    Seg *g = &C->path[C->depth < JSCHEMA_MAX_DEPTH + 7 ? C->depth : JSCHEMA_MAX_DEPTH + 7];
    g->s = (const uint8_t *)key, g->n = key ? strlen(key) : 0, g->index = index;
    C->depth++;
}
static void push_str(Conv *C, const JsonVal *k) {
    push(C, NULL, -1);
    C->path[C->depth - 1].s = k->s, C->path[C->depth - 1].n = k->slen;
}
static void pop(Conv *C) { C->depth--; }

/* The rule of a sub-schema at key (index >= 0: item index of that key's array). */
static uint32_t sub(Conv *C, const JsonVal *S, const char *key, int64_t index) {
    push(C, key, -1);
    if (index >= 0) push(C, NULL, index);
    uint32_t r = schema_rule(C, S);
    if (index >= 0) pop(C);
    pop(C);
    return r;
}

static const JsonVal *resolve_ref(Conv *C, const JsonVal *ref) {
    if (ref->type != JSON_STR) { cerr(C, "'$ref' must be a string", NULL, NULL); return NULL; }
    const char *s = (const char *)ref->s;
    if (rt_str_eq(s, ref->slen, "#")) return C->root;
    const char *groups[2] = {"#/$defs/", "#/definitions/"}, *keys[2] = {"$defs", "definitions"};
    for (int g = 0; g < 2; g++) {
        uint64_t gl = strlen(groups[g]);
        if (ref->slen > gl && !memcmp(s, groups[g], gl)) {
            const JsonVal *defs = json_get(C->root, keys[g]);
            const char *nm = s + gl;
            uint64_t nl = ref->slen - gl;
            if (defs && defs->type == JSON_OBJ)
                for (uint32_t i = 0; i < defs->n; i++) {
                    const JsonVal *k = &defs->items[2 * i];
                    if (k->slen == nl && !memcmp(k->s, nm, nl)) return &defs->items[2 * i + 1];
                }
            cerr(C, "'$ref' names a definition that does not exist: ", s, NULL);
            return NULL;
        }
    }
    cerr(C, "'$ref' must be '#', '#/$defs/NAME' or '#/definitions/NAME' (no remote or nested refs), got ", s, NULL);
    return NULL;
}

static bool count_of(Conv *C, const JsonVal *S, const char *key, uint64_t *out) {
    const JsonVal *v = json_get(S, key);
    if (!v) return false;
    if (v->type != JSON_NUM || v->num < 0 || !whole(v->num)) { cerr(C, "'", key, "' must be a non-negative integer"); return false; }
    *out = (uint64_t)v->num;
    return true;
}

/* "{" kv ("," kv)* "}" with llama.cpp's ordering: required properties in order, then the optional
 * ones, any subset of them in order (a chain of rules), then additional properties if allowed. */
static void object_body(Conv *C, const JsonVal *S, Buf *o) {
    const JsonVal *props = json_get(S, "properties"), *req = json_get(S, "required"), *add = json_get(S, "additionalProperties");
    if (props && props->type != JSON_OBJ) { cerr(C, "'properties' must be an object", NULL, NULL); return; }
    if (req && req->type != JSON_ARR) { cerr(C, "'required' must be an array of strings", NULL, NULL); return; }
    if (add && add->type != JSON_TRUE && add->type != JSON_FALSE && add->type != JSON_OBJ) {
        cerr(C, "'additionalProperties' must be a boolean or a schema", NULL, NULL); return;
    }
    if (!props && !req && (!add || add->type == JSON_TRUE)) { prim(C, o, P_OBJECT); return; }   /* any object, as llama.cpp */
    uint32_t np = props ? props->n : 0;
    if (np > JSCHEMA_MAX_PROPS) { cerr(C, "more than 256 properties (the limit)", NULL, NULL); return; }
    if (req && req->n > JSCHEMA_MAX_PROPS) { cerr(C, "more than 256 required properties (the limit)", NULL, NULL); return; }
    for (uint32_t i = 0; req && i < req->n; i++)
        if (req->items[i].type != JSON_STR) { push(C, "required", -1), push(C, NULL, i); cerr(C, "must be a string", NULL, NULL); return; }
    /* kv rules: one per property, then required names not in properties, then additional */
    /* scratch on the heap (nesting would pile these up on the stack): kv, opt, rest ids, required flags */
    uint32_t cap = 2 * JSCHEMA_MAX_PROPS + 2;
    uint32_t *kv = rt_malloc((uint64_t)cap * 13);
    if (!kv) { C->failed = true; rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); return; }
    uint32_t *opt = kv + cap, *rest = opt + cap;
    bool *required = (bool *)(rest + cap);
    uint32_t nk = 0;
    bool add_ok = add && add->type != JSON_FALSE;
    for (uint32_t i = 0; i < np && !C->failed; i++) {
        const JsonVal *k = &props->items[2 * i];
        push(C, "properties", -1), push_str(C, k);
        uint32_t vr = schema_rule(C, &props->items[2 * i + 1]);
        pop(C), pop(C);
        uint32_t id = C->n_rules++;
        Buf b = {0};
        Buf j = {0};
        json_string_text(C, &j, k->s, k->slen);
        if (j.p) lit(C, &b, (const uint8_t *)j.p, j.n);
        C->total -= j.n;
        rt_free(j.p);
        puts_(C, &b, " "), prim(C, &b, P_SPACE), puts_(C, &b, " \":\" "), prim(C, &b, P_SPACE), puts_(C, &b, " "), name(C, &b, vr);
        rule_done(C, id, &b);
        required[nk] = false;
        for (uint32_t r = 0; req && r < req->n; r++)
            if (req->items[r].slen == k->slen && !memcmp(req->items[r].s, k->s, k->slen)) required[nk] = true;
        kv[nk++] = id;
    }
    for (uint32_t r = 0; req && r < req->n && !C->failed; r++) {   /* required, not described: any value */
        const JsonVal *rk = &req->items[r];
        bool known = false;
        for (uint32_t i = 0; i < np; i++) known |= props->items[2 * i].slen == rk->slen && !memcmp(props->items[2 * i].s, rk->s, rk->slen);
        if (known) continue;
        if (add && add->type == JSON_FALSE) { cerr(C, "required property '", (const char *)rk->s, "' is not in 'properties' and additionalProperties is false"); break; }
        uint32_t vr = 0;
        bool any = !add || add->type == JSON_TRUE;
        if (!any) vr = sub(C, add, "additionalProperties", -1);
        uint32_t id = C->n_rules++;
        Buf b = {0}, j = {0};
        json_string_text(C, &j, rk->s, rk->slen);
        if (j.p) lit(C, &b, (const uint8_t *)j.p, j.n);
        C->total -= j.n;
        rt_free(j.p);
        puts_(C, &b, " "), prim(C, &b, P_SPACE), puts_(C, &b, " \":\" "), prim(C, &b, P_SPACE), puts_(C, &b, " ");
        if (any) prim(C, &b, P_VALUE); else name(C, &b, vr);
        rule_done(C, id, &b);
        required[nk] = true, kv[nk++] = id;
    }
    int32_t add_kv = -1;
    if (add_ok && !C->failed) {
        uint32_t vr = add->type == JSON_OBJ ? sub(C, add, "additionalProperties", -1) : 0;
        uint32_t id = C->n_rules++;
        Buf b = {0};
        prim(C, &b, P_STRING), puts_(C, &b, " \":\" "), prim(C, &b, P_SPACE), puts_(C, &b, " ");
        if (add->type == JSON_OBJ) name(C, &b, vr); else prim(C, &b, P_VALUE);
        rule_done(C, id, &b);
        add_kv = (int32_t)id;
    }
    if (C->failed) { rt_free(kv); return; }
    puts_(C, o, "\"{\" "), prim(C, o, P_SPACE);
    uint32_t nreq = 0;
    for (uint32_t i = 0; i < nk; i++)
        if (required[i]) { puts_(C, o, nreq++ ? " \",\" " : " "); if (nreq > 1) prim(C, o, P_SPACE), puts_(C, o, " "); name(C, o, kv[i]); }
    uint32_t nopt = 0;
    for (uint32_t i = 0; i < nk; i++) if (!required[i]) opt[nopt++] = kv[i];
    if (add_kv >= 0) opt[nopt++] = (uint32_t)add_kv;
    if (nopt) {
        /* rest[i]: the optional properties from i on, each optional, in order (built back to front) */
        for (int32_t i = (int32_t)nopt - 1; i >= 0 && !C->failed; i--) {
            bool star = add_kv >= 0 && i == (int32_t)nopt - 1;
            uint32_t id = C->n_rules++;
            Buf b = {0};
            puts_(C, &b, "( \",\" "), prim(C, &b, P_SPACE), puts_(C, &b, " "), name(C, &b, opt[i]), puts_(C, &b, star ? " )*" : " )?");
            if (i + 1 < (int32_t)nopt) puts_(C, &b, " "), name(C, &b, rest[i + 1]);
            rule_done(C, id, &b);
            rest[i] = id;
        }
        /* the first present optional one has no comma before it when nothing is required */
        puts_(C, o, " (");
        if (nreq) { puts_(C, o, " "), name(C, o, rest[0]), puts_(C, o, " )"); }
        else {
            for (uint32_t i = 0; i < nopt; i++) {
                bool star = add_kv >= 0 && i == nopt - 1;
                puts_(C, o, i ? " | " : " "), name(C, o, opt[i]);
                if (star) puts_(C, o, " ( \",\" "), prim(C, o, P_SPACE), puts_(C, o, " "), name(C, o, opt[i]), puts_(C, o, " )*");
                if (i + 1 < nopt) puts_(C, o, " "), name(C, o, rest[i + 1]);
            }
            puts_(C, o, " )?");
        }
    }
    puts_(C, o, " \"}\" "), prim(C, o, P_SPACE);
    rt_free(kv);
}

static void array_body(Conv *C, const JsonVal *S, Buf *o) {
    const JsonVal *items = json_get(S, "items"), *prefix = json_get(S, "prefixItems");
    uint64_t mn = 0, mx = UINT64_MAX;
    count_of(C, S, "minItems", &mn);
    count_of(C, S, "maxItems", &mx);
    if (C->failed) return;
    if (mx < mn) { cerr(C, "maxItems is less than minItems", NULL, NULL); return; }
    const JsonVal *tuple = prefix ? prefix : items && items->type == JSON_ARR ? items : NULL;
    if (tuple) {   /* a tuple: exactly its items */
        if (tuple->type != JSON_ARR) { cerr(C, "'prefixItems' must be an array of schemas", NULL, NULL); return; }
        if (tuple->n > JSCHEMA_MAX_ALTS) { cerr(C, "a tuple of more than 256 items (the limit)", NULL, NULL); return; }
        if (tuple->n < mn || tuple->n > mx) { cerr(C, "tuple length outside minItems..maxItems", NULL, NULL); return; }
        puts_(C, o, "\"[\" "), prim(C, o, P_SPACE);
        for (uint32_t i = 0; i < tuple->n && !C->failed; i++) {
            uint32_t r = sub(C, &tuple->items[i], prefix ? "prefixItems" : "items", i);
            if (i) puts_(C, o, " \",\" "), prim(C, o, P_SPACE);
            puts_(C, o, " "), name(C, o, r);
        }
        puts_(C, o, " \"]\" "), prim(C, o, P_SPACE);
        return;
    }
    if (mn > JSCHEMA_MAX_REPEAT) { cerr(C, "minItems above 2000 (the limit)", NULL, NULL); return; }
    if (mx != UINT64_MAX && mx > JSCHEMA_MAX_REPEAT) mx = JSCHEMA_MAX_REPEAT;   /* a subset: still valid */
    puts_(C, o, "\"[\" "), prim(C, o, P_SPACE);
    if (mx > 0) {
        Buf item = {0};
        if (items && items->type != JSON_TRUE) { uint32_t r = sub(C, items, "items", -1); name(C, &item, r); }
        else prim(C, &item, P_VALUE);
        if (C->failed) { rt_free(item.p); return; }
        puts_(C, o, mn ? " " : " ( ");
        put(C, o, item.p, item.n);
        if (mx != 1) {
            puts_(C, o, " ( \",\" "), prim(C, o, P_SPACE), puts_(C, o, " "), put(C, o, item.p, item.n), puts_(C, o, " )");
            uint64_t a = mn ? mn - 1 : 0, b = mx == UINT64_MAX ? UINT64_MAX : mx - 1;
            if (a == 0 && b == UINT64_MAX) puts_(C, o, "*");
            else if (a == 0 && b == 1) puts_(C, o, "?");
            else { puts_(C, o, "{"), put_u64(C, o, a); if (b != a) { puts_(C, o, ","); if (b != UINT64_MAX) put_u64(C, o, b); } puts_(C, o, "}"); }
        }
        if (!mn) puts_(C, o, " )?");
        C->total -= item.n;
        rt_free(item.p);
    }
    puts_(C, o, " \"]\" "), prim(C, o, P_SPACE);
}

static void string_body(Conv *C, const JsonVal *S, Buf *o) {
    const JsonVal *fmt = json_get(S, "format"), *pat = json_get(S, "pattern");
    uint64_t mn = 0, mx = UINT64_MAX;
    bool has_mn = count_of(C, S, "minLength", &mn), has_mx = count_of(C, S, "maxLength", &mx);
    if (C->failed) return;
    if (pat) {
        if (has_mn || has_mx) { cerr(C, "'pattern' together with minLength/maxLength is not supported", NULL, NULL); return; }
        pattern_string(C, o, pat);
        return;
    }
    if (fmt && fmt->type == JSON_STR && !has_mn && !has_mx) {
        int p = json_str_is(fmt, "date") ? P_DATE_S : json_str_is(fmt, "time") ? P_TIME_S :
                json_str_is(fmt, "date-time") ? P_DATETIME_S : json_str_is(fmt, "uuid") ? P_UUID : -1;
        if (p >= 0) { prim(C, o, (uint32_t)p); return; }   /* other formats: annotations, any string */
    }
    if (!has_mn && !has_mx) { prim(C, o, P_STRING); return; }
    if (mx < mn) { cerr(C, "maxLength is less than minLength", NULL, NULL); return; }
    if (mn > JSCHEMA_MAX_REPEAT) { cerr(C, "minLength above 2000 (the limit)", NULL, NULL); return; }
    if (mx != UINT64_MAX && mx > JSCHEMA_MAX_REPEAT) mx = JSCHEMA_MAX_REPEAT;
    puts_(C, o, "\"\\\"\" "), prim(C, o, P_CHAR), puts_(C, o, "{"), put_u64(C, o, mn);
    if (mx != mn) { puts_(C, o, ","); if (mx != UINT64_MAX) put_u64(C, o, mx); }
    puts_(C, o, "} \"\\\"\" "), prim(C, o, P_SPACE);
}

static void number_body(Conv *C, const JsonVal *S, Buf *o, bool integer) {
    bool hl, hh;
    int64_t lo, hi;
    if (!int_bounds(C, S, &hl, &lo, &hh, &hi)) return;
    if (!hl && !hh) { prim(C, o, integer ? P_INTEGER : P_NUMBER); return; }
    if (hl && hh && lo > hi) { cerr(C, integer ? "the bounds leave no integer (minimum above maximum)" : "the bounds leave no whole number (bounded numbers are written as whole numbers, plus fractions below the upper bound)", NULL, NULL); return; }
    puts_(C, o, "(");
    if (integer) int_range(C, o, hl, lo, hh, hi);
    else {
        /* whole numbers in [lo, hi]; a non-negative k < hi may take a fraction (k.f stays in (k, k+1) <= hi) */
        bool frac = !hh || hi > 0;
        int64_t flo = hl && lo > 0 ? lo : 0, fhi = hh ? hi - 1 : INT64_MAX;
        if (frac && flo <= fhi) {
            puts_(C, o, "("), int_range(C, o, true, flo, fhi != INT64_MAX, fhi), puts_(C, o, " \".\" "), prim(C, o, P_DECIMAL), puts_(C, o, ") | ");
        }
        int_range(C, o, hl, lo, hh, hi);
    }
    puts_(C, o, ") "), prim(C, o, P_SPACE);
}

static const char *UNSUPPORTED[] = {"not", "if", "then", "else", "patternProperties", "dependentRequired", "dependentSchemas",
    "dependencies", "propertyNames", "unevaluatedProperties", "unevaluatedItems", "contains", "minContains", "maxContains",
    "minProperties", "maxProperties", "multipleOf", "$dynamicRef", "$recursiveRef", NULL};

/* The body of one type of S (type: "object", "string", ...). */
static void typed_body(Conv *C, const JsonVal *S, const JsonVal *type, Buf *o) {
    if (json_str_is(type, "object")) object_body(C, S, o);
    else if (json_str_is(type, "array")) array_body(C, S, o);
    else if (json_str_is(type, "string")) string_body(C, S, o);
    else if (json_str_is(type, "integer")) number_body(C, S, o, true);
    else if (json_str_is(type, "number")) number_body(C, S, o, false);
    else if (json_str_is(type, "boolean")) prim(C, o, P_BOOLEAN);
    else if (json_str_is(type, "null")) prim(C, o, P_NULL);
    else if (type->type == JSON_STR) cerr(C, "unknown type '", (const char *)type->s, "' (expected object, array, string, number, integer, boolean or null)");
    else cerr(C, "'type' must be a string or an array of strings", NULL, NULL);
}

static void body_of(Conv *C, const JsonVal *S, Buf *o) {
    if (S->type == JSON_TRUE) { prim(C, o, P_VALUE); return; }
    if (S->type == JSON_FALSE) { cerr(C, "the schema false admits no value", NULL, NULL); return; }
    if (S->type != JSON_OBJ) { cerr(C, "a schema must be an object or a boolean", NULL, NULL); return; }
    for (const char **k = UNSUPPORTED; *k; k++)
        if (json_get(S, *k)) { cerr(C, "'", *k, "' is not supported (it cannot be expressed as a grammar here)"); return; }
    const JsonVal *u = json_get(S, "uniqueItems");
    if (u && u->type == JSON_TRUE) { cerr(C, "'uniqueItems' is not supported (it cannot be expressed as a grammar here)", NULL, NULL); return; }
    const JsonVal *v;
    if ((v = json_get(S, "$ref"))) {
        const JsonVal *t = resolve_ref(C, v);
        if (!t) return;
        for (uint32_t hops = 0; t->type == JSON_OBJ && t->n == 1 && (v = json_get(t, "$ref")); hops++) {   /* a pure $ref chain */
            if (hops > 32 || t == S) { cerr(C, "'$ref' chain loops without a value in between", NULL, NULL); return; }
            if (!(t = resolve_ref(C, v))) return;
        }
        if (t == S) { cerr(C, "'$ref' refers to itself", NULL, NULL); return; }
        push(C, "$ref", -1);
        uint32_t r = schema_rule(C, t);
        pop(C);
        name(C, o, r);
        return;
    }
    if ((v = json_get(S, "const"))) { value_lit(C, o, v); return; }
    if ((v = json_get(S, "enum"))) {
        if (v->type != JSON_ARR || !v->n) { cerr(C, "'enum' must be a non-empty array", NULL, NULL); return; }
        if (v->n > JSCHEMA_MAX_ENUM) { cerr(C, "'enum' has more than 1024 values (the limit)", NULL, NULL); return; }
        puts_(C, o, "(");
        for (uint32_t i = 0; i < v->n && !C->failed; i++) { if (i) puts_(C, o, " | "); value_lit(C, o, &v->items[i]); }
        puts_(C, o, ")");
        return;
    }
    const char *alts = json_get(S, "anyOf") ? "anyOf" : json_get(S, "oneOf") ? "oneOf" : NULL;
    if (alts || (v = json_get(S, "allOf"))) {
        const char *key = alts ? alts : "allOf";
        v = json_get(S, key);
        if (v->type != JSON_ARR || !v->n) { cerr(C, "'", key, "' must be a non-empty array of schemas"); return; }
        if (!alts && v->n != 1) { cerr(C, "'allOf' with more than one schema is not supported", NULL, NULL); return; }
        if (v->n > JSCHEMA_MAX_ALTS) { cerr(C, "'", key, "' has more than 256 schemas (the limit)"); return; }
        puts_(C, o, "(");
        for (uint32_t i = 0; i < v->n && !C->failed; i++) {
            uint32_t r = sub(C, &v->items[i], key, i);
            if (i) puts_(C, o, " | ");
            name(C, o, r);
        }
        puts_(C, o, ")");
        return;
    }
    const JsonVal *type = json_get(S, "type");
    if (type && type->type == JSON_ARR) {
        if (!type->n || type->n > 7) { cerr(C, "'type' must list 1 to 7 types", NULL, NULL); return; }
        puts_(C, o, "(");
        for (uint32_t i = 0; i < type->n && !C->failed; i++) { if (i) puts_(C, o, " | "); typed_body(C, S, &type->items[i], o); }
        puts_(C, o, ")");
        return;
    }
    if (type) { typed_body(C, S, type, o); return; }
    /* no type: what the keywords imply, else any value */
    static const JsonVal OBJ = {JSON_STR, 0, (const uint8_t *)"object", 6, 0, NULL}, ARR = {JSON_STR, 0, (const uint8_t *)"array", 5, 0, NULL},
                         STRT = {JSON_STR, 0, (const uint8_t *)"string", 6, 0, NULL}, NUM = {JSON_STR, 0, (const uint8_t *)"number", 6, 0, NULL};
    if (json_get(S, "properties") || json_get(S, "additionalProperties") || json_get(S, "required")) typed_body(C, S, &OBJ, o);
    else if (json_get(S, "items") || json_get(S, "prefixItems") || json_get(S, "minItems") || json_get(S, "maxItems")) typed_body(C, S, &ARR, o);
    else if (json_get(S, "pattern") || json_get(S, "minLength") || json_get(S, "maxLength") || json_get(S, "format")) typed_body(C, S, &STRT, o);
    else if (json_get(S, "minimum") || json_get(S, "maximum") || json_get(S, "exclusiveMinimum") || json_get(S, "exclusiveMaximum")) typed_body(C, S, &NUM, o);
    else prim(C, o, P_VALUE);
}

/* The rule id of schema S (a $ref target keeps one rule, so recursion terminates). */
static uint32_t schema_rule(Conv *C, const JsonVal *S) {
    if (C->failed) return 0;
    for (uint32_t i = 0; i < C->n_refs; i++) if (C->refs[i].target == S) return C->refs[i].rule;
    if (C->depth > JSCHEMA_MAX_DEPTH) { cerr(C, "nested more than 64 deep (the limit)", NULL, NULL); return 0; }
    uint32_t id = C->n_rules++;
    if (C->n_refs < 4096) C->refs[C->n_refs++] = (Ref){S, id};   /* every node once: $refs to it share it */
    else { cerr(C, "more than 4096 sub-schemas (the limit)", NULL, NULL); return 0; }
    Buf b = {0};
    body_of(C, S, &b);
    if (!C->failed) rule_done(C, id, &b);
    else rt_free(b.p);
    return id;
}

char *json_schema_to_gbnf(const uint8_t *json, uint64_t len, const char *prefix, uint64_t *out_len) {
    if (len > JSCHEMA_MAX_TEXT) { rt_err("JSON schema: the text is larger than 1 MiB (the limit)", NULL); return NULL; }
    JsonDoc *doc;
    const JsonVal *root = json_parse(json, len, JSCHEMA_MAX_DEPTH * 4, &doc);
    if (!root) {
        if (rt_err_kind() == REALM_ERR_OUT_OF_MEMORY) return NULL;
        char msg[320];
        const char *m = rt_err_message();
        uint64_t n = RT_MIN(strlen(m), sizeof msg - 1);
        memcpy(msg, m, n), msg[n] = 0;
        rt_err("JSON schema: ", msg, NULL);
        return NULL;
    }
    static Conv C;   /* large (path and ref tables); one call at a time per instance */
    memset(&C, 0, sizeof C);
    C.prefix = prefix ? prefix : "";
    for (const char *p = C.prefix; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-')) {
            json_free(doc);
            rt_err("JSON schema: the rule prefix may hold only letters, digits and '-'", NULL);
            return NULL;
        }
    C.root = root;
    schema_rule(&C, root);
    /* primitives used, their dependencies too */
    for (bool grew = true; grew && !C.failed;) {
        grew = false;
        for (uint32_t p = 0; p < P_COUNT; p++)
            if ((C.prims >> p & 1) && (C.prims | PRIM[p].deps) != C.prims) C.prims |= PRIM[p].deps, grew = true;
    }
    for (uint32_t p = 0; p < P_COUNT && !C.failed; p++) {
        if (!(C.prims >> p & 1)) continue;
        puts_(&C, &C.out, C.prefix), puts_(&C, &C.out, PRIM[p].name), puts_(&C, &C.out, " ::= ");
        for (const char *s = PRIM[p].body; *s; s++) {
            if (*s == '@') puts_(&C, &C.out, C.prefix);
            else put(&C, &C.out, s, 1);
        }
        puts_(&C, &C.out, "\n");
    }
    json_free(doc);
    if (C.failed) { rt_free(C.out.p); return NULL; }
    *out_len = C.out.n;
    return C.out.p;
}
