/* tok_internal.h: what tokenizer.c, tok_spm.c and tok_bpe.c share.
 * Private to those three files. */
#ifndef REALM_TOK_INTERNAL_H
#define REALM_TOK_INTERNAL_H
#include "tokenizer.h"
#include "unicode.h"

/* llama.cpp's llama_token_attr bits */
enum {
    ATTR_UNDEFINED = 0,
    ATTR_UNKNOWN = 1 << 0,
    ATTR_UNUSED = 1 << 1,
    ATTR_NORMAL = 1 << 2,
    ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4,
    ATTR_BYTE = 1 << 5,
    ATTR_LSTRIP = 1 << 7,
    ATTR_RSTRIP = 1 << 8,
};

/* pre-tokenizer families (each is one list of splitting steps in tok_bpe.c) */
enum {
    PRE_NONE = 0,     /* SPM */
    PRE_DEFAULT,      /* missing or "default" */
    PRE_LLAMA3,       /* llama3, llama-bpe, dbrx, smaug-bpe, chatglm-bpe, glm4, ... */
    PRE_GPT2,         /* gpt-2, mpt, olmo, jais, phi-2, exaone4, ... */
    PRE_STARCODER,    /* starcoder, refact, command-r, smollm, codeshell, exaone, minerva-7b, mellum2 */
    PRE_QWEN2,        /* qwen2, stablelm2, deepseek-r1-qwen, hunyuan, grok-2, megrez, ... */
    PRE_QWEN35,
    PRE_FALCON,
    PRE_DEEPSEEK_LLM,
    PRE_DEEPSEEK_CODER,
    PRE_PORO,         /* poro-chat, bloom, gpt3-finnish */
    PRE_VIKING,
    PRE_LAGUNA,
};

typedef struct {
    int32_t *p;
    int64_t n, cap;
} IdVec;

struct Tokenizer {
    int kind;                 /* TOK_KIND_SPM / TOK_KIND_BPE */
    int pre;                  /* PRE_* */
    int32_t n_vocab;
    Str *text;                /* token texts (empty ones replaced by "[EMPTY_<id>]", as llama.cpp) */
    uint8_t *text_arena;      /* storage of those replacements */
    float *score;             /* n_vocab */
    uint16_t *attr;           /* ATTR_* per token */
    uint8_t *eog;             /* bitmap */

    int32_t *tok_slots;       /* open addressing: token text -> id (-1 empty) */
    uint64_t tok_mask;

    Str *merges;              /* BPE: "left right" (own copy of the array; texts point into the spec's) */
    int32_t n_merges;
    int32_t *merge_split;     /* byte index of the separating space, -1 unusable */
    int32_t *merge_slots;     /* open addressing: (left, right) -> rank */
    uint64_t merge_mask;

    int32_t *special;         /* CONTROL/USER_DEFINED/UNKNOWN ids, longest text first */
    int32_t n_special;

    int32_t byte_tok[256];    /* SPM byte fallback ids, -1 when missing */

    int32_t bos, eos, eot, eom, unk;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
};

/* ---- shared helpers (tokenizer.c) ---- */
bool tok_vec_push(IdVec *v, int32_t id);
uint64_t tok_hash(const uint8_t *p, uint64_t n, uint64_t h);
#define TOK_HASH_SEED 0xcbf29ce484222325ull
int32_t tok_find(const Tokenizer *t, const uint8_t *p, uint64_t n);

/* ---- SPM (tok_spm.c) ---- */
bool spm_init(Tokenizer *t);
/* one raw-text fragment; prefix_space adds the leading "▁" */
bool spm_encode(const Tokenizer *t, const uint8_t *text, uint64_t len, bool prefix_space, IdVec *out);

/* ---- BPE (tok_bpe.c) ---- */
/* Look up tokenizer.ggml.pre; false (with rt_err) when unknown or unsupported.
 * Sets t->pre, t->ignore_merges and the llama.cpp defaults it implies. */
bool bpe_pre_config(Tokenizer *t, Str pre, bool *add_bos_default, bool *bos_none);
bool bpe_init(Tokenizer *t);
bool bpe_encode(const Tokenizer *t, const uint8_t *text, uint64_t len, IdVec *out);

/* ---- merging symbols (both tokenizers): a min-heap of candidate merges ---- */
/* A symbol of the text being merged: a byte range, linked to its neighbours;
 * n = 0 once merged into its left neighbour. */
typedef struct {
    const uint8_t *text;
    int32_t prev, next;
    uint32_t n;
} TokSym;

/* A candidate merge of symbols left and right into `size` bytes. Higher
 * priority first, then the leftmost (SentencePiece: the merged piece's score;
 * BPE: minus its merge rank). */
typedef struct {
    float priority;
    int32_t left, right;
    uint32_t size;
} TokBigram;

typedef struct {
    TokBigram *p;
    int64_t n, cap;
} TokHeap;

bool tok_heap_push(TokHeap *h, TokBigram x); /* false (rt_err set) when out of memory */
TokBigram tok_heap_pop(TokHeap *h);          /* h->n > 0 */

#endif
