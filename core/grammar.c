/* grammar.c: the GBNF parser (llama.cpp's llama_grammar_parser, rewritten) and
 * the matcher (llama.cpp's stack semantics as a lazily built DFA); grammar.h. */
#include "grammar.h"

/* ===================================================================== parser */

typedef struct { GElem *p; uint32_t n, cap; } GVec;

typedef struct {
    uint32_t name_off, name_len; /* in the text; generated rules: their parent's name */
    uint32_t gen;                /* generated: 1 + its number, else 0 */
    uint32_t first_ref;          /* text offset of the first reference (undefined-rule errors) */
    bool defined;
    GVec rule;
} GSym;

typedef struct {
    const char *src;   /* NUL-terminated copy of the text */
    uint32_t len;
    GSym *syms;
    uint32_t n_syms, cap_syms;
    uint32_t *ht;      /* name hash -> symbol + 1 (named symbols only) */
    uint32_t ht_cap;
    uint64_t total;    /* elements in all rules so far */
    uint32_t depth;
    uint32_t n_gen;
    bool failed;
} GParser;

static void line_col(const GParser *P, const char *at, uint64_t *line, uint64_t *col) {
    uint64_t l = 1, c = 1;
    for (const char *p = P->src; p < at && *p; p++) {
        if (*p == '\n') l++, c = 1;
        else if (((uint8_t)*p & 0xC0) != 0x80) c++;
    }
    *line = l, *col = c;
}

/* "grammar: line L, column C: <msg>" */
static void perr(GParser *P, const char *at, const char *msg, const char *msg2) {
    if (P->failed) return;
    P->failed = true;
    uint64_t l, c;
    line_col(P, at, &l, &c);
    rt_err("grammar: line ", NULL);
    rt_err_append_u64(l);
    rt_err_append(", column ");
    rt_err_append_u64(c);
    rt_err_append(": ");
    rt_err_append(msg);
    if (msg2) rt_err_append(msg2);
}

static bool vec_push(GParser *P, GVec *v, uint32_t type, uint32_t value, const char *at) {
    if (P->total >= GRAMMAR_MAX_ELEMS) {
        perr(P, at, "the grammar is too large (more than 1048576 elements after expanding repetitions)", NULL);
        return false;
    }
    if (v->n == v->cap) {
        uint32_t nc = v->cap ? v->cap * 2 : 16;
        GElem *np = rt_realloc(v->p, (uint64_t)nc * sizeof(GElem));
        if (!np) { perr(P, at, "out of memory", NULL); rt_err_set_kind(REALM_ERR_OUT_OF_MEMORY); return false; }
        v->p = np, v->cap = nc;
    }
    v->p[v->n++] = (GElem){ type, value };
    P->total++;
    return true;
}

static uint32_t name_hash(const char *s, uint32_t n) {
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int64_t new_sym(GParser *P, uint32_t off, uint32_t len, uint32_t gen, const char *at) {
    if (P->n_syms >= GRAMMAR_MAX_RULES) {
        perr(P, at, "the grammar has too many rules (more than 16384, generated ones included)", NULL);
        return -1;
    }
    if (P->n_syms == P->cap_syms) {
        uint32_t nc = P->cap_syms ? P->cap_syms * 2 : 64;
        GSym *np = rt_realloc(P->syms, (uint64_t)nc * sizeof(GSym));
        if (!np) { perr(P, at, "out of memory", NULL); rt_err_set_kind(REALM_ERR_OUT_OF_MEMORY); return -1; }
        P->syms = np, P->cap_syms = nc;
    }
    P->syms[P->n_syms] = (GSym){ .name_off = off, .name_len = len, .gen = gen, .first_ref = UINT32_MAX };
    return P->n_syms++;
}

/* The symbol named src[0..n) (created on first use). -1 on error. */
static int64_t sym_id(GParser *P, const char *s, uint32_t n) {
    uint32_t mask = P->ht_cap - 1, h = name_hash(s, n) & mask;
    for (;; h = (h + 1) & mask) {
        uint32_t e = P->ht[h];
        if (!e) break;
        GSym *g = &P->syms[e - 1];
        if (g->name_len == n && !memcmp(P->src + g->name_off, s, n)) return e - 1;
    }
    int64_t id = new_sym(P, (uint32_t)(s - P->src), n, 0, s);
    if (id < 0) return -1;
    P->ht[h] = (uint32_t)id + 1;
    return id;
}

static bool is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || (c >= '0' && c <= '9');
}
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static const char *skip_space(const char *p, bool newline_ok) {
    while (*p == ' ' || *p == '\t' || *p == '#' || (newline_ok && (*p == '\r' || *p == '\n'))) {
        if (*p == '#')
            while (*p && *p != '\r' && *p != '\n') p++;
        else
            p++;
    }
    return p;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One (possibly escaped) character of a literal or class; NULL on error. */
static const char *parse_char(GParser *P, const char *p, uint32_t *out) {
    if (*p == '\\') {
        int nhex = 0;
        switch (p[1]) {
        case 'x': nhex = 2; break;
        case 'u': nhex = 4; break;
        case 'U': nhex = 8; break;
        case 't': *out = '\t'; return p + 2;
        case 'r': *out = '\r'; return p + 2;
        case 'n': *out = '\n'; return p + 2;
        case '\\': case '"': case '[': case ']': *out = (uint8_t)p[1]; return p + 2;
        default: perr(P, p, "unknown escape (use \\n \\r \\t \\\\ \\\" \\[ \\] \\xHH \\uHHHH \\UHHHHHHHH)", NULL); return NULL;
        }
        uint32_t v = 0;
        for (int i = 0; i < nhex; i++) {
            int h = hexval(p[2 + i]);
            if (h < 0) {
                perr(P, p, nhex == 2 ? "expecting 2 hex digits after \\x" :
                           nhex == 4 ? "expecting 4 hex digits after \\u" : "expecting 8 hex digits after \\U", NULL);
                return NULL;
            }
            v = (v << 4) | (uint32_t)h;
        }
        *out = v;
        return p + 2 + nhex;
    }
    uint8_t b = (uint8_t)*p;
    if (!b) { perr(P, p, "unexpected end of input", NULL); return NULL; }
    int n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (!n) { perr(P, p, "invalid UTF-8", NULL); return NULL; }
    uint32_t v = n == 1 ? b : b & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        uint8_t c = (uint8_t)p[i];
        if ((c & 0xC0) != 0x80) { perr(P, p, "invalid UTF-8", NULL); return NULL; }
        v = (v << 6) | (c & 0x3F);
    }
    *out = v;
    return p + n;
}

static const char *parse_alternates(GParser *P, const char *p, uint32_t rule_id, bool nested, uint32_t name_sym);

/* S{min,max} (max < 0: unbounded) applied to out[last..), as llama.cpp rewrites it:
 * S S .. (min times) then a chain of generated optional rules. */
static bool repeat(GParser *P, GVec *out, uint32_t last, int64_t min, int64_t max, uint32_t name_sym, const char *at) {
    if (last == out->n) { perr(P, at, "expecting an item before the repetition operator", NULL); return false; }
    uint32_t plen = out->n - last;
    GElem *prev = rt_malloc((uint64_t)plen * sizeof(GElem));
    if (!prev) { perr(P, at, "out of memory", NULL); return false; }
    memcpy(prev, out->p + last, (uint64_t)plen * sizeof(GElem));
    bool ok = true;
    if (min == 0) {
        P->total -= plen;
        out->n = last;
    } else {
        for (int64_t i = 1; i < min && ok; i++)
            for (uint32_t j = 0; j < plen && ok; j++) ok = vec_push(P, out, prev[j].type, prev[j].value, at);
    }
    int64_t n_opt = max < 0 ? 1 : max - min;
    uint32_t last_rec = 0;
    for (int64_t i = 0; i < n_opt && ok; i++) {
        int64_t rid = new_sym(P, P->syms[name_sym].name_off, P->syms[name_sym].name_len, ++P->n_gen, at);
        if (rid < 0) { ok = false; break; }
        GVec rec = {0};
        for (uint32_t j = 0; j < plen && ok; j++) ok = vec_push(P, &rec, prev[j].type, prev[j].value, at);
        if (ok && (i > 0 || max < 0)) ok = vec_push(P, &rec, GE_RULE_REF, max < 0 ? (uint32_t)rid : last_rec, at);
        if (ok) ok = vec_push(P, &rec, GE_ALT, 0, at) && vec_push(P, &rec, GE_END, 0, at);
        GSym *s = &P->syms[rid];
        s->rule = rec;
        s->defined = true;
        last_rec = (uint32_t)rid;
    }
    if (ok && n_opt > 0) ok = vec_push(P, out, GE_RULE_REF, last_rec, at);
    rt_free(prev);
    return ok;
}

static const char *parse_int(GParser *P, const char *p, int64_t *v) {
    int64_t x = 0;
    while (is_digit(*p)) {
        x = x * 10 + (*p - '0');
        if (x > 1000000000) x = 1000000000;
        p++;
    }
    *v = x;
    return p;
}

static const char *parse_sequence(GParser *P, const char *p, GVec *out, bool nested, uint32_t name_sym) {
    uint32_t last = out->n;
    while (*p && !P->failed) {
        const char *at = p;
        if (*p == '"') {
            p++;
            last = out->n;
            while (*p != '"') {
                if (!*p) { perr(P, at, "unterminated string literal (no closing '\"')", NULL); return NULL; }
                uint32_t c;
                if (!(p = parse_char(P, p, &c))) return NULL;
                if (!vec_push(P, out, GE_CHAR, c, at)) return NULL;
            }
            p = skip_space(p + 1, nested);
        } else if (*p == '[') {
            p++;
            uint32_t start = GE_CHAR;
            if (*p == '^') p++, start = GE_CHAR_NOT;
            last = out->n;
            while (*p != ']') {
                if (!*p) { perr(P, at, "unbalanced '[': the character class has no closing ']'", NULL); return NULL; }
                uint32_t c;
                if (!(p = parse_char(P, p, &c))) return NULL;
                if (!vec_push(P, out, last < out->n ? GE_CHAR_ALT : start, c, at)) return NULL;
                if (p[0] == '-' && p[1] != ']') {
                    if (!p[1]) { perr(P, at, "unbalanced '[': the character class has no closing ']'", NULL); return NULL; }
                    uint32_t e;
                    if (!(p = parse_char(P, p + 1, &e))) return NULL;
                    if (!vec_push(P, out, GE_CHAR_RNG_UPPER, e, at)) return NULL;
                }
            }
            if (last == out->n) { perr(P, at, "empty character class '[]'", NULL); return NULL; }
            p = skip_space(p + 1, nested);
        } else if (is_word(*p)) {
            const char *e = p;
            while (is_word(*e)) e++;
            int64_t id = sym_id(P, p, (uint32_t)(e - p));
            if (id < 0) return NULL;
            if (P->syms[id].first_ref == UINT32_MAX) P->syms[id].first_ref = (uint32_t)(p - P->src);
            last = out->n;
            if (!vec_push(P, out, GE_RULE_REF, (uint32_t)id, at)) return NULL;
            p = skip_space(e, nested);
        } else if (*p == '(') {
            if (++P->depth > GRAMMAR_MAX_DEPTH) { perr(P, at, "groups nested too deeply (more than 128 levels)", NULL); return NULL; }
            int64_t sub = new_sym(P, P->syms[name_sym].name_off, P->syms[name_sym].name_len, ++P->n_gen, at);
            if (sub < 0) return NULL;
            p = parse_alternates(P, skip_space(p + 1, true), (uint32_t)sub, true, name_sym);
            if (!p) return NULL;
            if (*p != ')') { perr(P, at, "unbalanced '(': no closing ')'", NULL); return NULL; }
            P->depth--;
            last = out->n;
            if (!vec_push(P, out, GE_RULE_REF, (uint32_t)sub, at)) return NULL;
            p = skip_space(p + 1, nested);
        } else if (*p == '.') {
            last = out->n;
            if (!vec_push(P, out, GE_CHAR_ANY, 0, at)) return NULL;
            p = skip_space(p + 1, nested);
        } else if (*p == '*' || *p == '+' || *p == '?') {
            char op = *p;
            p = skip_space(p + 1, nested);
            if (!repeat(P, out, last, op == '+' ? 1 : 0, op == '?' ? 1 : -1, name_sym, at)) return NULL;
        } else if (*p == '{') {
            p = skip_space(p + 1, nested);
            if (!is_digit(*p)) { perr(P, p, "expecting a number after '{'", NULL); return NULL; }
            int64_t min, max = -1;
            p = skip_space(parse_int(P, p, &min), nested);
            if (*p == '}') {
                max = min;
                p = skip_space(p + 1, nested);
            } else if (*p == ',') {
                p = skip_space(p + 1, nested);
                if (is_digit(*p)) p = skip_space(parse_int(P, p, &max), nested);
                if (*p != '}') { perr(P, p, "expecting '}' to close the repetition", NULL); return NULL; }
                p = skip_space(p + 1, nested);
            } else {
                perr(P, p, "expecting ',' or '}' in the repetition", NULL);
                return NULL;
            }
            if (max >= 0 && max < min) { perr(P, at, "invalid repetition: {m,n} with n < m", NULL); return NULL; }
            if (min > GRAMMAR_MAX_REPEAT || max > GRAMMAR_MAX_REPEAT) {
                perr(P, at, "repetition count over 2000 (llama.cpp's limit)", NULL);
                return NULL;
            }
            if (!repeat(P, out, last, min, max, name_sym, at)) return NULL;
        } else {
            break;
        }
    }
    return P->failed ? NULL : p;
}

static const char *parse_alternates(GParser *P, const char *p, uint32_t rule_id, bool nested, uint32_t name_sym) {
    GVec rule = {0};
    p = parse_sequence(P, p, &rule, nested, name_sym);
    while (p && *p == '|') {
        if (!vec_push(P, &rule, GE_ALT, 0, p)) { p = NULL; break; }
        p = parse_sequence(P, skip_space(p + 1, true), &rule, nested, name_sym);
    }
    if (p && !vec_push(P, &rule, GE_END, 0, p)) p = NULL;
    GSym *s = &P->syms[rule_id];
    if (!p) { rt_free(rule.p); return NULL; }
    if (s->defined) { P->total -= s->rule.n; rt_free(s->rule.p); } /* a later definition wins, as in llama.cpp */
    s->rule = rule;
    s->defined = true;
    return p;
}

static const char *parse_rule(GParser *P, const char *p) {
    const char *e = p;
    while (is_word(*e)) e++;
    if (e == p) {
        if (*p == ')') perr(P, p, "unbalanced ')': no '(' opened it", NULL);
        else if (*p == ']') perr(P, p, "unbalanced ']': no '[' opened it", NULL);
        else perr(P, p, "expecting a rule name", NULL);
        return NULL;
    }
    int64_t id = sym_id(P, p, (uint32_t)(e - p));
    if (id < 0) return NULL;
    const char *q = skip_space(e, false);
    if (!(q[0] == ':' && q[1] == ':' && q[2] == '=')) { perr(P, q, "expecting '::=' after the rule name", NULL); return NULL; }
    q = parse_alternates(P, skip_space(q + 3, true), (uint32_t)id, false, (uint32_t)id);
    if (!q) return NULL;
    if (*q == '\r') q += q[1] == '\n' ? 2 : 1;
    else if (*q == '\n') q++;
    else if (*q) {
        if (*q == ')') perr(P, q, "unbalanced ')': no '(' opened it", NULL);
        else if (*q == ']') perr(P, q, "unbalanced ']': no '[' opened it", NULL);
        else perr(P, q, "expecting a newline or the end after the rule (unexpected '", NULL), rt_err_append_n(q, 1), rt_err_append("')");
        return NULL;
    }
    return skip_space(q, true);
}

static void sym_name(const GParser *P, uint32_t i) {
    const GSym *s = &P->syms[i];
    rt_err_append_n(P->src + s->name_off, s->name_len);
    if (s->gen) rt_err_append(" (a group or repetition in it)");
}

/* Left recursion, exactly as llama.cpp's llama_grammar_detect_left_recursion finds it: a rule
 * that reaches itself through leftmost references, stepping past references to rules with an
 * empty alternative. (Grammars it lets through that still expand forever, through indirectly
 * empty rules, hit the matcher's expansion limit instead.) */
static bool check_left_recursion(GParser *P, const uint32_t *start, const GElem *el) {
    uint32_t n = P->n_syms;
    bool *nullable = rt_calloc(n, 1);
    uint8_t *color = rt_calloc(n, 1);
    uint32_t *stk = rt_malloc((uint64_t)n * 2 * sizeof(uint32_t));
    bool ok = nullable && color && stk;
    if (!ok) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "grammar: out of memory", NULL); goto done; }
    /* "may be empty" as llama.cpp's detector has it: the rule has an empty alternative itself */
    for (uint32_t r = 0; r < n; r++) {
        const GElem *e = el + start[r];
        for (bool at_start = true;; e++) {
            if (e->type == GE_END || e->type == GE_ALT) {
                if (at_start) { nullable[r] = true; break; }
                if (e->type == GE_END) break;
                at_start = true;
            } else {
                at_start = false;
            }
        }
    }
    /* iterative DFS over "A may start with B" edges; stk holds (rule, element index to resume) */
    for (uint32_t r0 = 0; r0 < n && ok; r0++) {
        if (color[r0]) continue;
        uint32_t sp = 0;
        stk[0] = r0, stk[1] = start[r0], sp = 1, color[r0] = 1;
        while (sp && ok) {
            uint32_t r = stk[2 * (sp - 1)], i = stk[2 * (sp - 1) + 1];
            /* find the next first-position reference of r from element i */
            int64_t next = -1;
            while (el[i].type != GE_END) {
                /* i is at the start of an alternative or inside one: scan its nullable prefix */
                if (el[i].type == GE_ALT) { i++; continue; }
                if (el[i].type == GE_RULE_REF) {
                    next = el[i].value;
                    /* resume after this ref if it is nullable, else at the next alternative */
                    if (nullable[el[i].value]) i++;
                    else { while (el[i].type != GE_END && el[i].type != GE_ALT) i++; }
                    break;
                }
                while (el[i].type != GE_END && el[i].type != GE_ALT) i++; /* a character: the prefix ends */
            }
            stk[2 * (sp - 1) + 1] = i;
            if (next < 0) { color[r] = 2; sp--; continue; }
            if (color[next] == 1) {
                uint64_t l, c;
                line_col(P, P->src + P->syms[next].name_off, &l, &c);
                rt_err("grammar: left recursion in rule '", NULL);
                sym_name(P, (uint32_t)next);
                rt_err_append("' (line ");
                rt_err_append_u64(l);
                rt_err_append("): it can reach itself before matching a character; rewrite it right-recursive (llama.cpp refuses it too)");
                ok = false;
                break;
            }
            if (color[next] == 0) {
                color[next] = 1;
                stk[2 * sp] = (uint32_t)next, stk[2 * sp + 1] = start[next], sp++;
            }
        }
    }
done:
    rt_free(nullable);
    rt_free(color);
    rt_free(stk);
    return ok;
}

void grammar_free(Grammar *g) {
    if (!g) return;
    rt_free(g->rule_start);
    rt_free(g->elems);
    rt_free(g);
}

static uint64_t grammar_serial;

Grammar *grammar_parse(const uint8_t *text, uint64_t len, const char *root) {
    if (!root) root = "root";
    if (len > GRAMMAR_MAX_TEXT) {
        rt_err("grammar: the text is ", NULL);
        rt_err_append_u64(len);
        rt_err_append(" bytes; the limit is 1048576");
        return NULL;
    }
    for (uint64_t i = 0; i < len; i++)
        if (!text[i]) { rt_err("grammar: the text contains a NUL byte at offset ", NULL); rt_err_append_u64(i); return NULL; }
    GParser P = {0};
    Grammar *g = NULL;
    char *src = rt_malloc(len + 1);
    P.ht_cap = 1u << 15; /* > 2 * GRAMMAR_MAX_RULES */
    P.ht = rt_calloc(P.ht_cap, sizeof(uint32_t));
    if (!src || !P.ht) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "grammar: out of memory", NULL); goto fail; }
    memcpy(src, text, len);
    src[len] = 0;
    P.src = src, P.len = (uint32_t)len;
    const char *p = skip_space(src, true);
    if (!*p) { rt_err("grammar: the grammar is empty (no rules)", NULL); goto fail; }
    while (*p)
        if (!(p = parse_rule(&P, p))) goto fail;
    int64_t root_id = -1;
    {
        uint32_t rn = (uint32_t)strlen(root), mask = P.ht_cap - 1;
        for (uint32_t h = name_hash(root, rn) & mask; P.ht[h]; h = (h + 1) & mask) {
            GSym *s = &P.syms[P.ht[h] - 1];
            if (s->name_len == rn && !memcmp(src + s->name_off, root, rn)) { root_id = P.ht[h] - 1; break; }
        }
    }
    if (root_id < 0 || !P.syms[root_id].defined) {
        rt_err("grammar: no '", root, "' rule (the start rule) is defined", NULL);
        goto fail;
    }
    for (uint32_t i = 0; i < P.n_syms; i++) {
        if (P.syms[i].defined) continue;
        uint64_t l = 1, c = 1;
        if (P.syms[i].first_ref != UINT32_MAX) line_col(&P, src + P.syms[i].first_ref, &l, &c);
        rt_err("grammar: line ", NULL);
        rt_err_append_u64(l);
        rt_err_append(", column ");
        rt_err_append_u64(c);
        rt_err_append(": undefined rule '");
        rt_err_append_n(src + P.syms[i].name_off, P.syms[i].name_len);
        rt_err_append("'");
        goto fail;
    }
    g = rt_calloc(1, sizeof *g);
    if (!g) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "grammar: out of memory", NULL); goto fail; }
    g->n_rules = P.n_syms;
    g->n_elems = (uint32_t)P.total;
    g->root = (uint32_t)root_id;
    g->rule_start = rt_malloc((uint64_t)P.n_syms * 4);
    g->elems = rt_malloc((uint64_t)(P.total + 1) * sizeof(GElem));
    if (!g->rule_start || !g->elems) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "grammar: out of memory", NULL); goto fail; }
    {
        uint32_t at = 0;
        for (uint32_t i = 0; i < P.n_syms; i++) {
            g->rule_start[i] = at;
            memcpy(g->elems + at, P.syms[i].rule.p, (uint64_t)P.syms[i].rule.n * sizeof(GElem));
            at += P.syms[i].rule.n;
        }
        g->elems[at] = (GElem){ GE_END, 0 };
    }
    if (!check_left_recursion(&P, g->rule_start, g->elems)) goto fail;
    g->serial = ++grammar_serial;
    for (uint32_t i = 0; i < P.n_syms; i++) rt_free(P.syms[i].rule.p);
    rt_free(P.syms);
    rt_free(P.ht);
    rt_free(src);
    return g;
fail:
    if (P.syms)
        for (uint32_t i = 0; i < P.n_syms; i++) rt_free(P.syms[i].rule.p);
    rt_free(P.syms);
    rt_free(P.ht);
    rt_free(src);
    grammar_free(g);
    return NULL;
}

/* ==================================================================== vocabulary */

/* llama.cpp's decode_utf8 over a C string (stops at NUL) from a partial state:
 * writes the complete code points to cps (room for n + 1), returns their count
 * and the trailing partial (value, n_remain); -1 for an invalid sequence. */
static int64_t decode_utf8(const uint8_t *s, uint64_t n, uint32_t pv, int32_t pn, uint32_t *cps,
                           uint32_t *out_v, int32_t *out_n) {
    static const int lookup[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4 };
    uint64_t i = 0, k = 0;
    uint32_t value = pv;
    int32_t remain = pn;
    while (i < n && s[i] && remain > 0) {
        if ((s[i] >> 6) != 2) return -1;
        value = (value << 6) + (s[i] & 0x3F);
        i++, remain--;
    }
    if (pn > 0 && remain == 0) cps[k++] = value;
    while (i < n && s[i]) {
        remain = lookup[s[i] >> 4] - 1;
        if (remain < 0) return -1;
        value = s[i] & ((1u << (7 - remain)) - 1);
        i++;
        while (i < n && s[i] && remain > 0) {
            value = (value << 6) + (s[i] & 0x3F);
            i++, remain--;
        }
        if (remain == 0) cps[k++] = value;
    }
    *out_v = value, *out_n = remain;
    if (remain == 0) *out_v = 0;
    return (int64_t)k;
}

struct GrammarVocab {
    uint32_t n_vocab;
    uint8_t *eog;                 /* n_vocab flags */
    uint32_t *piece_off;          /* n_vocab + 1 offsets into pieces (special = true, cut at a NUL) */
    uint8_t *pieces;
    uint32_t *part_v;             /* each token's trailing partial code point (from an empty state) */
    int8_t *part_n;
    /* the trie over complete code points: node 0 is the root */
    uint32_t n_nodes;
    uint32_t *edge_start;         /* n_nodes + 1 */
    uint32_t *edge_cp, *edge_child;
    uint32_t *tok_start;          /* n_nodes + 1: the tokens whose code points end at a node */
    uint32_t *toks;
    uint32_t *cont, n_cont;       /* tokens starting with a continuation byte (continue a partial code point) */
};

void gvocab_free(GrammarVocab *v) {
    if (!v) return;
    void *ps[] = { v->eog, v->piece_off, v->pieces, v->part_v, v->part_n, v->edge_start, v->edge_cp,
                   v->edge_child, v->tok_start, v->toks, v->cont };
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) rt_free(ps[i]);
    rt_free(v);
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

GrammarVocab *gvocab_build(const Tokenizer *t) {
    int32_t nv = tokenizer_n_vocab(t);
    GrammarVocab *v = rt_calloc(1, sizeof *v);
    uint32_t *node_of = NULL, *cps = NULL, *ek = NULL, *ep = NULL, *ec = NULL, *ht = NULL;
    uint64_t *hk = NULL;
    if (!v) goto oom;
    v->n_vocab = (uint32_t)nv;
    v->eog = rt_calloc(nv ? nv : 1, 1);
    v->piece_off = rt_malloc(((uint64_t)nv + 1) * 4);
    v->part_v = rt_calloc(nv ? nv : 1, 4);
    v->part_n = rt_calloc(nv ? nv : 1, 1);
    node_of = rt_malloc(((uint64_t)nv + 1) * 4);
    if (!v->eog || !v->piece_off || !v->part_v || !v->part_n || !node_of) goto oom;
    uint64_t total = 0;
    for (int32_t i = 0; i < nv; i++) {
        int64_t n = tokenizer_piece(t, i, true, NULL, 0);
        total += n > 0 ? (uint64_t)n : 0;
        v->eog[i] = tokenizer_is_eog(t, i);
    }
    v->pieces = rt_malloc(total + 1);
    cps = rt_malloc((total + 2) * 4);
    if (!v->pieces || !cps) goto oom;
    uint64_t at = 0;
    for (int32_t i = 0; i < nv; i++) {
        v->piece_off[i] = (uint32_t)at;
        int64_t n = tokenizer_piece(t, i, true, v->pieces + at, (int64_t)(total - at));
        if (n > 0) {
            int64_t z = 0;
            while (z < n && v->pieces[at + z]) z++; /* a C string, as llama.cpp reads it */
            at += (uint64_t)z;
        }
    }
    v->piece_off[nv] = (uint32_t)at;
    /* the trie: (parent, code point) -> child in a hash table, edges gathered, then CSR */
    uint32_t cap_e = 1024, n_e = 0, n_nodes = 1, n_cont = 0;
    uint64_t hcap = 1;
    while (hcap < 2 * (at + 16)) hcap <<= 1;
    hk = rt_malloc(hcap * 8);
    ht = rt_malloc(hcap * 4);
    ek = rt_malloc((uint64_t)cap_e * 4), ep = rt_malloc((uint64_t)cap_e * 4), ec = rt_malloc((uint64_t)cap_e * 4);
    if (!hk || !ht || !ek || !ep || !ec) goto oom;
    memset(ht, 0xff, hcap * 4);
    for (int32_t i = 0; i < nv; i++) {
        node_of[i] = UINT32_MAX;
        const uint8_t *s = v->pieces + v->piece_off[i];
        uint32_t len = v->piece_off[i + 1] - v->piece_off[i], pv;
        int32_t pn;
        if (!len || v->eog[i]) continue;          /* empty pieces are never allowed; EOG is separate */
        if ((s[0] >> 6) == 2) n_cont++;
        int64_t k = decode_utf8(s, len, 0, 0, cps, &pv, &pn);
        if (k < 0) continue;                       /* invalid UTF-8: never allowed from an empty state */
        v->part_v[i] = pv, v->part_n[i] = (int8_t)pn;
        uint32_t node = 0;
        for (int64_t j = 0; j < k; j++) {
            uint64_t key = ((uint64_t)node << 32) | cps[j], h = mix64(key) & (hcap - 1);
            while (ht[h] != UINT32_MAX && hk[h] != key) h = (h + 1) & (hcap - 1);
            if (ht[h] == UINT32_MAX) {
                if (n_e == cap_e) {
                    cap_e *= 2;
                    uint32_t *a = rt_realloc(ek, (uint64_t)cap_e * 4), *b = a ? rt_realloc(ep, (uint64_t)cap_e * 4) : NULL,
                             *c = b ? rt_realloc(ec, (uint64_t)cap_e * 4) : NULL;
                    if (a) ek = a;
                    if (b) ep = b;
                    if (c) ec = c;
                    if (!a || !b || !c) goto oom;
                }
                hk[h] = key, ht[h] = n_nodes;
                ek[n_e] = cps[j], ep[n_e] = node, ec[n_e] = n_nodes, n_e++;
                n_nodes++;
            }
            node = ht[h];
        }
        node_of[i] = node;
    }
    v->n_nodes = n_nodes;
    v->edge_start = rt_calloc((uint64_t)n_nodes + 1, 4);
    v->edge_cp = rt_malloc((uint64_t)(n_e + 1) * 4);
    v->edge_child = rt_malloc((uint64_t)(n_e + 1) * 4);
    v->tok_start = rt_calloc((uint64_t)n_nodes + 1, 4);
    v->toks = rt_malloc(((uint64_t)nv + 1) * 4);
    v->cont = rt_malloc(((uint64_t)n_cont + 1) * 4);
    if (!v->edge_start || !v->edge_cp || !v->edge_child || !v->tok_start || !v->toks || !v->cont) goto oom;
    for (uint32_t e = 0; e < n_e; e++) v->edge_start[ep[e] + 1]++;
    for (uint32_t i = 0; i < n_nodes; i++) v->edge_start[i + 1] += v->edge_start[i];
    for (uint32_t e = 0; e < n_e; e++) { /* edges in insertion order within each node */
        uint32_t d = v->edge_start[ep[e]]++;
        v->edge_cp[d] = ek[e], v->edge_child[d] = ec[e];
    }
    for (uint32_t i = n_nodes; i > 0; i--) v->edge_start[i] = v->edge_start[i - 1];
    v->edge_start[0] = 0;
    for (int32_t i = 0; i < nv; i++)
        if (node_of[i] != UINT32_MAX) v->tok_start[node_of[i] + 1]++;
    for (uint32_t i = 0; i < n_nodes; i++) v->tok_start[i + 1] += v->tok_start[i];
    for (int32_t i = 0; i < nv; i++)
        if (node_of[i] != UINT32_MAX) v->toks[v->tok_start[node_of[i]]++] = (uint32_t)i;
    for (uint32_t i = n_nodes; i > 0; i--) v->tok_start[i] = v->tok_start[i - 1];
    v->tok_start[0] = 0;
    for (int32_t i = 0; i < nv; i++) {
        uint32_t len = v->piece_off[i + 1] - v->piece_off[i];
        if (len && !v->eog[i] && (v->pieces[v->piece_off[i]] >> 6) == 2) v->cont[v->n_cont++] = (uint32_t)i;
    }
    rt_free(node_of), rt_free(cps), rt_free(hk), rt_free(ht), rt_free(ek), rt_free(ep), rt_free(ec);
    return v;
oom:
    rt_free(node_of), rt_free(cps), rt_free(hk), rt_free(ht), rt_free(ek), rt_free(ep), rt_free(ec);
    gvocab_free(v);
    rt_err_as(REALM_ERR_OUT_OF_MEMORY, "grammar: out of memory decoding the vocabulary", NULL);
    return NULL;
}

/* ======================================================================= matcher */

/* Soft limits: past these, caches are flushed between steps (the state is re-interned). */
#define GS_SOFT_NODES (1u << 21)
#define GS_SOFT_SETPOOL (1u << 22)
#define GS_SOFT_TRANS (1u << 21)
#define GS_MASK_BYTES (32u << 20)
#define GS_ADVANCE_WORK (1u << 20)   /* expansion steps in one transition */

struct GrammarState {
    const GrammarVocab *v;
    uint64_t serial;
    uint32_t n_rules, n_elems, root;
    uint32_t *rule_start;
    GElem *el;
    /* stacks: node i = (pos[i], next[i]); 0 is the empty stack */
    uint32_t *npos, *nnext, *nmark, n_nodes, cap_nodes;
    uint32_t *nht, nht_cap;           /* (pos, next) -> node */
    uint32_t mark;
    /* sets of stacks: set i = pool[off[i] .. off[i] + len[i]), sorted; 0 is the dead set */
    uint32_t *soff, *slen, *smask, n_sets, cap_sets;
    uint32_t *pool, n_pool, cap_pool;
    uint32_t *sht, sht_cap;
    /* transitions (set, code point) -> set + 1 */
    uint64_t *tkey;
    uint32_t *tval, tcap, n_trans;
    /* allowed-token bitsets, one per set seen (smask: index + 1) */
    uint32_t *masks, n_masks, cap_masks, words;
    uint32_t *mask_allowed;
    /* scratch */
    uint32_t *todo, cap_todo, *out, n_out, cap_out;
    bool out_empty;
    uint32_t *walk, cap_walk;
    uint32_t *cps, cap_cps;
    /* the current state */
    uint32_t cur, start;
    uint32_t pv;
    int32_t pn;
};

static bool grow32(uint32_t **p, uint32_t *cap, uint64_t need) {
    if (need <= *cap) return true;
    uint64_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    if (nc > UINT32_MAX) return false;
    uint32_t *np = rt_realloc(*p, nc * 4);
    if (!np) return false;
    *p = np, *cap = (uint32_t)nc;
    return true;
}

static bool gs_oom(void) {
    rt_err_as(REALM_ERR_OUT_OF_MEMORY, "grammar: out of memory (matcher state)", NULL);
    return false;
}

static inline bool is_eos(const GElem *e) { return e->type == GE_END || e->type == GE_ALT; }

/* llama_grammar_match_char: does the character element at pos accept c? *after: the element after it. */
static inline bool match_char(const GElem *pos, uint32_t c, uint32_t *after, const GElem *base) {
    bool found = false, positive = pos->type == GE_CHAR || pos->type == GE_CHAR_ANY;
    do {
        if (pos[1].type == GE_CHAR_RNG_UPPER) {
            found = found || (pos->value <= c && c <= pos[1].value);
            pos += 2;
        } else if (pos->type == GE_CHAR_ANY) {
            found = true;
            pos += 1;
        } else {
            found = found || pos->value == c;
            pos += 1;
        }
    } while (pos->type == GE_CHAR_ALT);
    *after = (uint32_t)(pos - base);
    return found == positive;
}

/* llama_grammar_match_partial_char: could the partial code point (v, n) complete to a character pos accepts? */
static bool match_partial(const GElem *pos, uint32_t value, int32_t n) {
    bool positive = pos->type == GE_CHAR || pos->type == GE_CHAR_ANY;
    if (n < 0 || (n == 1 && value < 2)) return false;
    uint32_t low = value << (n * 6), high = low | ((1u << (n * 6)) - 1);
    if (low == 0) {
        if (n == 2) low = 1u << 11;
        else if (n == 3) low = 1u << 16;
    }
    do {
        if (pos[1].type == GE_CHAR_RNG_UPPER) {
            if (pos->value <= high && low <= pos[1].value) return positive;
            pos += 2;
        } else if (pos->type == GE_CHAR_ANY) {
            return true;
        } else {
            if (low <= pos->value && pos->value <= high) return positive;
            pos += 1;
        }
    } while (pos->type == GE_CHAR_ALT);
    return !positive;
}

static bool nht_rebuild(GrammarState *st, uint32_t cap) {
    uint32_t *ht = rt_malloc((uint64_t)cap * 4);
    if (!ht) return false;
    memset(ht, 0, (uint64_t)cap * 4);
    for (uint32_t i = 1; i < st->n_nodes; i++) {
        uint64_t h = mix64(((uint64_t)st->npos[i] << 32) | st->nnext[i]) & (cap - 1);
        while (ht[h]) h = (h + 1) & (cap - 1);
        ht[h] = i;
    }
    rt_free(st->nht);
    st->nht = ht, st->nht_cap = cap;
    return true;
}

/* The stack (pos on top of next). 0 on out of memory (0 is never a pushed stack). */
static uint32_t intern_node(GrammarState *st, uint32_t pos, uint32_t next) {
    uint64_t key = ((uint64_t)pos << 32) | next;
    uint32_t mask = st->nht_cap - 1;
    uint64_t h = mix64(key) & mask;
    for (uint32_t e; (e = st->nht[h]); h = (h + 1) & mask)
        if (st->npos[e] == pos && st->nnext[e] == next) return e;
    if (st->n_nodes + 1 > st->cap_nodes) {
        uint32_t c1 = st->cap_nodes, c2 = st->cap_nodes, c3 = st->cap_nodes;
        if (!grow32(&st->npos, &c1, st->n_nodes + 1) || !grow32(&st->nnext, &c2, st->n_nodes + 1) ||
            !grow32(&st->nmark, &c3, st->n_nodes + 1))
            return 0;
        st->cap_nodes = RT_MIN(c1, RT_MIN(c2, c3));
    }
    uint32_t id = st->n_nodes++;
    st->npos[id] = pos, st->nnext[id] = next, st->nmark[id] = 0;
    st->nht[h] = id;
    if ((uint64_t)st->n_nodes * 2 > st->nht_cap && !nht_rebuild(st, st->nht_cap * 2)) return 0;
    return id;
}

static bool out_add(GrammarState *st, uint32_t x) {
    if (st->n_out >= GRAMMAR_MAX_STACKS) {
        rt_err("grammar: more than 4096 parse stacks alive at once (a too ambiguous grammar, "
               "or a very large alternation); simplify the grammar", NULL);
        return false;
    }
    if (!grow32(&st->out, &st->cap_out, st->n_out + 1)) return gs_oom();
    st->out[st->n_out++] = x;
    return true;
}

/* llama_grammar_advance_stack: add every stack x expands to (top a character, or empty) to out. */
static bool advance(GrammarState *st, uint32_t x) {
    uint32_t n = 0, work = 0;
    if (!grow32(&st->todo, &st->cap_todo, 1)) return gs_oom();
    st->todo[n++] = x;
    while (n) {
        x = st->todo[--n];
        if (++work > GS_ADVANCE_WORK) {
            rt_err("grammar: expanding the rules took more than 1048576 steps at one character; simplify the grammar", NULL);
            return false;
        }
        if (!x) {
            if (!st->out_empty) {
                st->out_empty = true;
                if (!out_add(st, 0)) return false;
            }
            continue;
        }
        if (st->nmark[x] == st->mark) continue;
        st->nmark[x] = st->mark;
        const GElem *e = &st->el[st->npos[x]];
        if (e->type != GE_RULE_REF) {
            if (!out_add(st, x)) return false;
            continue;
        }
        uint32_t base = st->nnext[x];
        if (!is_eos(e + 1) && !(base = intern_node(st, st->npos[x] + 1, base))) return gs_oom();
        const GElem *sub = &st->el[st->rule_start[e->value]];
        for (;;) {
            uint32_t y = base;
            if (!is_eos(sub) && !(y = intern_node(st, (uint32_t)(sub - st->el), base))) return gs_oom();
            if (!grow32(&st->todo, &st->cap_todo, n + 1)) return gs_oom();
            st->todo[n++] = y;
            while (!is_eos(sub)) sub++;
            if (sub->type != GE_ALT) break;
            sub++;
        }
    }
    return true;
}

static void begin_set(GrammarState *st) {
    st->n_out = 0;
    st->out_empty = false;
    if (++st->mark == 0) { /* wrapped: clear the marks */
        memset(st->nmark, 0, (uint64_t)st->n_nodes * 4);
        st->mark = 1;
    }
}

static void sort_u32(uint32_t *a, uint32_t n) { /* heapsort: no recursion, n <= 4096 */
    for (uint32_t k = n / 2; k-- > 0;) {
        for (uint32_t r = k;;) {
            uint32_t c = 2 * r + 1;
            if (c >= n) break;
            if (c + 1 < n && a[c + 1] > a[c]) c++;
            if (a[r] >= a[c]) break;
            uint32_t t = a[r]; a[r] = a[c]; a[c] = t;
            r = c;
        }
    }
    for (uint32_t m = n; m-- > 1;) {
        uint32_t t = a[0]; a[0] = a[m]; a[m] = t;
        for (uint32_t r = 0;;) {
            uint32_t c = 2 * r + 1;
            if (c >= m) break;
            if (c + 1 < m && a[c + 1] > a[c]) c++;
            if (a[r] >= a[c]) break;
            t = a[r]; a[r] = a[c]; a[c] = t;
            r = c;
        }
    }
}

static uint64_t set_hash(const uint32_t *a, uint32_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    for (uint32_t i = 0; i < n; i++) h = mix64(h ^ a[i]) + i;
    return h;
}

static bool sht_rebuild(GrammarState *st, uint32_t cap) {
    uint32_t *ht = rt_malloc((uint64_t)cap * 4);
    if (!ht) return false;
    memset(ht, 0, (uint64_t)cap * 4);
    for (uint32_t i = 1; i < st->n_sets; i++) {
        uint64_t h = set_hash(st->pool + st->soff[i], st->slen[i]) & (cap - 1);
        while (ht[h]) h = (h + 1) & (cap - 1);
        ht[h] = i;
    }
    rt_free(st->sht);
    st->sht = ht, st->sht_cap = cap;
    return true;
}

/* Intern out[0..n_out) as a set. -1 on error; 0 is the dead (empty) set. */
static int64_t finish_set(GrammarState *st) {
    uint32_t n = st->n_out;
    if (!n) return 0;
    sort_u32(st->out, n);
    uint32_t mask = st->sht_cap - 1;
    uint64_t h = set_hash(st->out, n) & mask;
    for (uint32_t e; (e = st->sht[h]); h = (h + 1) & mask)
        if (st->slen[e] == n && !memcmp(st->pool + st->soff[e], st->out, (uint64_t)n * 4)) return e;
    if (!grow32(&st->pool, &st->cap_pool, (uint64_t)st->n_pool + n)) return gs_oom(), -1;
    if (st->n_sets + 1 > st->cap_sets) {
        uint32_t c1 = st->cap_sets, c2 = st->cap_sets, c3 = st->cap_sets;
        if (!grow32(&st->soff, &c1, st->n_sets + 1) || !grow32(&st->slen, &c2, st->n_sets + 1) ||
            !grow32(&st->smask, &c3, st->n_sets + 1))
            return gs_oom(), -1;
        st->cap_sets = RT_MIN(c1, RT_MIN(c2, c3));
    }
    uint32_t id = st->n_sets++;
    memcpy(st->pool + st->n_pool, st->out, (uint64_t)n * 4);
    st->soff[id] = st->n_pool, st->slen[id] = n, st->smask[id] = 0;
    st->n_pool += n;
    st->sht[h] = id;
    if ((uint64_t)st->n_sets * 2 > st->sht_cap && !sht_rebuild(st, st->sht_cap * 2)) return gs_oom(), -1;
    return id;
}

static inline bool set_has_empty(const GrammarState *st, uint32_t s) {
    return st->slen[s] && st->pool[st->soff[s]] == 0;
}

static bool tht_rebuild(GrammarState *st, uint32_t cap) {
    uint64_t *k = rt_malloc((uint64_t)cap * 8);
    uint32_t *v = rt_malloc((uint64_t)cap * 4);
    if (!k || !v) { rt_free(k), rt_free(v); return false; }
    memset(v, 0, (uint64_t)cap * 4);
    for (uint32_t i = 0; i < st->tcap; i++) {
        if (!st->tval[i]) continue;
        uint64_t h = mix64(st->tkey[i]) & (cap - 1);
        while (v[h]) h = (h + 1) & (cap - 1);
        k[h] = st->tkey[i], v[h] = st->tval[i];
    }
    rt_free(st->tkey), rt_free(st->tval);
    st->tkey = k, st->tval = v, st->tcap = cap;
    return true;
}

/* llama_grammar_accept of one code point on a whole set, cached. -1 on error. */
static int64_t trans(GrammarState *st, uint32_t s, uint32_t cp) {
    if (!s) return 0;
    uint64_t key = ((uint64_t)s << 32) | cp;
    uint32_t mask = st->tcap - 1;
    uint64_t h = mix64(key) & mask;
    for (; st->tval[h]; h = (h + 1) & mask)
        if (st->tkey[h] == key) return st->tval[h] - 1;
    begin_set(st);
    uint32_t off = st->soff[s], len = st->slen[s];
    for (uint32_t i = 0; i < len; i++) {
        uint32_t x = st->pool[off + i], after;
        if (!x) continue;
        if (!match_char(&st->el[st->npos[x]], cp, &after, st->el)) continue;
        uint32_t base = st->nnext[x];
        if (!is_eos(&st->el[after]) && !(base = intern_node(st, after, base))) return gs_oom(), -1;
        if (!advance(st, base)) return -1;
        off = st->soff[s]; /* (the pool does not move here, but stay safe) */
    }
    int64_t r = finish_set(st);
    if (r < 0) return -1;
    /* (re-probe: interning may not move this table, but the slot must still be free) */
    for (h = mix64(key) & mask; st->tval[h]; h = (h + 1) & mask) {}
    st->tkey[h] = key, st->tval[h] = (uint32_t)r + 1;
    st->n_trans++;
    if ((uint64_t)st->n_trans * 2 > st->tcap && !tht_rebuild(st, st->tcap * 2)) return gs_oom(), -1;
    return r;
}

/* Some non-empty stack of s could take the partial code point (v, n). */
static bool set_partial(const GrammarState *st, uint32_t s, uint32_t v, int32_t n) {
    for (uint32_t i = 0; i < st->slen[s]; i++) {
        uint32_t x = st->pool[st->soff[s] + i];
        if (x && match_partial(&st->el[st->npos[x]], v, n)) return true;
    }
    return false;
}

static void gs_clear_tables(GrammarState *st) {
    st->n_nodes = 1;
    memset(st->nht, 0, (uint64_t)st->nht_cap * 4);
    st->n_sets = 1;
    st->n_pool = 0;
    memset(st->sht, 0, (uint64_t)st->sht_cap * 4);
    memset(st->tval, 0, (uint64_t)st->tcap * 4);
    st->n_trans = 0;
    st->n_masks = 0;
}

static int64_t initial_set(GrammarState *st) {
    begin_set(st);
    const GElem *sub = &st->el[st->rule_start[st->root]];
    for (;;) {
        uint32_t y = 0;
        if (!is_eos(sub) && !(y = intern_node(st, (uint32_t)(sub - st->el), 0))) return gs_oom(), -1;
        if (!advance(st, y)) return -1;
        while (!is_eos(sub)) sub++;
        if (sub->type != GE_ALT) break;
        sub++;
    }
    return finish_set(st);
}

/* Past the soft limits: forget every cache, keep the current state (re-interned). */
static bool maybe_flush(GrammarState *st) {
    if (st->n_nodes < GS_SOFT_NODES && st->n_pool < GS_SOFT_SETPOOL && st->n_trans < GS_SOFT_TRANS) return true;
    /* save the current stacks as position lists, bottom last */
    uint32_t len = st->slen[st->cur], total = 0;
    uint32_t *save = NULL, cap = 0;
    for (uint32_t i = 0; i < len; i++) {
        uint32_t x = st->pool[st->soff[st->cur] + i], d = 0;
        for (uint32_t y = x; y; y = st->nnext[y]) d++;
        if (!grow32(&save, &cap, (uint64_t)total + d + 1)) { rt_free(save); return gs_oom(); }
        save[total++] = d;
        for (uint32_t y = x; y; y = st->nnext[y]) save[total++] = st->npos[y];
    }
    gs_clear_tables(st);
    begin_set(st);
    for (uint32_t at = 0; at < total;) {
        uint32_t d = save[at++], y = 0;
        for (uint32_t j = d; j-- > 0;)
            if (!(y = intern_node(st, save[at + j], y))) { rt_free(save); return gs_oom(); }
        at += d;
        if (!y) st->out_empty = true;
        if (!out_add(st, y)) { rt_free(save); return false; }
    }
    rt_free(save);
    int64_t c = finish_set(st);
    if (c < 0) return false;
    st->cur = (uint32_t)c;
    int64_t s0 = initial_set(st);
    if (s0 < 0) return false;
    st->start = (uint32_t)s0;
    return true;
}

void gstate_free(GrammarState *st) {
    if (!st) return;
    void *ps[] = { st->rule_start, st->el, st->npos, st->nnext, st->nmark, st->nht, st->soff, st->slen, st->smask,
                   st->pool, st->sht, st->tkey, st->tval, st->masks, st->mask_allowed, st->todo, st->out,
                   st->walk, st->cps };
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) rt_free(ps[i]);
    rt_free(st);
}

uint64_t gstate_serial(const GrammarState *st) { return st->serial; }
uint32_t gstate_n_vocab(const GrammarState *st) { return st->v->n_vocab; }

GrammarState *gstate_new(const Grammar *g, const GrammarVocab *v) {
    GrammarState *st = rt_calloc(1, sizeof *st);
    if (!st) { gs_oom(); return NULL; }
    st->v = v;
    st->serial = g->serial;
    st->n_rules = g->n_rules, st->n_elems = g->n_elems, st->root = g->root;
    st->rule_start = rt_malloc((uint64_t)g->n_rules * 4);
    st->el = rt_malloc((uint64_t)(g->n_elems + 1) * sizeof(GElem));
    st->nht_cap = 1 << 12, st->sht_cap = 1 << 10, st->tcap = 1 << 12;
    st->nht = rt_calloc(st->nht_cap, 4);
    st->sht = rt_calloc(st->sht_cap, 4);
    st->tkey = rt_malloc((uint64_t)st->tcap * 8);
    st->tval = rt_calloc(st->tcap, 4);
    st->words = (v->n_vocab + 31) / 32;
    if (!st->rule_start || !st->el || !st->nht || !st->sht || !st->tkey || !st->tval ||
        !grow32(&st->npos, &st->cap_nodes, 1024)) { gstate_free(st); gs_oom(); return NULL; }
    uint32_t c2 = 0, c3 = 0;
    if (!grow32(&st->nnext, &c2, 1024) || !grow32(&st->nmark, &c3, 1024)) { gstate_free(st); gs_oom(); return NULL; }
    st->cap_nodes = RT_MIN(st->cap_nodes, RT_MIN(c2, c3));
    uint32_t s1 = 0, s2 = 0, s3 = 0;
    if (!grow32(&st->soff, &s1, 256) || !grow32(&st->slen, &s2, 256) || !grow32(&st->smask, &s3, 256)) {
        gstate_free(st); gs_oom(); return NULL;
    }
    st->cap_sets = RT_MIN(s1, RT_MIN(s2, s3));
    memcpy(st->rule_start, g->rule_start, (uint64_t)g->n_rules * 4);
    memcpy(st->el, g->elems, (uint64_t)(g->n_elems + 1) * sizeof(GElem));
    st->npos[0] = st->nnext[0] = st->nmark[0] = 0;
    st->n_nodes = 1;
    st->soff[0] = st->slen[0] = st->smask[0] = 0;
    st->n_sets = 1;
    st->mark = 0;
    int64_t s0 = initial_set(st);
    if (s0 < 0) { gstate_free(st); return NULL; }
    st->start = st->cur = (uint32_t)s0;
    return st;
}

bool gstate_reset(GrammarState *st) {
    st->cur = st->start;
    st->pv = 0, st->pn = 0;
    return true;
}

int32_t gstate_complete(const GrammarState *st) {
    if (!st->cur) return -1;
    return set_has_empty(st, st->cur) ? 1 : 0;
}

static inline void allow(uint32_t *bits, uint32_t *count, uint32_t t) {
    if (!(bits[t >> 5] & (1u << (t & 31)))) { bits[t >> 5] |= 1u << (t & 31); (*count)++; }
}

/* Walk the token trie from set s: every token whose code points the set takes (and whose trailing
 * partial code point some stack could complete) into bits. */
static bool walk_trie(GrammarState *st, uint32_t s, uint32_t *bits, uint32_t *count) {
    const GrammarVocab *v = st->v;
    for (uint32_t j = v->tok_start[0]; j < v->tok_start[1]; j++) { /* tokens of only a partial code point */
        uint32_t t = v->toks[j];
        if (v->part_n[t] == 0 || set_partial(st, s, v->part_v[t], v->part_n[t])) allow(bits, count, t);
    }
    uint32_t n = 0;
    if (!grow32(&st->walk, &st->cap_walk, 2)) return gs_oom();
    st->walk[n++] = 0, st->walk[n++] = s;
    while (n) {
        uint32_t S = st->walk[--n], node = st->walk[--n];
        for (uint32_t e = v->edge_start[node]; e < v->edge_start[node + 1]; e++) {
            int64_t S2 = trans(st, S, v->edge_cp[e]);
            if (S2 < 0) return false;
            if (!S2) continue;
            uint32_t c = v->edge_child[e];
            for (uint32_t j = v->tok_start[c]; j < v->tok_start[c + 1]; j++) {
                uint32_t t = v->toks[j];
                if (v->part_n[t] == 0 || set_partial(st, (uint32_t)S2, v->part_v[t], v->part_n[t])) allow(bits, count, t);
            }
            if (v->edge_start[c] < v->edge_start[c + 1]) {
                if (!grow32(&st->walk, &st->cap_walk, (uint64_t)n + 2)) return gs_oom();
                st->walk[n++] = c, st->walk[n++] = (uint32_t)S2;
            }
        }
    }
    return true;
}

/* The tokens allowed after a partial code point: only those continuing it (a continuation byte first). */
static bool allowed_partial(GrammarState *st, uint32_t *bits, uint32_t *count) {
    const GrammarVocab *v = st->v;
    for (uint32_t i = 0; i < v->n_cont; i++) {
        uint32_t t = v->cont[i], len = v->piece_off[t + 1] - v->piece_off[t], pv;
        int32_t pn;
        if (!grow32(&st->cps, &st->cap_cps, (uint64_t)len + 2)) return gs_oom();
        int64_t k = decode_utf8(v->pieces + v->piece_off[t], len, st->pv, st->pn, st->cps, &pv, &pn);
        if (k < 0) continue;
        int64_t S = st->cur;
        for (int64_t j = 0; j < k && S > 0; j++) S = trans(st, (uint32_t)S, st->cps[j]);
        if (S < 0) return false;
        if (S && (pn == 0 || set_partial(st, (uint32_t)S, pv, pn))) allow(bits, count, t);
    }
    return true;
}

static void eog_bits(const GrammarState *st, uint32_t s, uint32_t *bits, uint32_t *count) {
    if (!set_has_empty(st, s)) return;
    for (uint32_t t = 0; t < st->v->n_vocab; t++)
        if (st->v->eog[t]) allow(bits, count, t);
}

bool gstate_bits(GrammarState *st, const uint32_t **out_bits, uint32_t *out_count) {
    if (!maybe_flush(st)) return false;
    const uint32_t W = st->words;
    uint32_t *bits = NULL, count = 0, scratch_idx = UINT32_MAX;
    if (st->pn == 0 && st->smask[st->cur]) {
        bits = st->masks + (uint64_t)(st->smask[st->cur] - 1) * W;
        count = st->mask_allowed[st->smask[st->cur] - 1];
    } else {
        /* a new bitset: cached per set when no partial code point is pending */
        bool cache = st->pn == 0;
        if (cache && (uint64_t)(st->n_masks + 1) * W * 4 > GS_MASK_BYTES) {
            for (uint32_t i = 0; i < st->n_sets; i++) st->smask[i] = 0;
            st->n_masks = 0;
        }
        uint32_t idx = st->n_masks;
        uint32_t c1 = st->cap_masks;
        if (!grow32(&st->masks, &c1, (uint64_t)(idx + 1) * W)) return gs_oom();
        st->cap_masks = c1;
        uint32_t cap_a = st->n_masks; /* mask_allowed grows with n_masks */
        uint32_t *na = rt_realloc(st->mask_allowed, (uint64_t)(idx + 1) * 4);
        (void)cap_a;
        if (!na) return gs_oom();
        st->mask_allowed = na;
        bits = st->masks + (uint64_t)idx * W;
        memset(bits, 0, (uint64_t)W * 4);
        uint32_t cur = st->cur;
        bool ok = st->pn == 0 ? walk_trie(st, cur, bits, &count) : allowed_partial(st, bits, &count);
        if (!ok) return false;
        bits = st->masks + (uint64_t)idx * W; /* (masks did not move, but re-derive after the walk) */
        eog_bits(st, cur, bits, &count);
        if (cache) {
            st->mask_allowed[idx] = count;
            st->smask[cur] = idx + 1;
            st->n_masks++;
        } else {
            scratch_idx = idx; /* used once, not kept */
        }
    }
    (void)scratch_idx;
    *out_bits = bits, *out_count = count;
    return true;
}

bool gstate_mask(GrammarState *st, float *logits, uint32_t n_logits) {
    const uint32_t W = st->words, *bits;
    uint32_t count;
    if (!gstate_bits(st, &bits, &count)) return false;
    if (!count) {
        rt_err("grammar: no token of the vocabulary can continue the text the grammar has matched so far", NULL);
        return false;
    }
    uint32_t nv = RT_MIN(n_logits, st->v->n_vocab);
    const float ninf = -__builtin_inff();
    for (uint32_t w = 0; w < W; w++) {
        uint32_t b = bits[w];
        if (b == 0xFFFFFFFFu) continue;
        uint32_t base = w * 32, end = RT_MIN(base + 32, nv);
        for (uint32_t t = base; t < end; t++)
            if (!(b & (1u << (t - base)))) logits[t] = ninf;
    }
    for (uint32_t t = nv; t < n_logits; t++) logits[t] = ninf;
    return true;
}

bool gstate_accept(GrammarState *st, int32_t tok) {
    const GrammarVocab *v = st->v;
    if (tok < 0 || (uint32_t)tok >= v->n_vocab) {
        rt_err("grammar: token id ", NULL), rt_err_append_i64(tok), rt_err_append(" is outside the vocabulary");
        return false;
    }
    if (!maybe_flush(st)) return false;
    if (v->eog[tok]) {
        if (set_has_empty(st, st->cur)) return true;
        rt_err("grammar: end of generation before the grammar is complete", NULL);
        return false;
    }
    uint32_t len = v->piece_off[tok + 1] - v->piece_off[tok], pv;
    int32_t pn;
    if (!grow32(&st->cps, &st->cap_cps, (uint64_t)len + 2)) return gs_oom();
    int64_t k = len ? decode_utf8(v->pieces + v->piece_off[tok], len, st->pv, st->pn, st->cps, &pv, &pn) : -1;
    int64_t S = k < 0 ? 0 : st->cur;
    for (int64_t j = 0; j < k && S > 0; j++) S = trans(st, (uint32_t)S, st->cps[j]);
    if (S < 0) return false;
    if (!S) {
        rt_err("grammar: token ", NULL), rt_err_append_i64(tok), rt_err_append(" is not allowed by the grammar here");
        return false;
    }
    st->cur = (uint32_t)S;
    st->pv = pv, st->pn = pn;
    return true;
}
