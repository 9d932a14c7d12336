/*
** pool.c -- the thread pool of the compiled steps (see pool.h).
**
** One job at a time: the caller (a step, from kl_plan_run) publishes the
** job and a new generation in one atomic word, wakes sleeping workers, and
** then takes chunks itself, a share of what is left at a time (take_some),
** like the workers that joined: the caller from the front of the job's
** range, the workers from its back (one atomic word holds both ends), so
** that with two threads each keeps the same part of the data from one
** kernel to the next. The word
**
**     state = generation << 32 | CLOSED | number of workers inside the job
**
** makes joining and finishing race-free without a lock per job: a worker
** joins by incrementing the count with a compare-and-swap that fails once
** the generation moved on or the caller closed the job; the caller, out of
** chunks, sets CLOSED (no one joins any more) and waits until the count is
** back to 0 (everyone inside finished the chunks they took). A worker that
** was asleep or descheduled therefore never delays a job: the caller simply
** does its chunks. The job's fields are written only while no worker is
** inside and read only after a successful join (release/acquire on state).
**
** Waiting workers spin for about SPIN_NS, 2 ms (the next job of a training
** loop usually comes within microseconds; a worker woken from its condition
** variable came too late for W2's 4-call batches with 200 us), then sleep;
** the caller broadcasts only when some worker sleeps. The usual lost-wakeup
** race is closed by ordering: a worker counts itself in `sleepers` and then
** rechecks the generation under the mutex; the caller stores the generation
** and then reads `sleepers` (both sequentially consistent).
*/
#include "runtime/pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define CLOSED ((uint64_t)1 << 31)
#define COUNT_MASK (CLOSED - 1)
#define SPIN_NS 2000000 /* how long an idle worker spins before it sleeps (2 ms) */

struct kl_pool {
  kl_pool_head head; /* first: the step calls head.run through its pool pointer */
  int n_workers;
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t wake;
  _Atomic uint64_t state;
  atomic_int sleepers;
  atomic_bool quit;
  /* the current job (see the comment at the top) */
  kl_chunk_fn fn;
  void **bufs;
  const int64_t *dims;
  void *cap;
  int64_t lo;
  /* Chunks not yet taken, in two ranges: lo + front .. lo + back - 1 of
  ** each word, as front | back << 32. So that each thread meets again the
  ** data it touched last (a kernel's chunks, then the next kernel's, as the
  ** sum and the update of W2), still in its own core's caches when some of
  ** it fits, jobs alternate when consecutive jobs have as many chunks:
  ** an "even" job has one range, the caller takes it from the front and the
  ** workers from the back, and where they met is kept; the next, "odd", job
  ** is split there: the caller goes down from the meeting point, the workers
  ** up from it, then each takes what is left of the other's range from its
  ** far end. Which thread computes which chunk never changes a result. */
  _Atomic uint64_t left[2];
  bool odd;      /* the current job is odd */
  bool next_odd; /* the last job was even, with meet_n chunks meeting at meet */
  int64_t meet, meet_n;
};

static void serial_run(kl_pool *pool, kl_chunk_fn fn, void **bufs, const int64_t *dims, void *cap,
                       int64_t lo, int64_t hi) {
  (void)pool;
  if (lo < hi) fn(bufs, dims, cap, lo, hi);
}

static kl_pool_head serial_head = {serial_run};
kl_pool *const kl_pool_serial = (kl_pool *)&serial_head;

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Takes and runs chunks from range w's front or back; false if it was
** empty. A take is a share of what is left, 1 / (2 * threads) of it (at
** least one chunk), run as one call of the chunk function: the first takes
** are long contiguous runs and only the last ones single chunks (guided
** scheduling). W2 on 2 threads at 2^22 elements, against the hand-written
** two-thread C: 1.10-1.13 with one chunk per take, 1.02-1.06 with this
** (one chunk in eight of what is left: 1.04-1.10), when a big sum was
** still several jobs; with the sum in one job, medians of six 1.08 and
** 1.02. At 2^20 equal within noise; at 2^18 (16 chunks) 1.07 against
** 1.16, within this host's noise. The price: a thread descheduled inside a
** take holds up to a quarter of the job (on two threads), not one chunk. */
static bool take_some(kl_pool *p, int w, bool front) {
  uint64_t s = atomic_load_explicit(&p->left[w], memory_order_relaxed);
  for (;;) {
    uint64_t f = s & 0xffffffffu, b = s >> 32;
    if (f >= b) return false;
    uint64_t k = (b - f) / (2 * (uint64_t)(p->n_workers + 1));
    if (k < 1) k = 1;
    uint64_t to = front ? s + k : s - (k << 32);
    if (atomic_compare_exchange_weak_explicit(&p->left[w], &s, to, memory_order_relaxed,
                                              memory_order_relaxed)) {
      int64_t c = p->lo + (int64_t)(front ? f : b - k);
      p->fn(p->bufs, p->dims, p->cap, c, c + (int64_t)k);
      return true;
    }
  }
}

static void take_chunks(kl_pool *p, bool caller) {
  if (!p->odd) {
    while (take_some(p, 0, caller)) {
    }
  } else if (caller) { /* down from the meeting point, then the workers' top */
    while (take_some(p, 0, false)) {
    }
    while (take_some(p, 1, false)) {
    }
  } else { /* up from the meeting point, then the caller's bottom */
    while (take_some(p, 1, true)) {
    }
    while (take_some(p, 0, true)) {
    }
  }
}

/* Waits until the generation differs from seen (or quit); returns state. */
static uint64_t wait_job(kl_pool *p, uint32_t seen) {
  int64_t t0 = 0;
  for (unsigned spins = 0;; spins++) {
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    if ((uint32_t)(s >> 32) != seen || atomic_load_explicit(&p->quit, memory_order_relaxed))
      return s;
    cpu_relax();
    if (spins % 256 == 255) {
      int64_t t = now_ns();
      if (!t0)
        t0 = t;
      else if (t - t0 > SPIN_NS)
        break;
    }
  }
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add(&p->sleepers, 1);
  uint64_t s;
  while ((uint32_t)((s = atomic_load(&p->state)) >> 32) == seen && !atomic_load(&p->quit))
    pthread_cond_wait(&p->wake, &p->mu);
  atomic_fetch_sub(&p->sleepers, 1);
  pthread_mutex_unlock(&p->mu);
  return s;
}

static void *worker(void *arg) {
  kl_pool *p = arg;
  uint32_t seen = (uint32_t)(atomic_load(&p->state) >> 32);
  for (;;) {
    uint64_t s = wait_job(p, seen);
    if (atomic_load(&p->quit)) return NULL;
    seen = (uint32_t)(s >> 32);
    while (!(s & CLOSED) && (uint32_t)(s >> 32) == seen)
      if (atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acquire,
                                                memory_order_acquire)) {
        take_chunks(p, false);
        atomic_fetch_sub_explicit(&p->state, 1, memory_order_release);
        break;
      }
  }
}

static void pool_run(kl_pool *p, kl_chunk_fn fn, void **bufs, const int64_t *dims, void *cap,
                     int64_t lo, int64_t hi) {
  if (hi - lo <= 1 || p->n_workers == 0) {
    serial_run(p, fn, bufs, dims, cap, lo, hi);
    return;
  }
  const int64_t most = (int64_t)1 << 31; /* chunks per job: they must fit in 32 bits */
  for (; hi - lo > most; lo += most)
    pool_run(p, fn, bufs, dims, cap, lo, lo + most);
  /* no worker is inside: the previous job was closed and drained */
  p->fn = fn;
  p->bufs = bufs;
  p->dims = dims;
  p->cap = cap;
  p->lo = lo;
  int64_t n = hi - lo;
  p->odd = p->next_odd && p->meet_n == n;
  if (p->odd) {
    atomic_store_explicit(&p->left[0], (uint64_t)p->meet << 32, memory_order_relaxed);
    atomic_store_explicit(&p->left[1], (uint64_t)p->meet | (uint64_t)n << 32, memory_order_relaxed);
  } else {
    atomic_store_explicit(&p->left[0], (uint64_t)n << 32, memory_order_relaxed);
    atomic_store_explicit(&p->left[1], 0, memory_order_relaxed);
  }
  uint64_t gen = (atomic_load_explicit(&p->state, memory_order_relaxed) >> 32) + 1;
  atomic_store(&p->state, gen << 32); /* publishes the fields above */
  if (atomic_load(&p->sleepers) > 0) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
  }
  take_chunks(p, true);
  atomic_fetch_or_explicit(&p->state, CLOSED, memory_order_relaxed);
  for (unsigned spins = 0; atomic_load_explicit(&p->state, memory_order_acquire) & COUNT_MASK;
       spins++) {
    cpu_relax();
    if (spins > 4096) sched_yield(); /* a worker inside was preempted */
  }
  /* every chunk is taken: an even job's front and back are where they met */
  p->next_odd = !p->odd;
  p->meet = (int64_t)(atomic_load_explicit(&p->left[0], memory_order_relaxed) & 0xffffffffu);
  p->meet_n = n;
}

static atomic_int fail_create_at;

void kl_pool_fail_create_at(int k) { atomic_store(&fail_create_at, k); }

static int create_thread(pthread_t *t, kl_pool *p) {
  int k = atomic_load(&fail_create_at);
  if (k > 0) {
    atomic_store(&fail_create_at, k - 1);
    if (k == 1) return EAGAIN;
  }
  return pthread_create(t, NULL, worker, p);
}

static void stop_workers(kl_pool *p, int n_started) {
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->quit, true);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < n_started; i++)
    pthread_join(p->threads[i], NULL);
}

kiln_status kl_pool_new(int n_threads, kl_pool **out, char *err, size_t errn) {
  *out = NULL;
  if (n_threads < 2 || n_threads > KL_POOL_MAX_THREADS)
    return kl_fail(err, errn, KILN_INTERNAL, "internal: pool of %d threads (%s:%d)", n_threads,
                   __FILE__, __LINE__);
  kl_pool *p = kl_calloc(1, sizeof *p);
  pthread_t *th = kl_calloc((size_t)n_threads - 1, sizeof *th);
  if (!p || !th) {
    kl_free(p);
    kl_free(th);
    return kl_fail(err, errn, KILN_NOMEM, "out of memory making a pool of %d threads", n_threads);
  }
  p->head.run = pool_run;
  p->threads = th;
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    kl_free(th);
    kl_free(p);
    return kl_fail(err, errn, KILN_ERROR, "cannot make a mutex for the thread pool");
  }
  if (pthread_cond_init(&p->wake, NULL) != 0) {
    pthread_mutex_destroy(&p->mu);
    kl_free(th);
    kl_free(p);
    return kl_fail(err, errn, KILN_ERROR, "cannot make a condition variable for the thread pool");
  }
  for (int i = 0; i < n_threads - 1; i++) {
    int rc = create_thread(&p->threads[i], p);
    if (rc != 0) {
      stop_workers(p, i);
      pthread_cond_destroy(&p->wake);
      pthread_mutex_destroy(&p->mu);
      kl_free(th);
      kl_free(p);
      return kl_fail(err, errn, rc == EAGAIN ? KILN_NOMEM : KILN_ERROR,
                     "cannot start thread %d of %d: %s", i + 2, n_threads, strerror(rc));
    }
    p->n_workers = i + 1;
  }
  *out = p;
  return KILN_OK;
}

void kl_pool_free(kl_pool *p) {
  if (!p || p == kl_pool_serial) return;
  stop_workers(p, p->n_workers);
  pthread_cond_destroy(&p->wake);
  pthread_mutex_destroy(&p->mu);
  kl_free(p->threads);
  kl_free(p);
}

int kl_pool_threads(const kl_pool *p) { return !p || p == kl_pool_serial ? 1 : p->n_workers + 1; }
