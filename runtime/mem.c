/*
** mem.c -- the one place Kiln allocates. A countdown lets tests fail the
** k-th allocation on purpose (as Lua's ltests.c does), so every
** out-of-memory path is exercised and must end in KILN_NOMEM without leaks.
*/
#include "runtime/rt.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic long fail_countdown; /* 0: off */
static _Atomic long n_allocs;

void kl_mem_fail_at(long k) { atomic_store(&fail_countdown, k > 0 ? k : 0); }
long kl_mem_count(void) { return atomic_load(&n_allocs); }

/* True when this allocation is the one chosen to fail. */
static bool should_fail(void) {
  atomic_fetch_add(&n_allocs, 1);
  long c = atomic_load(&fail_countdown);
  if (c <= 0) return false;
  if (atomic_fetch_sub(&fail_countdown, 1) == 1) return true;
  return false;
}

void *kl_malloc(size_t n) {
  if (should_fail()) return NULL;
  return malloc(n ? n : 1);
}

void *kl_calloc(size_t count, size_t size) {
  if (should_fail()) return NULL;
  if (count == 0 || size == 0) count = size = 1;
  return calloc(count, size);
}

void *kl_realloc(void *p, size_t n) {
  if (should_fail()) return NULL;
  return realloc(p, n ? n : 1);
}

void kl_free(void *p) { free(p); }

void *kl_aligned_alloc(size_t n) {
  if (should_fail()) return NULL;
  size_t rounded = (n + KL_ALIGN - 1) / KL_ALIGN * KL_ALIGN;
  if (rounded < n) return NULL; /* overflow */
  if (rounded == 0) rounded = KL_ALIGN;
  void *p = aligned_alloc(KL_ALIGN, rounded);
  if (p) memset(p, 0, rounded);
  return p;
}

void kl_aligned_free(void *p) { free(p); }

char *kl_strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = kl_malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

kiln_status kl_fail(char *err, size_t errn, kiln_status st, const char *fmt, ...) {
  if (err && errn) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errn, fmt, ap);
    va_end(ap);
  }
  return st;
}
