/*
** call.c -- one call of a compiled function:
**   check inputs -> compute every node's shape -> size the workspace and
**   outputs -> run the native step -> commit updates.
** A call whose inputs have the shapes of the last successful one skips the
** shape program and buffer placement: only the inputs' pointers change.
** Everything that can fail happens before the step runs, except an index
** out of range (take, one_hot), which the step reports by returning early;
** the in-place pass never lets a step write a variable before a node that
** can fail, so a failed call never touches a shared variable.
** Updates are computed into workspace slots and copied into the shared
** variables only after the step returned.
*/
#include "runtime/plan.h"

#include <stdio.h>
#include <string.h>

static kiln_status check_inputs(kl_plan *p, const kiln_tensor *const *in, char *err, size_t n) {
  char a[160], b[160];
  if (p->n_inputs > 0 && !in) {
    snprintf(err, n, "call: inputs is NULL but the function takes %d", p->n_inputs);
    return KILN_MISUSE;
  }
  for (int i = 0; i < p->n_inputs; i++) {
    const kl_input_spec *s = &p->inputs[i];
    const kiln_tensor *t = in[i];
    if (!kl_tensor_ok(t)) {
      snprintf(err, n, "call: input %d, %s, is not a valid tensor", i, s->label);
      return KILN_MISUSE;
    }
    if (t->dtype != s->dtype || t->rank != s->rank) {
      snprintf(err, n, "call: input %d, %s, expects %s %s, got %s %s", i, s->label,
               kiln_dtype_name(s->dtype), kl_shape_str(a, sizeof a, s->rank, s->dims),
               kiln_dtype_name(t->dtype), kl_shape_str(b, sizeof b, t->rank, t->shape));
      return KILN_TYPE;
    }
    for (int d = 0; d < s->rank; d++)
      if (s->dims[d] != KILN_DYN && s->dims[d] != t->shape[d]) {
        snprintf(err, n, "call: input %d, %s, expects shape %s, got %s", i, s->label,
                 kl_shape_str(a, sizeof a, s->rank, s->dims),
                 kl_shape_str(b, sizeof b, t->rank, t->shape));
        return KILN_SHAPE;
      }
  }
  return KILN_OK;
}

static const int64_t *dims_of(const kl_plan *p, int node) {
  return p->dims + p->shape[node].dims_base;
}

static kiln_status pair_error(kl_plan *p, const kl_shape_op *op, int x, int y, const char *why,
                              char *err, size_t n) {
  char a[160], b[160];
  const kl_shape_op *sx = &p->shape[x], *sy = &p->shape[y];
  snprintf(err, n, "%s: shapes %s and %s %s: %s and %s, in %s", op->opname,
           kl_shape_str(a, sizeof a, sx->rank, dims_of(p, x)),
           kl_shape_str(b, sizeof b, sy->rank, dims_of(p, y)), why, sx->label, sy->label,
           op->label);
  return KILN_SHAPE;
}

/* The dims of a dimshuffle or a reshape (see kl_shape_kind). A reshape
** whose element count differs from its operand's is the user's error,
** found here before the step runs, so the call commits nothing. */
static kiln_status shape_op_dims(kl_plan *p, const kl_shape_op *op, int64_t *d, char *err,
                                 size_t n) {
  const kl_shape_op *s = &p->shape[op->in[0]];
  const int64_t *sd = dims_of(p, op->in[0]), *ld = dims_of(p, op->in[op->n_in - 1]);
  char a[160], b[160];
  int R = op->rank;
  if (op->kind == KL_SH_SHUFFLE) {
    bool kept[KILN_MAX_RANK] = {false};
    for (int j = 0; j < R; j++) {
      d[j] = op->src_axis[j] >= 0 ? sd[op->src_axis[j]] : 1;
      if (op->src_axis[j] >= 0) kept[op->src_axis[j]] = true;
    }
    for (int k = 0; k < s->rank; k++)
      if (!kept[k] && sd[k] != 1) {
        snprintf(err, n, "%s: drops axis %d of %s, which has shape %s (only size 1 can go), in %s",
                 op->opname, k, s->label, kl_shape_str(a, sizeof a, s->rank, sd), op->label);
        return KILN_SHAPE;
      }
    return KILN_OK;
  }
  int64_t total = 1, known = 1;
  int infer = -1;
  bool overflow = false;
  for (int k = 0; k < s->rank; k++)
    overflow |= __builtin_mul_overflow(total, sd[k], &total);
  for (int j = 0; j < R; j++) {
    d[j] = op->fixed[j] != KILN_DYN ? op->fixed[j]
           : op->src_axis[j] >= 0   ? ld[op->src_axis[j]]
                                    : -1;
    if (d[j] < 0)
      infer = j;
    else
      overflow |= __builtin_mul_overflow(known, d[j], &known);
  }
  bool ok = !overflow && (infer >= 0 ? known != 0 && total % known == 0 : known == total);
  if (!ok) {
    /* the new shape as requested, -1 where inferred */
    size_t len = (size_t)snprintf(b, sizeof b, "(");
    for (int j = 0; j < R && len < sizeof b; j++)
      len += (size_t)snprintf(b + len, sizeof b - len, "%s%lld", j ? ", " : "", (long long)d[j]);
    if (len < sizeof b) snprintf(b + len, sizeof b - len, "%s)", R == 1 ? "," : "");
    snprintf(err, n, "%s: cannot reshape %s of shape %s (%lld elements) into shape %s, in %s",
             op->opname, s->label, kl_shape_str(a, sizeof a, s->rank, sd),
             (long long)(overflow ? -1 : total), b, op->label);
    return KILN_SHAPE;
  }
  if (infer >= 0) d[infer] = total / known;
  return KILN_OK;
}

static kiln_status infer_shapes(kl_plan *p, const kiln_tensor *const *in, char *err, size_t n) {
  for (int i = 0; i < p->n_nodes; i++) {
    const kl_shape_op *op = &p->shape[i];
    int64_t *d = p->dims + op->dims_base;
    int R = op->rank;
    switch ((kl_shape_kind)op->kind) {
    case KL_SH_INPUT: memcpy(d, in[op->src]->shape, R * sizeof *d); break;
    case KL_SH_FIXED: memcpy(d, op->fixed, R * sizeof *d); break;
    case KL_SH_SCALAR: break;
    case KL_SH_ELEM:
      for (int j = 0; j < R; j++)
        d[j] = 1;
      for (int k = 0; k < op->n_in; k++) {
        const kl_shape_op *s = &p->shape[op->in[k]];
        const int64_t *sd = dims_of(p, op->in[k]);
        for (int j = 0; j < s->rank; j++) {
          int64_t *o = &d[j + R - s->rank];
          if (sd[j] == *o || sd[j] == 1) continue;
          if (*o != 1) {
            /* find the earlier operand that set this size */
            int q = 0;
            for (; q < k; q++) {
              const kl_shape_op *t = &p->shape[op->in[q]];
              int jj = j + R - s->rank - (R - t->rank);
              if (jj >= 0 && dims_of(p, op->in[q])[jj] == *o) break;
            }
            return pair_error(p, op, op->in[q < k ? q : 0], op->in[k], "cannot be broadcast", err,
                              n);
          }
          *o = sd[j];
        }
      }
      break;
    case KL_SH_BCAST: {
      const int64_t *g = dims_of(p, op->in[0]), *like = dims_of(p, op->in[1]);
      memcpy(d, like, R * sizeof *d);
      for (int j = 0, k = 0; j < R; j++) {
        if (op->mask >> j & 1u) continue;
        if (g[k] != 1 && g[k] != like[j])
          return pair_error(p, op, op->in[0], op->in[1], "cannot be broadcast", err, n);
        k++;
      }
      break;
    }
    case KL_SH_REDUCE: {
      const kl_shape_op *s = &p->shape[op->in[0]];
      const int64_t *sd = dims_of(p, op->in[0]);
      for (int j = 0, k = 0; j < s->rank; j++) {
        if (!(op->mask >> j & 1u)) {
          d[k++] = sd[j];
          continue;
        }
        if ((op->flags & KL_SHF_NONEMPTY) && sd[j] == 0) {
          char a[160];
          snprintf(err, n,
                   "%s: cannot reduce over axis %d of size 0 (the reduction has no identity): "
                   "%s has shape %s, in %s",
                   op->opname, j, s->label, kl_shape_str(a, sizeof a, s->rank, sd), op->label);
          return KILN_SHAPE;
        }
        if (op->flags & KL_SHF_KEEPDIMS) d[k++] = 1;
      }
      break;
    }
    case KL_SH_LIKE: {
      const kl_shape_op *s = &p->shape[op->in[0]];
      const int64_t *g = dims_of(p, op->in[0]), *like = dims_of(p, op->in[1]);
      memcpy(d, like, R * sizeof *d);
      for (int j = 0; j < R; j++) {
        int64_t gd = g[j + s->rank - R];
        if (like[j] != 1 && like[j] != gd)
          return pair_error(p, op, op->in[0], op->in[1], "cannot be summed to fit", err, n);
      }
      break;
    }
    case KL_SH_DOT: {
      const kl_shape_op *sa = &p->shape[op->in[0]], *sb = &p->shape[op->in[1]];
      const int64_t *a = dims_of(p, op->in[0]), *b = dims_of(p, op->in[1]);
      if (op->flags & KL_SHF_OUTER) {
        d[0] = a[0];
        d[1] = b[0];
        break;
      }
      /* the last two axes of a rank-2 or rank-3 operand are a matrix */
      bool ta = op->flags & 1, tb = op->flags & 2;
      const int64_t *ma = a + (sa->rank == 3), *mb = b + (sb->rank == 3);
      int64_t ka = sa->rank == 1 ? a[0] : ma[ta ? 0 : 1];
      int64_t kb = sb->rank == 1 ? b[0] : mb[tb ? 1 : 0];
      if (ka != kb)
        return pair_error(p, op, op->in[0], op->in[1], "have different inner sizes", err, n);
      int r = 0;
      if (sa->rank == 3 && sb->rank == 3 && a[0] != b[0])
        return pair_error(p, op, op->in[0], op->in[1], "have different batch sizes", err, n);
      if (sa->rank == 3 || sb->rank == 3) d[r++] = sa->rank == 3 ? a[0] : b[0];
      if (sa->rank >= 2) d[r++] = ma[ta ? 1 : 0];
      if (sb->rank >= 2) d[r++] = mb[tb ? 0 : 1];
      break;
    }
    case KL_SH_SHUFFLE:
    case KL_SH_RESHAPE: {
      kiln_status st = shape_op_dims(p, op, d, err, n);
      if (st != KILN_OK) return st;
      break;
    }
    case KL_SH_SLICE:
    case KL_SH_SLICE_INC:
    case KL_SH_TAKE:
    case KL_SH_TAKE_INC:
    case KL_SH_ONEHOT:
    case KL_SH_CONCAT:
    case KL_SH_PART: {
      kiln_status st = kl_index_shape(p, op, d, err, n);
      if (st != KILN_OK) return st;
      break;
    }
    }
    for (int j = 0; j < R; j++)
      if (op->fixed[j] != KILN_DYN && op->fixed[j] != d[j]) {
        char a[160];
        snprintf(err, n, "internal: %s: run-time shape %s contradicts its static type (%s:%d)",
                 op->label, kl_shape_str(a, sizeof a, R, d), __FILE__, __LINE__);
        return KILN_INTERNAL;
      }
  }
  for (int u = 0; u < p->n_updates; u++) {
    const kl_update_spec *s = &p->updates[u];
    const kl_shape_op *op = &p->shape[s->node];
    const int64_t *d = dims_of(p, s->node);
    bool same = op->rank == s->target->rank;
    for (int j = 0; same && j < op->rank; j++)
      same = d[j] == s->target->shape[j];
    if (!same) {
      char a[160], b[160];
      snprintf(err, n, "update of %s: the new value has shape %s, the variable %s; the value is %s",
               s->label, kl_shape_str(a, sizeof a, op->rank, d),
               kl_shape_str(b, sizeof b, s->target->rank, s->target->shape), op->label);
      return KILN_SHAPE;
    }
  }
  return KILN_OK;
}

static size_t node_bytes(const kl_plan *p, int node, int dtype) {
  const kl_shape_op *op = &p->shape[node];
  int64_t size = kl_shape_size(op->rank, dims_of(p, node), kiln_dtype_size(dtype));
  return size < 0 ? SIZE_MAX : (size_t)size * kiln_dtype_size(dtype);
}

/* Does input t share memory with what the step writes: an output of this
** function (the caller may pass an output of the last call back in), or a
** shared variable updated in place (its kiln_shared_value)? The step's
** buffers are noalias, and an output written while the input is still being
** read would give other results. */
static bool overlaps(const void *a, size_t an, const void *b, size_t bn) {
  const char *pa = a, *pb = b;
  return an && bn && pa < pb + bn && pb < pa + an;
}

static bool written_by_step(const kl_plan *p, const kiln_tensor *t) {
  size_t n = kl_tensor_nbytes(t);
  for (int k = 0; k < p->n_outputs; k++)
    if (t == &p->outputs[k] || overlaps(t->data, n, p->outputs[k].data, p->outputs[k].cap))
      return true;
  for (int u = 0; u < p->n_updates; u++) {
    const kiln_tensor *v = p->updates[u].target;
    if (p->updates[u].buf < 0 && (t == v || overlaps(t->data, n, v->data, v->cap))) return true;
  }
  return false;
}

/* Where the step reads each input: its own data, or (when the step writes
** that memory) a copy made here, before anything is written or reshaped. */
static kiln_status stage_inputs(kl_plan *p, const kiln_tensor *const *in, char *err, size_t n) {
  if (!p->in_ptr && p->n_inputs > 0) {
    p->in_ptr = kl_calloc((size_t)p->n_inputs, sizeof *p->in_ptr);
    if (!p->in_ptr) {
      snprintf(err, n, "call: out of memory");
      return KILN_NOMEM;
    }
  }
  for (int i = 0; i < p->n_inputs; i++) {
    const kiln_tensor *t = in[i];
    p->in_ptr[i] = t->data;
    if (!written_by_step(p, t)) continue;
    size_t bytes = kl_tensor_nbytes(t);
    if (!p->stage) {
      p->stage = kl_calloc((size_t)p->n_inputs, sizeof *p->stage);
      p->stage_cap = kl_calloc((size_t)p->n_inputs, sizeof *p->stage_cap);
      if (!p->stage || !p->stage_cap) {
        kl_free(p->stage);
        kl_free(p->stage_cap);
        p->stage = NULL;
        p->stage_cap = NULL;
        snprintf(err, n, "call: out of memory");
        return KILN_NOMEM;
      }
    }
    if (bytes > p->stage_cap[i]) {
      void *c = kl_aligned_alloc(bytes);
      if (!c) {
        snprintf(err, n, "call: out of memory copying input %d, %s", i, p->inputs[i].label);
        return KILN_NOMEM;
      }
      kl_aligned_free(p->stage[i]);
      p->stage[i] = c;
      p->stage_cap[i] = bytes;
    }
    memcpy(p->stage[i], t->data, bytes);
    p->in_ptr[i] = p->stage[i];
  }
  return KILN_OK;
}

/* Bytes of the partial lanes the blocked float sum i keeps while the pool
** computes its chunks (compiler/llvm/backend.c, emit_sum_par): one vector
** of KL_SUM_LANES per chunk of every row whose blocked part (the last
** axis, rounded down to a multiple of KL_SUM_LANES) is longer than
** KL_SUM_CHUNK; SIZE_MAX if that overflows. */
static size_t partials_bytes(const kl_plan *p, int i) {
  const kl_shape_op *op = &p->shape[i];
  if (!(op->flags & KL_SHF_PARTIALS)) return 0;
  const kl_shape_op *s = &p->shape[op->in[0]];
  const int64_t *sd = dims_of(p, op->in[0]);
  int64_t cut = sd[s->rank - 1] / KL_SUM_LANES * KL_SUM_LANES;
  if (cut <= KL_SUM_CHUNK) return 0;
  uint64_t v = (uint64_t)((cut + KL_SUM_CHUNK - 1) / KL_SUM_CHUNK) * KL_SUM_LANES *
               kiln_dtype_size((kiln_dtype)p->shape_dtype[op->in[0]]);
  for (int d = 0; d < s->rank - 1; d++)
    if (__builtin_mul_overflow(v, (uint64_t)sd[d], &v)) return SIZE_MAX;
  return v > SIZE_MAX / 2 ? SIZE_MAX : (size_t)v;
}

/* Sizes the workspace and the outputs and points every buffer; the inputs
** are placed through in_ptr (stage_inputs). */
static kiln_status place_buffers(kl_plan *p, char *err, size_t n) {
  size_t total = 0, partials = 0;
  for (int i = 0; i < p->n_nodes; i++) {
    size_t b = partials_bytes(p, i);
    if (b > partials) partials = b;
  }
  for (int b = 0; b < p->n_bufs; b++) {
    const kl_buf *bf = &p->bufs[b];
    if (bf->kind != KL_BUF_WORK) continue;
    size_t bytes = 0;
    for (int j = 0; j < bf->n_nodes; j++) {
      size_t b2 = node_bytes(p, bf->nodes[j], p->shape_dtype[bf->nodes[j]]);
      if (b2 > bytes) bytes = b2;
    }
    size_t rounded = (bytes + KL_ALIGN - 1) / KL_ALIGN * KL_ALIGN;
    if (bytes == SIZE_MAX || rounded < bytes || total + rounded < total) {
      snprintf(err, n, "call: the workspace would exceed the address space");
      return KILN_NOMEM;
    }
    p->offsets[b] = total;
    total += rounded;
  }
  size_t at = total; /* the partials area: one at a time, sums run one after another */
  if (partials == SIZE_MAX || total + partials < total) {
    snprintf(err, n, "call: the workspace would exceed the address space");
    return KILN_NOMEM;
  }
  total += partials;
  if (total > p->work_cap || !p->work) {
    void *w = kl_aligned_alloc(total);
    if (!w) {
      snprintf(err, n, "call: out of memory allocating a %zu-byte workspace", total);
      return KILN_NOMEM;
    }
    kl_aligned_free(p->work);
    p->work = w;
    p->work_cap = total;
  }
  for (int k = 0; k < p->n_outputs; k++) {
    const kl_shape_op *op = &p->shape[p->output_node[k]];
    kiln_tensor *t = &p->outputs[k];
    if (kl_tensor_reshape(t, (kiln_dtype)t->dtype, op->rank, dims_of(p, p->output_node[k])) !=
        KILN_OK) {
      snprintf(err, n, "call: out of memory allocating output %d", k);
      return KILN_NOMEM;
    }
  }
  for (int b = 0; b < p->n_bufs; b++) {
    const kl_buf *bf = &p->bufs[b];
    switch ((kl_buf_kind)bf->kind) {
    case KL_BUF_INPUT: p->ptrs[b] = p->in_ptr[bf->src]; break;
    case KL_BUF_SHARED: p->ptrs[b] = bf->shared->data; break;
    case KL_BUF_CONST: p->ptrs[b] = bf->data; break;
    case KL_BUF_OUTPUT: p->ptrs[b] = p->outputs[bf->src].data; break;
    case KL_BUF_WORK: p->ptrs[b] = (char *)p->work + p->offsets[b]; break;
    }
  }
  p->ptrs[p->n_bufs] = (char *)p->work + at;
  return KILN_OK;
}

/* The repeated-shape path: do the inputs have the dtypes, ranks and sizes
** of the last successful call? Then every shape, size and pointer is still
** valid but the inputs' own, which are re-pointed here (an input's buffer
** is the caller's tensor). The seed step runs in a few nanoseconds, so this
** is one pass over the inputs and nothing else. */
static bool rerun(kl_plan *p, const kiln_tensor *const *in) {
  if (!p->warm || (p->n_inputs > 0 && !in)) return false;
  const int64_t *last = p->last_dims;
  for (int i = 0; i < p->n_inputs; i++, last += KILN_MAX_RANK) {
    const kiln_tensor *t = in[i];
    if (!kl_tensor_ok(t) || t->dtype != p->inputs[i].dtype || t->rank != p->inputs[i].rank)
      return false;
    for (int d = 0; d < t->rank; d++) /* a loop, not memcmp: ranks are small */
      if (t->shape[d] != last[d]) return false;
    if (p->in_buf[i] >= 0) {
      /* a new pointer (or a staged input) is checked again: an input the step
      ** writes takes the slow path, which copies it */
      void **slot = &p->ptrs[p->in_buf[i]];
      if (*slot != t->data) {
        if (written_by_step(p, t)) return false;
        *slot = t->data;
      }
    }
  }
  return true;
}

/* After a successful slow path: remembers the input shapes and which
** buffer each input is, for rerun. Without memory the next call simply
** takes the slow path again. */
static void remember(kl_plan *p, const kiln_tensor *const *in) {
  /* an output passed back in was reshaped by place_buffers: its shape now is
  ** not the one checked, so the next call takes this path again */
  for (int i = 0; i < p->n_inputs; i++)
    for (int k = 0; k < p->n_outputs; k++)
      if (in[i] == &p->outputs[k]) return;
  if (!p->last_dims) { /* one block: the shapes, then the buffer indices */
    size_t n = (size_t)(p->n_inputs ? p->n_inputs : 1);
    p->last_dims = kl_calloc(n * (KILN_MAX_RANK + 1), sizeof *p->last_dims);
    if (!p->last_dims) return;
    p->in_buf = (int32_t *)(p->last_dims + n * KILN_MAX_RANK);
    for (int i = 0; i < p->n_inputs; i++)
      p->in_buf[i] = -1;
    for (int b = 0; b < p->n_bufs; b++)
      if (p->bufs[b].kind == KL_BUF_INPUT) p->in_buf[p->bufs[b].src] = b;
  }
  for (int i = 0; i < p->n_inputs; i++)
    memcpy(p->last_dims + i * KILN_MAX_RANK, in[i]->shape, in[i]->rank * sizeof *in[i]->shape);
  p->warm = true;
}

/* Does some dynamic size of 1 stretch in this call? The fast step's
** kernels read a stored operand's dynamic axis with its contiguous stride;
** that is right whenever the loop along that axis has the operand's own
** length, and a dynamic size of 1 is no exception: only its index 0 is
** read. It is wrong only where a loop runs longer than the operand's axis,
** which happens at a broadcast: an elementwise node (or a broadcast node)
** whose operand has a dynamic size of 1 where the node's size is not 1
** (static sizes of 1 read with stride 0 in both steps). Every other node
** keeps the lengths of the axes it reads from (reductions, shuffles and
** reshapes, read through their own strides; dot and the indexing ops take
** their operands whole). So a call needs the general step exactly when
** such a stretch happens: a batch of 1 through an MLP does not. */
static bool stretches(const kl_plan *p, int node, const int64_t *to, const int *axis) {
  const kl_shape_op *s = &p->shape[node];
  const int64_t *sd = dims_of(p, node);
  for (int j = 0; j < s->rank; j++)
    if (s->fixed[j] == KILN_DYN && sd[j] == 1 && to[axis[j]] != 1) return true;
  return false;
}

static bool needs_general(const kl_plan *p) {
  for (int i = 0; i < p->n_nodes; i++) {
    const kl_shape_op *op = &p->shape[i];
    const int64_t *d = dims_of(p, i);
    int axis[KILN_MAX_RANK];
    if (op->kind == KL_SH_ELEM) {
      for (int k = 0; k < op->n_in; k++) {
        int r = p->shape[op->in[k]].rank; /* numpy: aligned on the last axis */
        for (int j = 0; j < r; j++)
          axis[j] = j + op->rank - r;
        if (stretches(p, op->in[k], d, axis)) return true;
      }
    } else if (op->kind == KL_SH_BCAST) { /* in[0]'s axes are the ones not in mask */
      for (int j = 0, k = 0; j < op->rank; j++)
        if (!(op->mask >> j & 1u)) axis[k++] = j;
      if (stretches(p, op->in[0], d, axis)) return true;
    }
  }
  return false;
}

kiln_status kl_plan_run(kl_plan *p, const kiln_tensor *const *in, char *err, size_t errn) {
  if (!rerun(p, in)) {
    p->warm = false;
    kiln_status st = check_inputs(p, in, err, errn);
    if (st == KILN_OK) st = infer_shapes(p, in, err, errn);
    if (st != KILN_OK) return st;
    /* before anything changes: an output passed back in is reshaped below */
    p->use_general = needs_general(p);
    if (p->use_general && !p->step_general) return KL_NEED_GENERAL;
    if ((st = stage_inputs(p, in, err, errn)) != KILN_OK) return st;
    if ((st = place_buffers(p, err, errn)) != KILN_OK) return st;
    remember(p, in);
  }
  kl_step_fn step = p->use_general ? p->step_general : p->step;
  p->step_err[0] = -1;
  if (step(p->ptrs, p->dims, p->step_err, p->pool) != 0) return kl_index_step_error(p, err, errn);
  for (int u = 0; u < p->n_updates; u++) {
    kiln_tensor *t = p->updates[u].target;
    if (p->updates[u].buf >= 0) memcpy(t->data, p->ptrs[p->updates[u].buf], kl_tensor_nbytes(t));
  }
  return KILN_OK;
}

void kl_plan_free(kl_plan *p) {
  if (!p) return;
  for (int i = 0; p->shape && i < p->n_nodes; i++) {
    kl_free(p->shape[i].label);
    kl_free(p->shape[i].slices);
  }
  kl_free(p->shape);
  for (int b = 0; b < p->n_bufs; b++) {
    if (p->bufs[b].kind == KL_BUF_CONST) kl_aligned_free(p->bufs[b].data);
    kl_free(p->bufs[b].nodes);
  }
  kl_free(p->shape_dtype);
  kl_free(p->bufs);
  for (int i = 0; i < p->n_inputs; i++)
    kl_free(p->inputs[i].label);
  kl_free(p->inputs);
  kl_free(p->output_node);
  for (int k = 0; k < p->n_outputs && p->outputs; k++)
    kl_tensor_release(&p->outputs[k]);
  kl_free(p->outputs);
  for (int u = 0; u < p->n_updates; u++)
    kl_free(p->updates[u].label);
  kl_free(p->updates);
  kl_free(p->dims);
  kl_free(p->ptrs);
  kl_free(p->offsets);
  kl_aligned_free(p->work);
  kl_free(p->last_dims); /* in_buf lives in the same block */
  kl_free(p->in_ptr);
  for (int i = 0; p->stage && i < p->n_inputs; i++)
    kl_aligned_free(p->stage[i]);
  kl_free(p->stage);
  kl_free(p->stage_cap);
  kl_free(p);
}
