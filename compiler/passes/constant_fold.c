/*
** constant_fold.c -- evaluates at compile time every node whose inputs are
** constants, with the op table's reference evaluation (compiler/ops/eval.c),
** the same code the tests hold the JIT to: folding can never disagree with
** what the function would compute at run time.
** Needs: a sorted graph. Does: replaces such nodes by constants, up to
** KL_FOLD_MAX elements; count() of static dims folds too. Guarantees: every
** value bit-identical.
*/
#include "compiler/passes/passes.h"

#include <stdio.h>
#include <string.h>

#define KL_FOLD_MAX 65536

/* A tensor header viewing a constant's data (not owned). */
static void view(kiln_tensor *t, const kiln_node *v) {
  kl_tensor_init(t, (kiln_dtype)v->type.dtype);
  t->rank = v->type.rank;
  for (int d = 0; d < v->type.rank; d++)
    t->shape[d] = v->type.dims[d];
  t->size = kl_type_static_size(&v->type);
  t->data = v->data;
}

bool kl_pass_constant_fold(kl_fgraph *g) {
  bool changed = false;
  int n = g->n;
  for (int i = 0; i < n; i++) {
    kiln_node *v = g->nodes[i];
    if (kl_ops[v->op].kind == KL_LEAF || v->n_in > 3) continue;
    int64_t size = kl_type_static_size(&v->type);
    if (size < 0 || size > KL_FOLD_MAX) continue;
    bool ok = true;
    for (int k = 0; k < v->n_in && ok; k++) {
      const kiln_node *x = v->in[k];
      ok = kl_reads_value(v, k) ? x->op == KL_OP_CONST : kl_type_static_size(&x->type) >= 0;
    }
    if (!ok) continue;
    kiln_tensor in[3], out;
    const kiln_tensor *inp[3];
    for (int k = 0; k < v->n_in; k++) {
      view(&in[k], v->in[k]); /* shape-only operands are never read */
      inp[k] = &in[k];
    }
    kl_tensor_init(&out, (kiln_dtype)v->type.dtype);
    char err[256];
    kiln_status st = kl_eval_node(v, inp, &out, err, sizeof err);
    if (st == KILN_OK) {
      kl_type t = v->type;
      t.rank = out.rank;
      for (int d = 0; d < out.rank; d++)
        t.dims[d] = out.shape[d];
      g->rule = "constant_fold: evaluate with the reference evaluator";
      kiln_node *c = kl_fg_const(g, &t, out.data, v);
      g->rule = NULL;
      if (c) {
        kl_fg_replace(g, v, c);
        changed = true;
      }
    } else if (st == KILN_NOMEM) {
      kl_error(g->ctx, KILN_NOMEM, "out of memory folding constants");
    }
    /* a shape error here is the user's and is reported at call time */
    kl_tensor_release(&out);
    if (g->ctx->status == KILN_NOMEM) break;
  }
  if (changed) kl_fg_sort(g);
  return changed;
}
