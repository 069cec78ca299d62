/* threads.c: the worker pool (see threads.h).
 *
 * Protocol, all state in linear memory (shared in realm-mt.wasm):
 *   gen      bumped by the main thread once per job (after writing `job`)
 *   next     the next chunk of the current job to claim
 *   n_done   participating workers that finished the current job
 *   n_live   workers inside realm_thread_run; n_use of them take part in jobs
 *   n_sleep  workers blocked in memory.atomic.wait32 on gen
 * Workers spin on gen for a while before they sleep: a decode step runs ~200
 * matmuls of tens of microseconds each, far shorter than a futex wake-up.
 * The main thread, done with its chunks, spins briefly for the workers' last
 * ones, then (where the host allows it: a browser's main thread may not
 * block) sleeps on n_done, so that a worker the OS had descheduled gets the
 * core back instead of competing with a spinning main thread. */
#include "threads.h"
#include "quant.h"

typedef enum { JOB_MATMUL = 1, JOB_STEP = 2, JOB_QUANTIZE = 3 } JobKind;

typedef struct {
    JobKind kind;
    uint32_t n_workers;  /* workers taking part (indices 1..n_workers) */
    uint64_t n_chunks;
    /* JOB_MATMUL: chunks [first[i], first[i + 1]) are matrix i's, chunk_rows rows each */
    MatmulSpec mm[THREADS_MAX_MATMULS];
    uint64_t first[THREADS_MAX_MATMULS + 1];
    uint64_t chunk_rows, T;
    uint32_t n_mm;
    /* JOB_STEP: chunk c is item c of layer l, phase `phase`, of step b */
    const struct Batch *b;
    uint32_t l, phase;
    /* JOB_QUANTIZE: chunk c is rows [c * chunk_rows, ...) of x (T rows of K) into xq */
    uint32_t q_type;
    const float *q_x;
    uint64_t q_K;
    uint8_t *q_xq;
} Job;

static uint32_t n_use;

static void run_chunk(const Job *j, uint64_t c, uint32_t tid) {
    if (j->kind == JOB_MATMUL) {
        uint32_t i = 0;
        while (c >= j->first[i + 1]) i++;
        const MatmulSpec *m = &j->mm[i];
        uint64_t r0 = (c - j->first[i]) * j->chunk_rows, r1 = RT_MIN(m->rows, r0 + j->chunk_rows);
        quant_matmul_q(m->type, m->W, m->K, r0, r1, m->xq, j->T, m->y, m->y_stride);
    } else if (j->kind == JOB_QUANTIZE) {
        const uint64_t t0 = c * j->chunk_rows, n = RT_MIN(j->T - t0, j->chunk_rows);
        quant_act_quantize(j->q_type, j->q_x + t0 * j->q_K, j->q_K, n, j->q_xq + t0 * quant_act_bytes(j->q_type, j->q_K, 1));
    } else {
        step_item(j->b, j->l, j->phase, c, tid);
    }
}

#if defined(__wasm_atomics__)

#define SPIN_ROUNDS (1u << 18)      /* a worker's idle spin before it sleeps: ~0.1-0.3 ms */
#define MAIN_SPIN_ROUNDS (1u << 14) /* the main thread's spin before it sleeps on n_done */

static Job job;
static uint32_t gen, n_done, n_live, n_sleep, stop_flag, main_may_wait, main_sleeping;
static uint64_t next_chunk;

static void work(const Job *j, uint32_t tid) {
    for (;;) {
        uint64_t c = __atomic_fetch_add(&next_chunk, 1, __ATOMIC_RELAXED);
        if (c >= j->n_chunks) return;
        run_chunk(j, c, tid);
    }
}

static void dispatch(const Job *j) {
    uint32_t n = n_use;
    if (n == 0 || j->n_chunks < 2) {
        for (uint64_t c = 0; c < j->n_chunks; c++) run_chunk(j, c, 0);
        return;
    }
    job = *j;
    job.n_workers = n;
    __atomic_store_n(&next_chunk, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&n_done, 0, __ATOMIC_RELAXED);
    __atomic_fetch_add(&gen, 1, __ATOMIC_SEQ_CST); /* publishes job, next_chunk, n_done */
    if (__atomic_load_n(&n_sleep, __ATOMIC_SEQ_CST))
        __builtin_wasm_memory_atomic_notify((int *)&gen, n);
    work(&job, 0);
    uint32_t done, spins = 0;
    while ((done = __atomic_load_n(&n_done, __ATOMIC_SEQ_CST)) < n) {
        if (!main_may_wait || ++spins < MAIN_SPIN_ROUNDS) continue;
        __atomic_store_n(&main_sleeping, 1, __ATOMIC_SEQ_CST);
        __builtin_wasm_memory_atomic_wait32((int *)&n_done, (int)done, -1); /* at once if n_done moved */
        __atomic_store_n(&main_sleeping, 0, __ATOMIC_SEQ_CST);
    }
}

/* A worker's whole life: the host calls this on its own instance (its own
 * stack, see realm_thread_stack in ARCHITECTURE.md) and gets control back
 * only after realm_threads_stop. Returns the worker's index. */
EXPORT uint32_t realm_thread_run(uint32_t index) {
    uint32_t seen = __atomic_load_n(&gen, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&n_live, 1, __ATOMIC_SEQ_CST);
    for (;;) {
        uint32_t g = 0;
        for (uint32_t i = 0; i < SPIN_ROUNDS; i++)
            if ((g = __atomic_load_n(&gen, __ATOMIC_ACQUIRE)) != seen) break;
        if (g == seen) {
            __atomic_fetch_add(&n_sleep, 1, __ATOMIC_SEQ_CST);
            __builtin_wasm_memory_atomic_wait32((int *)&gen, (int)seen, -1); /* returns at once if gen moved */
            __atomic_fetch_sub(&n_sleep, 1, __ATOMIC_SEQ_CST);
            continue;
        }
        seen = g;
        if (__atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE)) break;
        if (index >= 1 && index <= job.n_workers) {
            work(&job, index);
            __atomic_fetch_add(&n_done, 1, __ATOMIC_SEQ_CST);
            if (__atomic_load_n(&main_sleeping, __ATOMIC_SEQ_CST))
                __builtin_wasm_memory_atomic_notify((int *)&n_done, 1);
        }
    }
    __atomic_fetch_sub(&n_live, 1, __ATOMIC_SEQ_CST);
    return index;
}

/* Workers inside realm_thread_run (a host waits for its new workers here). */
EXPORT uint32_t realm_threads_live(void) { return __atomic_load_n(&n_live, __ATOMIC_SEQ_CST); }

/* Split work with n of the live workers from now on (clamped); returns n.
 * may_wait: the calling (main) thread may block in memory.atomic.wait (not
 * on a browser's main thread). */
EXPORT uint32_t realm_threads_use(uint32_t n, uint32_t may_wait) {
    uint32_t live = realm_threads_live();
    n_use = n < live ? n : live;
    main_may_wait = may_wait != 0;
    return n_use;
}

/* Ask every worker to return from realm_thread_run and wait until they have. */
EXPORT void realm_threads_stop(void) {
    n_use = 0;
    __atomic_store_n(&stop_flag, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&gen, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&gen, 0xffffffffu);
    while (__atomic_load_n(&n_live, __ATOMIC_SEQ_CST)) {}
    __atomic_store_n(&stop_flag, 0, __ATOMIC_SEQ_CST);
}

/* 1 when this build can run workers (realm-mt.wasm), else 0. */
EXPORT uint32_t realm_threads_supported(void) { return 1; }

#else /* realm.wasm: one thread */

static void dispatch(const Job *j) {
    for (uint64_t c = 0; c < j->n_chunks; c++) run_chunk(j, c, 0);
}

/* the same exports as realm-mt.wasm, so every build has one ABI: nothing to run */
EXPORT uint32_t realm_thread_run(uint32_t index) { return index; }
EXPORT uint32_t realm_threads_live(void) { return 0; }
EXPORT uint32_t realm_threads_use(uint32_t n, uint32_t may_wait) { (void)n, (void)may_wait; return 0; }
EXPORT void realm_threads_stop(void) {}
EXPORT uint32_t realm_threads_supported(void) { return 0; }

#endif

uint32_t threads_count(void) { return n_use; }

void threads_matmul(const MatmulSpec *m, uint32_t n, uint64_t T) {
    Job j = {0};
    j.kind = JOB_MATMUL;
    j.T = T;
    j.n_mm = RT_MIN(n, THREADS_MAX_MATMULS);
    uint64_t rows = 0, most = 0;
    for (uint32_t i = 0; i < j.n_mm; i++) {
        j.mm[i] = m[i];
        rows += m[i].rows;
        most = RT_MAX(most, m[i].rows);
    }
    /* about four chunks per thread (uneven cores, other processes), in whole
     * 16-row groups (the kernels work on 4 rows at a time); sixteen for a
     * prompt, whose chunks are long: the last one claimed leaves the other
     * threads idle for up to its length */
    uint64_t parts = (uint64_t)(n_use + 1) * (T >= 16 ? 16 : 4);
    j.chunk_rows = n_use ? RT_ALIGN_UP((rows + parts - 1) / parts, 16) : most;
    if (j.chunk_rows == 0) j.chunk_rows = 1;
    for (uint32_t i = 0; i < j.n_mm; i++)
        j.first[i + 1] = j.first[i] + (m[i].rows + j.chunk_rows - 1) / j.chunk_rows;
    j.n_chunks = j.first[j.n_mm];
    dispatch(&j);
}

void threads_quantize(uint32_t type, const float *x, uint64_t K, uint64_t T, void *xq) {
    Job j = {0};
    j.kind = JOB_QUANTIZE;
    j.q_type = type, j.q_x = x, j.q_K = K, j.q_xq = (uint8_t *)xq, j.T = T;
    /* about two runs per thread, of at least 4 rows (one row alone: no split) */
    j.chunk_rows = RT_MAX((T + 2 * (uint64_t)(n_use + 1) - 1) / (2 * (uint64_t)(n_use + 1)), 4);
    j.n_chunks = (T + j.chunk_rows - 1) / j.chunk_rows;
    dispatch(&j);
}

void threads_step(const struct Batch *b, uint32_t l, uint32_t phase, uint64_t n_items) {
    Job j = {0};
    j.kind = JOB_STEP;
    j.b = b, j.l = l, j.phase = phase;
    j.n_chunks = n_items;
    dispatch(&j);
}
