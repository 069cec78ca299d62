/* threads.h: the core's worker pool (wasm threads over one shared memory).
 *
 * realm-mt.wasm (build.py's threaded variant: -matomics, imported shared
 * memory) lets a host run more instances of the module on other threads,
 * all over the same memory; each calls realm_thread_run and stays there,
 * waiting for work. The main instance splits each matmul's rows (and
 * attention's heads) into chunks that every participating thread claims
 * from one atomic counter, does chunks itself, and returns when all are done;
 * a prompt's activation quantization and the FFN's gating are split by rows
 * (tokens) the same way.
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

/* T rows of x (K floats each) quantized for weights of `type` into xq
 * (quant_act_quantize), runs of rows on every thread: the same bytes. */
void threads_quantize(uint32_t type, const float *x, uint64_t K, uint64_t T, void *xq);

/* Items [0, n_items) of layer l in phase `phase` of a forward-pass step:
 * step_item (below) for each, on whichever thread claims it (what an item
 * is, is batch.c's business: attention, the FFN's gating). */
void threads_step(const struct Batch *b, uint32_t l, uint32_t phase, uint64_t n_items);

/* Workers the main thread currently splits work with (0 in realm.wasm). */
uint32_t threads_count(void);

/* What the pool calls back, defined by the forward pass (batch.c; a direct
 * call: a function pointer would add a 64-bit table, see PLATFORM.md). This
 * header only names the step's type, so threads.c needs none of model.h or
 * batch.h: item `item` of layer l's phase `phase`, with thread `tid`'s own
 * scratch. */
void step_item(const struct Batch *b, uint32_t l, uint32_t phase, uint64_t item, uint32_t tid);

#endif
