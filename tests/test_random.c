/*
** test_random.c -- random-graph differential testing of the optimizer and
** the JIT against the reference evaluator.
**
** From a fixed seed, every graph gets its own 64-bit seed and is built from
** it alone: 2-4 inputs of random dtypes (mostly float32, float64, int32) and
** shapes that mix broadcast patterns over three "roles" p, m, n (scalars,
** (n,), (1, n), (m, 1), (m, n), rank 3; a dimension may be dynamic, and a
** dynamic dimension may be given size 1 at call time), an optional shared
** variable, then 3-12 random ops drawn from the public builders on random
** operands (inputs, earlier results, weak literals, constants -- sometimes
** only constants, so folding and simplification fire). Legal builder
** refusals (KILN_TYPE, KILN_SHAPE) skip the candidate; candidates whose
** shapes would not fit at call time are not built. 1-3 outputs, sometimes
** an update of the shared variable.
**
** Each graph is compiled twice, optimized (default options) and with
** no_optimize=1, and both are run on the same inputs; the reference
** evaluator (kl_ref_run) computes the same outputs and update values from
** the graph as built. All three must agree bit for bit (kt_same_bits),
** the shared variable after the call included (reset between the two
** compiled versions with kiln_shared_set). The optimized function is called
** a second time (the call fast path) and must repeat itself. Output shapes
** are also checked against numpy's rules, computed here independently.
**
** A failure prints the graph's seed, how it was built, the "graph" and
** "opt" dumps and the differing values. Reproduce one graph with
**   KILN_RANDOM_ONLY=0x<graph seed> tests/test_random
** Other knobs: KILN_RANDOM_SEED (the base seed), KILN_RANDOM_GRAPHS (count).
*/
#define _POSIX_C_SOURCE 200809L

#include "compiler/refeval.h"
#include "tests/testutil.h"

#include <check.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_SEED 0x6b696c6e2d726e64ULL /* "kiln-rnd" */
#define DEFAULT_GRAPHS 1200
#define MAX_POOL 96
#define MAX_IN 4
#define MAX_OUT 3
#define MAX_SHOWN 6 /* failures printed in full */

/* ---------------------------------------------------------------- state */

typedef struct rnode {
  kiln_node *v;
  int rank;
  int64_t rt[KILN_MAX_RANK]; /* the shape it has at call time (numpy's rules, computed here) */
  int kind;                  /* 0 input, 1 shared, 2 literal or constant, 3 op result */
} rnode;

typedef struct rgraph {
  kiln_ctx *ctx;
  uint64_t seed, rng;
  int64_t role[3]; /* sizes of the roles p, m, n */
  rnode pool[MAX_POOL];
  int n_pool, n_ops;
  kiln_node *in[MAX_IN];
  kiln_tensor *in_val[MAX_IN];
  int n_in;
  int shared; /* pool index of the shared variable, -1 if none */
  kiln_tensor *shared_init;
  int out[MAX_OUT], n_out; /* pool indices */
  kiln_node *upd_value;    /* NULL: no update */
  int64_t upd_rt[KILN_MAX_RANK];
  char log[6144]; /* how the graph was built, for failure messages */
  size_t log_len;
} rgraph;

/* Totals over the run. */
typedef struct stats {
  int graphs, ops, skipped, folded, updates, outputs, compared;
  int failures, nan_only, shown;
  double compile_s, total_s;
  char summary[8192];
} stats;

static void logf_(rgraph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(rgraph *g, const char *fmt, ...) {
  if (g->log_len >= sizeof g->log - 1) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(g->log + g->log_len, sizeof g->log - g->log_len, fmt, ap);
  va_end(ap);
  if (n > 0) g->log_len += (size_t)n;
  if (g->log_len > sizeof g->log - 1) g->log_len = sizeof g->log - 1;
}

static double rnd(rgraph *g) { return kt_rand(&g->rng); }
static int rint_(rgraph *g, int n) { return (int)(rnd(g) * n) % n; }

static uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static const char *shape_str(int rank, const int64_t *d, char *buf, size_t n) {
  size_t at = (size_t)snprintf(buf, n, "(");
  for (int i = 0; i < rank && at < n; i++)
    at += (size_t)snprintf(buf + at, n - at, "%s%s%lld", i ? ", " : "", d[i] == KILN_DYN ? "?" : "",
                           d[i] == KILN_DYN ? 0LL : (long long)d[i]);
  if (at < n) snprintf(buf + at, n - at, rank == 1 ? ",)" : ")");
  return buf;
}

/* ------------------------------------------------------- dtypes, values */

static kiln_dtype pick_dtype(rgraph *g) {
  static const struct {
    kiln_dtype dt;
    int w;
  } t[] = {{KILN_FLOAT32, 25}, {KILN_FLOAT64, 25}, {KILN_INT32, 20}, {KILN_INT64, 7},
           {KILN_INT8, 6},     {KILN_INT16, 5},    {KILN_UINT8, 6},  {KILN_BOOL, 6}};
  int r = rint_(g, 100);
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    if (r < t[i].w) return t[i].dt;
    r -= t[i].w;
  }
  return KILN_FLOAT64;
}

/* One random value of dtype dt as double (integers exact), written to dst[i]. */
static void rand_value(rgraph *g, kiln_dtype dt, void *dst, int64_t i, int allow_nan) {
  double u = rnd(g);
  switch (dt) {
  case KILN_FLOAT32:
  case KILN_FLOAT64: {
    double x;
    if (u < 0.62)
      x = (rnd(g) - 0.5) * 6.0;
    else if (u < 0.77)
      x = (double)(rint_(g, 9) - 4);
    else if (u < 0.90)
      x = (double[]){0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1e-3}[rint_(g, 7)];
    else if (u < 0.95)
      x = (double[]){INFINITY, -INFINITY, 1e300, -1e300, 1e-310, 88.0, 700.0}[rint_(g, 7)];
    else
      x = allow_nan ? NAN : 3.0;
    if (dt == KILN_FLOAT32)
      ((float *)dst)[i] = (float)x;
    else
      ((double *)dst)[i] = x;
    return;
  }
  case KILN_BOOL: ((uint8_t *)dst)[i] = u < 0.5; return;
  case KILN_UINT8:
    ((uint8_t *)dst)[i] = (uint8_t)(u < 0.85 ? rint_(g, 11) : 250 + rint_(g, 6));
    return;
  default: {
    int64_t lo, hi;
    switch (dt) {
    case KILN_INT8: lo = INT8_MIN, hi = INT8_MAX; break;
    case KILN_INT16: lo = INT16_MIN, hi = INT16_MAX; break;
    case KILN_INT32: lo = INT32_MIN, hi = INT32_MAX; break;
    default: lo = INT64_MIN, hi = INT64_MAX; break;
    }
    int64_t x;
    if (u < 0.80)
      x = rint_(g, 11) - 5;
    else if (u < 0.92)
      x = rint_(g, 201) - 100;
    else
      x = (int64_t[]){lo, hi, lo + 1, hi - 1}[rint_(g, 4)];
    switch (dt) {
    case KILN_INT8: ((int8_t *)dst)[i] = (int8_t)x; break;
    case KILN_INT16: ((int16_t *)dst)[i] = (int16_t)x; break;
    case KILN_INT32: ((int32_t *)dst)[i] = (int32_t)x; break;
    default: ((int64_t *)dst)[i] = x; break;
    }
  }
  }
}

static kiln_tensor *rand_tensor(rgraph *g, kiln_dtype dt, int rank, const int64_t *rt,
                                int allow_nan) {
  kiln_tensor *t = kiln_tensor_new(dt, rank, rt, NULL);
  ck_assert_ptr_nonnull(t);
  for (int64_t i = 0; i < kiln_tensor_size(t); i++)
    rand_value(g, dt, kiln_tensor_data(t), i, allow_nan);
  return t;
}

/* A random shape over the roles: rank 0-3, right-aligned on (p, m, n); a
** dimension is its role's size or 1 (a broadcast); with dyn, a dimension
** may be dynamic in the static type (its call-time size stays). */
static int pick_shape(rgraph *g, int dyn, int64_t *stat, int64_t *rt) {
  double u = rnd(g);
  int rank = u < 0.15 ? 0 : u < 0.45 ? 1 : u < 0.85 ? 2 : 3;
  for (int d = 0; d < rank; d++) {
    int64_t size = g->role[3 - rank + d];
    if (rnd(g) < 0.3) size = 1;
    rt[d] = stat[d] = size;
    if (dyn && rnd(g) < 0.25) stat[d] = KILN_DYN;
  }
  return rank;
}

/* ----------------------------------------------------------- the pool */

static int add_pool(rgraph *g, kiln_node *v, int rank, const int64_t *rt, int kind) {
  if (g->n_pool >= MAX_POOL) return -1;
  rnode *r = &g->pool[g->n_pool];
  r->v = v;
  r->rank = rank;
  for (int d = 0; d < rank; d++)
    r->rt[d] = rt[d];
  r->kind = kind;
  return g->n_pool++;
}

static int new_literal(rgraph *g) {
  kiln_node *v;
  if (rnd(g) < 0.5) {
    double x = (double[]){0.0, -0.0, 1.0, -1.0, 2.0, 0.5, 3.0, 0.1, 1e10}[rint_(g, 9)];
    v = kiln_lit(g->ctx, x);
    logf_(g, "  %%p%d = lit(%g)\n", g->n_pool, x);
  } else {
    int64_t x = (int64_t[]){0, 1, -1, 2, 3, 7, 100, 1000}[rint_(g, 8)];
    v = kiln_lit(g->ctx, x);
    logf_(g, "  %%p%d = lit(%lld)\n", g->n_pool, (long long)x);
  }
  ck_assert_ptr_nonnull(v);
  return add_pool(g, v, 0, NULL, 2);
}

static int new_constant(rgraph *g) {
  kiln_dtype dt = pick_dtype(g);
  int64_t stat[KILN_MAX_RANK], rt[KILN_MAX_RANK];
  int rank = rnd(g) < 0.5 ? 0 : pick_shape(g, 0, stat, rt);
  kiln_tensor *t = rand_tensor(g, dt, rank, rt, 1);
  kiln_node *v = kiln_const(g->ctx, dt, rank, rt, kiln_tensor_data(t));
  ck_assert_ptr_nonnull(v);
  char sh[64], val[256];
  kiln_tensor_sprint(t, val, sizeof val);
  for (char *c = val; *c; c++)
    if (*c == '\n') *c = ' ';
  logf_(g, "  %%p%d = const %s %s %s\n", g->n_pool, kiln_dtype_name(dt),
        shape_str(rank, rt, sh, sizeof sh), val);
  kiln_tensor_free(t);
  return add_pool(g, v, rank, rt, 2);
}

/* An operand: a new literal or constant, a recent result, or anything. */
static int pick_operand(rgraph *g, int consts_only) {
  double u = rnd(g);
  if (consts_only) return u < 0.4 ? new_literal(g) : new_constant(g);
  if (u < 0.12) return new_literal(g);
  if (u < 0.22) return new_constant(g);
  if (u < 0.60 && g->n_ops > 0) {
    /* one of the last three results */
    int back = rint_(g, g->n_ops < 3 ? g->n_ops : 3), seen = 0;
    for (int i = g->n_pool - 1; i >= 0; i--)
      if (g->pool[i].kind == 3 && seen++ == back) return i;
  }
  return rint_(g, g->n_pool);
}

/* numpy broadcasting of call-time shapes: 0 if they do not fit. */
static int broadcast(const rnode *a, const rnode *b, int *rank, int64_t *out) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  for (int i = 0; i < r; i++) {
    int ia = i - (r - a->rank), ib = i - (r - b->rank);
    int64_t da = ia >= 0 ? a->rt[ia] : 1, db = ib >= 0 ? b->rt[ib] : 1;
    if (da != db && da != 1 && db != 1) return 0;
    out[i] = da == 1 ? db : da;
  }
  *rank = r;
  return 1;
}

/* -------------------------------------------------------------- the ops */

typedef enum opk {
  O_ADD,
  O_SUB,
  O_MUL,
  O_DIV,
  O_MAX,
  O_MIN,
  O_POW,
  O_INTDIV,
  O_MOD, /* binary */
  O_NEG,
  O_SQR,
  O_ABS,
  O_EXP,
  O_LOG,
  O_SQRT, /* unary */
  O_SUM,
  O_SUM_AXIS,
  O_MEAN,
  O_MEAN_AXIS,
  O_DOT,
  O_N
} opk;

static const char *const OP_NAMES[O_N] = {
    "add", "sub", "mul", "div", "maximum", "minimum", "pow",      "intdiv", "mod",       "neg",
    "sqr", "abs", "exp", "log", "sqrt",    "sum",     "sum_axis", "mean",   "mean_axis", "dot"};
static const int OP_WEIGHT[O_N] = {10, 8, 10, 6, 5, 5, 4, 2, 2, 4, 4, 4, 3, 3, 3, 4, 4, 3, 3, 5};

static opk pick_op(rgraph *g) {
  int total = 0;
  for (int k = 0; k < O_N; k++)
    total += OP_WEIGHT[k];
  int r = rint_(g, total);
  for (int k = 0; k < O_N; k++) {
    if (r < OP_WEIGHT[k]) return (opk)k;
    r -= OP_WEIGHT[k];
  }
  return O_ADD;
}

static kiln_node *build_binary(opk k, kiln_node *a, kiln_node *b) {
  switch (k) {
  case O_ADD: return kiln_add(a, b);
  case O_SUB: return kiln_sub(a, b);
  case O_MUL: return kiln_mul(a, b);
  case O_DIV: return kiln_div(a, b);
  case O_MAX: return kiln_maximum(a, b);
  case O_MIN: return kiln_minimum(a, b);
  case O_POW: return kiln_pow(a, b);
  case O_INTDIV: return kiln_intdiv(a, b);
  case O_MOD: return kiln_mod(a, b);
  default: return NULL;
  }
}

static kiln_node *build_unary(opk k, kiln_node *a) {
  switch (k) {
  case O_NEG: return kiln_neg(a);
  case O_SQR: return kiln_sqr(a);
  case O_ABS: return kiln_abs(a);
  case O_EXP: return kiln_exp(a);
  case O_LOG: return kiln_log(a);
  case O_SQRT: return kiln_sqrt(a);
  case O_SUM: return kiln_sum(a);
  case O_MEAN: return kiln_mean(a);
  default: return NULL;
  }
}

/* A failure of the generator's own expectations (a library bug). */
static void fail_build(stats *st, rgraph *g, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_build(stats *st, rgraph *g, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  st->failures++;
  fprintf(stderr, "random graph seed 0x%016" PRIx64 ": %s\nbuilt so far:\n%s\n", g->seed, msg,
          g->log);
  size_t at = strlen(st->summary);
  if (at < sizeof st->summary - 300)
    snprintf(st->summary + at, sizeof st->summary - at, "  seed 0x%016" PRIx64 ": %s\n", g->seed,
             msg);
}

/* Tries one random op; 1 if a node was added. */
static int try_op(stats *st, rgraph *g) {
  opk k = pick_op(g);
  int consts = rnd(g) < 0.12; /* an all-constant subexpression: folding */
  int ia = pick_operand(g, consts), ib = -1;
  if (ia < 0) return 0;
  rnode a = g->pool[ia], b = {0};
  int rank = 0, axis = 0;
  int64_t rt[KILN_MAX_RANK];
  kiln_node *v = NULL;
  if (k <= O_MOD) {
    ib = pick_operand(g, consts);
    if (ib < 0) return 0;
    b = g->pool[ib];
    if (!broadcast(&a, &b, &rank, rt)) return 0;
    v = build_binary(k, a.v, b.v);
  } else if (k == O_DOT) {
    ib = pick_operand(g, consts);
    if (ib < 0) return 0;
    b = g->pool[ib];
    if (a.rank < 1 || a.rank > 2 || b.rank < 1 || b.rank > 2) return 0;
    if (a.rt[a.rank - 1] != b.rt[0]) return 0; /* inner sizes: dot does not broadcast */
    if (a.rank == 2) rt[rank++] = a.rt[0];
    if (b.rank == 2) rt[rank++] = b.rt[1];
    v = kiln_dot(a.v, b.v);
  } else if (k == O_SUM_AXIS || k == O_MEAN_AXIS) {
    if (a.rank == 0) return 0;
    axis = rint_(g, 2 * a.rank) - a.rank; /* -rank .. rank-1 */
    int ax = axis < 0 ? axis + a.rank : axis;
    for (int d = 0; d < a.rank; d++)
      if (d != ax) rt[rank++] = a.rt[d];
    v = k == O_SUM_AXIS ? kiln_sum_axis(a.v, axis) : kiln_mean_axis(a.v, axis);
  } else if (k == O_SUM || k == O_MEAN) {
    v = build_unary(k, a.v);
  } else {
    rank = a.rank;
    memcpy(rt, a.rt, sizeof rt);
    v = build_unary(k, a.v);
  }
  if (!v) {
    kiln_status s = kiln_errcode(g->ctx);
    if (s != KILN_TYPE && s != KILN_SHAPE)
      fail_build(st, g, "%s refused with %s: %s", OP_NAMES[k], kiln_status_str(s),
                 kiln_errmsg(g->ctx));
    kiln_clear_error(g->ctx);
    st->skipped++;
    return 0;
  }
  /* the static type must agree with numpy's shape rule */
  int ok = kiln_node_rank(v) == rank;
  for (int d = 0; ok && d < rank; d++)
    ok = kiln_node_dim(v, d) == KILN_DYN || kiln_node_dim(v, d) == rt[d];
  char s1[64];
  if (!ok)
    fail_build(st, g, "%s: static type of rank %d, numpy's shape is %s", OP_NAMES[k],
               kiln_node_rank(v), shape_str(rank, rt, s1, sizeof s1));
  int id = add_pool(g, v, rank, rt, 3);
  if (id < 0) return 0;
  if (consts) st->folded++;
  g->n_ops++;
  st->ops++;
  if (k == O_SUM_AXIS || k == O_MEAN_AXIS)
    logf_(g, "  %%p%d = %s(%%p%d, %d) : %s %s\n", id, OP_NAMES[k], ia, axis,
          kiln_dtype_name(kiln_node_dtype(v)), shape_str(rank, rt, s1, sizeof s1));
  else if (ib >= 0)
    logf_(g, "  %%p%d = %s(%%p%d, %%p%d) : %s %s\n", id, OP_NAMES[k], ia, ib,
          kiln_dtype_name(kiln_node_dtype(v)), shape_str(rank, rt, s1, sizeof s1));
  else
    logf_(g, "  %%p%d = %s(%%p%d) : %s %s\n", id, OP_NAMES[k], ia,
          kiln_dtype_name(kiln_node_dtype(v)), shape_str(rank, rt, s1, sizeof s1));
  return 1;
}

static int same_rt(const rnode *r, int rank, const int64_t *rt) {
  if (r->rank != rank) return 0;
  for (int d = 0; d < rank; d++)
    if (r->rt[d] != rt[d]) return 0;
  return 1;
}

/* A value for the shared variable's update: a result of its dtype and
** shape, or the variable combined with one, or sqr of the variable. */
static void pick_update(rgraph *g) {
  rnode *s = &g->pool[g->shared];
  kiln_dtype dt = kiln_node_dtype(s->v);
  for (int i = g->n_pool - 1; i >= 0; i--) {
    rnode *r = &g->pool[i];
    if (r->kind == 3 && kiln_node_dtype(r->v) == dt && same_rt(r, s->rank, s->rt)) {
      g->upd_value = r->v;
      logf_(g, "  update %%p%d <- %%p%d\n", g->shared, i);
      return;
    }
  }
  for (int i = g->n_pool - 1; i >= 0; i--) {
    rnode *r = &g->pool[i];
    int rank;
    int64_t rt[KILN_MAX_RANK];
    if (r->kind != 3 || !broadcast(s, r, &rank, rt) || rank != s->rank || !same_rt(s, rank, rt))
      continue;
    opk k = (opk[]){O_ADD, O_MUL, O_MAX, O_SUB}[rint_(g, 4)];
    kiln_node *v = build_binary(k, s->v, r->v);
    if (v && kiln_node_dtype(v) == dt) {
      g->upd_value = v;
      logf_(g, "  update %%p%d <- %s(%%p%d, %%p%d)\n", g->shared, OP_NAMES[k], g->shared, i);
      return;
    }
    kiln_clear_error(g->ctx);
  }
  g->upd_value = kiln_sqr(s->v);
  ck_assert_ptr_nonnull(g->upd_value);
  logf_(g, "  update %%p%d <- sqr(%%p%d)\n", g->shared, g->shared);
}

/* Builds graph number `seed`. */
static void build_graph(stats *st, rgraph *g, kiln_ctx *ctx, uint64_t seed) {
  memset(g, 0, sizeof *g);
  g->ctx = ctx;
  g->seed = seed;
  g->rng = seed ? seed : 1;
  g->shared = -1;
  for (int r = 0; r < 3; r++)
    g->role[r] = 2 + rint_(g, 3);
  logf_(g, "  roles p=%lld m=%lld n=%lld\n", (long long)g->role[0], (long long)g->role[1],
        (long long)g->role[2]);
  g->n_in = 2 + rint_(g, 3);
  for (int j = 0; j < g->n_in; j++) {
    kiln_dtype dt = pick_dtype(g);
    int64_t stat[KILN_MAX_RANK], rt[KILN_MAX_RANK];
    int rank = pick_shape(g, 1, stat, rt);
    char name[8], s1[64], s2[64];
    snprintf(name, sizeof name, "in%d", j);
    g->in[j] = kiln_input(ctx, name, dt, rank, stat);
    ck_assert_ptr_nonnull(g->in[j]);
    g->in_val[j] = rand_tensor(g, dt, rank, rt, 1);
    logf_(g, "  %%p%d = input '%s' %s %s, given %s\n", g->n_pool, name, kiln_dtype_name(dt),
          shape_str(rank, stat, s1, sizeof s1), shape_str(rank, rt, s2, sizeof s2));
    add_pool(g, g->in[j], rank, rt, 0);
  }
  if (rnd(g) < 0.35) {
    kiln_dtype dt = pick_dtype(g);
    int64_t stat[KILN_MAX_RANK], rt[KILN_MAX_RANK];
    int rank = pick_shape(g, 0, stat, rt);
    g->shared_init = rand_tensor(g, dt, rank, rt, 1);
    kiln_node *s = kiln_shared(ctx, "S", dt, rank, rt, kiln_tensor_data(g->shared_init));
    ck_assert_ptr_nonnull(s);
    char s1[64];
    logf_(g, "  %%p%d = shared 'S' %s %s\n", g->n_pool, kiln_dtype_name(dt),
          shape_str(rank, rt, s1, sizeof s1));
    g->shared = add_pool(g, s, rank, rt, 1);
  }
  int want = 3 + rint_(g, 10);
  for (int tries = 0; g->n_ops < want && tries < 6 * want && g->n_pool < MAX_POOL - 4; tries++)
    try_op(st, g);
  /* outputs: mostly the latest results, sometimes any node (even repeated) */
  g->n_out = 1 + rint_(g, MAX_OUT);
  for (int k = 0; k < g->n_out; k++) {
    int pick = -1;
    if (g->n_ops > 0 && rnd(g) < 0.85) {
      int back = rint_(g, g->n_ops < 4 ? g->n_ops : 4), seen = 0;
      for (int i = g->n_pool - 1; i >= 0 && pick < 0; i--)
        if (g->pool[i].kind == 3 && seen++ == back) pick = i;
    }
    if (pick < 0) pick = rint_(g, g->n_pool);
    g->out[k] = pick;
    logf_(g, "  output %d = %%p%d\n", k, pick);
  }
  if (g->shared >= 0 && rnd(g) < 0.8) {
    pick_update(g);
    const rnode *s = &g->pool[g->shared];
    memcpy(g->upd_rt, s->rt, sizeof g->upd_rt);
    st->updates++;
  }
}

static void free_graph(rgraph *g) {
  for (int j = 0; j < g->n_in; j++)
    kiln_tensor_free(g->in_val[j]);
  kiln_tensor_free(g->shared_init);
}

/* ------------------------------------------------------------- running */

static kiln_tensor *copy_tensor(const kiln_tensor *t) {
  int64_t shape[KILN_MAX_RANK];
  for (int d = 0; d < kiln_tensor_rank(t); d++)
    shape[d] = kiln_tensor_dim(t, d);
  kiln_tensor *c =
      kiln_tensor_new(kiln_tensor_dtype(t), kiln_tensor_rank(t), shape, kiln_tensor_data(t));
  ck_assert_ptr_nonnull(c);
  return c;
}

static char *dump(kiln_function *f, const char *stage) {
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  if (!m) return NULL;
  if (kiln_function_dump_named(f, stage, m) != KILN_OK) fputs("(dump failed)\n", m);
  fclose(m);
  return buf;
}

static void print_tensor(FILE *out, const char *label, const kiln_tensor *t) {
  if (!t) {
    fprintf(out, "    %s: (none)\n", label);
    return;
  }
  char buf[2048];
  kiln_tensor_sprint(t, buf, sizeof buf);
  fprintf(out, "    %s: %s %s\n      bits:", label, kiln_dtype_name(kiln_tensor_dtype(t)), buf);
  size_t es = kiln_dtype_size(kiln_tensor_dtype(t));
  for (int64_t i = 0; i < kiln_tensor_size(t) && i < 24; i++) {
    uint64_t b = 0;
    memcpy(&b, (const char *)kiln_tensor_data(t) + (size_t)i * es, es);
    fprintf(out, " %llx", (unsigned long long)b);
  }
  fprintf(out, "\n");
}

/* Do a and b differ only in elements that are NaN in both? */
static int nan_only(const kiln_tensor *a, const kiln_tensor *b) {
  if (!a || !b) return 0;
  kiln_dtype dt = kiln_tensor_dtype(a);
  if (dt != kiln_tensor_dtype(b) || kiln_tensor_size(a) != kiln_tensor_size(b)) return 0;
  if (dt != KILN_FLOAT32 && dt != KILN_FLOAT64) return 0;
  size_t es = kiln_dtype_size(dt);
  for (int64_t i = 0; i < kiln_tensor_size(a); i++) {
    const char *pa = (const char *)kiln_tensor_data(a) + (size_t)i * es;
    const char *pb = (const char *)kiln_tensor_data(b) + (size_t)i * es;
    if (!memcmp(pa, pb, es)) continue;
    double x = dt == KILN_FLOAT32 ? *(const float *)pa : *(const double *)pa;
    double y = dt == KILN_FLOAT32 ? *(const float *)pb : *(const double *)pb;
    if (!(isnan(x) && isnan(y))) return 0;
  }
  return 1;
}

typedef struct result {
  kiln_tensor *out[MAX_OUT];
  kiln_tensor *shared; /* after the call */
} result;

static void free_result(result *r) {
  for (int k = 0; k < MAX_OUT; k++)
    kiln_tensor_free(r->out[k]);
  kiln_tensor_free(r->shared);
  memset(r, 0, sizeof *r);
}

/* Resets S, calls f, keeps copies of the outputs and of S. */
static kiln_status call_fn(rgraph *g, kiln_function *f, result *r) {
  memset(r, 0, sizeof *r);
  if (g->shared >= 0)
    ck_assert_int_eq(kiln_shared_set(g->pool[g->shared].v, g->shared_init), KILN_OK);
  const kiln_tensor *res[MAX_OUT];
  kiln_status st = kiln_call(f, (const kiln_tensor *const *)g->in_val, res);
  if (st != KILN_OK) return st;
  for (int k = 0; k < g->n_out; k++)
    r->out[k] = copy_tensor(res[k]);
  if (g->shared >= 0) r->shared = copy_tensor(kiln_shared_value(g->pool[g->shared].v));
  return KILN_OK;
}

static void report(stats *st, rgraph *g, kiln_function *fo, const char *what,
                   const kiln_tensor *want, const kiln_tensor *got, const char *want_label,
                   const char *got_label) {
  int nan = want && got && nan_only(want, got);
  st->failures++;
  if (nan) st->nan_only++;
  size_t at = strlen(st->summary);
  if (at < sizeof st->summary - 300)
    snprintf(st->summary + at, sizeof st->summary - at,
             "  seed 0x%016" PRIx64 ": %s: %s and %s differ%s\n", g->seed, what, want_label,
             got_label, nan ? " (only in NaN bits)" : "");
  if (st->shown++ >= MAX_SHOWN) return;
  FILE *o = stderr;
  fprintf(o, "\n=== random graph mismatch: %s: %s and %s differ%s\n", what, want_label, got_label,
          nan ? " (only in the bits of NaNs)" : "");
  fprintf(o, "reproduce: KILN_RANDOM_ONLY=0x%016" PRIx64 " tests/test_random\nbuilt as:\n%s",
          g->seed, g->log);
  fprintf(o, "  inputs:\n");
  for (int j = 0; j < g->n_in; j++) {
    char l[16];
    snprintf(l, sizeof l, "in%d", j);
    print_tensor(o, l, g->in_val[j]);
  }
  if (g->shared_init) print_tensor(o, "S before", g->shared_init);
  print_tensor(o, want_label, want);
  print_tensor(o, got_label, got);
  if (fo) {
    char *gr = dump(fo, "graph"), *op = dump(fo, "opt");
    fprintf(o, "--- stage graph\n%s--- stage opt\n%s", gr ? gr : "", op ? op : "");
    free(gr);
    free(op);
  }
  fflush(o);
}

/* Compiles, runs and compares one graph. */
static void check_graph(stats *st, rgraph *g, int llvm_level) {
  kiln_ctx *ctx = g->ctx;
  kiln_node *outs[MAX_OUT];
  for (int k = 0; k < g->n_out; k++)
    outs[k] = g->pool[g->out[k]].v;
  kiln_update upd = {g->shared >= 0 ? g->pool[g->shared].v : NULL, g->upd_value};
  int n_upd = g->upd_value ? 1 : 0;
  kiln_options oo = {.size = sizeof oo, .llvm_opt_level = llvm_level};
  kiln_options on = {.size = sizeof on, .no_optimize = 1, .llvm_opt_level = llvm_level};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  kiln_function *fo =
      kiln_function_new_opts(ctx, "opt", g->n_in, g->in, g->n_out, outs, n_upd, &upd, &oo);
  char err[1100] = "";
  if (!fo) snprintf(err, sizeof err, "%s", kiln_errmsg(ctx));
  kiln_function *fn =
      kiln_function_new_opts(ctx, "noopt", g->n_in, g->in, g->n_out, outs, n_upd, &upd, &on);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  st->compile_s += (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  if (!fo || !fn) {
    fail_build(st, g, "kiln_function_new failed: optimized: %s; unoptimized: %s", fo ? "ok" : err,
               fn ? "ok" : kiln_errmsg(ctx));
    kiln_function_free(fo);
    kiln_function_free(fn);
    return;
  }
  /* the reference, from the shared variable's initial value */
  kiln_node *rout[MAX_OUT + 1];
  for (int k = 0; k < g->n_out; k++)
    rout[k] = outs[k];
  if (n_upd) rout[g->n_out] = g->upd_value;
  kiln_tensor *ref[MAX_OUT + 1] = {0};
  if (g->shared >= 0) ck_assert_int_eq(kiln_shared_set(upd.shared, g->shared_init), KILN_OK);
  kiln_status rs = kl_ref_run(ctx, g->n_in, g->in, (const kiln_tensor *const *)g->in_val,
                              g->n_out + n_upd, rout, ref);
  result ro, rn, ro2;
  kiln_status so = call_fn(g, fo, &ro), sn = call_fn(g, fn, &rn), so2 = call_fn(g, fo, &ro2);
  if (rs != KILN_OK || so != KILN_OK || sn != KILN_OK || so2 != KILN_OK) {
    char m[1400];
    snprintf(m, sizeof m,
             "a run failed: reference %s, optimized %s, unoptimized %s, optimized again %s: %s",
             kiln_status_str(rs), kiln_status_str(so), kiln_status_str(sn), kiln_status_str(so2),
             kiln_errmsg(ctx));
    fail_build(st, g, "%s", m);
  } else {
    for (int k = 0; k <= g->n_out; k++) {
      char what[64];
      const kiln_tensor *want, *a, *b, *c;
      if (k < g->n_out) {
        snprintf(what, sizeof what, "output %d", k);
        want = ref[k], a = ro.out[k], b = rn.out[k], c = ro2.out[k];
        /* numpy's shape, computed while building */
        const rnode *r = &g->pool[g->out[k]];
        int ok =
            kiln_tensor_rank(want) == r->rank && kiln_tensor_dtype(want) == kiln_node_dtype(r->v);
        for (int d = 0; ok && d < r->rank; d++)
          ok = kiln_tensor_dim(want, d) == r->rt[d];
        if (!ok) {
          char s1[64];
          fail_build(st, g, "output %d: the reference's shape is not numpy's %s", k,
                     shape_str(r->rank, r->rt, s1, sizeof s1));
        }
      } else if (n_upd) {
        snprintf(what, sizeof what, "shared variable S after the call");
        want = ref[k], a = ro.shared, b = rn.shared, c = ro2.shared;
      } else {
        break;
      }
      st->compared++;
      if (!kt_same_bits(want, a)) report(st, g, fo, what, want, a, "reference", "optimized");
      if (!kt_same_bits(want, b)) report(st, g, fo, what, want, b, "reference", "unoptimized");
      if (!kt_same_bits(a, c)) report(st, g, fo, what, a, c, "optimized", "optimized, second call");
    }
    /* without an update S must not change */
    if (g->shared >= 0 && !n_upd && !kt_same_bits(ro.shared, g->shared_init))
      report(st, g, fo, "S (not updated)", g->shared_init, ro.shared, "initial", "after the call");
  }
  for (int k = 0; k <= MAX_OUT; k++)
    kiln_tensor_free(ref[k]);
  free_result(&ro);
  free_result(&rn);
  free_result(&ro2);
  kiln_function_free(fo);
  kiln_function_free(fn);
}

/* ---------------------------------------------------------------- tests */

static uint64_t env_u64(const char *name, uint64_t dflt) {
  const char *e = getenv(name);
  return e && *e ? strtoull(e, NULL, 0) : dflt;
}

START_TEST(random_graphs_agree) {
  stats st;
  memset(&st, 0, sizeof st);
  uint64_t base = env_u64("KILN_RANDOM_SEED", DEFAULT_SEED);
  uint64_t only = env_u64("KILN_RANDOM_ONLY", 0);
  int n = only ? 1 : (int)env_u64("KILN_RANDOM_GRAPHS", DEFAULT_GRAPHS);
  int level = (int)env_u64("KILN_RANDOM_LLVM_LEVEL", 0);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  kiln_ctx *ctx = NULL;
  for (int i = 0; i < n; i++) {
    if (i % 50 == 0) { /* a fresh context now and then keeps the node tables small */
      kiln_ctx_free(ctx);
      ctx = kiln_ctx_new();
      ck_assert_ptr_nonnull(ctx);
    }
    rgraph *g = malloc(sizeof *g);
    uint64_t seed = only ? only : splitmix(base + (uint64_t)i);
    build_graph(&st, g, ctx, seed);
    if (only) fprintf(stderr, "graph seed 0x%016" PRIx64 ":\n%s", seed, g->log);
    check_graph(&st, g, level);
    st.graphs++;
    st.outputs += g->n_out;
    free_graph(g);
    free(g);
  }
  kiln_ctx_free(ctx);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  st.total_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  printf("random graphs: %d graphs (base seed 0x%016" PRIx64
         "), %d ops built, %d candidates refused by builders, "
         "%d all-constant ops, %d updates, %d values compared three ways; %d mismatches (%d only "
         "in NaN bits); "
         "%.1f s total, %.1f s compiling (%.1f ms per function)\n",
         st.graphs, base, st.ops, st.skipped, st.folded, st.updates, st.compared, st.failures,
         st.nan_only, st.total_s, st.compile_s, st.compile_s * 1e3 / (2.0 * st.graphs));
  fflush(stdout);
  ck_assert_int_eq(st.graphs, n);
  ck_assert_msg(st.failures == 0,
                "%d mismatches in %d random graphs (%d only in the bits of NaNs):\n%s", st.failures,
                st.graphs, st.nan_only, st.summary);
}
END_TEST

/* The generator is deterministic: the same seed builds the same graph. */
START_TEST(generator_deterministic) {
  stats st;
  memset(&st, 0, sizeof st);
  kiln_ctx *c1 = kiln_ctx_new(), *c2 = kiln_ctx_new();
  rgraph *a = malloc(sizeof *a), *b = malloc(sizeof *b);
  for (uint64_t s = 1; s < 40; s++) {
    build_graph(&st, a, c1, splitmix(s));
    build_graph(&st, b, c2, splitmix(s));
    ck_assert_str_eq(a->log, b->log);
    for (int j = 0; j < a->n_in; j++)
      ck_assert(kt_same_bits(a->in_val[j], b->in_val[j]));
    free_graph(a);
    free_graph(b);
  }
  ck_assert_int_eq(st.failures, 0);
  free(a);
  free(b);
  kiln_ctx_free(c1);
  kiln_ctx_free(c2);
}
END_TEST

int main(void) {
  Suite *s = suite_create("random");
  TCase *tc = tcase_create("random");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, generator_deterministic);
  tcase_add_test(tc, random_graphs_agree);
  suite_add_tcase(s, tc);
  return kt_run(s);
}
