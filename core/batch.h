/* batch.h: the forward pass over a batch of token rows from one or more
 * sessions of one model (continuous batching; GitHub issue 12).
 *
 * A step is a list of sequences: each names a session and the ids it adds
 * (a prefill chunk or one decode token). Their rows run through the model
 * together: embedding, norms and every matmul over all rows at once (each
 * weight matrix is read once per step for all sessions), RoPE at each row's
 * own position, K and V into each row's own session cache, attention of each
 * row over its own session's cache (causal within that session's rows), and
 * logits rows copied into each session's logits buffer.
 *
 * Every value of a row is computed by the same operations whichever rows it
 * shares a step with: the matmul kernels sum each (row, token) pair the same
 * way in their one-token and tile paths (quant_impl.h), norms, RoPE, SwiGLU
 * and activation quantization work row by row, attention by (row, head). So a
 * session's logits in a batch are bit for bit those of the session alone
 * (tests/test_batch.py), for any thread count.
 *
 * session_eval (model.h) is this path with one sequence. */
#ifndef REALM_BATCH_H
#define REALM_BATCH_H
#include "model.h"

/* Rows one step may hold (all sequences together): the core's token budget. */
#define BATCH_MAX_TOKENS 64u

/* Per-sequence flags (realm_batch_eval's flags words). */
enum {
    BATCH_ALL_LOGITS = 1, /* logits for every row of the sequence, not only its last */
    BATCH_NO_LOGITS = 2,  /* no logits (a prefill chunk that is not the prompt's last) */
    BATCH_FLAGS = 3
};

typedef struct {
    Session *s;
    const int32_t *ids;
    uint32_t n;
    uint32_t flags;
} BatchSeq;

/* One row of a step. */
typedef struct {
    Session *s;
    uint32_t pos;        /* the row's position in its session */
    int32_t id;
    int32_t logits_row;  /* destination row in s->logits, or -1 */
} BatchRow;

/* The forward pass's workspace: one per model, grown on demand (an instance
 * runs one call at a time, so all of a model's sessions share it). */
typedef struct Batch {
    uint32_t n, cap;                 /* rows of the current step; rows the buffers hold */
    BatchRow *rows;
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2, *rope_cs;
    float *rope_cs_swa;              /* sliding-window layers' RoPE table (gemma3), else NULL */
    float *scores;                   /* scores_rows x ATTN_SCORE_ROWS rows of scores_len: per thread */
    uint64_t scores_len;
    uint32_t scores_rows;
    /* the current layer's attention plan (attention_layer in batch.c): items of S
     * heads of one KV head; split: every (row, head) has its own scores row in
     * split_scores, and the work goes in three phases (q.k by chunks of
     * positions, softmax by head, p.v by chunks of dimensions) */
    uint32_t att_S, att_sub, att_split, att_qk_chunks, att_pv_chunks, att_max_n;
    bool att_pairs;                  /* items take rows two at a time (a prompt's consecutive tokens) */
    float *split_scores;
    uint64_t split_cap;              /* floats split_scores holds */
    /* the FFN gating in progress (glu in batch.c): g = act(g) * u over n floats */
    float *glu_g;
    const float *glu_u;
    uint64_t glu_n, glu_chunk;
    bool glu_gelu;
    uint8_t *xq;                     /* quantized activations */
    uint64_t xq_cap, xq_per_row;     /* bytes; the most any matmul needs per row */
    float *logits;                   /* logits rows of several sessions, before they are copied out */
    uint32_t logits_cap;
    /* MoE layers (moe_cap rows, one block at moe): router probabilities, each row's chosen
     * experts and weights, their outputs by (row, slot), an expert's gathered rows in and out */
    float *moe, *moe_router, *moe_w, *moe_acc, *moe_x, *moe_y;
    uint32_t *moe_sel, *moe_slot, moe_cap;
} Batch;

/* Evaluate a step of n_seqs sequences of model m (at most BATCH_MAX_TOKENS
 * ids in all). Checks everything before it changes anything: every session
 * a live session of m, none twice, no empty sequence, no bad id or flag, no
 * context overflow, memory for the step; on failure nothing changed, rt_err
 * names the sequence (batch_failed() its index, -1 for none). On success each
 * session holds its ids at n_past.. and its logits: every row with
 * BATCH_ALL_LOGITS, none with BATCH_NO_LOGITS, else the last. */
bool batch_eval(Model *m, const BatchSeq *seqs, uint32_t n_seqs);
int32_t batch_failed(void);
void batch_reset_failed(void);
void batch_set_failed(int32_t i);

/* The residual stream of the last step's rows (n_embd floats each, before the
 * final norm), for realm_session_embed. */
const float *batch_hidden(const Model *m);

void batch_free(Batch *b);

/* The forward pass's GeGLU (g = gelu(g) * u, ggml's f16 table), SwiGLU and soft-capping
 * (cap > 0), for tests of the GPU kernels (realm_quant_geglu, _swiglu, _softcap). */
void batch_geglu(float *g, const float *u, uint64_t n);
void batch_swiglu(float *g, const float *u, uint64_t n);
void batch_softcap(float *y, uint64_t n, float cap);

#endif
