/*
** index.c -- the indexing ops: builders, type rules and parameters.
**
**   slice        numpy's basic indexing with constant bounds (Theano's
**                subtensor); p.slices holds one kiln_slice per axis of x
**   inc_slice    its gradient: zeros of like's shape with g written into
**                the slice (Theano's IncSubtensor; slices never overlap)
**   take         numpy.take along p.axis with an integer index tensor
**   inc_take     its gradient: zeros of like's shape, g added at the
**                indices in the row-major order of g (repeats accumulate)
**   one_hot      labels -> labels.shape + (p.n,)
**   concatenate  two operands along p.axis; an operand whose bit is set in
**                p.lacks has no such axis and counts as size 1 (stack)
**   concat_part  the part of a concatenation's gradient for one operand
**
** All are of kind INDEX: never fused, each its own loop nest, operands
** materialized. Their shapes: compiler/function.c hands the parameters to
** the shape program (runtime/index.c), which also clamps slice bounds
** against dynamic sizes with the same kl_slice_norm the builder uses here
** for static ones. take and one_hot are the ops whose step can fail (an
** index out of range): the step returns early with a record (backend.c).
*/
#include "compiler/graph.h"

#include <stdio.h>
#include <string.h>

static kiln_node *fail(kiln_ctx *ctx, kiln_status st, const char *what, const kiln_node *x,
                       const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static kiln_node *fail(kiln_ctx *ctx, kiln_status st, const char *what, const kiln_node *x,
                       const char *file, int line, const char *fmt, ...) {
  char why[400], lb[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  kl_error(ctx, st, "%s: %s: %s (%s:%d)", what, why, kl_node_label(x, lb, sizeof lb),
           kl_basename(file), line);
  return NULL;
}

/* -------------------------------------------------------------- slicing */

kiln_node *kiln_slice_at(kiln_node *x, int n_slices, const kiln_slice *slices, const char *file,
                         int line) {
  kiln_ctx *ctx = kl_common_ctx("slice", 1, &x);
  if (!ctx) return NULL;
  int r = x->type.rank;
  if (n_slices < 0 || n_slices > r || (n_slices > 0 && !slices))
    return fail(ctx, KILN_MISUSE, "slice", x, file, line, "%d slices for a tensor of rank %d%s",
                n_slices, r, n_slices > 0 && !slices ? " (NULL array)" : "");
  kiln_slice *sl = kl_arena_alloc(&ctx->arena, (size_t)(r ? r : 1) * sizeof *sl);
  if (!sl) {
    kl_error(ctx, KILN_NOMEM, "slice: out of memory");
    return NULL;
  }
  kl_type t = {.dtype = x->type.dtype};
  bool whole = true;
  for (int d = 0; d < r; d++) {
    kiln_slice s = d < n_slices ? slices[d] : KILN_ALL;
    if (s.flags & ~(KILN_SLICE_NO_START | KILN_SLICE_NO_STOP | KILN_SLICE_INDEX))
      return fail(ctx, KILN_MISUSE, "slice", x, file, line, "unknown flags 0x%x for axis %d",
                  s.flags, d);
    if (s.flags & KILN_SLICE_INDEX) {
      s = (kiln_slice){s.start, 0, 1, KILN_SLICE_INDEX}; /* one spelling, for CSE */
    } else {
      if (s.step == 0 || s.step == INT64_MIN)
        return fail(ctx, KILN_MISUSE, "slice", x, file, line, "step %lld for axis %d",
                    (long long)s.step, d);
      if (s.flags & KILN_SLICE_NO_START) s.start = 0;
      if (s.flags & KILN_SLICE_NO_STOP) s.stop = 0;
    }
    sl[d] = s;
    int64_t n = x->type.dims[d], start, len = KILN_DYN;
    if (n != KILN_DYN && !kl_slice_norm(n, &s, &start, &len))
      return fail(ctx, KILN_SHAPE, "slice", x, file, line,
                  "index %lld is out of bounds for axis %d with size %lld", (long long)s.start, d,
                  (long long)n);
    if (s.flags & KILN_SLICE_INDEX) {
      whole = false;
      continue;
    }
    whole &= (s.flags & (KILN_SLICE_NO_START | KILN_SLICE_NO_STOP)) ==
                 (KILN_SLICE_NO_START | KILN_SLICE_NO_STOP) &&
             s.step == 1;
    t.dims[t.rank++] = n == KILN_DYN ? KILN_DYN : len;
  }
  if (whole) return x; /* x[:, :] is x: values are immutable, no copy needed */
  kl_params p = {.slices = sl};
  return kl_node_new(ctx, KL_OP_SLICE, 1, &x, &t, &p, file, line);
}

kiln_node *kl_slice_inc(kiln_node *g, kiln_node *like, const kiln_slice *slices, const char *file,
                        int line) {
  kiln_node *in[2] = {g, like};
  kiln_ctx *ctx = kl_common_ctx("inc_slice", 2, in);
  if (!ctx) return NULL;
  kl_type t = like->type;
  t.dtype = g->type.dtype;
  t.weak = false;
  kl_params p = {.slices = slices};
  return kl_node_new(ctx, KL_OP_SLICE_INC, 2, in, &t, &p, file, line);
}

/* ----------------------------------------------------------------- take */

static int norm_axis(kiln_node *x, int axis, int rank, const char *what, const char *file,
                     int line) {
  int a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) {
    fail(x->ctx, KILN_SHAPE, what, x, file, line, "axis %d is out of range for rank %d", axis,
         rank);
    return -1;
  }
  return a;
}

kiln_node *kl_take(kiln_node *x, kiln_node *idx, int axis, const char *file, int line) {
  kiln_node *in[2] = {x, idx};
  kiln_ctx *ctx = kl_common_ctx("take", 2, in);
  if (!ctx) return NULL;
  if (!kl_dtype_is_int((kiln_dtype)idx->type.dtype))
    return fail(ctx, KILN_TYPE, "take", idx, file, line, "indices must be integers, not %s",
                kiln_dtype_name(idx->type.dtype));
  int a = norm_axis(x, axis, x->type.rank, "take", file, line);
  if (a < 0) return NULL;
  int r = x->type.rank - 1 + idx->type.rank;
  if (r > KILN_MAX_RANK)
    return fail(ctx, KILN_TYPE, "take", x, file, line, "the result would have rank %d > %d", r,
                KILN_MAX_RANK);
  /* constant indices into a static axis are checked now */
  int64_t n = x->type.dims[a], size = kl_type_static_size(&idx->type);
  if (idx->op == KL_OP_CONST && n != KILN_DYN)
    for (int64_t j = 0; j < size; j++) {
      int64_t k = kl_load_i64((kiln_dtype)idx->type.dtype, idx->data, j);
      if (k < -n || k >= n)
        return fail(ctx, KILN_SHAPE, "take", x, file, line,
                    "index %lld is out of bounds for axis %d with size %lld", (long long)k, a,
                    (long long)n);
    }
  kl_type t = {.dtype = x->type.dtype, .rank = (uint8_t)r};
  int k = 0;
  for (int d = 0; d < a; d++)
    t.dims[k++] = x->type.dims[d];
  for (int d = 0; d < idx->type.rank; d++)
    t.dims[k++] = idx->type.dims[d];
  for (int d = a + 1; d < x->type.rank; d++)
    t.dims[k++] = x->type.dims[d];
  if (idx->type.weak) idx = kl_cast(idx, KILN_INT64, file, line);
  in[1] = idx;
  kl_params p = {.axis = (int8_t)a};
  return idx ? kl_node_new(ctx, KL_OP_TAKE, 2, in, &t, &p, file, line) : NULL;
}

kiln_node *kiln_take_at(kiln_node *x, kiln_node *idx, int axis, const char *file, int line) {
  return kl_take(x, idx, axis, file, line);
}

kiln_node *kl_take_inc(kiln_node *g, kiln_node *idx, kiln_node *like, int axis, const char *file,
                       int line) {
  kiln_node *in[3] = {g, idx, like};
  kiln_ctx *ctx = kl_common_ctx("inc_take", 3, in);
  if (!ctx) return NULL;
  kl_type t = like->type;
  t.dtype = g->type.dtype;
  t.weak = false;
  kl_params p = {.axis = (int8_t)axis};
  return kl_node_new(ctx, KL_OP_TAKE_INC, 3, in, &t, &p, file, line);
}

/* -------------------------------------------------------------- one_hot */

kiln_node *kiln_one_hot_at(kiln_node *labels, int64_t n_classes, kiln_dtype dtype, const char *file,
                           int line) {
  kiln_ctx *ctx = kl_common_ctx("one_hot", 1, &labels);
  if (!ctx) return NULL;
  if (!kl_dtype_is_int((kiln_dtype)labels->type.dtype))
    return fail(ctx, KILN_TYPE, "one_hot", labels, file, line, "labels must be integers, not %s",
                kiln_dtype_name(labels->type.dtype));
  if (n_classes < 1 || !kl_dtype_valid(dtype))
    return fail(ctx, KILN_MISUSE, "one_hot", labels, file, line,
                n_classes < 1 ? "n_classes is %lld, not positive" : "invalid dtype (classes %lld)",
                (long long)n_classes);
  if (labels->type.rank + 1 > KILN_MAX_RANK)
    return fail(ctx, KILN_TYPE, "one_hot", labels, file, line, "the result would have rank %d",
                labels->type.rank + 1);
  if (labels->type.weak) labels = kl_cast(labels, KILN_INT64, file, line);
  if (!labels) return NULL;
  kl_type t = labels->type;
  t.dtype = (uint8_t)dtype;
  t.dims[t.rank++] = n_classes;
  kl_params p = {.n = n_classes};
  return kl_node_new(ctx, KL_OP_ONE_HOT, 1, &labels, &t, &p, file, line);
}

/* ---------------------------------------------------------- concatenate */

/* numpy's promotion of the operands (NEP 50 for weak literals). */
static kiln_dtype join_dtype(int n, kiln_node *const *xs) {
  kiln_dtype strong = KILN_N_DTYPES;
  bool weak_float = false, any_weak = false;
  for (int i = 0; i < n; i++) {
    kiln_dtype d = (kiln_dtype)xs[i]->type.dtype;
    if (xs[i]->type.weak) {
      any_weak = true;
      weak_float |= d == KILN_FLOAT64;
    } else
      strong = strong == KILN_N_DTYPES ? d : kl_promote(strong, d);
  }
  if (strong == KILN_N_DTYPES) return weak_float ? KILN_FLOAT64 : KILN_INT64;
  if (any_weak && weak_float && !kl_dtype_is_float(strong)) return KILN_FLOAT64;
  if (any_weak && !weak_float && strong == KILN_BOOL) return KILN_INT64;
  return strong;
}

/* a and b (same dtype) joined along axis a_ of the result; bit k of lacks:
** operand k has no such axis (counts as size 1). */
static kiln_node *concat2(kiln_node *a, kiln_node *b, int axis, unsigned lacks, const char *what,
                          const char *file, int line) {
  kiln_node *in[2] = {a, b};
  kl_type t = {.dtype = a->type.dtype};
  int r = a->type.rank + (lacks & 1u ? 1 : 0);
  t.rank = (uint8_t)r;
  int64_t v[2][KILN_MAX_RANK];
  for (int k = 0; k < 2; k++)
    for (int j = 0, s = 0; j < r; j++)
      v[k][j] = (lacks >> k & 1u) && j == axis ? 1 : in[k]->type.dims[s++];
  for (int j = 0; j < r; j++) {
    int64_t x = v[0][j], y = v[1][j];
    if (j == axis) {
      t.dims[j] = x == KILN_DYN || y == KILN_DYN ? KILN_DYN : x + y;
    } else if (x != KILN_DYN && y != KILN_DYN && x != y) {
      char la[256], lb[256];
      kl_error(a->ctx, KILN_SHAPE,
               "%s: sizes %lld and %lld differ along axis %d (the operands must agree off the "
               "joined axis): %s and %s (%s:%d)",
               what, (long long)x, (long long)y, j, kl_node_label(a, la, sizeof la),
               kl_node_label(b, lb, sizeof lb), kl_basename(file), line);
      return NULL;
    } else
      t.dims[j] = x != KILN_DYN ? x : y;
  }
  kl_params p = {.axis = (int8_t)axis, .lacks = (uint8_t)lacks};
  return kl_node_new(a->ctx, KL_OP_CONCAT, 2, in, &t, &p, file, line);
}

static kiln_node *join(int n, kiln_node *const *xs, int axis, bool stack, const char *file,
                       int line) {
  const char *what = stack ? "stack" : "concatenate";
  if (n < 1 || !xs) {
    for (int i = 0; xs && i < n; i++) /* report in some operand's context if we can */
      if (kl_node_ok(xs[i])) kl_error(xs[i]->ctx, KILN_MISUSE, "%s: empty list", what);
    return NULL;
  }
  kiln_ctx *ctx = kl_common_ctx(what, n, xs);
  if (!ctx) return NULL;
  int r = xs[0]->type.rank, rr = stack ? r + 1 : r;
  for (int i = 1; i < n; i++)
    if (xs[i]->type.rank != r)
      return fail(ctx, KILN_TYPE, what, xs[i], file, line,
                  "operand %d has rank %d, operand 0 rank %d", i, xs[i]->type.rank, r);
  if (rr < 1 || rr > KILN_MAX_RANK)
    return fail(ctx, KILN_TYPE, what, xs[0], file, line,
                stack ? "cannot stack tensors of rank %d" : "cannot join tensors of rank %d", r);
  int a = norm_axis(xs[0], axis, rr, what, file, line);
  if (a < 0) return NULL;
  kiln_dtype dt = join_dtype(n, xs);
  kiln_node *acc = kl_cast(xs[0], dt, file, line);
  if (n == 1 && !stack) return acc;
  for (int i = 1; i < n && acc; i++) {
    kiln_node *b = kl_cast(xs[i], dt, file, line);
    if (!b) return NULL;
    unsigned lacks = stack ? (i == 1 ? 3u : 2u) : 0u;
    acc = concat2(acc, b, a, lacks, what, file, line);
  }
  if (n == 1 && acc) { /* stack of one: stack it with itself and keep the first */
    acc = concat2(acc, acc, a, 3u, what, file, line);
    kiln_slice sl[KILN_MAX_RANK];
    for (int d = 0; d < rr; d++)
      sl[d] = d == a ? KILN_SLICE(0, 1, 1) : KILN_ALL;
    acc = acc ? kiln_slice_at(acc, rr, sl, file, line) : NULL;
  }
  return acc;
}

kiln_node *kiln_concatenate_at(int n, kiln_node *const *xs, int axis, const char *file, int line) {
  return join(n, xs, axis, false, file, line);
}

kiln_node *kiln_stack_at(int n, kiln_node *const *xs, int axis, const char *file, int line) {
  return join(n, xs, axis, true, file, line);
}

kiln_node *kl_concat_part(kiln_node *g, kiln_node *like, int axis, int part, bool lacks,
                          const char *file, int line) {
  kiln_node *in[2] = {g, like};
  kiln_ctx *ctx = kl_common_ctx("concat_part", 2, in);
  if (!ctx) return NULL;
  kl_type t = like->type;
  t.dtype = g->type.dtype;
  t.weak = false;
  kl_params p = {.axis = (int8_t)axis, .part = (uint8_t)part, .lacks = lacks};
  return kl_node_new(ctx, KL_OP_CONCAT_PART, 2, in, &t, &p, file, line);
}

/* ----------------------------------------------------------- parameters */

bool kl_index_can_fail(const kiln_node *v) {
  return v->op == KL_OP_TAKE || v->op == KL_OP_TAKE_INC || v->op == KL_OP_ONE_HOT;
}

bool kl_index_shape_only(const kiln_node *v, int k) {
  return (v->op == KL_OP_SLICE_INC && k == 1) || (v->op == KL_OP_TAKE_INC && k == 2) ||
         (v->op == KL_OP_CONCAT_PART && k == 1);
}

const char *kl_index_params_text(const kiln_node *v, char *buf, size_t n) {
  size_t len = 0;
  buf[0] = 0;
#define PUT(...)                                                                                   \
  do {                                                                                             \
    if (len < n) len += (size_t)snprintf(buf + len, n - len, __VA_ARGS__);                         \
  } while (0)
  switch ((kl_opcode)v->op) {
  case KL_OP_SLICE:
  case KL_OP_SLICE_INC: {
    int r = v->in[v->op == KL_OP_SLICE ? 0 : 1]->type.rank;
    for (int d = 0; d < r; d++) {
      const kiln_slice *s = &v->p.slices[d];
      PUT("%s", d ? "," : "");
      if (s->flags & KILN_SLICE_INDEX) {
        PUT("%lld", (long long)s->start);
        continue;
      }
      if (!(s->flags & KILN_SLICE_NO_START)) PUT("%lld", (long long)s->start);
      PUT(":");
      if (!(s->flags & KILN_SLICE_NO_STOP)) PUT("%lld", (long long)s->stop);
      if (s->step != 1) PUT(":%lld", (long long)s->step);
    }
    break;
  }
  case KL_OP_ONE_HOT: PUT("n=%lld", (long long)v->p.n); break;
  case KL_OP_CONCAT:
    PUT("axis=%d", v->p.axis);
    if (v->p.lacks) PUT(",stack=0x%x", v->p.lacks);
    break;
  case KL_OP_CONCAT_PART:
    PUT("axis=%d,part=%d%s", v->p.axis, v->p.part, v->p.lacks ? ",stack" : "");
    break;
  default: PUT("axis=%d", v->p.axis); break;
  }
#undef PUT
  return buf;
}

bool kl_index_same_params(const kiln_node *a, const kiln_node *b) {
  char ta[600], tb[600];
  return strcmp(kl_index_params_text(a, ta, sizeof ta), kl_index_params_text(b, tb, sizeof tb)) ==
         0;
}

uint64_t kl_index_params_hash(const kiln_node *v) {
  char t[600];
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const char *c = kl_index_params_text(v, t, sizeof t); *c; c++)
    h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
  return h;
}
