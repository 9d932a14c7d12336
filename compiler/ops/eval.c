/*
** eval.c -- the reference evaluation of every op: plain, obviously correct
** C over contiguous arrays, one element at a time. It is the oracle the
** tests hold the JIT to, and it documents what each op means.
**
** Arithmetic is done in the op's dtype: float32 ops in float (FLT_EVAL_METHOD
** is 0 on the targets we build for, and the build passes -ffp-contract=off),
** integer ops in 64-bit unsigned arithmetic that wraps, then narrowed.
*/
#include "compiler/graph.h"
#include "compiler/ops/kmath.h"
#include "runtime/pool.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* --------------------------------------------------------- scalar ops */

static double f64_op(kl_opcode op, const double *a) {
  double x = a[0], y = a[1];
  switch (op) {
  case KL_OP_NEG: return -x;
  case KL_OP_SQR: return x * x;
  case KL_OP_SQRT: return sqrt(x);
  case KL_OP_LOG1P: return log1p(x);
  case KL_OP_EXPM1: return expm1(x);
  case KL_OP_TANH: return tanh(x);
  /* stable: exp of a non-positive number only */
  case KL_OP_SIGMOID: return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
  case KL_OP_SOFTPLUS: return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
  case KL_OP_RELU: return (x >= 0 || x != x) ? x : 0.0; /* maximum(x, 0) */
  case KL_OP_EXP: return exp(x);
  case KL_OP_LOG: return log(x);
  case KL_OP_ABS: return fabs(x);
  case KL_OP_SIGN: return x > 0 ? 1.0 : x < 0 ? -1.0 : x;
  case KL_OP_ADD: return x + y;
  case KL_OP_SUB: return x - y;
  case KL_OP_MUL: return x * y;
  case KL_OP_DIV: return x / y;
  case KL_OP_POW: return pow(x, y);
  case KL_OP_MAX: return (x >= y || x != x) ? x : y;
  case KL_OP_MIN: return (x <= y || x != x) ? x : y;
  default: return NAN;
  }
}

static float f32_op(kl_opcode op, const float *a) {
  float x = a[0], y = a[1];
  switch (op) {
  case KL_OP_NEG: return -x;
  case KL_OP_SQR: return x * x;
  case KL_OP_SQRT: return sqrtf(x);
  case KL_OP_LOG1P: return log1pf(x);
  case KL_OP_EXPM1: return expm1f(x);
  /* Kiln's own exp, log, tanh (ops/kmath.c): what the JIT computes inline */
  case KL_OP_TANH: return kl_tanhf(x);
  case KL_OP_SIGMOID: return kl_sigmoidf(x);
  case KL_OP_SOFTPLUS: return kl_softplusf(x);
  case KL_OP_RELU: return (x >= 0 || x != x) ? x : 0.0f;
  case KL_OP_EXP: return kl_expf(x);
  case KL_OP_LOG: return kl_logf(x);
  case KL_OP_ABS: return fabsf(x);
  case KL_OP_SIGN: return x > 0 ? 1.0f : x < 0 ? -1.0f : x;
  case KL_OP_ADD: return x + y;
  case KL_OP_SUB: return x - y;
  case KL_OP_MUL: return x * y;
  case KL_OP_DIV: return x / y;
  case KL_OP_POW: return powf(x, y);
  case KL_OP_MAX: return (x >= y || x != x) ? x : y;
  case KL_OP_MIN: return (x <= y || x != x) ? x : y;
  default: return NAN;
  }
}

/* Integer power by squaring, wrapping modulo 2^64 (narrowing afterwards
** gives the same bits as wrapping in the narrow type). A negative exponent
** gives 1/x**-y truncated: 1 for x == 1, +-1 for x == -1, 0 otherwise. */
int64_t kl_ipow(int64_t x, int64_t y) {
  if (y < 0) return x == 1 ? 1 : x == -1 ? ((y & 1) ? -1 : 1) : 0;
  uint64_t r = 1, b = (uint64_t)x;
  while (y) {
    if (y & 1) r *= b;
    b *= b;
    y >>= 1;
  }
  return (int64_t)r;
}

/* numpy's floor division and remainder: x // 0 and x % 0 are 0; the one
** overflow, INT64_MIN // -1, wraps (narrower dtypes wrap when stored). */
int64_t kl_floordiv(int64_t x, int64_t y, bool want_mod) {
  if (y == 0) return 0;
  if (y == -1) return want_mod ? 0 : (int64_t)(0 - (uint64_t)x);
  int64_t q = x / y, r = x % y;
  if (r != 0 && ((r < 0) != (y < 0))) {
    q -= 1;
    r += y;
  }
  return want_mod ? r : q;
}

static int64_t int_op(kl_opcode op, const int64_t *a) {
  uint64_t x = (uint64_t)a[0], y = (uint64_t)a[1];
  switch (op) {
  case KL_OP_NEG: return (int64_t)(0 - x);
  case KL_OP_SQR: return (int64_t)(x * x);
  case KL_OP_ABS: return a[0] < 0 ? (int64_t)(0 - x) : a[0];
  case KL_OP_SIGN: return a[0] > 0 ? 1 : a[0] < 0 ? -1 : 0;
  case KL_OP_RELU: return a[0] >= 0 ? a[0] : 0;
  case KL_OP_AND: return a[0] && a[1];
  case KL_OP_OR: return a[0] || a[1];
  case KL_OP_NOT: return !a[0];
  case KL_OP_ADD: return (int64_t)(x + y);
  case KL_OP_SUB: return (int64_t)(x - y);
  case KL_OP_MUL: return (int64_t)(x * y);
  case KL_OP_POW: return kl_ipow(a[0], a[1]);
  case KL_OP_INTDIV:
  case KL_OP_MOD: return kl_floordiv(a[0], a[1], op == KL_OP_MOD);
  case KL_OP_MAX: return a[0] >= a[1] ? a[0] : a[1];
  case KL_OP_MIN: return a[0] <= a[1] ? a[0] : a[1];
  default: return 0;
  }
}

static bool cmp_op(kl_opcode op, double x, double y) {
  switch (op) {
  case KL_OP_LT: return x < y;
  case KL_OP_LE: return x <= y;
  case KL_OP_GT: return x > y;
  case KL_OP_GE: return x >= y;
  case KL_OP_EQ: return x == y;
  case KL_OP_NE: return x != y;
  default: return false;
  }
}

static bool icmp_op(kl_opcode op, int64_t x, int64_t y) {
  switch (op) {
  case KL_OP_LT: return x < y;
  case KL_OP_LE: return x <= y;
  case KL_OP_GT: return x > y;
  case KL_OP_GE: return x >= y;
  case KL_OP_EQ: return x == y;
  case KL_OP_NE: return x != y;
  default: return false;
  }
}

static void store_i64(kiln_dtype dt, void *p, int64_t i, int64_t v) {
  kl_convert(dt, p, i, KILN_INT64, &v, 0);
}

/* ------------------------------------------------------------ indexing */

/* Contiguous strides (in elements) of a shape. */
static void strides_of(int rank, const int64_t *shape, int64_t *st) {
  int64_t s = 1;
  for (int i = rank - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i];
  }
}

/* Offset in an operand of rank r, right-aligned in an iteration of rank R,
** broadcasting its size-1 dimensions. */
static int64_t bcast_offset(const kiln_tensor *t, int R, const int64_t *idx) {
  int64_t st[KILN_MAX_RANK], off = 0;
  strides_of(t->rank, t->shape, st);
  for (int i = 0; i < t->rank; i++) {
    int64_t k = idx[i + R - t->rank];
    off += (t->shape[i] == 1 ? 0 : k) * st[i];
  }
  return off;
}

static bool next_index(int rank, const int64_t *shape, int64_t *idx) {
  for (int i = rank - 1; i >= 0; i--) {
    if (++idx[i] < shape[i]) return true;
    idx[i] = 0;
  }
  return false;
}

static kiln_status shape_err(char *err, size_t n, const char *what, const kiln_tensor *a,
                             const kiln_tensor *b) {
  char sa[160], sb[160];
  snprintf(err, n, "%s: shapes %s and %s do not fit", what,
           kl_shape_str(sa, sizeof sa, a->rank, a->shape),
           kl_shape_str(sb, sizeof sb, b->rank, b->shape));
  return KILN_SHAPE;
}

/* ---------------------------------------------------------- op families */

static kiln_status eval_elem(const kiln_node *v, const kiln_tensor *const *in, kiln_tensor *out,
                             char *err, size_t errn) {
  int R = 0;
  for (int k = 0; k < v->n_in; k++)
    if (in[k]->rank > R) R = in[k]->rank;
  int64_t shape[KILN_MAX_RANK];
  for (int i = 0; i < R; i++)
    shape[i] = 1;
  for (int k = 0; k < v->n_in; k++)
    for (int i = 0; i < in[k]->rank; i++) {
      int64_t d = in[k]->shape[i], *o = &shape[i + R - in[k]->rank];
      if (d == *o || d == 1) continue;
      if (*o != 1) return shape_err(err, errn, kl_ops[v->op].name, in[0], in[k]);
      *o = d;
    }
  kiln_dtype odt = (kiln_dtype)v->type.dtype;
  kiln_dtype idt = (kiln_dtype)in[v->n_in - 1]->dtype; /* where: a, b share it */
  if (kl_tensor_reshape(out, odt, R, shape) != KILN_OK) return KILN_NOMEM;
  if (out->size == 0) return KILN_OK;
  kl_opcode op = (kl_opcode)v->op;
  int64_t idx[KILN_MAX_RANK] = {0}, j = 0;
  do {
    int64_t off[3];
    for (int k = 0; k < v->n_in; k++)
      off[k] = bcast_offset(in[k], R, idx);
    if (op == KL_OP_CAST || op == KL_OP_STOPGRAD) {
      kl_convert(odt, out->data, j, (kiln_dtype)in[0]->dtype, in[0]->data, off[0]);
    } else if (op == KL_OP_WHERE) {
      bool c = ((const uint8_t *)in[0]->data)[off[0]] != 0;
      kl_convert(odt, out->data, j, idt, c ? in[1]->data : in[2]->data, c ? off[1] : off[2]);
    } else if (op == KL_OP_ISNAN || op == KL_OP_ISINF) {
      double x = kl_load_f64(idt, in[0]->data, off[0]);
      ((uint8_t *)out->data)[j] = kl_dtype_is_float(idt) && (op == KL_OP_ISNAN ? x != x : isinf(x));
    } else if (op >= KL_OP_LT && op <= KL_OP_NE) {
      bool r;
      if (kl_dtype_is_float(idt))
        r = cmp_op(op, kl_load_f64(idt, in[0]->data, off[0]),
                   kl_load_f64(idt, in[1]->data, off[1]));
      else
        r = icmp_op(op, kl_load_i64(idt, in[0]->data, off[0]),
                    kl_load_i64(idt, in[1]->data, off[1]));
      ((uint8_t *)out->data)[j] = r;
    } else if (odt == KILN_FLOAT64) {
      double a[2] = {0, 0};
      for (int k = 0; k < v->n_in; k++)
        a[k] = ((const double *)in[k]->data)[off[k]];
      ((double *)out->data)[j] = f64_op(op, a);
    } else if (odt == KILN_FLOAT32) {
      float a[2] = {0, 0};
      for (int k = 0; k < v->n_in; k++)
        a[k] = ((const float *)in[k]->data)[off[k]];
      ((float *)out->data)[j] = f32_op(op, a);
    } else {
      int64_t a[2] = {0, 0};
      for (int k = 0; k < v->n_in; k++)
        a[k] = kl_load_i64(idt, in[k]->data, off[k]);
      store_i64(odt, out->data, j, int_op(op, a));
    }
    j++;
  } while (next_index(R, shape, idx));
  return KILN_OK;
}

/* Adds src[i] into dst[j] in dtype dt (float32 in float, ints wrapping). */
static void acc_into(kiln_dtype dt, void *dst, int64_t j, const void *src, int64_t i) {
  switch (dt) {
  case KILN_FLOAT64: ((double *)dst)[j] = ((double *)dst)[j] + ((const double *)src)[i]; break;
  case KILN_FLOAT32: ((float *)dst)[j] = ((float *)dst)[j] + ((const float *)src)[i]; break;
  default: {
    uint64_t a = (uint64_t)kl_load_i64(dt, dst, j), b = (uint64_t)kl_load_i64(dt, src, i);
    store_i64(dt, dst, j, (int64_t)(a + b));
  }
  }
}

/* The order of a float sum down to one value (KL_SUM_LANES = 16 lanes,
** KL_SUM_CHUNK = 2^14, runtime/pool.h): along the last axis, of length n,
** element k with k < cut = n - n % 16 goes to lane k % 16, the others to a
** tail sum; rows are visited in C order, each lane and the tail adding in
** that order from +0.0. When a row's blocked part is longer than the chunk
** (cut > 2^14), it is cut into chunks of 2^14 elements (the last one
** shorter): each chunk adds its elements into 16 partial lanes that start
** at +0.0, and the partials are then added lane by lane to the running
** lanes, in chunk order. (A chunk is what one thread computes; rows of at
** most 2^14 blocked elements add straight into the running lanes.) Then the
** lanes combine as a tree (lane j += lane j + w for w = 8, 4, 2, 1) and the
** result is lanes[0] + tail. The order depends on the shape only, never on
** vector width or threads; a last axis shorter than 16 is summed in plain
** index order. */
#define KL_LANES KL_SUM_LANES
#define BLOCKED_SUM(T, NAME)                                                                       \
  static T NAME(const T *x, int64_t rows, int64_t nl) {                                            \
    int64_t cut = nl - nl % KL_LANES;                                                              \
    bool chunked = cut > KL_SUM_CHUNK;                                                             \
    T lane[KL_LANES] = {0}, part[KL_LANES], tail = 0;                                              \
    for (int64_t r = 0; r < rows; r++, x += nl) {                                                  \
      for (int64_t c0 = 0; c0 < cut; c0 += KL_SUM_CHUNK) {                                         \
        int64_t c1 = cut - c0 < KL_SUM_CHUNK ? cut : c0 + KL_SUM_CHUNK;                            \
        T *acc = chunked ? part : lane;                                                            \
        if (chunked) memset(part, 0, sizeof part);                                                 \
        for (int64_t k = c0; k < c1; k++)                                                          \
          acc[k % KL_LANES] = acc[k % KL_LANES] + x[k];                                            \
        if (chunked)                                                                               \
          for (int j = 0; j < KL_LANES; j++)                                                       \
            lane[j] = lane[j] + part[j];                                                           \
      }                                                                                            \
      for (int64_t k = cut; k < nl; k++)                                                           \
        tail = tail + x[k];                                                                        \
    }                                                                                              \
    for (int w = KL_LANES / 2; w >= 1; w /= 2)                                                     \
      for (int j = 0; j < w; j++)                                                                  \
        lane[j] = lane[j] + lane[j + w];                                                           \
    return lane[0] + tail;                                                                         \
  }
BLOCKED_SUM(double, blocked_sum_f64)
BLOCKED_SUM(float, blocked_sum_f32)

/* src->size > 0 */
static void blocked_sum(kiln_dtype dt, kiln_tensor *dst, const kiln_tensor *src) {
  int64_t nl = src->rank ? src->shape[src->rank - 1] : 1, rows = src->size / nl;
  if (dt == KILN_FLOAT64)
    ((double *)dst->data)[0] = blocked_sum_f64(src->data, rows, nl);
  else
    ((float *)dst->data)[0] = blocked_sum_f32(src->data, rows, nl);
}

/* Iterates over src's shape, adding each element into dst at the offset
** given by per-axis dst strides (0 on summed axes): the fixed order of every
** sum in Kiln, increasing index order per output element. */
static void accumulate(kiln_dtype dt, kiln_tensor *dst, const kiln_tensor *src,
                       const int64_t *dst_st, bool all_axes) {
  memset(dst->data, 0, kl_tensor_nbytes(dst));
  if (all_axes && kl_dtype_is_float(dt)) {
    if (src->size > 0) blocked_sum(dt, dst, src);
    return;
  }
  if (src->size == 0) return;
  int64_t idx[KILN_MAX_RANK] = {0}, i = 0;
  do {
    int64_t off = 0;
    for (int d = 0; d < src->rank; d++)
      off += idx[d] * dst_st[d];
    acc_into(dt, dst->data, off, src->data, i++);
  } while (next_index(src->rank, src->shape, idx));
}

/* Folds src into dst with the elementwise op (mul, maximum, minimum) at the
** offsets dst_st gives, in increasing index order of src. With seen (one
** flag per dst element, all false) each dst element starts as its first
** source element; without, from dst's current value. */
static void fold(kl_opcode op, kiln_dtype dt, kiln_tensor *dst, const kiln_tensor *src,
                 const int64_t *dst_st, bool *seen) {
  if (src->size == 0) return;
  int64_t idx[KILN_MAX_RANK] = {0}, i = 0;
  do {
    int64_t off = 0;
    for (int d = 0; d < src->rank; d++)
      off += idx[d] * dst_st[d];
    if (seen && !seen[off]) {
      seen[off] = true;
      kl_convert(dt, dst->data, off, dt, src->data, i);
    } else if (dt == KILN_FLOAT64) {
      double a[2] = {((double *)dst->data)[off], ((const double *)src->data)[i]};
      ((double *)dst->data)[off] = f64_op(op, a);
    } else if (dt == KILN_FLOAT32) {
      float a[2] = {((float *)dst->data)[off], ((const float *)src->data)[i]};
      ((float *)dst->data)[off] = f32_op(op, a);
    } else {
      int64_t a[2] = {kl_load_i64(dt, dst->data, off), kl_load_i64(dt, src->data, i)};
      store_i64(dt, dst->data, off, int_op(op, a));
    }
    i++;
  } while (next_index(src->rank, src->shape, idx));
}

/* argmax/argmin: for each output element the row-major position, within
** the reduced axes, of the first source element that is strictly greater
** (smaller) than every one before it, or the first NaN. */
static kiln_status arg_fold(bool is_max, kiln_tensor *dst, const kiln_tensor *src,
                            const int64_t *dst_st, uint32_t axes) {
  kiln_dtype dt = (kiln_dtype)src->dtype;
  int64_t *best = kl_malloc((size_t)(dst->size ? dst->size : 1) * sizeof *best);
  if (!best) return KILN_NOMEM;
  for (int64_t j = 0; j < dst->size; j++)
    best[j] = -1;
  int64_t rst[KILN_MAX_RANK], s = 1; /* row-major strides over the reduced axes */
  for (int d = src->rank - 1; d >= 0; d--) {
    rst[d] = (axes >> d & 1u) ? s : 0;
    if (axes >> d & 1u) s *= src->shape[d];
  }
  int64_t idx[KILN_MAX_RANK] = {0}, i = 0;
  if (src->size > 0) do {
      int64_t off = 0, pos = 0;
      for (int d = 0; d < src->rank; d++)
        off += idx[d] * dst_st[d], pos += idx[d] * rst[d];
      bool take = best[off] < 0;
      if (!take && kl_dtype_is_float(dt)) {
        double x = kl_load_f64(dt, src->data, i), b = kl_load_f64(dt, src->data, best[off]);
        take = (is_max ? x > b : x < b) || (isnan(x) && !isnan(b));
      } else if (!take) {
        int64_t x = kl_load_i64(dt, src->data, i), b = kl_load_i64(dt, src->data, best[off]);
        take = is_max ? x > b : x < b;
      }
      if (take) {
        best[off] = i;
        ((int64_t *)dst->data)[off] = pos;
      }
      i++;
    } while (next_index(src->rank, src->shape, idx));
  kl_free(best);
  return KILN_OK;
}

/* Every reduction: the output has x's shape without the reduced axes (with
** keepdims, with them at size 1); each output element combines its source
** elements in increasing index order. sum starts at +0.0 (0), prod at 1;
** max and min start from the first element and so need one (an axis of
** size 0 is a shape error, as numpy's "zero-size array to reduction
** operation maximum which has no identity"). */
static kiln_status eval_reduce(const kiln_node *v, const kiln_tensor *x, kiln_tensor *out,
                               char *err, size_t errn) {
  int64_t shape[KILN_MAX_RANK] = {0}, st[KILN_MAX_RANK], dst_st[KILN_MAX_RANK];
  int r = 0;
  uint32_t axes = v->p.axes;
  for (int i = 0; i < x->rank; i++) {
    if (!(axes >> i & 1u))
      shape[r++] = x->shape[i];
    else if (v->p.keepdims)
      shape[r++] = 1;
    if ((axes >> i & 1u) && x->shape[i] == 0 && kl_reduce_needs_elements(v->op)) {
      snprintf(err, errn,
               "%s: cannot reduce over axis %d of size 0 (the reduction has no identity)",
               kl_ops[v->op].name, i);
      return KILN_SHAPE;
    }
  }
  kiln_dtype dt = (kiln_dtype)v->type.dtype;
  if (kl_tensor_reshape(out, dt, r, shape) != KILN_OK) return KILN_NOMEM;
  strides_of(r, shape, st);
  for (int i = 0, k = 0; i < x->rank; i++) {
    bool red = axes >> i & 1u;
    if (!red || v->p.keepdims) k++;
    dst_st[i] = red ? 0 : st[k - 1];
  }
  switch ((kl_opcode)v->op) {
  case KL_OP_SUM: accumulate(dt, out, x, dst_st, axes == (1u << x->rank) - 1u); return KILN_OK;
  case KL_OP_PROD: {
    for (int64_t j = 0; j < out->size; j++) {
      double one = 1.0;
      kl_convert(dt, out->data, j, KILN_FLOAT64, &one, 0);
    }
    fold(KL_OP_MUL, dt, out, x, dst_st, NULL);
    return KILN_OK;
  }
  case KL_OP_RMAX:
  case KL_OP_RMIN: {
    bool *seen = kl_calloc((size_t)(out->size ? out->size : 1), sizeof *seen);
    if (!seen) return KILN_NOMEM;
    fold(v->op == KL_OP_RMAX ? KL_OP_MAX : KL_OP_MIN, dt, out, x, dst_st, seen);
    kl_free(seen);
    return KILN_OK;
  }
  case KL_OP_ARGMAX:
  case KL_OP_ARGMIN: return arg_fold(v->op == KL_OP_ARGMAX, out, x, dst_st, axes);
  default: break;
  }
  snprintf(err, errn, "internal: %s is not a reduction", kl_ops[v->op].name);
  return KILN_INTERNAL;
}

static kiln_status eval_sum_like(const kiln_node *v, const kiln_tensor *g, const kiln_tensor *like,
                                 kiln_tensor *out, char *err, size_t errn) {
  int64_t st[KILN_MAX_RANK], dst_st[KILN_MAX_RANK];
  if (like->rank > g->rank) return shape_err(err, errn, "sum_like", g, like);
  if (kl_tensor_reshape(out, (kiln_dtype)v->type.dtype, like->rank, like->shape) != KILN_OK)
    return KILN_NOMEM;
  strides_of(like->rank, like->shape, st);
  int lead = g->rank - like->rank;
  for (int i = 0; i < g->rank; i++) {
    int j = i - lead;
    if (j < 0 || like->shape[j] == 1) {
      dst_st[i] = 0;
    } else {
      if (like->shape[j] != g->shape[i]) return shape_err(err, errn, "sum_like", g, like);
      dst_st[i] = st[j];
    }
  }
  accumulate((kiln_dtype)v->type.dtype, out, g, dst_st, out->rank == 0);
  return KILN_OK;
}

static kiln_status eval_bcast(const kiln_node *v, const kiln_tensor *g, const kiln_tensor *like,
                              kiln_tensor *out, char *err, size_t errn) {
  kiln_dtype dt = (kiln_dtype)v->type.dtype;
  if (kl_tensor_reshape(out, dt, like->rank, like->shape) != KILN_OK) return KILN_NOMEM;
  /* g's axes are like's axes without those in p.axes, in order */
  int64_t gst[KILN_MAX_RANK], src_st[KILN_MAX_RANK];
  strides_of(g->rank, g->shape, gst);
  for (int i = 0, k = 0; i < like->rank; i++) {
    if (v->p.axes >> i & 1u) {
      src_st[i] = 0;
    } else {
      if (k >= g->rank || (g->shape[k] != 1 && g->shape[k] != like->shape[i]))
        return shape_err(err, errn, "broadcast", g, like);
      src_st[i] = g->shape[k] == 1 ? 0 : gst[k];
      k++;
    }
  }
  if (out->size == 0) return KILN_OK;
  int64_t idx[KILN_MAX_RANK] = {0}, j = 0;
  do {
    int64_t off = 0;
    for (int d = 0; d < like->rank; d++)
      off += idx[d] * src_st[d];
    kl_convert(dt, out->data, j++, dt, g->data, off);
  } while (next_index(like->rank, like->shape, idx));
  return KILN_OK;
}

/* One product c = a . b of the DOT op: a viewed as (m, k), b as (k, n) with
** the given strides; each element accumulates over p = 0..k-1 in order,
** from 0, in the result dtype (integers wrap: accumulated in uint64 and
** truncated, which is the same modulo 2^w). */
typedef struct dot_view {
  int64_t m, k, n, as_i, as_p, bs_p, bs_j;
} dot_view;

static void dot_one(kiln_dtype dt, const dot_view *d, const void *a, int64_t a0, const void *b,
                    int64_t b0, void *out, int64_t o0) {
  for (int64_t i = 0; i < d->m; i++)
    for (int64_t j = 0; j < d->n; j++) {
      int64_t o = o0 + i * d->n + j, ia = a0 + i * d->as_i, ib = b0 + j * d->bs_j;
      if (dt == KILN_FLOAT64) {
        double acc = 0.0;
        for (int64_t p = 0; p < d->k; p++)
          acc = acc + ((const double *)a)[ia + p * d->as_p] * ((const double *)b)[ib + p * d->bs_p];
        ((double *)out)[o] = acc;
      } else if (dt == KILN_FLOAT32) {
        float acc = 0.0f;
        for (int64_t p = 0; p < d->k; p++)
          acc = acc + ((const float *)a)[ia + p * d->as_p] * ((const float *)b)[ib + p * d->bs_p];
        ((float *)out)[o] = acc;
      } else {
        uint64_t acc = 0;
        for (int64_t p = 0; p < d->k; p++)
          acc += (uint64_t)kl_load_i64(dt, a, ia + p * d->as_p) *
                 (uint64_t)kl_load_i64(dt, b, ib + p * d->bs_p);
        store_i64(dt, out, o, (int64_t)acc);
      }
    }
}

/* outer: out[i, j] = a[i] * b[j], the product alone (as numpy.outer). */
static kiln_status eval_outer(const kiln_node *v, const kiln_tensor *a, const kiln_tensor *b,
                              kiln_tensor *out) {
  kiln_dtype dt = (kiln_dtype)v->type.dtype;
  int64_t m = a->shape[0], n = b->shape[0];
  if (kl_tensor_reshape(out, dt, 2, (int64_t[]){m, n}) != KILN_OK) return KILN_NOMEM;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      int64_t o = i * n + j;
      if (dt == KILN_FLOAT64)
        ((double *)out->data)[o] = ((const double *)a->data)[i] * ((const double *)b->data)[j];
      else if (dt == KILN_FLOAT32)
        ((float *)out->data)[o] = ((const float *)a->data)[i] * ((const float *)b->data)[j];
      else
        store_i64(dt, out->data, o,
                  (int64_t)((uint64_t)kl_load_i64(dt, a->data, i) *
                            (uint64_t)kl_load_i64(dt, b->data, j)));
    }
  return KILN_OK;
}

/* ------------------------------------------------------------ shape ops */

/* dimshuffle: output axis a is input axis p.src_axis[a] (stride of that
** axis), or a new axis of size 1; the input's other axes must have size 1. */
static kiln_status eval_dimshuffle(const kiln_node *v, const kiln_tensor *x, kiln_tensor *out,
                                   char *err, size_t errn) {
  kiln_dtype dt = (kiln_dtype)v->type.dtype;
  int r = v->type.rank;
  int64_t shape[KILN_MAX_RANK], xst[KILN_MAX_RANK], st[KILN_MAX_RANK];
  bool kept[KILN_MAX_RANK] = {false};
  strides_of(x->rank, x->shape, xst);
  for (int a = 0; a < r; a++) {
    int k = v->p.src_axis[a];
    shape[a] = k >= 0 ? x->shape[k] : 1;
    st[a] = k >= 0 ? xst[k] : 0;
    if (k >= 0) kept[k] = true;
  }
  for (int k = 0; k < x->rank; k++)
    if (!kept[k] && x->shape[k] != 1) {
      char sa[160];
      snprintf(err, errn,
               "dimshuffle: drops axis %d of an operand of shape %s (only size 1 can go)", k,
               kl_shape_str(sa, sizeof sa, x->rank, x->shape));
      return KILN_SHAPE;
    }
  if (kl_tensor_reshape(out, dt, r, shape) != KILN_OK) return KILN_NOMEM;
  if (out->size == 0) return KILN_OK;
  int64_t idx[KILN_MAX_RANK] = {0}, j = 0;
  do {
    int64_t off = 0;
    for (int a = 0; a < r; a++)
      off += idx[a] * st[a];
    kl_convert(dt, out->data, j++, dt, x->data, off);
  } while (next_index(r, shape, idx));
  return KILN_OK;
}

/* reshape and reshape_like: the elements of in[0] in C order, in the shape
** the type gives, with dynamic sizes from the last input's axes
** p.src_axis[a] or (src_axis -1) inferred from the element count. */
static kiln_status eval_reshape(const kiln_node *v, const kiln_tensor *const *in, kiln_tensor *out,
                                char *err, size_t errn) {
  const kiln_tensor *x = in[0], *src = in[v->n_in - 1];
  int r = v->type.rank, infer = -1;
  int64_t shape[KILN_MAX_RANK], known = 1;
  for (int a = 0; a < r; a++) {
    int k = v->p.src_axis[a];
    shape[a] = v->type.dims[a] >= 0 ? v->type.dims[a] : k >= 0 ? src->shape[k] : -1;
    if (shape[a] < 0)
      infer = a;
    else
      known *= shape[a];
  }
  if (infer >= 0 && known != 0) shape[infer] = x->size / known;
  if (infer >= 0 ? known == 0 || x->size % known != 0 : known != x->size) {
    char sa[160], sb[160];
    if (infer >= 0) shape[infer] = -1;
    snprintf(err, errn, "%s: cannot reshape an array of shape %s (%lld elements) into shape %s",
             kl_ops[v->op].name, kl_shape_str(sa, sizeof sa, x->rank, x->shape), (long long)x->size,
             kl_shape_str(sb, sizeof sb, r, shape));
    return KILN_SHAPE;
  }
  if (kl_tensor_reshape(out, (kiln_dtype)v->type.dtype, r, shape) != KILN_OK) return KILN_NOMEM;
  memcpy(out->data, x->data, kl_tensor_nbytes(out));
  return KILN_OK;
}

/* DOT: vectors and matrices (numpy.dot), and stacks of matrices (rank 3,
** numpy.matmul) where a matrix operand is used for every batch element;
** ta/tb transpose the last two axes. */
static kiln_status eval_dot(const kiln_node *v, const kiln_tensor *a, const kiln_tensor *b,
                            kiln_tensor *out, char *err, size_t errn) {
  if (v->op == KL_OP_OUTER) {
    if (a->rank != 1 || b->rank != 1) return shape_err(err, errn, "outer", a, b);
    return eval_outer(v, a, b, out);
  }
  kiln_dtype dt = (kiln_dtype)v->type.dtype;
  bool ta = v->p.ta, tb = v->p.tb;
  /* the matrix part: the last two axes of a rank-2 or rank-3 operand */
  const int64_t *ma = a->shape + (a->rank == 3), *mb = b->shape + (b->rank == 3);
  dot_view d = {
      .m = a->rank >= 2 ? ma[ta ? 1 : 0] : 1,
      .k = a->rank >= 2 ? ma[ta ? 0 : 1] : a->shape[0],
      .n = b->rank >= 2 ? mb[tb ? 0 : 1] : 1,
      .as_i = a->rank >= 2 ? (ta ? 1 : ma[1]) : 0,
      .as_p = a->rank >= 2 ? (ta ? ma[1] : 1) : 1,
      .bs_p = b->rank >= 2 ? (tb ? 1 : mb[1]) : 1,
      .bs_j = b->rank >= 2 ? (tb ? mb[1] : 1) : 0,
  };
  int64_t kb = b->rank >= 2 ? mb[tb ? 1 : 0] : b->shape[0];
  bool batched = a->rank == 3 || b->rank == 3;
  if (d.k != kb || (a->rank == 3 && b->rank == 3 && a->shape[0] != b->shape[0]) ||
      (batched && (a->rank < 2 || b->rank < 2)))
    return shape_err(err, errn, "dot", a, b);
  int64_t nb = batched ? (a->rank == 3 ? a->shape[0] : b->shape[0]) : 1;
  int64_t shape[3];
  int r = 0;
  if (batched) shape[r++] = nb;
  if (a->rank >= 2) shape[r++] = d.m;
  if (b->rank >= 2) shape[r++] = d.n;
  if (kl_tensor_reshape(out, dt, r, shape) != KILN_OK) return KILN_NOMEM;
  int64_t sa = a->rank == 3 ? ma[0] * ma[1] : 0, sb = b->rank == 3 ? mb[0] * mb[1] : 0;
  for (int64_t t = 0; t < nb; t++)
    dot_one(dt, &d, a->data, t * sa, b->data, t * sb, out->data, t * d.m * d.n);
  return KILN_OK;
}

kiln_status kl_eval_node(const kiln_node *v, const kiln_tensor *const *in, kiln_tensor *out,
                         char *err, size_t errn) {
  switch (kl_ops[v->op].kind) {
  case KL_LEAF:
    if (v->op != KL_OP_CONST) {
      snprintf(err, errn, "internal: %s has no value to evaluate", kl_ops[v->op].name);
      return KILN_INTERNAL;
    }
    if (kl_tensor_reshape(out, (kiln_dtype)v->type.dtype, v->type.rank, v->type.dims) != KILN_OK)
      return KILN_NOMEM;
    memcpy(out->data, v->data, kl_tensor_nbytes(out));
    return KILN_OK;
  case KL_ELEM: return eval_elem(v, in, out, err, errn);
  case KL_REDUCE: return eval_reduce(v, in[0], out, err, errn);
  case KL_LIKE: return eval_sum_like(v, in[0], in[1], out, err, errn);
  case KL_BCAST: return eval_bcast(v, in[0], in[1], out, err, errn);
  case KL_DOT: return eval_dot(v, in[0], in[1], out, err, errn);
  case KL_INDEX: return kl_eval_index(v, in, out, err, errn);
  case KL_COUNT: {
    double n = 1;
    for (int i = 0; i < in[0]->rank; i++)
      if (v->p.axes >> i & 1u) n *= (double)in[0]->shape[i];
    if (kl_tensor_reshape(out, (kiln_dtype)v->type.dtype, 0, NULL) != KILN_OK) return KILN_NOMEM;
    kl_convert((kiln_dtype)v->type.dtype, out->data, 0, KILN_FLOAT64, &n, 0);
    return KILN_OK;
  }
  case KL_SHUFFLE: return eval_dimshuffle(v, in[0], out, err, errn);
  case KL_RESHAPE: return eval_reshape(v, in, out, err, errn);
  }
  snprintf(err, errn, "internal: unknown op %d", v->op);
  return KILN_INTERNAL;
}
