/*
** grad.c -- reverse-mode automatic differentiation, as more graph.
**
** Nodes are numbered in build order, which is a topological order, so one
** backward sweep over ids from the cost down visits every consumer of a node
** before the node itself. Each op's rule (grad_rule below) builds the
** gradients of its inputs from the gradient of its output; contributions to
** a node used several times are added in the order of the sweep, so the
** graph built is deterministic. Gradients that reach a broadcast input are
** summed back to its shape (kl_sum_like).
*/
#include "compiler/graph.h"

#include <stdio.h>
#include <string.h>

typedef struct gctx {
  const char *file;
  int line;
} gctx;

static kiln_node *lit(kiln_ctx *ctx, double v, const gctx *gc) {
  return kiln_flit_at(ctx, v, gc->file, gc->line);
}
static kiln_node *bin(kl_opcode op, kiln_node *a, kiln_node *b, const gctx *gc) {
  kiln_node *in[2] = {a, b};
  return kl_elem(op, 2, in, gc->file, gc->line);
}
static kiln_node *un(kl_opcode op, kiln_node *a, const gctx *gc) {
  return kl_elem(op, 1, &a, gc->file, gc->line);
}
static kiln_node *where(kiln_node *c, kiln_node *a, kiln_node *b, const gctx *gc) {
  kiln_node *in[3] = {c, a, b};
  return kl_elem(KL_OP_WHERE, 3, in, gc->file, gc->line);
}
static kiln_node *to_shape(kiln_node *g, kiln_node *x, const gctx *gc) {
  return kl_sum_like(g, x, gc->file, gc->line);
}

/* y, a value with the shape of reduction v's output, broadcast to the shape
** of v's input (the reduced axes inserted again, or stretched from size 1
** with keepdims). */
static kiln_node *expand(kiln_node *y, const kiln_node *v, const gctx *gc) {
  return kl_bcast(y, v->in[0], v->p.keepdims ? 0u : v->p.axes, gc->file, gc->line);
}

/* The gradient of p = prod(x) over axes, safe at zeros (Theano's rule):
** with no zero among an output's elements, g * p / x; with exactly one zero,
** the zero gets g times the product of the others and the others 0 (p is
** 0, and each of their partial products holds the zero); with two or more
** zeros every partial product is 0. */
static kiln_node *prod_grad(kiln_node *v, kiln_node *g, const gctx *gc) {
  kiln_ctx *ctx = v->ctx;
  kiln_node *x = v->in[0];
  uint32_t ax = v->p.axes;
  kiln_node *is0 = bin(KL_OP_EQ, x, lit(ctx, 0.0, gc), gc);
  /* zero count and the product of the nonzero elements, kept at size 1 */
  kiln_node *nz = kl_reduce_kd(KL_OP_SUM, is0, ax, true, gc->file, gc->line);
  kiln_node *pnz =
      kl_reduce_kd(KL_OP_PROD, where(is0, lit(ctx, 1.0, gc), x, gc), ax, true, gc->file, gc->line);
  kiln_node *nzb = kl_bcast(nz, x, 0u, gc->file, gc->line);
  kiln_node *pnzb = kl_bcast(pnz, x, 0u, gc->file, gc->line);
  kiln_node *gb = expand(g, v, gc);
  kiln_node *none = bin(KL_OP_MUL, gb, bin(KL_OP_DIV, expand(v, v, gc), x, gc), gc);
  kiln_node *one = where(is0, bin(KL_OP_MUL, gb, pnzb, gc), lit(ctx, 0.0, gc), gc);
  kiln_node *z = lit(ctx, 0.0, gc);
  return where(bin(KL_OP_EQ, nzb, kiln_ilit_at(ctx, 0, gc->file, gc->line), gc), none,
               where(bin(KL_OP_EQ, nzb, kiln_ilit_at(ctx, 1, gc->file, gc->line), gc), one, z, gc),
               gc);
}

/* Fills gin[k] (for inputs with need[k]) with the gradient of v's input k
** given g, the gradient of v. A NULL gin[k] with need[k] means disconnected;
** an error is in the context. */
static void grad_rule(kiln_node *v, kiln_node *g, const bool *need, kiln_node **gin,
                      const gctx *gc) {
  kiln_ctx *ctx = v->ctx;
  kiln_node *a = v->n_in > 0 ? v->in[0] : NULL, *b = v->n_in > 1 ? v->in[1] : NULL;
  switch ((kl_opcode)v->op) {
  case KL_OP_CAST: gin[0] = kl_cast(g, (kiln_dtype)a->type.dtype, gc->file, gc->line); break;
  case KL_OP_NEG: gin[0] = un(KL_OP_NEG, g, gc); break;
  case KL_OP_SQR: gin[0] = bin(KL_OP_MUL, bin(KL_OP_MUL, g, a, gc), lit(ctx, 2.0, gc), gc); break;
  case KL_OP_SQRT: gin[0] = bin(KL_OP_DIV, bin(KL_OP_MUL, g, lit(ctx, 0.5, gc), gc), v, gc); break;
  case KL_OP_EXP: gin[0] = bin(KL_OP_MUL, g, v, gc); break;
  case KL_OP_LOG: gin[0] = bin(KL_OP_DIV, g, a, gc); break;
  case KL_OP_ABS: gin[0] = bin(KL_OP_MUL, g, un(KL_OP_SIGN, a, gc), gc); break;
  case KL_OP_SIGN: gin[0] = kl_zeros_like(a, gc->file, gc->line); break;
  case KL_OP_LOG1P: gin[0] = bin(KL_OP_DIV, g, bin(KL_OP_ADD, a, lit(ctx, 1.0, gc), gc), gc); break;
  case KL_OP_EXPM1: gin[0] = bin(KL_OP_MUL, g, bin(KL_OP_ADD, v, lit(ctx, 1.0, gc), gc), gc); break;
  case KL_OP_TANH:
    gin[0] = bin(KL_OP_MUL, g, bin(KL_OP_SUB, lit(ctx, 1.0, gc), un(KL_OP_SQR, v, gc), gc), gc);
    break;
  case KL_OP_SIGMOID:
    gin[0] = bin(KL_OP_MUL, bin(KL_OP_MUL, g, v, gc), bin(KL_OP_SUB, lit(ctx, 1.0, gc), v, gc), gc);
    break;
  case KL_OP_SOFTPLUS: gin[0] = bin(KL_OP_MUL, g, un(KL_OP_SIGMOID, a, gc), gc); break;
  case KL_OP_RELU: /* 1 where x > 0; 0 at the kink, as Theano */
    gin[0] = where(bin(KL_OP_GT, a, lit(ctx, 0.0, gc), gc), g, lit(ctx, 0.0, gc), gc);
    break;
  case KL_OP_ADD:
    if (need[0]) gin[0] = to_shape(g, a, gc);
    if (need[1]) gin[1] = to_shape(g, b, gc);
    break;
  case KL_OP_SUB:
    if (need[0]) gin[0] = to_shape(g, a, gc);
    if (need[1]) gin[1] = to_shape(un(KL_OP_NEG, g, gc), b, gc);
    break;
  case KL_OP_MUL:
    if (need[0]) gin[0] = to_shape(bin(KL_OP_MUL, g, b, gc), a, gc);
    if (need[1]) gin[1] = to_shape(bin(KL_OP_MUL, g, a, gc), b, gc);
    break;
  case KL_OP_DIV:
    if (need[0]) gin[0] = to_shape(bin(KL_OP_DIV, g, b, gc), a, gc);
    if (need[1])
      gin[1] = to_shape(
          un(KL_OP_NEG, bin(KL_OP_DIV, bin(KL_OP_MUL, g, a, gc), un(KL_OP_SQR, b, gc), gc), gc), b,
          gc);
    break;
  case KL_OP_POW:
    if (need[0]) {
      kiln_node *bm1 = bin(KL_OP_SUB, b, lit(ctx, 1.0, gc), gc);
      gin[0] =
          to_shape(bin(KL_OP_MUL, bin(KL_OP_MUL, g, b, gc), bin(KL_OP_POW, a, bm1, gc), gc), a, gc);
    }
    if (need[1])
      gin[1] = to_shape(bin(KL_OP_MUL, bin(KL_OP_MUL, g, v, gc), un(KL_OP_LOG, a, gc), gc), b, gc);
    break;
  case KL_OP_MAX:
  case KL_OP_MIN: {
    /* the operand the op chose gets the gradient; ties go to a, as the op */
    kiln_node *c = bin(v->op == KL_OP_MAX ? KL_OP_GE : KL_OP_LE, a, b, gc);
    kiln_node *z = lit(ctx, 0.0, gc);
    if (need[0]) gin[0] = to_shape(where(c, g, z, gc), a, gc);
    if (need[1]) gin[1] = to_shape(where(c, z, g, gc), b, gc);
    break;
  }
  case KL_OP_WHERE: {
    kiln_node *z = lit(ctx, 0.0, gc);
    if (need[1]) gin[1] = to_shape(where(a, g, z, gc), b, gc);
    if (need[2]) gin[2] = to_shape(where(a, z, g, gc), v->in[2], gc);
    break;
  }
  case KL_OP_BCAST: /* no axes (keepdims reductions): only stretched size-1 dims */
    gin[0] =
        to_shape(v->p.axes ? kl_reduce(KL_OP_SUM, g, v->p.axes, gc->file, gc->line) : g, a, gc);
    break;
  case KL_OP_SUM: gin[0] = expand(g, v, gc); break;
  case KL_OP_RMAX:
  case KL_OP_RMIN: /* g to every element equal to the result (Theano's rule) */
    gin[0] = where(bin(KL_OP_EQ, a, expand(v, v, gc), gc), expand(g, v, gc), lit(ctx, 0.0, gc), gc);
    break;
  case KL_OP_PROD: gin[0] = prod_grad(v, g, gc); break;
  case KL_OP_SUM_LIKE: {
    uint32_t lead = (1u << (a->type.rank - b->type.rank)) - 1u;
    gin[0] = kl_bcast(g, a, lead, gc->file, gc->line);
    break;
  }
  case KL_OP_DOT: {
    int ra = a->type.rank, rb = b->type.rank;
    bool ta = v->p.ta, tb = v->p.tb;
    const char *f = gc->file;
    int l = gc->line;
    if (ra == 1 && rb == 1) {
      if (need[0]) gin[0] = bin(KL_OP_MUL, g, b, gc);
      if (need[1]) gin[1] = bin(KL_OP_MUL, g, a, gc);
    } else if (ra == 2 && rb == 1) { /* out (m) = A (m,k) . b (k) */
      if (need[0])
        gin[0] = ta ? bin(KL_OP_MUL, kl_bcast(b, a, 2u, f, l), g, gc)
                    : bin(KL_OP_MUL, kl_bcast(g, a, 2u, f, l), b, gc);
      if (need[1]) gin[1] = kl_dot(a, g, !ta, false, f, l);
    } else if (ra == 1 && rb == 2) { /* out (n) = a (k) . B (k,n) */
      if (need[0]) gin[0] = kl_dot(b, g, tb, false, f, l);
      if (need[1])
        gin[1] = tb ? bin(KL_OP_MUL, kl_bcast(g, b, 2u, f, l), a, gc)
                    : bin(KL_OP_MUL, kl_bcast(a, b, 2u, f, l), g, gc);
    } else { /* out (m,n) = A (m,k) . B (k,n), also per batch element of stacks */
      if (need[0]) gin[0] = ta ? kl_dot(b, g, tb, true, f, l) : kl_dot(g, b, false, !tb, f, l);
      if (need[1]) gin[1] = tb ? kl_dot(g, a, true, ta, f, l) : kl_dot(a, g, !ta, false, f, l);
      /* a matrix used for every element of a stack: the sum over the stack */
      if (need[0] && ra == 2 && rb == 3) gin[0] = kl_reduce(KL_OP_SUM, gin[0], 1u, f, l);
      if (need[1] && rb == 2 && ra == 3) gin[1] = kl_reduce(KL_OP_SUM, gin[1], 1u, f, l);
    }
    break;
  }
  /* shape ops: the inverse dimshuffle (inserted axes dropped, dropped ones
  ** inserted again); a reshape back to the operand's run-time shape */
  case KL_OP_DIMSHUFFLE: {
    int inv[KILN_MAX_RANK];
    for (int k = 0; k < a->type.rank; k++)
      inv[k] = -1;
    for (int d = 0; d < v->type.rank; d++)
      if (v->p.src_axis[d] >= 0) inv[v->p.src_axis[d]] = d;
    gin[0] = kl_dimshuffle(g, a->type.rank, inv, gc->file, gc->line);
    break;
  }
  case KL_OP_RESHAPE:
  case KL_OP_RESHAPE_LIKE: gin[0] = kl_reshape_like(g, a, gc->file, gc->line); break;
  /* indexing: the gradient of a slice is written into zeros of x's shape
  ** (Theano's IncSubtensor), that of take added at the indices; the index
  ** and labels are integers and get none */
  case KL_OP_SLICE: gin[0] = kl_slice_inc(g, a, v->p.slices, gc->file, gc->line); break;
  case KL_OP_SLICE_INC:
    if (need[0]) gin[0] = kiln_slice_at(g, b->type.rank, v->p.slices, gc->file, gc->line);
    break;
  case KL_OP_TAKE:
    if (need[0]) gin[0] = kl_take_inc(g, b, a, v->p.axis, gc->file, gc->line);
    break;
  case KL_OP_TAKE_INC:
    if (need[0]) gin[0] = kl_take(g, b, v->p.axis, gc->file, gc->line);
    break;
  case KL_OP_CONCAT:
    for (int k = 0; k < 2; k++)
      if (need[k])
        gin[k] =
            kl_concat_part(g, v->in[k], v->p.axis, k, v->p.lacks >> k & 1u, gc->file, gc->line);
    break;
  case KL_OP_OUTER: /* out (m,n) = a (m) b (n) */
    if (need[0]) gin[0] = kl_dot(g, b, false, false, gc->file, gc->line);
    if (need[1]) gin[1] = kl_dot(g, a, true, false, gc->file, gc->line);
    break;
  default: break; /* comparisons, count, one_hot: no gradient flows to their inputs */
  }
}

static bool is_float(const kiln_node *v) { return kl_dtype_is_float((kiln_dtype)v->type.dtype); }

kiln_status kiln_grad_at(kiln_node *cost, int n_wrt, kiln_node *const *wrt, kiln_node **out_grads,
                         unsigned flags, const char *file, int line) {
  if (out_grads)
    for (int i = 0; i < n_wrt; i++)
      out_grads[i] = NULL;
  if (!kl_node_ok(cost)) return KILN_MISUSE;
  kiln_ctx *ctx = cost->ctx;
  if (n_wrt < 0 || (n_wrt > 0 && (!wrt || !out_grads)))
    return kl_error(ctx, KILN_MISUSE, "grad: bad wrt list (grad called at %s:%d)",
                    kl_basename(file), line);
  char lb[256], sb[160];
  for (int i = 0; i < n_wrt; i++) {
    if (!kl_node_ok(wrt[i]) || wrt[i]->ctx != ctx)
      return kl_error(ctx, KILN_MISUSE, "grad: wrt[%d] is not a node of this context (%s:%d)", i,
                      kl_basename(file), line);
    if (!is_float(wrt[i]))
      return kl_error(ctx, KILN_TYPE, "grad: wrt %s is %s; gradients exist for float tensors only",
                      kl_node_label(wrt[i], lb, sizeof lb), kiln_dtype_name(wrt[i]->type.dtype));
  }
  if (cost->type.rank != 0)
    return kl_error(ctx, KILN_NOGRAD, "grad: the cost must be a scalar, %s has shape %s",
                    kl_node_label(cost, lb, sizeof lb),
                    kl_shape_str(sb, sizeof sb, cost->type.rank, cost->type.dims));
  if (!is_float(cost))
    return kl_error(ctx, KILN_TYPE, "grad: the cost %s is %s, not a float",
                    kl_node_label(cost, lb, sizeof lb), kiln_dtype_name(cost->type.dtype));

  /* Differentiate the stable form: the gradient of log(softmax(x)) written
  ** naively divides by a softmax that underflowed (stabilize.c). */
  kiln_node *user_cost = cost;
  if (!(cost = kl_stabilize_cost(ctx, cost, n_wrt, wrt))) return ctx->status;
  uint32_t n = cost->id + 1;
  bool *depends = kl_calloc(n, 3 * sizeof(bool));
  kiln_node **gsum = kl_calloc(n, sizeof *gsum);
  if (!depends || !gsum) {
    kl_free(depends);
    kl_free(gsum);
    return kl_error(ctx, KILN_NOMEM, "grad: out of memory");
  }
  bool *reach = depends + n;
  /* conn: the cost depends on the node's value, not only on its shape (the
  ** "like" operand of broadcast and sum_like, count's operand). A wrt that is
  ** connected but receives no gradient (its paths pass through comparisons
  ** or integers) gets zeros, as in Theano; only an unconnected one is an
  ** error. */
  bool *conn = depends + 2 * n;
  for (int i = 0; i < n_wrt; i++)
    if (wrt[i]->id < n) depends[wrt[i]->id] = true;
  for (uint32_t id = 0; id < n; id++) {
    kiln_node *v = ctx->nodes[id];
    for (int k = 0; k < v->n_in && !depends[id]; k++)
      depends[id] = depends[v->in[k]->id];
  }
  reach[cost->id] = conn[cost->id] = true;
  for (uint32_t id = n; id-- > 0;) {
    kiln_node *v = ctx->nodes[id];
    if (reach[id])
      for (int k = 0; k < v->n_in; k++)
        reach[v->in[k]->id] = true;
    kl_opkind kind = kl_ops[v->op].kind;
    if (conn[id])
      for (int k = 0; k < v->n_in; k++)
        if (!(kind == KL_COUNT ||
              ((kind == KL_BCAST || kind == KL_LIKE || kind == KL_RESHAPE) && k == 1) ||
              kl_index_shape_only(v, k)))
          conn[v->in[k]->id] = true;
  }

  char origin[300];
  snprintf(origin, sizeof origin, "grad of %s", kl_node_label(user_cost, lb, sizeof lb));
  ctx->origin = kl_arena_strdup(&ctx->arena, origin);
  gctx gc = {file, line};
  kiln_status st = KILN_OK;
  unsigned errs = ctx->n_errors; /* a builder failing inside adds one */
  gsum[cost->id] = kl_scalar_const(ctx, (kiln_dtype)cost->type.dtype, 1.0, file, line);
  for (uint32_t id = n; id-- > 0 && ctx->n_errors == errs;) {
    kiln_node *v = ctx->nodes[id];
    /* an op without a gradient (argmax) fails as soon as the cost depends
    ** on its value and a wrt reaches its float input, even when its output
    ** is an integer that would otherwise pass no gradient */
    bool blocked = conn[id] && !kl_ops[v->op].has_grad;
    if (!reach[id] || !depends[id] || (!gsum[id] && !blocked) || v->n_in == 0) continue;
    bool need[3] = {false, false, false}, any = false;
    for (int k = 0; k < v->n_in && k < 3; k++) {
      need[k] = depends[v->in[k]->id] && is_float(v->in[k]);
      any |= need[k];
    }
    if (!any) continue;
    if (!kl_ops[v->op].has_grad) {
      st = kl_error(ctx, KILN_NOGRAD, "grad: %s has no gradient (on the path from %s)",
                    kl_node_label(v, lb, sizeof lb), origin + 8);
      break;
    }
    kiln_node *gin[3] = {NULL, NULL, NULL};
    grad_rule(v, gsum[id], need, gin, &gc);
    for (int k = 0; k < v->n_in && k < 3 && ctx->n_errors == errs; k++) {
      if (!need[k] || !gin[k]) continue;
      uint32_t t = v->in[k]->id;
      gsum[t] = gsum[t] ? bin(KL_OP_ADD, gsum[t], gin[k], &gc) : gin[k];
    }
  }
  if (st == KILN_OK && ctx->n_errors != errs) st = ctx->status;
  for (int i = 0; i < n_wrt && st == KILN_OK; i++) {
    kiln_node *g = wrt[i]->id < n ? gsum[wrt[i]->id] : NULL;
    if (!g && ((flags & KILN_GRAD_DISCONNECTED_ZERO) || (wrt[i]->id < n && conn[wrt[i]->id])))
      g = kl_zeros_like(wrt[i], file, line);
    if (!g) {
      st = ctx->n_errors != errs
               ? ctx->status
               : kl_error(ctx, KILN_NOGRAD,
                          "grad: the cost %s does not depend on wrt %s (pass "
                          "KILN_GRAD_DISCONNECTED_ZERO for zeros; grad called at %s:%d)",
                          kl_node_label(user_cost, sb, sizeof sb),
                          kl_node_label(wrt[i], lb, sizeof lb), kl_basename(file), line);
      break;
    }
    out_grads[i] = g;
  }
  if (st != KILN_OK)
    for (int i = 0; i < n_wrt; i++)
      out_grads[i] = NULL;
  ctx->origin = NULL;
  kl_free(depends);
  kl_free(gsum);
  return st;
}
