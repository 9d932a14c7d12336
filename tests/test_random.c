/*
** test_random.c -- random-graph differential testing of the optimizer and
** the JIT against the reference evaluator.
**
** From a fixed seed, every graph gets its own 64-bit seed and is built from
** it alone: 2-4 inputs of random dtypes (mostly float32, float64, int32) and
** shapes that mix broadcast patterns over three "roles" p, m, n (scalars,
** (n,), (1, n), (m, 1), (m, n), rank 3; a dimension may be dynamic, and a
** dynamic dimension may be given size 1 at call time; a role is sometimes
** longer than the 16 lanes of the blocked float reductions), zero to two
** shared variables, then 3-12 random ops drawn from the public builders
** (elementwise, reductions, dot, where, clip, and the shape ops transpose,
** dimshuffle, reshape, flatten, whose fixed sizes may not fit other dynamic
** sizes) on
** random operands (inputs, variables, earlier results, weak literals,
** constants -- sometimes only constants, so folding and simplification
** fire). Legal builder refusals (KILN_TYPE, KILN_SHAPE) skip the candidate;
** candidates whose shapes would not fit at call time are not built. 1-3
** outputs (a node may repeat), and updates of the variables: by results, by
** leaves (an input, the variable itself, the other variable: a swap).
**
** Each graph is compiled twice, optimized (default options) and with
** no_optimize=1, and run on the same inputs; the reference evaluator
** (kl_ref_run) computes the same outputs and update values from the graph
** as built. All three must agree bit for bit (kt_same_bits; any NaN equals
** any NaN), the shared variables after the call included (reset between
** runs with kiln_shared_set). Then the optimized function runs again: on
** new values of the same shapes (the call fast path), on other sizes of the
** dynamic dimensions (1 where they were not, and back: the broadcasting and
** contiguous kernel versions), where a shape error the reference finds must
** be a KILN_SHAPE that leaves the variables bit-identical, and on the first
** values once more. Output shapes are also checked against numpy's rules,
** computed here independently of Kiln.
**
** A failure prints the graph's seed, how it was built, the "graph" and
** "opt" dumps and the differing values. Reproduce one graph with
**   KILN_RANDOM_ONLY=0x<graph seed> tests/test_random
** Other knobs: KILN_RANDOM_SEED (the base seed), KILN_RANDOM_GRAPHS (count),
** KILN_RANDOM_LLVM_LEVEL (llvm_opt_level of both builds, 0 = default).
*/
#define _POSIX_C_SOURCE 200809L

#include "compiler/graph.h" /* the context's compile cache, to count its hits */
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
#define DEFAULT_GRAPHS 1000
#define MAX_POOL 96
#define MAX_IN 4
#define MAX_OUT 3
#define MAX_SH 2
#define MAX_SHOWN 6 /* failures printed in full */

/* ---------------------------------------------------------------- state */

typedef struct rnode {
  kiln_node *v;
  int rank;
  int64_t rt[KILN_MAX_RANK]; /* its shape at call time (numpy's rules, computed here) */
  int kind;                  /* 0 input, 1 shared, 2 literal or constant, 3 op result */
  int cast_from;             /* a cast's operand dtype, or -1 */
} rnode;

typedef struct rgraph {
  kiln_ctx *ctx;
  uint64_t seed, rng;
  int64_t role[3]; /* sizes of the roles p, m, n */
  rnode pool[MAX_POOL];
  int n_pool, n_ops;
  int n_in;
  kiln_node *in[MAX_IN];
  int in_rank[MAX_IN];
  int64_t in_stat[MAX_IN][KILN_MAX_RANK]; /* static dims (KILN_DYN or a size) */
  kiln_tensor *in_val[MAX_IN];            /* the values of the first run */
  int n_sh;
  int sh[MAX_SH]; /* pool indices of the shared variables */
  kiln_tensor *sh_init[MAX_SH];
  kiln_node *upd[MAX_SH];  /* new value of each variable, NULL if not updated */
  int out[MAX_OUT], n_out; /* pool indices */
  int sib_a, sib_b;        /* the first op and sibling pair (pool indices), or -1 */
  char log[6144];          /* how the graph was built, for failure messages */
  size_t log_len;
} rgraph;

/* Totals over the run. */
typedef struct stats {
  int graphs, ops, skipped, folded, updates, swaps, outputs, compared;
  int alt_runs, alt_errors, cache_hits, siblings, failures, shown;
  int op_count[64];
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
  for (int i = 0; i < rank && at < n; i++) {
    if (d[i] == KILN_DYN)
      at += (size_t)snprintf(buf + at, n - at, "%s?", i ? ", " : "");
    else
      at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)d[i]);
  }
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

/* One random value of dtype dt, written to element i of dst. */
static void rand_value(rgraph *g, kiln_dtype dt, void *dst, int64_t i) {
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
      x = (double[]){0.0, -0.0, -0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1e-3}[rint_(g, 9)];
    else if (u < 0.95)
      x = (double[]){INFINITY, -INFINITY, 1e300, -1e300, 1e-310, 88.0, 700.0}[rint_(g, 7)];
    else
      x = NAN;
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

static kiln_tensor *rand_tensor(rgraph *g, kiln_dtype dt, int rank, const int64_t *rt) {
  kiln_tensor *t = kiln_tensor_new(dt, rank, rt, NULL);
  ck_assert_ptr_nonnull(t);
  for (int64_t i = 0; i < kiln_tensor_size(t); i++)
    rand_value(g, dt, kiln_tensor_data(t), i);
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
    if (dyn && rnd(g) < 0.3) stat[d] = KILN_DYN;
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
  r->cast_from = -1;
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
  kiln_tensor *t = rand_tensor(g, dt, rank, rt);
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

/* A constant the simplifier has rules for (0, -0.0, 1; also -1, 2), as a
** weak literal or as a scalar of x's dtype. */
static int rule_constant(rgraph *g, const rnode *x) {
  double v = (double[]){0.0, -0.0, 1.0, 1.0, -1.0, 2.0}[rint_(g, 6)];
  kiln_node *c;
  if (rnd(g) < 0.5) {
    c = v == (int64_t)v && rnd(g) < 0.5 ? kiln_lit(g->ctx, (int64_t)v) : kiln_lit(g->ctx, v);
    logf_(g, "  %%p%d = lit(%g)\n", g->n_pool, v);
  } else {
    c = kiln_scalar(g->ctx, kiln_node_dtype(x->v), v);
    logf_(g, "  %%p%d = scalar %s %g\n", g->n_pool, kiln_dtype_name(kiln_node_dtype(x->v)), v);
  }
  ck_assert_ptr_nonnull(c);
  return add_pool(g, c, 0, NULL, 2);
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
  /* binary elementwise */
  O_ADD,
  O_SUB,
  O_MUL,
  O_DIV,
  O_MAX,
  O_MIN,
  O_POW,
  O_INTDIV,
  O_MOD,
  O_LT,
  O_EQ,
  /* unary elementwise */
  O_NEG,
  O_SQR,
  O_ABS,
  O_EXP,
  O_LOG,
  O_SQRT,
  O_RELU,
  O_TANH,
  O_SIGN,
  O_CAST,
  /* reductions, dot, ternary */
  O_SUM,
  O_SUM_AXIS,
  O_MEAN,
  O_MEAN_AXIS,
  O_RMAX,
  O_RMAX_AXIS,
  O_DOT,
  O_WHERE,
  O_CLIP,
  /* shape ops (a variant number picks the pattern, see shape_op) */
  O_TRANSPOSE,
  O_DIMSHUFFLE,
  O_RESHAPE,
  O_FLATTEN,
  O_REVERSE, /* kiln_slice x[::-1] along axis 0: keeps the shape, so the roles hold */
  O_N
} opk;
#define IS_SHAPE_OP(k) ((k) >= O_TRANSPOSE && (k) <= O_FLATTEN)

static const char *const OP_NAMES[O_N] = {
    "add",    "sub",      "mul",       "div",        "maximum", "minimum",  "pow",
    "intdiv", "mod",      "lt",        "eq",         "neg",     "sqr",      "abs",
    "exp",    "log",      "sqrt",      "relu",       "tanh",    "sign",     "cast",
    "sum",    "sum_axis", "mean",      "mean_axis",  "max",     "max_axis", "dot",
    "where",  "clip",     "transpose", "dimshuffle", "reshape", "flatten",  "reverse"};
/* the ops the brief names carry most of the weight */
static const int OP_WEIGHT[O_N] = {10, 8, 10, 6, 5, 5, 4, 2, 2, 2, 1, 4, 4, 4, 3, 3, 3, 1,
                                   1,  1, 3,  4, 4, 3, 3, 1, 1, 5, 2, 1, 2, 2, 2, 1, 2};

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
  case O_LT: return kiln_lt(a, b);
  case O_EQ: return kiln_eq(a, b);
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
  case O_RELU: return kiln_relu(a);
  case O_TANH: return kiln_tanh(a);
  case O_SIGN: return kiln_sign(a);
  case O_SUM: return kiln_sum(a);
  case O_MEAN: return kiln_mean(a);
  case O_RMAX: return kiln_max(a);
  case O_REVERSE: return kiln_slice(a, 1, (kiln_slice[]){KILN_STEP(-1)});
  default: return NULL;
  }
}

/* Shape op k of variant var on a, its call-time shape in *rank, rt (numpy's
** rules, worked out here); NULL (not built) when the variant does not apply.
**   transpose   reversed axes
**   dimshuffle  var bit 0: axes reversed; bit 1: static size-1 axes dropped;
**               var >> 2: a new axis ('x') at position (var >> 2) - 1, none if 0
**   reshape     var % 4: (-1,), (1, -1), (-1, 1), or (rows, last) with the sizes
**               of this call (static: a later call with other dynamic sizes
**               may not fit, a shape error the reference must agree on)
**   flatten     ndim = 1 + var % max(rank, 1) */
static kiln_node *shape_op(opk k, const rnode *a, int var, int *rank, int64_t *rt) {
  int r = a->rank;
  int64_t total = 1;
  for (int d = 0; d < r; d++)
    total *= a->rt[d];
  *rank = 0;
  switch (k) {
  case O_TRANSPOSE:
    for (int d = 0; d < r; d++)
      rt[(*rank)++] = a->rt[r - 1 - d];
    return kiln_transpose(a->v, 0, NULL);
  case O_DIMSHUFFLE: {
    int pat[KILN_MAX_RANK], n = 0, at = (var >> 2) - 1;
    for (int i = 0; i < r; i++) {
      int d = var & 1 ? r - 1 - i : i;
      if ((var & 2) && kiln_node_dim(a->v, d) == 1) continue;
      pat[n++] = d;
    }
    if (at > n || n >= 4) at = -1;
    if (at >= 0) {
      memmove(pat + at + 1, pat + at, (size_t)(n - at) * sizeof *pat);
      pat[at] = KILN_NEWAXIS;
      n++;
    }
    for (int i = 0; i < n; i++)
      rt[(*rank)++] = pat[i] < 0 ? 1 : a->rt[pat[i]];
    return kiln_dimshuffle(a->v, n, pat);
  }
  case O_RESHAPE: {
    int64_t last = r ? a->rt[r - 1] : 1, spec[2];
    switch (var % 4) {
    case 0: spec[0] = -1, *rank = 1, rt[0] = total; break;
    case 1: spec[0] = 1, spec[1] = -1, *rank = 2, rt[0] = 1, rt[1] = total; break;
    case 2: spec[0] = -1, spec[1] = 1, *rank = 2, rt[0] = total, rt[1] = 1; break;
    default:
      if (last == 0) return NULL;
      spec[0] = rt[0] = total / last, spec[1] = rt[1] = last, *rank = 2;
      break;
    }
    return kiln_reshape(a->v, *rank, spec);
  }
  case O_FLATTEN: {
    int nd = 1 + var % (r > 1 ? r : 1);
    for (int d = 0; d < nd - 1; d++)
      rt[(*rank)++] = a->rt[d];
    int64_t rest = 1;
    for (int d = nd - 1; d < r; d++)
      rest *= a->rt[d];
    rt[(*rank)++] = rest;
    return kiln_flatten(a->v, nd);
  }
  default: return NULL;
  }
}

/* Records a failure with a one-line summary (and prints what was built). */
static void fail_build(stats *st, rgraph *g, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_build(stats *st, rgraph *g, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  st->failures++;
  if (st->shown++ < MAX_SHOWN)
    fprintf(stderr, "\n=== random graph seed 0x%016" PRIx64 ": %s\nbuilt as:\n%s\n", g->seed, msg,
            g->log);
  size_t at = strlen(st->summary);
  if (at < sizeof st->summary - 300)
    snprintf(st->summary + at, sizeof st->summary - at, "  seed 0x%016" PRIx64 ": %.200s\n",
             g->seed, msg);
}

/* Builds op k on pool operands ia, ib, ic (-1: none) with the given axis or
** cast dtype, checks its static type against numpy's shape and adds it to
** the pool. Returns its pool index, or -1 if the shapes would not fit at
** call time or the builder refused for a legal reason. */
static int make_op(stats *st, rgraph *g, opk k, int ia, int ib, int ic, int axis, int cast_to) {
  rnode a = g->pool[ia], b = ib >= 0 ? g->pool[ib] : a, c = ic >= 0 ? g->pool[ic] : a;
  int rank = 0;
  int64_t rt[KILN_MAX_RANK];
  kiln_node *v = NULL;
  if (k <= O_EQ) {
    if (!broadcast(&a, &b, &rank, rt)) return -1;
    v = build_binary(k, a.v, b.v);
  } else if (k == O_WHERE || k == O_CLIP) {
    rnode ab = {.rank = 0};
    if (!broadcast(&a, &b, &ab.rank, ab.rt) || !broadcast(&ab, &c, &rank, rt)) return -1;
    v = k == O_WHERE ? kiln_where(a.v, b.v, c.v) : kiln_clip(a.v, b.v, c.v);
  } else if (k == O_DOT) {
    if (a.rank < 1 || a.rank > 2 || b.rank < 1 || b.rank > 2) return -1;
    if (a.rt[a.rank - 1] != b.rt[0]) return -1; /* inner sizes: dot does not broadcast */
    if (a.rank == 2) rt[rank++] = a.rt[0];
    if (b.rank == 2) rt[rank++] = b.rt[1];
    v = kiln_dot(a.v, b.v);
  } else if (k == O_SUM_AXIS || k == O_MEAN_AXIS || k == O_RMAX_AXIS) {
    if (a.rank == 0) return -1;
    int ax = axis < 0 ? axis + a.rank : axis;
    for (int d = 0; d < a.rank; d++)
      if (d != ax) rt[rank++] = a.rt[d];
    v = k == O_SUM_AXIS    ? kiln_sum_axis(a.v, axis)
        : k == O_MEAN_AXIS ? kiln_mean_axis(a.v, axis)
                           : kiln_max_axis(a.v, axis);
  } else if (k == O_SUM || k == O_MEAN || k == O_RMAX) {
    v = build_unary(k, a.v);
  } else if (IS_SHAPE_OP(k)) {
    if (a.rank > 3) return -1; /* ranks stay small */
    v = shape_op(k, &a, axis, &rank, rt);
    if (!v && !kiln_errcode(g->ctx)) return -1;
  } else {
    if (k == O_REVERSE && a.rank == 0) return -1;
    rank = a.rank;
    memcpy(rt, a.rt, sizeof rt);
    v = k == O_CAST ? kiln_cast(a.v, (kiln_dtype)cast_to) : build_unary(k, a.v);
  }
  if (!v) {
    kiln_status s = kiln_errcode(g->ctx);
    if (s != KILN_TYPE && s != KILN_SHAPE)
      fail_build(st, g, "%s refused with %s: %s", OP_NAMES[k], kiln_status_str(s),
                 kiln_errmsg(g->ctx));
    kiln_clear_error(g->ctx);
    st->skipped++;
    return -1;
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
  if (id < 0) return -1;
  if (k == O_CAST) g->pool[id].cast_from = (int)kiln_node_dtype(a.v);
  g->n_ops++;
  st->ops++;
  st->op_count[k]++;
  const char *dt = kiln_dtype_name(kiln_node_dtype(v));
  shape_str(rank, rt, s1, sizeof s1);
  if (k == O_SUM_AXIS || k == O_MEAN_AXIS || k == O_RMAX_AXIS || IS_SHAPE_OP(k))
    logf_(g, "  %%p%d = %s(%%p%d, %d) : %s %s\n", id, OP_NAMES[k], ia, axis, dt, s1);
  else if (k == O_CAST)
    logf_(g, "  %%p%d = cast(%%p%d, %s) : %s %s\n", id, ia, kiln_dtype_name(cast_to), dt, s1);
  else if (ic >= 0)
    logf_(g, "  %%p%d = %s(%%p%d, %%p%d, %%p%d) : %s %s\n", id, OP_NAMES[k], ia, ib, ic, dt, s1);
  else if (ib >= 0)
    logf_(g, "  %%p%d = %s(%%p%d, %%p%d) : %s %s\n", id, OP_NAMES[k], ia, ib, dt, s1);
  else
    logf_(g, "  %%p%d = %s(%%p%d) : %s %s\n", id, OP_NAMES[k], ia, dt, s1);
  return id;
}

/* The sibling of op k: same operands and type, another op (or axis, or
** swapped operands of where). CSE must keep siblings apart, and the compile
** cache must not give one the other's code. */
static const opk PARTNER[O_N] = {[O_ADD] = O_SUB,
                                 [O_SUB] = O_ADD,
                                 [O_MUL] = O_ADD,
                                 [O_DIV] = O_POW,
                                 [O_MAX] = O_MIN,
                                 [O_MIN] = O_MAX,
                                 [O_POW] = O_MUL,
                                 [O_INTDIV] = O_MOD,
                                 [O_MOD] = O_INTDIV,
                                 [O_LT] = O_EQ,
                                 [O_EQ] = O_LT,
                                 [O_NEG] = O_ABS,
                                 [O_SQR] = O_ABS,
                                 [O_ABS] = O_NEG,
                                 [O_EXP] = O_LOG,
                                 [O_LOG] = O_SQRT,
                                 [O_SQRT] = O_EXP,
                                 [O_RELU] = O_ABS,
                                 [O_TANH] = O_SIGN,
                                 [O_SIGN] = O_TANH,
                                 [O_CAST] = O_CAST,
                                 [O_SUM] = O_RMAX,
                                 [O_SUM_AXIS] = O_SUM_AXIS,
                                 [O_MEAN] = O_SUM,
                                 [O_MEAN_AXIS] = O_MEAN_AXIS,
                                 [O_RMAX] = O_SUM,
                                 [O_RMAX_AXIS] = O_RMAX_AXIS,
                                 [O_DOT] = O_DOT,
                                 [O_WHERE] = O_WHERE,
                                 [O_CLIP] = O_CLIP,
                                 [O_TRANSPOSE] = O_TRANSPOSE,
                                 [O_DIMSHUFFLE] = O_DIMSHUFFLE,
                                 [O_RESHAPE] = O_RESHAPE,
                                 [O_FLATTEN] = O_FLATTEN,
                                 [O_REVERSE] = O_REVERSE};

/* Tries one random op (sometimes with its sibling); 1 if a node was added. */
static int try_op(stats *st, rgraph *g) {
  opk k = pick_op(g);
  int consts = rnd(g) < 0.12; /* an all-constant subexpression: folding */
  int ia = pick_operand(g, consts), ib = -1, ic = -1, axis = 0, cast_to = -1;
  if (ia < 0) return 0;
  const rnode *a = &g->pool[ia];
  if (k <= O_EQ) {
    double u = rnd(g);
    /* x op x, and x op a constant with a rule: the simplifier's patterns */
    ib = u < 0.08 ? ia : u < 0.25 ? rule_constant(g, a) : pick_operand(g, consts);
  } else if (k == O_WHERE || k == O_CLIP) {
    ib = pick_operand(g, consts);
    /* where(c, x, x): the simplifier's pattern */
    ic = ib < 0 ? -1 : k == O_WHERE && rnd(g) < 0.3 ? ib : pick_operand(g, consts);
    if (ic < 0) return 0;
  } else if (k == O_DOT) {
    ib = pick_operand(g, consts);
  } else if (k == O_SUM_AXIS || k == O_MEAN_AXIS || k == O_RMAX_AXIS) {
    if (a->rank == 0) return 0;
    axis = rint_(g, 2 * a->rank) - a->rank; /* -rank .. rank-1 */
  } else if (IS_SHAPE_OP(k)) {
    axis = rint_(g, 32); /* the variant */
  } else if (k == O_CAST) {
    /* half the casts of a cast go back: simplify's round-trip rule */
    cast_to = a->cast_from >= 0 && rnd(g) < 0.5 ? a->cast_from : (int)pick_dtype(g);
  }
  if ((k <= O_EQ || k == O_DOT) && ib < 0) return 0;
  int first = make_op(st, g, k, ia, ib, ic, axis, cast_to);
  if (first < 0) return 0;
  if (consts) st->folded++;
  int axis_op = k == O_SUM_AXIS || k == O_MEAN_AXIS || k == O_RMAX_AXIS;
  if (!consts && rnd(g) < (axis_op ? 0.35 : 0.05)) {
    int r = g->pool[ia].rank, ok = 1;
    if (k == O_SUM_AXIS || k == O_MEAN_AXIS || k == O_RMAX_AXIS) {
      ok = r >= 2; /* another axis: the same type when the sizes agree */
      int ax = axis < 0 ? axis + r : axis;
      axis = (ax + 1 + rint_(g, r > 1 ? r - 1 : 1)) % (r ? r : 1);
    } else if (k == O_CAST) {
      cast_to = (cast_to + 1 + rint_(g, KILN_N_DTYPES - 1)) % KILN_N_DTYPES;
    } else if (k == O_WHERE || k == O_CLIP) {
      int t = ib;
      ib = ic, ic = t;
    }
    ok &= !IS_SHAPE_OP(k); /* shape ops have no sibling of the same type */
    int sib = ok && k != O_DOT ? make_op(st, g, PARTNER[k], ia, ib, ic, axis, cast_to) : -1;
    if (sib >= 0 && g->sib_a < 0) {
      g->sib_a = first;
      g->sib_b = sib;
      st->siblings++;
    }
  }
  return 1;
}

static int same_rt(const rnode *r, int rank, const int64_t *rt) {
  if (r->rank != rank) return 0;
  for (int d = 0; d < rank; d++)
    if (r->rt[d] != rt[d]) return 0;
  return 1;
}

/* Does pool node r fit variable s as an update (dtype, shape, static dims)? */
static int fits(const rnode *s, const rnode *r) {
  if (kiln_node_dtype(r->v) != kiln_node_dtype(s->v) || !same_rt(r, s->rank, s->rt)) return 0;
  for (int d = 0; d < s->rank; d++)
    if (kiln_node_dim(r->v, d) != KILN_DYN && kiln_node_dim(r->v, d) != s->rt[d]) return 0;
  return 1;
}

/* A value for variable number u: a leaf that fits (the other variable -- a
** swap --, an input, itself), a result that fits, the variable combined
** with one, or sqr of the variable. */
static void pick_update(stats *st, rgraph *g, int u) {
  int si = g->sh[u];
  rnode *s = &g->pool[si];
  if (rnd(g) < 0.25) {
    int cand[MAX_POOL], n = 0;
    for (int i = 0; i < g->n_pool; i++)
      if ((g->pool[i].kind == 0 || g->pool[i].kind == 1) && fits(s, &g->pool[i])) cand[n++] = i;
    if (n > 0) {
      int i = cand[rint_(g, n)];
      g->upd[u] = g->pool[i].v;
      if (g->pool[i].kind == 1 && i != si) st->swaps++;
      logf_(g, "  update %%p%d <- %%p%d\n", si, i);
      return;
    }
  }
  for (int i = g->n_pool - 1; i >= 0; i--) {
    if (g->pool[i].kind == 3 && fits(s, &g->pool[i])) {
      g->upd[u] = g->pool[i].v;
      logf_(g, "  update %%p%d <- %%p%d\n", si, i);
      return;
    }
  }
  for (int i = g->n_pool - 1; i >= 0; i--) {
    rnode *r = &g->pool[i];
    int rank;
    int64_t rt[KILN_MAX_RANK];
    if (r->kind != 3 || !broadcast(s, r, &rank, rt) || !same_rt(s, rank, rt)) continue;
    opk k = (opk[]){O_ADD, O_MUL, O_MAX, O_SUB}[rint_(g, 4)];
    kiln_node *v = build_binary(k, s->v, r->v);
    if (v && kiln_node_dtype(v) == kiln_node_dtype(s->v)) {
      g->upd[u] = v;
      logf_(g, "  update %%p%d <- %s(%%p%d, %%p%d)\n", si, OP_NAMES[k], si, i);
      return;
    }
    kiln_clear_error(g->ctx);
  }
  g->upd[u] = kiln_sqr(s->v);
  ck_assert_ptr_nonnull(g->upd[u]);
  logf_(g, "  update %%p%d <- sqr(%%p%d)\n", si, si);
}

/* Builds the graph of `seed`. */
static void build_graph(stats *st, rgraph *g, kiln_ctx *ctx, uint64_t seed) {
  memset(g, 0, sizeof *g);
  g->ctx = ctx;
  g->seed = seed;
  g->rng = seed ? seed : 1;
  g->sib_a = g->sib_b = -1;
  for (int r = 0; r < 3; r++)
    g->role[r] = 2 + rint_(g, 4);
  if (rnd(g) < 0.3) /* past the 16 lanes of blocked reductions, and odd vector tails */
    g->role[rint_(g, 3)] = (int64_t[]){7, 16, 17, 33, 47}[rint_(g, 5)];
  logf_(g, "  roles p=%lld m=%lld n=%lld\n", (long long)g->role[0], (long long)g->role[1],
        (long long)g->role[2]);
  g->n_in = 2 + rint_(g, 3);
  for (int j = 0; j < g->n_in; j++) {
    kiln_dtype dt = pick_dtype(g);
    int64_t rt[KILN_MAX_RANK];
    int rank = pick_shape(g, 1, g->in_stat[j], rt);
    char name[16], s1[64], s2[64];
    snprintf(name, sizeof name, "in%d", j);
    g->in[j] = kiln_input(ctx, name, dt, rank, g->in_stat[j]);
    ck_assert_ptr_nonnull(g->in[j]);
    g->in_rank[j] = rank;
    g->in_val[j] = rand_tensor(g, dt, rank, rt);
    logf_(g, "  %%p%d = input '%s' %s %s, given %s\n", g->n_pool, name, kiln_dtype_name(dt),
          shape_str(rank, g->in_stat[j], s1, sizeof s1), shape_str(rank, rt, s2, sizeof s2));
    add_pool(g, g->in[j], rank, rt, 0);
  }
  if (rnd(g) < 0.4) {
    g->n_sh = rnd(g) < 0.35 ? 2 : 1;
    kiln_dtype dt = KILN_FLOAT64;
    int rank = 0;
    int64_t stat[KILN_MAX_RANK], rt[KILN_MAX_RANK];
    for (int u = 0; u < g->n_sh; u++) {
      if (u == 0 || rnd(g) < 0.4) { /* else the second has the first's type: swaps */
        dt = pick_dtype(g);
        rank = pick_shape(g, 0, stat, rt);
      }
      g->sh_init[u] = rand_tensor(g, dt, rank, rt);
      char name[16], s1[64];
      snprintf(name, sizeof name, "S%d", u);
      kiln_node *s = kiln_shared(ctx, name, dt, rank, rt, kiln_tensor_data(g->sh_init[u]));
      ck_assert_ptr_nonnull(s);
      logf_(g, "  %%p%d = shared '%s' %s %s\n", g->n_pool, name, kiln_dtype_name(dt),
            shape_str(rank, rt, s1, sizeof s1));
      g->sh[u] = add_pool(g, s, rank, rt, 1);
    }
  }
  int want = 3 + rint_(g, 10);
  for (int tries = 0; g->n_ops < want && tries < 6 * want && g->n_pool < MAX_POOL - 8; tries++)
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
  for (int u = 0; u < g->n_sh; u++)
    if (rnd(g) < 0.8) {
      pick_update(st, g, u);
      st->updates++;
    }
}

static void free_graph(rgraph *g) {
  for (int j = 0; j < g->n_in; j++)
    kiln_tensor_free(g->in_val[j]);
  for (int u = 0; u < g->n_sh; u++)
    kiln_tensor_free(g->sh_init[u]);
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

/* What one run produced: the outputs and every variable after the call. */
typedef struct result {
  kiln_status st;
  kiln_tensor *out[MAX_OUT];
  kiln_tensor *sh[MAX_SH];
} result;

static void free_result(result *r) {
  for (int k = 0; k < MAX_OUT; k++)
    kiln_tensor_free(r->out[k]);
  for (int u = 0; u < MAX_SH; u++)
    kiln_tensor_free(r->sh[u]);
  memset(r, 0, sizeof *r);
}

static void reset_shared(rgraph *g) {
  for (int u = 0; u < g->n_sh; u++)
    ck_assert_int_eq(kiln_shared_set(g->pool[g->sh[u]].v, g->sh_init[u]), KILN_OK);
}

/* Resets the variables, calls f on vals, keeps copies of outputs and variables. */
static void call_fn(rgraph *g, kiln_function *f, kiln_tensor *const *vals, result *r) {
  memset(r, 0, sizeof *r);
  reset_shared(g);
  const kiln_tensor *res[MAX_OUT];
  r->st = kiln_call(f, (const kiln_tensor *const *)vals, res);
  for (int k = 0; r->st == KILN_OK && k < g->n_out; k++)
    r->out[k] = copy_tensor(res[k]);
  for (int u = 0; u < g->n_sh; u++)
    r->sh[u] = copy_tensor(kiln_shared_value(g->pool[g->sh[u]].v));
}

/* The reference: outputs and update values (a variable not updated keeps
** its value), from the variables' initial values. */
static void ref_run(rgraph *g, kiln_tensor *const *vals, result *r) {
  memset(r, 0, sizeof *r);
  reset_shared(g);
  kiln_node *outs[MAX_OUT + MAX_SH];
  int n = 0, at[MAX_SH];
  for (int k = 0; k < g->n_out; k++)
    outs[n++] = g->pool[g->out[k]].v;
  for (int u = 0; u < g->n_sh; u++)
    if (g->upd[u]) at[u] = n, outs[n++] = g->upd[u];
  kiln_tensor *res[MAX_OUT + MAX_SH];
  r->st = kl_ref_run(g->ctx, g->n_in, g->in, (const kiln_tensor *const *)vals, n, outs, res);
  if (r->st != KILN_OK) return;
  for (int k = 0; k < g->n_out; k++)
    r->out[k] = res[k];
  for (int u = 0; u < g->n_sh; u++)
    r->sh[u] = g->upd[u] ? res[at[u]] : copy_tensor(g->sh_init[u]);
  /* Kiln requires an update's value to have the variable's shape exactly */
  for (int u = 0; u < g->n_sh; u++) {
    const kiln_tensor *v = r->sh[u], *s = g->sh_init[u];
    int same = kiln_tensor_rank(v) == kiln_tensor_rank(s);
    for (int d = 0; same && d < kiln_tensor_rank(s); d++)
      same = kiln_tensor_dim(v, d) == kiln_tensor_dim(s, d);
    if (!same) r->st = KILN_SHAPE;
  }
}

static void report(stats *st, rgraph *g, kiln_function *fo, kiln_tensor *const *vals,
                   const char *when, const char *what, const kiln_tensor *want,
                   const kiln_tensor *got, const char *want_label, const char *got_label) {
  st->failures++;
  size_t at = strlen(st->summary);
  if (at < sizeof st->summary - 300)
    snprintf(st->summary + at, sizeof st->summary - at,
             "  seed 0x%016" PRIx64 ": %s, %s: %s and %s differ\n", g->seed, when, what, want_label,
             got_label);
  if (st->shown++ >= MAX_SHOWN) return;
  FILE *o = stderr;
  fprintf(o, "\n=== random graph mismatch (%s): %s: %s and %s differ\n", when, what, want_label,
          got_label);
  fprintf(o, "reproduce: KILN_RANDOM_ONLY=0x%016" PRIx64 " tests/test_random\nbuilt as:\n%s",
          g->seed, g->log);
  fprintf(o, "  inputs of this run:\n");
  for (int j = 0; j < g->n_in; j++) {
    char l[24];
    snprintf(l, sizeof l, "in%d", j);
    print_tensor(o, l, vals[j]);
  }
  for (int u = 0; u < g->n_sh; u++) {
    char l[48];
    snprintf(l, sizeof l, "S%d before", u);
    print_tensor(o, l, g->sh_init[u]);
  }
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

/* Compares a run against the expected result (the reference or an earlier run). */
static void compare(stats *st, rgraph *g, kiln_function *fo, kiln_tensor *const *vals,
                    const char *when, const result *want, const result *got, const char *want_label,
                    const char *got_label) {
  if (want->st != KILN_OK) {
    /* a shape error at call time: a KILN_SHAPE that leaves the variables alone */
    if (got->st != KILN_SHAPE) {
      char m[400];
      snprintf(m, sizeof m, "%s: %s fails with %s but %s returns %s", when, want_label,
               kiln_status_str(want->st), got_label, kiln_status_str(got->st));
      fail_build(st, g, "%s", m);
    }
    for (int u = 0; u < g->n_sh; u++)
      if (!kt_same_bits(got->sh[u], g->sh_init[u]))
        report(st, g, fo, vals, when, "a variable after a failed call", g->sh_init[u], got->sh[u],
               "its value before", got_label);
    return;
  }
  if (got->st != KILN_OK) {
    char m[400];
    snprintf(m, sizeof m, "%s: %s returns %s (%s)", when, got_label, kiln_status_str(got->st),
             kiln_errmsg(g->ctx));
    fail_build(st, g, "%s", m);
    return;
  }
  for (int k = 0; k < g->n_out; k++) {
    st->compared++;
    if (!kt_same_bits(want->out[k], got->out[k])) {
      char what[32];
      snprintf(what, sizeof what, "output %d", k);
      report(st, g, fo, vals, when, what, want->out[k], got->out[k], want_label, got_label);
    }
  }
  for (int u = 0; u < g->n_sh; u++) {
    st->compared++;
    if (!kt_same_bits(want->sh[u], got->sh[u])) {
      char what[64];
      snprintf(what, sizeof what, "variable S%d after the call%s", u,
               g->upd[u] ? "" : " (not updated)");
      report(st, g, fo, vals, when, what, want->sh[u], got->sh[u], want_label, got_label);
    }
  }
}

/* Other call-time sizes for the dynamic dimensions: 1 where they were not,
** the role's size where they were 1 (each with probability 1/2). 0 if no
** dimension changed. */
static int alt_inputs(rgraph *g, kiln_tensor **alt) {
  int changed = 0;
  for (int j = 0; j < g->n_in; j++) {
    int r = g->in_rank[j];
    int64_t rt[KILN_MAX_RANK];
    for (int d = 0; d < r; d++) {
      rt[d] = kiln_tensor_dim(g->in_val[j], d);
      if (g->in_stat[j][d] == KILN_DYN && rnd(g) < 0.5) {
        rt[d] = rt[d] == 1 ? g->role[3 - r + d] : 1;
        changed |= rt[d] != kiln_tensor_dim(g->in_val[j], d);
      }
    }
    alt[j] = rand_tensor(g, kiln_tensor_dtype(g->in_val[j]), r, rt);
  }
  return changed;
}

/* The first sibling pair, each alone in an optimized function: their
** optimized graphs differ only where the siblings do, so each must get its
** own code from the compile cache (the other function still alive); and
** both as the outputs of one function, which CSE must not merge. */
static void check_siblings(stats *st, rgraph *g, int llvm_level) {
  /* at LLVM -O1 unless asked otherwise: the cache key has the level, and these are many */
  kiln_options oo = {.size = sizeof oo, .llvm_opt_level = llvm_level ? llvm_level : 1};
  kiln_node *node[2] = {g->pool[g->sib_a].v, g->pool[g->sib_b].v};
  kiln_function *f[3];
  for (int i = 0; i < 3; i++) {
    int cached = g->ctx->n_cache;
    f[i] = kiln_function_new_opts(g->ctx, "sibling", g->n_in, g->in, i < 2 ? 1 : 2,
                                  i < 2 ? &node[i] : node, 0, NULL, &oo);
    if (!f[i]) {
      fail_build(st, g, "sibling %%p%d: kiln_function_new failed: %s", i ? g->sib_b : g->sib_a,
                 kiln_errmsg(g->ctx));
      return;
    }
    if (g->ctx->n_cache == cached) st->cache_hits++;
  }
  reset_shared(g);
  kiln_tensor *ref[2];
  if (kl_ref_run(g->ctx, g->n_in, g->in, (const kiln_tensor *const *)g->in_val, 2, node, ref) !=
      KILN_OK) {
    fail_build(st, g, "siblings: the reference fails: %s", kiln_errmsg(g->ctx));
    return;
  }
  for (int i = 0; i < 3; i++) {
    const kiln_tensor *out[2];
    kiln_status s = kiln_call(f[i], (const kiln_tensor *const *)g->in_val, out);
    for (int j = 0; j < (i < 2 ? 1 : 2); j++) {
      int which = i < 2 ? i : j;
      char what[64];
      snprintf(what, sizeof what, "sibling %%p%d %s", which ? g->sib_b : g->sib_a,
               i < 2 ? "alone" : "beside the other");
      st->compared++;
      if (s != KILN_OK)
        fail_build(st, g, "%s: kiln_call: %s", what, kiln_errmsg(g->ctx));
      else if (!kt_same_bits(ref[which], out[j]))
        report(st, g, f[i], g->in_val, "first call", what, ref[which], out[j], "reference",
               "optimized");
    }
  }
  kiln_tensor_free(ref[0]);
  kiln_tensor_free(ref[1]);
}

/* Compiles, runs and compares one graph. */
static void check_graph(stats *st, rgraph *g, int llvm_level) {
  kiln_ctx *ctx = g->ctx;
  kiln_node *outs[MAX_OUT];
  for (int k = 0; k < g->n_out; k++)
    outs[k] = g->pool[g->out[k]].v;
  kiln_update upd[MAX_SH];
  int n_upd = 0;
  for (int u = 0; u < g->n_sh; u++)
    if (g->upd[u]) upd[n_upd++] = (kiln_update){g->pool[g->sh[u]].v, g->upd[u]};
  /* the baseline at LLVM -O1 by default: faster to compile, and a second LLVM pipeline */
  /* the stability rewrites change values on purpose (log(exp(x)) -> x): not bit-exact */
  kiln_options oo = {.size = sizeof oo, .llvm_opt_level = llvm_level, .no_stabilize = 1};
  kiln_options on = {
      .size = sizeof on, .no_optimize = 1, .llvm_opt_level = llvm_level ? llvm_level : 1};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int cached = ctx->n_cache;
  kiln_function *fo =
      kiln_function_new_opts(ctx, "opt", g->n_in, g->in, g->n_out, outs, n_upd, upd, &oo);
  char err[1100] = "";
  if (!fo) snprintf(err, sizeof err, "%s", kiln_errmsg(ctx));
  if (fo && ctx->n_cache == cached) st->cache_hits++;
  cached = ctx->n_cache;
  kiln_function *fn =
      kiln_function_new_opts(ctx, "noopt", g->n_in, g->in, g->n_out, outs, n_upd, upd, &on);
  if (fn && ctx->n_cache == cached) st->cache_hits++;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  st->compile_s += (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  if (!fo || !fn) {
    fail_build(st, g, "kiln_function_new failed: optimized: %s; unoptimized: %s", fo ? "ok" : err,
               fn ? "ok" : kiln_errmsg(ctx));
    kiln_function_free(fo);
    kiln_function_free(fn);
    return;
  }
  result ref, ro, rn, r2;
  ref_run(g, g->in_val, &ref);
  if (ref.st != KILN_OK) {
    fail_build(st, g, "the reference fails on the first inputs: %s: %s", kiln_status_str(ref.st),
               kiln_errmsg(ctx));
  } else {
    /* numpy's output shapes, computed while building */
    for (int k = 0; k < g->n_out; k++) {
      const rnode *r = &g->pool[g->out[k]];
      int ok = kiln_tensor_rank(ref.out[k]) == r->rank &&
               kiln_tensor_dtype(ref.out[k]) == kiln_node_dtype(r->v);
      for (int d = 0; ok && d < r->rank; d++)
        ok = kiln_tensor_dim(ref.out[k], d) == r->rt[d];
      char s1[64];
      if (!ok)
        fail_build(st, g, "output %d: the reference's shape is not numpy's %s", k,
                   shape_str(r->rank, r->rt, s1, sizeof s1));
    }
    call_fn(g, fo, g->in_val, &ro);
    call_fn(g, fn, g->in_val, &rn);
    compare(st, g, fo, g->in_val, "first call", &ref, &ro, "reference", "optimized");
    compare(st, g, fo, g->in_val, "first call", &ref, &rn, "reference", "unoptimized");
    /* new values, same shapes: the fast path with new input pointers */
    kiln_tensor *v2[MAX_IN], *alt[MAX_IN];
    for (int j = 0; j < g->n_in; j++) {
      int64_t rt[KILN_MAX_RANK];
      for (int d = 0; d < g->in_rank[j]; d++)
        rt[d] = kiln_tensor_dim(g->in_val[j], d);
      v2[j] = rand_tensor(g, kiln_tensor_dtype(g->in_val[j]), g->in_rank[j], rt);
    }
    result ref2, ro2;
    ref_run(g, v2, &ref2);
    call_fn(g, fo, v2, &ro2);
    compare(st, g, fo, v2, "second values, same shapes", &ref2, &ro2, "reference", "optimized");
    free_result(&ref2);
    free_result(&ro2);
    /* other sizes of the dynamic dimensions, then the first inputs again */
    if (alt_inputs(g, alt)) {
      result refa, roa, rna;
      ref_run(g, alt, &refa);
      call_fn(g, fo, alt, &roa);
      call_fn(g, fn, alt, &rna);
      st->alt_runs++;
      if (refa.st != KILN_OK) st->alt_errors++;
      compare(st, g, fo, alt, "other dynamic sizes", &refa, &roa, "reference", "optimized");
      compare(st, g, fo, alt, "other dynamic sizes", &refa, &rna, "reference", "unoptimized");
      free_result(&refa);
      free_result(&roa);
      free_result(&rna);
    }
    for (int j = 0; j < g->n_in; j++) {
      kiln_tensor_free(v2[j]);
      kiln_tensor_free(alt[j]);
    }
    call_fn(g, fo, g->in_val, &r2);
    compare(st, g, fo, g->in_val, "first inputs again", &ref, &r2, "reference", "optimized");
    free_result(&ro);
    free_result(&rn);
    free_result(&r2);
  }
  free_result(&ref);
  if (g->sib_a >= 0) check_siblings(st, g, llvm_level);
  /* fo and fn stay alive until the context is freed: later graphs whose
  ** optimized graphs are identical share their compiled code (the cache) */
}

/* ---------------------------------------------------------------- tests */

static uint64_t env_u64(const char *name, uint64_t dflt) {
  const char *e = getenv(name);
  return e && *e ? strtoull(e, NULL, 0) : dflt;
}

START_TEST(random_graphs_agree) {
  stats *st = calloc(1, sizeof *st);
  uint64_t base = env_u64("KILN_RANDOM_SEED", DEFAULT_SEED);
  uint64_t only = env_u64("KILN_RANDOM_ONLY", 0);
  int n = only ? 1 : (int)env_u64("KILN_RANDOM_GRAPHS", DEFAULT_GRAPHS);
  int level = (int)env_u64("KILN_RANDOM_LLVM_LEVEL", 0);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  kiln_ctx *ctx = NULL;
  rgraph *g = malloc(sizeof *g);
  for (int i = 0; i < n; i++) {
    if (i % 50 == 0) { /* a fresh context now and then keeps the node tables small */
      kiln_ctx_free(ctx);
      ctx = kiln_ctx_new();
      ck_assert_ptr_nonnull(ctx);
    }
    uint64_t seed = only ? only : splitmix(base + (uint64_t)i);
    build_graph(st, g, ctx, seed);
    if (only) fprintf(stderr, "graph seed 0x%016" PRIx64 ":\n%s", seed, g->log);
    check_graph(st, g, level);
    st->graphs++;
    st->outputs += g->n_out;
    free_graph(g);
  }
  free(g);
  kiln_ctx_free(ctx);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  st->total_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  printf(
      "random graphs: %d graphs (base seed 0x%016" PRIx64 "), %d ops built, %d candidates "
      "refused by builders, %d all-constant ops, %d updates (%d swaps), %d runs with other "
      "dynamic sizes (%d of them shape errors), %d sibling pairs, %d values compared, %d compile "
      "cache hits; %d "
      "mismatches; %.1f s total, %.1f s compiling (%.1f ms per function)\n",
      st->graphs, base, st->ops, st->skipped, st->folded, st->updates, st->swaps, st->alt_runs,
      st->alt_errors, st->siblings, st->compared, st->cache_hits, st->failures, st->total_s,
      st->compile_s, st->compile_s * 1e3 / (2.0 * st->graphs));
  printf("ops built:");
  for (int k = 0; k < O_N; k++)
    printf(" %s %d", OP_NAMES[k], st->op_count[k]);
  printf("\n");
  fflush(stdout);
  ck_assert_int_eq(st->graphs, n);
  if (!only) { /* the generator reaches what it is meant to */
    for (int k = 0; k < O_N; k++)
      ck_assert_msg(st->op_count[k] > 0, "no %s was built", OP_NAMES[k]);
    ck_assert_int_gt(st->updates, n / 10);
    ck_assert_int_gt(st->swaps, 0);
    ck_assert_int_gt(st->alt_runs, n / 10);
    ck_assert_int_gt(st->alt_errors, 0);
  }
  ck_assert_msg(st->failures == 0, "%d mismatches in %d random graphs:\n%s", st->failures,
                st->graphs, st->summary);
  free(st);
}
END_TEST

/* The generator is deterministic: the same seed builds the same graph. */
START_TEST(generator_deterministic) {
  stats *st = calloc(1, sizeof *st);
  kiln_ctx *c1 = kiln_ctx_new(), *c2 = kiln_ctx_new();
  rgraph *a = malloc(sizeof *a), *b = malloc(sizeof *b);
  for (uint64_t s = 1; s < 40; s++) {
    build_graph(st, a, c1, splitmix(s));
    build_graph(st, b, c2, splitmix(s));
    ck_assert_str_eq(a->log, b->log);
    for (int j = 0; j < a->n_in; j++)
      ck_assert(kt_same_bits(a->in_val[j], b->in_val[j]));
    free_graph(a);
    free_graph(b);
  }
  ck_assert_int_eq(st->failures, 0);
  free(a);
  free(b);
  free(st);
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
