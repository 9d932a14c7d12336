/*
** givens.c -- Theano's givens: substitutions made when a function is
** compiled. kl_givens_apply checks the pairs, then rebuilds what the
** function's outputs and update values reach with every var replaced by its
** expr, in the context (as kiln_grad adds its nodes there). The copies get
** their types inferred again from their new operands: a shared variable of
** static shape (4,) replaced by an input of shape (?,) makes its consumers
** dynamic, so the shape program checks them at call time instead of the
** compiler trusting a size that no longer holds.
**
** The substitution is simultaneous: exprs are used as they are, a var
** inside an expr is not replaced. Update targets stay the shared variables
** the user named; only their new values are rebuilt.
*/
#include "compiler/function.h"

#include <string.h>

static kiln_status check(kiln_ctx *ctx, int n, const kiln_given *gv) {
  char la[256], lb[256], ta[200], tb[200];
  if (n < 0 || (n > 0 && !gv))
    return kl_error(ctx, KILN_MISUSE, "function: bad givens count or NULL givens array");
  for (int i = 0; i < n; i++) {
    kiln_node *v = gv[i].var, *e = gv[i].expr;
    if (!v || !e) {
      if (ctx->status != KILN_OK) return ctx->status; /* a builder's error explains it */
      return kl_error(ctx, KILN_MISUSE, "function: given %d has a NULL %s", i, v ? "expr" : "var");
    }
    if (!kl_node_ok(v) || !kl_node_ok(e) || v->ctx != ctx || e->ctx != ctx)
      return kl_error(ctx, KILN_MISUSE, "function: given %d is not made of nodes of this context",
                      i);
    for (int j = 0; j < i; j++)
      if (gv[j].var == v)
        return kl_error(ctx, KILN_MISUSE, "function: %s is given twice (givens %d and %d)",
                        kl_node_label(v, la, sizeof la), j, i);
    bool same = v->type.dtype == e->type.dtype && v->type.rank == e->type.rank;
    int d = 0;
    for (; same && d < v->type.rank; d++)
      if (v->type.dims[d] != KILN_DYN && e->type.dims[d] != KILN_DYN &&
          v->type.dims[d] != e->type.dims[d])
        break;
    if (!same || d < v->type.rank)
      return kl_error(ctx, same ? KILN_SHAPE : KILN_TYPE,
                      "function: given %d: %s has type %s but its replacement %s has type %s", i,
                      kl_node_label(v, la, sizeof la), kl_type_str(&v->type, ta, sizeof ta),
                      kl_node_label(e, lb, sizeof lb), kl_type_str(&e->type, tb, sizeof tb));
  }
  return KILN_OK;
}

/* v's type inferred again from its (new) operands in; false with an error
** when the operands no longer fit together. */
static bool retype(kiln_node *v, kiln_node *const *in, kl_type *t) {
  *t = v->type;
  char la[256], lb[256], sa[160], sb[160];
  switch (kl_ops[v->op].kind) {
  case KL_ELEM: {
    t->rank = 0;
    for (int k = 0; k < v->n_in; k++) /* where's condition broadcasts too */
      if (!kl_broadcast_dims(t, &in[k]->type, t)) {
        kl_error(v->ctx, KILN_SHAPE,
                 "function: with the givens, %s cannot broadcast %s (shape %s) with shape %s",
                 kl_node_label(v, la, sizeof la), kl_node_label(in[k], lb, sizeof lb),
                 kl_shape_str(sa, sizeof sa, in[k]->type.rank, in[k]->type.dims),
                 kl_shape_str(sb, sizeof sb, t->rank, t->dims));
        return false;
      }
    return true;
  }
  case KL_REDUCE:
    t->rank = 0;
    for (int i = 0; i < in[0]->type.rank; i++)
      if (!(v->p.axes >> i & 1u)) t->dims[t->rank++] = in[0]->type.dims[i];
    return true;
  case KL_BCAST:
  case KL_LIKE:
    t->rank = in[1]->type.rank;
    memcpy(t->dims, in[1]->type.dims, sizeof t->dims);
    return true;
  case KL_DOT: {
    const kl_type *a = &in[0]->type, *b = &in[1]->type;
    int64_t ka = a->rank == 1 ? a->dims[0] : a->dims[v->p.ta ? 0 : 1];
    int64_t kb = b->rank == 1 ? b->dims[0] : b->dims[v->p.tb ? 1 : 0];
    if (ka >= 0 && kb >= 0 && ka != kb) {
      kl_error(v->ctx, KILN_SHAPE,
               "function: with the givens, the inner dimensions of %s differ: %s and %s",
               kl_node_label(v, la, sizeof la), kl_shape_str(sa, sizeof sa, a->rank, a->dims),
               kl_shape_str(sb, sizeof sb, b->rank, b->dims));
      return false;
    }
    t->rank = 0;
    if (a->rank == 2) t->dims[t->rank++] = a->dims[v->p.ta ? 1 : 0];
    if (b->rank == 2) t->dims[t->rank++] = b->dims[v->p.tb ? 0 : 1];
    return true;
  }
  default: return true; /* leaves, count: a type of their own */
  }
}

kiln_status kl_givens_apply(kiln_ctx *ctx, int n_givens, const kiln_given *givens, int n_out,
                            kiln_node **out, int n_upd, kiln_update *upd) {
  kiln_status st = check(ctx, n_givens, givens);
  if (st || n_givens == 0) return st;
  uint32_t n = ctx->n_nodes;
  kiln_node **map = kl_calloc(n, sizeof *map);
  bool *reach = kl_calloc(n, sizeof *reach);
  if (!map || !reach) {
    kl_free(map);
    kl_free(reach);
    return kl_error(ctx, KILN_NOMEM, "function: out of memory applying the givens");
  }
  for (int k = 0; k < n_out; k++)
    reach[out[k]->id] = true;
  for (int u = 0; u < n_upd; u++)
    reach[upd[u].value->id] = true;
  for (uint32_t id = n; id-- > 0;)
    if (reach[id])
      for (int k = 0; k < ctx->nodes[id]->n_in; k++)
        reach[ctx->nodes[id]->in[k]->id] = true;
  const char *origin = ctx->origin;
  for (uint32_t id = 0; id < n && !st; id++) {
    if (!reach[id]) continue;
    kiln_node *v = ctx->nodes[id], *in[3];
    map[id] = v;
    for (int i = 0; i < n_givens; i++)
      if (givens[i].var == v) map[id] = givens[i].expr;
    if (map[id] != v) continue;
    bool moved = false;
    for (int k = 0; k < v->n_in; k++) {
      in[k] = map[v->in[k]->id];
      moved |= in[k] != v->in[k];
    }
    if (!moved) continue;
    kl_type t;
    if (!retype(v, in, &t)) {
      st = ctx->status;
      break;
    }
    ctx->origin = v->origin;
    kiln_node *c = kl_node_new(ctx, (kl_opcode)v->op, v->n_in, in, &t, &v->p, v->file, v->line);
    ctx->origin = origin;
    if (!c) {
      st = ctx->status;
      break;
    }
    c->name = v->name;
    map[id] = c;
  }
  if (!st) {
    for (int k = 0; k < n_out; k++)
      out[k] = map[out[k]->id];
    for (int u = 0; u < n_upd; u++)
      upd[u].value = map[upd[u].value->id];
  }
  kl_free(map);
  kl_free(reach);
  return st;
}
