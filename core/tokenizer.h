/* tokenizer.h: the two tokenizers GGUF models carry, matching llama.cpp's ids.
 *
 *  - "llama": SentencePiece-style, merges by score, byte fallback (<0xNN>),
 *    optional space prefix, "▁" for spaces.
 *  - "gpt2": byte-level BPE with ranked merges and the pre-tokenizer splits
 *    named by tokenizer.ggml.pre (llama-bpe/llama3, smollm, qwen2, gpt-2, ...).
 * Special and user-defined tokens (token_type CONTROL=3, USER_DEFINED=4) are
 * matched in the text before either algorithm runs when parse_special is set.
 *
 * The spec's strings point into the model's GGUF header copy, which outlives
 * the tokenizer; the tokenizer may keep those pointers. */
#ifndef REALM_TOKENIZER_H
#define REALM_TOKENIZER_H
#include "rt.h"

enum { TOK_KIND_SPM = 1, TOK_KIND_BPE = 2 };
/* token_type values of GGUF (llama.cpp's llama_token_type) */
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5, TOK_BYTE = 6 };

typedef struct {
    int kind;            /* TOK_KIND_SPM or TOK_KIND_BPE */
    Str pre;             /* tokenizer.ggml.pre, empty if absent */
    int32_t n_vocab;
    const Str *tokens;   /* n_vocab entries */
    const float *scores; /* n_vocab entries, or NULL */
    const int32_t *types;/* n_vocab entries, or NULL (all NORMAL) */
    int32_t n_merges;
    const Str *merges;   /* "a b" strings, rank = index; BPE only */
    int32_t bos, eos, eot, eom, unk, pad, sep, nl; /* -1 when absent */
    bool add_bos, add_eos, add_space_prefix;
    bool add_bos_set, add_eos_set, add_space_prefix_set; /* present in the GGUF? */
    Str name;            /* general.name, empty if absent: llama.cpp strips the spaces
                            after special tokens for models named "phi-3"/"phi3" */
} TokenizerSpec;

typedef struct Tokenizer Tokenizer;

/* NULL and rt_err(...) on a spec it cannot use (unknown pre-tokenizer, bad ids, ...). */
Tokenizer *tokenizer_new(const TokenizerSpec *spec);
void tokenizer_free(Tokenizer *t);

/* Encode UTF-8 text. add_special: add BOS/EOS as the vocab asks (llama.cpp's
 * add_special). parse_special: recognise special/user-defined token texts.
 * Writes at most cap ids to out and returns the total count (which may exceed
 * cap: call again with a larger buffer), or -1 with rt_err on failure. */
int64_t tokenizer_encode(Tokenizer *t, const uint8_t *text, uint64_t len, bool add_special,
                         bool parse_special, int32_t *out, int64_t cap);

/* The bytes one token stands for, as llama.cpp's llama_token_to_piece with
 * lstrip=0 (byte tokens give their byte, "▁" gives a space, BPE bytes are
 * decoded). special=false renders control tokens as nothing. Returns the
 * byte count (may exceed cap, as above), or -1 for an id out of range. */
int64_t tokenizer_piece(const Tokenizer *t, int32_t id, bool special, uint8_t *out, int64_t cap);

/* True for end-of-generation ids (EOS, EOT, EOM, and control tokens llama.cpp treats so). */
bool tokenizer_is_eog(const Tokenizer *t, int32_t id);

int32_t tokenizer_n_vocab(const Tokenizer *t);

/* The effective BOS/EOS ids (-1 if none) and whether add_special adds them,
 * after llama.cpp's defaults for the tokenizer kind were applied. (Added by
 * the lead for realm_model_info; implement in tokenizer.c.) */
void tokenizer_special(const Tokenizer *t, int32_t *bos, int32_t *eos, bool *add_bos, bool *add_eos);

#endif
