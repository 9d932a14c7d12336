/*
** index.c -- the run-time side of the indexing ops (compiler/index.c):
** numpy's slice clamping, the shape program's indexing kinds, and the
** message of a step that found an index out of range.
**
** Slices are the one place where a shape depends on more than sizes: the
** first index and length of each sliced axis follow numpy's clamping rules
** from the axis's size, so with a dynamic size they are computed here, at
** call time, and the first indices are stored in the dims array after the
** node's own dims for the step to read. kl_slice_norm is the single
** implementation of those rules: the builder calls it for static sizes and
** the reference evaluator for its operands, so the three cannot disagree.
*/
#include "runtime/plan.h"

#include <stdio.h>
#include <string.h>

bool kl_slice_norm(int64_t n, const kiln_slice *s, int64_t *start, int64_t *len) {
  if (s->flags & KILN_SLICE_INDEX) {
    int64_t i = s->start < 0 ? s->start + n : s->start;
    *start = i;
    *len = -1;
    return i >= 0 && i < n;
  }
  int64_t step = s->step, a, b;
  /* CPython's PySlice_AdjustIndices: negative bounds count from the end,
  ** then clamp to [0, n] (positive step) or [-1, n - 1] (negative step) */
  if (s->flags & KILN_SLICE_NO_START)
    a = step < 0 ? n - 1 : 0;
  else if ((a = s->start) < 0) {
    a += n;
    if (a < 0) a = step < 0 ? -1 : 0;
  } else if (a >= n)
    a = step < 0 ? n - 1 : n;
  if (s->flags & KILN_SLICE_NO_STOP)
    b = step < 0 ? -1 : n;
  else if ((b = s->stop) < 0) {
    b += n;
    if (b < 0) b = step < 0 ? -1 : 0;
  } else if (b >= n)
    b = step < 0 ? n - 1 : n;
  if (step < 0)
    *len = b < a ? (a - b - 1) / -step + 1 : 0;
  else
    *len = a < b ? (b - a - 1) / step + 1 : 0;
  *start = *len > 0 ? a : 0; /* an empty slice reads nothing: any in-range start will do */
  return true;
}

static const int64_t *dims_of(const kl_plan *p, int node) {
  return p->dims + p->shape[node].dims_base;
}

/* The slice of axis sizes sd[0..r-1]: lengths (index axes dropped) into
** out, first indices into starts. */
static kiln_status slice_dims(const kl_shape_op *op, const kl_shape_op *src, const int64_t *sd,
                              int64_t *out, int64_t *starts, char *err, size_t n) {
  for (int a = 0, k = 0; a < src->rank; a++) {
    int64_t len;
    if (!kl_slice_norm(sd[a], &op->slices[a], &starts[a], &len)) {
      char sh[160];
      return kl_fail(err, n, KILN_SHAPE,
                     "%s: index %lld is out of bounds for axis %d with size %lld: %s has shape "
                     "%s, in %s",
                     op->opname, (long long)op->slices[a].start, a, (long long)sd[a], src->label,
                     kl_shape_str(sh, sizeof sh, src->rank, sd), op->label);
    }
    if (len >= 0) out[k++] = len;
  }
  return KILN_OK;
}

static kiln_status mismatch(const kl_plan *p, const kl_shape_op *op, int x, int y, const char *why,
                            char *err, size_t n) {
  char a[160], b[160];
  const kl_shape_op *sx = &p->shape[x], *sy = &p->shape[y];
  return kl_fail(err, n, KILN_SHAPE, "%s: shapes %s and %s %s: %s and %s, in %s", op->opname,
                 kl_shape_str(a, sizeof a, sx->rank, dims_of(p, x)),
                 kl_shape_str(b, sizeof b, sy->rank, dims_of(p, y)), why, sx->label, sy->label,
                 op->label);
}

kiln_status kl_index_shape(kl_plan *p, const kl_shape_op *op, int64_t *d, char *err, size_t n) {
  int a = (int)op->mask;
  switch ((kl_shape_kind)op->kind) {
  case KL_SH_SLICE:
    return slice_dims(op, &p->shape[op->in[0]], dims_of(p, op->in[0]), d, d + op->rank, err, n);
  case KL_SH_SLICE_INC: {
    int64_t want[KILN_MAX_RANK];
    const kl_shape_op *g = &p->shape[op->in[0]];
    const int64_t *gd = dims_of(p, op->in[0]), *like = dims_of(p, op->in[1]);
    memcpy(d, like, op->rank * sizeof *d);
    kiln_status st = slice_dims(op, &p->shape[op->in[1]], like, want, d + op->rank, err, n);
    if (st != KILN_OK) return st;
    for (int j = 0; j < g->rank; j++)
      if (gd[j] != want[j])
        return mismatch(p, op, op->in[0], op->in[1], "do not fit the slice", err, n);
    return KILN_OK;
  }
  case KL_SH_TAKE: {
    const kl_shape_op *x = &p->shape[op->in[0]], *ix = &p->shape[op->in[1]];
    const int64_t *xd = dims_of(p, op->in[0]), *id = dims_of(p, op->in[1]);
    int k = 0;
    for (int j = 0; j < a; j++)
      d[k++] = xd[j];
    for (int j = 0; j < ix->rank; j++)
      d[k++] = id[j];
    for (int j = a + 1; j < x->rank; j++)
      d[k++] = xd[j];
    return KILN_OK;
  }
  case KL_SH_TAKE_INC: {
    const kl_shape_op *g = &p->shape[op->in[0]], *ix = &p->shape[op->in[1]];
    const int64_t *gd = dims_of(p, op->in[0]), *id = dims_of(p, op->in[1]);
    const int64_t *like = dims_of(p, op->in[2]);
    memcpy(d, like, op->rank * sizeof *d);
    bool ok = g->rank == op->rank - 1 + ix->rank;
    for (int j = 0; ok && j < g->rank; j++) {
      int64_t w = j < a ? like[j] : j < a + ix->rank ? id[j - a] : like[j - ix->rank + 1];
      ok = gd[j] == w;
    }
    return ok ? KILN_OK : mismatch(p, op, op->in[0], op->in[2], "do not fit the take", err, n);
  }
  case KL_SH_ONEHOT:
    memcpy(d, dims_of(p, op->in[0]), (op->rank - 1) * sizeof *d);
    d[op->rank - 1] = op->fixed[op->rank - 1];
    return KILN_OK;
  case KL_SH_CONCAT: {
    /* both operands seen with the axis (size 1 where an operand lacks it) */
    int64_t v[2][KILN_MAX_RANK];
    for (int k = 0; k < 2; k++) {
      const int64_t *s = dims_of(p, op->in[k]);
      bool lacks = op->flags >> k & 1u;
      for (int j = 0, t = 0; j < op->rank; j++)
        v[k][j] = lacks && j == a ? 1 : s[t++];
    }
    for (int j = 0; j < op->rank; j++) {
      if (j != a && v[0][j] != v[1][j])
        return mismatch(p, op, op->in[0], op->in[1], "differ off the joined axis", err, n);
      d[j] = j == a ? v[0][j] + v[1][j] : v[0][j];
    }
    return KILN_OK;
  }
  case KL_SH_PART: {
    const int64_t *gd = dims_of(p, op->in[0]), *like = dims_of(p, op->in[1]);
    bool lacks = op->flags & 1u, ok = true;
    memcpy(d, like, op->rank * sizeof *d);
    for (int j = 0, t = 0; j < p->shape[op->in[0]].rank && ok; j++) {
      if (j == a && lacks) {
        ok = gd[j] >= 1;
        continue;
      }
      ok = j == a ? gd[j] >= like[t] : gd[j] == like[t];
      t++;
    }
    return ok ? KILN_OK : mismatch(p, op, op->in[0], op->in[1], "do not fit", err, n);
  }
  default: break;
  }
  return kl_fail(err, n, KILN_INTERNAL, "internal: %s: not an indexing shape kind (%s:%d)",
                 op->label, __FILE__, __LINE__);
}

kiln_status kl_index_step_error(const kl_plan *p, char *err, size_t n) {
  int64_t node = p->step_err[0], val = p->step_err[1], size = p->step_err[2];
  if (node < 0 || node >= p->n_nodes)
    return kl_fail(err, n, KILN_INTERNAL, "internal: the step failed without a record (%s:%d)",
                   __FILE__, __LINE__);
  const kl_shape_op *op = &p->shape[node];
  if (p->step_err[3] == 1)
    return kl_fail(err, n, KILN_SHAPE, "%s: label %lld is outside [0, %lld): %s, in %s", op->opname,
                   (long long)val, (long long)size, p->shape[op->in[0]].label, op->label);
  return kl_fail(err, n, KILN_SHAPE,
                 "%s: index %lld is out of bounds for axis %d with size %lld (indices %s), in %s",
                 op->opname, (long long)val, (int)op->mask, (long long)size,
                 p->shape[op->in[1]].label, op->label);
}
