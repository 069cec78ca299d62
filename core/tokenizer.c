/* tokenizer.c: construction, special-token splitting, pieces, end-of-generation.
 *
 * Mirrors llama.cpp's llama-vocab.cpp (as bundled in llama-cpp-python
 * 0.3.36) in behaviour: token attributes from the GGUF token types plus the
 * same text-based overrides, the same special-token partition of the input
 * (longest token text first), and llama_token_to_piece's rendering. The
 * algorithms themselves live in tok_spm.c and tok_bpe.c. */
#include "tok_internal.h"

/* ------------------------------------------------------------ small helpers */

bool tok_vec_push(IdVec *v, int32_t id) {
    if (v->n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = rt_realloc(v->p, (size_t)cap * sizeof(int32_t));
        if (!p) {
            rt_err_as(REALM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory", NULL);
            return false;
        }
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = id;
    return true;
}

/* FNV-1a, continued from h */
uint64_t tok_hash(const uint8_t *p, uint64_t n, uint64_t h) {
    for (uint64_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static inline uint64_t mix(uint64_t h) {
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static inline bool str_eq(Str a, const uint8_t *p, uint64_t n) {
    return a.len == n && (n == 0 || memcmp(a.ptr, p, n) == 0);
}

int32_t tok_find(const Tokenizer *t, const uint8_t *p, uint64_t n) {
    uint64_t i = mix(tok_hash(p, n, TOK_HASH_SEED)) & t->tok_mask;
    for (;;) {
        int32_t id = t->tok_slots[i];
        if (id < 0) return -1;
        if (str_eq(t->text[id], p, n)) return id;
        i = (i + 1) & t->tok_mask;
    }
}

static int32_t find_cstr(const Tokenizer *t, const char *s) {
    return tok_find(t, (const uint8_t *)s, strlen(s));
}

static bool text_is(const Tokenizer *t, int32_t id, const char *s) {
    return rt_str_eq((const char *)t->text[id].ptr, t->text[id].len, s);
}

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* token text -> id; a later duplicate replaces an earlier one (llama.cpp's token_to_id[word] = i) */
static bool build_token_map(Tokenizer *t) {
    uint64_t cap = pow2_at_least((uint64_t)t->n_vocab * 2);
    t->tok_slots = rt_malloc(cap * sizeof(int32_t));
    if (!t->tok_slots) return false;
    memset(t->tok_slots, 0xFF, cap * sizeof(int32_t));
    t->tok_mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        Str s = t->text[id];
        uint64_t i = mix(tok_hash(s.ptr, s.len, TOK_HASH_SEED)) & t->tok_mask;
        for (;;) {
            int32_t cur = t->tok_slots[i];
            if (cur < 0 || str_eq(t->text[cur], s.ptr, s.len)) {
                t->tok_slots[i] = id;
                break;
            }
            i = (i + 1) & t->tok_mask;
        }
    }
    return true;
}

static bool is_c_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static void eog_set(Tokenizer *t, int32_t id) {
    if (id >= 0 && id < t->n_vocab) t->eog[id >> 3] |= (uint8_t)(1u << (id & 7));
}
static void eog_clear(Tokenizer *t, int32_t id) {
    if (id >= 0 && id < t->n_vocab) t->eog[id >> 3] &= (uint8_t)~(1u << (id & 7));
}
static bool eog_has(const Tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->eog[id >> 3] >> (id & 7)) & 1;
}

/* first (lowest id) token whose text is one of names[0..n) */
static int32_t find_any(const Tokenizer *t, const char *const *names, int n) {
    int32_t best = -1;
    for (int i = 0; i < n; i++) {
        int32_t id = find_cstr(t, names[i]);
        if (id >= 0 && (best < 0 || id < best)) best = id;
    }
    return best;
}

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *const EOT_NAMES[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
};
static const char *const FIM_PRE_NAMES[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>",
    "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>",
};
static const char *const FIM_SUF_NAMES[] = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>",
    "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>",
};
static const char *const FIM_MID_NAMES[] = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>",
    "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>",
};
static const char *const FIM_PAD_NAMES[] = { "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]" };
static const char *const FIM_REP_NAMES[] = { "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>" };
static const char *const FIM_SEP_NAMES[] = { "<|file_sep|>" };
static const char *const EOG_NAMES[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
};
static const char *const ALWAYS_RENDER_NAMES[] = { "<|channel|>", "<|message|>", "<|start|>", "<|constrain|>" };

/* the attribute, end-of-generation and special-list rules of llama_vocab::impl::load */
static bool setup_specials(Tokenizer *t, const TokenizerSpec *spec) {
    const int32_t n = t->n_vocab;

    /* EOT / EOM by text when the GGUF names none; such tokens become CONTROL */
    if (t->eot < 0) {
        int32_t id = find_any(t, EOT_NAMES, N_OF(EOT_NAMES));
        if (id >= 0) {
            t->eot = id;
            t->attr[id] |= ATTR_CONTROL;
        }
    }
    if (t->eom < 0) {
        int32_t id = find_cstr(t, "<|eom_id|>");
        if (id >= 0) {
            t->eom = id;
            t->attr[id] |= ATTR_CONTROL;
        }
    }
    /* FIM tokens by text (their ids are not part of TokenizerSpec) */
    int32_t fim_pre = find_any(t, FIM_PRE_NAMES, N_OF(FIM_PRE_NAMES));
    int32_t fim_suf = find_any(t, FIM_SUF_NAMES, N_OF(FIM_SUF_NAMES));
    int32_t fim_mid = find_any(t, FIM_MID_NAMES, N_OF(FIM_MID_NAMES));
    int32_t fim_pad = find_any(t, FIM_PAD_NAMES, N_OF(FIM_PAD_NAMES));
    int32_t fim_rep = find_any(t, FIM_REP_NAMES, N_OF(FIM_REP_NAMES));
    int32_t fim_sep = find_any(t, FIM_SEP_NAMES, N_OF(FIM_SEP_NAMES));
    int32_t fims[6] = { fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep };
    for (int i = 0; i < 6; i++)
        if (fims[i] >= 0) t->attr[fims[i]] |= ATTR_CONTROL;

    t->eog = rt_calloc((size_t)n / 8 + 1, 1);
    if (!t->eog) return false;
    eog_set(t, fim_pad);
    eog_set(t, fim_rep);
    eog_set(t, fim_sep);
    for (int i = 0; i < N_OF(EOG_NAMES); i++) {
        int32_t id = find_cstr(t, EOG_NAMES[i]);
        if (id >= 0) {
            eog_set(t, id);
            t->attr[id] |= ATTR_CONTROL;
        }
    }
    for (int i = 0; i < N_OF(ALWAYS_RENDER_NAMES); i++) {
        int32_t id = find_cstr(t, ALWAYS_RENDER_NAMES[i]);
        if (id >= 0) t->attr[id] = ATTR_USER_DEFINED;
    }
    eog_set(t, t->eos);
    eog_set(t, t->eot);
    eog_set(t, t->eom);

    /* o200k_harmony / solar-open: "<|end|>" is not an end token there */
    {
        bool has_return = false, has_call = false, has_flush = false;
        int32_t end_id = -1;
        for (int32_t id = 0; id < n; id++) {
            if (!eog_has(t, id)) continue;
            if (text_is(t, id, "<|return|>")) has_return = true;
            else if (text_is(t, id, "<|call|>") || text_is(t, id, "<|calls|>")) has_call = true;
            else if (text_is(t, id, "<|flush|>")) has_flush = true;
            else if (text_is(t, id, "<|end|>")) end_id = id;
        }
        if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
            eog_clear(t, end_id);
            t->attr[end_id] = ATTR_USER_DEFINED;
        }
    }
    /* gemma4 / plamo: "</s>" is a normal token */
    {
        bool has_marker = false;
        int32_t s_id = -1;
        for (int32_t id = 0; id < n; id++) {
            if (!eog_has(t, id)) continue;
            if (text_is(t, id, "<|tool_response>") || text_is(t, id, "<|plamo:eos|>")) has_marker = true;
            else if (text_is(t, id, "</s>")) s_id = id;
        }
        if (has_marker && s_id >= 0) {
            eog_clear(t, s_id);
            t->attr[s_id] = ATTR_NORMAL;
        }
    }

    /* special tokens, longest text first (ties: lower id first) */
    int32_t ns = 0;
    for (int32_t id = 0; id < n; id++)
        if (t->attr[id] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) ns++;
    t->special = rt_malloc((size_t)(ns ? ns : 1) * sizeof(int32_t));
    if (!t->special) return false;
    t->n_special = 0;
    for (int32_t id = 0; id < n; id++)
        if (t->attr[id] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) t->special[t->n_special++] = id;
    /* stable bottom-up merge sort by descending text length */
    if (ns > 1) {
        int32_t *tmp = rt_malloc((size_t)ns * sizeof(int32_t));
        if (!tmp) return false;
        for (int32_t w = 1; w < ns; w *= 2) {
            for (int32_t lo = 0; lo < ns; lo += 2 * w) {
                int32_t mid = RT_MIN(lo + w, ns), hi = RT_MIN(lo + 2 * w, ns);
                int32_t a = lo, b = mid, k = lo;
                while (a < mid && b < hi) {
                    /* stable: take from the left run unless the right one is strictly longer */
                    if (t->text[t->special[b]].len > t->text[t->special[a]].len) tmp[k++] = t->special[b++];
                    else tmp[k++] = t->special[a++];
                }
                while (a < mid) tmp[k++] = t->special[a++];
                while (b < hi) tmp[k++] = t->special[b++];
            }
            memcpy(t->special, tmp, (size_t)ns * sizeof(int32_t));
        }
        rt_free(tmp);
    }

    /* per-model strip attributes (llama.cpp sets them by model and pre-tokenizer name) */
    {
        bool phi3 = false;
        Str nm = spec->name;
        for (uint64_t i = 0; nm.ptr && i < nm.len; i++) {
            static const char *pats[2] = { "phi-3", "phi3" };
            for (int k = 0; k < 2; k++) {
                uint64_t pl = strlen(pats[k]);
                if (i + pl > nm.len) continue;
                bool eq = true;
                for (uint64_t j = 0; j < pl && eq; j++) {
                    uint8_t c = nm.ptr[i + j];
                    if (c >= 'A' && c <= 'Z') c = (uint8_t)(c + 32);
                    eq = c == (uint8_t)pats[k][j];
                }
                if (eq) phi3 = true;
            }
        }
        Str pre = spec->pre;
        bool jina = false;
        static const char *jpats[3] = { "jina-v2-de", "jina-v2-es", "jina-v2-code" };
        for (int k = 0; k < 3 && t->kind == TOK_KIND_BPE; k++) {
            uint64_t pl = strlen(jpats[k]);
            for (uint64_t i = 0; pre.ptr && i + pl <= pre.len; i++)
                if (memcmp(pre.ptr + i, jpats[k], pl) == 0) jina = true;
        }
        if (jina) {
            int32_t id = find_cstr(t, "<mask>");
            if (id >= 0) t->attr[id] |= ATTR_LSTRIP;
        } else if (phi3) {
            for (int32_t i = 0; i < t->n_special; i++) t->attr[t->special[i]] |= ATTR_RSTRIP;
            int32_t id = find_cstr(t, "</s>");
            if (id >= 0) t->attr[id] |= ATTR_RSTRIP;
            static const char *keep[3] = { "<unk>", "<s>", "<|endoftext|>" };
            for (int k = 0; k < 3; k++) {
                id = find_cstr(t, keep[k]);
                if (id >= 0) t->attr[id] &= (uint16_t)~ATTR_RSTRIP;
            }
        }
    }
    return true;
}

static uint16_t attr_of_type(int32_t type) {
    switch (type) {
    case TOK_NORMAL: return ATTR_NORMAL;
    case TOK_UNKNOWN: return ATTR_UNKNOWN;
    case TOK_CONTROL: return ATTR_CONTROL;
    case TOK_USER_DEFINED: return ATTR_USER_DEFINED;
    case TOK_UNUSED: return ATTR_UNUSED;
    case TOK_BYTE: return ATTR_BYTE;
    default: return ATTR_UNDEFINED;
    }
}

static int32_t pick_id(int32_t from_gguf, int32_t dflt, int32_t n) {
    if (from_gguf >= 0 && from_gguf < n) return from_gguf;
    return (dflt >= 0 && dflt < n) ? dflt : -1;
}

Tokenizer *tokenizer_new(const TokenizerSpec *spec) {
    if (!spec || (spec->kind != TOK_KIND_SPM && spec->kind != TOK_KIND_BPE)) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "tokenizer: unsupported tokenizer kind", NULL);
        return NULL;
    }
    if (spec->n_vocab <= 0 || !spec->tokens) {
        rt_err("tokenizer: empty vocabulary", NULL);
        return NULL;
    }
    if (spec->kind == TOK_KIND_BPE && spec->n_merges > 0 && !spec->merges) {
        rt_err("tokenizer: merges missing", NULL);
        return NULL;
    }
    Tokenizer *t = rt_calloc(1, sizeof(Tokenizer));
    if (!t) goto oom;
    const int32_t n = spec->n_vocab;
    t->kind = spec->kind;
    t->n_vocab = n;

    bool add_bos_default = true, bos_none = false;
    if (t->kind == TOK_KIND_BPE) {
        if (!bpe_pre_config(t, spec->pre, &add_bos_default, &bos_none)) {
            rt_free(t);
            return NULL;
        }
    } else {
        t->pre = PRE_NONE;
    }

    /* texts, with llama.cpp's "[EMPTY_<id>]" for empty ones */
    t->text = rt_malloc((size_t)n * sizeof(Str));
    t->score = rt_malloc((size_t)n * sizeof(float));
    t->attr = rt_malloc((size_t)n * sizeof(uint16_t));
    if (!t->text || !t->score || !t->attr) goto oom;
    uint64_t arena = 0;
    for (int32_t i = 0; i < n; i++)
        if (spec->tokens[i].len == 0) arena += 20;
    if (arena) {
        t->text_arena = rt_malloc(arena);
        if (!t->text_arena) goto oom;
    }
    uint8_t *ap = t->text_arena;
    for (int32_t i = 0; i < n; i++) {
        if (spec->tokens[i].len) {
            t->text[i] = spec->tokens[i];
        } else {
            uint8_t *s = ap;
            memcpy(ap, "[EMPTY_", 7);
            ap += 7;
            char dig[12];
            int nd = 0;
            uint32_t v = (uint32_t)i;
            do { dig[nd++] = (char)('0' + v % 10); v /= 10; } while (v);
            while (nd) *ap++ = (uint8_t)dig[--nd];
            *ap++ = ']';
            t->text[i] = (Str){ s, (uint64_t)(ap - s) };
        }
        t->score[i] = spec->scores ? spec->scores[i] : 0.0f;
        t->attr[i] = spec->types ? attr_of_type(spec->types[i]) : ATTR_NORMAL;
    }
    if (!build_token_map(t)) goto oom;

    /* special ids: llama.cpp's defaults per kind, replaced by in-range GGUF values */
    if (t->kind == TOK_KIND_SPM) {
        t->bos = pick_id(spec->bos, 1, n);
        t->eos = pick_id(spec->eos, 2, n);
        t->unk = pick_id(spec->unk, 0, n);
        t->add_bos = true;
        t->add_space_prefix = true;
    } else {
        t->bos = pick_id(spec->bos, bos_none ? -1 : 11, n);
        t->eos = pick_id(spec->eos, 11, n);
        t->unk = pick_id(spec->unk, -1, n);
        t->add_bos = add_bos_default;
        t->add_space_prefix = false;
    }
    t->eot = pick_id(spec->eot, -1, n);
    t->eom = pick_id(spec->eom, -1, n);
    t->add_eos = false;
    if (spec->add_bos_set) t->add_bos = spec->add_bos;
    if (spec->add_eos_set) t->add_eos = spec->add_eos;
    if (spec->add_space_prefix_set) t->add_space_prefix = spec->add_space_prefix;

    if (!setup_specials(t, spec)) goto oom;

    if (t->kind == TOK_KIND_SPM) {
        if (!spm_init(t)) goto fail;
    } else {
        t->n_merges = spec->n_merges > 0 ? spec->n_merges : 0;
        if (t->n_merges) { /* the caller may free its array of Str after tokenizer_new */
            t->merges = rt_malloc((size_t)t->n_merges * sizeof(Str));
            if (!t->merges) goto oom;
            memcpy(t->merges, spec->merges, (size_t)t->n_merges * sizeof(Str));
        }
        if (!bpe_init(t)) goto fail;
    }
    return t;

oom:
    rt_err_as(REALM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory building the vocabulary", NULL);
fail:
    tokenizer_free(t);
    return NULL;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    rt_free(t->text);
    rt_free(t->text_arena);
    rt_free(t->score);
    rt_free(t->attr);
    rt_free(t->eog);
    rt_free(t->tok_slots);
    rt_free(t->merges);
    rt_free(t->merge_split);
    rt_free(t->merge_slots);
    rt_free(t->special);
    rt_free(t);
}

int32_t tokenizer_n_vocab(const Tokenizer *t) { return t ? t->n_vocab : 0; }

bool tokenizer_is_eog(const Tokenizer *t, int32_t id) { return t && eog_has(t, id); }

/* ----------------------------------------------------- special-token split */

typedef struct {
    int32_t id;   /* token, or -1 for raw text */
    uint64_t off, len;
} Frag;

typedef struct {
    Frag *p;
    int64_t n, cap;
} FragVec;

static bool frag_push(FragVec *v, int32_t id, uint64_t off, uint64_t len) {
    if (v->n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 16;
        Frag *p = rt_realloc(v->p, (size_t)cap * sizeof(Frag));
        if (!p) {
            rt_err_as(REALM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory", NULL);
            return false;
        }
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = (Frag){ id, off, len };
    return true;
}

/* first occurrence of needle in hay[from, to), or UINT64_MAX */
static uint64_t find_bytes(const uint8_t *hay, uint64_t from, uint64_t to, Str needle) {
    if (needle.len == 0 || to < from || to - from < needle.len) return UINT64_MAX;
    const uint8_t first = needle.ptr[0];
    const uint64_t last = to - needle.len;
    for (uint64_t i = from; i <= last; i++)
        if (hay[i] == first && memcmp(hay + i + 1, needle.ptr + 1, needle.len - 1) == 0) return i;
    return UINT64_MAX;
}

/* llama.cpp's tokenizer_st_partition: for each special token (longest first)
 * split every raw fragment at its occurrences, left to right. */
static bool partition(const Tokenizer *t, const uint8_t *text, bool parse_special, FragVec *a, FragVec *b) {
    for (int32_t si = 0; si < t->n_special; si++) {
        const int32_t sid = t->special[si];
        const uint16_t at = t->attr[sid];
        if (!parse_special && (at & (ATTR_CONTROL | ATTR_UNKNOWN))) continue;
        const Str s = t->text[sid];
        b->n = 0;
        bool changed = false;
        for (int64_t fi = 0; fi < a->n; fi++) {
            Frag f = a->p[fi];
            if (f.id >= 0) {
                if (!frag_push(b, f.id, 0, 0)) return false;
                continue;
            }
            uint64_t base = f.off, blen = f.len;
            for (;;) {
                uint64_t m = find_bytes(text, base, base + blen, s);
                if (m == UINT64_MAX) {
                    if (blen > 0 && !frag_push(b, -1, base, blen)) return false;
                    break;
                }
                changed = true;
                uint64_t llen = m - base;
                if (at & ATTR_LSTRIP)
                    while (llen > 0 && is_c_space(text[base + llen - 1])) llen--;
                if (llen > 0 && !frag_push(b, -1, base, llen)) return false;
                if (!frag_push(b, sid, 0, 0)) return false;
                uint64_t roff = m + s.len, rlen = base + blen - roff;
                if (rlen == 0) break;
                if (at & ATTR_RSTRIP)
                    while (rlen > 0 && is_c_space(text[roff])) roff++, rlen--;
                base = roff;
                blen = rlen;
            }
        }
        if (changed) {
            FragVec tmp = *a;
            *a = *b;
            *b = tmp;
        }
    }
    return true;
}

int64_t tokenizer_encode(Tokenizer *t, const uint8_t *text, uint64_t len, bool add_special,
                         bool parse_special, int32_t *out, int64_t cap) {
    if (!t || (!text && len)) {
        rt_err("tokenizer_encode: bad arguments", NULL);
        return -1;
    }
    IdVec ids = { 0 };
    FragVec fa = { 0 }, fb = { 0 };
    bool ok = true;
    if (len > 0) ok = frag_push(&fa, -1, 0, len) && partition(t, text, parse_special, &fa, &fb);

    if (ok && t->kind == TOK_KIND_SPM) {
        bool prev_special = true; /* the first fragment gets the space prefix */
        if (add_special && t->add_bos && t->bos >= 0) ok = tok_vec_push(&ids, t->bos);
        for (int64_t i = 0; ok && i < fa.n; i++) {
            if (fa.p[i].id >= 0) {
                ok = tok_vec_push(&ids, fa.p[i].id);
                prev_special = true;
            } else {
                ok = spm_encode(t, text + fa.p[i].off, fa.p[i].len, t->add_space_prefix && prev_special, &ids);
                prev_special = false;
            }
        }
        if (ok && add_special && t->add_eos && t->eos >= 0) ok = tok_vec_push(&ids, t->eos);
    } else if (ok) {
        if (add_special && t->add_bos && t->bos >= 0) ok = tok_vec_push(&ids, t->bos);
        for (int64_t i = 0; ok && i < fa.n; i++) {
            if (fa.p[i].id >= 0) ok = tok_vec_push(&ids, fa.p[i].id);
            else ok = bpe_encode(t, text + fa.p[i].off, fa.p[i].len, &ids);
        }
        if (ok && add_special && t->add_eos && t->eos >= 0) ok = tok_vec_push(&ids, t->eos);
    }
    rt_free(fa.p);
    rt_free(fb.p);
    if (!ok) {
        rt_free(ids.p);
        return -1;
    }
    if (out && cap > 0) memcpy(out, ids.p, (size_t)RT_MIN(cap, ids.n) * sizeof(int32_t));
    int64_t total = ids.n;
    rt_free(ids.p);
    return total;
}

/* ------------------------------------------------------------------ pieces */

typedef struct {
    uint8_t *out;
    int64_t cap, n;
} Sink;

static void sink_put(Sink *k, const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++, k->n++)
        if (k->n < k->cap) k->out[k->n] = p[i];
}

static int hexval(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xAB>" -> 0xAB, as llama.cpp's strtol(text.substr(3, 2), 16) */
static uint8_t byte_of_token(Str s) {
    int v = 0;
    for (uint64_t i = 3; i < 5 && i < s.len; i++) {
        int h = hexval(s.ptr[i]);
        if (h < 0) break;
        v = v * 16 + h;
    }
    return (uint8_t)v;
}

int64_t tokenizer_piece(const Tokenizer *t, int32_t id, bool special, uint8_t *out, int64_t cap) {
    if (!t || id < 0 || id >= t->n_vocab) return -1;
    Sink k = { out, out ? cap : 0, 0 };
    const uint16_t at = t->attr[id];
    const Str s = t->text[id];
    if (!special && (at & (ATTR_UNKNOWN | ATTR_CONTROL))) return 0;
    if (at & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) {
        sink_put(&k, s.ptr, s.len);
    } else if (at & ATTR_NORMAL) {
        if (t->kind == TOK_KIND_SPM) {
            /* "▁" (E2 96 81) -> ' ' */
            for (uint64_t i = 0; i < s.len;) {
                if (i + 2 < s.len && s.ptr[i] == 0xE2 && s.ptr[i + 1] == 0x96 && s.ptr[i + 2] == 0x81) {
                    sink_put(&k, (const uint8_t *)" ", 1);
                    i += 3;
                } else {
                    sink_put(&k, s.ptr + i, 1);
                    i++;
                }
            }
        } else {
            /* GPT-2 byte alphabet back to bytes */
            uint64_t pos = 0;
            while (pos < s.len) {
                uint32_t c = unicode_utf8_next(s.ptr, s.len, &pos);
                int b = unicode_cpt_to_byte(c);
                if (b >= 0) {
                    uint8_t bb = (uint8_t)b;
                    sink_put(&k, &bb, 1);
                } else {
                    static const char hx[] = "0123456789abcdef";
                    uint8_t u[4];
                    int nu = unicode_utf8_put(c, u);
                    sink_put(&k, (const uint8_t *)"[UNK_BYTE_0x", 12);
                    for (int j = 0; j < nu; j++) {
                        uint8_t h[2] = { (uint8_t)hx[u[j] >> 4], (uint8_t)hx[u[j] & 15] };
                        sink_put(&k, h, 2);
                    }
                    sink_put(&k, s.ptr, s.len);
                    sink_put(&k, (const uint8_t *)"]", 1);
                }
            }
        }
    } else if (at & ATTR_BYTE) {
        uint8_t b = byte_of_token(s);
        sink_put(&k, &b, 1);
    }
    return k.n;
}

void tokenizer_special(const Tokenizer *t, int32_t *bos, int32_t *eos, bool *add_bos, bool *add_eos) {
    if (bos) *bos = t ? t->bos : -1;
    if (eos) *eos = t ? t->eos : -1;
    if (add_bos) *add_bos = t && t->add_bos;
    if (add_eos) *add_eos = t && t->add_eos;
}

/* ------------------------------------------------------ the merge heap */
static inline bool bigram_before(const TokBigram *a, const TokBigram *b) {
    return a->priority > b->priority || (a->priority == b->priority && a->left < b->left);
}

bool tok_heap_push(TokHeap *h, TokBigram x) {
    if (h->n == h->cap) {
        int64_t cap = h->cap ? h->cap * 2 : 64;
        TokBigram *p = rt_realloc(h->p, (size_t)cap * sizeof(TokBigram));
        if (!p) {
            rt_err_as(REALM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory", NULL);
            return false;
        }
        h->p = p;
        h->cap = cap;
    }
    int64_t i = h->n++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!bigram_before(&x, &h->p[parent])) break;
        h->p[i] = h->p[parent];
        i = parent;
    }
    h->p[i] = x;
    return true;
}

TokBigram tok_heap_pop(TokHeap *h) {
    TokBigram top = h->p[0];
    TokBigram x = h->p[--h->n];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bigram_before(&h->p[c + 1], &h->p[c])) c++;
        if (!bigram_before(&h->p[c], &x)) break;
        h->p[i] = h->p[c];
        i = c;
    }
    if (h->n > 0) h->p[i] = x;
    return top;
}
