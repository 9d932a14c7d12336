/*
** eval_index.c -- reference evaluation of the indexing ops (see
** compiler/index.c), in plain C over contiguous arrays.
**
** take, inc_take, concatenate and concat_part view their operands as
** (P, middle, S) blocks: P the product of the sizes before the axis, S of
** those after it, so an element is data[(p * middle + i) * S + s]. take
** checks its indices in the order (p, j) before copying each block --
** numpy's order, which also checks nothing when P is 0 -- and the JIT
** checks in the same order, so both report the same first bad index.
*/
#include "compiler/graph.h"

#include <stdio.h>
#include <string.h>

static int64_t prod(const int64_t *d, int from, int to) {
  int64_t n = 1;
  for (int i = from; i < to; i++)
    n *= d[i];
  return n;
}

static bool next_index(int rank, const int64_t *shape, int64_t *idx) {
  for (int i = rank - 1; i >= 0; i--) {
    if (++idx[i] < shape[i]) return true;
    idx[i] = 0;
  }
  return false;
}

static void copy1(kiln_dtype dt, void *dst, int64_t j, const void *src, int64_t i) {
  size_t w = kiln_dtype_size(dt);
  memcpy((char *)dst + (size_t)j * w, (const char *)src + (size_t)i * w, w);
}

/* dst[j] += src[i] in dtype dt (float32 in float, integers wrapping). */
static void add1(kiln_dtype dt, void *dst, int64_t j, const void *src, int64_t i) {
  if (dt == KILN_FLOAT64)
    ((double *)dst)[j] = ((double *)dst)[j] + ((const double *)src)[i];
  else if (dt == KILN_FLOAT32)
    ((float *)dst)[j] = ((float *)dst)[j] + ((const float *)src)[i];
  else {
    int64_t s = (int64_t)((uint64_t)kl_load_i64(dt, dst, j) + (uint64_t)kl_load_i64(dt, src, i));
    kl_convert(dt, dst, j, KILN_INT64, &s, 0);
  }
}

/* The slice of shape (rank r) by slices: output shape, first indices and
** per-axis source steps (0 for integer indices). */
static kiln_status slice_plan(const kiln_node *v, int r, const int64_t *shape, int64_t *out_shape,
                              int *out_rank, int64_t *start, char *err, size_t errn) {
  int k = 0;
  for (int d = 0; d < r; d++) {
    int64_t len;
    if (!kl_slice_norm(shape[d], &v->p.slices[d], &start[d], &len)) {
      snprintf(err, errn, "%s: index %lld is out of bounds for axis %d with size %lld",
               kl_ops[v->op].name, (long long)v->p.slices[d].start, d, (long long)shape[d]);
      return KILN_SHAPE;
    }
    if (len >= 0) out_shape[k++] = len;
  }
  *out_rank = k;
  return KILN_OK;
}

/* Offset in a contiguous tensor of shape (rank r) of the slice element at
** index o (over the slice's own axes). */
static int64_t slice_offset(const kiln_node *v, int r, const int64_t *shape, const int64_t *start,
                            const int64_t *o) {
  int64_t off = 0, st = 1, pos[KILN_MAX_RANK];
  for (int d = 0, k = 0; d < r; d++) {
    const kiln_slice *s = &v->p.slices[d];
    pos[d] = (s->flags & KILN_SLICE_INDEX) ? start[d] : start[d] + o[k++] * s->step;
  }
  for (int d = r - 1; d >= 0; d--) {
    off += pos[d] * st;
    st *= shape[d];
  }
  return off;
}

static kiln_status eval_slice(const kiln_node *v, const kiln_tensor *x, const kiln_tensor *g,
                              kiln_tensor *out, char *err, size_t errn) {
  kiln_dtype dt = (kiln_dtype)v->type.dtype;
  int64_t sh[KILN_MAX_RANK] = {0}, start[KILN_MAX_RANK] = {0};
  int r;
  kiln_status st = slice_plan(v, x->rank, x->shape, sh, &r, start, err, errn);
  if (st != KILN_OK) return st;
  if (g) {
    bool same = g->rank == r;
    for (int d = 0; same && d < r; d++)
      same = g->shape[d] == sh[d];
    if (!same) {
      snprintf(err, errn, "inc_slice: the gradient does not have the slice's shape");
      return KILN_SHAPE;
    }
    if (kl_tensor_reshape(out, dt, x->rank, x->shape) != KILN_OK) return KILN_NOMEM;
    memset(out->data, 0, kl_tensor_nbytes(out));
  } else if (kl_tensor_reshape(out, dt, r, sh) != KILN_OK)
    return KILN_NOMEM;
  if (prod(sh, 0, r) == 0) return KILN_OK;
  int64_t o[KILN_MAX_RANK] = {0}, j = 0;
  do {
    int64_t off = slice_offset(v, x->rank, x->shape, start, o);
    if (g)
      copy1(dt, out->data, off, g->data, j);
    else
      copy1(dt, out->data, j, x->data, off);
    j++;
  } while (next_index(r, sh, o));
  return KILN_OK;
}

static kiln_status bad_index(const kiln_node *v, int64_t k, int64_t n, char *err, size_t errn) {
  snprintf(err, errn, "%s: index %lld is out of bounds for axis %d with size %lld",
           kl_ops[v->op].name, (long long)k, v->p.axis, (long long)n);
  return KILN_SHAPE;
}

/* take (g NULL): out = x taken along the axis; inc_take: out = zeros of
** x's shape (x is the like operand) with g added at the indices. */
static kiln_status eval_take(const kiln_node *v, const kiln_tensor *x, const kiln_tensor *idx,
                             const kiln_tensor *g, kiln_tensor *out, char *err, size_t errn) {
  kiln_dtype dt = (kiln_dtype)v->type.dtype, it = (kiln_dtype)idx->dtype;
  int a = v->p.axis;
  int64_t P = prod(x->shape, 0, a), n = x->shape[a], S = prod(x->shape, a + 1, x->rank);
  int64_t M = idx->size;
  if (g) {
    if (kl_tensor_reshape(out, dt, x->rank, x->shape) != KILN_OK) return KILN_NOMEM;
    memset(out->data, 0, kl_tensor_nbytes(out));
  } else {
    int64_t sh[KILN_MAX_RANK];
    int r = 0;
    for (int d = 0; d < a; d++)
      sh[r++] = x->shape[d];
    for (int d = 0; d < idx->rank; d++)
      sh[r++] = idx->shape[d];
    for (int d = a + 1; d < x->rank; d++)
      sh[r++] = x->shape[d];
    if (kl_tensor_reshape(out, dt, r, sh) != KILN_OK) return KILN_NOMEM;
  }
  for (int64_t p = 0; p < P; p++)
    for (int64_t j = 0; j < M; j++) {
      int64_t k = kl_load_i64(it, idx->data, j);
      if (k < -n || k >= n) return bad_index(v, k, n, err, errn);
      if (k < 0) k += n;
      for (int64_t s = 0; s < S; s++) {
        int64_t xo = (p * n + k) * S + s, oo = (p * M + j) * S + s;
        if (g)
          add1(dt, out->data, xo, g->data, oo);
        else
          copy1(dt, out->data, oo, x->data, xo);
      }
    }
  return KILN_OK;
}

static kiln_status eval_one_hot(const kiln_node *v, const kiln_tensor *lab, kiln_tensor *out,
                                char *err, size_t errn) {
  kiln_dtype dt = (kiln_dtype)v->type.dtype;
  int64_t sh[KILN_MAX_RANK], n = v->p.n;
  memcpy(sh, lab->shape, lab->rank * sizeof *sh);
  sh[lab->rank] = n;
  if (kl_tensor_reshape(out, dt, lab->rank + 1, sh) != KILN_OK) return KILN_NOMEM;
  for (int64_t j = 0; j < lab->size; j++) {
    int64_t k = kl_load_i64((kiln_dtype)lab->dtype, lab->data, j);
    if (k < 0 || k >= n) {
      snprintf(err, errn, "one_hot: label %lld is outside [0, %lld)", (long long)k, (long long)n);
      return KILN_SHAPE;
    }
    for (int64_t c = 0; c < n; c++) {
      int64_t one = c == k;
      kl_convert(dt, out->data, j * n + c, KILN_INT64, &one, 0);
    }
  }
  return KILN_OK;
}

/* An operand's sizes seen with the axis (size 1 if it lacks it). */
static void with_axis(const kiln_tensor *t, bool lacks, int axis, int r, int64_t *d) {
  for (int j = 0, s = 0; j < r; j++)
    d[j] = lacks && j == axis ? 1 : t->shape[s++];
}

static kiln_status eval_concat(const kiln_node *v, const kiln_tensor *a, const kiln_tensor *b,
                               kiln_tensor *out, char *err, size_t errn) {
  kiln_dtype dt = (kiln_dtype)v->type.dtype;
  int r = v->type.rank, ax = v->p.axis;
  int64_t va[KILN_MAX_RANK], vb[KILN_MAX_RANK], sh[KILN_MAX_RANK];
  with_axis(a, v->p.lacks & 1u, ax, r, va);
  with_axis(b, v->p.lacks & 2u, ax, r, vb);
  for (int j = 0; j < r; j++) {
    if (j != ax && va[j] != vb[j]) {
      snprintf(err, errn, "concatenate: the operands differ along axis %d", j);
      return KILN_SHAPE;
    }
    sh[j] = j == ax ? va[j] + vb[j] : va[j];
  }
  if (kl_tensor_reshape(out, dt, r, sh) != KILN_OK) return KILN_NOMEM;
  int64_t P = prod(sh, 0, ax), S = prod(sh, ax + 1, r), na = va[ax], nb = vb[ax];
  for (int64_t p = 0; p < P; p++)
    for (int64_t i = 0; i < na + nb; i++)
      for (int64_t s = 0; s < S; s++) {
        int64_t o = (p * (na + nb) + i) * S + s;
        if (i < na)
          copy1(dt, out->data, o, a->data, (p * na + i) * S + s);
        else
          copy1(dt, out->data, o, b->data, (p * nb + i - na) * S + s);
      }
  return KILN_OK;
}

static kiln_status eval_part(const kiln_node *v, const kiln_tensor *g, const kiln_tensor *like,
                             kiln_tensor *out, char *err, size_t errn) {
  kiln_dtype dt = (kiln_dtype)v->type.dtype;
  int ax = v->p.axis, r = g->rank;
  int64_t vl[KILN_MAX_RANK];
  with_axis(like, v->p.lacks, ax, r, vl);
  int64_t m = vl[ax], ng = g->shape[ax], off = v->p.part ? ng - m : 0;
  if (off < 0) {
    snprintf(err, errn, "concat_part: the gradient is shorter than the part");
    return KILN_SHAPE;
  }
  if (kl_tensor_reshape(out, dt, like->rank, like->shape) != KILN_OK) return KILN_NOMEM;
  int64_t P = prod(g->shape, 0, ax), S = prod(g->shape, ax + 1, r);
  for (int64_t p = 0; p < P; p++)
    for (int64_t i = 0; i < m; i++)
      for (int64_t s = 0; s < S; s++)
        copy1(dt, out->data, (p * m + i) * S + s, g->data, (p * ng + off + i) * S + s);
  return KILN_OK;
}

kiln_status kl_eval_index(const kiln_node *v, const kiln_tensor *const *in, kiln_tensor *out,
                          char *err, size_t errn) {
  switch ((kl_opcode)v->op) {
  case KL_OP_SLICE: return eval_slice(v, in[0], NULL, out, err, errn);
  case KL_OP_SLICE_INC: return eval_slice(v, in[1], in[0], out, err, errn);
  case KL_OP_TAKE: return eval_take(v, in[0], in[1], NULL, out, err, errn);
  case KL_OP_TAKE_INC: return eval_take(v, in[2], in[1], in[0], out, err, errn);
  case KL_OP_ONE_HOT: return eval_one_hot(v, in[0], out, err, errn);
  case KL_OP_CONCAT: return eval_concat(v, in[0], in[1], out, err, errn);
  case KL_OP_CONCAT_PART: return eval_part(v, in[0], in[1], out, err, errn);
  default: break;
  }
  snprintf(err, errn, "internal: %s is not an indexing op", kl_ops[v->op].name);
  return KILN_INTERNAL;
}
