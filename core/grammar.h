/* grammar.h: GBNF grammars (llama.cpp's syntax, grammars/README.md) and a
 * matcher that constrains sampling to them.
 *
 * Parsing: rules `name ::= ...`, alternatives `|`, sequences, groups `( )`,
 * `*` `+` `?` `{m}` `{m,}` `{m,n}`, string literals with escapes (\n \r \t \\
 * \" \[ \] \xHH \uHHHH \UHHHHHHHH), character classes `[a-z]`, `[^...]`, `.`,
 * `#` comments, rule references; the start rule is `root` (or the name given).
 * Rules compile to llama.cpp's element arrays (repetitions and groups become
 * generated rules, as its parser rewrites them). Refused with a message naming
 * the line and column: syntax errors, undefined rules, a missing root,
 * unbalanced brackets, left recursion, and grammars past the caps below.
 *
 * Matching (llama.cpp's semantics): the state is a set of parse stacks (each a
 * list of element positions, the top a character element, or the empty stack:
 * the grammar is complete) advanced one UTF-8 code point at a time, plus the
 * bytes of an incomplete code point a token ended in. A token is allowed when
 * its code points can be consumed from some stack (a trailing partial code
 * point must be able to complete to a character some stack accepts); an
 * end-of-generation token only when some stack is empty.
 *
 * Speed: stacks are hash-consed (a stack is an id; equal stacks are one id),
 * stack sets are interned, and the transition (set, code point) -> set is
 * cached, so the matcher is a lazily built DFA. The vocabulary is decoded into
 * a code-point trie once per model (GrammarVocab); the allowed tokens of a set
 * are found by walking the trie (a rejected prefix skips its whole subtree)
 * and kept as a bitset per set, so a state seen before costs one pass over the
 * logits. Caches are flushed (the current state re-interned) past a memory
 * budget. */
#ifndef REALM_GRAMMAR_H
#define REALM_GRAMMAR_H
#include "rt.h"
#include "tokenizer.h"

#define GRAMMAR_MAX_TEXT (1u << 20)     /* bytes of grammar text */
#define GRAMMAR_MAX_RULES 16384         /* rules, generated ones included */
#define GRAMMAR_MAX_ELEMS (1u << 20)    /* elements of all rules together */
#define GRAMMAR_MAX_DEPTH 128           /* nested groups */
#define GRAMMAR_MAX_REPEAT 2000         /* m and n in {m,n} (llama.cpp's limit) */
#define GRAMMAR_MAX_STACKS 4096         /* parse stacks alive at once */

enum { GE_END = 0, GE_ALT, GE_RULE_REF, GE_CHAR, GE_CHAR_NOT, GE_CHAR_RNG_UPPER, GE_CHAR_ALT, GE_CHAR_ANY };
typedef struct { uint32_t type, value; } GElem;

typedef struct Grammar {
    void *owner;            /* the model it was made for (api_grammar.c checks sessions against it) */
    uint64_t serial;        /* unique per grammar made in this instance */
    uint32_t n_rules, n_elems, root;
    uint32_t *rule_start;   /* n_rules offsets into elems; each rule's alternatives end in END */
    GElem *elems;
} Grammar;

/* Parse len bytes of GBNF; root: the start rule's name (NULL: "root"). NULL with rt_err. */
Grammar *grammar_parse(const uint8_t *text, uint64_t len, const char *root);
void grammar_free(Grammar *g);

/* A model's vocabulary as code points (a trie), built once per model. */
typedef struct GrammarVocab GrammarVocab;
GrammarVocab *gvocab_build(const Tokenizer *t);
void gvocab_free(GrammarVocab *v);

/* One session's matcher: its own copy of the rules and caches. */
typedef struct GrammarState GrammarState;
GrammarState *gstate_new(const Grammar *g, const GrammarVocab *v);   /* NULL with rt_err */
void gstate_free(GrammarState *st);
uint64_t gstate_serial(const GrammarState *st);
bool gstate_reset(GrammarState *st);        /* back to the start (caches kept) */
/* Set disallowed tokens' logits to -inf. False with rt_err (no token allowed, limits). */
bool gstate_mask(GrammarState *st, float *logits, uint32_t n_logits);
/* The allowed tokens of the current state as a bitset of n_vocab bits (owned by st, valid until
 * the next call) and their count. False with rt_err. */
bool gstate_bits(GrammarState *st, const uint32_t **bits, uint32_t *count);
uint32_t gstate_n_vocab(const GrammarState *st);
/* Advance past the sampled token. False with rt_err (a token the grammar refuses). */
bool gstate_accept(GrammarState *st, int32_t tok);
/* 1: some stack is complete (end of generation allowed); 0: not; the state has no live stack: -1. */
int32_t gstate_complete(const GrammarState *st);

#endif
