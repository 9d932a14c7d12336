/*
** pool.h -- a small deterministic thread pool for the compiled steps.
**
** A step splits a large kernel into FIXED chunks (their boundaries depend
** only on the shapes, never on the number of threads) and asks the pool to
** run chunks lo..hi-1 of an outlined chunk function. Each chunk writes its
** own part of the output (elementwise kernels) or its own slot of partial
** sums (the blocked float sum, which the step then combines in chunk
** order), so which thread runs which chunk never changes a bit of the
** result. The calling thread works too; the workers (n_threads - 1 of
** them) are started by kl_pool_new, spin a little after each job and then
** sleep on a condition variable, and are joined by kl_pool_free. Nothing is
** allocated per job.
*/
#ifndef KILN_POOL_H
#define KILN_POOL_H

#include "runtime/rt.h"

/* The outlined body of a kernel: computes chunks lo..hi-1. cap holds what
** the step hands over (partial sums' slots, scalars computed earlier). */
typedef void (*kl_chunk_fn)(void **bufs, const int64_t *dims, void *cap, int64_t lo, int64_t hi);

typedef struct kl_pool kl_pool;

/* Runs fn over the chunks lo..hi-1 and returns when all are done. */
typedef void (*kl_pool_run_fn)(kl_pool *pool, kl_chunk_fn fn, void **bufs, const int64_t *dims,
                               void *cap, int64_t lo, int64_t hi);

/* The first member of every pool is its run function: a step receives a
** kl_pool pointer and calls through it (no symbol to resolve in the JIT). */
typedef struct kl_pool_head {
  kl_pool_run_fn run;
} kl_pool_head;

/* Chunks. The order of a float sum down to one value (compiler/ops/eval.c,
** blocked_sum) has KL_SUM_LANES lanes, and a row's blocked part longer
** than KL_SUM_CHUNK elements is summed in chunks of KL_SUM_CHUNK (a
** multiple of the backend's 256-element buffer) whose 16-lane partials
** start at +0.0 and are added to the running lanes in chunk order: one
** chunk is the unit of work of a threaded sum. An elementwise kernel of at
** least KL_PAR_MIN elements runs in chunks of KL_ELEM_CHUNK elements
** (whole rows of its first axis: at least one row). Changing KL_SUM_CHUNK
** changes results; the other two only change speed. */
#define KL_SUM_LANES 16
#define KL_SUM_CHUNK 16384
#define KL_ELEM_CHUNK 16384
#define KL_PAR_MIN 32768

/* Most threads a context may ask for. */
#define KL_POOL_MAX_THREADS 256

/* The one-thread pool: runs every chunk in the caller, in order. */
extern kl_pool *const kl_pool_serial;

/* A pool of n_threads (2..KL_POOL_MAX_THREADS) threads including the
** caller. On failure (no memory, pthread_create failed) every thread
** already started is joined, *out is NULL and err says why. */
kiln_status kl_pool_new(int n_threads, kl_pool **out, char *err, size_t errn);
/* Stops and joins the workers, frees the pool. NULL and kl_pool_serial are
** no-ops. Must not run while a job runs. */
void kl_pool_free(kl_pool *pool);
/* Threads of the pool (1 for NULL and the serial pool). */
int kl_pool_threads(const kl_pool *pool);
/* Test hook: the k-th pthread_create from now fails (k >= 1); 0: off. */
void kl_pool_fail_create_at(int k);

#endif
