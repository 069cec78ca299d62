/* tok_bpe.c: the byte-level BPE "gpt2" tokenizer (llama.cpp's BPE path).
 *
 * A raw-text fragment is decoded to code points (invalid UTF-8 bytes become
 * U+FFFD, as in llama.cpp) and cut into words by the pre-tokenizer steps of
 * its tokenizer.ggml.pre family. Each word is re-encoded as UTF-8, every
 * byte mapped to its GPT-2 printable code point, then merged pairwise by
 * rank (lowest rank first, ties leftmost first). Symbols that are not tokens
 * fall back to their single-byte tokens where those exist.
 *
 * The pre-tokenizer steps are the splits llama.cpp performs, written by hand:
 * its own fast paths (GPT-2, Llama-3, Qwen2, Qwen3.5 regexes) and the simple
 * std::regex patterns other families use (digit isolation, punctuation runs,
 * character-class runs), with std::regex's view of the text: outside the fast
 * paths, non-ASCII code points are seen through their category (the
 * "collapsed" text) and non-ASCII whitespace as a vertical tab. */
#include "tok_internal.h"

/* ------------------------------------------------------ pre-tokenizer names */

enum { PF_IGNORE_MERGES = 1, PF_ADD_BOS = 2, PF_BOS_NONE = 4 };

typedef struct {
    const char *name;
    uint8_t pre, flags;
} PreName;

static const PreName PRE_NAMES[] = {
    { "default", PRE_DEFAULT, 0 },
    { "llama3", PRE_LLAMA3, PF_IGNORE_MERGES | PF_ADD_BOS },
    { "llama-v3", PRE_LLAMA3, PF_IGNORE_MERGES | PF_ADD_BOS },
    { "llama-bpe", PRE_LLAMA3, PF_IGNORE_MERGES | PF_ADD_BOS },
    { "falcon3", PRE_LLAMA3, PF_IGNORE_MERGES | PF_ADD_BOS },
    { "falcon-h1", PRE_LLAMA3, PF_IGNORE_MERGES | PF_ADD_BOS },
    { "pixtral", PRE_LLAMA3, PF_IGNORE_MERGES | PF_ADD_BOS },
    { "midm-2.0", PRE_LLAMA3, PF_IGNORE_MERGES | PF_ADD_BOS },
    { "lfm2", PRE_LLAMA3, PF_IGNORE_MERGES | PF_ADD_BOS },
    { "jina-v5-nano", PRE_LLAMA3, PF_IGNORE_MERGES | PF_ADD_BOS },
    { "dbrx", PRE_LLAMA3, 0 },
    { "smaug-bpe", PRE_LLAMA3, 0 },
    { "chatglm-bpe", PRE_LLAMA3, PF_BOS_NONE },
    { "glm4", PRE_LLAMA3, PF_BOS_NONE | PF_IGNORE_MERGES },
    { "glm5", PRE_LLAMA3, PF_BOS_NONE | PF_IGNORE_MERGES },
    { "deepseek-llm", PRE_DEEPSEEK_LLM, 0 },
    { "deepseek-coder", PRE_DEEPSEEK_CODER, 0 },
    { "falcon", PRE_FALCON, 0 },
    { "mpt", PRE_GPT2, 0 },
    { "gpt-2", PRE_GPT2, 0 },
    { "phi-2", PRE_GPT2, 0 },
    { "jina-es", PRE_GPT2, 0 },
    { "jina-de", PRE_GPT2, 0 },
    { "gigachat", PRE_GPT2, 0 },
    { "jina-v2-es", PRE_GPT2, 0 },
    { "jina-v2-de", PRE_GPT2, 0 },
    { "a.x-4.0", PRE_GPT2, 0 },
    { "mellum", PRE_GPT2, 0 },
    { "modern-bert", PRE_GPT2, 0 },
    { "jina-v1-en", PRE_GPT2, 0 },
    { "jina-v2-code", PRE_GPT2, 0 },
    { "roberta-bpe", PRE_GPT2, 0 },
    { "olmo", PRE_GPT2, 0 },
    { "jais", PRE_GPT2, 0 },
    { "exaone4", PRE_GPT2, 0 },
    { "trillion", PRE_GPT2, 0 },
    { "granite-docling", PRE_GPT2, 0 },
    { "starcoder", PRE_STARCODER, 0 },
    { "refact", PRE_STARCODER, 0 },
    { "command-r", PRE_STARCODER, 0 },
    { "smollm", PRE_STARCODER, 0 },
    { "codeshell", PRE_STARCODER, 0 },
    { "exaone", PRE_STARCODER, 0 },
    { "minerva-7b", PRE_STARCODER, 0 },
    { "mellum2", PRE_STARCODER, 0 },
    { "qwen2", PRE_QWEN2, 0 },
    { "deepseek-r1-qwen", PRE_QWEN2, 0 },
    { "kormo", PRE_QWEN2, 0 },
    { "f2llmv2", PRE_QWEN2, 0 },
    { "stablelm2", PRE_QWEN2, 0 },
    { "megrez", PRE_QWEN2, 0 },
    { "hunyuan", PRE_QWEN2, 0 },
    { "solar-open", PRE_QWEN2, 0 },
    { "grok-2", PRE_QWEN2, 0 },
    { "qwen35", PRE_QWEN35, 0 },
    { "poro-chat", PRE_PORO, 0 },
    { "bloom", PRE_PORO, 0 },
    { "gpt3-finnish", PRE_PORO, 0 },
    { "viking", PRE_VIKING, 0 },
    { "laguna", PRE_LAGUNA, 0 },
};

bool bpe_pre_config(Tokenizer *t, Str pre, bool *add_bos_default, bool *bos_none) {
    *add_bos_default = false;
    *bos_none = false;
    t->ignore_merges = false;
    if (pre.len == 0) {
        t->pre = PRE_DEFAULT; /* llama.cpp warns and uses 'default' */
        return true;
    }
    for (size_t i = 0; i < sizeof(PRE_NAMES) / sizeof(PRE_NAMES[0]); i++) {
        if (rt_str_eq((const char *)pre.ptr, pre.len, PRE_NAMES[i].name)) {
            t->pre = PRE_NAMES[i].pre;
            t->ignore_merges = (PRE_NAMES[i].flags & PF_IGNORE_MERGES) != 0;
            *add_bos_default = (PRE_NAMES[i].flags & PF_ADD_BOS) != 0;
            *bos_none = (PRE_NAMES[i].flags & PF_BOS_NONE) != 0;
            return true;
        }
    }
    rt_err_as(REALM_ERR_UNSUPPORTED, "tokenizer: unsupported pre-tokenizer '", "", NULL);
    rt_err_append_n((const char *)pre.ptr, pre.len);
    rt_err_append("' (tokenizer.ggml.pre)");
    return false;
}

/* ------------------------------------------------------------------ merges */

static inline uint64_t pair_hash(const uint8_t *l, uint64_t ln, const uint8_t *r, uint64_t rn) {
    uint64_t h = tok_hash(l, ln, TOK_HASH_SEED);
    h = (h ^ 0x1FF) * 0x100000001b3ull; /* separator no byte can produce */
    h = tok_hash(r, rn, h);
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static inline bool merge_is(const Tokenizer *t, int32_t rank, const uint8_t *l, uint64_t ln, const uint8_t *r,
                            uint64_t rn) {
    const Str m = t->merges[rank];
    const uint64_t sp = (uint64_t)t->merge_split[rank];
    return sp == ln && m.len == ln + 1 + rn && memcmp(m.ptr, l, ln) == 0 && memcmp(m.ptr + sp + 1, r, rn) == 0;
}

static int32_t bpe_rank(const Tokenizer *t, const uint8_t *l, uint64_t ln, const uint8_t *r, uint64_t rn) {
    if (!t->merge_slots) return -1;
    uint64_t i = pair_hash(l, ln, r, rn) & t->merge_mask;
    for (;;) {
        int32_t rank = t->merge_slots[i];
        if (rank < 0) return -1;
        if (merge_is(t, rank, l, ln, r, rn)) return rank;
        i = (i + 1) & t->merge_mask;
    }
}

bool bpe_init(Tokenizer *t) {
    if (t->n_merges <= 0) return true;
    t->merge_split = rt_malloc((size_t)t->n_merges * sizeof(int32_t));
    uint64_t cap = 16;
    while (cap < (uint64_t)t->n_merges * 2) cap <<= 1;
    t->merge_slots = rt_malloc(cap * sizeof(int32_t));
    if (!t->merge_split || !t->merge_slots) {
        rt_err_as(REALM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory building the merge table", NULL);
        return false;
    }
    memset(t->merge_slots, 0xFF, cap * sizeof(int32_t));
    t->merge_mask = cap - 1;
    for (int32_t r = 0; r < t->n_merges; r++) {
        const Str m = t->merges[r];
        int32_t sp = -1;
        for (uint64_t i = 1; i < m.len; i++)
            if (m.ptr[i] == ' ') {
                sp = (int32_t)i;
                break;
            }
        t->merge_split[r] = sp;
        if (sp < 0) continue; /* llama.cpp maps it to ("", ""), which no symbol pair can be */
        const uint8_t *l = m.ptr, *rr = m.ptr + sp + 1;
        const uint64_t ln = (uint64_t)sp, rn = m.len - (uint64_t)sp - 1;
        uint64_t i = pair_hash(l, ln, rr, rn) & t->merge_mask;
        for (;;) {
            int32_t cur = t->merge_slots[i];
            if (cur < 0) {
                t->merge_slots[i] = r;
                break;
            }
            if (merge_is(t, cur, l, ln, rr, rn)) break; /* the first rank wins */
            i = (i + 1) & t->merge_mask;
        }
    }
    return true;
}

/* ----------------------------------------------------------- word splitting */

typedef struct {
    uint64_t *p;
    int64_t n, cap;
} LenVec;

static bool len_push(LenVec *v, uint64_t x) {
    if (v->n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        uint64_t *p = rt_realloc(v->p, (size_t)cap * sizeof(uint64_t));
        if (!p) {
            rt_err_as(REALM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory", NULL);
            return false;
        }
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = x;
    return true;
}

#define OOR 0xFFFFFFFFu

/* one fragment [ini, end) of the code point array being cut into words */
typedef struct {
    const uint32_t *cpt;
    const uint16_t *fl;
    uint64_t ini, end, prev;
    LenVec *out;
    bool ok;
} Cut;

static inline uint32_t c_at(const Cut *c, uint64_t p) { return (p >= c->ini && p < c->end) ? c->cpt[p] : OOR; }
static inline uint16_t f_at(const Cut *c, uint64_t p) { return (p >= c->ini && p < c->end) ? c->fl[p] : 0; }

/* close the word that ends at `end`; returns its length */
static inline uint64_t emit(Cut *c, uint64_t end) {
    uint64_t n = end - c->prev;
    if (n > 0 && c->ok) c->ok = len_push(c->out, n);
    c->prev = end;
    return n;
}

#define WS UCP_WHITESPACE
#define LET UCP_LETTER
#define NUM UCP_NUMBER
#define MRK UCP_MARK

/* 's|'t|'re|'ve|'m|'ll|'d (lowercase only unless icase); returns the match length or 0 */
static uint64_t contraction(const Cut *c, uint64_t pos, bool icase) {
    if (c_at(c, pos) != '\'' || pos + 1 >= c->end) return 0;
    uint32_t a = c_at(c, pos + 1);
    if (icase) a = unicode_tolower(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 < c->end) {
        uint32_t b = c_at(c, pos + 2);
        if (icase) b = unicode_tolower(b);
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    return 0;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void cut_gpt2(Cut *c) {
    for (uint64_t pos = c->ini; pos < c->end;) {
        const uint32_t cp = c_at(c, pos);
        const uint16_t f = f_at(c, pos);
        uint64_t k = contraction(c, pos, false);
        if (k) {
            pos += emit(c, pos + k);
            continue;
        }
        uint16_t f2 = cp == ' ' ? f_at(c, pos + 1) : f;
        if (f2 & LET) {
            pos += cp == ' ';
            while (f2 & LET) f2 = f_at(c, ++pos);
            emit(c, pos);
            continue;
        }
        if (f2 & NUM) {
            pos += cp == ' ';
            while (f2 & NUM) f2 = f_at(c, ++pos);
            emit(c, pos);
            continue;
        }
        if (!(f2 & (WS | LET | NUM)) && f2) {
            pos += cp == ' ';
            while (!(f2 & (WS | LET | NUM)) && f2) f2 = f_at(c, ++pos);
            emit(c, pos);
            continue;
        }
        uint64_t nws = 0;
        while (f_at(c, pos + nws) & WS) nws++;
        if (nws > 1 && c_at(c, pos + nws) != OOR) { /* \s+(?!\S): leave the last one */
            pos += nws - 1;
            emit(c, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            emit(c, pos);
            continue;
        }
        emit(c, ++pos);
    }
}

/* Llama-3 (digits_max 3), Qwen2 (digits_max 1) and Qwen3.5 (marks join letters):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void cut_llama3(Cut *c, int digits_max, bool marks) {
    const uint16_t word = marks ? (LET | MRK) : LET;
    for (uint64_t pos = c->ini; pos < c->end;) {
        const uint32_t cp = c_at(c, pos);
        const uint16_t f = f_at(c, pos);
        uint64_t k = contraction(c, pos, true);
        if (k) {
            pos += emit(c, pos + k);
            continue;
        }
        if (!(cp == '\r' || cp == '\n' || (f & NUM))) {
            if ((f & word) || (f_at(c, pos + 1) & word)) {
                pos++;
                while (f_at(c, pos) & word) pos++;
                emit(c, pos);
                continue;
            }
        }
        if (f & NUM) {
            uint64_t ini = pos;
            while (f_at(c, pos) & NUM) {
                if (++pos - ini >= (uint64_t)digits_max) {
                    emit(c, pos);
                    ini = pos;
                }
            }
            emit(c, pos);
            continue;
        }
        uint16_t f2 = cp == ' ' ? f_at(c, pos + 1) : f;
        if (!(f2 & (WS | word | NUM)) && f) {
            pos += cp == ' ';
            while (!(f2 & (WS | word | NUM)) && f2) f2 = f_at(c, ++pos);
            uint32_t c2 = c_at(c, pos);
            while (c2 == '\r' || c2 == '\n') c2 = c_at(c, ++pos);
            emit(c, pos);
            continue;
        }
        uint64_t nws = 0, last_rn = 0;
        while (f_at(c, pos + nws) & WS) {
            uint32_t c2 = c_at(c, pos + nws);
            if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) { /* \s*[\r\n]+ */
            pos = last_rn;
            emit(c, pos);
            continue;
        }
        if (nws > 1 && c_at(c, pos + nws) != OOR) {
            pos += nws - 1;
            emit(c, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            emit(c, pos);
            continue;
        }
        emit(c, ++pos);
    }
}

/* [^\n]+|[\n]+ */
static void cut_newlines(Cut *c) {
    for (uint64_t pos = c->ini; pos < c->end;) {
        bool nl = c->cpt[pos] == '\n';
        while (pos < c->end && (c->cpt[pos] == '\n') == nl) pos++;
        emit(c, pos);
    }
}

/* ---- the simple std::regex patterns ---- */

enum {
    RC_PN,          /* \p{N} (collapsed) */
    RC_PL,          /* \p{L} (collapsed) */
    RC_PP,          /* \p{P} (collapsed) */
    RC_DEFAULT_P,   /* [\p{P}\$\+<=>\^~\|] (collapsed) */
    RC_FALCON_P,    /* [\p{P}\$\+<=>\^~\|`] (collapsed) */
    RC_DIGIT,       /* [0-9] */
    RC_CRLF,        /* [\r\n] */
    RC_DS_LETTER,   /* deepseek-llm's letter class */
    RC_DS_PUNCT,    /* [!-/:-~！-／：-～‘-‟　-。] */
    RC_DS_CJK,      /* [一-龥ࠀ-一가-퟿] */
    RC_PORO,        /* [^(\s|.,!?…。，、।۔،)] */
};

/* deepseek-llm's letter ranges (inclusive), from its regex */
static const uint32_t DS_LETTERS[][2] = {
    {0x00041, 0x0005A}, {0x00061, 0x0007A}, {0x000B5, 0x000B5}, {0x000C0, 0x000D6}, {0x000D8, 0x000F6},
    {0x000F8, 0x001BA}, {0x001BC, 0x001BF}, {0x001C4, 0x00293}, {0x00295, 0x002AF}, {0x00370, 0x00373},
    {0x00376, 0x00376}, {0x00377, 0x00377}, {0x0037B, 0x0037D}, {0x0037F, 0x0037F}, {0x00386, 0x00386},
    {0x00388, 0x0038A}, {0x0038C, 0x0038C}, {0x0038E, 0x003A1}, {0x003A3, 0x003F5}, {0x003F7, 0x00481},
    {0x0048A, 0x0052F}, {0x00531, 0x00556}, {0x010A0, 0x010C5}, {0x013A0, 0x013F5}, {0x013F8, 0x013FD},
    {0x01C90, 0x01CBA}, {0x01CBD, 0x01CBF}, {0x01D00, 0x01D2B}, {0x01D6B, 0x01D77}, {0x01D79, 0x01D9A},
    {0x01E00, 0x01F15}, {0x01F18, 0x01F1D}, {0x01F20, 0x01F45}, {0x01F48, 0x01F4D}, {0x01F50, 0x01F57},
    {0x01F59, 0x01F59}, {0x01F5B, 0x01F5B}, {0x01F5D, 0x01F5D}, {0x01F5F, 0x01F7D}, {0x01F80, 0x01FB4},
    {0x01FB6, 0x01FBC}, {0x01FBE, 0x01FBE}, {0x01FC2, 0x01FC4}, {0x01FC6, 0x01FCC}, {0x01FD0, 0x01FD3},
    {0x01FD6, 0x01FDB}, {0x01FE0, 0x01FEC}, {0x01FF2, 0x01FF4}, {0x01FF6, 0x01FFC}, {0x02102, 0x02102},
    {0x02107, 0x02107}, {0x0210A, 0x02113}, {0x02115, 0x02115}, {0x02119, 0x0211D}, {0x02124, 0x02124},
    {0x02126, 0x02126}, {0x02128, 0x02128}, {0x0212A, 0x0212D}, {0x0212F, 0x02134}, {0x02139, 0x02139},
    {0x0213C, 0x0213F}, {0x02145, 0x02149}, {0x0214E, 0x0214E}, {0x02183, 0x02183}, {0x02184, 0x02184},
    {0x02C00, 0x02C7B}, {0x02C7E, 0x02CE4}, {0x02CEB, 0x02CEE}, {0x02CF2, 0x02CF2}, {0x02CF3, 0x02CF3},
    {0x0A640, 0x0A66D}, {0x0A680, 0x0A69B}, {0x0A722, 0x0A76F}, {0x0A771, 0x0A787}, {0x0A78B, 0x0A78E},
    {0x0AB70, 0x0ABBF}, {0x0FB00, 0x0FB06}, {0x0FB13, 0x0FB17}, {0x0FF21, 0x0FF3A}, {0x0FF41, 0x0FF5A},
    {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2},
    {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

static bool in_ranges(uint32_t c, const uint32_t (*r)[2], int n) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (r[mid][1] < c) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && r[lo][0] <= c;
}

/* std::regex's \s: ASCII whitespace, and the vertical tab that stands for
 * every non-ASCII whitespace code point in llama.cpp's regex input */
static inline bool rx_space(uint32_t cp, uint16_t f) {
    return cp == ' ' || (cp >= '\t' && cp <= '\r') || (cp > 0x7F && (f & WS));
}

static bool rx_class(int cls, uint32_t cp, uint16_t f) {
    /* code points the regex sees (non-ASCII whitespace is a vertical tab) */
    const uint32_t w = (cp > 0x7F && (f & WS)) ? 0x0B : cp;
    switch (cls) {
    /* collapsed classes: a non-ASCII code point matches by its category alone,
     * an ASCII one by itself (which agrees with its category) */
    case RC_PN: return (f & UCP_NUMBER) != 0;
    case RC_PL: return (f & UCP_LETTER) != 0;
    case RC_PP: return (f & UCP_PUNCTUATION) != 0;
    case RC_DEFAULT_P:
        return (f & UCP_PUNCTUATION) || cp == '$' || cp == '+' || cp == '<' || cp == '=' || cp == '>' ||
               cp == '^' || cp == '~' || cp == '|';
    case RC_FALCON_P: return rx_class(RC_DEFAULT_P, cp, f) || cp == '`';
    case RC_DIGIT: return w >= '0' && w <= '9';
    case RC_CRLF: return w == '\r' || w == '\n';
    case RC_DS_LETTER: return in_ranges(w, DS_LETTERS, (int)(sizeof(DS_LETTERS) / sizeof(DS_LETTERS[0])));
    case RC_DS_PUNCT:
        return (w >= 0x21 && w <= 0x2F) || (w >= 0x3A && w <= 0x7E) || (w >= 0xFF01 && w <= 0xFF0F) ||
               (w >= 0xFF1A && w <= 0xFF5E) || (w >= 0x2018 && w <= 0x201F) || (w >= 0x3000 && w <= 0x3002);
    case RC_DS_CJK: return (w >= 0x4E00 && w <= 0x9FA5) || (w >= 0x0800 && w <= 0x4E00) || (w >= 0xAC00 && w <= 0xD7FF);
    case RC_PORO:
        if (rx_space(cp, f)) return false;
        switch (w) {
        case '(': case ')': case '|': case '.': case ',': case '!': case '?':
        case 0x2026: case 0x3002: case 0xFF0C: case 0x3001: case 0x0964: case 0x06D4: case 0x060C:
            return false;
        default: return true;
        }
    default: return false;
    }
}

/* the regex_iterator loop: unmatched stretches between matches are words too */
static inline void rx_match(Cut *c, uint64_t start, uint64_t end) {
    emit(c, start); /* the gap, if any */
    emit(c, end);
}

static inline bool cls_at(const Cut *c, int cls, uint64_t p) {
    return p < c->end && rx_class(cls, c->cpt[p], c->fl[p]);
}

/* [cls] : every matching code point alone */
static void rx_isolate(Cut *c, int cls) {
    for (uint64_t p = c->ini; p < c->end; p++)
        if (cls_at(c, cls, p)) rx_match(c, p, p + 1);
    emit(c, c->end);
}

/* [cls]+ */
static void rx_run(Cut *c, int cls) {
    for (uint64_t p = c->ini; p < c->end;) {
        if (!cls_at(c, cls, p)) {
            p++;
            continue;
        }
        uint64_t q = p;
        while (cls_at(c, cls, q)) q++;
        rx_match(c, p, q);
        p = q;
    }
    emit(c, c->end);
}

/* [cls][cls][cls] */
static void rx_triple(Cut *c, int cls) {
    for (uint64_t p = c->ini; p < c->end;) {
        if (cls_at(c, cls, p) && cls_at(c, cls, p + 1) && cls_at(c, cls, p + 2)) {
            rx_match(c, p, p + 3);
            p += 3;
        } else {
            p++;
        }
    }
    emit(c, c->end);
}

/* \s?[cls]+ (space_only: " ?[cls]+") */
static void rx_space_run(Cut *c, int cls, bool space_only) {
    for (uint64_t p = c->ini; p < c->end;) {
        uint64_t q;
        bool lead = space_only ? c->cpt[p] == ' ' : rx_space(c->cpt[p], c->fl[p]);
        if (lead && cls_at(c, cls, p + 1)) q = p + 1;
        else if (cls_at(c, cls, p)) q = p;
        else {
            p++;
            continue;
        }
        while (cls_at(c, cls, q)) q++;
        rx_match(c, p, q);
        p = q;
    }
    emit(c, c->end);
}

/* \s+$ */
static void rx_trailing_space(Cut *c) {
    uint64_t q = c->end;
    while (q > c->ini && rx_space(c->cpt[q - 1], c->fl[q - 1])) q--;
    if (q < c->end) rx_match(c, q, c->end);
    emit(c, c->end);
}

enum {
    ST_GPT2, ST_LLAMA3, ST_QWEN2, ST_QWEN35, ST_NEWLINES,
    ST_ISOLATE, ST_RUN, ST_TRIPLE, ST_SPACE_RUN, ST_TRAILING_SPACE, ST_PORO,
};

typedef struct {
    uint8_t n;
    uint8_t step[6], cls[6];
} Steps;

static Steps steps_of(int pre) {
    switch (pre) {
    case PRE_DEFAULT:
        return (Steps){ 4, { ST_RUN, ST_GPT2, ST_RUN, ST_TRIPLE }, { RC_DEFAULT_P, 0, RC_PN, RC_DIGIT } };
    case PRE_LLAMA3: return (Steps){ 1, { ST_LLAMA3 }, { 0 } };
    case PRE_GPT2: return (Steps){ 1, { ST_GPT2 }, { 0 } };
    case PRE_STARCODER: return (Steps){ 2, { ST_ISOLATE, ST_GPT2 }, { RC_PN, 0 } };
    case PRE_QWEN2: return (Steps){ 1, { ST_QWEN2 }, { 0 } };
    case PRE_QWEN35: return (Steps){ 1, { ST_QWEN35 }, { 0 } };
    case PRE_FALCON: return (Steps){ 3, { ST_RUN, ST_GPT2, ST_TRIPLE }, { RC_FALCON_P, 0, RC_DIGIT } };
    case PRE_DEEPSEEK_LLM:
        return (Steps){ 6,
                        { ST_ISOLATE, ST_SPACE_RUN, ST_SPACE_RUN, ST_TRAILING_SPACE, ST_RUN, ST_RUN },
                        { RC_CRLF, RC_DS_LETTER, RC_DS_PUNCT, 0, RC_DS_CJK, RC_PN } };
    case PRE_DEEPSEEK_CODER:
        return (Steps){ 5,
                        { ST_ISOLATE, ST_SPACE_RUN, ST_SPACE_RUN, ST_RUN, ST_ISOLATE },
                        { RC_CRLF, RC_PL, RC_PP, RC_DS_CJK, RC_PN } };
    case PRE_PORO: return (Steps){ 1, { ST_PORO }, { RC_PORO } };
    case PRE_VIKING: return (Steps){ 2, { ST_PORO, ST_ISOLATE }, { RC_PORO, RC_PN } };
    case PRE_LAGUNA: return (Steps){ 2, { ST_NEWLINES, ST_QWEN2 }, { 0, 0 } };
    default: return (Steps){ 0, { 0 }, { 0 } };
    }
}

static void run_step(Cut *c, int step, int cls) {
    switch (step) {
    case ST_GPT2: cut_gpt2(c); break;
    case ST_LLAMA3: cut_llama3(c, 3, false); break;
    case ST_QWEN2: cut_llama3(c, 1, false); break;
    case ST_QWEN35: cut_llama3(c, 1, true); break;
    case ST_NEWLINES: cut_newlines(c); break;
    case ST_ISOLATE: rx_isolate(c, cls); break;
    case ST_RUN: rx_run(c, cls); break;
    case ST_TRIPLE: rx_triple(c, cls); break;
    case ST_SPACE_RUN: rx_space_run(c, cls, false); break;
    case ST_TRAILING_SPACE: rx_trailing_space(c); break;
    case ST_PORO: rx_space_run(c, cls, true); break;
    default: emit(c, c->end); break;
    }
}

/* word lengths (in code points) of cpt[0..n) */
static bool split_words(int pre, const uint32_t *cpt, const uint16_t *fl, uint64_t n, LenVec *words) {
    LenVec tmp = { 0 };
    words->n = 0;
    if (!len_push(words, n)) return false;
    Steps st = steps_of(pre);
    for (int s = 0; s < st.n; s++) {
        tmp.n = 0;
        Cut c = { cpt, fl, 0, 0, 0, &tmp, true };
        uint64_t start = 0;
        for (int64_t i = 0; i < words->n && c.ok; i++) {
            c.ini = c.prev = start;
            c.end = start + words->p[i];
            run_step(&c, st.step[s], st.cls[s]);
            start = c.end;
        }
        if (!c.ok) {
            rt_free(tmp.p);
            return false;
        }
        LenVec sw = *words;
        *words = tmp;
        tmp = sw;
    }
    rt_free(tmp.p);
    return true;
}

/* -------------------------------------------------------------- BPE merges */

static bool try_add(const Tokenizer *t, const TokSym *sym, int32_t left, int32_t right, TokHeap *h) {
    if (left < 0 || right < 0) return true;
    int32_t rank = bpe_rank(t, sym[left].text, sym[left].n, sym[right].text, sym[right].n);
    if (rank < 0) return true;
    return tok_heap_push(h, (TokBigram){ -(float)rank, left, right, sym[left].n + sym[right].n }); /* lower rank first */
}

/* emit the token of a final symbol, or its single-byte tokens */
static bool emit_symbol(const Tokenizer *t, const uint8_t *p, uint64_t n, IdVec *out) {
    int32_t id = tok_find(t, p, n);
    if (id >= 0) return tok_vec_push(out, id);
    for (uint64_t j = 0; j < n; j++) {
        int32_t b = tok_find(t, p + j, 1);
        if (b >= 0 && !tok_vec_push(out, b)) return false;
    }
    return true;
}

/* one byte-encoded word */
static bool merge_word(const Tokenizer *t, const uint8_t *w, uint64_t wn, TokSym *sym, TokHeap *h, IdVec *out) {
    if (t->ignore_merges && tok_find(t, w, wn) >= 0) return emit_symbol(t, w, wn, out);
    int32_t ns = 0;
    for (uint64_t off = 0; off < wn;) {
        uint32_t n = (uint32_t)RT_MIN((uint64_t)unicode_utf8_len(w[off]), wn - off);
        sym[ns] = (TokSym){ w + off, ns - 1, -1, n };
        off += n;
        sym[ns].next = off == wn ? -1 : ns + 1;
        ns++;
    }
    h->n = 0;
    for (int32_t i = 1; i < ns; i++)
        if (!try_add(t, sym, i - 1, i, h)) return false;
    while (h->n > 0) {
        TokBigram b = tok_heap_pop(h);
        TokSym *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        if (!try_add(t, sym, l->prev, b.left, h) || !try_add(t, sym, b.left, l->next, h)) return false;
    }
    for (int32_t i = 0; i < ns; i++)
        if (sym[i].n > 0 && !emit_symbol(t, sym[i].text, sym[i].n, out)) return false;
    return true;
}

bool bpe_encode(const Tokenizer *t, const uint8_t *text, uint64_t len, IdVec *out) {
    uint64_t n = 0;
    uint32_t *cpt = unicode_utf8_decode(text, len, &n);
    if (!cpt) return false;
    uint16_t *fl = rt_malloc((n ? n : 1) * sizeof(uint16_t));
    LenVec words = { 0 };
    TokHeap h = { 0 };
    uint8_t *wbuf = NULL;
    TokSym *sym = NULL;
    bool ok = fl != NULL;
    if (!ok) rt_err_as(REALM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory", NULL);
    for (uint64_t i = 0; ok && i < n; i++) fl[i] = unicode_flags(cpt[i]);
    ok = ok && split_words(t->pre, cpt, fl, n, &words);
    if (ok) {
        uint64_t maxw = 0;
        for (int64_t i = 0; i < words.n; i++) maxw = RT_MAX(maxw, words.p[i]);
        /* a code point is <= 4 UTF-8 bytes, each byte <= 2 bytes once mapped */
        wbuf = rt_malloc(maxw * 8 + 8);
        sym = rt_malloc((maxw * 4 + 1) * sizeof(TokSym));
        ok = wbuf && sym;
        if (!ok) rt_err_as(REALM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory", NULL);
    }
    uint64_t start = 0;
    for (int64_t i = 0; ok && i < words.n; i++) {
        uint64_t wn = 0;
        for (uint64_t k = start; k < start + words.p[i]; k++) {
            uint8_t u[4];
            int nu = unicode_utf8_put(cpt[k], u);
            for (int j = 0; j < nu; j++) wn += (uint64_t)unicode_utf8_put(unicode_byte_to_cpt(u[j]), wbuf + wn);
        }
        start += words.p[i];
        if (wn) ok = merge_word(t, wbuf, wn, sym, &h, out);
    }
    rt_free(h.p);
    rt_free(sym);
    rt_free(wbuf);
    rt_free(words.p);
    rt_free(fl);
    rt_free(cpt);
    return ok;
}
