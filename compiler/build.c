/*
** build.c -- graph builders and their type rules.
**
** Every public op builder ends in one of the generic builders here:
** kl_elem (elementwise, numpy broadcasting and promotion), kl_reduce,
** kl_bcast, kl_sum_like, kl_dot. Promotion inserts explicit cast nodes, so
** after building every elementwise op sees inputs of one dtype (except the
** condition of where): the reference evaluator and the lowering never
** promote on their own. Weak literals are materialized here, at the dtype of
** the tensor they meet (NEP 50).
*/
#include "compiler/graph.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* -------------------------------------------------------------- dtypes */

kiln_dtype kl_promote(kiln_dtype a, kiln_dtype b) { return kiln_promote(a, b); }

kiln_dtype kl_float_of(kiln_dtype dt) {
  switch (dt) {
  case KILN_FLOAT32:
  case KILN_FLOAT64: return dt;
  case KILN_BOOL:
  case KILN_INT8:
  case KILN_INT16:
  case KILN_UINT8: return KILN_FLOAT32;
  default: return KILN_FLOAT64;
  }
}

int64_t kl_type_static_size(const kl_type *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) {
    if (t->dims[i] < 0) return -1;
    n *= t->dims[i];
  }
  return n;
}

bool kl_broadcast_dims(const kl_type *a, const kl_type *b, kl_type *out) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  kl_type o = *out;
  o.rank = (uint8_t)r;
  for (int i = 0; i < r; i++) {
    int ia = i - (r - a->rank), ib = i - (r - b->rank);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    int64_t d;
    if (da == db)
      d = da;
    else if (da == 1)
      d = db;
    else if (db == 1)
      d = da;
    else if (da == KILN_DYN)
      d = db; /* a must be db or 1 at run time: either way the result is db */
    else if (db == KILN_DYN)
      d = da;
    else
      return false;
    o.dims[i] = d;
  }
  *out = o;
  return true;
}

bool kl_needs_sum_like(const kl_type *from, const kl_type *to) {
  if (from->rank != to->rank) return true;
  for (int i = 0; i < to->rank; i++) {
    if (to->dims[i] == KILN_DYN) return true;
    if (to->dims[i] == 1 && from->dims[i] != 1) return true;
  }
  return false;
}

/* ---------------------------------------------------------------- helpers */

/* The context shared by all inputs, or NULL: quietly if an input is NULL
** (an earlier builder failed), with KILN_MISUSE if handles are bad. */
kiln_ctx *kl_common_ctx(const char *what, int n, kiln_node *const *in) {
  kiln_ctx *ctx = NULL;
  for (int i = 0; i < n; i++) {
    if (!in[i]) return NULL;
    if (!kl_node_ok(in[i])) {
      for (int j = 0; j < n; j++)
        if (in[j] && kl_node_ok(in[j]))
          kl_error(in[j]->ctx, KILN_MISUSE, "%s: operand %d is not a valid node", what, i);
      return NULL;
    }
    if (!ctx) ctx = in[i]->ctx;
    if (in[i]->ctx != ctx) {
      kl_error(ctx, KILN_MISUSE, "%s: operands belong to different contexts", what);
      return NULL;
    }
  }
  return ctx;
}

static bool is_weak_const(const kiln_node *v) { return v->op == KL_OP_CONST && v->type.weak; }

kiln_node *kl_cast(kiln_node *x, kiln_dtype dt, const char *file, int line) {
  if (!x) return NULL;
  if (x->type.dtype == dt && !x->type.weak) return x;
  kl_type t = x->type;
  t.dtype = (uint8_t)dt;
  t.weak = false;
  if (is_weak_const(x)) {
    /* A literal becomes a constant of the dtype it meets. An integer literal
    ** that does not fit an integer dtype is an error (NEP 50). */
    if (x->type.dtype == KILN_INT64 && kl_dtype_is_int(dt)) {
      int64_t v = *(const int64_t *)x->data;
      static const int64_t lo[] = {0, -128, -32768, INT32_MIN, INT64_MIN, 0};
      static const int64_t hi[] = {1, 127, 32767, INT32_MAX, INT64_MAX, 255};
      if (v < lo[dt] || v > hi[dt]) {
        kl_error(x->ctx, KILN_TYPE, "literal %lld does not fit %s (built at %s:%d)", (long long)v,
                 kiln_dtype_name(dt), kl_basename(file), line);
        return NULL;
      }
    }
    unsigned char buf[8];
    kl_convert(dt, buf, 0, (kiln_dtype)x->type.dtype, x->data, 0);
    return kl_const_new(x->ctx, &t, buf, x->file, x->line);
  }
  return kl_node_new(x->ctx, KL_OP_CAST, 1, &x, &t, NULL, file, line);
}

/* The dtype an elementwise op computes in: numpy promotion of the strong
** inputs, with weak inputs following NEP 50. *all_weak says whether the
** result stays weak. */
static kiln_dtype compute_dtype(int n, kiln_node *const *in, bool *all_weak) {
  kiln_dtype strong = KILN_N_DTYPES;
  bool weak_float = false, any_weak = false;
  for (int i = 0; i < n; i++) {
    if (in[i]->type.weak) {
      any_weak = true;
      weak_float |= in[i]->type.dtype == KILN_FLOAT64;
    } else {
      kiln_dtype d = (kiln_dtype)in[i]->type.dtype;
      strong = strong == KILN_N_DTYPES ? d : kl_promote(strong, d);
    }
  }
  *all_weak = strong == KILN_N_DTYPES;
  if (*all_weak) return weak_float ? KILN_FLOAT64 : KILN_INT64;
  if (any_weak && weak_float && !kl_dtype_is_float(strong)) return KILN_FLOAT64;
  if (any_weak && !weak_float && strong == KILN_BOOL) return KILN_INT64;
  return strong;
}

static void broadcast_error(kiln_ctx *ctx, const char *what, kiln_node *a, kiln_node *b,
                            const char *file, int line) {
  char la[256], lb[256], sa[160], sb[160];
  kl_error(ctx, KILN_SHAPE,
           "%s: shapes %s and %s cannot be broadcast: %s and %s, in %s built at %s:%d", what,
           kl_shape_str(sa, sizeof sa, a->type.rank, a->type.dims),
           kl_shape_str(sb, sizeof sb, b->type.rank, b->type.dims), kl_node_label(a, la, sizeof la),
           kl_node_label(b, lb, sizeof lb), what, kl_basename(file), line);
}

kiln_node *kl_elem(kl_opcode op, int n, kiln_node *const *in, const char *file, int line) {
  const char *what = kl_ops[op].name;
  kiln_ctx *ctx = kl_common_ctx(what, n, in);
  if (!ctx) return NULL;
  int first = op == KL_OP_WHERE ? 1 : 0; /* where's condition is not promoted */
  bool weak;
  kiln_dtype c = compute_dtype(n - first, in + first, &weak);
  kiln_dtype out = c;
  char lb[256];
  switch (op) {
  case KL_OP_NEG:
  case KL_OP_SUB:
  case KL_OP_POW:
  case KL_OP_SIGN: /* numpy has no bool loop for these */
    if (c == KILN_BOOL) {
      kl_error(ctx, KILN_TYPE, "%s: not defined for bool operands (%s, built at %s:%d)", what,
               kl_node_label(in[0], lb, sizeof lb), kl_basename(file), line);
      return NULL;
    }
    break;
  case KL_OP_INTDIV:
  case KL_OP_MOD:
    if (!kl_dtype_is_int(c)) {
      kl_error(ctx, KILN_TYPE, "%s: needs integer operands, got %s (%s, built at %s:%d)", what,
               kiln_dtype_name(c), kl_node_label(in[0], lb, sizeof lb), kl_basename(file), line);
      return NULL;
    }
    break;
  case KL_OP_DIV: /* numpy's true division: integers and bool divide as float64 */
    c = out = kl_dtype_is_float(c) ? c : KILN_FLOAT64;
    break;
  case KL_OP_SQRT:
  case KL_OP_EXP:
  case KL_OP_LOG:
  case KL_OP_LOG1P:
  case KL_OP_EXPM1:
  case KL_OP_TANH:
  case KL_OP_SIGMOID:
  case KL_OP_SOFTPLUS: c = out = kl_float_of(c); break;
  case KL_OP_AND:
  case KL_OP_OR:
  case KL_OP_NOT: /* numpy's logical ops read their operands as truth values */
    c = out = KILN_BOOL;
    weak = false;
    break;
  case KL_OP_ISNAN:
  case KL_OP_ISINF:
    out = KILN_BOOL;
    weak = false;
    break;
  case KL_OP_LT:
  case KL_OP_LE:
  case KL_OP_GT:
  case KL_OP_GE:
  case KL_OP_EQ:
  case KL_OP_NE:
    out = KILN_BOOL;
    weak = false;
    break;
  default: break;
  }
  kl_type t = {.dtype = (uint8_t)out, .weak = weak};
  t.rank = 0;
  for (int i = 0; i < n; i++) {
    if (!kl_broadcast_dims(&t, &in[i]->type, &t)) {
      int j = 0; /* name an earlier operand it clashes with */
      for (; j < i; j++) {
        kl_type p = {.rank = 0};
        if (!kl_broadcast_dims(&in[j]->type, &in[i]->type, &p)) break;
      }
      broadcast_error(ctx, what, in[j < i ? j : 0], in[i], file, line);
      return NULL;
    }
  }
  kiln_node *cin[3];
  for (int i = 0; i < n; i++) {
    kiln_dtype want = (op == KL_OP_WHERE && i == 0) ? KILN_BOOL : c;
    cin[i] = kl_cast(in[i], want, file, line);
    if (!cin[i]) return NULL;
  }
  return kl_node_new(ctx, op, n, cin, &t, NULL, file, line);
}

/* Normalizes a user's axis; -1 and an error if out of range. */
static int norm_axis(kiln_node *x, int axis, const char *what, const char *file, int line) {
  int r = x->type.rank;
  int a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r) {
    char lb[256];
    kl_error(x->ctx, KILN_SHAPE, "%s: axis %d is out of range for %s of rank %d (%s:%d)", what,
             axis, kl_node_label(x, lb, sizeof lb), r, kl_basename(file), line);
    return -1;
  }
  return a;
}

/* The type of a reduction over axes: the reduced axes dropped, or with
** keepdims kept with size 1. */
static kl_type reduced_type(const kl_type *x, uint32_t axes, bool keepdims, kiln_dtype dt) {
  kl_type t = {.dtype = (uint8_t)dt};
  for (int i = 0; i < x->rank; i++)
    if (!(axes >> i & 1u))
      t.dims[t.rank++] = x->dims[i];
    else if (keepdims)
      t.dims[t.rank++] = 1;
  return t;
}

bool kl_reduce_needs_elements(int op) {
  return op == KL_OP_RMAX || op == KL_OP_RMIN || op == KL_OP_ARGMAX || op == KL_OP_ARGMIN;
}

bool kl_is_blocked_sum(const kiln_node *v) {
  if (v->n_in < 1 || !kl_dtype_is_float((kiln_dtype)v->type.dtype)) return false;
  int R = v->in[0]->type.rank;
  return v->op == KL_OP_SUM ? v->p.axes == (1u << R) - 1u
                            : v->op == KL_OP_SUM_LIKE && v->type.rank == 0;
}

/* Type rules of the reductions (numpy): sum and prod of bool and integers
** accumulate in int64, of floats in their dtype; max and min keep the dtype;
** argmax and argmin give int64 indices and compare in the input's dtype. */
kiln_node *kl_reduce_kd(kl_opcode op, kiln_node *x, uint32_t axes, bool keepdims, const char *file,
                        int line) {
  kiln_ctx *ctx = kl_common_ctx(kl_ops[op].name, 1, &x);
  if (!ctx) return NULL;
  kiln_dtype dt = (kiln_dtype)x->type.dtype, out;
  if ((op == KL_OP_SUM || op == KL_OP_PROD) && !kl_dtype_is_float(dt)) dt = KILN_INT64;
  out = op == KL_OP_ARGMAX || op == KL_OP_ARGMIN ? KILN_INT64 : dt;
  if (kl_reduce_needs_elements(op))
    for (int i = 0; i < x->type.rank; i++)
      if ((axes >> i & 1u) && x->type.dims[i] == 0) {
        char lb[256];
        kl_error(ctx, KILN_SHAPE,
                 "%s: cannot reduce over axis %d of size 0 (the reduction has no identity): %s "
                 "(%s:%d)",
                 kl_ops[op].name, i, kl_node_label(x, lb, sizeof lb), kl_basename(file), line);
        return NULL;
      }
  x = kl_cast(x, dt, file, line);
  if (!x) return NULL;
  kl_type t = reduced_type(&x->type, axes, keepdims, out);
  kl_params p = {.axes = axes, .keepdims = keepdims};
  return kl_node_new(ctx, op, 1, &x, &t, &p, file, line);
}

kiln_node *kl_reduce(kl_opcode op, kiln_node *x, uint32_t axes, const char *file, int line) {
  return kl_reduce_kd(op, x, axes, false, file, line);
}

static kiln_node *count_of(kiln_node *x, uint32_t axes, kiln_dtype dt, const char *file, int line) {
  kl_type t = {.dtype = (uint8_t)dt};
  kl_params p = {.axes = axes};
  return kl_node_new(x->ctx, KL_OP_COUNT, 1, &x, &t, &p, file, line);
}

static kiln_node *mean_of(kiln_node *x, uint32_t axes, bool keepdims, const char *file, int line) {
  if (!kl_common_ctx("mean", 1, &x)) return NULL;
  kiln_dtype dt =
      kl_dtype_is_float((kiln_dtype)x->type.dtype) ? (kiln_dtype)x->type.dtype : KILN_FLOAT64;
  kiln_node *xc = kl_cast(x, dt, file, line);
  kiln_node *s = kl_reduce_kd(KL_OP_SUM, xc, axes, keepdims, file, line);
  if (!s) return NULL;
  kiln_node *n = count_of(xc, axes, dt, file, line);
  kiln_node *in[2] = {s, n};
  return n ? kl_elem(KL_OP_DIV, 2, in, file, line) : NULL;
}

kiln_node *kl_bcast(kiln_node *g, kiln_node *like, uint32_t axes, const char *file, int line) {
  kiln_node *in[2] = {g, like};
  kiln_ctx *ctx = kl_common_ctx("broadcast", 2, in);
  if (!ctx) return NULL;
  kl_type t = like->type;
  t.dtype = g->type.dtype;
  t.weak = false;
  kl_params p = {.axes = axes};
  return kl_node_new(ctx, KL_OP_BCAST, 2, in, &t, &p, file, line);
}

kiln_node *kl_sum_like(kiln_node *g, kiln_node *like, const char *file, int line) {
  kiln_node *in[2] = {g, like};
  kiln_ctx *ctx = kl_common_ctx("sum_like", 2, in);
  if (!ctx) return NULL;
  if (!kl_needs_sum_like(&g->type, &like->type)) return g;
  kl_type t = like->type;
  t.dtype = g->type.dtype;
  t.weak = false;
  return kl_node_new(ctx, KL_OP_SUM_LIKE, 2, in, &t, NULL, file, line);
}

kiln_node *kl_zeros_like(kiln_node *x, const char *file, int line) {
  if (!x) return NULL;
  kiln_node *z = kl_scalar_const(x->ctx, (kiln_dtype)x->type.dtype, 0.0, file, line);
  if (!z) return NULL;
  return kl_bcast(z, x, (1u << x->type.rank) - 1u, file, line);
}

/* ------------------------------------------------------ linear algebra */
/*
** One DOT node covers numpy.dot for vectors and matrices and numpy.matmul
** for stacks of matrices: an operand of rank 3 is a batch of matrices
** (b, rows, cols), and the other operand is then a batch of the same size
** or one matrix used for every batch element. ta/tb transpose the last two
** axes of a matrix operand (gradients use them instead of transpose nodes).
** OUTER is the outer product of two vectors.
*/

/* Rows/inner sizes of operand x of a DOT as it is used: a is (m, k), b is
** (k, n); a vector has no m (n). */
static void dot_dims(const kiln_node *x, bool t, bool is_b, int64_t *outer, int64_t *inner) {
  int r = x->type.rank;
  const int64_t *d = x->type.dims + (r >= 2 ? r - 2 : 0);
  if (r == 1) {
    *outer = -2; /* none */
    *inner = d[0];
  } else if (!is_b) {
    *outer = d[t ? 1 : 0];
    *inner = d[t ? 0 : 1];
  } else {
    *inner = d[t ? 1 : 0];
    *outer = d[t ? 0 : 1];
  }
}

static kiln_node *dot_node(const char *what, kiln_node *a, kiln_node *b, bool ta, bool tb,
                           const char *file, int line) {
  kiln_node *in[2] = {a, b};
  kiln_ctx *ctx = kl_common_ctx(what, 2, in);
  if (!ctx) return NULL;
  char la[256], lb[256], sa[160], sb[160];
  int ra = a->type.rank, rb = b->type.rank;
  bool batched = ra == 3 || rb == 3;
  if (ra < 1 || ra > 3 || rb < 1 || rb > 3 || (batched && (ra < 2 || rb < 2))) {
    kl_error(ctx, KILN_TYPE, "%s: unsupported ranks %d and %d: %s and %s (%s built at %s:%d)", what,
             ra, rb, kl_node_label(a, la, sizeof la), kl_node_label(b, lb, sizeof lb), what,
             kl_basename(file), line);
    return NULL;
  }
  bool weak;
  kiln_dtype c = compute_dtype(2, in, &weak);
  if (c == KILN_BOOL) {
    kl_error(ctx, KILN_TYPE, "%s: bool operands are not supported, cast them first (%s:%d)", what,
             kl_basename(file), line);
    return NULL;
  }
  int64_t m, ka, kb, n;
  dot_dims(a, ta, false, &m, &ka);
  dot_dims(b, tb, true, &n, &kb);
  if (ka >= 0 && kb >= 0 && ka != kb) {
    kl_error(ctx, KILN_SHAPE,
             "%s: inner dimensions %lld and %lld differ: %s %s and %s %s (%s built at %s:%d)", what,
             (long long)ka, (long long)kb, kl_node_label(a, la, sizeof la),
             kl_shape_str(sa, sizeof sa, ra, a->type.dims), kl_node_label(b, lb, sizeof lb),
             kl_shape_str(sb, sizeof sb, rb, b->type.dims), what, kl_basename(file), line);
    return NULL;
  }
  kl_type t = {.dtype = (uint8_t)c};
  if (batched) {
    int64_t ba = ra == 3 ? a->type.dims[0] : KILN_DYN, bb = rb == 3 ? b->type.dims[0] : KILN_DYN;
    if (ra == 3 && rb == 3 && ba >= 0 && bb >= 0 && ba != bb) {
      kl_error(ctx, KILN_SHAPE,
               "%s: batch sizes %lld and %lld differ: %s %s and %s %s (%s built at %s:%d)", what,
               (long long)ba, (long long)bb, kl_node_label(a, la, sizeof la),
               kl_shape_str(sa, sizeof sa, ra, a->type.dims), kl_node_label(b, lb, sizeof lb),
               kl_shape_str(sb, sizeof sb, rb, b->type.dims), what, kl_basename(file), line);
      return NULL;
    }
    t.dims[t.rank++] = ra == 3 && ba >= 0 ? ba : rb == 3 ? bb : ba;
  }
  if (ra >= 2) t.dims[t.rank++] = m;
  if (rb >= 2) t.dims[t.rank++] = n;
  in[0] = kl_cast(a, c, file, line);
  in[1] = kl_cast(b, c, file, line);
  if (!in[0] || !in[1]) return NULL;
  kl_params p = {.ta = ta && ra >= 2, .tb = tb && rb >= 2};
  return kl_node_new(ctx, KL_OP_DOT, 2, in, &t, &p, file, line);
}

kiln_node *kl_dot(kiln_node *a, kiln_node *b, bool ta, bool tb, const char *file, int line) {
  return dot_node("dot", a, b, ta, tb, file, line);
}

/* A rank check of a public linear-algebra builder: KILN_TYPE naming both
** operands when x's rank is outside [lo, hi]. */
static bool rank_ok(kiln_ctx *ctx, const char *what, const char *allowed, kiln_node *a,
                    kiln_node *b, int lo, int hi, const char *file, int line) {
  int ra = a->type.rank, rb = b->type.rank;
  if (ra >= lo && ra <= hi && rb >= lo && rb <= hi) return true;
  char la[256], lb[256];
  kl_error(ctx, KILN_TYPE, "%s: %s, got ranks %d and %d: %s and %s (%s built at %s:%d)", what,
           allowed, ra, rb, kl_node_label(a, la, sizeof la), kl_node_label(b, lb, sizeof lb), what,
           kl_basename(file), line);
  return false;
}

kiln_node *kiln_dot_at(kiln_node *a, kiln_node *b, const char *file, int line) {
  kiln_node *in[2] = {a, b};
  kiln_ctx *ctx = kl_common_ctx("dot", 2, in);
  if (!ctx) return NULL;
  if (!rank_ok(ctx, "dot", "supports scalars, vectors and matrices (kiln_matmul for stacks)", a, b,
               0, 2, file, line))
    return NULL;
  if (a->type.rank == 0 || b->type.rank == 0) { /* numpy.dot: a scalar multiplies */
    bool weak;
    if (compute_dtype(2, in, &weak) == KILN_BOOL) {
      kl_error(ctx, KILN_TYPE, "dot: bool operands are not supported, cast them first (%s:%d)",
               kl_basename(file), line);
      return NULL;
    }
    return kl_elem(KL_OP_MUL, 2, in, file, line);
  }
  return dot_node("dot", a, b, false, false, file, line);
}

kiln_node *kiln_matmul_at(kiln_node *a, kiln_node *b, const char *file, int line) {
  kiln_node *in[2] = {a, b};
  kiln_ctx *ctx = kl_common_ctx("matmul", 2, in);
  if (!ctx) return NULL;
  if (!rank_ok(ctx, "matmul", "supports ranks 1 to 3 (a scalar is not allowed, as in numpy)", a, b,
               1, 3, file, line))
    return NULL;
  return dot_node("matmul", a, b, false, false, file, line);
}

kiln_node *kiln_batched_dot_at(kiln_node *a, kiln_node *b, const char *file, int line) {
  kiln_node *in[2] = {a, b};
  kiln_ctx *ctx = kl_common_ctx("batched_dot", 2, in);
  if (!ctx) return NULL;
  if (!rank_ok(ctx, "batched_dot", "needs two stacks of matrices (rank 3)", a, b, 3, 3, file, line))
    return NULL;
  return dot_node("batched_dot", a, b, false, false, file, line);
}

kiln_node *kiln_outer_at(kiln_node *a, kiln_node *b, const char *file, int line) {
  kiln_node *in[2] = {a, b};
  kiln_ctx *ctx = kl_common_ctx("outer", 2, in);
  if (!ctx) return NULL;
  if (!rank_ok(ctx, "outer", "needs two vectors (numpy.outer would flatten)", a, b, 1, 1, file,
               line))
    return NULL;
  bool weak;
  kiln_dtype c = compute_dtype(2, in, &weak);
  if (c == KILN_BOOL) {
    kl_error(ctx, KILN_TYPE, "outer: bool operands are not supported, cast them first (%s:%d)",
             kl_basename(file), line);
    return NULL;
  }
  kl_type t = {.dtype = (uint8_t)c, .rank = 2, .dims = {a->type.dims[0], b->type.dims[0]}};
  in[0] = kl_cast(a, c, file, line);
  in[1] = kl_cast(b, c, file, line);
  if (!in[0] || !in[1]) return NULL;
  return kl_node_new(ctx, KL_OP_OUTER, 2, in, &t, NULL, file, line);
}

/* ---------------------------------------------------------- public builders */

#define BIN(fn, OPC)                                                                               \
  kiln_node *kiln_##fn##_at(kiln_node *a, kiln_node *b, const char *file, int line) {              \
    kiln_node *in[2] = {a, b};                                                                     \
    return kl_elem(KL_OP_##OPC, 2, in, file, line);                                                \
  }
#define UN(fn, OPC)                                                                                \
  kiln_node *kiln_##fn##_at(kiln_node *a, const char *file, int line) {                            \
    return kl_elem(KL_OP_##OPC, 1, &a, file, line);                                                \
  }
BIN(add, ADD)
BIN(sub, SUB)
BIN(mul, MUL)
BIN(div, DIV)
BIN(pow, POW)
BIN(intdiv, INTDIV)
BIN(mod, MOD)
BIN(maximum, MAX)
BIN(minimum, MIN)
UN(neg, NEG)
UN(sqr, SQR)
UN(sqrt, SQRT)
UN(exp, EXP)
UN(log, LOG)
UN(abs, ABS)
UN(sign, SIGN)
UN(log1p, LOG1P)
UN(expm1, EXPM1)
UN(tanh, TANH)
UN(sigmoid, SIGMOID)
UN(softplus, SOFTPLUS)
UN(relu, RELU)
UN(logical_not, NOT)
UN(isnan, ISNAN)
UN(isinf, ISINF)
UN(stop_gradient, STOPGRAD)
BIN(lt, LT)
BIN(le, LE)
BIN(gt, GT)
BIN(ge, GE)
BIN(eq, EQ)
BIN(ne, NE)
BIN(logical_and, AND)
BIN(logical_or, OR)

kiln_node *kiln_where_at(kiln_node *c, kiln_node *a, kiln_node *b, const char *file, int line) {
  kiln_node *in[3] = {c, a, b};
  return kl_elem(KL_OP_WHERE, 3, in, file, line);
}

kiln_node *kiln_clip_at(kiln_node *x, kiln_node *lo, kiln_node *hi, const char *file, int line) {
  kiln_node *in[2] = {x, lo};
  kiln_node *m = kl_elem(KL_OP_MAX, 2, in, file, line);
  kiln_node *in2[2] = {m, hi};
  return m ? kl_elem(KL_OP_MIN, 2, in2, file, line) : NULL;
}

kiln_node *kiln_cast_at(kiln_node *x, kiln_dtype dt, const char *file, int line) {
  if (!kl_common_ctx("cast", 1, &x)) return NULL;
  if (!kl_dtype_valid(dt)) {
    kl_error(x->ctx, KILN_MISUSE, "cast: invalid dtype %d (%s:%d)", (int)dt, kl_basename(file),
             line);
    return NULL;
  }
  return kl_cast(x, dt, file, line);
}

kiln_node *kiln_sum_at(kiln_node *x, const char *file, int line) {
  if (!kl_common_ctx("sum", 1, &x)) return NULL;
  return kl_reduce(KL_OP_SUM, x, (1u << x->type.rank) - 1u, file, line);
}

kiln_node *kiln_sum_axis_at(kiln_node *x, int axis, const char *file, int line) {
  if (!kl_common_ctx("sum", 1, &x)) return NULL;
  int a = norm_axis(x, axis, "sum", file, line);
  return a < 0 ? NULL : kl_reduce(KL_OP_SUM, x, 1u << a, file, line);
}

kiln_node *kiln_mean_at(kiln_node *x, const char *file, int line) {
  if (!kl_common_ctx("mean", 1, &x)) return NULL;
  return mean_of(x, (1u << x->type.rank) - 1u, false, file, line);
}

kiln_node *kiln_mean_axis_at(kiln_node *x, int axis, const char *file, int line) {
  if (!kl_common_ctx("mean", 1, &x)) return NULL;
  int a = norm_axis(x, axis, "mean", file, line);
  return a < 0 ? NULL : mean_of(x, 1u << a, false, file, line);
}

/* logsumexp over axes, stably: m + log(sum(exp(x - m))) with m the maximum
** over the axes (kept, so it broadcasts against x), replaced by 0 where it
** is not finite: a row of -inf gives log(0) + 0 = -inf rather than
** -inf - -inf = NaN, a row holding +inf gives +inf, a NaN gives NaN (scipy's
** rule). Integers are converted to float first (x - m would wrap). Without
** keepdims the result is squeezed by a max over the kept size-1 axes, which
** returns its one element exactly. Built from primitives, so its gradient
** (softmax) follows by composition. */
static kiln_node *logsumexp_of(kiln_node *x, uint32_t axes, bool keepdims, const char *file,
                               int line) {
  kiln_ctx *ctx = x->ctx;
  kiln_node *xf = kl_cast(x, kl_float_of((kiln_dtype)x->type.dtype), file, line);
  kiln_node *m = xf ? kl_reduce_kd(KL_OP_RMAX, xf, axes, true, file, line) : NULL;
  if (!m) return NULL;
  kiln_node *am = kl_elem(KL_OP_ABS, 1, &m, file, line);
  kiln_node *lt[2] = {am, kiln_flit_at(ctx, INFINITY, file, line)};
  kiln_node *fin = am && lt[1] ? kl_elem(KL_OP_LT, 2, lt, file, line) : NULL;
  kiln_node *wh[3] = {fin, m, kiln_flit_at(ctx, 0.0, file, line)};
  kiln_node *ms = fin && wh[2] ? kl_elem(KL_OP_WHERE, 3, wh, file, line) : NULL;
  kiln_node *d[2] = {xf, ms};
  kiln_node *sh = ms ? kl_elem(KL_OP_SUB, 2, d, file, line) : NULL;
  kiln_node *ex = sh ? kl_elem(KL_OP_EXP, 1, &sh, file, line) : NULL;
  kiln_node *s = ex ? kl_reduce_kd(KL_OP_SUM, ex, axes, true, file, line) : NULL;
  kiln_node *ls = s ? kl_elem(KL_OP_LOG, 1, &s, file, line) : NULL;
  kiln_node *ad[2] = {ls, ms};
  kiln_node *r = ls ? kl_elem(KL_OP_ADD, 2, ad, file, line) : NULL;
  if (!r || keepdims) return r;
  return kl_reduce_kd(KL_OP_RMAX, r, axes, false, file, line);
}

static const char *const reduce_names[] = {"sum",  "mean",   "max",    "min",
                                           "prod", "argmax", "argmin", "logsumexp"};

kiln_node *kiln_reduce_at(kiln_node *x, kiln_reduce_op op, int n_axes, const int *axes,
                          int keepdims, const char *file, int line) {
  bool op_ok = (unsigned)op < KILN_N_REDUCE_OPS;
  const char *what = op_ok ? reduce_names[op] : "reduce";
  kiln_ctx *ctx = kl_common_ctx(what, 1, &x);
  if (!ctx) return NULL;
  char lb[256];
  if (!op_ok || n_axes < 0 || (n_axes > 0 && !axes)) {
    kl_error(ctx, KILN_MISUSE, "%s: %s (of %s, %s:%d)", what,
             !op_ok ? "not a kiln_reduce_op" : "bad axis list (negative count or NULL axes)",
             kl_node_label(x, lb, sizeof lb), kl_basename(file), line);
    return NULL;
  }
  int r = x->type.rank;
  uint32_t all = (1u << r) - 1u, mask = n_axes == 0 ? all : 0;
  for (int i = 0; i < n_axes; i++) {
    int a = norm_axis(x, axes[i], what, file, line);
    if (a < 0) return NULL;
    if (mask >> a & 1u) {
      kl_error(ctx, KILN_SHAPE,
               "%s: axis %d (given as %d) is listed twice for %s of rank %d (%s:%d)", what, a,
               axes[i], kl_node_label(x, lb, sizeof lb), r, kl_basename(file), line);
      return NULL;
    }
    mask |= 1u << a;
  }
  bool kd = keepdims != 0;
  switch (op) {
  case KILN_SUM: return kl_reduce_kd(KL_OP_SUM, x, mask, kd, file, line);
  case KILN_MEAN: return mean_of(x, mask, kd, file, line);
  case KILN_MAX: return kl_reduce_kd(KL_OP_RMAX, x, mask, kd, file, line);
  case KILN_MIN: return kl_reduce_kd(KL_OP_RMIN, x, mask, kd, file, line);
  case KILN_PROD: return kl_reduce_kd(KL_OP_PROD, x, mask, kd, file, line);
  case KILN_ARGMAX:
  case KILN_ARGMIN:
    /* numpy: the index along one axis, or into the flattened array */
    if (mask != all && (mask & (mask - 1u)) != 0) {
      kl_error(ctx, KILN_SHAPE,
               "%s: reduces one axis or all axes (numpy), not %d of the %d axes of %s (%s:%d)",
               what, __builtin_popcount(mask), r, kl_node_label(x, lb, sizeof lb),
               kl_basename(file), line);
      return NULL;
    }
    return kl_reduce_kd(op == KILN_ARGMAX ? KL_OP_ARGMAX : KL_OP_ARGMIN, x, mask, kd, file, line);
  case KILN_LOGSUMEXP: return logsumexp_of(x, mask, kd, file, line);
  default: return NULL;
  }
}

#define RED_ALL(fn, OP)                                                                            \
  kiln_node *kiln_##fn##_at(kiln_node *x, const char *file, int line) {                            \
    return kiln_reduce_at(x, OP, 0, NULL, 0, file, line);                                          \
  }
#define RED_AXIS(fn, OP)                                                                           \
  kiln_node *kiln_##fn##_at(kiln_node *x, int axis, const char *file, int line) {                  \
    return kiln_reduce_at(x, OP, 1, &axis, 0, file, line);                                         \
  }
RED_ALL(max, KILN_MAX)
RED_ALL(min, KILN_MIN)
RED_ALL(prod, KILN_PROD)
RED_AXIS(max_axis, KILN_MAX)
RED_AXIS(min_axis, KILN_MIN)
RED_AXIS(prod_axis, KILN_PROD)
RED_AXIS(argmax, KILN_ARGMAX)
RED_AXIS(argmin, KILN_ARGMIN)

kiln_node *kiln_logsumexp_at(kiln_node *x, int axis, int keepdims, const char *file, int line) {
  return kiln_reduce_at(x, KILN_LOGSUMEXP, 1, &axis, keepdims, file, line);
}

/* log_softmax along the last axis, shifted by the row maximum so exp never
** overflows: (x - m) - log(sum(exp(x - m))). */
/* log_softmax along axis (normalized, or -1 for the last), shifted by the
** maximum along it so exp never overflows: (x - m) - log(sum(exp(x - m))). */
static kiln_node *log_softmax_on(kiln_node *x, int axis, const char *what, const char *file,
                                 int line) {
  kiln_ctx *ctx = kl_common_ctx(what, 1, &x);
  if (!ctx) return NULL;
  if (x->type.rank < 1) {
    char lb[256];
    kl_error(ctx, KILN_TYPE, "%s: %s is a scalar (%s:%d)", what, kl_node_label(x, lb, sizeof lb),
             kl_basename(file), line);
    return NULL;
  }
  if (axis == -1) axis = x->type.rank - 1;
  x = kl_cast(x, kl_float_of((kiln_dtype)x->type.dtype), file, line);
  if (!x) return NULL;
  uint32_t ax = 1u << axis;
  /* the shift cancels mathematically: no gradient through it */
  kiln_node *m = kl_reduce(KL_OP_RMAX, x, ax, file, line);
  if (m) m = kl_elem(KL_OP_STOPGRAD, 1, &m, file, line);
  kiln_node *in[2] = {x, m ? kl_bcast(m, x, ax, file, line) : NULL};
  kiln_node *s = in[1] ? kl_elem(KL_OP_SUB, 2, in, file, line) : NULL;
  kiln_node *e = s ? kl_elem(KL_OP_EXP, 1, &s, file, line) : NULL;
  kiln_node *sum = e ? kl_reduce(KL_OP_SUM, e, ax, file, line) : NULL;
  kiln_node *lse = sum ? kl_elem(KL_OP_LOG, 1, &sum, file, line) : NULL;
  kiln_node *in2[2] = {s, lse ? kl_bcast(lse, x, ax, file, line) : NULL};
  return in2[1] ? kl_elem(KL_OP_SUB, 2, in2, file, line) : NULL;
}

kiln_node *kiln_log_softmax_at(kiln_node *x, const char *file, int line) {
  return log_softmax_on(x, -1, "log_softmax", file, line);
}

kiln_node *kiln_log_softmax_axis_at(kiln_node *x, int axis, const char *file, int line) {
  if (!kl_common_ctx("log_softmax", 1, &x)) return NULL;
  int a = x->type.rank < 1 ? -1 : norm_axis(x, axis, "log_softmax", file, line);
  if (a < 0 && x->type.rank >= 1) return NULL;
  return log_softmax_on(x, a, "log_softmax", file, line);
}

kiln_node *kiln_softmax_axis_at(kiln_node *x, int axis, const char *file, int line) {
  kiln_node *ls = kiln_log_softmax_axis_at(x, axis, file, line);
  return ls ? kl_elem(KL_OP_EXP, 1, &ls, file, line) : NULL;
}

kiln_node *kiln_softmax_at(kiln_node *x, const char *file, int line) {
  kiln_node *ls = kiln_log_softmax_at(x, file, line);
  return ls ? kl_elem(KL_OP_EXP, 1, &ls, file, line) : NULL;
}

/* -sum(t * log_softmax(z)) along the last axis; entries with t == 0 add
** nothing even where log_softmax is -inf. */
kiln_node *kiln_crossentropy_at(kiln_node *z, kiln_node *t, const char *file, int line) {
  kiln_node *pair[2] = {z, t};
  kiln_ctx *ctx = kl_common_ctx("crossentropy", 2, pair);
  if (!ctx) return NULL;
  kiln_node *ls = kiln_log_softmax_at(z, file, line);
  if (!ls) return NULL;
  kiln_node *in[2] = {t, ls};
  kiln_node *prod = kl_elem(KL_OP_MUL, 2, in, file, line);
  kiln_node *zero = kiln_flit_at(ctx, 0.0, file, line);
  kiln_node *nz[2] = {t, zero};
  kiln_node *c = kl_elem(KL_OP_NE, 2, nz, file, line);
  kiln_node *w[3] = {c, prod, zero};
  kiln_node *terms = c && prod ? kl_elem(KL_OP_WHERE, 3, w, file, line) : NULL;
  if (!terms) return NULL;
  kiln_node *s = kl_reduce(KL_OP_SUM, terms, 1u << (terms->type.rank - 1), file, line);
  return s ? kl_elem(KL_OP_NEG, 1, &s, file, line) : NULL;
}

/* crossentropy against integer class labels: the one-hot targets of the
** labels (one_hot checks their range when called), so the gradient wrt z is
** softmax(z) - one_hot(labels). The number of classes is z's last size. */
kiln_node *kiln_crossentropy_labels_at(kiln_node *z, kiln_node *labels, const char *file,
                                       int line) {
  kiln_node *pair[2] = {z, labels};
  kiln_ctx *ctx = kl_common_ctx("crossentropy", 2, pair);
  if (!ctx) return NULL;
  char lz[256], ll[256];
  int r = z->type.rank;
  if (r < 1 || !kl_dtype_is_int((kiln_dtype)labels->type.dtype) || labels->type.rank != r - 1) {
    kl_error(ctx, KILN_TYPE,
             "crossentropy: labels %s must be integers of rank %d (logits %s of rank %d without "
             "the class axis) (%s:%d)",
             kl_node_label(labels, ll, sizeof ll), r - 1, kl_node_label(z, lz, sizeof lz), r,
             kl_basename(file), line);
    return NULL;
  }
  if (z->type.dims[r - 1] < 0) {
    kl_error(ctx, KILN_SHAPE,
             "crossentropy: the number of classes (the last axis of %s) must be static to "
             "compare integer labels with (%s:%d)",
             kl_node_label(z, lz, sizeof lz), kl_basename(file), line);
    return NULL;
  }
  kiln_dtype ft = kl_float_of((kiln_dtype)z->type.dtype);
  kiln_node *t = kiln_one_hot_at(labels, z->type.dims[r - 1], ft, file, line);
  return t ? kiln_crossentropy_at(z, t, file, line) : NULL;
}

/* Theano's binary_crossentropy on probabilities p: -(t log p + (1-t) log(1-p)).
** Of a sigmoid it becomes softplus terms in the stabilize pass. */
kiln_node *kiln_binary_crossentropy_at(kiln_node *p, kiln_node *t, const char *file, int line) {
  kiln_node *pair[2] = {p, t};
  kiln_ctx *ctx = kl_common_ctx("binary_crossentropy", 2, pair);
  if (!ctx) return NULL;
  kiln_node *one = kiln_flit_at(ctx, 1.0, file, line);
  kiln_node *a[2] = {t, kl_elem(KL_OP_LOG, 1, &p, file, line)};
  kiln_node *ta = a[1] ? kl_elem(KL_OP_MUL, 2, a, file, line) : NULL;
  kiln_node *q[2] = {one, p}, *u[2] = {one, t};
  kiln_node *omp = kl_elem(KL_OP_SUB, 2, q, file, line);
  kiln_node *b[2] = {omp ? kl_elem(KL_OP_SUB, 2, u, file, line) : NULL,
                     omp ? kl_elem(KL_OP_LOG, 1, &omp, file, line) : NULL};
  kiln_node *tb = b[0] && b[1] ? kl_elem(KL_OP_MUL, 2, b, file, line) : NULL;
  kiln_node *s[2] = {ta, tb};
  kiln_node *sum = ta && tb ? kl_elem(KL_OP_ADD, 2, s, file, line) : NULL;
  return sum ? kl_elem(KL_OP_NEG, 1, &sum, file, line) : NULL;
}

/* The same loss on logits z: softplus(z) - t z, finite for every finite z. */
kiln_node *kiln_sigmoid_binary_crossentropy_at(kiln_node *z, kiln_node *t, const char *file,
                                               int line) {
  kiln_node *pair[2] = {z, t};
  if (!kl_common_ctx("sigmoid_binary_crossentropy", 2, pair)) return NULL;
  kiln_node *sp = kl_elem(KL_OP_SOFTPLUS, 1, &z, file, line);
  kiln_node *m[2] = {t, z};
  kiln_node *tz = sp ? kl_elem(KL_OP_MUL, 2, m, file, line) : NULL;
  kiln_node *d[2] = {sp, tz};
  return tz ? kl_elem(KL_OP_SUB, 2, d, file, line) : NULL;
}

/* ------------------------------------------------------------- shape ops */
/*
** dimshuffle, transpose, reshape, flatten (docs/ARCHITECTURE.md, "Shape
** ops"). Two ops carry them all: DIMSHUFFLE (axes permuted, size-1 axes
** inserted or dropped) and RESHAPE (the elements in C order in a new shape).
** A result's static type says what is known when the graph is built; the
** shape program computes the rest at call time (runtime/call.c).
*/

kiln_node *kl_dimshuffle(kiln_node *x, int n, const int *src, const char *file, int line) {
  kiln_ctx *ctx = kl_common_ctx("dimshuffle", 1, &x);
  if (!ctx) return NULL;
  bool same = n == x->type.rank;
  for (int a = 0; a < n && same; a++)
    same = src[a] == a;
  if (same) return x;
  kl_type t = {.dtype = x->type.dtype, .rank = (uint8_t)n};
  kl_params p = {0};
  for (int a = 0; a < n; a++) {
    t.dims[a] = src[a] >= 0 ? x->type.dims[src[a]] : 1;
    p.src_axis[a] = (int8_t)src[a];
  }
  return kl_node_new(ctx, KL_OP_DIMSHUFFLE, 1, &x, &t, &p, file, line);
}

kiln_node *kiln_dimshuffle_at(kiln_node *x, int n, const int *pattern, const char *file, int line) {
  kiln_ctx *ctx = kl_common_ctx("dimshuffle", 1, &x);
  if (!ctx) return NULL;
  char lb[256], sh[160];
  int r = x->type.rank;
  if (n < 0 || n > KILN_MAX_RANK || (n > 0 && !pattern)) {
    kl_error(ctx, KILN_MISUSE,
             "dimshuffle: bad pattern (%d entries%s; 0..%d allowed) for %s (%s:%d)", n,
             n > 0 && !pattern ? ", NULL" : "", KILN_MAX_RANK, kl_node_label(x, lb, sizeof lb),
             kl_basename(file), line);
    return NULL;
  }
  bool used[KILN_MAX_RANK] = {false};
  for (int a = 0; a < n; a++) {
    int k = pattern[a];
    if (k == KILN_NEWAXIS) continue;
    if (k < 0 || k >= r) {
      kl_error(ctx, KILN_SHAPE,
               "dimshuffle: pattern entry %d is %d, not an axis of %s of rank %d nor "
               "KILN_NEWAXIS (%s:%d)",
               a, k, kl_node_label(x, lb, sizeof lb), r, kl_basename(file), line);
      return NULL;
    }
    if (used[k]) {
      kl_error(ctx, KILN_SHAPE, "dimshuffle: axis %d of %s appears twice in the pattern (%s:%d)", k,
               kl_node_label(x, lb, sizeof lb), kl_basename(file), line);
      return NULL;
    }
    used[k] = true;
  }
  for (int k = 0; k < r; k++)
    if (!used[k] && x->type.dims[k] != 1) {
      kl_error(ctx, KILN_SHAPE,
               "dimshuffle: axis %d of %s, shape %s, is left out of the pattern but only axes of "
               "static size 1 can be dropped (%s:%d)",
               k, kl_node_label(x, lb, sizeof lb), kl_shape_str(sh, sizeof sh, r, x->type.dims),
               kl_basename(file), line);
      return NULL;
    }
  return kl_dimshuffle(x, n, pattern, file, line);
}

kiln_node *kiln_transpose_at(kiln_node *x, int n_axes, const int *axes, const char *file,
                             int line) {
  kiln_ctx *ctx = kl_common_ctx("transpose", 1, &x);
  if (!ctx) return NULL;
  char lb[256];
  int r = x->type.rank, perm[KILN_MAX_RANK];
  if (n_axes < 0 || (n_axes > 0 && !axes)) {
    kl_error(ctx, KILN_MISUSE,
             "transpose: bad axis list (negative count or NULL axes) for %s (%s:%d)",
             kl_node_label(x, lb, sizeof lb), kl_basename(file), line);
    return NULL;
  }
  if (n_axes == 0) {
    for (int a = 0; a < r; a++)
      perm[a] = r - 1 - a;
    return kl_dimshuffle(x, r, perm, file, line);
  }
  if (n_axes != r) {
    kl_error(ctx, KILN_SHAPE,
             "transpose: %d axes given for %s of rank %d (a permutation of all "
             "its axes is needed) (%s:%d)",
             n_axes, kl_node_label(x, lb, sizeof lb), r, kl_basename(file), line);
    return NULL;
  }
  bool used[KILN_MAX_RANK] = {false};
  for (int a = 0; a < r; a++) {
    int k = norm_axis(x, axes[a], "transpose", file, line);
    if (k < 0) return NULL;
    if (used[k]) {
      kl_error(ctx, KILN_SHAPE, "transpose: axis %d (given as %d) is listed twice for %s (%s:%d)",
               k, axes[a], kl_node_label(x, lb, sizeof lb), kl_basename(file), line);
      return NULL;
    }
    used[k] = true;
    perm[a] = k;
  }
  return kl_dimshuffle(x, r, perm, file, line);
}

/* "(2, -1, d0)": a reshape's requested shape, d<k> for the size of the
** source's axis k, -1 for the inferred size. */
static const char *spec_str(char *buf, size_t n, int r, const int64_t *dims, const int8_t *src) {
  size_t len = (size_t)snprintf(buf, n, "(");
  for (int a = 0; a < r && len < n; a++) {
    const char *sep = a ? ", " : "";
    if (dims[a] >= 0)
      len += (size_t)snprintf(buf + len, n - len, "%s%lld", sep, (long long)dims[a]);
    else if (src[a] >= 0)
      len += (size_t)snprintf(buf + len, n - len, "%sd%d", sep, src[a]);
    else
      len += (size_t)snprintf(buf + len, n - len, "%s-1", sep);
  }
  if (len < n) snprintf(buf + len, n - len, "%s)", r == 1 ? "," : "");
  return buf;
}

/* The reshape of x into r dims: dims[a] >= 0 a static size, else KILN_DYN
** with src[a] >= 0 (the run-time size of axis src[a] of x), or src[a] < 0
** (the one size inferred from the element count). When x's size and the
** sizes of the result are static the counts must agree (KILN_SHAPE), and an
** inferred size is worked out here. */
static kiln_node *reshape_of(kiln_node *x, int r, const int64_t *dims, const int8_t *src,
                             const char *what, const char *file, int line) {
  kiln_ctx *ctx = x->ctx;
  kl_type t = {.dtype = x->type.dtype, .rank = (uint8_t)r};
  kl_params p = {0};
  int infer = -1;
  int64_t known = 1, total = 1;
  bool total_static = true, overflow = false;
  for (int k = 0; k < x->type.rank; k++) {
    if (x->type.dims[k] < 0)
      total_static = false;
    else
      overflow |= __builtin_mul_overflow(total, x->type.dims[k], &total);
  }
  for (int a = 0; a < r; a++) {
    t.dims[a] = dims[a] >= 0 ? dims[a] : KILN_DYN;
    p.src_axis[a] = (int8_t)(dims[a] >= 0 ? -1 : src[a]);
    if (dims[a] >= 0)
      overflow |= __builtin_mul_overflow(known, dims[a], &known);
    else if (src[a] >= 0) {
      t.dims[a] = x->type.dims[src[a]]; /* static when x's axis is */
      if (t.dims[a] >= 0) {
        p.src_axis[a] = -1;
        overflow |= __builtin_mul_overflow(known, t.dims[a], &known);
      } else {
        total_static = false; /* the same unknown factor on both sides */
      }
    } else
      infer = a;
  }
  char lb[256], sa[160], sb[160];
  if (overflow) {
    kl_error(ctx, KILN_SHAPE, "%s: the sizes of %s or of shape %s overflow int64 (%s:%d)", what,
             kl_node_label(x, lb, sizeof lb), spec_str(sb, sizeof sb, r, dims, src),
             kl_basename(file), line);
    return NULL;
  }
  if (total_static) {
    bool ok = infer >= 0 ? known != 0 && total % known == 0 : known == total;
    if (!ok) {
      kl_error(ctx, KILN_SHAPE,
               "%s: cannot reshape %s of shape %s (%lld elements) into shape %s (%s:%d)", what,
               kl_node_label(x, lb, sizeof lb),
               kl_shape_str(sa, sizeof sa, x->type.rank, x->type.dims), (long long)total,
               spec_str(sb, sizeof sb, r, dims, src), kl_basename(file), line);
      return NULL;
    }
    if (infer >= 0 && kl_type_static_size(&x->type) >= 0) t.dims[infer] = total / known;
  }
  bool same = r == x->type.rank;
  for (int a = 0; a < r && same; a++)
    same = t.dims[a] >= 0 ? t.dims[a] == x->type.dims[a] : p.src_axis[a] == a;
  if (same) return x;
  return kl_node_new(ctx, KL_OP_RESHAPE, 1, &x, &t, &p, file, line);
}

kiln_node *kiln_reshape_at(kiln_node *x, int n_dims, const int64_t *shape, const char *file,
                           int line) {
  kiln_ctx *ctx = kl_common_ctx("reshape", 1, &x);
  if (!ctx) return NULL;
  char lb[256];
  if (n_dims < 0 || n_dims > KILN_MAX_RANK || (n_dims > 0 && !shape)) {
    kl_error(ctx, KILN_MISUSE, "reshape: bad shape (%d dims%s; 0..%d allowed) for %s (%s:%d)",
             n_dims, n_dims > 0 && !shape ? ", NULL" : "", KILN_MAX_RANK,
             kl_node_label(x, lb, sizeof lb), kl_basename(file), line);
    return NULL;
  }
  int8_t src[KILN_MAX_RANK];
  int n_infer = 0;
  for (int a = 0; a < n_dims; a++) {
    src[a] = -1;
    if (shape[a] == -1 && n_infer++ == 0) continue;
    if (shape[a] < 0) {
      kl_error(ctx, KILN_SHAPE,
               shape[a] == -1
                   ? "reshape: more than one -1 in the new shape of %s (%s:%d)"
                   : "reshape: negative size in the new shape of %s (only one -1 is allowed) "
                     "(%s:%d)",
               kl_node_label(x, lb, sizeof lb), kl_basename(file), line);
      return NULL;
    }
  }
  return reshape_of(x, n_dims, shape, src, "reshape", file, line);
}

kiln_node *kiln_flatten_at(kiln_node *x, int ndim, const char *file, int line) {
  kiln_ctx *ctx = kl_common_ctx("flatten", 1, &x);
  if (!ctx) return NULL;
  int r = x->type.rank;
  if (ndim < 1 || ndim > (r > 1 ? r : 1)) {
    char lb[256];
    kl_error(ctx, KILN_SHAPE, "flatten: ndim %d is outside 1..%d for %s of rank %d (%s:%d)", ndim,
             r > 1 ? r : 1, kl_node_label(x, lb, sizeof lb), r, kl_basename(file), line);
    return NULL;
  }
  /* the first ndim-1 axes stay; the rest collapse into one, static when
  ** all of them are */
  int64_t dims[KILN_MAX_RANK], last = 1;
  int8_t src[KILN_MAX_RANK];
  for (int a = 0; a < ndim - 1; a++) {
    dims[a] = -1;
    src[a] = (int8_t)a;
  }
  for (int k = ndim - 1; k < r && last >= 0; k++)
    last = x->type.dims[k] < 0 ? -1 : last * x->type.dims[k];
  dims[ndim - 1] = last;
  src[ndim - 1] = (int8_t)(ndim == r ? r - 1 : -1); /* one axis "collapses" into itself */
  return reshape_of(x, ndim, dims, src, "flatten", file, line);
}

/* g (with the element count of like) in the shape of like: the gradient of
** a reshape. A static shape needs no like operand at run time. */
kiln_node *kl_reshape_like(kiln_node *g, kiln_node *like, const char *file, int line) {
  kiln_node *in[2] = {g, like};
  kiln_ctx *ctx = kl_common_ctx("reshape_like", 2, in);
  if (!ctx) return NULL;
  int r = like->type.rank;
  if (kl_type_static_size(&like->type) >= 0) {
    int8_t src[KILN_MAX_RANK];
    memset(src, -1, sizeof src);
    return reshape_of(g, r, like->type.dims, src, "reshape_like", file, line);
  }
  kl_type t = like->type;
  t.dtype = g->type.dtype;
  t.weak = false;
  kl_params p = {0};
  for (int a = 0; a < r; a++)
    p.src_axis[a] = (int8_t)(t.dims[a] >= 0 ? -1 : a);
  return kl_node_new(ctx, KL_OP_RESHAPE_LIKE, 2, in, &t, &p, file, line);
}
