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

struct Session;

/* y[t][r] for rows [0, rows) of W (stored type `type`, K wide) against the
 * quantized activations xq of T tokens; see quant_matmul_q. */
void threads_matmul(uint32_t type, const void *W, uint64_t K, uint64_t rows, const void *xq, uint64_t T,
                    float *y, uint64_t y_stride);

/* Causal attention of T new tokens of layer l at positions p0.. (model.c's
 * attention_head for every (token, head) pair). `scores` holds one n_ctx row
 * per thread: threads_count() + 1 rows. */
void threads_attention(struct Session *s, uint32_t l, uint32_t p0, uint32_t T);

/* Workers the main thread currently splits work with (0 in realm.wasm). */
uint32_t threads_count(void);

/* model.c: one (token, head) pair of attention, with thread `tid`'s scores row. */
void attention_head(struct Session *s, uint32_t l, uint32_t p0, uint32_t t, uint32_t h, uint32_t tid);

#endif
