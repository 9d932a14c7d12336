/*
** random.c -- a seedable generator and the initializers of shared variables
** (kiln_util.h).
**
** The generator is xoshiro256** (D. Blackman and S. Vigna, "Scrambled
** linear pseudorandom number generators", 2018): 256 bits of state, four
** xor/shift/rotate steps per output and a multiply-rotate-multiply
** scrambler; fast, with no known statistical weakness for this use. Its
** state is seeded from one 64-bit number by splitmix64 (Steele, Lea and
** Flood's SplitMix), which spreads similar seeds far apart and never gives
** the all-zero state. Everything is integer arithmetic, so a seed gives the
** same stream on every platform; normal deviates also go through log and
** sqrt.
**
** The initializers only use the public API: they read the variable's dtype
** and shape from kiln_shared_value, fill a temporary tensor and hand it to
** kiln_shared_set, which does the checking and the copying. Their own
** argument errors are recorded in the variable's context with kl_error.
** The file lives in compiler/ because it writes into a context; the
** runtime never does.
*/
#include "kiln_util.h"
#include "compiler/graph.h"

#include <math.h>
#include <stdbool.h>

/* ---------------------------------------------------------------- generator */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void kiln_rng_seed(kiln_rng *r, uint64_t seed) {
  if (!r) return;
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&seed);
}

uint64_t kiln_rng_next(kiln_rng *r) {
  if (!r) return 0;
  uint64_t *s = r->s;
  uint64_t out = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

double kiln_rng_uniform(kiln_rng *r) {
  if (!r) return NAN;
  return (double)(kiln_rng_next(r) >> 11) * 0x1p-53;
}

double kiln_rng_normal(kiln_rng *r) {
  if (!r) return NAN;
  for (;;) {
    double u = 2.0 * kiln_rng_uniform(r) - 1.0; /* [-1, 1) */
    double v = 2.0 * kiln_rng_uniform(r) - 1.0;
    double s = u * u + v * v;
    if (s > 0.0 && s < 1.0) return u * sqrt(-2.0 * log(s) / s);
  }
}

uint64_t kiln_rng_below(kiln_rng *r, uint64_t n) {
  if (!r || n == 0) return 0;
  /* 2^64 mod n: draws below it would make small results more likely. */
  uint64_t reject = (0 - n) % n;
  for (;;) {
    uint64_t x = kiln_rng_next(r);
    if (x >= reject) return x % n;
  }
}

void kiln_shuffle(kiln_rng *r, int64_t *perm, int64_t n) {
  if (!r || !perm || n < 2) return;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)kiln_rng_below(r, (uint64_t)i + 1);
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

/* ---------------------------------------------------------------- init */

typedef enum { FILL_ZERO, FILL_UNIFORM, FILL_NORMAL } fill_kind;

/* The shared variable's current value, or NULL with the status in *st
** (kiln_shared_value records the message for a node that is not shared). */
static const kiln_tensor *shared_of(kiln_node *v, kiln_status *st) {
  const kiln_tensor *cur = kiln_shared_value(v);
  *st = cur ? KILN_OK : KILN_MISUSE;
  return cur;
}

static kiln_status fill(kiln_node *v, const char *who, fill_kind kind, kiln_rng *r, double a,
                        double b) {
  kiln_status st;
  const kiln_tensor *cur = shared_of(v, &st);
  if (!cur) return st;
  kiln_ctx *ctx = kiln_node_ctx(v);
  const char *name = kiln_node_name(v) ? kiln_node_name(v) : "?";
  kiln_dtype dt = kiln_tensor_dtype(cur);
  kiln_tensor *t = kiln_tensor_new(dt, cur->rank, cur->shape, NULL); /* zeros */
  if (!t) return kl_error(ctx, KILN_NOMEM, "%s: out of memory for the value of '%s'", who, name);
  int64_t n = kiln_tensor_size(t);
  void *data = kiln_tensor_data(t);
  for (int64_t i = 0; kind != FILL_ZERO && i < n; i++) {
    double x =
        kind == FILL_UNIFORM ? a + (b - a) * kiln_rng_uniform(r) : a + b * kiln_rng_normal(r);
    kl_convert(dt, data, i, KILN_FLOAT64, &x, 0);
  }
  st = kiln_shared_set(v, t);
  kiln_tensor_free(t);
  return st;
}

/* Checks the node and the generator; records a message on failure. */
static kiln_status check(kiln_node *v, kiln_rng *r, const char *who) {
  kiln_status st;
  if (!shared_of(v, &st)) return st;
  if (!r) return kl_error(kiln_node_ctx(v), KILN_MISUSE, "%s: the generator is NULL", who);
  return KILN_OK;
}

kiln_status kiln_init_uniform(kiln_node *shared, kiln_rng *r, double lo, double hi) {
  kiln_status st = check(shared, r, "init_uniform");
  if (st) return st;
  if (!isfinite(lo) || !isfinite(hi) || !(lo <= hi) || !isfinite(hi - lo))
    return kl_error(kiln_node_ctx(shared), KILN_MISUSE,
                    "init_uniform: the bounds [%g, %g) of '%s' must be finite with lo <= hi", lo,
                    hi, kiln_node_name(shared) ? kiln_node_name(shared) : "?");
  return fill(shared, "init_uniform", FILL_UNIFORM, r, lo, hi);
}

kiln_status kiln_init_normal(kiln_node *shared, kiln_rng *r, double mean, double std) {
  kiln_status st = check(shared, r, "init_normal");
  if (st) return st;
  if (!isfinite(mean) || !isfinite(std) || std < 0)
    return kl_error(kiln_node_ctx(shared), KILN_MISUSE,
                    "init_normal: mean %g and std %g of '%s' must be finite, std >= 0", mean, std,
                    kiln_node_name(shared) ? kiln_node_name(shared) : "?");
  return fill(shared, "init_normal", FILL_NORMAL, r, mean, std);
}

kiln_status kiln_init_glorot_uniform(kiln_node *shared, kiln_rng *r) {
  kiln_status st = check(shared, r, "init_glorot_uniform");
  if (st) return st;
  const kiln_tensor *cur = kiln_shared_value(shared);
  kiln_dtype dt = kiln_tensor_dtype(cur);
  if (dt != KILN_FLOAT32 && dt != KILN_FLOAT64)
    return kl_error(kiln_node_ctx(shared), KILN_TYPE,
                    "init_glorot_uniform: '%s' is %s, Glorot initialization needs float32 or "
                    "float64",
                    kiln_node_name(shared) ? kiln_node_name(shared) : "?", kiln_dtype_name(dt));
  int rank = kiln_tensor_rank(cur);
  double fans; /* fan_in + fan_out */
  if (rank == 0) {
    fans = 2;
  } else if (rank == 1) {
    fans = 2.0 * (double)kiln_tensor_dim(cur, 0);
  } else {
    double rf = 1;
    for (int i = 2; i < rank; i++)
      rf *= (double)kiln_tensor_dim(cur, i);
    fans = ((double)kiln_tensor_dim(cur, 0) + (double)kiln_tensor_dim(cur, 1)) * rf;
  }
  if (kiln_tensor_size(cur) == 0 || !(fans > 0)) return KILN_OK; /* nothing to fill */
  double limit = sqrt(6.0 / fans);
  return fill(shared, "init_glorot_uniform", FILL_UNIFORM, r, -limit, limit);
}

kiln_status kiln_init_zeros(kiln_node *shared) {
  return fill(shared, "init_zeros", FILL_ZERO, NULL, 0, 0);
}
