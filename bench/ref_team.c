/*
** ref_team.c -- W2 by hand on two threads: what this machine allows.
**
** The same two passes as ref_linreg_step (ref_dot16, then ref_update),
** each cut in two halves: the caller takes the first half, one
** helper thread the second, and they meet after each pass. The helper
** lives as long as the team: it spins on a generation counter for about a
** millisecond after each job (a training loop's next job comes within
** microseconds) and then sleeps on a condition variable, so that it does
** not take a core from Kiln while Kiln's half of the benchmark runs.
** Built like ref.c (-O3 -march=native -ffp-contract=off).
*/
#define _POSIX_C_SOURCE 200809L
#include "bench/ref.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

enum { SPIN_NS = 1000000 };

struct ref_team {
  pthread_t helper;
  pthread_mutex_t mu;
  pthread_cond_t wake;
  atomic_uint gen;  /* the job's number; the helper runs job gen */
  atomic_uint done; /* the last job the helper finished */
  atomic_bool sleeping, quit;
  /* the job: a dot over [lo, hi) into part, or an update with g */
  bool update;
  const float *x;
  float *W, g, part;
  int64_t lo, hi;
};

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *helper_main(void *arg) {
  ref_team *t = arg;
  unsigned seen = 0;
  for (;;) {
    double until = seconds() + SPIN_NS * 1e-9;
    while (atomic_load(&t->gen) == seen && !atomic_load(&t->quit) && seconds() < until) {
    }
    if (atomic_load(&t->gen) == seen && !atomic_load(&t->quit)) {
      pthread_mutex_lock(&t->mu);
      atomic_store(&t->sleeping, true);
      while (atomic_load(&t->gen) == seen && !atomic_load(&t->quit))
        pthread_cond_wait(&t->wake, &t->mu);
      atomic_store(&t->sleeping, false);
      pthread_mutex_unlock(&t->mu);
    }
    if (atomic_load(&t->quit)) return NULL;
    seen = atomic_load(&t->gen);
    if (t->update)
      ref_update(t->x, t->W, t->g, t->lo, t->hi);
    else
      t->part = ref_dot16(t->x, t->W, t->lo, t->hi);
    atomic_store(&t->done, seen);
  }
}

ref_team *ref_team_new(void) {
  ref_team *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->wake, NULL);
  if (pthread_create(&t->helper, NULL, helper_main, t)) {
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->wake);
    free(t);
    return NULL;
  }
  return t;
}

void ref_team_free(ref_team *t) {
  if (!t) return;
  pthread_mutex_lock(&t->mu);
  atomic_store(&t->quit, true);
  pthread_cond_broadcast(&t->wake);
  pthread_mutex_unlock(&t->mu);
  pthread_join(t->helper, NULL);
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->wake);
  free(t);
}

/* Hands the helper its half (the job's fields are set) and waits for it
** after doing the caller's half. */
static void start(ref_team *t) {
  atomic_fetch_add(&t->gen, 1); /* sequentially consistent, then `sleeping` */
  if (atomic_load(&t->sleeping)) {
    pthread_mutex_lock(&t->mu);
    pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->mu);
  }
}

static void finish(ref_team *t) {
  unsigned g = atomic_load(&t->gen);
  while (atomic_load(&t->done) != g) {
  }
}

float ref_linreg_step2(ref_team *t, const float *x, float tv, float *W, int64_t n, float lr) {
  int64_t mid = n / 2 / 16 * 16;
  t->update = false;
  t->x = x;
  t->W = W;
  t->lo = mid;
  t->hi = n;
  start(t);
  float y = ref_dot16(x, W, 0, mid);
  finish(t);
  y += t->part;
  float g = -2.0f * (tv - y) * lr;
  t->update = true;
  t->g = g;
  start(t);
  ref_update(x, W, g, 0, mid);
  finish(t);
  return y;
}
