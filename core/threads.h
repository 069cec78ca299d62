/* threads.h: the core's worker pool (wasm threads over one shared memory).
 *
 * realm-mt.wasm (build.py's threaded variant: -matomics, imported shared
 * memory) lets a host run more instances of the module on other threads,
 * all over the same memory; each calls realm_thread_run and stays there,
 * waiting for work. The main instance splits each matmul's rows (and
 * attention's heads) into chunks that every participating thread claims
 * from one atomic counter, does chunks itself, and returns when all are done.
 * Splitting rows never changes any row's summation order: results are bit
 * for bit those of one thread.
 *
 * In realm.wasm (no atomics) the same calls just run on the calling thread. */
#ifndef REALM_THREADS_H
#define REALM_THREADS_H
#include "rt.h"

struct Batch;

/* One matrix product of a job: y[t][r] for rows [0, rows) of W (stored type
 * `type`, K wide) against the quantized activations xq of T tokens (see
 * quant_matmul_q); y rows are y_stride floats apart. */
typedef struct {
    uint32_t type;
    const void *W, *xq;
    uint64_t K, rows, y_stride;
    float *y;
} MatmulSpec;

#define THREADS_MAX_MATMULS 3

/* Up to THREADS_MAX_MATMULS products over the same T tokens as one job (Q, K
 * and V; gate and up): one wake-up and one wait for all of them. */
void threads_matmul(const MatmulSpec *m, uint32_t n, uint64_t T);

/* Causal attention of layer l for rows [0, n_rows) of a forward-pass step,
 * H heads each: attention_head (below) for every (row, head) pair. The
 * step's scores hold one row per thread: threads_count() + 1 rows. */
void threads_attention(const struct Batch *b, uint32_t l, uint32_t n_rows, uint32_t H);

/* Workers the main thread currently splits work with (0 in realm.wasm). */
uint32_t threads_count(void);

/* What the pool calls back, defined by the forward pass (batch.c; a direct
 * call: a function pointer would add a 64-bit table, see PLATFORM.md). This
 * header only names the step's type, so threads.c needs none of model.h or
 * batch.h: one (row, head) pair of attention, with thread `tid`'s scores row. */
void attention_head(const struct Batch *b, uint32_t l, uint32_t row, uint32_t h, uint32_t tid);

#endif
